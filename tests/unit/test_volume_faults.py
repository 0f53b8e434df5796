"""The certificate volume under faults: short and failing writes, links, damage, the lock."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from acme_sidecar.adapters.volume import CertStore, VolumeBusy
from acme_sidecar.adapters.volume.pem import load_chain, load_key
from acme_sidecar.core.errors import StoreError
from acme_sidecar.core.ledger import State
from acme_sidecar.core.model import CertSpec
from tests.certs import make_cert, make_key

SPEC = CertSpec("mail.example.org", ("mail.example.org", "autoconfig.a.test"))

REAL_WRITE = os.write
REPO = Path(__file__).resolve().parents[2]


def files_of(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (links not followed) with its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def stored(tmp_path: Path) -> CertStore:
    """A prepared volume holding one certificate directory."""
    store = CertStore(tmp_path)
    store.prepare()
    key, pem = make_key()
    store.certs.write_cert(SPEC, make_cert(key, SPEC.domains), pem)
    return store


def new_pair() -> tuple[bytes, bytes]:
    key, pem = make_key()
    return make_cert(key, SPEC.domains), pem


def fd_path(fd: int) -> str:
    """The path of open file ``fd``."""
    return str(Path(f"/proc/self/fd/{fd}").readlink())


def fake_write(
    monkeypatch: pytest.MonkeyPatch, affected: Callable[[str], bool], fault: Callable[[bytes], int]
) -> None:
    """Make ``os.write`` misbehave (``fault`` gets the data) for files whose path is affected."""

    def write(fd: int, data: bytes) -> int:
        if affected(fd_path(fd)):
            return fault(bytes(data))
        return REAL_WRITE(fd, data)

    monkeypatch.setattr(os, "write", write)


def no_space(_: bytes) -> int:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def pair_of(directory: Path) -> tuple[bytes, bytes]:
    return (directory / "cert.pem").read_bytes(), (directory / "key.pem").read_bytes()


# --- writes that cannot tear ---------------------------------------------------------------


def test_short_writes_are_completed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When os.write writes only a few bytes at a time, every byte still reaches the file."""
    store = stored(tmp_path)
    cert, key = new_pair()
    calls: list[int] = []

    def short(fd: int, data: bytes) -> int:
        calls.append(fd)
        return REAL_WRITE(fd, bytes(data)[:7])

    monkeypatch.setattr(os, "write", short)
    store.certs.write_cert(SPEC, cert, key)
    assert pair_of(tmp_path / SPEC.name) == (cert, key)
    assert len(calls) > 100


def test_full_disk_while_staging_keeps_the_old_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short write then ENOSPC on a staged file: one StoreError, old pair intact, no .new."""
    store = stored(tmp_path)
    before = pair_of(tmp_path / SPEC.name)
    written: list[int] = []

    def short_then_full(data: bytes) -> int:
        if not written:
            written.append(1)
            return 10
        return no_space(data)

    fake_write(monkeypatch, lambda p: p.endswith(".new"), short_then_full)
    with pytest.raises(StoreError) as info:
        store.certs.write_cert(SPEC, *new_pair())
    message = str(info.value)
    assert "the certificate volume is full (ENOSPC) writing" in message
    assert ".pem.new" in message and "the old files are unchanged" in message
    assert pair_of(tmp_path / SPEC.name) == before
    assert not list(tmp_path.rglob("*.new"))


def test_failed_backup_stops_the_swap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backup that cannot be written raises before anything is replaced; none is left half."""
    store = stored(tmp_path)
    before = pair_of(tmp_path / SPEC.name)
    fake_write(monkeypatch, lambda p: "/backups/" in p, no_space)
    with pytest.raises(StoreError, match="ENOSPC"):
        store.certs.write_cert(SPEC, *new_pair())
    assert pair_of(tmp_path / SPEC.name) == before
    assert list((tmp_path / "backups" / SPEC.name).iterdir()) == []
    assert not list(tmp_path.rglob("*.new"))


def test_a_file_read_back_wrong_is_never_renamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that reports success but stores other bytes is caught before any rename."""
    store = stored(tmp_path)
    before = pair_of(tmp_path / SPEC.name)

    def write(fd: int, data: bytes) -> int:
        if fd_path(fd).endswith("cert.pem.new"):
            REAL_WRITE(fd, bytes(data)[:-40] + b"x" * 40)  # other bytes, full length reported
            return len(data)
        return REAL_WRITE(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(StoreError, match="differ"):
        store.certs.write_cert(SPEC, *new_pair())
    assert pair_of(tmp_path / SPEC.name) == before
    assert not list(tmp_path.rglob("*.new"))


def test_save_state_on_a_full_disk_keeps_the_old_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """save_state raises one StoreError naming ENOSPC and state.json stays byte-identical."""
    store = stored(tmp_path)
    store.ledger.save(State())
    before = store.layout.state_path.read_bytes()
    fake_write(monkeypatch, lambda p: p.endswith("state.json.new"), no_space)
    with pytest.raises(StoreError, match=r"ENOSPC\) writing .*state\.json\.new"):
        store.ledger.save(State(failing_since={"a.test": datetime.now(UTC)}))
    assert store.layout.state_path.read_bytes() == before
    assert not list(tmp_path.rglob("*.new"))


# --- symbolic links ------------------------------------------------------------------------


def outside_pair(tmp_path: Path) -> Path:
    """A directory outside the volume holding a valid certificate directory."""
    outside = tmp_path / "outside"
    outside.mkdir()
    key, pem = make_key()
    (outside / "cert.pem").write_bytes(make_cert(key, SPEC.domains))
    (outside / "key.pem").write_bytes(pem)
    (outside / "domains").write_text(" ".join(SPEC.domains))
    return outside


def test_linked_certificate_dir_is_refused(tmp_path: Path) -> None:
    """A linked certificate dir is skipped and reported by refused(); nothing is written to it."""
    outside = outside_pair(tmp_path)
    before = files_of(outside)
    root = tmp_path / "vol"
    store = CertStore(root)
    store.prepare()
    (root / SPEC.name).symlink_to(outside, target_is_directory=True)
    with capture_logs() as logs:
        assert store.certs.load() == {}
    refusals = [e for e in logs if e["event"] == "store.symlink_refused"]
    assert [e["path"] for e in refusals] == [str(root / SPEC.name)] and refusals[0]["reason"]
    assert store.certs.refused() == [SPEC.name] and store.certs.names() == []
    with pytest.raises(StoreError, match="symbolic link"):
        store.certs.write_cert(SPEC, *new_pair())
    assert files_of(outside) == before
    assert not (root / "backups").exists()


def test_linked_key_is_refused_and_never_backed_up(tmp_path: Path) -> None:
    """A linked key.pem is neither read, replaced nor copied into a backup."""
    outside = outside_pair(tmp_path)
    store = stored(tmp_path / "vol")
    directory = store.root / SPEC.name
    (directory / "key.pem").unlink()
    (directory / "key.pem").symlink_to(outside / "key.pem")
    before = files_of(outside)
    assert store.certs.load() == {} and store.certs.refused() == [SPEC.name]
    with pytest.raises(StoreError):
        store.certs.write_cert(SPEC, *new_pair())
    with pytest.raises(StoreError):
        store.certs.backup(SPEC.name)
    assert files_of(outside) == before
    secret = before["key.pem"]
    assert all(data != secret for data in files_of(store.root).values())


def test_linked_state_is_refused(tmp_path: Path) -> None:
    """A linked acme/state.json is neither read nor written through."""
    target = tmp_path / "elsewhere.json"
    target.write_text(State().to_json())
    store = CertStore(tmp_path / "vol")
    store.prepare()
    store.layout.state_path.symlink_to(target)
    with pytest.raises(StoreError, match="symbolic link"):
        store.ledger.load()
    with pytest.raises(StoreError, match="symbolic link"):
        store.ledger.save(State(failing_since={"a.test": datetime.now(UTC)}))
    assert target.read_text() == State().to_json()


@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-key", "dangling"])
def test_linked_account_key_is_refused(tmp_path: Path, dangling: bool) -> None:
    """A linked acme/account.pem is refused; no key is read from or created at its target."""
    target = tmp_path / "account.pem"
    if not dangling:
        target.write_bytes(make_key()[1])
    before = files_of(tmp_path)
    store = CertStore(tmp_path / "vol")
    store.prepare()
    store.layout.account_key_path.symlink_to(target)
    with pytest.raises(StoreError, match="symbolic link"):
        store.keys.account_key()
    assert target.exists() is not dangling
    assert {k: v for k, v in files_of(tmp_path).items() if not k.startswith("vol")} == before


def test_linked_default_pair_is_refused(tmp_path: Path) -> None:
    """set_default refuses a linked top-level cert.pem and leaves its target alone."""
    outside = outside_pair(tmp_path)
    store = stored(tmp_path / "vol")
    (store.root / "cert.pem").symlink_to(outside / "cert.pem")
    before = files_of(outside)
    with pytest.raises(StoreError, match="symbolic link"):
        store.certs.set_default(SPEC.name)
    assert files_of(outside) == before


def test_linked_acme_dir_is_refused(tmp_path: Path) -> None:
    """prepare() refuses an acme/ directory that is a link."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "vol").mkdir()
    (tmp_path / "vol" / "acme").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(StoreError, match="symbolic link"):
        CertStore(tmp_path / "vol").prepare()
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_linked_force_renew_is_ignored(tmp_path: Path) -> None:
    """A force_renew link is not the admin's flag (logged, not followed)."""
    (tmp_path / "flag").write_text("")
    (tmp_path / "force_renew").symlink_to(tmp_path / "flag")
    with capture_logs() as logs:
        assert CertStore(tmp_path).force_requested() is False
    assert [e["event"] for e in logs] == ["store.symlink_refused"]


# --- damaged keys and state ----------------------------------------------------------------


@pytest.mark.parametrize("which", ["account", "domain"])
@pytest.mark.parametrize("content", [b"", b"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE"])
def test_damaged_key_is_reported_and_kept(tmp_path: Path, which: str, content: bytes) -> None:
    """A torn or empty key raises StoreError naming the file; it is never replaced."""
    store = CertStore(tmp_path)
    store.prepare()
    path = store.layout.account_key_path if which == "account" else store.layout.domain_key_path
    path.write_bytes(content)
    get = store.keys.account_key if which == "account" else store.keys.domain_key
    with pytest.raises(StoreError, match=rf"{path} is damaged"):
        get()
    assert path.read_bytes() == content


@pytest.mark.parametrize("content", [b"{", b"[]", b'{"failing_since": 1}', b"\xff\xfe"])
def test_damaged_state_is_kept_aside_and_reported(tmp_path: Path, content: bytes) -> None:
    """A damaged state.json is moved to state.json.damaged-<UTC>, logged, and state is empty."""
    store = CertStore(tmp_path)
    store.prepare()
    store.layout.state_path.write_bytes(content)
    with capture_logs() as logs:
        assert store.ledger.load() == State()
    (kept,) = store.layout.acme_dir.glob("state.json.damaged-*")
    assert kept.read_bytes() == content and not store.layout.state_path.exists()
    (event,) = [e for e in logs if e["event"] == "state.damaged"]
    assert event["kept"] == str(kept)


# --- the lock ------------------------------------------------------------------------------


def test_second_lock_is_busy_until_released(tmp_path: Path) -> None:
    """While one CertStore holds acme/lock another raises VolumeBusy; after release it works."""
    store = CertStore(tmp_path)
    with store.lock():
        assert stat.S_IMODE(store.layout.lock_path.stat().st_mode) == 0o600
        busy = r"another acme-sidecar holds .*/acme/lock; this one waits"
        with pytest.raises(VolumeBusy, match=busy), CertStore(tmp_path).lock():
            pass
    with CertStore(tmp_path).lock():
        pass


def test_lock_of_a_killed_process_is_free(tmp_path: Path) -> None:
    """A lock held by another process makes this one busy; after SIGKILL it is free, not stale."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from acme_sidecar.adapters.volume import CertStore\n"
        "with CertStore(Path(sys.argv[1])).lock():\n"
        "    print('held', flush=True)\n"
        "    time.sleep(120)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(VolumeBusy), CertStore(tmp_path).lock():
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        with CertStore(tmp_path).lock():
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


# --- recovery ------------------------------------------------------------------------------


def test_recover_discards_an_empty_staged_pair(tmp_path: Path) -> None:
    """Empty (torn) cert.pem.new and key.pem.new are thrown away; the old pair stays."""
    store = stored(tmp_path)
    d = tmp_path / SPEC.name
    before = pair_of(d)
    (d / "cert.pem.new").write_bytes(b"")
    (d / "key.pem.new").write_bytes(b"")
    store.recover()
    assert pair_of(d) == before and not list(d.glob("*.new"))


def test_recover_completes_a_whole_domains_file(tmp_path: Path) -> None:
    """A staged domains.new listing the names of the certificate in place is renamed in."""
    store = stored(tmp_path)
    d = tmp_path / SPEC.name
    (d / "domains").write_text("mail.example.org")
    (d / "domains.new").write_text(" ".join(SPEC.domains))
    store.recover()
    assert (d / "domains").read_text() == " ".join(SPEC.domains)
    assert not (d / "domains.new").exists()


def test_recover_discards_a_torn_domains_file(tmp_path: Path) -> None:
    """A staged domains.new cut short (not the certificate's names) is thrown away."""
    store = stored(tmp_path)
    d = tmp_path / SPEC.name
    before = (d / "domains").read_bytes()
    (d / "domains.new").write_text("mail.example.org autocon")
    store.recover()
    assert (d / "domains").read_bytes() == before and not (d / "domains.new").exists()


def test_recover_removes_staged_acme_files(tmp_path: Path) -> None:
    """Leftover acme/*.new files of an interrupted write are removed; the files stay."""
    store = stored(tmp_path)
    store.ledger.save(State())
    before = store.layout.state_path.read_bytes()
    (store.layout.acme_dir / "state.json.new").write_bytes(b'{"fail')
    store.recover()
    assert store.layout.state_path.read_bytes() == before
    assert not list(store.layout.acme_dir.glob("*.new"))


def test_every_written_pem_parses(tmp_path: Path) -> None:
    """After writes, every *.pem in the volume (the five written, asserted first) parses as a
    chain or a key."""
    store = stored(tmp_path)
    store.certs.set_default(SPEC.name)
    store.keys.account_key()
    pems = sorted(tmp_path.rglob("*.pem"))
    names = [str(p.relative_to(tmp_path)) for p in pems]
    assert names == sorted(
        ["acme/account.pem", "cert.pem", "key.pem", f"{SPEC.name}/cert.pem", f"{SPEC.name}/key.pem"]
    )
    for path in pems:
        data = path.read_bytes()
        if b"CERTIFICATE" in data:
            load_chain(data)
        else:
            load_key(data)


def test_default_certificate_stays_readable(tmp_path: Path) -> None:
    """set_default leaves the certificates 0644 and only the keys 0600."""
    store = stored(tmp_path)
    assert store.certs.set_default(SPEC.name) is True
    assert store.certs.set_default(SPEC.name) is False
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.glob("*.pem")}
    assert modes == {"cert.pem": 0o644, "key.pem": 0o600}
