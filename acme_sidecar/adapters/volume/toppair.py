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

from acme_sidecar.adapters.volume import CertStore, backups, files
from acme_sidecar.adapters.volume.files import read_bytes
from acme_sidecar.adapters.volume.pem import key_matches, key_spki, load_chain, load_key, read_cert
from acme_sidecar.core.errors import StoreError
from acme_sidecar.core.model import StoredCert
from acme_sidecar.core.own import OWN_MARK, Ownership, PairFacts, classify

Pair = tuple[bytes, bytes]  # cert.pem (full chain), key.pem
BACKUP_NAME = "default"


def fingerprint(cert: bytes, key: bytes) -> str:
    """SHA-256 over both files: a change of either is a new pair."""
    digest = hashlib.sha256(cert)
    digest.update(b"\0")
    digest.update(key)
    return digest.hexdigest()


def inspect_pair(cert: bytes, key: bytes) -> PairFacts:
    """The facts of a pair, every one read inside the guard of ``pem``: ``unreadable`` says
    which file does not parse and why (a malformed extension, an unknown key type...)."""
    fp = fingerprint(cert, key)
    try:
        leaf = read_cert(cert, links=True)
    except StoreError as exc:
        return PairFacts(fp, unreadable=f"cert.pem: {exc}")
    try:
        private = key_spki(key)
    except StoreError as exc:
        return PairFacts(fp, unreadable=f"key.pem: {exc}")
    return PairFacts(
        fingerprint=fp,
        chain=leaf.links,
        issuer_org=leaf.issuer_org,
        names=leaf.names,
        not_before=leaf.not_before,
        not_after=leaf.not_after,
        serial=leaf.serial,
        key_matches=leaf.spki == private,
        self_signed=leaf.self_signed,
        common_name=leaf.common_name,
    )


def unreadable_file(store: CertStore, facts: PairFacts) -> tuple[Path, str]:
    """Which file of an unreadable top-level pair does not parse, and why."""
    name, _, why = facts.unreadable.partition(": ")
    if name not in ("cert.pem", "key.pem"):
        return store.root / "cert.pem", facts.unreadable
    return store.root / name, why


def _read_pair(directory: Path, *, private: bool = True) -> Pair | None:
    """The pair in ``directory``; ``private``: a key.pem readable by others is made 0600."""
    try:
        key = read_bytes(directory / "key.pem", private=private)
        return read_bytes(directory / "cert.pem"), key
    except FileNotFoundError:
        return None


def read_top(store: CertStore, *, tighten: bool = True) -> Pair | None:
    """The top-level pair, or None when either file is missing (a link raises ``StoreError``).
    A key.pem readable by others is made 0600, except by a store that sets nothing aside
    (``status``, ``check``) or with ``tighten=False`` (``SKIP_LETS_ENCRYPT=y``: hands off)."""
    return _read_pair(store.root, private=store.set_aside and tighten)


def own_dir(store: CertStore) -> Path:
    """``acme/own/``: the copy of the last good own pair."""
    return store.layout.acme_dir / "own"


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
    files.ensure_dir(store.layout.acme_dir, 0o700, "the acme directory")
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
    store.certs.prune(BACKUP_NAME)
    return target


def keep_unreadable_top(store: CertStore) -> Path | None:
    """Copy an unreadable top-level pair to ``backups/default/unreadable-<UTC timestamp>/``
    (never pruned) and return it; the newest such copy when it already holds the same bytes.
    None when there is no pair."""
    pair = read_top(store)
    if pair is None:
        return None
    latest = backups.latest_aside(store.root, BACKUP_NAME)
    if latest is not None and _read_pair(latest) == pair:
        return latest
    target = backups.stamp_dir(store.root, BACKUP_NAME, backups.UNREADABLE)
    files.copy_dir(store.root, ("cert.pem", "key.pem"), target, parents=3)
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
    if facts.chain and store.layout.domain_key_path.is_file():
        try:
            mode = store.set_aside  # status and check change no file mode
            top_key = key_spki(read_bytes(store.root / "key.pem", private=mode))
            ours = key_spki(read_bytes(store.layout.domain_key_path, private=mode))
            key_is_ours = top_key == ours
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
        pair = read_top(store, tighten=False)  # a read for the hooks changes nothing
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
