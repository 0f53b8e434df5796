"""Files: the low-level primitives the certificate volume is read and written with.

May touch only the paths it is given. Nothing is ever opened through a symbolic link
(``O_NOFOLLOW``, ``lstat``). A write goes to ``<name>.new`` (created exclusively), loops until
every byte is written, fsyncs, reads the file back and checks it before anything is renamed, so
the file it replaces is never opened for writing. Every ``OSError`` becomes one ``StoreError``
that names the path and says plainly what happened; a failed write removes its ``.new`` file.
The PEM parsers (the checks a file passes before it is renamed into place) live in ``pem``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

from acme_sidecar.core.errors import StoreError

log = structlog.get_logger(__name__)

Check = Callable[[bytes], object]
"""Raises ``StoreError`` when the bytes read back are not what the file must hold."""
Staged = tuple[Path, bytes, int, Check | None]
"""A file for ``swap_in``: its final path, contents, mode and check."""
UNCHANGED = "the old files are unchanged"

_PLAIN = {
    errno.ENOSPC: "the certificate volume is full",
    errno.EDQUOT: "the certificate volume is over its disk quota",
    errno.EROFS: "the certificate volume is read-only",
    errno.EIO: "the certificate volume had an input/output error",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ELOOP: "it is a symbolic link",
}
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


# --- primitives ---------------------------------------------------------------------------


def explain(exc: OSError) -> str:
    """``exc`` in words with its errno name: ``the certificate volume is full (ENOSPC)``."""
    code = exc.errno or 0
    what = _PLAIN.get(code) or exc.strerror or str(exc)
    return f"{what} ({errno.errorcode.get(code, str(code))})"


def volume_error(exc: OSError, action: str, path: Path, outcome: str) -> StoreError:
    """One ``StoreError``: what happened, doing what, to which path, and what it left."""
    return StoreError(f"{explain(exc)} {action} {path}; {outcome}")


def refuse_link(path: Path, reason: str) -> StoreError:
    """Log ``store.symlink_refused`` once and return the ``StoreError`` to raise."""
    log.warning("store.symlink_refused", path=str(path), reason=reason)
    return StoreError(
        f"refused {path}: {reason}; nothing in the certificate volume is read or written "
        "through a symbolic link"
    )


def check_not_link(path: Path, what: str) -> None:
    """Raise (refused, logged) when ``path`` is a symbolic link; a missing path is fine."""
    if path.is_symlink():
        raise refuse_link(path, f"{what} is a symbolic link")


def is_regular(path: Path) -> bool:
    """Whether ``path`` is a regular file itself (a symbolic link to one is not)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def discard(path: Path) -> None:
    """Remove ``path`` (a link itself, never its target) if it is there; errors are ignored."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (creates, renames, removals) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Make the contents of regular file ``path`` durable (never through a link)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: Path, mode: int, what: str) -> None:
    """Create directory ``path`` (one level, made durable) unless it is there; refuse a link."""
    try:
        path.mkdir(mode)
        fsync_dir(path.parent)
    except FileExistsError:
        pass
    except OSError as exc:
        raise volume_error(exc, "creating", path, "nothing was written") from exc
    check_not_link(path, what)
    if not path.is_dir():
        raise StoreError(f"{path} is not a directory; nothing was written")


def read_bytes(path: Path, *, private: bool = False) -> bytes:
    """The contents of regular file ``path``, never through a link.

    Raises ``FileNotFoundError`` when it is missing and ``StoreError`` otherwise. With
    ``private`` a file readable by group or others is made 0600 first.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise refuse_link(path, "a symbolic link stands where a file belongs") from exc
        raise volume_error(exc, "reading", path, "nothing was changed") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise StoreError(f"{path} is not a regular file; nothing was read from it")
        if private and info.st_mode & 0o077:
            with contextlib.suppress(OSError):  # a read-only volume: still readable
                os.fchmod(fd, 0o600)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise volume_error(exc, "reading", path, "nothing was changed") from exc
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd``; ``os.write`` may write less on a full disk."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.EIO, "the system wrote no byte")
        view = view[written:]


def _read_back(fd: int, size: int) -> bytes:
    chunks, offset = [], 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def write_new(
    path: Path, data: bytes, mode: int, *, check: Check | None = None, outcome: str
) -> Path:
    """Write ``data`` to a new ``path.new`` (``mode``), fsync and verify it; return that path.

    The file read back must hold exactly ``data`` and pass ``check``. On any failure the
    ``.new`` file is removed and one ``StoreError`` says what happened and ``outcome``.
    """
    tmp = path.with_name(path.name + ".new")
    try:
        tmp.unlink(missing_ok=True)  # a leftover, or a link: removed, never followed
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise volume_error(exc, "creating", tmp, outcome) from exc
    try:
        try:
            os.fchmod(fd, mode)
            write_all(fd, data)
            os.fsync(fd)
            size = os.fstat(fd).st_size
            back = _read_back(fd, size)
        finally:
            os.close(fd)
        if size != len(data) or back != data:
            raise StoreError(  # noqa: TRY301 - the same clean-up as for an OSError
                f"{tmp} holds {size} bytes that differ from the {len(data)} written; {outcome}"
            )
        if check is not None:
            check(back)
    except OSError as exc:
        discard(tmp)
        raise volume_error(exc, "writing", tmp, outcome) from exc
    except BaseException:
        discard(tmp)
        raise
    return tmp


def atomic_write(path: Path, data: bytes, mode: int = 0o644, *, check: Check | None = None) -> None:
    """Replace ``path`` with ``data`` atomically (``StoreError`` on failure, old file kept)."""
    check_not_link(path, "the file to replace")
    tmp = write_new(path, data, mode, check=check, outcome=f"{path} is unchanged")
    try:
        tmp.replace(path)
    except OSError as exc:
        discard(tmp)
        raise volume_error(exc, "renaming", tmp, f"{path} is unchanged") from exc
    try:
        fsync_dir(path.parent)
    except OSError as exc:
        raise volume_error(
            exc, "syncing the directory of", path, "the new file is in place but not yet durable"
        ) from exc


def create_new(path: Path, data: bytes, mode: int, *, check: Check | None = None) -> None:
    """Create ``path`` holding ``data``; never replace a file that is there (``StoreError``)."""
    tmp = write_new(path, data, mode, check=check, outcome="nothing was created")
    try:
        try:
            os.link(tmp, path)  # fails when path exists, unlike a rename
        except FileExistsError:
            raise StoreError(f"{path} appeared while it was being created; it is kept") from None
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS or os.path.lexists(path):
                raise
            tmp.replace(path)  # a file system without hard links
        fsync_dir(path.parent)
    except OSError as exc:
        raise volume_error(exc, "creating", path, "no key was replaced") from exc
    finally:
        discard(tmp)


def copy_into(src: Path, dst: Path) -> None:
    """Copy regular file ``src`` (never a link's target) to the new file ``dst``, fsynced.

    Keeps the mode and times; raises ``OSError`` or ``StoreError`` (the caller says what it
    left behind).
    """
    data = read_bytes(src)
    info = os.lstat(src)
    mode = stat.S_IMODE(info.st_mode)
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.utime(dst, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)


def swap_in(directory: Path, files: Sequence[Staged], *, torn: str) -> None:
    """Stage every file of ``directory``, fsync, then rename them in order and fsync again.

    Nothing is renamed unless every file was staged whole (else ``StoreError``, old files
    unchanged); ``torn`` says what a failure between the renames leaves behind.
    """
    for final, *_ in files:
        check_not_link(final, f"{final.name} in {directory}")
    staged: list[tuple[Path, Path]] = []
    try:
        for final, data, mode, check in files:
            new = write_new(final, data, mode, check=check, outcome=UNCHANGED)
            staged.append((new, final))
        fsync_dir(directory)
    except BaseException as exc:
        for new, _ in staged:
            discard(new)
        if isinstance(exc, OSError):
            raise volume_error(exc, "syncing", directory, UNCHANGED) from exc
        raise
    try:
        for new, final in staged:
            new.replace(final)
        fsync_dir(directory)
    except OSError as exc:
        raise volume_error(exc, "renaming the new files in", directory, torn) from exc


def copy_dir(src: Path, names: Sequence[str], target: Path, *, parents: int) -> None:
    """Copy the files ``names`` of ``src`` (those there) into the new directory ``target``.

    Files, ``target`` and its ``parents`` nearest parent directories are fsynced. A link in
    ``src`` is refused, never copied; on any failure ``target`` is removed (``StoreError``).
    """
    try:
        target.mkdir(mode=0o700)
        for name in names:
            check_not_link(src / name, f"{name} in {src}")
            if is_regular(src / name):
                copy_into(src / name, target / name)
        for directory in (target, *list(target.parents)[:parents]):
            fsync_dir(directory)
    except BaseException as exc:
        shutil.rmtree(target, ignore_errors=True)
        if isinstance(exc, OSError):
            raise volume_error(exc, "writing the backup", target, UNCHANGED) from exc
        raise


def keep_aside(path: Path, kept: Path) -> None:
    """Rename ``path`` to ``kept`` (a name not in use) and make that durable."""
    try:
        path.rename(kept)
        fsync_file(kept)
        fsync_dir(kept.parent)
    except OSError as exc:
        raise volume_error(exc, "keeping it aside as", kept, f"{path} is unchanged") from exc


def try_lock(path: Path) -> int | None:
    """Open ``path`` (0600, never through a link) and ``flock`` it without waiting.

    The open file, or None when another process holds the lock; closing the file (or the
    process ending in any way) releases it.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        check_not_link(path, "the lock file")
        raise volume_error(exc, "opening", path, "no lock is held") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError as exc:
        os.close(fd)
        raise volume_error(exc, "locking", path, "no lock is held") from exc
    return fd
