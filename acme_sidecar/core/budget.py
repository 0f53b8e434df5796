"""The rate-limit budget: may this certificate be ordered now, counted from the ledger?

Modelled on Let's Encrypt's published limits, each used only up to a safety margin:

- 5 failed validations per name per account per hour
- 5 certificates per identical set of names per week
- 300 new orders per account per 3 hours
- 50 certificates per registered domain per week

plus the certificate's own back-off (``CertLedger.next_attempt``: failures, the CA's
Retry-After, an order left in flight by a crash). Pure: the clock is a parameter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from acme_sidecar.core.ledger import State
from acme_sidecar.core.model import CertSpec

HOUR = timedelta(hours=1)
WEEK = timedelta(days=7)
THREE_HOURS = timedelta(hours=3)


@dataclass(frozen=True, slots=True)
class Limits:
    """The CA's limits (Let's Encrypt's by default) and the share of each we use."""

    failed_validations_per_hour: int = 5
    identical_per_week: int = 5
    orders_per_3h: int = 300
    per_domain_per_week: int = 50

    @classmethod
    def off(cls) -> Limits:
        """No budget (a private CA without limits): only back-offs and Retry-After hold."""
        big = 10**9
        return cls(big, big, big, big)

    @staticmethod
    def usable(limit: int) -> int:
        """What we allow ourselves: the limit less a margin of 10 % (at least one)."""
        return max(1, limit - max(1, limit // 10))


@dataclass(frozen=True, slots=True)
class Hold:
    """Why a certificate is not ordered now, and until when."""

    until: datetime
    reason: str


@dataclass(frozen=True, slots=True)
class HoldRules:
    """What holds an order back, as data for the planner: the ledger (back-offs, the CA's
    Retry-After, chains waiting to be stored, the counts the limits apply to), the CA's limits,
    and the certificate directories the volume refused (symbolic links)."""

    state: State
    limits: Limits = Limits()
    refused: frozenset[str] = frozenset()
    retry_interval: timedelta = timedelta(minutes=5)  # how long a refused directory waits


def hold(spec: CertSpec, rules: HoldRules, now: datetime, planned_orders: int = 0) -> Hold | None:
    """Why ``spec`` may not be ordered now (``None``: it may), all rules in one place."""
    if spec.name in rules.refused:
        return Hold(now + rules.retry_interval, "its directory is a symbolic link (refused)")
    ledger = rules.state.cert(spec.name)
    if ledger.unstored:  # issued already: store it (on its retry schedule), never re-order
        until = max(ledger.next_attempt or now, now)
        return Hold(until, "issued already; waiting to be stored in the volume")
    return hold_for(spec, rules.state, now, limits=rules.limits, planned_orders=planned_orders)


def registered_domain(name: str) -> str:
    """The registered domain a CA counts against: the last two labels.

    Without a public-suffix list this groups ``a.example.co.uk`` and ``b.other.co.uk`` under
    ``co.uk``: that counts more certificates against one domain than the CA does, never fewer.
    """
    labels = name.lstrip("*.").split(".")
    return ".".join(labels[-2:])


def _window(times: Iterable[datetime], now: datetime, span: timedelta) -> list[datetime]:
    return sorted(t for t in times if now - span < t <= now)


def _full(times: list[datetime], limit: int, span: timedelta, why: str) -> Hold | None:
    allowed = Limits.usable(limit)
    if len(times) < allowed:
        return None
    # wait until enough of the counted events have left the window
    return Hold(times[len(times) - allowed] + span, why)


def hold_for(
    spec: CertSpec,
    state: State,
    now: datetime,
    *,
    limits: Limits = Limits(),
    planned_orders: int = 0,
) -> Hold | None:
    """Why ``spec`` may not be ordered now (``None``: it may). ``planned_orders`` are orders
    already planned in this cycle, counted against the per-account order limit."""
    ledger = state.cert(spec.name)
    if ledger.next_attempt is not None and ledger.next_attempt > now:
        why = ledger.last_error or "an earlier attempt"
        return Hold(ledger.next_attempt, f"waiting after {ledger.failures} failure(s): {why}")
    names = " ".join(spec.domains)
    identical = _window(
        (t for c in state.certs.values() for t, n in c.issued if _same(n, names)), now, WEEK
    )
    hold = _full(
        identical,
        limits.identical_per_week,
        WEEK,
        f"{len(identical)} certificates for exactly these names this week "
        f"(the CA allows {limits.identical_per_week})",
    )
    if hold:
        return hold
    for name in spec.domains:
        failed = _window(state.failed_validations.get(name, ()), now, HOUR)
        hold = _full(
            failed,
            limits.failed_validations_per_hour,
            HOUR,
            f"{name} failed the CA's validation {len(failed)} times this hour "
            f"(the CA allows {limits.failed_validations_per_hour})",
        )
        if hold:
            return hold
    placed = _window((t for c in state.certs.values() for t in c.placed), now, THREE_HOURS)
    if planned_orders:
        placed = sorted(placed + [now] * planned_orders)
    hold = _full(
        placed,
        limits.orders_per_3h,
        THREE_HOURS,
        f"{len(placed)} orders in 3 hours (the CA allows {limits.orders_per_3h})",
    )
    if hold:
        return hold
    for domain in sorted({registered_domain(n) for n in spec.domains}):
        issued = _window(
            (
                t
                for c in state.certs.values()
                for t, n in c.issued
                if domain in {registered_domain(x) for x in n.split()}
            ),
            now,
            WEEK,
        )
        hold = _full(
            issued,
            limits.per_domain_per_week,
            WEEK,
            f"{len(issued)} certificates for {domain} this week "
            f"(the CA allows {limits.per_domain_per_week})",
        )
        if hold:
            return hold
    return None


def _same(a: str, b: str) -> bool:
    return set(a.split()) == set(b.split())
