"""Store: the certificate volume (DESIGN.md §4), written atomically, never through a link.

May touch only files under ``ACME_CERT_DIR`` (with the primitives of ``files``). Each write
stages ``*.new`` files (mode 0600 for keys, every byte written, fsynced, read back and parsed),
checks that key and certificate match, then renames key, cert and ``domains`` into place and
fsyncs the directory. A crash between renames is finished on the next start by ``recover``, so
a reader never keeps a mismatched pair; a full or read-only volume leaves the old files as they
were. What is replaced is copied to ``backups/<name>/<UTC timestamp>/`` first. A symbolic link
where a certificate directory or one of the volume's files belongs is refused, never followed.
``lock`` keeps two daemons on one volume from ordering at once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import structlog

from acme_sidecar.adapters import backups, files, keys
from acme_sidecar.adapters.files import PrivateKey as PrivateKey
from acme_sidecar.adapters.files import atomic_write as atomic_write
from acme_sidecar.adapters.files import cert_sans as cert_sans
from acme_sidecar.adapters.files import check_not_link, ensure_dir, is_regular, read_bytes
from acme_sidecar.adapters.files import key_matches as key_matches
from acme_sidecar.adapters.files import load_chain as load_chain
from acme_sidecar.adapters.files import load_key as load_key
from acme_sidecar.core.ari import cert_id
from acme_sidecar.core.errors import StoreError
from acme_sidecar.core.ledger import State
from acme_sidecar.core.model import CertSpec, StoredCert
from acme_sidecar.core.names import normalize_hostname
from acme_sidecar.core.profiles import NEW_KEY_TYPE

log = structlog.get_logger(__name__)

PAIR = ("key.pem", "cert.pem")
CERT_FILES = ("domains", "cert.pem", "key.pem")
RESERVED = {"acme", "backups"}


class VolumeBusy(StoreError):
    """Another acme-sidecar holds the volume's lock (``acme/lock``)."""


def _pair_ok(cert_path: Path, key_path: Path) -> bool:
    try:
        return key_matches(load_chain(read_bytes(cert_path))[0], load_key(read_bytes(key_path)))
    except (StoreError, OSError):
        return False


def _domains_ok(domains_path: Path, cert_path: Path) -> bool:
    """Whether a staged ``domains`` file is whole: the names of the certificate in place."""
    try:
        names = read_bytes(domains_path).decode("utf-8").split()
        sans = cert_sans(load_chain(read_bytes(cert_path))[0])
    except (StoreError, OSError, ValueError):
        return False
    return bool(names) and {n.lower() for n in names} == {n.lower() for n in sans}


def _holds(path: Path, data: bytes, *, private: bool = False) -> bool:
    """Whether file ``path`` holds ``data`` (``private``: made 0600); a link is refused."""
    try:
        return read_bytes(path, private=private) == data
    except FileNotFoundError:
        return False


def _identity(directory: Path) -> tuple[int, ...]:
    """Inode, size and modification time (ns) of a directory's three files."""
    out: list[int] = []
    for name in CERT_FILES:
        st = os.lstat(directory / name)
        out += [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    return tuple(out)


class CertStore:
    """The certificate volume."""

    def __init__(self, root: Path, *, backup_keep: int = 10) -> None:
        self.root = root
        self.backup_keep = backup_keep
        # what ``load`` read last, per directory, with the identity of its three files: a file
        # replaced (a new inode), rewritten or touched is read again; the rest is not parsed
        # again (a quiet cycle of 1,000 certificates loads them several times)
        self._seen: dict[str, tuple[tuple[int, ...], StoredCert]] = {}

    # --- layout ---------------------------------------------------------------------------

    @property
    def acme_dir(self) -> Path:
        """``acme/``: keys, state and the lock (mode 0700); never a symbolic link."""
        return self.root / "acme"

    @property
    def account_key_path(self) -> Path:
        """``acme/account.pem``: the ACME account key, kept forever."""
        return self.acme_dir / "account.pem"

    @property
    def domain_key_path(self) -> Path:
        """``acme/key.pem``: the certificate key reused across renewals."""
        return self.acme_dir / "key.pem"

    @property
    def state_path(self) -> Path:
        """``acme/state.json``: what the sidecar remembers across restarts."""
        return self.acme_dir / "state.json"

    @property
    def lock_path(self) -> Path:
        """``acme/lock``: held (``flock``) by the daemon that may order for this volume."""
        return self.acme_dir / "lock"

    @property
    def force_path(self) -> Path:
        """The admin's ``force_renew`` flag file."""
        return self.root / "force_renew"

    def prepare(self) -> None:
        """Create the volume's directories and finish any interrupted swap."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            ensure_dir(self.acme_dir, 0o700, "the acme directory")
            if self.acme_dir.stat().st_mode & 0o077:
                self.acme_dir.chmod(0o700)
        except OSError as exc:
            raise files.volume_error(exc, "preparing", self.root, "nothing was written") from exc
        self.recover()

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``acme/lock`` (non-blocking ``flock``); ``VolumeBusy`` when another holds it.

        The kernel releases it when the process ends, however it ends (no stale lock).
        """
        ensure_dir(self.acme_dir, 0o700, "the acme directory")
        fd = files.try_lock(self.lock_path)
        if fd is None:
            raise VolumeBusy(f"another acme-sidecar holds {self.lock_path}; this one waits")
        try:
            yield
        finally:
            os.close(fd)

    # --- recovery -------------------------------------------------------------------------

    def recover(self) -> None:
        """Finish (or roll back) a swap that a crash interrupted, in every certificate dir.

        A staged pair that is whole and matches is renamed into place; a torn one (empty,
        unparseable, not matching) is discarded, so is a ``domains.new`` that does not list the
        names of the certificate in place. Leftover ``acme/*.new`` files are removed.
        """
        try:
            if self.acme_dir.is_dir() and not self.acme_dir.is_symlink():
                for name in ("account.pem", "key.pem", "state.json"):
                    files.discard(self.acme_dir / f"{name}.new")
                files.fsync_dir(self.acme_dir)
            for directory in [self.root, *self._dirs()]:
                self._recover_dir(directory)
        except OSError as exc:
            raise files.volume_error(exc, "recovering", self.root, "it runs again") from exc

    def _recover_dir(self, directory: Path) -> None:
        key_new, cert_new, domains_new = (directory / f"{n}.new" for n in (*PAIR, "domains"))
        staged = [p for p in (key_new, cert_new, domains_new) if os.path.lexists(p)]
        if not staged:
            return
        if any((directory / f).is_symlink() for f in CERT_FILES):  # refused: never renamed over
            for leftover in staged:
                files.discard(leftover)
            return
        if cert_new in staged:
            key_file = key_new if is_regular(key_new) else directory / "key.pem"
            if _pair_ok(cert_new, key_file):
                if key_file == key_new:
                    key_new.replace(directory / "key.pem")
                cert_new.replace(directory / "cert.pem")
                log.warning("store.recovered", directory=str(directory), action="completed")
            else:
                log.warning("store.recovered", directory=str(directory), action="discarded")
        if domains_new in staged and _domains_ok(domains_new, directory / "cert.pem"):
            domains_new.replace(directory / "domains")
            log.warning("store.recovered", directory=str(directory), file="domains")
        for leftover in (key_new, cert_new, domains_new):
            files.discard(leftover)
        files.fsync_dir(directory)

    # --- reading --------------------------------------------------------------------------

    def _dirs(self) -> Iterator[Path]:
        if not self.root.is_dir():
            return
        for entry in sorted(self.root.iterdir()):
            if entry.is_dir() and not entry.is_symlink() and entry.name not in RESERVED:
                yield entry

    def _refusal(self, directory: Path) -> str | None:
        """Why certificate directory ``directory`` is refused as a link, or None."""
        if directory.is_symlink():
            return "the certificate directory is a symbolic link"
        linked = [f for f in CERT_FILES if (directory / f).is_symlink()]
        if linked and directory.is_dir():
            return f"{' and '.join(linked)} in the certificate directory is a symbolic link"
        return None

    def _refusals(self) -> dict[str, str]:
        entries = sorted(self.root.iterdir()) if self.root.is_dir() else []
        found = {e.name: self._refusal(e) for e in entries if e.is_dir() and e.name not in RESERVED}
        return {name: reason for name, reason in found.items() if reason}

    def refused(self) -> list[str]:
        """Certificate directories refused because they, or their files, are symbolic links.

        ``load`` and ``names`` leave them out; nothing is read or written through them.
        """
        return sorted(self._refusals())

    def names(self) -> list[str]:
        """The certificate directories (domains, cert.pem, key.pem), without parsing them."""
        return [d.name for d in self._dirs() if all(is_regular(d / f) for f in CERT_FILES)]

    def load(self) -> dict[str, StoredCert]:
        """Every certificate directory (one holding domains, cert.pem and key.pem)."""
        refusals = self._refusals()
        for name, reason in refusals.items():
            log.warning("store.symlink_refused", path=str(self.root / name), reason=reason)
        found: dict[str, StoredCert] = {}
        for directory in self._dirs():
            if directory.name in refusals:
                continue
            if not all(is_regular(directory / f) for f in CERT_FILES):
                continue
            if normalize_hostname(directory.name, allow_wildcard=True) != directory.name:
                log.warning("store.ignored", directory=directory.name, reason="not a host name")
                continue
            try:
                found[directory.name] = self._read(directory)
            except (StoreError, OSError, UnicodeDecodeError) as exc:
                log.warning("store.unreadable", certificate=directory.name, error=str(exc))
        self._seen = {n: v for n, v in self._seen.items() if n in found}
        return found

    def _read(self, directory: Path) -> StoredCert:
        identity = _identity(directory)
        seen = self._seen.get(directory.name)
        if seen is not None and seen[0] == identity:
            return seen[1]
        stored = self._parse(directory)
        self._seen[directory.name] = (identity, stored)
        return stored

    def _parse(self, directory: Path) -> StoredCert:
        domains = tuple(read_bytes(directory / "domains").decode("utf-8").split())
        leaf = load_chain(read_bytes(directory / "cert.pem"))[0]
        key = load_key(read_bytes(directory / "key.pem"))
        return StoredCert(
            name=directory.name,
            domains=domains,
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
            serial=leaf.serial_number,
            issuer=leaf.issuer.rfc4514_string(),
            key_matches=key_matches(leaf, key),
            sans=cert_sans(leaf),
            cert_id=cert_id(leaf),
            key_type=keys.kind_of(leaf.public_key()),
            client_auth=keys.client_auth(leaf),
        )

    def holds_chain(self, name: str, fullchain: bytes) -> bool:
        """Whether certificate ``name`` already holds exactly ``fullchain`` (links refused)."""
        try:
            return _holds(self.root / name / "cert.pem", fullchain)
        except (StoreError, OSError):
            return False

    # --- keys -----------------------------------------------------------------------------

    def account_key(self) -> bytes:
        """The ACME account key (PEM); a new one is ECDSA P-256, an adopted RSA key is kept."""
        return keys.account_key(self.root, self.account_key_path)

    def domain_key(self, kind: str = "") -> bytes:
        """The certificate key (PEM), reused across renewals (TLSA ``3 1 1`` stays valid);
        ``kind`` is ``ACME_KEY_TYPE`` (see ``keys.domain_key``)."""
        return keys.domain_key(self.root, self.domain_key_path, kind)

    def order_keys(
        self, kind: str, names: Sequence[str], *, reuse: bool
    ) -> bytes | dict[str, bytes]:
        """The key for new orders: the volume's (``reuse``, ACME_KEY_REUSE=y), else a fresh key
        of the type in force per certificate name, kept only in its directory once stored."""
        key = self.domain_key(kind)
        if reuse:
            return key
        fresh = kind or keys.kind_of(load_key(key)) or NEW_KEY_TYPE
        log.info("key.fresh", certificates=len(names), key_type=fresh, reason="ACME_KEY_REUSE=n")
        return {name: keys.new_pem(fresh) for name in names}

    def key_type(self, configured: str = "") -> str:
        """The certificate key type in force: ``configured`` (ACME_KEY_TYPE), else the type of
        ``acme/key.pem``, else (a new volume) ec256; "" for a key of another kind."""
        return configured or keys.stored_kind(self.domain_key_path)

    # --- writing --------------------------------------------------------------------------

    def write_cert(self, spec: CertSpec, fullchain: bytes, key_pem: bytes) -> None:
        """Back up the old files, then swap in the new pair and ``domains`` atomically."""
        chain = load_chain(fullchain)
        if not key_matches(chain[0], load_key(key_pem)):
            raise StoreError(f"{spec.name}: the issued certificate does not match its key")
        directory = self.root / spec.name
        reason = self._refusal(directory)
        if reason:
            raise files.refuse_link(directory, reason)
        if directory.is_dir():
            self.backup(spec.name)
        ensure_dir(directory, 0o755, "the certificate directory")
        self._swap(directory, fullchain, key_pem, " ".join(spec.domains).encode())

    def _swap(self, directory: Path, cert: bytes, key: bytes, domains: bytes | None) -> None:
        """Stage every file, then rename key, cert and ``domains``; nothing renamed on failure."""
        staged: list[files.Staged] = [(directory / "cert.pem", cert, 0o644, load_chain)]
        if not _holds(
            directory / "key.pem", key, private=True
        ):  # the same key (TLSA pins) stays untouched
            staged.insert(0, (directory / "key.pem", key, 0o600, load_key))  # first: see recover
        if domains is not None:
            staged.append((directory / "domains", domains, 0o644, None))
        files.swap_in(directory, staged, torn="the next start finishes or rolls back the swap")

    def is_default(self, name: str) -> bool:
        """Whether the top-level pair already holds ``<name>/cert.pem`` and ``key.pem`` (also
        True when ``name`` has no certificate yet: there is nothing to make the default)."""
        src = self.root / name
        if not (src / "cert.pem").is_file():
            return True
        reason = self._refusal(src)
        if reason:
            raise files.refuse_link(src, reason)
        cert, key = read_bytes(src / "cert.pem"), read_bytes(src / "key.pem")
        return _holds(self.root / "cert.pem", cert) and _holds(
            self.root / "key.pem", key, private=True
        )

    def set_default(self, name: str) -> bool:
        """Make ``<name>/cert.pem`` and ``key.pem`` the top-level pair; True when it changed.
        The cycle records the deploy it owes first (``is_default`` says whether it will)."""
        if self.is_default(name):
            return False
        src = self.root / name
        self._swap(self.root, read_bytes(src / "cert.pem"), read_bytes(src / "key.pem"), None)
        return True

    def backup(self, name: str) -> Path:
        """Copy the files of certificate ``name`` to ``backups/<name>/<UTC timestamp>/``.

        Files and directories are fsynced; on failure the partial backup is removed and
        ``StoreError`` raised, so nothing is replaced without its backup. Links are refused.
        """
        src = self.root / name
        reason = self._refusal(src)
        if reason:
            raise files.refuse_link(src, reason)
        target = backups.stamp_dir(self.root, name)
        files.copy_dir(src, (*CERT_FILES, "acme.csr"), target, parents=3)
        self.prune(name)
        log.info("cert.backed_up", certificate=name, backup=str(target.relative_to(self.root)))
        return target

    def archive(self, name: str) -> Path:
        """Move certificate directory ``name`` whole into ``backups/<name>/<UTC timestamp>``."""
        target = backups.archive(self.root, name)
        self.prune(name)
        return target

    def prune(self, name: str) -> None:
        """Keep only the newest ``backup_keep`` backups of ``name`` (links are left alone)."""
        backups.prune(self.root, name, self.backup_keep)

    # --- state ----------------------------------------------------------------------------

    def load_state(self) -> State:
        """The remembered state; missing gives an empty state, damaged is kept aside first."""
        check_not_link(self.acme_dir, "the acme directory")
        try:
            text = read_bytes(self.state_path).decode("utf-8")
            return State.from_json(text)
        except FileNotFoundError:
            return State()
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return self._keep_damaged(exc)

    def _keep_damaged(self, exc: Exception) -> State:
        path, stamp = self.state_path, backups.utc_stamp()
        kept, n = path.with_name(f"{path.name}.damaged-{stamp}"), 1
        while os.path.lexists(kept):
            n += 1
            kept = path.with_name(f"{path.name}.damaged-{stamp}.{n}")
        files.keep_aside(path, kept)
        log.warning("state.damaged", path=str(path), kept=str(kept), error=str(exc)[:200])
        return State()

    def save_state(self, state: State) -> None:
        """Write the state atomically, only when it changed (a quiet cycle writes nothing)."""
        data = state.to_json().encode()
        check_not_link(self.acme_dir, "the acme directory")
        with contextlib.suppress(FileNotFoundError):
            if read_bytes(self.state_path) == data:
                return
        atomic_write(self.state_path, data, 0o600)

    # --- force_renew ----------------------------------------------------------------------

    def force_requested(self) -> bool:
        """Whether the admin created ``force_renew`` (a symbolic link is refused, logged)."""
        if self.force_path.is_symlink():
            files.refuse_link(self.force_path, "force_renew is a symbolic link")  # logged only
            return False
        return self.force_path.exists()

    def clear_force(self) -> None:
        """Delete ``force_renew`` after a successful forced cycle."""
        with contextlib.suppress(FileNotFoundError):
            self.force_path.unlink()
