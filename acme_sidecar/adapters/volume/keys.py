"""Keys: the account key and the certificate key in ``acme/``, key types and DANE pins.

Key types are ``core.profiles.KEY_TYPES`` (``rsa2048`` ... ``ec384``). ``tlsa_311`` is the
SHA-256 of a key's SubjectPublicKeyInfo: the data of a TLSA ``3 1 1`` record, which stays valid
for as long as the key is kept. The next key (``acme/key.next.pem``) is made before a key change
that DANE must follow (``core.rollover``) and becomes ``acme/key.pem`` at the switch. May touch
only ``acme/account.pem``, ``acme/key.pem``, ``acme/key.next.pem`` and ``backups/acme/`` of the
volume, through the primitives of ``files`` (and read the top-level ``key.pem``); ``Keys`` is
the way in (``CertStore.keys``).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path

import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from acme_sidecar.adapters.volume import backups, files
from acme_sidecar.adapters.volume.files import read_bytes
from acme_sidecar.adapters.volume.layout import Layout
from acme_sidecar.adapters.volume.pem import PrivateKey, kind_of, load_key
from acme_sidecar.core.errors import StoreError
from acme_sidecar.core.profiles import KEY_TYPES, NEW_KEY_TYPE

log = structlog.get_logger(__name__)

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
_CURVES: dict[str, type[ec.EllipticCurve]] = {"ec256": ec.SECP256R1, "ec384": ec.SECP384R1}
_PRIVATE = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)
# acme-mailcow's account key (``openssl genrsa 4096``): what acme-tiny, and so a rollback to
# acme-mailcow, and mailcow's helper-scripts/generate_caa_record.py can read
ACCOUNT_KEY_TYPE = "rsa4096"


def generate(kind: str) -> PrivateKey:
    """A new private key of type ``kind`` (one of ``KEY_TYPES``)."""
    if kind not in KEY_TYPES:
        raise ValueError(f"unknown key type {kind!r}; one of {', '.join(KEY_TYPES)}")
    if kind in _CURVES:
        return ec.generate_private_key(_CURVES[kind]())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))


def to_pem(key: PrivateKey) -> bytes:
    """The key as unencrypted PEM (traditional OpenSSL form, as acme-mailcow writes it)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def new_pem(kind: str) -> bytes:
    """A new private key of type ``kind``, as PEM (``ACME_KEY_REUSE=n``: one per order)."""
    return to_pem(generate(kind))


def _public(key: PrivateKey | PublicKey) -> PublicKey:
    return key.public_key() if isinstance(key, _PRIVATE) else key


def tlsa_311(key: PrivateKey | PublicKey) -> str:
    """The TLSA ``3 1 1`` data of a key: SHA-256 of its SubjectPublicKeyInfo, in hex."""
    public = _public(key)
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


# --- the key files ---------------------------------------------------------------------------


# keys whose full check passed in this process (by SHA-256): the RSA consistency check of a
# 4096-bit account key costs about 0.3 s, and the key is read for every cycle that orders
_VALIDATED: set[bytes] = set()


def _load_or_create(path: Path, make: Callable[[], PrivateKey], pins: str) -> tuple[bytes, bool]:
    """The key at ``path`` (PEM) and whether it was created now (by ``make``). A damaged key
    is never replaced (``pins``: what may pin it)."""
    files.check_not_link(path.parent, "the acme directory")
    try:
        data = read_bytes(path, private=True)
    except FileNotFoundError:
        pass
    else:
        digest = hashlib.sha256(data).digest()
        try:
            load_key(data, check=digest not in _VALIDATED)
        except StoreError as exc:
            raise StoreError(
                f"{path} is damaged ({exc}); it is kept as it is and no new key replaces "
                f"it ({pins} may pin it): restore it from a backup, or move it away to "
                "start with a new key"
            ) from exc
        _VALIDATED.add(digest)
        return data, False
    data = to_pem(make())
    files.ensure_dir(path.parent, 0o700, "the acme directory")
    files.create_new(path, data, 0o600, check=load_key)
    _VALIDATED.add(hashlib.sha256(data).digest())  # made here: consistent
    return data, True


def new_account_key() -> PrivateKey:
    """A new account key as acme-mailcow makes it (``ACCOUNT_KEY_TYPE``)."""
    return generate(ACCOUNT_KEY_TYPE)


# the account key of a new volume, made in the background (``prepare_account_key``) while the
# cycle reads the database and validates the names: an RSA 4096 key takes 0.4 to 1.5 s of CPU,
# and cryptography makes it without holding the GIL
_PREPARED: dict[Path, Future[PrivateKey]] = {}
_PREPARED_LOCK = threading.Lock()


def prepare_account_key(path: Path) -> None:
    """Start making the account key at ``path`` in a thread of its own, when there is none
    there and none is being made; ``account_key`` takes it (nothing is written before)."""
    with _PREPARED_LOCK:
        if path in _PREPARED or path.exists():
            return
        made: Future[PrivateKey] = Future()
        _PREPARED[path] = made

    def make() -> None:
        try:
            made.set_result(new_account_key())
        except Exception as exc:  # noqa: BLE001 - handed to account_key, which raises it
            made.set_exception(exc)

    threading.Thread(target=make, name="account-key", daemon=True).start()


def _prepared_or_new(path: Path) -> Callable[[], PrivateKey]:
    with _PREPARED_LOCK:
        made = _PREPARED.pop(path, None)
    return made.result if made is not None else new_account_key


def account_key(root: Path, path: Path) -> bytes:
    """The ACME account key (PEM); a new one is RSA 4096 as acme-mailcow's (the one
    ``prepare_account_key`` made, when it did), an existing one of any type (an acme.sh ECDSA
    key taken over) is kept as it is."""
    data, created = _load_or_create(path, _prepared_or_new(path), "CAA accounturi")
    rel = str(path.relative_to(root))
    if created:
        log.info("key.created", path=rel, key_type=ACCOUNT_KEY_TYPE)
    else:
        log.info("key.reused", path=rel)
    return data


def domain_key(root: Path, path: Path, kind: str = "") -> bytes:
    """The certificate key (PEM) at ``path``, reused across renewals.

    ``kind`` is ``ACME_KEY_TYPE``: empty keeps the type of the key there (an acme-mailcow
    volume's RSA 4096) and a new volume gets ec256; a key of another type than ``kind`` is
    replaced by a new one (the old one kept in ``backups/acme/``) and the log says that TLSA
    3 1 1 records pinning the old key must change.
    """
    wanted = kind or NEW_KEY_TYPE
    data, created = _load_or_create(path, lambda: generate(wanted), "TLSA records")
    key = load_key(data)
    rel = str(path.relative_to(root))
    if created:
        log.info("key.created", path=rel, key_type=wanted, tlsa_3_1_1=tlsa_311(key))
        return data
    old = kind_of(key)
    if not kind or old == kind:
        log.info("key.reused", path=rel, key_type=old or "other")
        return data
    target = backups.stamp_dir(root, "acme")
    files.copy_dir(path.parent, (path.name,), target, parents=3)
    new = generate(kind)
    data = to_pem(new)
    files.atomic_write(path, data, 0o600, check=load_key)
    log.warning(
        "key.type_changed",
        path=rel,
        old=old or "other",
        new=kind,
        backup=str(target.relative_to(root)),
        old_tlsa_3_1_1=tlsa_311(key),
        tlsa_3_1_1=tlsa_311(new),
        action="every certificate is ordered again with the new key; TLSA 3 1 1 records "
        "(DANE) that pin the old key must change to the new hash",
    )
    return data


def stored_kind(path: Path) -> str:
    """The type of the key at ``path``; ec256 (a new volume's) when there is none; "" for a
    key of another kind or one that cannot be read."""
    try:
        return kind_of(load_key(read_bytes(path)))
    except FileNotFoundError:
        return NEW_KEY_TYPE
    except StoreError:
        return ""


class Keys:
    """The volume's keys in ``acme/`` (``core.ports.KeyStore``)."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def account_key(self) -> bytes:
        """The ACME account key (PEM); a new one is RSA 4096 (acme-mailcow's), one there is
        kept."""
        return account_key(self.layout.root, self.layout.account_key_path)

    def prepare_account_key(self) -> None:
        """Start making the account key in the background when the volume has none yet."""
        prepare_account_key(self.layout.account_key_path)

    def domain_key(self, kind: str = "") -> bytes:
        """The certificate key (PEM), reused across renewals (TLSA ``3 1 1`` stays valid);
        ``kind`` is ``ACME_KEY_TYPE`` (see ``domain_key``)."""
        return domain_key(self.layout.root, self.layout.domain_key_path, kind)

    def has_domain_key(self) -> bool:
        """Whether the volume has its certificate key yet (a new volume has none)."""
        return self.layout.domain_key_path.exists()

    def order_keys(
        self, kind: str, names: Sequence[str], *, reuse: bool
    ) -> bytes | dict[str, bytes]:
        """The key for new orders: the volume's (``reuse``, ACME_KEY_REUSE=y; a directory with
        its own key of that type keeps it, see ``_own_keys``), else a fresh key of the type in
        force per certificate name, kept only in its directory once stored."""
        key = self.domain_key(kind)
        if reuse:
            return self._own_keys(key, names) or key
        fresh = kind or kind_of(load_key(key)) or NEW_KEY_TYPE
        log.info("key.fresh", certificates=len(names), key_type=fresh, reason="ACME_KEY_REUSE=n")
        return {name: new_pem(fresh) for name in names}

    def _own_keys(self, key: bytes, names: Sequence[str]) -> dict[str, bytes]:
        """``ACME_KEY_REUSE=y``: each certificate directory whose own key differs from the
        volume's (``key``) but is of the same type keeps it (its TLSA ``3 1 1`` record stays
        valid), one warning each; the others get ``key``. Empty when none has its own."""
        shared = load_key(key)
        kind, pin = kind_of(shared), tlsa_311(shared)
        own: dict[str, bytes] = {}
        for name in names:
            path = self.layout.root / name / "key.pem"
            try:
                data = read_bytes(path)
                found = load_key(data, check=True)
            except (FileNotFoundError, StoreError):
                continue  # none, or damaged: the volume's key
            if kind_of(found) != kind or tlsa_311(found) == pin:
                continue  # another type is re-keyed (the plan said so), the same one is shared
            own[name] = data
            log.warning(
                "key.own_kept",
                certificate=name,
                key_type=kind,
                tlsa_3_1_1=tlsa_311(found),
                reason="its key differs from acme/key.pem; it is kept so that its TLSA 3 1 1 "
                "record stays valid",
            )
        return {name: own.get(name, key) for name in names} if own else {}

    def key_type(self, configured: str = "") -> str:
        """The certificate key type in force: ``configured`` (ACME_KEY_TYPE), else the type of
        ``acme/key.pem``, else (a new volume) ec256; "" for a key of another kind."""
        return configured or stored_kind(self.layout.domain_key_path)

    # --- the next key (core.rollover): made first, used once its TLSA record is seen ---------

    def next_key(self) -> bytes | None:
        """The next key (PEM), None when there is none or it cannot be read (it is made
        again: nothing served or published depends on an unreadable one)."""
        path = self.layout.next_key_path
        try:
            data = read_bytes(path, private=True)
            load_key(data, check=True)
        except FileNotFoundError:
            return None
        except StoreError as exc:
            log.warning("key.next_unreadable", path="acme/key.next.pem", error=str(exc)[:200])
            return None
        return data

    def make_next(self, kind: str) -> bytes:
        """A new next key of type ``kind`` in ``acme/key.next.pem`` (0600, written atomically;
        one there is replaced: of another type, or already used)."""
        files.check_not_link(self.layout.acme_dir, "the acme directory")
        files.ensure_dir(self.layout.acme_dir, 0o700, "the acme directory")
        key = generate(kind)
        data = to_pem(key)
        files.atomic_write(self.layout.next_key_path, data, 0o600, check=load_key)
        log.info(
            "key.next_created", path="acme/key.next.pem", key_type=kind, tlsa_3_1_1=tlsa_311(key)
        )
        return data

    def promote_next(self) -> bytes:
        """The next key becomes ``acme/key.pem`` (the old one kept in ``backups/acme/``);
        ``acme/key.next.pem`` is removed. Returns it (PEM)."""
        data = read_bytes(self.layout.next_key_path, private=True)
        load_key(data, check=True)
        path = self.layout.domain_key_path
        backup = None
        if path.exists():
            backup = backups.stamp_dir(self.layout.root, "acme")
            files.copy_dir(path.parent, (path.name,), backup, parents=3)
        files.atomic_write(path, data, 0o600, check=load_key)
        self.drop_next()
        log.info(
            "key.next_used",
            path="acme/key.pem",
            key_type=kind_of(load_key(data)) or "other",
            tlsa_3_1_1=tlsa_311(load_key(data)),
            backup=str(backup.relative_to(self.layout.root)) if backup else None,
        )
        return data

    def drop_next(self) -> None:
        """Remove ``acme/key.next.pem`` (used, or no longer wanted)."""
        files.discard(self.layout.next_key_path)
        files.fsync_dir(self.layout.acme_dir)

    def served_key(self) -> bytes | None:
        """The top-level ``key.pem`` (the key mailcow's services serve), None when missing or
        unreadable."""
        try:
            data = read_bytes(self.layout.root / "key.pem", private=True)
            load_key(data)
        except (FileNotFoundError, StoreError):
            return None
        return data
