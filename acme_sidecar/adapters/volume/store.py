"""The certificate volume (DESIGN.md §4) as the cycle sees it: one object per job.

``CertStore`` prepares the volume (directories, a swap a crash interrupted), holds its lock
(two daemons on one volume never order at once) and the admin's ``force_renew`` flag, and hands
out the jobs: ``layout`` (where everything is), ``certs`` (the certificate directories:
``certdirs``), ``keys`` (``acme/account.pem``, ``acme/key.pem``: ``keys``) and ``ledger``
(``acme/state.json``: ``ledgerfile``). Every write is atomic and never goes through a link;
every file is parsed inside one guard (``pem``), and what cannot be read is one
``store.unreadable`` line (``unreadable`` lists it). With ``set_aside=False`` (``status``,
``check``, ``import``) nothing is moved, damage is only reported. May touch only files under
``ACME_CERT_DIR``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from acme_sidecar.adapters.volume import files, recovery
from acme_sidecar.adapters.volume.certdirs import CertDirs
from acme_sidecar.adapters.volume.files import ensure_dir
from acme_sidecar.adapters.volume.keys import Keys
from acme_sidecar.adapters.volume.layout import Found, Layout
from acme_sidecar.adapters.volume.ledgerfile import LedgerFile
from acme_sidecar.core.errors import StoreError


class VolumeBusy(StoreError):
    """Another acme-sidecar holds the volume's lock (``acme/lock``)."""


class CertStore:
    """The certificate volume (``core.ports.Volume``)."""

    def __init__(self, root: Path, *, backup_keep: int = 10, set_aside: bool = True) -> None:
        self.layout = Layout(root)
        self.set_aside = set_aside
        self.found = Found()
        self.certs = CertDirs(self.layout, self.found, backup_keep=backup_keep,
                              set_aside=set_aside)  # fmt: skip
        self.keys = Keys(self.layout)
        self.ledger = LedgerFile(self.layout, self.found, set_aside=set_aside)

    @property
    def root(self) -> Path:
        """The volume's root (``ACME_CERT_DIR``)."""
        return self.layout.root

    def prepare(self) -> None:
        """Create the volume's directories and finish any interrupted swap."""
        acme = self.layout.acme_dir
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            ensure_dir(acme, 0o700, "the acme directory")
            if acme.stat().st_mode & 0o077:
                acme.chmod(0o700)
        except OSError as exc:
            raise files.volume_error(exc, "preparing", self.root, "nothing was written") from exc
        self.recover()

    def recover(self) -> None:
        """Finish (or roll back) a swap that a crash interrupted, at the top and in every
        certificate directory (``recovery``); leftover ``acme/*.new`` files are removed."""
        try:
            recovery.recover_acme(self.layout.acme_dir)
            self.certs.recover()
        except OSError as exc:
            raise files.volume_error(exc, "recovering", self.root, "it runs again") from exc

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``acme/lock`` (non-blocking ``flock``); ``VolumeBusy`` when another holds it.

        The kernel releases it when the process ends, however it ends (no stale lock).
        """
        ensure_dir(self.layout.acme_dir, 0o700, "the acme directory")
        fd = files.try_lock(self.layout.lock_path)
        if fd is None:
            raise VolumeBusy(f"another acme-sidecar holds {self.layout.lock_path}; this one waits")
        try:
            yield
        finally:
            os.close(fd)

    def unreadable(self) -> dict[str, str]:
        """The files found unreadable so far (path → what is wrong): the certificate files set
        aside (or, with ``set_aside=False``, left out) and a damaged state.json."""
        return dict(self.found.files)

    def force_requested(self) -> bool:
        """Whether the admin created ``force_renew`` (a symbolic link is refused, logged)."""
        flag = self.layout.force_path
        if flag.is_symlink():
            files.refuse_link(flag, "force_renew is a symbolic link")  # logged only
            return False
        return flag.exists()

    def clear_force(self) -> None:
        """Delete ``force_renew`` after a successful forced cycle."""
        with contextlib.suppress(FileNotFoundError):
            self.layout.force_path.unlink()
