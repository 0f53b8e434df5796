"""The top-level pair (``cert.pem``/``key.pem`` at the volume root) and the copy of the last good
own pair (``acme/own/cert.pem``, ``key.pem``).

May touch only those files, and ``backups/default/<UTC timestamp>/`` for what is replaced, all
under ``ACME_CERT_DIR`` and with the volume's primitives (``files``): never through a link,
written whole, fsynced and checked before a rename, key before certificate. ``inspect_pair``
parses a pair into the facts the pure rules of ``core/own.py`` judge.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from acme_sidecar.adapters import backups, files
from acme_sidecar.adapters.files import cert_sans, key_matches, load_chain, load_key, read_bytes
from acme_sidecar.adapters.volume import CertStore
from acme_sidecar.core.errors import StoreError
from acme_sidecar.core.model import StoredCert
from acme_sidecar.core.own import OWN_MARK, Link, Ownership, PairFacts, classify

Pair = tuple[bytes, bytes]  # cert.pem (full chain), key.pem
BACKUP_NAME = "default"


def fingerprint(cert: bytes, key: bytes) -> str:
    """SHA-256 over both files: a change of either is a new pair."""
    digest = hashlib.sha256(cert)
    digest.update(b"\0")
    digest.update(key)
    return digest.hexdigest()


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _org(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(values[0].value) if values else ""


def inspect_pair(cert: bytes, key: bytes) -> PairFacts:
    """The facts of a pair; ``unreadable`` says why when either file does not parse."""
    fp = fingerprint(cert, key)
    try:
        chain = load_chain(cert)
    except StoreError as exc:
        return PairFacts(fp, unreadable=f"cert.pem: {exc}")
    try:
        private = load_key(key)
    except StoreError as exc:
        return PairFacts(fp, unreadable=f"key.pem: {exc}")
    leaf = chain[0]
    links = tuple(
        Link(
            c.subject.rfc4514_string(),
            c.issuer.rfc4514_string(),
            _signed_by(c, chain[i + 1]) if i + 1 < len(chain) else None,
        )
        for i, c in enumerate(chain)
    )
    return PairFacts(
        fingerprint=fp,
        chain=links,
        issuer_org=_org(leaf.issuer),
        names=cert_sans(leaf),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        serial=leaf.serial_number,
        key_matches=key_matches(leaf, private),
        self_signed=leaf.issuer == leaf.subject and _signed_by(leaf, leaf),
    )


def _read_pair(directory: Path) -> Pair | None:
    try:
        return read_bytes(directory / "cert.pem"), read_bytes(directory / "key.pem", private=True)
    except FileNotFoundError:
        return None


def read_top(store: CertStore) -> Pair | None:
    """The top-level pair, or None when either file is missing (a link raises ``StoreError``)."""
    return _read_pair(store.root)


def own_dir(store: CertStore) -> Path:
    """``acme/own/``: the copy of the last good own pair."""
    return store.acme_dir / "own"


def read_own_copy(store: CertStore) -> Pair | None:
    """The last good own pair, or None."""
    files.check_not_link(own_dir(store), "the acme/own directory")
    return _read_pair(own_dir(store))


def _staged(directory: Path, cert: bytes, key: bytes) -> list[files.Staged]:
    return [
        (directory / "key.pem", key, 0o600, load_key),
        (directory / "cert.pem", cert, 0o644, load_chain),
    ]


def save_own_copy(store: CertStore, cert: bytes, key: bytes) -> None:
    """Keep ``cert``/``key`` as the last good own pair (atomically, key first)."""
    files.ensure_dir(store.acme_dir, 0o700, "the acme directory")
    target = own_dir(store)
    files.ensure_dir(target, 0o700, "the acme/own directory")
    if _read_pair(target) == (cert, key):
        return
    files.swap_in(target, _staged(target, cert, key), torn="the last good own pair may be torn")


def backup_top(store: CertStore) -> Path | None:
    """Copy the top-level pair to ``backups/default/<UTC timestamp>/``; None when absent."""
    if read_top(store) is None:
        return None
    target = backups.stamp_dir(store.root, BACKUP_NAME)
    files.copy_dir(store.root, ("cert.pem", "key.pem"), target, parents=3)
    store.prune(BACKUP_NAME)
    return target


def install_top(store: CertStore, cert: bytes, key: bytes, *, backup: bool = True) -> Path | None:
    """Back up the top-level pair (unless ``backup`` is False: the caller did), then swap in
    ``cert``/``key`` atomically (key first; a crash between the renames is finished by
    ``CertStore.recover``). Returns the backup's path."""
    chain = load_chain(cert)
    if not key_matches(chain[0], load_key(key)):
        raise StoreError("the certificate does not match its key; nothing was installed")
    saved = backup_top(store) if backup else None
    files.swap_in(
        store.root,
        _staged(store.root, cert, key),
        torn="the next start finishes or rolls back the swap",
    )
    return saved


def ownership(
    store: CertStore,
    facts: PairFacts,
    managed_certs: Callable[[], Mapping[str, StoredCert]],
    ca_organizations: tuple[str, ...],
) -> Ownership:
    """Classify the top-level pair against the volume's key and certificate directories (read
    only when the key does not already say it is ours)."""
    key_is_ours = False
    if facts.chain and store.domain_key_path.is_file():
        try:
            top_key = load_key(read_bytes(store.root / "key.pem", private=True))
            ours = load_key(read_bytes(store.domain_key_path, private=True))
            key_is_ours = _public(top_key) == _public(ours)
        except (StoreError, OSError):
            key_is_ours = False
    managed = {} if key_is_ours or facts.unreadable else managed_certs()
    copy = any(
        c.serial == facts.serial and c.issuer == facts.issuer and c.not_after == facts.not_after
        for c in managed.values()
    )
    return classify(
        facts,
        copy_of_managed=copy,
        key_is_ours=key_is_ours,
        managed_issuers={c.issuer for c in managed.values()},
        ca_organizations=ca_organizations,
    )


def _public(key: files.PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def top_stored(facts: PairFacts) -> StoredCert | None:
    """The top-level pair as the hooks see certificates (named ``(default)``)."""
    if facts.unreadable or facts.not_before is None or facts.not_after is None:
        return None
    return StoredCert(
        name=OWN_MARK,
        domains=facts.names,
        not_before=facts.not_before,
        not_after=facts.not_after,
        serial=facts.serial,
        issuer=facts.issuer,
        key_matches=facts.key_matches,
        sans=facts.names,
    )


def with_top(store: CertStore, managed: Mapping[str, StoredCert]) -> dict[str, StoredCert]:
    """``managed`` plus the top-level pair when it is not a copy of one of them (an own
    certificate, or a stale one): every certificate the consumers may serve."""
    out = dict(managed)
    try:
        pair = read_top(store)
    except (StoreError, OSError):
        return out
    if pair is None:
        return out
    top = top_stored(inspect_pair(*pair))
    if top is None:
        return out
    if not any(c.serial == top.serial and c.issuer == top.issuer for c in managed.values()):
        out[OWN_MARK] = top
    return out
