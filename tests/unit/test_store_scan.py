"""The volume read in one scan: what a quiet cycle of many certificates does not do again."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from acme_sidecar.adapters.volume import CertStore, recovery
from acme_sidecar.core.ledger import State
from acme_sidecar.core.model import CertSpec
from tests.certs import make_cert, make_key
from tests.unit.test_store import SPEC

HOUR_AGO = time.time() - 3600


def _volume(tmp_path: Path) -> CertStore:
    store = CertStore(tmp_path)
    store.prepare()
    key, pem = make_key()
    store.certs.write_cert(SPEC, make_cert(key, SPEC.domains), pem)
    return store


def test_read_gives_certificates_and_refused_links_from_one_scan(tmp_path: Path) -> None:
    """``read`` returns what ``load`` and ``refused`` return: links to a directory and
    directories holding a linked file are refused, never loaded, nor named."""
    store = _volume(tmp_path)
    (tmp_path / "link.example.org").symlink_to(tmp_path / SPEC.name)
    other = CertSpec("b.example.org", ("b.example.org",))
    key, pem = make_key()
    store.certs.write_cert(other, make_cert(key, other.domains), pem)
    (tmp_path / other.name / "cert.pem").unlink()
    (tmp_path / other.name / "cert.pem").symlink_to(tmp_path / SPEC.name / "cert.pem")
    stored, refused = store.certs.read()
    assert list(stored) == [SPEC.name] and stored == store.certs.load()
    assert refused == ["b.example.org", "link.example.org"] == store.certs.refused()
    assert store.certs.names() == [SPEC.name]


def test_recovery_skips_a_directory_unchanged_since_it_was_found_clean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A certificate directory with nothing staged is not searched again while its
    modification time stays; a file staged in it later changes that time and is recovered."""
    store = _volume(tmp_path)
    directory = tmp_path / SPEC.name
    os.utime(directory, (HOUR_AGO, HOUR_AGO))
    searched: list[str] = []
    real = recovery.recover_dir

    def counting(path: Path) -> None:
        searched.append(path.name)
        real(path)

    monkeypatch.setattr(recovery, "recover_dir", counting)
    store.recover()
    assert searched == [tmp_path.name, SPEC.name]
    store.recover()
    assert searched == [tmp_path.name, SPEC.name, tmp_path.name]
    (directory / "cert.pem.new").write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB")
    store.recover()
    assert searched[-1] == SPEC.name
    assert not (directory / "cert.pem.new").exists() and store.certs.load()[SPEC.name].key_matches


def test_a_directory_changed_within_the_last_second_is_searched_every_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A modification time less than a second old is not trusted (a file staged in the same
    clock tick would not change it)."""
    store = _volume(tmp_path)
    now = time.time()
    os.utime(tmp_path / SPEC.name, (now, now))
    searched: list[str] = []
    real = recovery.recover_dir

    def counting(path: Path) -> None:
        searched.append(path.name)
        real(path)

    monkeypatch.setattr(recovery, "recover_dir", counting)
    store.recover()
    store.recover()
    assert searched.count(SPEC.name) == 2


def test_an_unchanged_ledger_is_not_serialised_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saving the ledger last read or written costs no serialisation while its file is the
    same; a file removed or rewritten by someone else is written again."""
    store = _volume(tmp_path)
    state = State(validated={"a.test": store.certs.load()[SPEC.name].not_before})
    serialised: list[int] = []
    real = State.to_json

    def counting(self: State) -> str:
        serialised.append(1)
        return real(self)

    monkeypatch.setattr(State, "to_json", counting)
    store.ledger.save(state)
    store.ledger.save(state)
    store.ledger.save(State(validated=dict(state.validated)))  # equal, not the same object
    assert len(serialised) == 1
    written = store.layout.state_path.read_bytes()
    store.layout.state_path.unlink()
    store.ledger.save(state)
    assert store.layout.state_path.read_bytes() == written
    store.layout.state_path.write_text("{}")
    store.ledger.save(state)
    assert store.layout.state_path.read_bytes() == written
    assert CertStore(tmp_path).ledger.load() == state
