"""When the daemon wakes up next, and why: a pure function of a cycle's report and the clock.

The earliest of: the regular check (``ACME_CHECK_INTERVAL``); each wanted certificate's
renewal time (the CA's ARI window or the lifetime rule, ``core.ari.renew_time``; the time of its
renewal group when it is renewed together with others, ``core.coalesce``); the next ARI
fetch of each (when the CA is asked at all); a hold that ends (back-off, Retry-After, budget)
and a certificate's next attempt from the ledger; a deploy still owed (the retry ladder by its
attempts); after a crashed cycle or one that found nothing valid, the ladder by ``streak``.
The database down: ``ACME_DB_RETRY_INTERVAL``. Never less than a second.
A held certificate wakes it also when it becomes urgent (``core.budget.urgent_at``); a key
rollover under DANE at its next step (``Report.rollover_at``, ``core.rollover.wake_at``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from acme_sidecar.core.ari import poll_due, renew_time
from acme_sidecar.core.budget import urgent_at
from acme_sidecar.core.coalesce import Coalesce, renewal_groups
from acme_sidecar.core.model import Action
from acme_sidecar.core.report import Outcome, Report

MIN_SLEEP = 1.0


@dataclass(frozen=True, slots=True)
class Pacing:
    """The daemon's intervals, as the wake-up needs them."""

    check_interval: timedelta
    db_retry_interval: timedelta
    idle_interval: timedelta
    ladder: tuple[timedelta, ...]
    retry_interval: timedelta
    ari: bool = False  # the CA's renewal windows are fetched: their next fetch counts
    coalesce: Coalesce = field(default_factory=Coalesce)  # ACME_COALESCE, as the plan groups


@dataclass(frozen=True, slots=True)
class Wake:
    """Seconds until the next cycle and what it is for."""

    seconds: float
    reason: str


def _step(pacing: Pacing, n: int) -> timedelta:
    ladder = pacing.ladder
    return ladder[n - 1] if 0 < n <= len(ladder) else pacing.retry_interval


def _fmt(when: datetime) -> str:
    return f"{when:%Y-%m-%d %H:%M:%S}Z"


def candidates(report: Report, pacing: Pacing, now: datetime) -> list[tuple[datetime, str]]:
    """Every time something is due after this cycle, with what it is."""
    found = [(now + pacing.check_interval, "regular check (ACME_CHECK_INTERVAL)")]
    if report.rollover_at is not None:
        found.append((report.rollover_at, "key rollover (DANE): its next step"))
    plan = report.plan
    actions = {c.spec.name: c.action for c in plan.certs} if plan else {}
    wanted = {n: c for n, c in report.stored.items() if plan is None or n in actions}
    records = {n: report.state.cert(n).ari for n in wanted}  # not wanted: archived or left alone
    groups = renewal_groups(wanted, records, pacing.coalesce)  # the plan's groups (core.plan)
    for name, cert in sorted(wanted.items()):
        record = records[name]
        group = groups[name]
        # a certificate due but ordered or held in this cycle waits for its retry (below);
        # one that fell due while the cycle ran is renewed at once
        if group.at > now or actions.get(name, Action.KEEP) is Action.KEEP:
            what = group.named(most=5) + " together" if group.why else name
            why = group.why or renew_time(cert.cert_id, cert.not_before, cert.not_after, record).why
            found.append((group.at, f"renewal of {what} at {_fmt(group.at)} ({why})"))
        poll = poll_due(cert.cert_id, cert.not_before, cert.not_after, record, now)
        if pacing.ari and poll is not None:
            found.append((poll, f"ARI window of {name}"))
    decided = plan.decided if plan is not None and plan.decided is not None else now
    for planned in plan.certs if plan else ():
        name = planned.spec.name
        if planned.action is Action.WAIT and planned.renew_at:
            found.append((planned.renew_at, f"{name} held: {planned.reason}"))
        had = report.stored.get(name)
        if planned.action is Action.WAIT and had is not None:  # the budget yields to expiry
            urgent = urgent_at(had.not_before, had.not_after)
            # not urgent yet when the plan held it: ordered past the budget from then on, at
            # once when it became urgent while the cycle ran (held while urgent already: a
            # back-off or the CA's Retry-After, whose time is its next attempt, below)
            if urgent > decided:
                found.append(
                    (urgent, f"{name} urgent from {_fmt(urgent)}: ordered past the budget")
                )
        ledger = report.state.cert(name)
        nxt = ledger.next_attempt
        # tried in this cycle (ordered, or a chain not stored yet): its retry time even when
        # it passed while the cycle went on (a one-second ladder step), else only a future one
        tried = planned.action in (Action.ISSUE, Action.RENEW) or bool(ledger.unstored)
        if (tried or planned.action is Action.WAIT) and nxt and (nxt > now or tried):
            found.append((nxt, f"next attempt for {name} ({ledger.last_error or 'retry'})"))
    return found


def next_wake(report: Report, pacing: Pacing, now: datetime, *, streak: int = 0) -> Wake:
    """When to run the next cycle after ``report`` (see the module docstring); ``streak`` is
    the number of unsuccessful cycles in a row."""
    if report.outcome is Outcome.SOURCE_DOWN:
        return Wake(
            max(pacing.db_retry_interval.total_seconds(), MIN_SLEEP),
            "database unreachable (ACME_DB_RETRY_INTERVAL)",
        )
    at, reason = min(candidates(report, pacing, now), key=lambda c: c[0])
    wait = max(at - now, timedelta(0))
    if report.crashed or report.outcome is Outcome.NOTHING_VALID:
        step = _step(pacing, max(streak, 1))
        why = "retry of a failed cycle"
        if report.outcome is Outcome.NOTHING_VALID:
            step, why = min(step, pacing.idle_interval), "nothing valid to order yet"
        if step < wait:
            wait, reason = step, why
    if report.state.deploy is not None:
        step = _step(pacing, max(report.state.deploy.attempts, 1))
        if step < wait:
            wait, reason = step, "deploy owed to the services"
    return Wake(max(wait.total_seconds(), MIN_SLEEP), reason[:300])
