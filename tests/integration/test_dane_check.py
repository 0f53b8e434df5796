"""Issue #17 item 4: ``ACME_DANE=check`` against a real DNSSEC-signed BIND and a validating
BIND, with the certificate Pebble issued: a ``2 1 1`` record, a TLSA record that matches no key
and an unsigned answer each give one warning and ``status`` shows why; a matching ``3 1 1`` gives
``dane_match`` 1 and no warning; no TLSA records is one info line. Through ``python -m
acme_sidecar once``/``status``/``run``."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.sidecar import HOST, Daemon, Run, base_env, seed, sidecar
from tests.world import World
from tests.world.dane import DaneDNS
from tests.world.proc import free_port

OWNER = f"_25._tcp.{HOST}"
WARNINGS = ("dane.mismatch", "dane.fragile", "dane.insecure", "dane.lookup_failed")


@dataclass(frozen=True)
class Issued:
    """A volume holding Pebble's certificate for ``HOST`` and the settings to check it."""

    env: dict[str, str]
    volume: Path
    leaf: x509.Certificate
    issuer: x509.Certificate

    def record(self, usage: int, cert: x509.Certificate) -> str:
        """``<usage> 1 1`` of ``cert``'s key."""
        der = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return f"{usage} 1 1 {hashlib.sha256(der).hexdigest()}"


@pytest.fixture(scope="module")
def issued(
    world: World, dane_dns: DaneDNS, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Issued]:
    """One ``once`` run issues the hostname's certificate (no TLSA records yet)."""
    seed(world, [])
    volume = tmp_path_factory.mktemp("dane") / "ssl"
    volume.mkdir()
    env = base_env(world, volume) | {
        "ACME_DANE_RESOLVER": f"{dane_dns.resolver_host}:{dane_dns.resolver_port}",
        "ACME_DANE_INTERVAL": "0s",
    }
    dane_dns.set_tlsa(OWNER)
    dane_dns.wait_tlsa(OWNER, [])
    first = sidecar(env, "once")
    assert first.code == 0, first.stderr[-3000:]
    chain = x509.load_pem_x509_certificates((volume / "cert.pem").read_bytes())
    assert HOST in chain[0].extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    absent = first.named("dane.absent")
    assert [e["tlsa"] for e in absent] == [OWNER]
    yield Issued(env, volume, chain[0], chain[1])


def check(issued: Issued, tmp_path: Path, **extra: str) -> tuple[Run, dict[str, Any]]:
    """``once`` then ``status --json`` with a fresh DANE state file (nothing told before)."""
    env = issued.env | {"ACME_DANE_STATE": str(tmp_path / "dane.json"), **extra}
    run = sidecar(env, "once")
    assert run.code == 0, run.stderr[-3000:]
    status = sidecar(env, "status", "--json")
    assert status.code == 0, status.stderr[-3000:]
    return run, json.loads(status.stdout)["dane"]


def dane_lines(run: Run) -> list[dict[str, Any]]:
    """The run's ``dane.*`` log lines."""
    return [e for e in run.events if str(e.get("event", "")).startswith("dane.")]


def test_dane_check_211_warns_once_and_status_says_why(
    issued: Issued, dane_dns: DaneDNS, tmp_path: Path
) -> None:
    """``2 1 1`` of the issuing CA: it matches today, and one warning says it pins the CA's
    key, which may change at a renewal, and recommends ``3 1 1`` with key reuse."""
    record = issued.record(2, issued.issuer)
    dane_dns.set_tlsa(OWNER, record)
    dane_dns.wait_tlsa(OWNER, [record])
    run, dane = check(issued, tmp_path)
    lines = dane_lines(run)
    assert [(e["event"], e["level"]) for e in lines] == [("dane.fragile", "warning")]
    assert "pins the issuing CA's key" in lines[0]["reason"]
    assert issued.record(3, issued.leaf) in lines[0]["reason"]
    (row,) = dane["results"]
    assert (row["tlsa"], row["status"]) == (OWNER, "match")
    assert "ACME_KEY_REUSE=y" in row["advice"] and "random" in row["advice"]


def test_dane_check_mismatch_warns_once_and_status_says_why(
    issued: Issued, dane_dns: DaneDNS, tmp_path: Path
) -> None:
    """A ``3 1 1`` record of another key: one ``dane.mismatch`` warning naming the record to
    publish; ``status`` shows the mismatch and the reason."""
    record = "3 1 1 " + "ab" * 32
    dane_dns.set_tlsa(OWNER, record)
    dane_dns.wait_tlsa(OWNER, [record])
    run, dane = check(issued, tmp_path)
    lines = dane_lines(run)
    assert [(e["event"], e["level"]) for e in lines] == [("dane.mismatch", "warning")]
    assert issued.record(3, issued.leaf) in lines[0]["reason"]
    (row,) = dane["results"]
    assert (row["tlsa"], row["status"]) == (OWNER, "mismatch")
    assert "defer" in row["reason"] and row["publish"].endswith(issued.record(3, issued.leaf))


def test_dane_check_unsigned_answer_warns_once(
    issued: Issued, dane_dns: DaneDNS, tmp_path: Path
) -> None:
    """TLSA records in an unsigned zone (no AD bit): one warning that DANE needs DNSSEC."""
    owner = f"_25._tcp.mail.{dane_dns.plain_zone}"
    record = issued.record(3, issued.leaf)
    dane_dns.set_tlsa(owner, record)
    run, dane = check(issued, tmp_path, ACME_DANE_HOSTS=f"mail.{dane_dns.plain_zone}")
    lines = dane_lines(run)
    assert [(e["event"], e["level"]) for e in lines] == [("dane.insecure", "warning")]
    assert "DNSSEC" in lines[0]["reason"]
    assert [(r["tlsa"], r["status"]) for r in dane["results"]] == [(owner, "insecure")]


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The metrics at ``url``: (name, labels) -> value."""
    text = requests.get(url, timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_dane_check_311_matches_in_run_with_dane_match_1(
    issued: Issued, dane_dns: DaneDNS, tmp_path: Path
) -> None:
    """``3 1 1`` of the served key: ``run`` logs one ``dane.matched`` info line and no
    warning, and ``/metrics`` shows ``dane_match`` 1 for the host and port."""
    record = issued.record(3, issued.leaf)
    dane_dns.set_tlsa(OWNER, record)
    dane_dns.wait_tlsa(OWNER, [record])
    port = free_port()
    env = issued.env | {
        "ACME_DANE_STATE": str(tmp_path / "dane.json"),
        "ACME_METRICS_PORT": str(port),
        "ACME_METRICS_ADDRESS": "127.0.0.1",
    }
    daemon = Daemon(env)
    key = ("acme_sidecar_dane_match", (("host", HOST), ("port", "25")))
    try:
        matched = daemon.wait_for("dane.matched")
        deadline = time.monotonic() + 10
        samples = scrape(f"http://127.0.0.1:{port}/metrics")
        while key not in samples and time.monotonic() < deadline:
            time.sleep(0.1)
            samples = scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        stopped = daemon.stop()
    assert stopped == 0
    assert matched["tlsa"] == OWNER and record in matched["records"]
    assert samples[key] == 1
    seen = [json.loads(line) for line in daemon.seen if line.startswith("{")]
    assert [e["event"] for e in seen if e["event"] in WARNINGS] == []
