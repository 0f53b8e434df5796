"""The certificate volume: atomic pairs, backups, recovery after a crash, permissions."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from acme_sidecar.adapters.volume import CertStore, certdir
from acme_sidecar.core.errors import StoreError
from acme_sidecar.core.model import CertSpec, StoredCert
from tests.certs import make_cert, make_key

SPEC = CertSpec("mail.example.org", ("mail.example.org", "autoconfig.a.test"))


def test_write_and_load(tmp_path: Path) -> None:
    """A written certificate loads back with its names; key is 0600; domains has no newline."""
    store = CertStore(tmp_path)
    key, pem = make_key()
    store.certs.write_cert(SPEC, make_cert(key, SPEC.domains), pem)
    loaded = store.certs.load()[SPEC.name]
    assert loaded.domains == SPEC.domains and loaded.key_matches
    assert stat.S_IMODE((tmp_path / SPEC.name / "key.pem").stat().st_mode) == 0o600
    assert (tmp_path / SPEC.name / "domains").read_bytes() == b"mail.example.org autoconfig.a.test"
    assert not list(tmp_path.rglob("*.new"))


def test_mismatched_pair_is_refused_and_nothing_changes(tmp_path: Path) -> None:
    """A certificate that does not match its key is never written."""
    store = CertStore(tmp_path)
    key, pem = make_key()
    store.certs.write_cert(SPEC, make_cert(key, SPEC.domains), pem)
    before = (tmp_path / SPEC.name / "cert.pem").read_bytes()
    other, _ = make_key()
    with pytest.raises(StoreError):
        store.certs.write_cert(SPEC, make_cert(other, SPEC.domains), pem)
    assert (tmp_path / SPEC.name / "cert.pem").read_bytes() == before


def test_replacement_is_backed_up_and_pruned(tmp_path: Path) -> None:
    """Each replacement keeps a backup; only the newest ACME_BACKUP_KEEP remain."""
    store = CertStore(tmp_path, backup_keep=2)
    key, pem = make_key()
    for _ in range(4):
        store.certs.write_cert(SPEC, make_cert(key, SPEC.domains), pem)
    backups = list((tmp_path / "backups" / SPEC.name).iterdir())
    assert len(backups) == 2
    assert all((b / "key.pem").is_file() for b in backups)


def test_recover_completes_interrupted_swap(tmp_path: Path) -> None:
    """After a crash between the key and cert renames, the new pair is completed on start."""
    store = CertStore(tmp_path)
    key, pem = make_key()
    store.certs.write_cert(SPEC, make_cert(key, SPEC.domains), pem)
    key2, pem2 = make_key()
    d = tmp_path / SPEC.name
    (d / "key.pem").write_bytes(pem2)  # the key rename happened ...
    new_cert = make_cert(key2, SPEC.domains)
    (d / "cert.pem.new").write_bytes(new_cert)  # ... the cert rename did not
    assert not store.certs.load()[SPEC.name].key_matches
    store.recover()
    assert store.certs.load()[SPEC.name].key_matches
    assert (d / "cert.pem").read_bytes() == new_cert


def test_recover_discards_partial_staging(tmp_path: Path) -> None:
    """A half-written staged certificate is thrown away; the old pair stays."""
    store = CertStore(tmp_path)
    key, pem = make_key()
    store.certs.write_cert(SPEC, make_cert(key, SPEC.domains), pem)
    d = tmp_path / SPEC.name
    (d / "cert.pem.new").write_bytes(b"-----BEGIN CERTIFICATE-----\nMIIB")
    store.recover()
    assert store.certs.load()[SPEC.name].key_matches
    assert not (d / "cert.pem.new").exists()


def test_set_default_and_archive(tmp_path: Path) -> None:
    """The default pair mirrors a cert dir; archiving moves a dir under backups/."""
    store = CertStore(tmp_path)
    key, pem = make_key()
    store.certs.write_cert(SPEC, make_cert(key, SPEC.domains), pem)
    assert store.certs.set_default(SPEC.name) is True
    assert store.certs.set_default(SPEC.name) is False
    assert (tmp_path / "cert.pem").read_bytes() == (tmp_path / SPEC.name / "cert.pem").read_bytes()
    target = store.certs.archive(SPEC.name)
    assert not (tmp_path / SPEC.name).exists() and (target / "cert.pem").is_file()


def test_garbage_dirs_are_ignored(tmp_path: Path) -> None:
    """Dirs that are not certificates, or hold garbage, never break loading."""
    (tmp_path / "acme").mkdir()
    bad = tmp_path / "bad.example.org"
    bad.mkdir()
    for f in ("domains", "cert.pem", "key.pem"):
        (bad / f).write_text("garbage")
    (tmp_path / "not a name").mkdir()
    assert CertStore(tmp_path).certs.load() == {}


def test_keys_created_once_and_private(tmp_path: Path) -> None:
    """Account and certificate keys are created once (0600) and reused."""
    store = CertStore(tmp_path)
    store.prepare()
    first = store.keys.account_key()
    assert store.keys.account_key() == first
    assert stat.S_IMODE(store.layout.account_key_path.stat().st_mode) == 0o600


def test_an_unchanged_certificate_is_not_parsed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``load`` parses a directory again only when one of its files changed (a quiet cycle
    loads the volume several times); a renewal or an edited file is seen at once."""
    store = CertStore(tmp_path)
    key, pem = make_key()
    store.certs.write_cert(SPEC, make_cert(key, SPEC.domains), pem)
    parsed: list[str] = []
    real = certdir.parse

    def counting(directory: Path) -> StoredCert:
        parsed.append(directory.name)
        return real(directory)

    monkeypatch.setattr(certdir, "parse", counting)
    first = store.certs.load()[SPEC.name]
    assert store.certs.load()[SPEC.name] is first and parsed == [SPEC.name]
    renewed = make_cert(key, SPEC.domains)
    store.certs.write_cert(SPEC, renewed, pem)
    second = store.certs.load()[SPEC.name]
    assert second.serial != first.serial and parsed == [SPEC.name, SPEC.name]
    (tmp_path / SPEC.name / "domains").write_text("mail.example.org")
    assert store.certs.load()[SPEC.name].domains == ("mail.example.org",)
