"""Issue #17: the DANE test world works: a signed zone that validates, TLSA records set with
``nsupdate`` and seen with the AD bit, and a sending Postfix that delivers over DANE-verified
TLS when the TLSA record matches the receiver's key and defers the message when it does not."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.certs import write_pair
from tests.integration.sidecar import HOST
from tests.world.dane import DaneDNS
from tests.world.postfix import PostfixSender
from tests.world.smtp_receiver import SmtpReceiver


def spki_sha256(cert_pem: Path) -> str:
    """The ``3 1 1`` association data of the certificate in ``cert_pem``."""
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[SmtpReceiver]:
    """The receiving side: STARTTLS with a pair for ``mail.example.test``."""
    write_pair(tmp_path / "ssl", [HOST], domains_file=False)
    server = SmtpReceiver(tmp_path / "ssl")
    server.start()
    yield server
    server.stop()


def dane_sender(workdir: Path, dane_dns: DaneDNS, receiver: SmtpReceiver) -> PostfixSender:
    """Postfix relaying everything to ``[mail.example.test]:<receiver port>`` with DANE,
    resolving through the validating resolver (not started)."""
    return PostfixSender(
        workdir, resolver=dane_dns.resolver_host, relay_host=HOST, relay_port=receiver.port
    )


@pytest.fixture
def sender(tmp_path: Path, dane_dns: DaneDNS, receiver: SmtpReceiver) -> Iterator[PostfixSender]:
    """Postfix relaying everything to ``[mail.example.test]:<receiver port>`` with DANE."""
    postfix = dane_sender(tmp_path / "postfix", dane_dns, receiver)
    postfix.start()
    yield postfix
    postfix.stop()


def test_dane_world_signed_zone_validates(dane_dns: DaneDNS) -> None:
    """The validating resolver answers the signed zone with the AD bit, the unsigned one
    without it."""
    assert dane_dns.validated(HOST, "A") == (["127.0.0.1"], True)
    assert dane_dns.validated(f"mail.{dane_dns.plain_zone}", "A") == (["127.0.0.1"], False)


def test_dane_world_tlsa_from_nsupdate_is_seen_with_ad(dane_dns: DaneDNS) -> None:
    """A TLSA record added with ``nsupdate`` comes back from the resolver with the AD bit; a
    deleted one is gone."""
    owner = f"_2525._tcp.{HOST}"
    record = "3 1 1 " + "5a" * 32
    dane_dns.set_tlsa(owner, record)
    dane_dns.wait_tlsa(owner, [record])
    assert dane_dns.validated(owner, "TLSA") == ([record], True)
    dane_dns.set_tlsa(owner)
    dane_dns.wait_tlsa(owner, [])
    assert dane_dns.validated(owner, "TLSA") == ([], True)


def test_dane_world_postfix_delivers_on_match_and_defers_on_mismatch(
    dane_dns: DaneDNS, sender: PostfixSender, receiver: SmtpReceiver
) -> None:
    """With ``3 1 1`` of the receiver's key, Postfix delivers over DANE-verified TLS; with a
    record of another key it defers the message (the certificate is not verified)."""
    owner = f"_{receiver.port}._tcp.{HOST}"
    good = f"3 1 1 {spki_sha256(receiver.pair_dir / 'cert.pem')}"
    dane_dns.set_tlsa(owner, good)
    dane_dns.wait_tlsa(owner, [good])
    matched = sender.send("dane match")
    assert sender.outcome(matched) == "sent"
    assert len(receiver.messages) == 1 and "Subject: dane match" in receiver.messages[0].body
    verified = [line for line in sender.log().splitlines() if "Verified TLS connection" in line]
    assert len(verified) == 1 and f"{HOST}[127.0.0.1]:{receiver.port}" in verified[0]

    wrong = "3 1 1 " + "00" * 32
    dane_dns.set_tlsa(owner, wrong)
    dane_dns.wait_tlsa(owner, [wrong])
    refused = sender.send("dane mismatch")
    assert sender.outcome(refused) == "deferred"
    status = [line for line in sender.lines(refused) if "status=deferred" in line]
    assert "Server certificate not verified" in status[0]
    assert len(receiver.messages) == 1
