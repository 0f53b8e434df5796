"""Grace against churn and the memory of CA rejections (pure rules of acme_sidecar.core.memory)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from acme_sidecar.core.ledger import State
from acme_sidecar.core.memory import apply_memory, record_issued, record_rejections
from acme_sidecar.core.model import StoredCert, Verdict

NOW = datetime(2026, 11, 24, tzinfo=UTC)
GRACE = timedelta(days=7)
NAME = "autodiscover.a.test"


def cert(*names: str, expired: bool = False) -> dict[str, StoredCert]:
    end = NOW - timedelta(days=1) if expired else NOW + timedelta(days=60)
    return {names[0]: StoredCert(names[0], names, NOW - timedelta(days=30), end, 1, "x", True)}


BAD = {NAME: Verdict(NAME, False, "DNS A returned 10.0.0.1, expected 192.0.2.1")}


def test_one_failure_keeps_a_certified_name() -> None:
    """A name in a valid certificate that fails once stays in (grace starts)."""
    verdicts, state = apply_memory(BAD, cert(NAME), State(), grace=GRACE, now=NOW)
    assert verdicts[NAME].ok and "kept" in verdicts[NAME].reason
    assert state.failing_since[NAME] == NOW


def test_dropped_after_grace() -> None:
    """After failing for the grace period the name is dropped."""
    state = State(failing_since={NAME: NOW - GRACE})
    verdicts, _ = apply_memory(BAD, cert(NAME), state, grace=GRACE, now=NOW)
    assert not verdicts[NAME].ok


def test_no_grace_for_new_or_expired_names() -> None:
    """A failing name that is in no valid certificate is dropped at once."""
    assert not apply_memory(BAD, {}, State(), grace=GRACE, now=NOW)[0][NAME].ok
    assert not apply_memory(BAD, cert(NAME, expired=True), State(), grace=GRACE, now=NOW)[0][
        NAME
    ].ok


def test_success_resets_the_clock() -> None:
    """A name that validates again forgets its failure."""
    state = State(failing_since={NAME: NOW - timedelta(days=3)})
    ok = {NAME: Verdict(NAME, True, "ok")}
    _, after = apply_memory(ok, cert(NAME), state, grace=GRACE, now=NOW)
    assert NAME not in after.failing_since


def test_rejected_names_back_off_and_double() -> None:
    """A name the CA rejected is held back for 1 h, then 2 h, capped at a day."""
    state = record_rejections(State(), {NAME: "connection refused"}, NOW)
    assert state.rejected[NAME].until == NOW + timedelta(hours=1)
    ok = {NAME: Verdict(NAME, True, "ok")}
    verdicts, _ = apply_memory(ok, {}, state, grace=GRACE, now=NOW)
    assert not verdicts[NAME].ok and "rejected" in verdicts[NAME].reason
    later = NOW + timedelta(hours=1)
    assert apply_memory(ok, {}, state, grace=GRACE, now=later)[0][NAME].ok
    state = record_rejections(state, {NAME: "again"}, later)
    assert state.rejected[NAME].until == later + timedelta(hours=2)
    for _ in range(10):
        state = record_rejections(state, {NAME: "again"}, later)
    assert state.rejected[NAME].until == later + timedelta(days=1)


def test_issued_forgets_rejection_and_round_trips() -> None:
    """Issuing a name clears its rejection; the state survives JSON."""
    state = record_rejections(State(), {NAME: "x"}, NOW)
    assert State.from_json(state.to_json()) == state
    assert NAME not in record_issued(state, {NAME}).rejected


def test_recent_verdicts_reused_only_for_settled_certificates() -> None:
    """Recently validated names in a certificate that is not due need no fresh check; a due
    certificate, force_renew, an old verdict or revalidation off mean a fresh check."""
    from acme_sidecar.core.memory import reusable_verdicts

    fresh = cert(NAME)
    state = State(validated={NAME: NOW - timedelta(hours=1)})
    twelve = timedelta(hours=12)
    reuse = reusable_verdicts([NAME], fresh, state, now=NOW, revalidate_after=twelve, force=False)
    assert reuse[NAME].ok
    assert not reusable_verdicts(
        [NAME], fresh, state, revalidate_after=timedelta(0), now=NOW, force=False
    )
    old = State(validated={NAME: NOW - timedelta(hours=13)})
    assert not reusable_verdicts([NAME], fresh, old, revalidate_after=twelve, now=NOW, force=False)
    due = {
        NAME: StoredCert(
            NAME, (NAME,), NOW - timedelta(days=80), NOW + timedelta(days=10), 1, "x", True
        )
    }
    assert not reusable_verdicts([NAME], due, state, revalidate_after=twelve, now=NOW, force=False)
    assert not reusable_verdicts([NAME], fresh, state, now=NOW, revalidate_after=twelve, force=True)
