"""Where everything is in the volume, and which certificate directories may be used.

``Layout`` names every path (DESIGN.md §4) and says why a certificate directory is refused
(``refusal``: a symbolic link is never followed). ``Found`` records the
files found unreadable, each logged once (``store.unreadable``). Reads directory entries only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import structlog

from acme_sidecar.adapters.volume import certdir

CERT_FILES = certdir.CERT_FILES
RESERVED = frozenset({"acme", "backups"})

log = structlog.get_logger("acme_sidecar.adapters.volume.store")


@dataclass(frozen=True, slots=True)
class Layout:
    """The paths of one volume."""

    root: Path

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
    def next_key_path(self) -> Path:
        """``acme/key.next.pem``: the next certificate key, made before a key change while DANE
        pins the key (``core.rollover``); never read by mailcow's services."""
        return self.acme_dir / "key.next.pem"

    @property
    def state_path(self) -> Path:
        """``acme/state.json``: the ledger."""
        return self.acme_dir / "state.json"

    @property
    def lock_path(self) -> Path:
        """``acme/lock``: held (``flock``) by the daemon that may order for this volume."""
        return self.acme_dir / "lock"

    @property
    def force_path(self) -> Path:
        """The admin's ``force_renew`` flag file."""
        return self.root / "force_renew"

    def refusal(self, directory: Path) -> str | None:
        """Why certificate directory ``directory`` is refused as a link, or None."""
        if directory.is_symlink():
            return "the certificate directory is a symbolic link"
        linked = [f for f in CERT_FILES if (directory / f).is_symlink()]
        if linked and directory.is_dir():
            return f"{' and '.join(linked)} in the certificate directory is a symbolic link"
        return None


@dataclass(slots=True)
class Found:
    """The files found unreadable (path → what is wrong), each logged once."""

    files: dict[str, str] = field(default_factory=dict)

    def report(self, file: str, error: str, **fields: str | None) -> bool:
        """Log ``store.unreadable`` once per file and error; True when it was logged."""
        if self.files.get(file) == error:
            return False
        self.files[file] = error
        log.warning("store.unreadable", file=file, error=error, **fields)
        return True
