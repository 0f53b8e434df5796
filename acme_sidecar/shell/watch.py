"""The cycle of ``SKIP_LETS_ENCRYPT=y``: no database, no order; the top-level pair is watched.

Under the volume's lock: a deploy still owed is finished, the top-level pair is checked when
it changed (``shell.own.check_own``: accepted and deployed, or refused with one warning; no
certificate file is written). A refused pair is the admin's to fix, not a failed cycle: it sets
no ``ACME_FAIL_TIME``. Like ``guarded_cycle`` it never raises: a fault is one line naming the
component.
"""

from __future__ import annotations

import structlog

from acme_sidecar.adapters.volume import VolumeBusy
from acme_sidecar.config.policies import CyclePolicy
from acme_sidecar.core.errors import StoreError
from acme_sidecar.core.ledger import State
from acme_sidecar.core.report import Outcome, Report
from acme_sidecar.shell.act import finish_deploy
from acme_sidecar.shell.boundary import Book, crashed
from acme_sidecar.shell.gather import Deps
from acme_sidecar.shell.own import check_own

log = structlog.get_logger(__name__)


def watch_cycle(
    policy: CyclePolicy, deps: Deps, state: State | None = None, *, quiet: bool = False
) -> Report:
    """Look at the top-level pair once; ``quiet`` leaves out the ``own.kept`` line."""
    store = deps.store
    book = Book(store, state if state is not None else State())
    owed = state is not None and state.deploy is not None
    if not owed and not (store.root / "cert.pem").exists():  # nothing to watch: write nothing
        return Report(Outcome.OK, state=book.state)
    applied: tuple[str, ...] = ()
    failed = 0
    try:
        store.prepare()
        with store.lock():
            if state is None:
                book.state = store.ledger.load()
            check_own(policy.own, store, book, deps.clock(), deps.stop, quiet=quiet)
            if book.state.deploy is not None:
                done = finish_deploy(policy, deps, book)
                applied, failed = done.applied, failed + done.failed
    except VolumeBusy as exc:
        log.warning("store.busy", component="certificate volume", error=str(exc))
    except StoreError as exc:
        log.error("store.unusable", component="certificate volume", error=str(exc)[:300])
        failed += 1
    except Exception as exc:  # noqa: BLE001 - the cycle boundary: log, save, retry later
        return crashed(book, exc, "state saved; looked at again at the next wake-up")
    outcome = Outcome.OK if failed == 0 else Outcome.FAILED
    return Report(outcome, state=book.state, applied=applied, failed=failed)
