"""A full file system for the fault tests: ``fill`` writes until ENOSPC."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def fill(root: Path) -> Path:
    """Write a filler file under ``root`` until the file system answers ENOSPC; its path."""
    filler = root / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    return filler
