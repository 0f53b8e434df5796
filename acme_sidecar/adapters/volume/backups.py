"""Backups in the certificate volume: ``backups/<name>/<UTC timestamp>/``, pruned to a limit.

Files that could not be read (``pem.Unreadable``) are set aside in
``backups/<name>/unreadable-<UTC timestamp>/``, which pruning never removes: the admin decides.
May touch only ``backups/`` under the volume root (and move a certificate directory there).
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from acme_sidecar.adapters.volume import files
from acme_sidecar.adapters.volume.files import check_not_link, ensure_dir


def utc_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d_%H_%M_%S")


UNREADABLE = "unreadable-"
"""The prefix of a backup of files that could not be read; never pruned."""


def stamp_dir(root: Path, name: str, prefix: str = "") -> Path:
    """A new, unused ``backups/<name>/<prefix><UTC timestamp>`` path (parents created, 0700)."""
    base = root / "backups" / name
    ensure_dir(base.parent, 0o700, "the backups directory")
    ensure_dir(base, 0o700, f"the backups directory of {name}")
    stamp = prefix + utc_stamp()
    target, n = base / stamp, 1
    while os.path.lexists(target):
        n += 1
        target = base / f"{stamp}.{n}"
    return target


def archive(root: Path, name: str, prefix: str = "") -> Path:
    """Move certificate directory ``name`` whole into a new backup directory; fsync.
    ``prefix`` ``UNREADABLE``: it is set aside because it could not be read."""
    src = root / name
    check_not_link(src, "the certificate directory")
    target = stamp_dir(root, name, prefix)
    try:
        src.replace(target)
        for directory in (root, target.parent.parent, target.parent):
            files.fsync_dir(directory)
    except OSError as exc:
        raise files.volume_error(exc, "archiving", src, "it stays in place") from exc
    return target


def latest_aside(root: Path, name: str) -> Path | None:
    """The newest ``backups/<name>/unreadable-*`` directory, or None."""
    base = root / "backups" / name
    if base.is_symlink() or not base.is_dir():
        return None
    found = sorted(
        p for p in base.iterdir() if p.name.startswith(UNREADABLE) and not p.is_symlink()
    )
    return found[-1] if found else None


def prune(root: Path, name: str, keep: int) -> None:
    """Keep only the newest ``keep`` backups of ``name`` (links and what was set aside as
    unreadable are left alone)."""
    base = root / "backups" / name
    if base.is_symlink() or not base.is_dir():
        return
    entries = sorted(
        p
        for p in base.iterdir()
        if p.is_dir() and not p.is_symlink() and not p.name.startswith(UNREADABLE)
    )
    for old in entries[: max(0, len(entries) - keep)]:
        shutil.rmtree(old, ignore_errors=True)
