"""Settle: fold what happened into the ledger. Pure functions of (state, event, clock).

- an order started: it counts as placed at once, so a crash cannot hide it from the budget
  and a restart does not place it again moments later (``interrupted``);
- a result: issued (kept as "unstored" until the volume has it) or failed (back-off by kind:
  the short ladder for systemic failures, exponential and capped otherwise, the CA's
  Retry-After when it gave a sane one; per-name back-off for names it rejected), recorded
  with the fingerprint of the settings it happened under: a change of those drops it;
- ``force_renew`` is honoured per certificate: one re-issued since the flag appeared is done,
  whatever happens to the others;
- a deploy owed to the services is recorded before the first write and cleared only after
  every service was applied and verified.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from acme_sidecar.core.consumers import Change
from acme_sidecar.core.ledger import CertLedger, Deploy, State
from acme_sidecar.core.memory import record_issued, record_rejections
from acme_sidecar.core.model import FailureKind, Issued, IssueFailure

WEEK = timedelta(days=7)
KEEP_PLACED = timedelta(hours=3)
KEEP_FAILED_VALIDATIONS = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a failed certificate is tried again."""

    ladder: tuple[timedelta, ...] = tuple(
        timedelta(minutes=m) for m in (1, 2, 5, 10, 30)
    )  # systemic failures: these steps, then ``interval``
    interval: timedelta = timedelta(minutes=30)  # other failures: doubling from here ...
    max_backoff: timedelta = timedelta(days=1)  # ... up to this
    retry_after_cap: timedelta = WEEK  # a longer Retry-After from the CA is cut to this
    jitter: float = 0.1  # +-10 % so that many sidecars do not retry in step
    # the fingerprint of the settings an order depends on (EAB, profile, contact, DNS-01
    # provider and credentials): a back-off from a failure under other settings is dropped
    # ("": not compared)
    settings: str = ""


def next_delay(kind: FailureKind, failures: int, policy: RetryPolicy, rand: float) -> timedelta:
    """The pause after the ``failures``-th failure in a row; ``rand`` in [0, 1) for jitter."""
    n = max(1, failures)
    if kind is FailureKind.SYSTEMIC:
        base = policy.ladder[n - 1] if n <= len(policy.ladder) else policy.interval
    else:
        # the exponent is bounded before the power: no overflow after thousands of failures
        base = min(policy.interval * 2 ** min(n - 1, 20), policy.max_backoff)
    return base * (1 + policy.jitter * (2 * rand - 1))


def sane_retry_after(
    retry_after: datetime | None, now: datetime, policy: RetryPolicy
) -> datetime | None:
    """The CA's Retry-After, capped; ``None`` for a zero or past value (use our own delay)."""
    if retry_after is None or retry_after <= now:
        return None
    return min(retry_after, now + policy.retry_after_cap)


def _put(state: State, name: str, ledger: CertLedger) -> State:
    return replace(state, certs={**state.certs, name: ledger})


def begin_orders(state: State, names: Iterable[str], now: datetime) -> State:
    """Orders are about to be placed for ``names``: count them now, mark them in flight."""
    certs = dict(state.certs)
    for name in names:
        ledger = state.cert(name)
        certs[name] = replace(ledger, attempting=now, placed=(*ledger.placed, now))
    return replace(state, certs=certs)


def interrupted(state: State, now: datetime, policy: RetryPolicy) -> State:
    """At start: an order still marked in flight was cut off by a crash or a kill. It counts as
    a failure: not placed again before the first step of the ladder."""
    certs = dict(state.certs)
    for name, ledger in state.certs.items():
        if ledger.attempting is None:
            continue
        failures = ledger.failures + 1
        wait = policy.ladder[0] if policy.ladder else policy.interval
        certs[name] = replace(
            ledger,
            attempting=None,
            failures=failures,
            last_error="the previous run stopped while ordering",
            next_attempt=max(ledger.attempting + wait, ledger.next_attempt or ledger.attempting),
        )
    return replace(state, certs=certs)


def _record_validations(state: State, names: Iterable[str], now: datetime) -> State:
    table = dict(state.failed_validations)
    for name in names:
        table[name] = (*table.get(name, ()), now)
    return replace(state, failed_validations=table)


def _placed(ledger: CertLedger, orders: int) -> tuple[datetime, ...]:
    """Correct the one provisional ``placed`` entry of ``begin_orders`` to ``orders``."""
    if not ledger.placed or ledger.attempting is None:
        return ledger.placed
    extra = (ledger.attempting,) * max(0, orders - 1)
    return ledger.placed[:-1] + extra if orders == 0 else (*ledger.placed, *extra)


def settle_result(
    state: State,
    result: Issued | IssueFailure,
    now: datetime,
    policy: RetryPolicy,
    rand: float = 0.5,
    *,
    directory: str = "",
) -> State:
    """Fold one order's result into the ledger; ``directory`` is the CA it was ordered from
    (recorded with an issued certificate, ``core.ca``)."""
    name = result.spec.name
    ledger = state.cert(name)
    state = _record_validations(state, result.failed_validations, now)
    if isinstance(result, Issued):
        state = record_rejections(state, result.dropped, now)
        state = record_issued(state, set(result.spec.domains))
        ledger = replace(
            ledger,
            placed=_placed(ledger, result.orders),
            issued=(*ledger.issued, (now, " ".join(result.spec.domains))),
            failures=0,
            last_error="",
            next_attempt=None,
            attempting=None,
            unstored=result.fullchain_pem.decode("ascii", errors="replace"),
            unstored_names=result.spec.domains,
            profile=result.profile,
            directory=directory,
            settings="",
        )
        return _put(state, name, ledger)
    state = record_rejections(state, result.rejected, now)
    failures = ledger.failures + 1
    when = now + next_delay(result.kind, failures, policy, rand)
    asked = sane_retry_after(result.retry_after, now, policy)
    if asked is not None:
        when = max(when, asked) if result.kind is not FailureKind.SYSTEMIC else asked
    ledger = replace(
        ledger,
        placed=_placed(ledger, result.orders),
        failures=failures,
        last_error=result.reason[:300],
        next_attempt=when,
        attempting=None,
        settings=policy.settings,
    )
    return _put(state, name, ledger)


def settings_changed(state: State, settings: str, now: datetime) -> tuple[State, tuple[str, ...]]:
    """Drop the back-off of every certificate whose last failure happened under other settings
    than ``settings`` (a fingerprint): the change may be the fix. Returns the certificates."""
    if not settings:
        return state, ()
    certs = dict(state.certs)
    cleared: list[str] = []
    for name, ledger in state.certs.items():
        if not ledger.settings or ledger.settings == settings:
            continue
        if ledger.next_attempt is not None and ledger.next_attempt > now:
            cleared.append(name)
        certs[name] = replace(ledger, settings="", failures=0, next_attempt=None)
    return replace(state, certs=certs), tuple(cleared)


def settle_stored(state: State, name: str) -> State:
    """The issued chain of ``name`` is in the volume now."""
    ledger = state.cert(name)
    return _put(state, name, replace(ledger, unstored="", unstored_names=()))


def settle_store_failed(
    state: State, name: str, error: str, now: datetime, policy: RetryPolicy, rand: float = 0.5
) -> State:
    """Storing failed (a full or read-only volume): keep the chain, retry on the ladder."""
    ledger = state.cert(name)
    failures = ledger.failures + 1
    when = now + next_delay(FailureKind.SYSTEMIC, failures, policy, rand)
    return _put(
        state,
        name,
        replace(ledger, failures=failures, last_error=error[:300], next_attempt=when),
    )


# --- force_renew ---------------------------------------------------------------------------


def force_seen(state: State, present: bool, now: datetime) -> State:
    """Start honouring ``force_renew`` when it appears; forget it when it is gone."""
    if present and state.force_since is None:
        return replace(state, force_since=now)
    if not present and state.force_since is not None:
        return replace(state, force_since=None)
    return state


def force_done(state: State) -> frozenset[str]:
    """Certificates re-issued (and stored) since ``force_renew`` appeared: done for them."""
    since = state.force_since
    if since is None:
        return frozenset()
    return frozenset(
        n
        for n, c in state.certs.items()
        if c.last_issued is not None and c.last_issued >= since and not c.unstored
    )


def force_complete(state: State, wanted: Collection[str]) -> bool:
    """Every wanted certificate was re-issued (and stored) since ``force_renew`` appeared."""
    done = force_done(state)
    return bool(wanted) and all(n in done for n in wanted)


# --- deploy --------------------------------------------------------------------------------


def sni_map(domains: Mapping[str, Iterable[str]]) -> tuple[str, ...]:
    """Which directory serves which name, as sorted ``"name directory"`` entries."""
    return tuple(sorted(f"{n} {d}" for d, names in domains.items() for n in names))


def deploy_begin(
    state: State, dirs_before: Iterable[str], now: datetime, sni_before: Iterable[str] = ()
) -> State:
    """Record the deploy owed before the first write (kept if one is already owed): the
    directories and which directory serves which name, to tell a reload from a restart."""
    if state.deploy is not None:
        return state
    deploy = Deploy(since=now, dirs_before=tuple(sorted(dirs_before)), sni_before=tuple(sni_before))
    return replace(state, deploy=deploy)


def deploy_checks(
    deploy: Deploy, domains: Mapping[str, tuple[str, ...]]
) -> tuple[Change, dict[str, str]]:
    """What an owed deploy needs, from the certificate directories now (name -> domains):
    what changed for the consumers (the top-level pair, the contents of which directories,
    and whether the layout changed: a new or removed directory, or a name that moved; the
    consumers build their SNI maps at start), and which SNI name to check for which written
    directory (its first name and every name new to it)."""
    now = set(sni_map(domains))
    layout = set(domains) != set(deploy.dirs_before)
    if deploy.sni_before:
        layout = layout or now != set(deploy.sni_before)
    before = set(deploy.sni_before)
    checks: dict[str, str] = {}
    for directory in deploy.certs:
        names = domains.get(directory)
        if not names:
            continue
        checks[names[0]] = directory
        for name in names[1:]:
            if before and f"{name} {directory}" not in before:
                checks[name] = directory
    written = frozenset(d for d in deploy.certs if d in domains)
    return Change(default=deploy.default, dirs=written, layout=layout), checks


def deploy_wrote(state: State, name: str) -> State:
    """Certificate ``name`` was written (or is about to be): the deploy must verify it."""
    deploy = state.deploy
    if deploy is None or name in deploy.certs:
        return state
    return replace(state, deploy=replace(deploy, certs=(*deploy.certs, name)))


def deploy_wrote_default(state: State) -> State:
    """The top-level pair was written (or is about to be): Postfix must reload it."""
    deploy = state.deploy
    if deploy is None or deploy.default:
        return state
    return replace(state, deploy=replace(deploy, default=True))


def deploy_finished(state: State, ok: bool) -> State:
    """Clear the owed deploy when it succeeded, else count the attempt."""
    if state.deploy is None:
        return state
    if ok:
        return replace(state, deploy=None)
    return replace(state, deploy=replace(state.deploy, attempts=state.deploy.attempts + 1))


# --- housekeeping --------------------------------------------------------------------------


def tidy(state: State, now: datetime, wanted: Collection[str]) -> State:
    """Forget what no limit counts any more; drop ledgers of certificates that are gone."""
    certs: dict[str, CertLedger] = {}
    for name, c in state.certs.items():
        kept = replace(
            c,
            placed=tuple(t for t in c.placed if now - t < KEEP_PLACED),
            issued=tuple((t, n) for t, n in c.issued if now - t < WEEK),
        )
        busy = kept.placed or kept.issued or kept.unstored or kept.attempting
        waiting = kept.next_attempt is not None and kept.next_attempt > now
        if name in wanted or busy or waiting:
            certs[name] = kept
    failed = {
        n: kept_times
        for n, times in state.failed_validations.items()
        if (kept_times := tuple(t for t in times if now - t < KEEP_FAILED_VALIDATIONS))
    }
    return replace(state, certs=certs, failed_validations=failed)
