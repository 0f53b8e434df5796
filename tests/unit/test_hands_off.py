"""Issue #15 item 5, SKIP_LETS_ENCRYPT=y hands off: a self-signed pair is named by its CN
(mailcow's snake-oil has no subjectAltName), the watch cycle writes no certificate file, and a
bad pair is one warning, once, and not a failed cycle. Real crypto, a real volume, fake
consumers and an injected clock."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID
from structlog.testing import capture_logs

from acme_sidecar.adapters.volume.toppair import inspect_pair
from acme_sidecar.config.policies import CyclePolicy, OwnPolicy
from acme_sidecar.core.discover import NameRules
from acme_sidecar.core.ledger import State
from acme_sidecar.core.own import Link, PairFacts, pair_names, pair_problems
from acme_sidecar.core.report import Outcome
from acme_sidecar.shell.watch import watch_cycle
from tests.certs import CA, cert_pem, key_pem, leaf, new_key
from tests.unit.fakes import HOST, Clock, World

NOW = Clock().now


def snake_oil(hostname: str = HOST, now: datetime = NOW) -> tuple[bytes, bytes]:
    """A pair shaped like mailcow's: self-signed, ``C=DE/ST=NRW/L=Willich/O=mailcow/OU=mailcow/
    CN=<hostname>``, no subjectAltName, CA:TRUE (``openssl req -x509``'s v3_ca), 365 days."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "NRW"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Willich"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mailcow"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "mailcow"),
            x509.NameAttribute(NameOID.COMMON_NAME, hostname),
        ]
    )
    key = new_key()
    basic = x509.BasicConstraints(ca=True, path_length=None)
    cert = leaf([], key=key, subject=subject, not_before=now - timedelta(days=1), days=365,
                extra=[basic])  # fmt: skip
    return cert_pem(cert), key_pem(key)


def chainless(now: datetime = NOW) -> tuple[bytes, bytes]:
    """A pair from a private CA whose cert.pem holds the certificate only, not its issuer."""
    ca = CA.new("Own Test CA", organization="Example Corp", not_before=now - timedelta(days=30))
    key = new_key()
    cert = leaf([HOST], key=key, issuer=ca, not_before=now - timedelta(days=1), days=90)
    return cert_pem(cert), key_pem(key)


def facts(**kw: object) -> PairFacts:
    base: dict[str, object] = {
        "fingerprint": "f",
        "chain": (Link(f"CN={HOST}", f"CN={HOST}"),),
        "names": (),
        "not_before": NOW - timedelta(days=1),
        "not_after": NOW + timedelta(days=300),
        "key_matches": True,
        "self_signed": True,
        "common_name": HOST,
    }
    return PairFacts(**(base | kw))  # type: ignore[arg-type]


def test_a_self_signed_pair_without_san_is_named_by_its_cn() -> None:
    """A self-signed leaf without subjectAltName answers for its CN (any case)."""
    assert pair_names(facts()) == (HOST,)
    assert pair_names(facts(common_name=HOST.upper())) == (HOST,)
    assert pair_problems(facts(common_name=HOST.upper()), HOST, NOW) == []


def test_the_cn_counts_only_for_a_self_signed_pair_without_san() -> None:
    """A CA-issued leaf is named by its SAN only; a SAN, when present, wins over the CN."""
    issued = facts(self_signed=False, chain=(Link(f"CN={HOST}", "CN=CA", True), Link("CN=CA", "")))
    assert pair_names(issued) == ()
    assert "do not cover MAILCOW_HOSTNAME" in pair_problems(issued, HOST, NOW)[0]
    other = facts(names=("other.example.test",))
    assert pair_names(other) == ("other.example.test",)
    assert "do not cover MAILCOW_HOSTNAME" in pair_problems(other, HOST, NOW)[0]


def test_a_snake_oil_for_another_host_or_expired_is_still_refused() -> None:
    """The snake-oil of another hostname, or one past its 365 days, is not served."""
    assert "do not cover" in pair_problems(facts(common_name="x.example.test"), HOST, NOW)[0]
    expired = facts(not_after=NOW - timedelta(seconds=1))
    assert "expired" in pair_problems(expired, HOST, NOW)[0]


def test_mailcow_snake_oil_is_read_whole() -> None:
    """inspect_pair on a snake-oil-shaped pair: self-signed, no SAN, CN read, nothing wrong."""
    got = inspect_pair(*snake_oil())
    assert got.self_signed and got.names == () and got.common_name == HOST
    assert "O=mailcow" in got.subject and got.subject == got.issuer
    assert pair_problems(got, HOST, NOW) == []


def _files(root: Path) -> dict[str, tuple[str, int, int]]:
    notes = {"acme/state.json", "acme/lock"}
    out = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_file() and name not in notes:
            st = path.stat()
            out[name] = (hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns, st.st_mode)
    return out


def _policy() -> CyclePolicy:
    own = OwnPolicy(hostname=HOST, skip_lets_encrypt=True, hold_still=0)
    return CyclePolicy(rules=NameRules(hostname=HOST), own=own)


def _write(root: Path, pair: tuple[bytes, bytes]) -> None:
    (root / "cert.pem").write_bytes(pair[0])
    (root / "key.pem").write_bytes(pair[1])
    (root / "key.pem").chmod(0o644)  # as an admin's cp may leave it


def test_watch_deploys_the_snake_oil_and_writes_no_certificate_file(tmp_path: Path) -> None:
    """SKIP_LETS_ENCRYPT=y, mailcow's snake-oil: one own.accepted line saying it is
    self-signed, the consumers are reloaded once, the cycle is OK, and no file but the ledger
    and the lock is written (no acme/own copy, no backup, key.pem keeps its mode)."""
    root = tmp_path / "ssl"
    root.mkdir()
    _write(root, snake_oil())
    world = World(root)  # it writes acme/key.pem: part of "before"
    before = _files(root)
    with capture_logs() as logs:
        first = watch_cycle(_policy(), world.deps())
        second = watch_cycle(_policy(), world.deps(), first.state, quiet=True)
    assert first.outcome is Outcome.OK and second.outcome is Outcome.OK
    (accepted,) = [e for e in logs if e["event"] == "own.accepted"]
    assert accepted["self_signed"] is True and "self-signed" in accepted["note"]
    assert accepted["names"] == HOST
    assert [e["event"] for e in logs if e["event"].startswith("own.")] == ["own.accepted"]
    assert len(world.services.calls) == 1 and first.applied
    assert _files(root) == before
    assert not (root / "acme" / "own").exists() and not (root / "backups").exists()


def test_a_bad_pair_is_one_warning_and_no_failure(tmp_path: Path) -> None:
    """SKIP_LETS_ENCRYPT=y, a pair without its chain: one own.refused warning, not deployed,
    no file touched; later looks (even from a fresh start on the same ledger) say nothing and
    every cycle is OK (no ACME_FAIL_TIME); a corrected pair is then deployed."""
    root = tmp_path / "ssl"
    root.mkdir()
    _write(root, chainless())
    world = World(root)
    before = _files(root)
    with capture_logs() as logs:
        reports = [watch_cycle(_policy(), world.deps(), State())]
        for _ in range(3):
            reports.append(watch_cycle(_policy(), world.deps(), reports[-1].state, quiet=True))
        reports.append(watch_cycle(_policy(), world.deps(), quiet=True))  # a restart
    assert [r.outcome for r in reports] == [Outcome.OK] * 5
    assert [r.failed for r in reports] == [0] * 5
    (refused,) = [e for e in logs if e["event"].startswith("own.")]
    assert refused["event"] == "own.refused" and refused["log_level"] == "warning"
    assert "the chain is incomplete" in refused["problems"] and "not deployed" in refused["action"]
    assert world.services.calls == [] and _files(root) == before

    _write(root, snake_oil())
    with capture_logs() as logs:
        fixed = watch_cycle(_policy(), world.deps(), reports[-1].state, quiet=True)
    assert fixed.outcome is Outcome.OK and fixed.applied
    assert [e["event"] for e in logs if e["event"].startswith("own.")] == ["own.accepted"]
