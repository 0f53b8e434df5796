"""Scan: the certificate directories of the volume and the ``lstat`` of their files, in one pass.

One ``os.scandir`` of the volume's root (its file types come with the listing) and one ``lstat``
per file of each certificate directory, on plain strings: a quiet cycle of 10,000 certificates
reads the volume's layout in about a tenth of a second, where ``pathlib`` and a check per
question (is it a link? a directory? a regular file? its identity?) took seconds. Reads only,
never follows a link (but to tell a link to a directory from other links).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Entry:
    """One directory in the volume's root (or a link to one).

    ``stats`` holds the ``lstat`` of each of the scanned files (None where missing), empty for
    a link; ``refusal`` says why it is refused as a link (None: it is not)."""

    name: str
    stats: tuple[os.stat_result | None, ...]
    refusal: str | None

    @property
    def complete(self) -> bool:
        """Every scanned file is there as a regular file (a link to one is not)."""
        stats = self.stats
        return bool(stats) and all(s is not None and stat.S_ISREG(s.st_mode) for s in stats)

    @property
    def identity(self) -> tuple[int, ...]:
        """Inode, size, modification and change time (ns) of every scanned file: a file
        replaced, rewritten or touched changes it."""
        out: list[int] = []
        for s in self.stats:
            if s is not None:
                out += [s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns]
        return tuple(out)


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def scan(root: str, files: Sequence[str], reserved: Collection[str]) -> list[Entry]:
    """The directories in ``root`` but ``reserved``, sorted by name, with the ``lstat`` of
    ``files`` in each. A link to a directory is refused; other links and files are left out."""
    try:
        with os.scandir(root) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    out: list[Entry] = []
    for entry in entries:
        if entry.name in reserved:
            continue
        if entry.is_symlink():
            if entry.is_dir():  # follows the link: a link to a directory is refused
                out.append(Entry(entry.name, (), "the certificate directory is a symbolic link"))
            continue
        if not entry.is_dir(follow_symlinks=False):
            continue
        stats = tuple(_lstat(f"{entry.path}/{f}") for f in files)
        linked = [f for f, s in zip(files, stats, strict=True) if s and stat.S_ISLNK(s.st_mode)]
        refusal = (
            f"{' and '.join(linked)} in the certificate directory is a symbolic link"
            if linked
            else None
        )
        out.append(Entry(entry.name, stats, refusal))
    return out


def directories(root: str, reserved: Collection[str]) -> list[tuple[str, int, int]]:
    """The directories in ``root`` but ``reserved`` (not links to one), sorted by name, each
    with the inode and modification time (ns) of the directory itself: a file created, renamed
    or removed in it changes that time."""
    try:
        with os.scandir(root) as listing:
            found = [
                e for e in listing if e.name not in reserved and e.is_dir(follow_symlinks=False)
            ]
    except (FileNotFoundError, NotADirectoryError):
        return []
    out: list[tuple[str, int, int]] = []
    for entry in sorted(found, key=lambda e: e.name):
        st = entry.stat(follow_symlinks=False)
        out.append((entry.name, st.st_ino, st.st_mtime_ns))
    return out
