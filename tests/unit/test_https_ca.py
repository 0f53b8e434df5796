"""The CA is spoken to over https only (review N14): an http:// DIRECTORY_URL is a settings
error unless ACME_ALLOW_HTTP_CA=y (a test CA), and an https CA's endpoints, orders,
authorizations and renewalInfo in plain http are refused as a downgrade."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from acme_sidecar import cli
from acme_sidecar.adapters.acme.session import AcmeNetwork
from acme_sidecar.adapters.acme.windows import RenewalInfo
from acme_sidecar.adapters.acme.wire import NO_ARI
from acme_sidecar.config.settings import load_settings
from acme_sidecar.core.errors import CaUnreachable, ConfigError
from acme_sidecar.core.model import FailureKind, IssueFailure
from tests.unit.test_acme_adapter import CA, SPEC, FakeCA, Reply, run

BASE = {"MAILCOW_HOSTNAME": "mail.example.org"}
PLAIN = "http://ca.internal.example/directory"


def test_an_http_directory_is_one_settings_error() -> None:
    """DIRECTORY_URL=http://… without ACME_ALLOW_HTTP_CA: one message with the setting, the
    value, and what is valid (https, or ACME_ALLOW_HTTP_CA=y)."""
    with pytest.raises(ConfigError) as info:
        load_settings(BASE | {"DIRECTORY_URL": PLAIN})
    message = str(info.value)
    assert message.startswith(f"DIRECTORY_URL='{PLAIN}' is not valid: ")
    assert "https://" in message and "ACME_ALLOW_HTTP_CA=y" in message
    assert ";" not in message  # one problem, one message


def test_an_http_directory_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    """The command line turns it into exit code 2, as for every invalid setting."""
    for name, value in (BASE | {"DIRECTORY_URL": PLAIN}).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ACME_ALLOW_HTTP_CA", raising=False)
    assert cli.main(["health"]) == 2
    assert f"DIRECTORY_URL='{PLAIN}'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra",
    [
        {"DIRECTORY_URL": PLAIN, "ACME_ALLOW_HTTP_CA": "y"},
        {"DIRECTORY_URL": "https://ca.internal.example/directory"},
        {"DIRECTORY_URL": PLAIN, "LE_STAGING": "y"},  # staging wins: the value is not used
    ],
)
def test_https_or_an_allowed_test_ca_is_accepted(extra: dict[str, str]) -> None:
    """https is accepted; http only with ACME_ALLOW_HTTP_CA=y (or when it is not used)."""
    load_settings(BASE | extra)


def test_a_bad_allow_http_value_names_the_setting() -> None:
    """ACME_ALLOW_HTTP_CA takes y or n; anything else is one clear message."""
    with pytest.raises(ConfigError, match="ACME_ALLOW_HTTP_CA='maybe' is not valid: use y"):
        load_settings(BASE | {"ACME_ALLOW_HTTP_CA": "maybe"})


def test_an_http_endpoint_in_an_https_directory_is_refused(tmp_path: Path) -> None:
    """An https directory listing newOrder over http: every spec fails SYSTEMIC with a
    reason naming the endpoint, and nothing is sent to the http URL."""

    def fault(method: str, path: str) -> Reply | None:
        if path != "/dir":
            return None
        urls = {k: f"{CA}/{k}" for k in ("newNonce", "newAccount")}
        return 200, urls | {"newOrder": "http://ca.test/newOrder"}, {}

    ca = FakeCA(fault=fault)
    [result] = run(ca, tmp_path, [SPEC])
    assert isinstance(result, IssueFailure) and result.kind is FailureKind.SYSTEMIC
    assert "newOrder" in result.reason and "downgrade" in result.reason
    assert ca.seen == [("GET", "/dir")]


def test_an_http_authorization_of_an_https_ca_is_refused(tmp_path: Path) -> None:
    """An order whose authorizations are http URLs: refused before any request to them."""

    class Downgrading(FakeCA):
        def _order_json(self, oid: str) -> dict[str, Any]:
            body = super()._order_json(oid)
            body["authorizations"] = [
                a.replace("https://", "http://") for a in body["authorizations"]
            ]
            return body

    ca = Downgrading()
    [result] = run(ca, tmp_path, [SPEC])
    assert isinstance(result, IssueFailure) and "downgrade" in result.reason
    assert not [path for _, path in ca.seen if path.startswith("http")]


class Recording(AcmeNetwork):
    """The real network object; requests are recorded instead of sent."""

    sent: list[str]

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        self.sent.append(url)
        response = requests.Response()
        response.status_code = 200
        response._content = b"{}"
        response.headers["Content-Type"] = "application/json"
        return response


def _network(*, allow_http: bool) -> Recording:
    key = JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = Recording(key, alg=ES256, allow_http=allow_http)
    net.sent = []
    return net


@pytest.mark.parametrize("url", ["http://ca.test/cert/1", "ftp://ca.test/x", "ca.test/x"])
def test_the_network_sends_nothing_but_https(url: str) -> None:
    """GET and HEAD of a URL that is not https raise before anything is sent."""
    net = _network(allow_http=False)
    with pytest.raises(CaUnreachable, match="downgrade"):
        net.get(url)
    with pytest.raises(CaUnreachable, match="downgrade"):
        net.head(url)
    assert net.sent == []


def test_a_test_ca_over_http_is_reached() -> None:
    """With an http directory (allowed in the settings) http URLs are sent; ftp never."""
    net = _network(allow_http=True)
    net.get("http://pebble.test/dir")
    assert net.sent == ["http://pebble.test/dir"]
    with pytest.raises(CaUnreachable):
        net.get("ftp://pebble.test/dir")


class Windows(RenewalInfo):
    """``RenewalInfo`` whose directory answer is given."""

    def __init__(self, directory_url: str, renewal_info: str) -> None:
        super().__init__(directory_url)
        self.renewal_info = renewal_info
        self.asked: list[str] = []

    def _get(self, url: str) -> requests.Response:
        self.asked.append(url)
        response = requests.Response()
        response.status_code = 200
        body = {"renewalInfo": self.renewal_info} if url == self._directory_url else {}
        response._content = json.dumps(body).encode()
        return response


def test_an_http_renewal_info_of_an_https_ca_is_not_used() -> None:
    """renewalInfo over http from an https directory: taken as no renewalInfo, not asked."""
    ari = Windows("https://ca.test/dir", "http://ca.test/ari")
    assert ari.fetch("a.b").error == NO_ARI
    assert ari.asked == ["https://ca.test/dir"]


def test_a_test_ca_over_http_has_its_renewal_info() -> None:
    """An http test CA (allowed) may list renewalInfo over http."""
    ari = Windows("http://pebble.test/dir", "http://pebble.test/ari")
    assert ari.fetch("a.b").error == ""
    assert ari.asked == ["http://pebble.test/dir", "http://pebble.test/ari/a.b"]
