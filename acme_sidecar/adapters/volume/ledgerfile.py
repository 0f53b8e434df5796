"""The ledger file ``acme/state.json``: read inside one guard, kept aside when damaged.

Any content that cannot be read (bad JSON or UTF-8, a number of 5,000 digits, ``1e400`` where a
count belongs, arrays nested deeper than the parser goes, wrong types, a time out of range) is
one ``damage`` string; ``keep_aside`` renames such a file to ``state.json.damaged-<UTC time>``
before a new ledger is written over it, so nothing is lost. Writes are atomic and happen only
when the ledger changed. May touch only ``acme/state.json`` and its kept-aside copies.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from acme_sidecar.adapters.volume import backups, files
from acme_sidecar.adapters.volume.files import atomic_write, read_bytes
from acme_sidecar.core.ledger import State

STATE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,  # bad JSON or UTF-8, a number of 5,000 digits, a bad time
    KeyError,
    TypeError,
    AttributeError,
    IndexError,
    OverflowError,  # "count": 1e400
    RecursionError,  # [[[[...]]]] nested deeper than the parser goes
)
"""What ``State.from_json`` raises on a ``state.json`` it cannot read."""


def read(path: Path) -> tuple[State, str]:
    """The ledger in ``path`` and "", or an empty ledger and why the file cannot be read (it is
    not moved). A missing file is an empty ledger; an I/O error raises ``StoreError``."""
    try:
        data = read_bytes(path)
    except FileNotFoundError:
        return State(), ""
    try:
        return State.from_json(data.decode("utf-8")), ""
    except STATE_ERRORS as exc:
        return State(), f"{type(exc).__name__}: {str(exc)[:200]}"


def keep_aside(path: Path) -> Path:
    """Rename the damaged ``path`` to a new ``<name>.damaged-<UTC time>`` and return it."""
    stamp = backups.utc_stamp()
    kept, n = path.with_name(f"{path.name}.damaged-{stamp}"), 1
    while os.path.lexists(kept):
        n += 1
        kept = path.with_name(f"{path.name}.damaged-{stamp}.{n}")
    files.keep_aside(path, kept)
    return kept


def save(path: Path, state: State) -> None:
    """Write ``state`` atomically (0600), only when it changed (a quiet cycle writes nothing)."""
    data = state.to_json().encode()
    with contextlib.suppress(FileNotFoundError):
        if read_bytes(path) == data:
            return
    atomic_write(path, data, 0o600)
