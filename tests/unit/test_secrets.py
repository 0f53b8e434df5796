"""Secrets are never printed, in any form (review N8, N10): a refused setting that holds one
(webhook URL, URLs with a password or a query token, EAB HMAC key) is named without it, and a
DNS-01 credential never reaches an error text, also with spaces around it or URL-quoted."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from structlog.testing import capture_logs

from acme_sidecar import cli
from acme_sidecar.adapters.dns01.base import DnsUpdateError
from acme_sidecar.adapters.dns01.lexicon_api import LexiconProvider
from acme_sidecar.adapters.dns01.setup import build_router
from acme_sidecar.config.dns01 import LexiconConf, parse_file
from acme_sidecar.config.settings import load_settings
from acme_sidecar.core.errors import ConfigError
from acme_sidecar.core.values import scrub

BASE = {"MAILCOW_HOSTNAME": "mail.example.org"}
EAB = {"ACME_EAB_KID": "kid-1"}
TOKEN = " S3cr3tT0ken-pdns"  # with the leading space of the review's dns-01.conf

# (variable, refused value, the secrets in it, other settings)
REFUSED = [
    (
        "ACME_NOTIFY_WEBHOOK",
        "htps://hooks.slack.com/services/T0AAA/B0BBB/sEcReTtOkEn123",
        ("sEcReTtOkEn123", "B0BBB"),
        {},
    ),
    (
        "ACME_NOTIFY_WEBHOOK",
        "https://user:PassW0rd@hooks.example.com/x?token=SECRETQ y",
        ("PassW0rd", "SECRETQ"),
        {},
    ),
    ("ACME_NOTIFY_WEBHOOK", "ntfy.sh/sEcReTtOpic", ("sEcReTtOpic",), {}),
    ("DIRECTORY_URL", "https://ca.example/dir?token=S3cretDirTok en", ("S3cretDirTok",), {}),
    ("DIRECTORY_URL", "http://acct:Dir5ecret@ca.example/dir", ("Dir5ecret",), {}),
    ("ACME_IPV4_DETECT_URL", "http://admin:Hunter2pw@ip.example/ x", ("Hunter2pw",), {}),
    ("ACME_IPV6_DETECT_URL", "http://ip.example/?key=V6s3cret x", ("V6s3cret",), {}),
    ("ACME_DOCKERAPI_URL", "https://tok3nUser@dockerapi/x?k=Qs3cret", ("tok3nUser", "Qs3cret"), {}),
    ("ACME_EAB_HMAC_KEY", "not base64! S3cretHmac", ("S3cretHmac",), EAB),
]


@pytest.mark.parametrize(("var", "value", "secrets", "extra"), REFUSED)
def test_a_refused_setting_is_named_without_its_secret(
    var: str, value: str, secrets: tuple[str, ...], extra: dict[str, str]
) -> None:
    """The error names the variable and says what is valid; no secret is in its text, and
    pydantic's error (which holds the input) is not chained for a traceback to show."""
    with pytest.raises(ConfigError) as info:
        load_settings(BASE | extra | {var: value})
    message = str(info.value)
    assert f"{var}='" in message and "is not valid: " in message
    assert [s for s in secrets if s in message] == []
    assert info.value.__cause__ is None and info.value.__suppress_context__


@pytest.mark.parametrize(("var", "value", "secrets", "extra"), REFUSED)
def test_the_command_line_prints_no_secret(
    var: str,
    value: str,
    secrets: tuple[str, ...],
    extra: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    """What the admin sees at start (exit 2) holds no secret either."""
    for name, setting in (BASE | extra | {var: value}).items():
        monkeypatch.setenv(name, setting)
    assert cli.main(["health"]) == 2
    out = capsys.readouterr()
    assert var in out.err
    assert [s for s in secrets if s in out.out + out.err] == []


def test_a_token_with_spaces_is_one_line_without_its_value() -> None:
    """PDNS_Token=" …" in the DNS-01 file: one problem naming the line and the variable, not
    the value; the value is used without the spaces."""
    parsed = parse_file(f'ACME_DNS_PROVIDER=dns_pdns\nPDNS_Token="{TOKEN} "\n', "")
    assert parsed.default.values["PDNS_Token"] == TOKEN.strip()
    assert parsed.problems == (
        "line 2: the value of PDNS_Token starts or ends with spaces; they are removed",
    )


def _pdns(token: str) -> LexiconProvider:
    options = {"pdns_server": "http://127.0.0.1:9", "pdns_server_id": "localhost"}
    return LexiconProvider(LexiconConf("dns_pdns", "powerdns", options | {"auth_token": token}))


def test_requests_refusing_the_token_header_does_not_echo_it() -> None:
    """Review e18: requests refuses the header (InvalidHeader) and its message holds the
    token; the DnsUpdateError names the type and the cause, never the token."""
    with pytest.raises(DnsUpdateError) as info:
        _pdns(TOKEN).add_txt("example.org", {"_acme-challenge.example.org": ("v",)})
    assert "InvalidHeader" in str(info.value)
    assert TOKEN.strip() not in str(info.value)


def test_a_provider_error_holding_the_token_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A provider error that quotes the token, as written, stripped or URL-quoted, is
    logged with *** in its place."""
    token = "S3cr3t/T0ken+x y"
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    conf = LexiconConf("dns_pdns", "powerdns", {"mode": "refusing", "auth_token": token})
    provider = LexiconProvider(conf, module="tests.unit.lexicon_standin")
    with pytest.raises(DnsUpdateError) as info:
        provider.add_txt("example.org", {"_acme-challenge.example.org": ("v",)})
    text = str(info.value)
    assert "bad token '***' at https://api.example/?key=***" in text
    assert [f for f in (token, quote(token), "S3cr3t") if f in text] == []


def test_the_dns01_file_logs_names_not_values(tmp_path: Path) -> None:
    """Building the router from the review's dns-01.conf logs variable names and the line
    problem, never the token."""
    conf = tmp_path / "dns-01.conf"
    conf.write_text(f'PDNS_Url=http://127.0.0.1:9\nPDNS_Token="{TOKEN}"\n')
    conf.chmod(0o600)
    with capture_logs() as logs:
        build_router("dns_pdns", conf, 53)
    assert [e for e in logs if e["event"] == "dns01.config_line"]
    assert TOKEN.strip() not in repr(logs)


@pytest.mark.parametrize(
    ("text", "secret", "shown"),
    [
        ("header value ' tok3n-x'", " tok3n-x", "header value '***'"),
        ("url ?k=a%2Fb%20c", "a/b c", "url ?k=***"),
        ("url ?k=a%2Fb+c", "a/b c", "url ?k=***"),
        ("line 'ab\\ncd'", "ab\ncd", "line '***'"),
        ("port 8081 ttl 60", "8081", "port 8081 ttl 60"),  # digits: not a secret
    ],
)
def test_scrub_takes_every_form_out(text: str, secret: str, shown: str) -> None:
    """scrub replaces a secret as written, stripped, URL-quoted and escaped."""
    assert scrub(text, [secret]) == shown
