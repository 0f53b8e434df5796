"""Store: the certificate volume (DESIGN.md §4), written atomically.

May touch only files under ``ACME_CERT_DIR``. Each write stages ``*.new`` files (mode 0600 for
keys, fsynced), checks that key and certificate match, then renames key, cert and ``domains`` into
place and fsyncs the directory. A crash between renames is finished on the next start by
``recover``, so a reader never keeps a mismatched pair. What is replaced is copied to
``backups/<name>/<UTC timestamp>/`` first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID

from acme_sidecar.core.errors import StoreError
from acme_sidecar.core.model import CertSpec, StoredCert
from acme_sidecar.core.names import normalize_hostname
from acme_sidecar.core.state import State

log = structlog.get_logger(__name__)

PAIR = ("key.pem", "cert.pem")
RESERVED = {"acme", "backups"}
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new(path: Path, data: bytes, mode: int) -> Path:
    """Write ``data`` to ``path.new`` (created with ``mode``) and fsync it; return that path."""
    tmp = path.with_name(path.name + ".new")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically."""
    _write_new(path, data, mode).replace(path)
    _fsync_dir(path.parent)


def load_chain(data: bytes) -> list[x509.Certificate]:
    """Parse a PEM chain, leaf first; raise ``StoreError`` when it holds no certificate."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise StoreError(f"not a PEM certificate chain: {exc}") from exc
    return certs


def load_key(data: bytes, *, check: bool = False) -> PrivateKey:
    """Parse a PEM private key (RSA or EC); raise ``StoreError`` otherwise.

    The RSA consistency check costs about half a second for a 4096-bit key, so it runs only
    with ``check`` (for a key about to sign); comparing public keys does not need it.
    """
    try:
        key = serialization.load_pem_private_key(
            data, password=None, unsafe_skip_rsa_key_validation=not check
        )
    except (ValueError, TypeError) as exc:
        raise StoreError("not a PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise StoreError(f"unsupported key type {type(key).__name__}")
    return key


def key_matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    """Whether ``cert`` was issued for ``key``."""
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    return cert.public_key().public_bytes(enc, fmt) == key.public_key().public_bytes(enc, fmt)


def cert_sans(cert: x509.Certificate) -> tuple[str, ...]:
    """The DNS names of ``cert``'s subjectAltName extension."""
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        return ()
    value = ext.value
    if not isinstance(value, x509.SubjectAlternativeName):
        return ()
    return tuple(value.get_values_for_type(x509.DNSName))


def _pair_ok(cert_data: bytes, key_data: bytes) -> bool:
    try:
        return key_matches(load_chain(cert_data)[0], load_key(key_data))
    except StoreError:
        return False


class CertStore:
    """The certificate volume."""

    def __init__(self, root: Path, *, backup_keep: int = 10) -> None:
        self.root = root
        self.backup_keep = backup_keep

    # --- layout ---------------------------------------------------------------------------

    @property
    def account_key_path(self) -> Path:
        """``acme/account.pem``: the ACME account key, kept forever."""
        return self.root / "acme" / "account.pem"

    @property
    def domain_key_path(self) -> Path:
        """``acme/key.pem``: the certificate key reused across renewals."""
        return self.root / "acme" / "key.pem"

    @property
    def force_path(self) -> Path:
        """The admin's ``force_renew`` flag file."""
        return self.root / "force_renew"

    def prepare(self) -> None:
        """Create the volume's directories and finish any interrupted swap."""
        try:
            (self.root / "acme").mkdir(parents=True, exist_ok=True)
            (self.root / "acme").chmod(0o700)
        except OSError as exc:
            raise StoreError(f"cannot use certificate directory {self.root}: {exc}") from exc
        self.recover()

    def recover(self) -> None:
        """Finish (or roll back) a swap that a crash interrupted, in every certificate dir."""
        for directory in [self.root, *self._dirs()]:
            key_new, cert_new = (directory / f"{n}.new" for n in PAIR)
            if cert_new.exists():
                key_file = key_new if key_new.exists() else directory / "key.pem"
                if key_file.exists() and _pair_ok(cert_new.read_bytes(), key_file.read_bytes()):
                    if key_new.exists():
                        key_new.replace(directory / "key.pem")
                    cert_new.replace(directory / "cert.pem")
                    log.warning("store.recovered", directory=str(directory), action="completed")
                else:
                    log.warning("store.recovered", directory=str(directory), action="discarded")
            for leftover in (key_new, cert_new, directory / "domains.new"):
                leftover.unlink(missing_ok=True)

    def _dirs(self) -> Iterator[Path]:
        if not self.root.is_dir():
            return
        for entry in sorted(self.root.iterdir()):
            if entry.is_dir() and not entry.is_symlink() and entry.name not in RESERVED:
                yield entry

    # --- reading --------------------------------------------------------------------------

    def names(self) -> list[str]:
        """The certificate directories (domains, cert.pem, key.pem), without parsing them."""
        return [
            d.name
            for d in self._dirs()
            if all((d / f).is_file() for f in ("domains", "cert.pem", "key.pem"))
        ]

    def load(self) -> dict[str, StoredCert]:
        """Every certificate directory (one holding domains, cert.pem and key.pem)."""
        found: dict[str, StoredCert] = {}
        for directory in self._dirs():
            if not all((directory / f).is_file() for f in ("domains", "cert.pem", "key.pem")):
                continue
            if normalize_hostname(directory.name, allow_wildcard=True) != directory.name:
                log.warning("store.ignored", directory=directory.name, reason="not a host name")
                continue
            try:
                found[directory.name] = self._read(directory)
            except (StoreError, OSError, UnicodeDecodeError) as exc:
                log.warning("store.unreadable", certificate=directory.name, error=str(exc))
        return found

    def _read(self, directory: Path) -> StoredCert:
        domains = tuple((directory / "domains").read_text("utf-8").split())
        leaf = load_chain((directory / "cert.pem").read_bytes())[0]
        key = load_key((directory / "key.pem").read_bytes())
        return StoredCert(
            name=directory.name,
            domains=domains,
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
            serial=leaf.serial_number,
            issuer=leaf.issuer.rfc4514_string(),
            key_matches=key_matches(leaf, key),
            sans=cert_sans(leaf),
        )

    # --- keys -----------------------------------------------------------------------------

    def _load_or_create_key(self, path: Path, make: type[rsa.RSAPrivateKey] | None) -> bytes:
        if path.exists():
            data = path.read_bytes()
            load_key(data, check=True)
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
            log.info("key.reused", path=str(path.relative_to(self.root)))
            return data
        key: PrivateKey
        if make is None:
            key = ec.generate_private_key(ec.SECP256R1())
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
        data = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data, 0o600)
        log.info("key.created", path=str(path.relative_to(self.root)))
        return data

    def account_key(self) -> bytes:
        """The ACME account key (PEM); a new one is ECDSA P-256, an adopted RSA key is kept."""
        return self._load_or_create_key(self.account_key_path, None)

    def domain_key(self) -> bytes:
        """The certificate key (PEM), RSA 4096 like acme-mailcow's, reused across renewals."""
        return self._load_or_create_key(self.domain_key_path, rsa.RSAPrivateKey)

    # --- writing --------------------------------------------------------------------------

    def write_cert(self, spec: CertSpec, fullchain: bytes, key_pem: bytes) -> None:
        """Back up the old files, then swap in the new pair and ``domains`` atomically."""
        chain = load_chain(fullchain)
        if not key_matches(chain[0], load_key(key_pem)):
            raise StoreError(f"{spec.name}: the issued certificate does not match its key")
        directory = self.root / spec.name
        if directory.exists():
            self.backup(spec.name)
        directory.mkdir(mode=0o755, exist_ok=True)
        self._swap(directory, fullchain, key_pem)
        atomic_write(directory / "domains", " ".join(spec.domains).encode())

    def _swap(self, directory: Path, cert_pem: bytes, key_pem: bytes) -> None:
        key_path, cert_path = directory / "key.pem", directory / "cert.pem"
        same_key = key_path.is_file() and key_path.read_bytes() == key_pem
        cert_new = _write_new(cert_path, cert_pem, 0o644)
        key_new = None if same_key else _write_new(key_path, key_pem, 0o600)
        _fsync_dir(directory)
        if key_new is not None:
            key_new.replace(key_path)
        cert_new.replace(cert_path)
        key_path.chmod(0o600)
        _fsync_dir(directory)

    def set_default(self, name: str) -> bool:
        """Make ``<name>/cert.pem`` and ``key.pem`` the top-level pair; True when it changed."""
        src = self.root / name
        cert, key = (src / "cert.pem").read_bytes(), (src / "key.pem").read_bytes()
        top_cert, top_key = self.root / "cert.pem", self.root / "key.pem"
        if (
            top_cert.is_file()
            and top_key.is_file()
            and top_cert.read_bytes() == cert
            and top_key.read_bytes() == key
        ):
            return False
        self._swap(self.root, cert, key)
        return True

    def _stamp_dir(self, name: str) -> Path:
        base = self.root / "backups" / name
        stamp = datetime.now(UTC).strftime("%Y-%m-%d_%H_%M_%S")
        target, n = base / stamp, 1
        while target.exists():
            n += 1
            target = base / f"{stamp}.{n}"
        return target

    def backup(self, name: str) -> Path:
        """Copy the files of certificate ``name`` to ``backups/<name>/<UTC timestamp>/``."""
        target = self._stamp_dir(name)
        target.mkdir(parents=True, mode=0o700)
        for file in ("domains", "cert.pem", "key.pem", "acme.csr"):
            if (self.root / name / file).is_file():
                shutil.copy2(self.root / name / file, target / file)
        self.prune(name)
        log.info("cert.backed_up", certificate=name, backup=str(target.relative_to(self.root)))
        return target

    def archive(self, name: str) -> Path:
        """Move certificate directory ``name`` whole into ``backups/<name>/<UTC timestamp>``."""
        target = self._stamp_dir(name)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.root / name).replace(target)
        _fsync_dir(self.root)
        self.prune(name)
        return target

    def prune(self, name: str) -> None:
        """Keep only the newest ``backup_keep`` backups of ``name``."""
        base = self.root / "backups" / name
        if not base.is_dir():
            return
        entries = sorted(p for p in base.iterdir() if p.is_dir())
        for old in entries[: max(0, len(entries) - self.backup_keep)]:
            shutil.rmtree(old, ignore_errors=True)

    @property
    def state_path(self) -> Path:
        """``acme/state.json``: what the sidecar remembers across restarts."""
        return self.root / "acme" / "state.json"

    def load_state(self) -> State:
        """The remembered state; a missing or damaged file gives an empty state (logged)."""
        try:
            return State.from_json(self.state_path.read_text("utf-8"))
        except FileNotFoundError:
            return State()
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("state.unreadable", path=str(self.state_path), error=str(exc)[:200])
            return State()

    def save_state(self, state: State) -> None:
        """Write the state atomically, only when it changed (a quiet cycle writes nothing)."""
        data = state.to_json().encode()
        if self.state_path.is_file() and self.state_path.read_bytes() == data:
            return
        atomic_write(self.state_path, data, 0o600)

    def force_requested(self) -> bool:
        """Whether the admin created ``force_renew``."""
        return self.force_path.exists()

    def clear_force(self) -> None:
        """Delete ``force_renew`` after a successful forced cycle."""
        with contextlib.suppress(FileNotFoundError):
            self.force_path.unlink()
