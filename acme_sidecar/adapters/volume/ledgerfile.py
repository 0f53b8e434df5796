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

import structlog

from acme_sidecar.adapters.volume import backups, files
from acme_sidecar.adapters.volume.files import atomic_write, read_bytes
from acme_sidecar.adapters.volume.layout import Found, Layout
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

log = structlog.get_logger("acme_sidecar.adapters.volume.store")


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


class LedgerFile:
    """``acme/state.json`` of one volume (``core.ports.LedgerStore``)."""

    def __init__(self, layout: Layout, found: Found, *, set_aside: bool) -> None:
        self.layout = layout
        self.found = found
        self.set_aside = set_aside  # the daemon keeps a damaged file aside; commands report it
        # the ledger last read or written, with the identity of the file then: an equal ledger
        # is not serialised again while the file is still that one
        self._saved: tuple[tuple[int, ...] | None, State] | None = None

    @property
    def path(self) -> Path:
        """``acme/state.json``."""
        return self.layout.state_path

    def read(self) -> tuple[State, str]:
        """The ledger and "", or an empty one and why the file cannot be read; nothing is moved
        (``status`` and ``check``). Missing: an empty ledger."""
        files.check_not_link(self.layout.acme_dir, "the acme directory")
        return read(self.path)

    def load(self) -> State:
        """The ledger; missing gives an empty one. A damaged file is kept aside first (one
        ``state.damaged`` line), so the new ledger never overwrites it; with
        ``set_aside=False`` it is only reported."""
        mark = self._mark()  # before the read: a later change shows as another mark
        state, damage = self.read()
        if not damage:
            self._saved = (mark, state)
            return state
        path = str(self.path)
        if self.set_aside:
            kept = keep_aside(self.path)
            self.found.files[path] = damage
            log.warning("state.damaged", path=path, kept=str(kept), error=damage,
                        action="kept aside; a new ledger is started")  # fmt: skip
        elif self.found.files.get(path) != damage:
            self.found.files[path] = damage
            log.warning("state.damaged", path=path, error=damage,
                        action="left in place: this command writes nothing")  # fmt: skip
        return state

    def save(self, state: State) -> None:
        """Write the ledger atomically, only when it changed (a quiet cycle writes nothing).

        A ledger equal to the one last read or written, while the file is still that one (same
        inode, size and times), is not even serialised again: the cycle saves the ledger after
        every stage, and at 10,000 certificates each serialisation took a tenth of a second."""
        files.check_not_link(self.layout.acme_dir, "the acme directory")
        saved = self._saved
        unchanged = saved is not None and saved[0] is not None and saved[0] == self._mark()
        if unchanged and saved is not None and (saved[1] is state or saved[1] == state):
            return
        save(self.path, state)
        self._saved = (self._mark(), state)

    def _mark(self) -> tuple[int, ...] | None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
