"""The certificate volume on a real, tiny tmpfs: full and read-only, then recovered in place.

Needs root (mount); a missing capability is a failure, not a skip.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from acme_sidecar.adapters.volume import CertStore
from acme_sidecar.adapters.volume.pem import load_chain, load_key
from acme_sidecar.core.errors import StoreError
from acme_sidecar.core.ledger import State
from acme_sidecar.core.model import CertSpec
from tests.certs import make_cert, make_key
from tests.integration.fullfs import fill

SPEC = CertSpec("mail.example.org", ("mail.example.org", "autoconfig.a.test"))

Operation = Callable[[CertStore], object]


def new_cert(store: CertStore) -> None:
    key, pem = make_key()
    store.certs.write_cert(SPEC, make_cert(key, SPEC.domains), pem)


def new_default(store: CertStore) -> None:
    assert store.certs.set_default(SPEC.name) is True


def new_state(store: CertStore) -> None:
    store.ledger.save(State(failing_since={"a.test": datetime.now(UTC)}))


OPERATIONS: dict[str, Operation] = {
    "write_cert": new_cert,
    "set_default": new_default,
    "save_state": new_state,
}


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[CertStore]:
    """A 128 KiB tmpfs holding a certificate dir, a different default pair and a state file."""
    mount = tmp_path / "ssl"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", str(mount)], check=True)
    try:
        store = CertStore(mount)
        store.prepare()
        key, pem = make_key()
        (mount / "cert.pem").write_bytes(make_cert(key, ("snake-oil.test",)))  # mailcow's own
        (mount / "key.pem").write_bytes(pem)
        new_cert(store)
        store.ledger.save(State())
        yield store
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def contents(root: Path) -> dict[str, bytes]:
    """Every regular file of the volume except the filler."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "filler"
    }


def assert_whole(root: Path) -> None:
    """No staged, empty or torn file: every *.pem parses."""
    assert not list(root.rglob("*.new"))
    for name, data in contents(root).items():
        assert data, f"{name} is empty"
        if name.endswith(".pem"):
            (load_chain if b"CERTIFICATE" in data else load_key)(data)


@pytest.mark.parametrize("operation", OPERATIONS.values(), ids=OPERATIONS.keys())
def test_full_volume_changes_nothing_then_recovers(volume: CertStore, operation: Operation) -> None:
    """On a full volume one StoreError (ENOSPC), nothing changed; freed, the same call works."""
    filler = fill(volume.root)
    before = contents(volume.root)
    with pytest.raises(StoreError, match=r"full \(ENOSPC\)"):
        operation(volume)
    assert contents(volume.root) == before
    assert_whole(volume.root)
    filler.unlink()
    operation(volume)
    assert contents(volume.root) != before
    assert_whole(volume.root)


@pytest.mark.parametrize("operation", OPERATIONS.values(), ids=OPERATIONS.keys())
def test_read_only_volume_changes_nothing_then_recovers(
    volume: CertStore, operation: Operation
) -> None:
    """On a read-only volume one StoreError (EROFS), nothing changed; remounted rw, it works."""
    before = contents(volume.root)
    remount = ["mount", "-o", "remount,ro", str(volume.root)]
    subprocess.run(remount, check=True)
    try:
        with pytest.raises(StoreError, match=r"read-only \(EROFS\)"):
            operation(volume)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(volume.root)], check=True)
    assert contents(volume.root) == before
    operation(volume)
    assert contents(volume.root) != before
    assert_whole(volume.root)
