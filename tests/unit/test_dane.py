"""DANE check (issue #17): the TLSA comparison (core.dane), Let's Encrypt's intermediates as data,
the hook that looks up and logs once (ops.dane), its metrics, alerts and settings."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from prometheus_client import CollectorRegistry

from acme_sidecar.config.settings import load_settings
from acme_sidecar.core import dane_le
from acme_sidecar.core.dane import Served, Status, Tlsa, TlsaAnswer, compare
from acme_sidecar.core.errors import ConfigError
from acme_sidecar.core.report import Outcome, Report
from acme_sidecar.ops.alerts import DANE_MISMATCH, Alerted, AlertState, step
from acme_sidecar.ops.dane import DaneCheck, load_state, status_rows
from acme_sidecar.ops.hooks import CycleEvent
from acme_sidecar.ops.metrics import Metrics
from tests.certs import CA, cert_pem, leaf

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)
HOST = "mail.example.org"
OWNER = f"_25._tcp.{HOST}"


def spki(cert: x509.Certificate) -> bytes:
    """The certificate's SubjectPublicKeyInfo (DER)."""
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


CA_ = CA.new("Test Intermediate")
LEAF = leaf([HOST], issuer=CA_)
CHAIN = cert_pem(LEAF) + CA_.pem
SERVED = Served.from_pem(CHAIN)
EE_311 = f"3 1 1 {hashlib.sha256(spki(LEAF)).hexdigest()}"
EE_312 = f"3 1 2 {hashlib.sha512(spki(LEAF)).hexdigest()}"
EE_301 = f"3 0 1 {hashlib.sha256(LEAF.public_bytes(Encoding.DER)).hexdigest()}"
TA_211 = f"2 1 1 {hashlib.sha256(spki(CA_.cert)).hexdigest()}"
OTHER = "3 1 1 " + "ab" * 32


def tlsa(*texts: str) -> tuple[Tlsa, ...]:
    out = []
    for text in texts:
        usage, selector, mtype, data = text.split()
        out.append(Tlsa(int(usage), int(selector), int(mtype), data))
    return tuple(out)


@pytest.mark.parametrize(
    ("records", "secure", "error", "status", "advised"),
    [
        ((EE_311,), True, "", Status.MATCH, False),
        ((EE_312,), True, "", Status.MATCH, False),
        ((OTHER, EE_311), True, "", Status.MATCH, False),
        ((EE_301,), True, "", Status.MATCH, True),
        ((TA_211,), True, "", Status.MATCH, True),
        ((TA_211, EE_311), True, "", Status.MATCH, False),
        ((OTHER,), True, "", Status.MISMATCH, False),
        (("1 1 1 " + hashlib.sha256(spki(LEAF)).hexdigest(),), True, "", Status.MISMATCH, False),
        ((EE_311,), False, "", Status.INSECURE, False),
        ((), True, "", Status.ABSENT, False),
        ((), False, "", Status.ABSENT, False),
        ((), False, "Timeout: 5 s", Status.UNKNOWN, False),
    ],
)
def test_dane_compare_table(
    records: tuple[str, ...], secure: bool, error: str, status: Status, advised: bool
) -> None:
    """Usage 3 matches the leaf (key or whole certificate), usage 2 a CA of the chain; usage 1
    never counts for SMTP; no AD is insecure; advice only when the match cannot last."""
    result = compare(HOST, 25, TlsaAnswer(tlsa(*records), secure, error), SERVED)
    assert (result.status, bool(result.advice)) == (status, advised)
    assert result.owner == OWNER
    assert result.record == f"{OWNER}. IN TLSA {EE_311}"


def test_dane_mismatch_says_what_to_publish() -> None:
    """A mismatch names the owner and the 3 1 1 record of the served key."""
    result = compare(HOST, 25, TlsaAnswer(tlsa(OTHER), True), SERVED)
    assert OWNER in result.reason and EE_311 in result.reason and "defer" in result.reason


def test_dane_211_of_another_ca_advises_311() -> None:
    """A 2 1 1 record of an issuer not in Let's Encrypt's table: the CA may change it."""
    result = compare(HOST, 25, TlsaAnswer(tlsa(TA_211), True), SERVED)
    assert "Test Intermediate" in result.advice and "random" in result.advice
    assert EE_311 in result.advice and "ACME_KEY_REUSE=y" in result.advice


def test_dane_211_against_lets_encrypts_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the served issuer one of Let's Encrypt's (here: YR1 stands for the test CA), a
    2 1 1 record holds only when the RRset covers every intermediate of the key's type that may
    issue (active and backup); the advice names them."""
    ca_hash = hashlib.sha256(spki(CA_.cert)).hexdigest()
    yr2, yr3 = "22" * 32, "33" * 32
    table = (
        dane_le.Intermediate("YR1", "ec", "active", "2028-09-02", ca_hash, "0" * 128),
        dane_le.Intermediate("YR2", "ec", "active", "2028-09-02", yr2, "1" * 128),
        dane_le.Intermediate("YR3", "ec", "backup", "2028-09-02", yr3, "2" * 128),
        dane_le.Intermediate("E5", "ec", "retired", "2027-03-12", "44" * 32, "3" * 128),
    )
    monkeypatch.setattr(dane_le, "INTERMEDIATES", table)
    one = compare(HOST, 25, TlsaAnswer(tlsa(TA_211), True), SERVED)
    assert one.status is Status.MATCH
    assert "now YR1" in one.advice and "YR1, YR2 at random" in one.advice
    assert "may move to YR3" in one.advice and "E5" not in one.advice
    every = tlsa(TA_211, f"2 1 1 {yr2}", f"2 1 1 {yr3}")
    assert compare(HOST, 25, TlsaAnswer(every, True), SERVED).advice == ""


def test_dane_lets_encrypt_table_is_consistent() -> None:
    """The table: unique names, 64/128 hex digits, RSA and ECDSA Generation Y issuing."""
    names = [i.name for i in dane_le.INTERMEDIATES]
    assert len(names) == len(set(names)) == 16
    for entry in dane_le.INTERMEDIATES:
        assert len(entry.spki_sha256) == 64 and len(entry.spki_sha512) == 128
        int(entry.spki_sha256 + entry.spki_sha512, 16)
    assert [i.name for i in dane_le.issuing("rsa")] == ["YR1", "YR2", "YR3"]
    assert [i.name for i in dane_le.issuing("ec")] == ["YE1", "YE2", "YE3"]
    r12 = "919c0df7a787b597ed056ace654b1de9c0387acf349f73734a4fd7b58cf612a4"
    assert (found := dane_le.by_key(r12)) is not None and found.name == "R12"


class FakeLookup:
    """TLSA answers per owner; counts the lookups."""

    def __init__(self, answer: TlsaAnswer) -> None:
        self.answer = answer
        self.calls = 0

    def __call__(self, host: str, port: int) -> TlsaAnswer:
        self.calls += 1
        return self.answer


def checker(tmp_path: Path, lookup: FakeLookup, chain: bytes = CHAIN) -> DaneCheck:
    (tmp_path / "cert.pem").write_bytes(chain)
    return DaneCheck(
        hosts=(HOST,),
        ports=(25,),
        interval=timedelta(hours=1),
        cert_file=tmp_path / "cert.pem",
        state=tmp_path / "run" / "dane.json",
        lookup=lookup,
    )


def at(minutes: float) -> CycleEvent:
    return CycleEvent(Report(Outcome.OK), {}, NOW + timedelta(minutes=minutes))


def test_dane_check_looks_up_on_new_certificate_or_interval(tmp_path: Path) -> None:
    """A quiet cycle looks nothing up; a new served certificate or the interval does; a new
    process (hook) reads the last check from the state file and does not look again."""
    lookup = FakeLookup(TlsaAnswer(tlsa(EE_311), True))
    check = checker(tmp_path, lookup)
    check.after_cycle(at(0))
    check.after_cycle(at(30))
    assert lookup.calls == 1
    assert checker(tmp_path, lookup).results()[0].status is Status.MATCH
    checker(tmp_path, lookup).after_cycle(at(31))
    assert lookup.calls == 1
    other = cert_pem(leaf([HOST], issuer=CA_)) + CA_.pem
    checker(tmp_path, lookup, other).after_cycle(at(32))
    assert lookup.calls == 2
    check = checker(tmp_path, lookup, other)
    check.after_cycle(at(32 + 60))
    assert lookup.calls == 3


def test_dane_check_without_served_certificate_does_nothing(tmp_path: Path) -> None:
    """No top-level cert.pem: no lookup, no state."""
    lookup = FakeLookup(TlsaAnswer(tlsa(EE_311), True))
    check = checker(tmp_path, lookup)
    (tmp_path / "cert.pem").unlink()
    check.after_cycle(at(0))
    assert lookup.calls == 0 and not (tmp_path / "run").exists()


def test_dane_results_are_logged_once_each(tmp_path: Path) -> None:
    """Each result is one line when it first appears or changes, none when it repeats: absent
    (info), insecure, mismatch, fragile (warnings), matched (info)."""
    lookup = FakeLookup(TlsaAnswer())
    check = checker(tmp_path, lookup)
    script = [
        TlsaAnswer(),
        TlsaAnswer(),
        TlsaAnswer(tlsa(EE_311), False),
        TlsaAnswer(tlsa(OTHER), True),
        TlsaAnswer(tlsa(OTHER), True),
        TlsaAnswer(tlsa(TA_211), True),
        TlsaAnswer(tlsa(EE_311), True),
    ]
    with structlog.testing.capture_logs() as logs:
        for i, answer in enumerate(script):
            lookup.answer = answer
            check.after_cycle(at(61 * i))
    events = [(e["event"], e["log_level"]) for e in logs]
    assert events == [
        ("dane.absent", "info"),
        ("dane.insecure", "warning"),
        ("dane.mismatch", "warning"),
        ("dane.fragile", "warning"),
        ("dane.matched", "info"),
    ]
    assert lookup.calls == len(script)
    assert all(e["tlsa"] == OWNER for e in logs)


def test_dane_state_file_feeds_status(tmp_path: Path) -> None:
    """The state file holds each result with its reason; status shows it."""
    lookup = FakeLookup(TlsaAnswer(tlsa(TA_211), True))
    checker(tmp_path, lookup).after_cycle(at(0))
    rows = status_rows(tmp_path / "run" / "dane.json")
    assert rows is not None and rows["checked"] == NOW.isoformat()
    (row,) = rows["results"]
    assert row["tlsa"] == OWNER and row["status"] == "match"
    assert "pins the issuing CA" in row["advice"] and row["publish"].endswith(EE_311)
    assert status_rows(tmp_path / "missing.json") is None
    (tmp_path / "run" / "dane.json").write_text("{damaged")
    assert load_state(tmp_path / "run" / "dane.json").results == ()


def test_dane_mismatch_is_an_alert_resolved_when_fixed(tmp_path: Path) -> None:
    """A mismatch is a notice (alert at once); a match later resolves it."""
    lookup = FakeLookup(TlsaAnswer(tlsa(OTHER), True))
    check = checker(tmp_path, lookup)
    check.after_cycle(at(0))
    (notice,) = check.notices()
    assert notice.key == f"dane:{OWNER}" and notice.event == DANE_MISMATCH
    first = step(AlertState(), ["mail"], check.notices(), NOW, alert_after=timedelta(days=1))
    assert [n.key for n in first.fire["mail"]] == [notice.key]
    sent = AlertState(alerted={"mail": {notice.key: Alerted(NOW, notice.summary)}})
    lookup.answer = TlsaAnswer(tlsa(EE_311), True)
    check.after_cycle(at(61))
    assert check.notices() == []
    later = step(sent, ["mail"], check.notices(), NOW, alert_after=timedelta(days=1))
    (resolved,) = later.resolve["mail"]
    assert resolved.event == DANE_MISMATCH and OWNER in resolved.summary


def test_dane_match_gauge(tmp_path: Path) -> None:
    """dane_match is 1 on a match, 0 on a mismatch, absent without TLSA records."""
    lookup = FakeLookup(TlsaAnswer(tlsa(EE_311), True))
    check = checker(tmp_path, lookup)
    registry = CollectorRegistry()
    metrics = Metrics(registry, dane=check.results)
    labels = {"host": HOST, "port": "25"}
    check.after_cycle(at(0))
    metrics.after_cycle(at(0))
    assert registry.get_sample_value("acme_sidecar_dane_match", labels) == 1
    lookup.answer = TlsaAnswer(tlsa(OTHER), True)
    check.after_cycle(at(61))
    metrics.after_cycle(at(61))
    assert registry.get_sample_value("acme_sidecar_dane_match", labels) == 0
    lookup.answer = TlsaAnswer()
    check.after_cycle(at(122))
    metrics.after_cycle(at(122))
    assert registry.get_sample_value("acme_sidecar_dane_match", labels) is None


def test_dane_settings_defaults_and_errors(tmp_path: Path) -> None:
    """Defaults: check, port 25, MAILCOW_HOSTNAME, the system resolver, state next to the
    health file; publish is taken; anything else is one line naming the three modes."""
    base = {"MAILCOW_HOSTNAME": "Mail.Example.org", "ACME_HEALTH_FILE": str(tmp_path / "h.json")}
    settings = load_settings(base)
    assert settings.acme_dane == "check" and settings.acme_dane_ports == (25,)
    assert settings.dane_hosts == ("mail.example.org",) and settings.acme_dane_resolver == ()
    assert settings.dane_state == tmp_path / "h-dane.json"
    assert settings.acme_dane_interval == 3600
    more = load_settings(
        base
        | {
            "ACME_DANE_PORTS": "25, 465,587",
            "ACME_DANE_HOSTS": "mx1.example.org,MX2.example.org",
            "ACME_DANE_RESOLVER": "127.0.0.1:5353",
            "ACME_DANE_INTERVAL": "10m",
        }
    )
    assert more.acme_dane_ports == (25, 465, 587)
    assert more.dane_hosts == ("mx1.example.org", "mx2.example.org")
    assert more.acme_dane_resolver == ("127.0.0.1:5353",) and more.acme_dane_interval == 600
    assert load_settings(base | {"ACME_DANE": " Publish"}).acme_dane == "publish"
    with pytest.raises(ConfigError, match=r"ACME_DANE.*check.*publish.*off"):
        load_settings(base | {"ACME_DANE": "yes"})
    for name, value in (
        ("ACME_DANE", "yes"),
        ("ACME_DANE_PORTS", "smtp"),
        ("ACME_DANE_RESOLVER", "dns.example"),
        ("ACME_DANE_HOSTS", "not a host"),
    ):
        with pytest.raises(ConfigError, match=name):
            load_settings(base | {name: value})


def test_dane_state_round_trips(tmp_path: Path) -> None:
    """What a check saved is read back as it was (a restart neither forgets nor repeats)."""
    lookup = FakeLookup(TlsaAnswer(tlsa(OTHER), True))
    check = checker(tmp_path, lookup)
    check.after_cycle(at(0))
    saved = json.loads((tmp_path / "run" / "dane.json").read_text())
    assert saved["results"][0]["status"] == "mismatch"
    again = load_state(tmp_path / "run" / "dane.json")
    assert again.results == check.results() and again.checked == NOW
