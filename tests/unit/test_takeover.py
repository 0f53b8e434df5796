"""The acme.sh takeover runs once per volume (review N4): the ledger's ``takeover_at`` marker,
later starts that move nothing (also after an ACME_KEY_TYPE change), and volumes acme-sidecar
used before the marker existed, whose in-use keys are never moved."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from acme_sidecar.adapters import acmesh
from acme_sidecar.adapters.volume import CertStore, keys
from acme_sidecar.adapters.volume.pem import load_key
from acme_sidecar.core.ledger import CertLedger, State
from acme_sidecar.core.model import CertSpec
from acme_sidecar.shell.takeover import take_over_once
from tests.unit.fakes import HOST, Clock, FakeIssuer

DIRECTORY = "https://acme-v02.api.letsencrypt.org/directory"


def _volume(root: Path, clock: Clock) -> dict[str, bytes]:
    """The volume as mailcow's DNS-01 setup leaves it: acme.sh's account and certificate keys
    under ``acme-sh/``, its certificate served at the top and in the hostname's directory,
    and mailcow's own (never served) RSA keys in ``acme/``. Returns every key by role."""
    home = root / "acme-sh"
    ca = acmesh.ca_dir(home, DIRECTORY)
    ca.mkdir(parents=True)
    (home / f"{HOST}_ecc").mkdir()
    found = {
        "acmesh_account": keys.new_pem("ec256"),
        "acmesh_cert": keys.new_pem("ec256"),
        "mailcow_account": keys.new_pem("rsa2048"),
        "mailcow_cert": keys.new_pem("rsa2048"),
    }
    (ca / "account.key").write_bytes(found["acmesh_account"])
    (home / f"{HOST}_ecc" / f"{HOST}.key").write_bytes(found["acmesh_cert"])
    (root / "acme").mkdir(mode=0o700, exist_ok=True)
    (root / "acme" / "account.pem").write_bytes(found["mailcow_account"])
    (root / "acme" / "key.pem").write_bytes(found["mailcow_cert"])
    cert = FakeIssuer(clock).sign(CertSpec(HOST, (HOST,)), found["acmesh_cert"])
    for target in (root / HOST, root):
        target.mkdir(exist_ok=True)
        (target / "cert.pem").write_bytes(cert)
        (target / "key.pem").write_bytes(found["acmesh_cert"])
    (root / HOST / "domains").write_text(HOST)
    return found


def _acme(store: CertStore) -> dict[str, bytes]:
    return {n: (store.layout.acme_dir / n).read_bytes() for n in ("account.pem", "key.pem")}


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but the lock and the ledger, with its content."""
    skip = {"acme/lock", "acme/state.json"}
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and str(p.relative_to(root)) not in skip
    }


def test_first_start_takes_over_and_records_when(tmp_path: Path) -> None:
    """On a volume acme-sidecar never used, mailcow's keys go to backups/acme/, acme.sh's
    are adopted, and the ledger records the start's time as the takeover's."""
    clock = Clock()
    found = _volume(tmp_path, clock)
    store = CertStore(tmp_path)
    take_over_once(store, DIRECTORY, clock())
    assert _acme(store) == {
        "account.pem": keys.to_pem(load_key(found["acmesh_account"])),
        "key.pem": keys.to_pem(load_key(found["acmesh_cert"])),
    }
    [backup] = (tmp_path / "backups" / "acme").iterdir()
    assert (backup / "key.pem").read_bytes() == found["mailcow_cert"]
    assert (backup / "account.pem").read_bytes() == found["mailcow_account"]
    assert store.ledger.load().takeover_at == clock()


def test_later_start_after_key_type_change_moves_nothing(tmp_path: Path) -> None:
    """After ACME_KEY_TYPE changes, acme.sh's key still serves and acme/key.pem is the new
    key: a later start skips the takeover; no file changes, the marker keeps its time."""
    clock = Clock()
    _volume(tmp_path, clock)
    store = CertStore(tmp_path)
    first = clock()
    take_over_once(store, DIRECTORY, first)
    store.keys.domain_key("rsa2048")  # the new key; the served certificates are still on the old
    before = _tree(tmp_path)
    clock.advance(timedelta(days=2).total_seconds())
    with capture_logs() as logs:
        take_over_once(store, DIRECTORY, clock())
    assert _tree(tmp_path) == before
    assert [e for e in logs if str(e["event"]).startswith("takeover.")] == []
    assert store.ledger.load().takeover_at == first


def _used_before(root: Path, evidence: str, clock: Clock) -> None:
    """What acme-sidecar left on the volume before the marker existed."""
    if evidence == "state.json":
        ledger = State(certs={HOST: CertLedger(placed=(clock(),))})
        (root / "acme" / "state.json").write_text(ledger.to_json())
    elif evidence == "damaged state.json":
        (root / "acme" / "state.json").write_text('{"version": 2, "certs": ')
    else:
        (root / "backups" / "acme" / "2026-11-01_00_00_00").mkdir(parents=True)


@pytest.mark.parametrize("evidence", ["state.json", "damaged state.json", "backups/acme"])
def test_upgraded_volume_keeps_keys_in_use(tmp_path: Path, evidence: str) -> None:
    """Review e20 on the first start after the upgrade (no marker): acme.sh's key serves,
    acme/key.pem is the sidecar's new key and account.pem its account; since acme-sidecar
    used the volume, nothing is moved, one line says why, and the marker is recorded."""
    clock = Clock()
    _volume(tmp_path, clock)
    store = CertStore(tmp_path)
    (store.layout.acme_dir / "key.pem").write_bytes(
        keys.new_pem("rsa2048")
    )  # ACME_KEY_TYPE=rsa2048
    (store.layout.acme_dir / "account.pem").write_bytes(keys.new_pem("ec256"))  # the sidecar's
    _used_before(tmp_path, evidence, clock)
    before = _acme(store)
    with capture_logs() as logs:
        take_over_once(store, DIRECTORY, clock())
    assert _acme(store) == before
    assert not (tmp_path / "backups" / "acme").is_dir() or evidence == "backups/acme"
    assert not [e for e in logs if e["event"] == "takeover.backed_up"]
    [kept] = [e for e in logs if e["event"] == "takeover.kept"]
    assert kept["path"] == "acme/key.pem"
    assert store.ledger.load().takeover_at == clock()


def test_upgraded_volume_adopts_only_a_missing_key(tmp_path: Path) -> None:
    """A volume acme-sidecar used whose acme/key.pem is gone: the served key is adopted
    (created), and the account key in use stays where it is; nothing goes to backups."""
    clock = Clock()
    found = _volume(tmp_path, clock)
    store = CertStore(tmp_path)
    _used_before(tmp_path, "state.json", clock)
    (store.layout.acme_dir / "key.pem").unlink()
    take_over_once(store, DIRECTORY, clock())
    assert keys.tlsa_311(load_key(store.layout.domain_key_path.read_bytes())) == keys.tlsa_311(
        load_key(found["acmesh_cert"])
    )
    assert (store.layout.acme_dir / "account.pem").read_bytes() == found["mailcow_account"]
    assert not (tmp_path / "backups").exists()


def test_busy_volume_is_left_alone(tmp_path: Path) -> None:
    """While another acme-sidecar holds the volume lock, the takeover moves nothing and
    records nothing (that process took over before its first cycle)."""
    clock = Clock()
    _volume(tmp_path, clock)
    store = CertStore(tmp_path)
    before = _tree(tmp_path)
    with CertStore(tmp_path).lock(), capture_logs() as logs:
        take_over_once(store, DIRECTORY, clock())
    assert _tree(tmp_path) == before
    assert [e["event"] for e in logs] == ["takeover.skipped"]
    assert not store.layout.state_path.exists()


def test_failed_takeover_is_not_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A takeover that fails (an unreadable volume) records no marker, so the next start
    tries again; the failure is one line."""
    clock = Clock()
    _volume(tmp_path, clock)
    store = CertStore(tmp_path)

    def broken(*args: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(acmesh, "_adopt", broken)
    with capture_logs() as logs:
        take_over_once(store, DIRECTORY, clock())
    assert [e["event"] for e in logs] == ["takeover.failed"]
    assert store.ledger.load().takeover_at is None


def test_volume_without_acmesh_is_not_touched(tmp_path: Path) -> None:
    """A volume with nothing of acme.sh gets nothing written (no acme/, no lock, no marker:
    SKIP_LETS_ENCRYPT=y leaves it as it is); an acme-sh/ that appears after the first cycle
    finds the ledger and moves no key in use."""
    clock = Clock()
    store = CertStore(tmp_path)
    take_over_once(store, DIRECTORY, clock())
    assert list(tmp_path.iterdir()) == []
    _volume(tmp_path, clock)  # acme/'s keys stand for the sidecar's, acme.sh's key serves
    _used_before(tmp_path, "state.json", clock)  # the first cycle's ledger
    before = _tree(tmp_path)
    take_over_once(store, DIRECTORY, clock())
    assert _tree(tmp_path) == before
    assert store.ledger.load().takeover_at == clock()


def test_missing_volume_is_left_to_the_cycle(tmp_path: Path) -> None:
    """A volume directory that does not exist yet is not created by the takeover."""
    store = CertStore(tmp_path / "ssl")
    take_over_once(store, DIRECTORY, Clock()())
    assert not (tmp_path / "ssl").exists()


def test_ledger_marker_round_trip_and_old_files() -> None:
    """A ledger without the marker (older files) loads with none and is written as before
    (no new key); a recorded marker survives a round trip."""
    old = '{"version": 2, "certs": {}, "deploy": null, "force_since": null}'
    assert State.from_json(old).takeover_at is None
    assert "takeover_at" not in State().to_json()
    when = Clock()()
    assert State.from_json(State(takeover_at=when).to_json()).takeover_at == when


def test_an_unwritable_volume_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A volume whose lock cannot be taken (read-only, full): one takeover.failed line, no
    file moved, no marker."""
    clock = Clock()
    _volume(tmp_path, clock)
    store = CertStore(tmp_path)
    before = _tree(tmp_path)

    def read_only(path: Path) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr("acme_sidecar.adapters.volume.files.try_lock", read_only)
    with capture_logs() as logs:
        take_over_once(store, DIRECTORY, clock())
    assert [e["event"] for e in logs] == ["takeover.failed"]
    assert _tree(tmp_path) == before and not store.layout.state_path.exists()
