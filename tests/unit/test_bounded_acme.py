"""The CA calls are bounded: the real ``AcmeNetwork``, ARI and the CAA lookup against loopback
servers that never answer, drip one byte every 0.1 s, or send 100 MiB.

Each call gets a 0.5 s deadline. What is checked is the error (its kind and that it names the
URL), that the server saw the connection closed, and that no thread or socket is left.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from acme_sidecar.adapters.acme.directory import caa_identities
from acme_sidecar.adapters.acme.issuer import AcmeIssuer
from acme_sidecar.adapters.acme.session import AcmeNetwork, Session, requests_network
from acme_sidecar.adapters.acme.translate import kind_of
from acme_sidecar.adapters.acme.windows import RenewalInfo
from acme_sidecar.adapters.acme.wire import CHAIN_CAP, JSON_CAP, PEM_CHAIN
from acme_sidecar.core.errors import CaUnreachable
from acme_sidecar.core.model import CertSpec, FailureKind, IssueFailure
from tests.unit.loopback import (
    HUGE,
    Loopback,
    Respond,
    above,
    counts,
    drip_body,
    drip_head,
    hang,
    huge,
    replies,
    reply,
    settled,
    tls_server,
)

DEADLINE = 0.5
DRIPPED = 50  # bytes a drip sends in 5 s: ten times the deadline, half of its 100-byte body
SLOW = {"never answers": hang, "drips the body": drip_body, "drips the headers": drip_head}
DIRECTORY = json.dumps(
    {"newNonce": "http://127.0.0.1:1/nonce", "newAccount": "http://127.0.0.1:1/acct"}
).encode()


def account_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def network() -> AcmeNetwork:
    key = ec.generate_private_key(ec.SECP256R1())
    return AcmeNetwork(JWKEC(key=key), alg=ES256, deadline=DEADLINE, allow_http=True)


def connect(url: str) -> CaUnreachable:
    """The error of connecting a session (directory, then account) to ``url``."""
    session = Session(
        url, account_pem(), requests_network(True, deadline=DEADLINE, allow_http=True)
    )
    with pytest.raises(CaUnreachable) as info:
        session.connect()
    return info.value


@pytest.mark.parametrize("respond", SLOW.values(), ids=SLOW.keys())
def test_a_slow_ca_is_cut_off_at_the_deadline(respond: Respond) -> None:
    """A CA that never answers or drips one byte every 0.1 s is ``CaUnreachable`` at the
    deadline (per-read timeouts never trip), naming the URL; the socket is closed and the
    request left no thread behind."""
    with Loopback(respond) as server:
        before = counts()
        error = connect(server.url + "/dir")
        after = settled(before, server.closed)
    assert str(error) == f"the CA at {server.url}/dir: no complete answer within 0.5s"
    assert kind_of(error) is FailureKind.SYSTEMIC
    assert server.sent < DRIPPED and server.closed.is_set() and not above(after, before)


def test_a_huge_ca_answer_is_cut_off_at_the_cap() -> None:
    """A 100 MiB JSON answer is ``CaUnreachable`` once 1 MiB is read; the rest is never
    read (the server could not send it) and the socket is closed."""
    with Loopback(huge()) as server:
        before = counts()
        error = connect(server.url + "/dir")
        after = settled(before, server.closed)
    assert str(error) == f"the CA at {server.url}/dir: the answer is longer than {JSON_CAP} bytes"
    assert kind_of(error) is FailureKind.SYSTEMIC
    assert server.sent < HUGE and not above(after, before)


def test_a_certificate_chain_gets_the_larger_cap() -> None:
    """A certificate chain may be up to CHAIN_CAP (more than JSON_CAP); one byte more is cut."""
    fits = reply(b"-" * (JSON_CAP + 1), PEM_CHAIN)
    with Loopback(replies(fits)) as server:
        got = network().get(server.url + "/cert", content_type=PEM_CHAIN)
    assert len(got.content) == JSON_CAP + 1
    with Loopback(huge(PEM_CHAIN, CHAIN_CAP + 1)) as server, pytest.raises(CaUnreachable) as info:
        network().get(server.url + "/cert", content_type=PEM_CHAIN)
    assert str(info.value).endswith(f"the answer is longer than {CHAIN_CAP} bytes")


def test_a_kept_alive_connection_is_bounded_too() -> None:
    """The second request on a pooled (kept-alive) connection is cut off at its own deadline:
    a socket taken up again from the pool is watched like a new one."""
    with Loopback(replies(reply(DIRECTORY), drip_body)) as server:
        net = network()
        assert net.get(server.url + "/dir").json()["newNonce"]
        with pytest.raises(CaUnreachable, match=r"no complete answer within 0\.5s"):
            net.get(server.url + "/order")
    assert server.connections == 1 and server.sent < DRIPPED


def test_a_hung_ca_backs_the_order_off(tmp_path: Path) -> None:
    """Through the issuer: a CA that never answers makes each order a SYSTEMIC failure (the
    retry ladder of any CA fault) whose reason names the URL."""
    with Loopback(hang) as server:
        issuer = AcmeIssuer(
            directory_url=server.url + "/dir",
            account_pem=account_pem(),
            webroot=tmp_path,
            network_factory=requests_network(True, deadline=DEADLINE, allow_http=True),
        )
        spec = CertSpec("mail.example.org", ("mail.example.org",))
        [result] = issuer.issue_all([spec], account_pem())
    assert isinstance(result, IssueFailure) and result.kind is FailureKind.SYSTEMIC
    assert f"{server.url}/dir: no complete answer within 0.5s" in result.reason


# --- ARI and the CAA identities ------------------------------------------------------------


@pytest.mark.parametrize("respond", [*SLOW.values(), huge()], ids=[*SLOW.keys(), "is huge"])
def test_renewal_info_is_bounded(tmp_path: Path, respond: Respond) -> None:
    """An ARI endpoint (over TLS) that never answers, drips or sends 100 MiB is an answer with
    an error naming the URL, at the deadline or the cap; nothing is left open."""
    context, bundle = tls_server(tmp_path)
    with Loopback(hang, tls=context) as server:
        directory = json.dumps({"renewalInfo": server.url + "/ari"}).encode()
        server.respond = replies(reply(directory), respond)
        windows = RenewalInfo(server.url + "/dir", str(bundle), timeout=DEADLINE)
        before = counts()
        answer = windows.fetch("abc.def")
        windows.close()
        after = settled(before, server.closed)
    bound = "no complete answer within 0.5s" if respond in SLOW.values() else f"{JSON_CAP} bytes"
    assert answer.error.startswith(f"renewalInfo {server.url}/ari/abc.def: ")
    assert answer.error.endswith(bound) and answer.data is None
    assert server.sent < (HUGE if respond not in SLOW.values() else DRIPPED) and not above(
        after, before
    )


def test_renewal_info_names_a_hung_directory() -> None:
    """A directory that never answers gives every ARI answer an error naming its URL."""
    with Loopback(hang) as server:
        answer = RenewalInfo(server.url + "/dir", timeout=DEADLINE).fetch("abc.def")
    assert answer.error == (
        f"cannot read the ACME directory {server.url}/dir: no complete answer within 0.5s"
    )


@pytest.mark.parametrize("respond", [drip_head, huge()], ids=["drips", "is huge"])
def test_caa_identities_fall_back_on_a_bad_directory(
    monkeypatch: pytest.MonkeyPatch, respond: Respond
) -> None:
    """The CAA identities lookup of the directory is bounded too: the fallback is used."""
    monkeypatch.setattr("acme_sidecar.adapters.acme.directory.CAA_DEADLINE", DEADLINE)
    with Loopback(respond) as server:
        assert caa_identities(server.url + "/dir", None) == ()
        assert server.sent < HUGE
