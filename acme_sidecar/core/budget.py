"""The rate-limit budget: may this certificate be ordered now, counted from the ledger?

Modelled on Let's Encrypt's published limits, each used only up to a safety margin:

- 5 failed validations per name per account per hour
- 5 certificates per identical set of names per week
- 300 new orders per account per 3 hours
- 50 certificates per registered domain per week

plus the certificate's own back-off (``CertLedger.next_attempt``: failures, the CA's
Retry-After, an order left in flight by a crash), which always holds. Two kinds of order go
past the limits (never past the back-off): a renewal that names the certificate it replaces
(ARI ``replaces``, which Let's Encrypt exempts from all its limits), and an **urgent** one: the
certificate it renews is in its last stretch (``urgent_at``) or expired, and would otherwise be
served expired. Which CA's limits are kept is the config's choice (``ACME_RATE_LIMITS``);
``Limits.off()`` keeps none. The registered domain a name counts against comes from
``Limits.domain_of`` (the config passes the public suffix list's; the default here is the last
two labels). Pure: the clock is a parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from acme_sidecar.core.ledger import State
from acme_sidecar.core.model import CertSpec

HOUR = timedelta(hours=1)
WEEK = timedelta(days=7)
THREE_HOURS = timedelta(hours=3)
URGENT_LEFT = WEEK  # the urgent stretch is at most the last 7 days (see ``urgent_at``)


def last_two_labels(name: str) -> str:
    """The registered domain without a public-suffix list: the last two labels.

    This groups ``a.example.co.uk`` and ``b.other.co.uk`` under ``co.uk``: that counts more
    certificates against one domain than the CA does, never fewer.
    """
    labels = name.lstrip("*.").split(".")
    return ".".join(labels[-2:])


@dataclass(frozen=True, slots=True)
class Limits:
    """The CA's limits (Let's Encrypt's by default) and the share of each we use.

    ``on`` False: no limits at all (``off``). ``domain_of`` maps a name to the registered
    domain the per-domain limit counts it under."""

    failed_validations_per_hour: int = 5
    identical_per_week: int = 5
    orders_per_3h: int = 300
    per_domain_per_week: int = 50
    on: bool = True
    domain_of: Callable[[str], str] = last_two_labels

    @classmethod
    def off(cls) -> Limits:
        """No budget (a private CA without limits): only back-offs and Retry-After hold."""
        return cls(on=False)

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
class Use:
    """One limit as it stands for a certificate: ``used`` of the ``allowed`` we allow ourselves
    (the CA's ``limit`` less the margin), and the reason a full one holds an order until
    ``until`` (None while it is not full)."""

    what: str  # e.g. "certificates for exactly these names per week"
    used: int
    allowed: int
    limit: int
    until: datetime | None
    reason: str

    @property
    def left(self) -> int:
        """How many more the budget allows now."""
        return max(0, self.allowed - self.used)


@dataclass(frozen=True, slots=True)
class HoldRules:
    """What holds an order back, as data for the planner: the ledger (back-offs, the CA's
    Retry-After, chains waiting to be stored, the counts the limits apply to), the CA's limits,
    and the certificate directories the volume refused (symbolic links)."""

    state: State
    limits: Limits = Limits()
    refused: frozenset[str] = frozenset()
    retry_interval: timedelta = timedelta(minutes=5)  # how long a refused directory waits


def urgent_at(not_before: datetime, not_after: datetime) -> datetime:
    """From when a certificate is urgent: its last ⅙ of the lifetime, but at most its last 7
    days (``not_after - min(lifetime / 6, 7 days)``; the ``urgent`` level of ``core.expiry``).

    The smaller of the two, so that the budget still means something for every lifetime: with
    the larger one every certificate under 42 days (Let's Encrypt's 6-day ``shortlived``, a
    private CA's day) would be urgent from its first second and no limit would ever hold it.
    The smaller one leaves room for many tries all the same, each at most once per the CA's
    Retry-After or the back-off: a 90-day certificate gets 7 days, a 6-day one 1 day, a
    60-second one 10 seconds; and every renewal rule (⅓ or ½ of the lifetime left, an ARI
    window) falls before it, so a certificate reaches it only when its renewal was held."""
    lifetime = max(not_after - not_before, timedelta(0))
    return not_after - min(lifetime / 6, URGENT_LEFT)


def hold(
    spec: CertSpec,
    rules: HoldRules,
    now: datetime,
    planned_orders: int = 0,
    *,
    past_limits: bool = False,
) -> Hold | None:
    """Why ``spec`` may not be ordered now (``None``: it may), all rules in one place;
    ``past_limits``: the CA's limits do not hold it (exempt or urgent, see ``clearance``)."""
    if spec.name in rules.refused:
        return Hold(now + rules.retry_interval, "its directory is a symbolic link (refused)")
    ledger = rules.state.cert(spec.name)
    if ledger.unstored:  # issued already: store it (on its retry schedule), never re-order
        until = max(ledger.next_attempt or now, now)
        return Hold(until, "issued already; waiting to be stored in the volume")
    return hold_for(
        spec,
        rules.state,
        now,
        limits=rules.limits,
        planned_orders=planned_orders,
        past_limits=past_limits,
    )


def clearance(
    spec: CertSpec,
    rules: HoldRules,
    now: datetime,
    planned_orders: int = 0,
    *,
    replaces: str = "",
    urgent_since: datetime | None = None,
) -> tuple[Hold | None, str]:
    """``hold`` for an order that may go past the CA's limits: one that ``replaces`` a
    certificate (ARI), or whose certificate is urgent (``urgent_since`` passed). Returns the
    hold, and when the order goes past a limit that would have held it, why (else "")."""
    urgent = urgent_since is not None and now >= urgent_since
    exempt = bool(replaces)
    held = hold(spec, rules, now, planned_orders, past_limits=exempt or urgent)
    if held is not None or not (exempt or urgent):
        return held, ""
    over = budget_hold(spec, rules.state, now, limits=rules.limits, planned_orders=planned_orders)
    if over is None:
        return None, ""
    if exempt:
        return None, f"an ARI renewal (replaces) is exempt from the CA's limits: {over.reason}"
    since = f"{urgent_since:%Y-%m-%d %H:%M:%S}Z"
    return None, f"urgent since {since}: ordered past the budget ({over.reason})"


def _window(times: Iterable[datetime], now: datetime, span: timedelta) -> list[datetime]:
    return sorted(t for t in times if now - span < t <= now)


def _use(what: str, times: list[datetime], limit: int, span: timedelta, reason: str) -> Use:
    allowed = Limits.usable(limit)
    # full: wait until enough of the counted events have left the window
    until = times[len(times) - allowed] + span if len(times) >= allowed else None
    return Use(what, len(times), allowed, limit, until, reason)


def usage(
    spec: CertSpec, state: State, now: datetime, limits: Limits, planned: int = 0
) -> list[Use]:
    """Each of the CA's limits as it stands for ``spec`` (none when ``limits`` are off).
    ``planned``: orders already planned in this cycle, counted against the per-account limit.
    Failed validations show the name with the most of them."""
    if not limits.on:
        return []
    names = " ".join(spec.domains)
    identical = _window(
        (t for c in state.certs.values() for t, n in c.issued if _same(n, names)), now, WEEK
    )
    lim = limits.identical_per_week
    found = [
        _use(
            "certificates for exactly these names per week",
            identical,
            lim,
            WEEK,
            f"{len(identical)} certificates for exactly these names this week "
            f"(the CA allows {lim})",
        )
    ]
    lim = limits.failed_validations_per_hour
    failed = [
        _use(
            f"failed validations of {name} per hour",
            times,
            lim,
            HOUR,
            f"{name} failed the CA's validation {len(times)} times this hour (the CA allows {lim})",
        )
        for name in spec.domains
        for times in [_window(state.failed_validations.get(name, ()), now, HOUR)]
    ]
    if failed:
        found.append(max(failed, key=lambda u: (u.until is not None, u.used)))
    placed = _window((t for c in state.certs.values() for t in c.placed), now, THREE_HOURS)
    placed = sorted(placed + [now] * planned)
    lim = limits.orders_per_3h
    why = f"{len(placed)} orders in 3 hours (the CA allows {lim})"
    found.append(_use("orders of the account per 3 hours", placed, lim, THREE_HOURS, why))
    domain_of = limits.domain_of
    lim = limits.per_domain_per_week
    for domain in sorted({domain_of(n) for n in spec.domains}):
        issued = _window(
            (
                t
                for c in state.certs.values()
                for t, n in c.issued
                if domain in {domain_of(x) for x in n.split()}
            ),
            now,
            WEEK,
        )
        why = f"{len(issued)} certificates for {domain} this week (the CA allows {lim})"
        found.append(_use(f"certificates for {domain} per week", issued, lim, WEEK, why))
    return found


def budget_hold(
    spec: CertSpec, state: State, now: datetime, *, limits: Limits, planned_orders: int = 0
) -> Hold | None:
    """The first of the CA's limits that holds ``spec`` (``usage``), None when none does."""
    for use in usage(spec, state, now, limits, planned_orders):
        if use.until is not None:
            return Hold(use.until, use.reason)
    return None


def hold_for(
    spec: CertSpec,
    state: State,
    now: datetime,
    *,
    limits: Limits = Limits(),
    planned_orders: int = 0,
    past_limits: bool = False,
) -> Hold | None:
    """Why ``spec`` may not be ordered now (``None``: it may): its back-off, else (unless
    ``past_limits``) the CA's limits. ``planned_orders`` are orders already planned in this
    cycle, counted against the per-account order limit."""
    ledger = state.cert(spec.name)
    if ledger.next_attempt is not None and ledger.next_attempt > now:
        why = ledger.last_error or "an earlier attempt"
        return Hold(ledger.next_attempt, f"waiting after {ledger.failures} failure(s): {why}")
    if past_limits:
        return None
    return budget_hold(spec, state, now, limits=limits, planned_orders=planned_orders)


def _same(a: str, b: str) -> bool:
    return set(a.split()) == set(b.split())
