"""Store: the certificate volume (DESIGN.md §4), written atomically, never through a link.

May touch only files under ``ACME_CERT_DIR`` (with the primitives of ``files``). Each write
stages ``*.new`` files (mode 0600 for keys, every byte written, fsynced, read back and parsed),
checks that key and certificate match, then renames key, cert and ``domains`` into place and
fsyncs the directory. A crash between renames is finished on the next start by ``recover``, so
a reader never keeps a mismatched pair; a full or read-only volume leaves the old files as they
were. What is replaced is copied to ``backups/<name>/<UTC timestamp>/`` first. A symbolic link
where a certificate directory or one of the volume's files belongs is refused, never followed.
``lock`` keeps two daemons on one volume from ordering at once. Every file is parsed inside the
guard of ``pem``: a certificate directory whose files do not parse is one ``store.unreadable``
line and is moved whole to ``backups/<name>/unreadable-<UTC timestamp>/`` (its certificate is
then missing: ordered anew); a damaged ``acme/state.json`` is kept aside as
``state.json.damaged-<UTC timestamp>``. With ``set_aside=False`` (``status``, ``check``,
``import``) both are only reported, nothing is moved.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import structlog

from acme_sidecar.adapters.volume import (
    backups,
    certdir,
    files,
    keys,
    ledgerfile,
    pem,
    recovery,
    scan,
)
from acme_sidecar.adapters.volume.files import (
    check_not_link,
    ensure_dir,
    read_bytes,
)
from acme_sidecar.adapters.volume.pem import (
    Unreadable,
    key_matches,
    load_chain,
    load_key,
)
from acme_sidecar.core.errors import StoreError
from acme_sidecar.core.ledger import State
from acme_sidecar.core.model import CertSpec, StoredCert
from acme_sidecar.core.names import normalize_hostname
from acme_sidecar.core.profiles import NEW_KEY_TYPE

log = structlog.get_logger(__name__)

CERT_FILES = certdir.CERT_FILES
RESERVED = {"acme", "backups"}


class VolumeBusy(StoreError):
    """Another acme-sidecar holds the volume's lock (``acme/lock``)."""


def _holds(path: Path, data: bytes, *, private: bool = False) -> bool:
    """Whether file ``path`` holds ``data`` (``private``: made 0600); a link is refused."""
    try:
        return read_bytes(path, private=private) == data
    except FileNotFoundError:
        return False


class CertStore:
    """The certificate volume."""

    def __init__(self, root: Path, *, backup_keep: int = 10, set_aside: bool = True) -> None:
        self.root = root
        self.backup_keep = backup_keep
        # the daemon moves unreadable files aside; status, check and import only report them
        self.set_aside = set_aside
        # what was found unreadable (file → what is wrong), each logged once
        self._unreadable: dict[str, str] = {}
        # what ``load`` read last, per directory, with the identity of its three files: a file
        # replaced (a new inode), rewritten or touched is read again; the rest is not parsed
        # again (a quiet cycle of 1,000 certificates loads them several times)
        self._seen: dict[str, tuple[tuple[int, ...], StoredCert]] = {}
        # certificate directories recovery found clean: (inode, mtime), searched again only
        # when they change
        self._clean: dict[str, tuple[int, int]] = {}
        # the ledger last read or written, with the identity of the file then: an equal ledger
        # is not serialised again while the file is still that one
        self._saved: tuple[tuple[int, ...] | None, State] | None = None

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
        """Finish (or roll back) a swap that a crash interrupted, in every certificate dir
        and at the top (``recovery``); leftover ``acme/*.new`` files are removed."""
        try:
            recovery.recover_acme(self.acme_dir)
            recovery.recover_dir(self.root)
            self._recover_dirs()
        except OSError as exc:
            raise files.volume_error(exc, "recovering", self.root, "it runs again") from exc

    def _recover_dirs(self) -> None:
        """``recovery.recover_dir`` for every certificate directory, but those that did not
        change since the last recovery found nothing staged in them (a file created, renamed or
        removed in a directory changes its modification time; only a time over a second old
        is trusted, so a change in the same clock tick is not missed)."""
        clean: dict[str, tuple[int, int]] = {}
        began = time.time_ns()
        for name, ino, mtime in scan.directories(str(self.root), RESERVED):
            if self._clean.get(name) != (ino, mtime):
                directory = self.root / name
                recovery.recover_dir(directory)
                st = os.lstat(directory)
                ino, mtime = st.st_ino, st.st_mtime_ns
            if began - mtime > 1_000_000_000:
                clean[name] = (ino, mtime)
        self._clean = clean

    # --- reading --------------------------------------------------------------------------

    def _refusal(self, directory: Path) -> str | None:
        """Why certificate directory ``directory`` is refused as a link, or None."""
        if directory.is_symlink():
            return "the certificate directory is a symbolic link"
        linked = [f for f in CERT_FILES if (directory / f).is_symlink()]
        if linked and directory.is_dir():
            return f"{' and '.join(linked)} in the certificate directory is a symbolic link"
        return None

    def refused(self) -> list[str]:
        """Certificate directories refused because they, or their files, are symbolic links.

        ``load`` and ``names`` leave them out; nothing is read or written through them.
        """
        return [e.name for e in scan.scan(str(self.root), CERT_FILES, RESERVED) if e.refusal]

    def names(self) -> list[str]:
        """The certificate directories (domains, cert.pem, key.pem), without parsing them."""
        entries = scan.scan(str(self.root), CERT_FILES, RESERVED)
        return [e.name for e in entries if e.complete and not e.refusal]

    def load(self) -> dict[str, StoredCert]:
        """Every certificate directory (one holding domains, cert.pem and key.pem) that parses;
        one that does not is set aside (see the module docstring) and left out."""
        return self.read()[0]

    def read(self) -> tuple[dict[str, StoredCert], list[str]]:
        """``load`` and ``refused`` from one scan of the volume (``scan``); a directory whose
        three files did not change since the last read is not parsed again."""
        found: dict[str, StoredCert] = {}
        refused: list[str] = []
        for entry in scan.scan(str(self.root), CERT_FILES, RESERVED):
            if entry.refusal:
                log.warning("store.symlink_refused", path=str(self.root / entry.name),
                            reason=entry.refusal)  # fmt: skip
                refused.append(entry.name)
                continue
            if not entry.complete:
                continue
            if normalize_hostname(entry.name, allow_wildcard=True) != entry.name:
                log.warning("store.ignored", directory=entry.name, reason="not a host name")
                continue
            directory = self.root / entry.name
            try:
                found[entry.name] = self._read(entry)
            except Unreadable as exc:
                self._damaged(directory, exc)
            except (StoreError, OSError) as exc:  # cannot be read now: left as it is
                self._report(str(directory), str(exc), certificate=entry.name)
        self._seen = {n: v for n, v in self._seen.items() if n in found}
        return found, refused

    def unreadable(self) -> dict[str, str]:
        """The files found unreadable so far (path → what is wrong): the certificate files
        ``load`` set aside (or, with ``set_aside=False``, left out) and a damaged state.json."""
        return dict(self._unreadable)

    def _report(self, file: str, error: str, **fields: str | None) -> bool:
        """Log ``store.unreadable`` once per file and error; True when it was logged."""
        if self._unreadable.get(file) == error:
            return False
        self._unreadable[file] = error
        log.warning("store.unreadable", file=file, error=error, **fields)
        return True

    def _damaged(self, directory: Path, exc: Unreadable) -> None:
        """One ``store.unreadable`` line; the directory moved whole to ``backups/``."""
        file = str(exc.file or directory)
        if not self.set_aside:
            self._report(file, str(exc), certificate=directory.name,
                         action="left in place: this command writes nothing")  # fmt: skip
            return
        try:
            kept = backups.archive(self.root, directory.name, backups.UNREADABLE)
        except (StoreError, OSError) as err:
            self._report(file, str(exc), certificate=directory.name,
                         action=f"left out; it could not be set aside: {err}")  # fmt: skip
            return
        self._unreadable.pop(file, None)
        self._report(
            file,
            str(exc),
            certificate=directory.name,
            kept=str(kept.relative_to(self.root)),
            action="its directory was set aside whole; the certificate is ordered anew",
        )

    def _read(self, entry: scan.Entry) -> StoredCert:
        identity = entry.identity
        seen = self._seen.get(entry.name)
        if seen is not None and seen[0] == identity:
            return seen[1]
        stored = self._parse(self.root / entry.name)
        self._seen[entry.name] = (identity, stored)
        return stored

    def _parse(self, directory: Path) -> StoredCert:
        return certdir.parse(directory)

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
        fresh = kind or pem.kind_of(load_key(key)) or NEW_KEY_TYPE
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

    def read_state(self) -> tuple[State, str]:
        """The ledger in ``acme/state.json`` and "", or an empty one and why the file cannot be
        read; nothing is moved (``status`` and ``check``). Missing: an empty ledger."""
        check_not_link(self.acme_dir, "the acme directory")
        return ledgerfile.read(self.state_path)

    def load_state(self) -> State:
        """The remembered state; missing gives an empty state. A damaged file is kept aside
        first (one ``state.damaged`` line), so the new ledger never overwrites it; with
        ``set_aside=False`` it is only reported."""
        mark = self._state_mark()  # before the read: a later change shows as another mark
        state, damage = self.read_state()
        if not damage:
            self._saved = (mark, state)
        path = str(self.state_path)
        if damage and self.set_aside:
            kept = ledgerfile.keep_aside(self.state_path)
            self._unreadable[path] = damage
            log.warning("state.damaged", path=path, kept=str(kept), error=damage,
                        action="kept aside; a new ledger is started")  # fmt: skip
        elif damage and self._unreadable.get(path) != damage:
            self._unreadable[path] = damage
            log.warning("state.damaged", path=path, error=damage,
                        action="left in place: this command writes nothing")  # fmt: skip
        return state

    def save_state(self, state: State) -> None:
        """Write the state atomically, only when it changed (a quiet cycle writes nothing).

        A state equal to the one last read or written, while the file is still that one (same
        inode, size and times), is not even serialised again: the cycle saves the ledger after
        every stage, and at 10,000 certificates each serialisation took a tenth of a second."""
        check_not_link(self.acme_dir, "the acme directory")
        saved = self._saved
        unchanged = saved is not None and saved[0] is not None and saved[0] == self._state_mark()
        if unchanged and saved is not None and (saved[1] is state or saved[1] == state):
            return
        ledgerfile.save(self.state_path, state)
        self._saved = (self._state_mark(), state)

    def _state_mark(self) -> tuple[int, ...] | None:
        try:
            st = os.lstat(self.state_path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

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
