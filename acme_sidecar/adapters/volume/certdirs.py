"""The certificate directories: read them (each file inside the guard of ``pem``), write a new
pair atomically, make one the top-level pair, back up, archive, and recover a swap a crash
interrupted.

A write stages ``*.new`` files (mode 0600 for keys, every byte written, fsynced, read back and
parsed), checks that key and certificate match, then renames key, cert and ``domains`` into
place and fsyncs the directory; a crash between renames is finished by ``recover``. What is
replaced is copied to ``backups/<name>/<UTC timestamp>/`` first. A directory whose files do not
parse is one ``store.unreadable`` line and is moved whole to
``backups/<name>/unreadable-<UTC timestamp>/`` (with ``set_aside=False`` only reported). May
touch only the certificate directories, the top-level pair and ``backups/``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import structlog

from acme_sidecar.adapters.volume import backups, certdir, files, recovery, scan
from acme_sidecar.adapters.volume.files import ensure_dir, read_bytes
from acme_sidecar.adapters.volume.layout import CERT_FILES, RESERVED, Found, Layout
from acme_sidecar.adapters.volume.pem import Unreadable, key_matches, load_chain, load_key
from acme_sidecar.core.errors import StoreError
from acme_sidecar.core.model import CertSpec, StoredCert
from acme_sidecar.core.names import normalize_hostname

log = structlog.get_logger("acme_sidecar.adapters.volume.store")


def holds(path: Path, data: bytes, *, private: bool = False) -> bool:
    """Whether file ``path`` holds ``data`` (``private``: made 0600); a link is refused."""
    try:
        return read_bytes(path, private=private) == data
    except FileNotFoundError:
        return False


class CertDirs:
    """The certificate directories of one volume (``core.ports.CertFiles``)."""

    def __init__(self, layout: Layout, found: Found, *, backup_keep: int, set_aside: bool):
        self.layout = layout
        self.found = found
        self.backup_keep = backup_keep
        self.set_aside = set_aside  # the daemon moves unreadable files aside; commands report
        # what ``read`` parsed last, per directory, with the identity of its three files: a file
        # replaced (a new inode), rewritten or touched is read again, the rest is not parsed
        self._seen: dict[str, tuple[tuple[int, ...], StoredCert]] = {}
        # directories recovery found clean: (inode, mtime), searched again only when changed
        self._clean: dict[str, tuple[int, int]] = {}

    @property
    def root(self) -> Path:
        """The volume's root."""
        return self.layout.root

    # --- reading --------------------------------------------------------------------------

    def _scan(self) -> list[scan.Entry]:
        return scan.scan(str(self.root), CERT_FILES, RESERVED)

    def refused(self) -> list[str]:
        """Certificate directories refused because they, or their files, are symbolic links
        (``load`` and ``names`` leave them out; nothing is read or written through them)."""
        return [e.name for e in self._scan() if e.refusal]

    def names(self) -> list[str]:
        """The certificate directories (domains, cert.pem, key.pem), without parsing them."""
        return [e.name for e in self._scan() if e.complete and not e.refusal]

    def load(self) -> dict[str, StoredCert]:
        """Every certificate directory that parses (see ``read``)."""
        return self.read()[0]

    def read(self) -> tuple[dict[str, StoredCert], list[str]]:
        """``load`` and ``refused`` from one scan of the volume; a directory whose three files
        did not change since the last read is not parsed again; one that does not parse is set
        aside (see the module docstring) and left out."""
        found: dict[str, StoredCert] = {}
        refused: list[str] = []
        for entry in self._scan():
            if entry.refusal:
                log.warning("store.symlink_refused", path=str(self.root / entry.name),
                            reason=entry.refusal)  # fmt: skip
                refused.append(entry.name)
                continue
            if not entry.complete:
                continue
            if normalize_hostname(entry.name, allow_wildcard=True) != entry.name:
                renamed = self._lower_case(entry)
                if renamed is None:
                    continue
                entry = renamed
            directory = self.root / entry.name
            try:
                found[entry.name] = self._read(entry)
            except Unreadable as exc:
                self._damaged(directory, exc)
            except (StoreError, OSError) as exc:  # cannot be read now: left as it is
                self.found.report(str(directory), str(exc), certificate=entry.name)
        self._seen = {n: v for n, v in self._seen.items() if n in found}
        return found, refused

    def _lower_case(self, entry: scan.Entry) -> scan.Entry | None:
        """A directory named in mixed case (acme-mailcow's for a mixed-case MAILCOW_HOSTNAME)
        is renamed to its lower-case name, which the sidecar uses, when that is free; else it
        is left as it is and out (one line). The contents stay: its key, so its TLSA record."""
        name, lower = entry.name, entry.name.lower()
        if normalize_hostname(lower, allow_wildcard=True) != lower:
            log.warning("store.ignored", directory=name, reason="not a host name")
            return None
        if not self.set_aside or os.path.lexists(self.root / lower):
            why = "this command writes nothing" if not self.set_aside else f"{lower} exists"
            log.warning("store.ignored", directory=name, reason=f"not lower case; {why}")
            return None
        try:
            (self.root / name).rename(self.root / lower)
            files.fsync_dir(self.root)
        except OSError as exc:
            log.warning("store.ignored", directory=name, reason=f"not lower case: {exc}")
            return None
        log.info("store.renamed", directory=name, to=lower, reason="host names are lower case")
        return scan.Entry(lower, entry.stats, entry.refusal)

    def _read(self, entry: scan.Entry) -> StoredCert:
        identity = entry.identity
        seen = self._seen.get(entry.name)
        if seen is not None and seen[0] == identity:
            return seen[1]
        stored = certdir.parse(self.root / entry.name)
        self._seen[entry.name] = (identity, stored)
        return stored

    def _damaged(self, directory: Path, exc: Unreadable) -> None:
        """One ``store.unreadable`` line; the directory moved whole to ``backups/``."""
        file = str(exc.file or directory)
        if not self.set_aside:
            self.found.report(file, str(exc), certificate=directory.name,
                              action="left in place: this command writes nothing")  # fmt: skip
            return
        try:
            kept = backups.archive(self.root, directory.name, backups.UNREADABLE)
        except (StoreError, OSError) as err:
            self.found.report(file, str(exc), certificate=directory.name,
                              action=f"left out; it could not be set aside: {err}")  # fmt: skip
            return
        self.found.files.pop(file, None)
        self.found.report(
            file,
            str(exc),
            certificate=directory.name,
            kept=str(kept.relative_to(self.root)),
            action="its directory was set aside whole; the certificate is ordered anew",
        )

    def holds_chain(self, name: str, fullchain: bytes) -> bool:
        """Whether certificate ``name`` already holds exactly ``fullchain`` (links refused)."""
        try:
            return holds(self.root / name / "cert.pem", fullchain)
        except (StoreError, OSError):
            return False

    # --- writing --------------------------------------------------------------------------

    def write_cert(self, spec: CertSpec, fullchain: bytes, key_pem: bytes) -> None:
        """Back up the old files, then swap in the new pair and ``domains`` atomically."""
        chain = load_chain(fullchain)
        if not key_matches(chain[0], load_key(key_pem)):
            raise StoreError(f"{spec.name}: the issued certificate does not match its key")
        directory = self.root / spec.name
        reason = self.layout.refusal(directory)
        if reason:
            raise files.refuse_link(directory, reason)
        if directory.is_dir():
            self.backup(spec.name)
        ensure_dir(directory, 0o755, "the certificate directory")
        self._swap(directory, fullchain, key_pem, " ".join(spec.domains).encode())

    def _swap(self, directory: Path, cert: bytes, key: bytes, domains: bytes | None) -> None:
        """Stage every file, then rename key, cert and ``domains``; nothing renamed on failure."""
        staged: list[files.Staged] = [(directory / "cert.pem", cert, 0o644, load_chain)]
        if not holds(directory / "key.pem", key, private=True):  # the same key stays untouched
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
        reason = self.layout.refusal(src)
        if reason:
            raise files.refuse_link(src, reason)
        cert, key = read_bytes(src / "cert.pem"), read_bytes(src / "key.pem")
        return holds(self.root / "cert.pem", cert) and holds(
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
        reason = self.layout.refusal(src)
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

    # --- recovery -------------------------------------------------------------------------

    def recover(self) -> None:
        """``recovery.recover_dir`` at the top and for every certificate directory, but those
        that did not change since the last recovery found nothing staged in them (a file
        created, renamed or removed in a directory changes its modification time; only a time
        over a second old is trusted, so a change in the same clock tick is not missed)."""
        recovery.recover_dir(self.root)
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
