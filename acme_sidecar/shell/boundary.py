"""The cycle's boundary: the ledger book saved after every change, and the one line (naming
the outside system) with which an unexpected error ends a cycle. May touch: the volume's
``acme/state.json`` through the store.
"""

from __future__ import annotations

from types import TracebackType

import structlog

from acme_sidecar.core.errors import StoreError
from acme_sidecar.core.ledger import State
from acme_sidecar.core.ports import Volume
from acme_sidecar.core.report import Outcome, Report

log = structlog.get_logger(__name__)

COMPONENTS = {
    "mariadb": "database (MariaDB)",
    "dns": "DNS",
    "http_probe": "HTTP self-check",
    "acme": "ACME CA",
    "volume": "certificate volume",
    "files": "certificate volume",
    "docker": "Docker API",
    "dockerapi": "mailcow dockerapi",
    "tls_probe": "TLS verification",
}


class Book:
    """The ledger of this run: every change is saved at once; a failed save is logged once
    and retried with the next change (the state stays in memory meanwhile). ``loaded``: the
    ledger was read (or handed over by the daemon); until then nothing is saved, so a cycle
    that ends before reading it never writes an empty ledger over the volume's."""

    def __init__(self, store: Volume, state: State, *, loaded: bool = True) -> None:
        self.store = store
        self.state = state
        self.loaded = loaded
        self._unsaved = False

    def update(self, state: State) -> None:
        """Take ``state`` as the new ledger and save it."""
        self.state = state
        self.save()

    def note(self, state: State) -> None:
        """Take ``state`` as the new ledger; it is saved with the next ``update``. For changes
        whose loss a restart repairs (a stored chain is recognised in the volume), so that a
        certificate costs one fsynced write of the ledger, not three."""
        self.state = state

    def save(self) -> None:
        """Write the ledger to ``acme/state.json`` (only when it changed)."""
        if not self.loaded:
            return
        try:
            self.store.ledger.save(self.state)
        except (StoreError, OSError) as exc:
            if not self._unsaved:
                log.error("state.unsaved", error=str(exc)[:300], action="kept in memory")
            self._unsaved = True
        else:
            self._unsaved = False


def component_of(exc: BaseException) -> str:
    """The outside system an exception came from: the deepest adapter on its traceback."""
    tb: TracebackType | None = exc.__traceback__
    found = ""
    while tb is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if module.startswith("acme_sidecar.adapters."):
            found = module.split(".")[2]
        elif module.startswith("acme_sidecar.") and not found:
            found = module.rsplit(".", 1)[-1]
        tb = tb.tb_next
    return COMPONENTS.get(found, found or "unknown")


def crashed(book: Book, exc: Exception, action: str) -> Report:
    """The cycle boundary's answer to an unexpected error: one line naming the component,
    the ledger saved, a crashed report."""
    log.error(
        "cycle.crashed",
        component=component_of(exc),
        error_type=type(exc).__name__,
        error=str(exc)[:300],
        action=action,
    )
    book.save()
    return Report(Outcome.FAILED, state=book.state, failed=1, crashed=True)
