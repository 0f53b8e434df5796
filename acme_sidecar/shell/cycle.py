"""One cycle: finish what is owed, gather and decide, act; one summary line.

Order of steps: (1) chains issued but not stored are stored, the top-level pair is looked at
(``shell.own``: an own pair is stepped aside for, checked when it changed), a deploy still owed
is finished;
(2) ``gather.decide`` plans; (3) orders are placed, each result settled into the ledger and
saved at once, each certificate stored as it arrives; the default pair is updated; stale
certificates archived (only when nothing failed); the services reloaded or restarted and
verified; ``force_renew`` cleared once every certificate was re-issued under it.

``guarded_cycle`` is the boundary: whatever an adapter raises ends the cycle with one error
line naming the component, the ledger saved, and the daemon's next try from the ladder.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from types import TracebackType

import structlog

from acme_sidecar.adapters.volume import CertStore, VolumeBusy, load_chain
from acme_sidecar.config.policies import CyclePolicy, DaemonPolicy
from acme_sidecar.core.errors import StoreError
from acme_sidecar.core.ledger import State
from acme_sidecar.core.model import Action, CertPlan, CertSpec, Issued
from acme_sidecar.core.plan import renewal_time
from acme_sidecar.core.report import Outcome, Report
from acme_sidecar.core.settle import (
    RetryPolicy,
    begin_orders,
    deploy_begin,
    deploy_checks,
    deploy_finished,
    deploy_wrote,
    force_complete,
    force_done,
    force_seen,
    interrupted,
    settle_result,
    settle_store_failed,
    settle_stored,
    sni_map,
    tidy,
)
from acme_sidecar.shell.deploy import deploy
from acme_sidecar.shell.gather import Deps, decide
from acme_sidecar.shell.own import check_own, own_written

__all__ = ["Deps", "guarded_cycle", "next_sleep", "run_cycle", "summarize"]

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
    and retried with the next change (the state stays in memory meanwhile)."""

    def __init__(self, store: CertStore, state: State) -> None:
        self.store = store
        self.state = state
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
        try:
            self.store.save_state(self.state)
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


def guarded_cycle(policy: CyclePolicy, deps: Deps, state: State | None = None) -> Report:
    """``run_cycle`` behind the boundary: never raises (but for KeyboardInterrupt/SystemExit)."""
    book = Book(deps.store, state if state is not None else State())
    try:
        return run_cycle(policy, deps, state, book=book)
    except Exception as exc:  # noqa: BLE001 - the cycle boundary: log, save, retry later
        log.error(
            "cycle.crashed",
            component=component_of(exc),
            error_type=type(exc).__name__,
            error=str(exc)[:300],
            action="state saved; next try from the retry ladder",
        )
        book.save()
        return Report(Outcome.FAILED, state=book.state, failed=1, crashed=True)


def run_cycle(
    policy: CyclePolicy, deps: Deps, state: State | None = None, *, book: Book | None = None
) -> Report:
    """One full cycle. ``state`` is the ledger the daemon carries; ``None`` reads the volume's."""
    store = deps.store
    try:
        store.prepare()
        with store.lock():
            if state is None:
                state = store.load_state()
            if book is None:
                book = Book(store, state)
            book.state = state
            return _act(policy, deps, book, store)
    except VolumeBusy as exc:
        log.warning("store.busy", component="certificate volume", error=str(exc))
    except StoreError as exc:
        log.error("store.unusable", component="certificate volume", error=str(exc)[:300])
    kept = book.state if book else (state or State())
    return Report(Outcome.FAILED, failed=1, state=kept, crashed=True)


def _owe(book: Book, store: CertStore, now: datetime) -> None:
    """Record the deploy owed before the first write of a cycle (with the SNI map before)."""
    if book.state.deploy is None:
        domains = {n: c.domains for n, c in store.load().items()}
        book.update(deploy_begin(book.state, store.names(), now, sni_map(domains)))


def _store_one(
    book: Book,
    store: CertStore,
    spec: CertSpec,
    chain: bytes,
    key_pem: bytes,
    now: datetime,
    retry: RetryPolicy,
) -> int | None:
    """Store an issued chain, owing its deploy first; return its serial (None: not stored)."""
    _owe(book, store, now)
    book.update(deploy_wrote(book.state, spec.name))
    try:
        store.write_cert(spec, chain, key_pem)
    except (StoreError, OSError) as exc:
        log.error("cert.store_failed", certificate=spec.name, error=str(exc)[:300])
        book.update(settle_store_failed(book.state, spec.name, str(exc), now, retry))
        return None
    book.note(settle_stored(book.state, spec.name))
    leaf = load_chain(chain)[0]
    log.info(
        "cert.stored",
        certificate=spec.name,
        names=" ".join(spec.domains),
        serial=f"{leaf.serial_number:x}",
        not_after=leaf.not_valid_after_utc.isoformat(),
    )
    return int(leaf.serial_number)


def _store_unstored(
    book: Book, store: CertStore, key_pem: bytes, now: datetime, retry: RetryPolicy
) -> tuple[int, int]:
    """Chains issued in an earlier cycle that could not be stored: store them, never re-order.
    Return how many were stored and how many still could not be."""
    stored = failed = 0
    for name, ledger in sorted(book.state.certs.items()):
        if not ledger.unstored:
            continue
        spec = CertSpec(name, ledger.unstored_names or (name,))
        chain = ledger.unstored.encode()
        try:
            leaf = load_chain(chain)[0]
        except StoreError:
            leaf = None
        if leaf is None or leaf.not_valid_after_utc <= now:
            log.warning("cert.unstored_dropped", certificate=name, reason="unusable or expired")
            book.update(settle_stored(book.state, name))
            continue
        if store.holds_chain(name, chain):  # stored just before a kill
            book.update(settle_stored(book.state, name))
            continue
        log.info("cert.unstored_retry", certificate=name, reason="issued earlier, not yet stored")
        ok = _store_one(book, store, spec, chain, key_pem, now, retry) is not None
        stored, failed = stored + ok, failed + (not ok)
    return stored, failed


def _finish_deploy(policy: CyclePolicy, deps: Deps, book: Book) -> tuple[tuple[str, ...], int]:
    """Apply and verify the deploy the ledger owes; clear it only when it fully succeeded."""
    owed = book.state.deploy
    if owed is None:
        return (), 0
    certs = deps.store.load()
    set_changed, checks = deploy_checks(owed, {n: c.domains for n, c in certs.items()})
    written = {name: certs[directory].serial for name, directory in checks.items()}
    written |= own_written(policy.own, deps.store, owed, certs)
    if owed.attempts:
        log.info("deploy.resumed", certificates=",".join(owed.certs) or None, since=str(owed.since))
    actions, errors = deploy(
        policy.deploy, deps.services, written, set_changed=set_changed, stop=deps.stop
    )
    book.update(deploy_finished(book.state, ok=errors == 0))
    return actions, errors


def _act(policy: CyclePolicy, deps: Deps, book: Book, store: CertStore) -> Report:
    now = deps.clock()
    book.update(
        force_seen(interrupted(book.state, now, policy.retry), store.force_requested(), now)
    )
    # a new volume needs an RSA-4096 key (seconds of CPU, outside the GIL): make it while the
    # database is read and the names are validated
    key_job = None
    if not store.domain_key_path.exists():
        key_job = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keygen")
        key_future = key_job.submit(store.domain_key)
    issued = failed = archived = 0
    applied: tuple[str, ...] = ()
    renewals: list[datetime] = []  # when each certificate stored in this cycle is due again
    if any(c.unstored for c in book.state.certs.values()):
        done, not_done = _store_unstored(book, store, store.domain_key(), now, policy.retry)
        issued, failed = issued + done, failed + not_done
    own = check_own(policy.own, store, book, now, deps.stop)
    failed += own.refused
    if book.state.deploy is not None:
        applied, errors = _finish_deploy(policy, deps, book)
        failed += errors
    refused = frozenset(store.refused())
    decided = decide(policy, deps, book.state, refused=refused, own=own.reason if own.own else None)
    if key_job is not None:
        key_job.shutdown(wait=True)
        key_future.result()
    book.update(decided.state)
    if decided.outcome is Outcome.SOURCE_DOWN or decided.plan is None:
        return replace(decided, state=book.state, applied=applied, failed=failed)
    plan = decided.plan
    if decided.outcome is Outcome.NOTHING_VALID:
        log.warning(
            "cycle.nothing_valid",
            reason="no certificate can be ordered; keeping the current certificates",
            hint="see the name.skipped lines; SKIP_LETS_ENCRYPT=y turns the sidecar off",
        )
        return replace(decided, state=book.state, applied=applied, failed=failed)
    if plan.to_order and not deps.stop.is_set():
        key_pem = store.domain_key()
        book.update(begin_orders(book.state, [c.spec.name for c in plan.to_order], now))
        results = deps.issuer(store.account_key()).issue_all(
            [c.spec for c in plan.to_order], key_pem
        )
        for result in results:
            settled = settle_result(book.state, result, deps.clock(), policy.retry)
            if not isinstance(result, Issued):
                book.update(settled)
                failed += 1
                continue
            book.note(settled)  # saved with the deploy owed, before the first file is written
            serial = _store_one(
                book, store, result.spec, result.fullchain_pem, key_pem, now, policy.retry
            )
            if serial is None:
                failed += 1
                continue
            issued += 1
            failed += 1 if result.dropped else 0  # a wanted name is missing
            leaf = load_chain(result.fullchain_pem)[0]
            renewals.append(renewal_time(leaf.not_valid_before_utc, leaf.not_valid_after_utc))
    default = plan.default_name
    if (
        default
        and (store.root / default / "cert.pem").is_file()
        and store.set_default(default, before=lambda: _owe(book, store, now))
    ):
        log.info("cert.default", certificate=default, files="cert.pem key.pem")
    if failed == 0 and plan.archive:
        _owe(book, store, now)
        for name in plan.archive:
            target = store.archive(name)
            log.info("cert.archived", certificate=name, to=str(target.relative_to(store.root)))
            archived += 1
    issue_failed = failed
    if book.state.deploy is not None:
        more, errors = _finish_deploy(policy, deps, book)
        applied += more
        failed += errors
    _settle_force(book, store, plan.certs, issue_failed)
    book.update(tidy(book.state, deps.clock(), {c.spec.name for c in plan.certs}))
    waits = [c.renew_at for c in plan.certs if c.renew_at and c.action is not Action.RENEW]
    return replace(
        decided,
        outcome=Outcome.OK if failed == 0 else Outcome.FAILED,
        state=book.state,
        issued=issued,
        failed=failed,
        archived=archived,
        applied=applied,
        next_due=min(waits + renewals, default=None),
    )


def _settle_force(book: Book, store: CertStore, certs: tuple[CertPlan, ...], failed: int) -> None:
    if book.state.force_since is None:
        return
    wanted = [c.spec.name for c in certs]
    if force_complete(book.state, wanted):
        store.clear_force()
        book.update(replace(book.state, force_since=None))
        log.info("force_renew.cleared", reason="every certificate was re-issued")
        return
    done = force_done(book.state)
    log.warning(
        "force_renew.kept",
        reason="not every certificate was re-issued yet; the others are not ordered again",
        done=",".join(n for n in wanted if n in done) or None,
        pending=",".join(n for n in wanted if n not in done) or None,
        failed=failed or None,
    )


def _step(policy: DaemonPolicy, n: int) -> timedelta:
    ladder = policy.retry.ladder
    return ladder[n - 1] if 0 < n <= len(ladder) else policy.retry.interval


def next_sleep(report: Report, policy: DaemonPolicy, now: datetime, *, streak: int = 0) -> float:
    """Seconds until the next cycle: the earliest of

    - the daily check, and the next renewal or hold (back-off, Retry-After, budget) that ends;
    - a certificate's own next attempt (from the ledger) after a failed order;
    - a deploy still owed: the retry ladder by its attempts;
    - a cycle that crashed or found nothing valid: the ladder by ``streak`` (unsuccessful
      cycles in a row; with nothing valid at most ``ACME_IDLE_INTERVAL``).

    The database down: ``ACME_DB_RETRY_INTERVAL``. Never less than a second.
    """
    if report.outcome is Outcome.SOURCE_DOWN:
        return policy.db_retry_interval.total_seconds()
    due = [report.next_due] if report.next_due else []
    if report.plan:
        for cert in report.plan.certs:
            if cert.action is Action.WAIT and cert.renew_at:
                due.append(cert.renew_at)
            ledger = report.state.cert(cert.spec.name)
            if cert.action is not Action.KEEP or ledger.unstored:
                nxt = ledger.next_attempt
                due += [nxt] if nxt and nxt > now else []
    wait = min([policy.check_interval, *(max(t - now, timedelta(0)) for t in due)])
    if report.crashed or report.outcome is Outcome.NOTHING_VALID:
        step = _step(policy, max(streak, 1))
        if report.outcome is Outcome.NOTHING_VALID:
            step = min(step, policy.idle_interval)
        wait = min(wait, step)
    if report.state.deploy is not None:
        wait = min(wait, _step(policy, max(report.state.deploy.attempts, 1)))
    return max(wait.total_seconds(), 1.0)


def summarize(report: Report, sleep: float) -> None:
    """The one summary line of a cycle."""
    plan = report.plan
    kept = sum(1 for c in plan.certs if c.action is Action.KEEP) if plan else 0
    log.info(
        "cycle.done",
        outcome=report.outcome.value,
        certificates=len(plan.certs) if plan else 0,
        kept=kept,
        issued=report.issued,
        failed=report.failed,
        archived=report.archived,
        services=",".join(report.applied) or None,
        skipped_names=len(plan.skipped) if plan else 0,
        deploy_owed=report.state.deploy is not None or None,
        next_check_in=f"{int(sleep)}s",
    )
