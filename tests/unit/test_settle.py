"""Settling results into the ledger, the budget, and the ledger's JSON form (pure core)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from acme_sidecar.core.budget import Limits, hold_for, last_two_labels
from acme_sidecar.core.consumers import Change
from acme_sidecar.core.ledger import CertLedger, Deploy, Rejection, State
from acme_sidecar.core.memory import record_rejections
from acme_sidecar.core.model import CertSpec, FailureKind, Issued, IssueFailure
from acme_sidecar.core.settle import (
    RetryPolicy,
    begin_orders,
    deploy_begin,
    deploy_checks,
    deploy_finished,
    deploy_wrote,
    deploy_wrote_default,
    force_complete,
    force_done,
    force_seen,
    interrupted,
    next_delay,
    sane_retry_after,
    settle_result,
    settle_store_failed,
    settle_stored,
    sni_map,
    tidy,
)

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
SPEC = CertSpec("mail.a.test", ("mail.a.test", "autoconfig.a.test"))
POLICY = RetryPolicy(jitter=0.0)
MIN = timedelta(minutes=1)


def failure(kind: FailureKind, **kw: object) -> IssueFailure:
    return IssueFailure(SPEC, "boom", kind=kind, orders=1, **kw)  # type: ignore[arg-type]


def issued(**kw: object) -> Issued:
    return Issued(SPEC, b"-----BEGIN CERTIFICATE-----\n", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "failures", "delay"),
    [
        (FailureKind.SYSTEMIC, 1, 1 * MIN),
        (FailureKind.SYSTEMIC, 2, 2 * MIN),
        (FailureKind.SYSTEMIC, 3, 5 * MIN),
        (FailureKind.SYSTEMIC, 5, 30 * MIN),
        (FailureKind.SYSTEMIC, 6, 30 * MIN),  # then ACME_RETRY_INTERVAL
        (FailureKind.OTHER, 1, 30 * MIN),
        (FailureKind.OTHER, 2, 60 * MIN),
        (FailureKind.OTHER, 3, 120 * MIN),
        (FailureKind.OTHER, 10, 24 * 60 * MIN),  # capped at ACME_MAX_BACKOFF
        (FailureKind.REJECTED, 1_000, 24 * 60 * MIN),  # no overflow
        (FailureKind.RATE_LIMITED, 1, 30 * MIN),
    ],
)
def test_next_delay_table(kind: FailureKind, failures: int, delay: timedelta) -> None:
    """Systemic failures climb the ladder; the rest back off exponentially, capped."""
    assert next_delay(kind, failures, POLICY, 0.5) == delay


def test_jitter_stays_within_ten_percent() -> None:
    """Jitter moves a delay by at most 10 % either way."""
    policy = RetryPolicy()
    low, high = (
        next_delay(FailureKind.OTHER, 1, policy, 0.0),
        next_delay(FailureKind.OTHER, 1, policy, 0.999),
    )
    assert 27 * MIN <= low < high <= 33 * MIN


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (None, None),
        (timedelta(0), None),  # zero: our own delay
        (-timedelta(hours=1), None),  # in the past
        (timedelta(hours=2), timedelta(hours=2)),
        (timedelta(days=3650), timedelta(days=7)),  # ten years: capped at a week
    ],
)
def test_retry_after_is_sane(offset: timedelta | None, expected: timedelta | None) -> None:
    """A Retry-After is capped at a week; zero or past falls back to our own delay."""
    got = sane_retry_after(None if offset is None else NOW + offset, NOW, POLICY)
    assert got == (None if expected is None else NOW + expected)


def test_ten_year_retry_after_settles_to_a_week() -> None:
    """A 10-year Retry-After from the CA holds the certificate for one week, no overflow."""
    state = begin_orders(State(), [SPEC.name], NOW)
    result = failure(FailureKind.RATE_LIMITED, retry_after=NOW + timedelta(days=3650))
    after = settle_result(state, result, NOW, POLICY)
    assert after.cert(SPEC.name).next_attempt == NOW + timedelta(days=7)


def test_thousand_rejections_do_not_overflow() -> None:
    """A name rejected 1,000 times in a row backs off one day, no OverflowError."""
    state = State(rejected={"a.test": Rejection("x", 1_000, NOW)})
    after = record_rejections(state, {"a.test": "unauthorized"}, NOW)
    assert after.rejected["a.test"].until == NOW + timedelta(days=1)


def test_failure_schedules_next_attempt_and_counts_order() -> None:
    """A failed order counts as placed, and its next attempt follows the ladder."""
    state = begin_orders(State(), [SPEC.name], NOW)
    assert state.cert(SPEC.name).attempting == NOW
    after = settle_result(state, failure(FailureKind.SYSTEMIC), NOW, POLICY)
    ledger = after.cert(SPEC.name)
    assert ledger.placed == (NOW,) and ledger.attempting is None
    assert ledger.failures == 1 and ledger.next_attempt == NOW + MIN


def test_unplaced_order_is_not_counted() -> None:
    """An order never placed (the CA unreachable at connect) does not count against limits."""
    state = begin_orders(State(), [SPEC.name], NOW)
    after = settle_result(state, replace(failure(FailureKind.SYSTEMIC), orders=0), NOW, POLICY)
    assert after.cert(SPEC.name).placed == ()


def test_issued_is_unstored_until_stored() -> None:
    """An issued chain is kept in the ledger until the volume has it."""
    state = begin_orders(State(), [SPEC.name], NOW)
    after = settle_result(state, issued(orders=2), NOW, POLICY)
    ledger = after.cert(SPEC.name)
    assert ledger.unstored and ledger.unstored_names == SPEC.domains
    assert ledger.placed == (NOW, NOW) and ledger.issued == ((NOW, " ".join(SPEC.domains)),)
    assert not settle_stored(after, SPEC.name).cert(SPEC.name).unstored


def test_store_failure_keeps_chain_and_retries_on_ladder() -> None:
    """A full volume keeps the issued chain and retries soon, never re-orders."""
    state = settle_result(begin_orders(State(), [SPEC.name], NOW), issued(), NOW, POLICY)
    after = settle_store_failed(state, SPEC.name, "ENOSPC", NOW, POLICY)
    assert after.cert(SPEC.name).unstored and after.cert(SPEC.name).next_attempt == NOW + MIN


def test_interrupted_order_waits_for_the_ladder() -> None:
    """An order left in flight by a kill is not placed again before the ladder's first step."""
    state = begin_orders(State(), [SPEC.name], NOW)
    after = interrupted(state, NOW + timedelta(seconds=5), POLICY)
    ledger = after.cert(SPEC.name)
    assert ledger.attempting is None and ledger.next_attempt == NOW + MIN
    assert hold_for(SPEC, after, NOW + timedelta(seconds=5)) is not None
    assert hold_for(SPEC, after, NOW + 2 * MIN) is None


def test_force_is_done_per_certificate() -> None:
    """Under force_renew a certificate re-issued since the flag counts done; the flag is
    complete only when every wanted certificate was re-issued and stored."""
    state = force_seen(State(), True, NOW)
    assert state.force_since == NOW and force_done(state) == frozenset()
    later = NOW + MIN
    state = settle_stored(settle_result(state, issued(), later, POLICY), SPEC.name)
    assert force_done(state) == {SPEC.name}
    assert not force_complete(state, [SPEC.name, "other.test"])
    assert force_complete(state, [SPEC.name])
    assert force_seen(state, False, later).force_since is None


def test_deploy_owed_until_finished() -> None:
    """A deploy is owed from before the first write until it succeeded."""
    state = deploy_wrote(deploy_begin(State(), ["a"], NOW), "mail.a.test")
    assert state.deploy == Deploy(NOW, ("mail.a.test",), ("a",))
    state = deploy_finished(state, ok=False)
    assert state.deploy is not None and state.deploy.attempts == 1
    assert deploy_finished(state, ok=True).deploy is None


def test_tidy_forgets_old_entries_only() -> None:
    """Old orders, issuances and failed validations are forgotten; recent ones kept."""
    old, recent = NOW - timedelta(days=8), NOW - MIN
    state = State(
        certs={
            "keep.test": CertLedger(placed=(old, recent), issued=((old, "x"), (recent, "x"))),
            "gone.test": CertLedger(placed=(old,)),
        },
        failed_validations={"a.test": (NOW - timedelta(hours=2),), "b.test": (recent,)},
    )
    after = tidy(state, NOW, wanted=["keep.test"])
    assert after.certs["keep.test"].placed == (recent,)
    assert after.certs["keep.test"].issued == ((recent, "x"),)
    assert "gone.test" not in after.certs
    assert dict(after.failed_validations) == {"b.test": (recent,)}


# --- the budget ------------------------------------------------------------------------


def test_identical_certificates_per_week_are_limited() -> None:
    """Four identical certificates this week hold a fifth until the oldest is a week old."""
    names = " ".join(SPEC.domains)
    times = tuple(NOW - timedelta(days=d) for d in (6, 3, 2, 1))
    state = State(certs={SPEC.name: CertLedger(issued=tuple((t, names) for t in times))})
    hold = hold_for(SPEC, state, NOW)
    assert hold is not None and hold.until == times[0] + timedelta(days=7)
    assert "exactly these names" in hold.reason


def test_failed_validations_per_name_per_hour_are_limited() -> None:
    """Four failed validations of a name within the hour hold its certificate."""
    times = tuple(NOW - timedelta(minutes=m) for m in (50, 30, 10, 1))
    state = State(failed_validations={"autoconfig.a.test": times})
    hold = hold_for(SPEC, state, NOW)
    assert hold is not None and hold.until == times[0] + timedelta(hours=1)


def test_orders_per_three_hours_count_planned_orders() -> None:
    """Orders planned earlier in this cycle count against the per-account limit."""
    limits = Limits(orders_per_3h=10)
    state = State(certs={"x.test": CertLedger(placed=(NOW - MIN,) * 5)})
    assert hold_for(SPEC, state, NOW, limits=limits, planned_orders=3) is None
    assert hold_for(SPEC, state, NOW, limits=limits, planned_orders=4) is not None


def test_registered_domain_limit() -> None:
    """Certificates per registered domain per week are counted across directories."""
    limits = Limits(per_domain_per_week=3)
    state = State(
        certs={f"{i}.a.test": CertLedger(issued=((NOW - MIN, f"{i}.a.test"),)) for i in range(2)}
    )
    assert last_two_labels("autoconfig.a.test") == "a.test"
    hold = hold_for(SPEC, state, NOW, limits=limits)
    assert hold is not None and "a.test" in hold.reason


# --- the ledger file -------------------------------------------------------------------


def test_ledger_round_trips() -> None:
    """Every field of the ledger survives JSON."""
    state = State(
        failing_since={"a.test": NOW},
        rejected={"b.test": Rejection("caa", 2, NOW)},
        validated={"c.test": NOW},
        failed_validations={"d.test": (NOW,)},
        certs={
            SPEC.name: CertLedger(
                placed=(NOW,),
                issued=((NOW, "x y"),),
                failures=2,
                last_error="e",
                next_attempt=NOW,
                attempting=NOW,
                unstored="PEM",
                unstored_names=SPEC.domains,
            )
        },
        force_since=NOW,
        deploy=Deploy(NOW, ("a",), ("b",), 3),
    )
    assert State.from_json(state.to_json()) == state


def test_version_one_file_is_migrated() -> None:
    """A version 1 state.json (Retry-After per certificate) becomes the ledger's next attempt."""
    text = (
        '{"version": 1, "failing_since": {}, "rejected": {}, "validated": {},'
        ' "cert_retry_after": {"mail.a.test": "2026-11-29T13:00:00+00:00"}}'
    )
    state = State.from_json(text)
    assert state.cert("mail.a.test").next_attempt == NOW + timedelta(hours=1)


def test_naive_timestamps_are_read_as_utc() -> None:
    """A time without a zone (hand-edited) is taken as UTC instead of crashing comparisons."""
    state = State.from_json('{"version": 2, "failing_since": {"a.test": "2026-11-29T12:00:00"}}')
    assert state.failing_since["a.test"] == NOW


@pytest.mark.parametrize("text", ["[]", '{"version": 99}', '{"rejected": {"a": {}}}', "{"])
def test_damaged_ledger_raises(text: str) -> None:
    """A damaged or future file raises (the volume keeps it aside), never half-parses."""
    with pytest.raises((ValueError, KeyError, TypeError)):
        State.from_json(text)


def test_a_name_new_to_a_directory_needs_a_restart_and_a_check() -> None:
    """A name added to an existing directory: the services restart (their SNI maps are built
    at start) and the new name is verified; a plain renewal is a reload checking the first
    name."""
    before = sni_map({"a.test": ("a.test", "b.a.test")})
    owed = Deploy(NOW, ("a.test",), ("a.test",), sni_before=before)
    change, checks = deploy_checks(owed, {"a.test": ("a.test", "b.a.test")})
    assert change == Change(dirs=frozenset({"a.test"})) and checks == {"a.test": "a.test"}
    change, checks = deploy_checks(owed, {"a.test": ("a.test", "b.a.test", "mta-sts.a.test")})
    assert change.layout and checks == {"a.test": "a.test", "mta-sts.a.test": "a.test"}
    change, _ = deploy_checks(owed, {"a.test": ("a.test",), "b.a.test": ("b.a.test",)})
    assert change.layout  # a name moved to a new directory


def test_deploy_reports_the_default_pair_and_written_directories() -> None:
    """The top-level pair written is reported apart from directories; a written directory
    that is gone again (archived) is not a content change but a layout one."""
    state = deploy_begin(State(), ["a.test", "b.test"], NOW, sni_map({"a.test": ("a.test",)}))
    state = deploy_wrote_default(deploy_wrote(state, "a.test"))
    state = deploy_wrote(state, "b.test")
    assert state.deploy is not None and State.from_json(state.to_json()) == state
    change, checks = deploy_checks(state.deploy, {"a.test": ("a.test",)})
    assert change == Change(default=True, dirs=frozenset({"a.test"}), layout=True)
    assert checks == {"a.test": "a.test"}
    assert deploy_wrote_default(State()) == State()  # nothing owed: nothing recorded


def test_budget_off_for_a_private_ca() -> None:
    """ACME_RATE_LIMITS=off: a private CA's many orders are not held by Let's Encrypt's limits,
    while a certificate's own back-off still holds it."""
    state = State(certs={"x.test": CertLedger(placed=(NOW - MIN,) * 1_000)})
    assert hold_for(SPEC, state, NOW) is not None
    assert hold_for(SPEC, state, NOW, limits=Limits.off()) is None
    waiting = State(certs={SPEC.name: CertLedger(failures=1, next_attempt=NOW + MIN)})
    assert hold_for(SPEC, waiting, NOW, limits=Limits.off()) is not None
