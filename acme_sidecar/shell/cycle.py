"""One cycle, in five stages: finish what is owed, gather, decide, act, settle.

``cycle`` is the whole of it, read top to bottom (the README's "How one cycle works" follows
it line by line):

1. ``finish_owed``: chains issued but not stored are stored, the admin's top-level pair is taken
   in or refused when it changed (``shell.own``), a deploy still owed is finished.
2. ``gather`` (``shell.gather``): the database rows, the volume's certificates read once, the
   CA's renewal windows due (``shell.ari``), the names validated that need it.
3. ``decide`` (``core.decide``, pure): the plan. When it would order a certificate with a name
   whose verdict was reused, that name is checked afresh and the plan made again.
4. ``act`` (``shell.act``): orders, certificates stored, the default pair, the archive, the
   services reloaded or restarted and verified.
5. ``settle``: ``force_renew`` cleared once every certificate was re-issued under it, the ledger
   tidied.

The ledger is saved at the end of every stage, and inside ``act`` before every write it owes
(``shell.boundary.Book``). ``guarded_cycle`` is the boundary: whatever an adapter raises ends
the cycle with one error line naming the component, the ledger saved, and the daemon's next try
from the ladder.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime

import structlog

from acme_sidecar.adapters.volume import VolumeBusy
from acme_sidecar.config.policies import CyclePolicy, DaemonPolicy
from acme_sidecar.core.decide import Decision, DecisionPolicy, Facts, decide
from acme_sidecar.core.errors import StoreError
from acme_sidecar.core.ledger import State
from acme_sidecar.core.model import Action, CertPlan, StoredCert
from acme_sidecar.core.ports import Volume
from acme_sidecar.core.report import Outcome, Report
from acme_sidecar.core.settle import (
    force_complete,
    force_done,
    force_seen,
    interrupted,
    settings_changed,
    tidy,
)
from acme_sidecar.core.wake import Pacing, Wake, next_wake
from acme_sidecar.shell.act import Acted, act, finish_deploy, store_unstored
from acme_sidecar.shell.boundary import Book, crashed
from acme_sidecar.shell.gather import Deps, gather, recheck
from acme_sidecar.shell.own import check_own

__all__ = [
    "Deps",
    "cycle",
    "guarded_cycle",
    "look",
    "next_sleep",
    "pacing_of",
    "plan_wake",
    "run_cycle",
    "summarize",
]

log = structlog.get_logger(__name__)


def guarded_cycle(policy: CyclePolicy, deps: Deps, state: State | None = None) -> Report:
    """``run_cycle`` behind the boundary: never raises (but for KeyboardInterrupt/SystemExit)."""
    book = Book(deps.store, state or State(), loaded=state is not None)
    try:
        return run_cycle(policy, deps, state, book=book)
    except Exception as exc:  # noqa: BLE001 - the cycle boundary: log, save, retry later
        return crashed(book, exc, "state saved; next try from the retry ladder")


def run_cycle(
    policy: CyclePolicy, deps: Deps, state: State | None = None, *, book: Book | None = None
) -> Report:
    """One full cycle under the volume's lock. ``state`` is the ledger the daemon carries;
    ``None`` reads the volume's."""
    store = deps.store
    try:
        store.prepare()
        with store.lock():
            if state is None:
                state = store.ledger.load()
            if book is None:
                book = Book(store, state)
            book.state, book.loaded = state, True
            return cycle(policy, deps, book)
    except VolumeBusy as exc:
        log.warning("store.busy", component="certificate volume", error=str(exc))
    except StoreError as exc:
        log.error("store.unusable", component="certificate volume", error=str(exc)[:300])
    kept = book.state if book else (state or State())
    return Report(Outcome.FAILED, failed=1, state=kept, crashed=True)


def cycle(policy: CyclePolicy, deps: Deps, book: Book) -> Report:
    """The five stages of one cycle (see the module docstring)."""
    now = deps.clock()
    key = _new_volume_key(deps.store, policy)  # made while the facts are gathered
    owed, own = finish_owed(policy, deps, book, now)

    facts = gather(policy, deps, book.state, now, own=own)
    if facts is None:  # the database is down: keep everything as it is
        return Report(Outcome.SOURCE_DOWN, state=book.state, failed=owed.failed,
                      applied=owed.applied)  # fmt: skip
    book.update(facts.state)

    decision = decide(facts, decision_policy(policy), now)
    if decision.recheck:
        facts = recheck(policy, deps, facts, list(decision.recheck))
        decision = decide(facts, decision_policy(policy), now)
    book.update(decision.state)
    tell(decision)
    if key is not None:
        key.result()
    if decision.nothing_valid:
        return _report(Outcome.NOTHING_VALID, facts, decision, book, owed, facts.stored)

    done, after = act(policy, deps, book, decision, facts.stored,
                      clean=owed.failed == 0, now=now)  # fmt: skip
    done = owed + done

    book.update(settle(book.state, decision, done, deps, now=deps.clock()))
    outcome = Outcome.OK if done.failed == 0 else Outcome.FAILED
    return _report(outcome, facts, decision, book, done, after)


def finish_owed(
    policy: CyclePolicy, deps: Deps, book: Book, now: datetime
) -> tuple[Acted, str | None]:
    """Stage 1: what an earlier cycle (or the admin) left owed. Returns what was done and why
    the top-level pair is the admin's own certificate (None: it is not)."""
    store = deps.store
    book.update(
        force_seen(interrupted(book.state, now, policy.retry), store.force_requested(), now)
    )
    state, cleared = settings_changed(book.state, policy.retry.settings, now)
    book.update(state)
    if cleared:
        why = (
            "the settings it failed under changed "
            "(EAB, profile, contact, DNS-01 provider or credentials)"
        )
        log.info("backoff.cleared", certificates=" ".join(cleared), reason=why)
    done = Acted()
    if any(c.unstored for c in book.state.certs.values()):
        done = done + store_unstored(book, store, now, policy.retry)
    own = check_own(policy.own, store, book, now, deps.stop)
    done = done + Acted(failed=int(own.refused))
    if book.state.deploy is not None:
        done = done + finish_deploy(policy, deps, book)
    return done, (own.reason if own.own else None)


def decision_policy(policy: CyclePolicy) -> DecisionPolicy:
    """What ``core.decide`` reads of the cycle's policy."""
    return DecisionPolicy(
        shape=policy.shape,
        limits=policy.limits,
        retry_interval=policy.retry.interval,
        grace=policy.validation.grace,
        revalidate_after=policy.validation.revalidate_after,
        coalesce=policy.coalesce,
    )


def tell(decision: Decision) -> None:
    """Log the decision: its notes, the names a wildcard covers, one line per certificate, one
    per group of certificates renewed together."""
    plan = decision.plan
    for note in plan.notes:
        log.warning("plan.note", note=note)
    covered: dict[str, list[str]] = {}
    for name, certificate in decision.covered:
        covered.setdefault(certificate, []).append(name)
    for cert in plan.certs:
        for name in covered.get(cert.spec.name, ()):
            log.info("name.covered", name=name, certificate=cert.spec.name)
        log.info(
            f"cert.{cert.action.value}",
            certificate=cert.spec.name,
            names=" ".join(cert.spec.domains),
            reason=cert.reason,
        )
        if cert.past_budget:  # an ARI renewal (exempt) or an urgent one, past the CA's limits
            event = "budget.exempt" if cert.replaces else "budget.overridden"
            say = log.info if cert.replaces else log.warning
            say(event, certificate=cert.spec.name, reason=cert.past_budget)
    for group in plan.groups:  # core.coalesce: renewed together, one deploy
        log.info(
            "renewal.coalesced",
            certificates=group.named(most=20),
            count=len(group.names),
            renew_at=group.at.isoformat(),
            reason=group.why,
        )
    if decision.other_ca:
        _tell_other_ca(decision)
    if decision.nothing_valid:
        log.warning(
            "cycle.nothing_valid",
            reason="no certificate can be ordered; keeping the current certificates",
            hint="see the name.skipped lines; SKIP_LETS_ENCRYPT=y turns the sidecar off",
        )


def _tell_other_ca(decision: Decision) -> None:
    """One line for the certificates issued from another CA: how many are ordered now and how
    many wait (the budget spreads a change of CA over cycles; each has its cert.* line)."""
    moved = set(decision.other_ca)
    certs = [c for c in decision.plan.certs if c.spec.name in moved]
    if not certs:
        return
    waiting = [c.renew_at for c in certs if c.action is Action.WAIT and c.renew_at]
    log.info(
        "ca.changed",
        certificates=len(certs),
        ordered=sum(1 for c in certs if c.action in (Action.ISSUE, Action.RENEW)),
        waiting=len(waiting) or None,
        next_try=min(waiting).isoformat() if waiting else None,
        reason="issued by another CA than the configured one: each is issued again, once",
    )


def settle(state: State, decision: Decision, done: Acted, deps: Deps, *, now: datetime) -> State:
    """Stage 5: clear ``force_renew`` once every certificate was re-issued under it; tidy."""
    certs = decision.plan.certs
    state = _settle_force(state, deps.store, certs, done.order_failed)
    return tidy(state, now, {c.spec.name for c in certs})


def look(policy: CyclePolicy, deps: Deps, state: State, *, fresh: bool = True) -> Report:
    """What a cycle would do now, without acting: gather (every name validated afresh when
    ``fresh``) and decide; nothing is ordered and nothing written (``acme-sidecar check``)."""
    now = deps.clock()
    facts = gather(policy, deps, state, now, fresh=fresh)
    if facts is None:
        return Report(Outcome.SOURCE_DOWN, state=state)
    decision = decide(facts, decision_policy(policy), now)
    if decision.recheck:
        facts = recheck(policy, deps, facts, list(decision.recheck))
        decision = decide(facts, decision_policy(policy), now)
    tell(decision)
    outcome = Outcome.NOTHING_VALID if decision.nothing_valid else Outcome.OK
    return _report(outcome, facts, decision, None, Acted(), facts.stored)


def _report(
    outcome: Outcome,
    facts: Facts,
    decision: Decision,
    book: Book | None,
    done: Acted,
    stored: Mapping[str, StoredCert],
) -> Report:
    return Report(
        outcome,
        decision.plan,
        decision.verdicts,
        facts.groups,
        facts.rows,
        dict(stored),
        book.state if book is not None else decision.state,
        issued=done.issued,
        failed=done.failed,
        archived=done.archived,
        applied=done.applied,
        rollover_at=decision.rollover.wake if decision.rollover is not None else None,
    )


def _new_volume_key(store: Volume, policy: CyclePolicy) -> Future[bytes] | None:
    """A new volume needs a key (an RSA one takes seconds of CPU, outside the GIL): start
    making it in a thread so it is ready when the first order needs it."""
    if store.keys.has_domain_key():
        return None
    job = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keygen")
    future = job.submit(store.keys.domain_key, policy.shape.key_type)
    job.shutdown(wait=False)
    return future


def _settle_force(state: State, store: Volume, certs: tuple[CertPlan, ...], failed: int) -> State:
    if state.force_since is None:
        return state
    wanted = [c.spec.name for c in certs]
    if force_complete(state, wanted):
        store.clear_force()
        log.info("force_renew.cleared", reason="every certificate was re-issued")
        return replace(state, force_since=None)
    done = force_done(state)
    log.warning(
        "force_renew.kept",
        reason="not every certificate was re-issued yet; the others are not ordered again",
        done=",".join(n for n in wanted if n in done) or None,
        pending=",".join(n for n in wanted if n not in done) or None,
        failed=failed or None,
    )
    return state


def pacing_of(policy: DaemonPolicy) -> Pacing:
    """The daemon's intervals as ``core.wake`` needs them."""
    return Pacing(
        check_interval=policy.check_interval,
        db_retry_interval=policy.db_retry_interval,
        idle_interval=policy.idle_interval,
        ladder=policy.retry.ladder,
        retry_interval=policy.retry.interval,
        ari=policy.ari,
        coalesce=policy.coalesce,
    )


def plan_wake(report: Report, policy: DaemonPolicy, now: datetime, *, streak: int = 0) -> Wake:
    """When the next cycle runs and why: ``core.wake.next_wake`` with the daemon's pacing."""
    return next_wake(report, pacing_of(policy), now, streak=streak)


def next_sleep(report: Report, policy: DaemonPolicy, now: datetime, *, streak: int = 0) -> float:
    """Seconds until the next cycle (``plan_wake``)."""
    return plan_wake(report, policy, now, streak=streak).seconds


def summarize(report: Report, sleep: float | Wake) -> None:
    """The one summary line of a cycle, with when the next one runs and why."""
    wake = sleep if isinstance(sleep, Wake) else Wake(sleep, "")
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
        next_check_in=f"{int(wake.seconds)}s",
        next_reason=wake.reason or None,
    )
