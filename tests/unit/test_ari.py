"""ARI and the renewal time (issue #9, test 3): CertIDs, windows, drawn times, the planner's
renewal times for 90/64/45-day and 160-hour certificates, and the wake-up after a cycle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509

from acme_sidecar.core.ari import (
    Answer,
    AriRecord,
    Window,
    cert_id,
    choose,
    fold_answer,
    parse_window,
    poll_due,
    renew_time,
)
from acme_sidecar.core.budget import HoldRules
from acme_sidecar.core.ledger import CertLedger, State
from acme_sidecar.core.model import Action, NameGroup, StoredCert, Verdict
from acme_sidecar.core.plan import Shape, make_plan
from acme_sidecar.core.report import Outcome, Report
from acme_sidecar.core.wake import Pacing, next_wake
from tests.certs import leaf

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
HOST = "mail.example.org"
GROUPS = (NameGroup(HOST, (HOST,), server=True),)
CID = "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
HOUR, DAY = timedelta(hours=1), timedelta(days=1)


def at(hours: float) -> datetime:
    return NOW + timedelta(hours=hours)


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def answer(start: datetime, end: datetime, **extra: Any) -> Answer:
    return Answer({"suggestedWindow": {"start": iso(start), "end": iso(end)}, **extra})


def test_cert_id_is_the_rfc_9773_example() -> None:
    """The CertID of RFC 9773 §4.1's example: AKI 69:88:5B:... and serial 0x87654321."""
    aki = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
    cert = leaf([], subject=x509.Name([]), serial=0x87654321, not_before=NOW, key_id=aki)
    assert cert_id(cert) == CID


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ([], "not a JSON object"),
        ({}, "suggestedWindow is missing"),
        ({"suggestedWindow": {"start": "2027-03-01T00:00:00Z"}}, "end is missing"),
        ({"suggestedWindow": {"start": "soon", "end": "later"}}, "not an RFC 3339 time"),
        (
            {"suggestedWindow": {"start": "2027-03-01T00:00:00", "end": "2027-03-02T00:00:00"}},
            "no time zone",
        ),
        (
            {"suggestedWindow": {"start": "2027-03-02T00:00:00Z", "end": "2027-03-01T00:00:00Z"}},
            "ends",
        ),
        (
            {"suggestedWindow": {"start": "2027-03-01T00:00:00Z", "end": "2027-03-01T00:00:00Z"}},
            "ends",
        ),
    ],
)
def test_malformed_windows_are_rejected(data: Any, problem: str) -> None:
    """A malformed window, or one that ends at or before its start, is refused with why."""
    with pytest.raises(ValueError, match=problem):
        parse_window(data)


def test_a_window_with_explanation() -> None:
    """A window is parsed with its explanationURL."""
    data = answer(at(1), at(2), explanationURL="https://ca.example/incident").data
    assert parse_window(data) == Window(at(1), at(2), "https://ca.example/incident")


LIFE = (at(-24 * 30), at(24 * 60))  # a 90-day certificate, 30 days old


@pytest.mark.parametrize(
    ("window", "rand", "expected"),
    [
        ((at(24), at(48)), 0.0, at(24)),  # future: the start ...
        ((at(24), at(48)), 0.5, at(36)),  # ... the middle
        ((at(-3), at(-1)), 0.5, NOW),  # the window is over (a revocation): renew now
        ((at(-3), at(3)), 0.25, NOW),  # the drawn time has passed: renew now
        ((at(-3), at(3)), 0.75, at(1.5)),
        ((at(24 * 20), at(24 * 70)), 0.5, at(24 * 35.5)),  # cut at a tenth of life left
        ((at(24 * 55), at(24 * 70)), 0.5, None),  # wholly after that: not used
        ((at(-24 * 40), at(24 * 2)), 0.75, NOW),  # cut at issuance; the drawn time passed
        ((at(-24 * 40), at(24 * 2)), 31 / 32, at(24)),
    ],
)
def test_the_renewal_time_is_drawn_in_the_window(
    window: tuple[datetime, datetime], rand: float, expected: datetime | None
) -> None:
    """Uniform in the window; now when the window or the drawn time has passed."""
    assert choose(Window(*window), *LIFE, NOW, rand) == expected


def stored_cert(life: timedelta, age: timedelta, cid: str = CID) -> StoredCert:
    nb = NOW - age
    return StoredCert(HOST, (HOST,), nb, nb + life, 0x87654321, "CN=x", True, (HOST,), cid)


@pytest.mark.parametrize(
    ("life", "renews_after"),
    [
        (timedelta(days=90), timedelta(days=60)),  # ⅓ of the lifetime left
        (timedelta(days=64), timedelta(days=64) * 2 / 3),  # Let's Encrypt from 2027-02-10
        (timedelta(days=45), timedelta(days=30)),  # from 2028, and tlsserver
        (timedelta(hours=160), timedelta(hours=80)),  # shortlived: ½ under 10 days
        (timedelta(seconds=60), timedelta(seconds=30)),  # Pebble's short certificates
    ],
)
def test_lifetime_rule_without_ari(life: timedelta, renews_after: timedelta) -> None:
    """Without a window from the CA: ⅓ of the lifetime left, ½ under 10 days."""
    cert = stored_cert(life, timedelta(0))
    rule = renew_time(cert.cert_id, cert.not_before, cert.not_after, None)
    assert (rule.at, rule.ari) == (cert.not_before + renews_after, False)


@pytest.mark.parametrize(
    ("life", "window"),
    [
        (timedelta(days=90), (timedelta(days=59), timedelta(days=61))),
        (timedelta(days=64), (timedelta(days=42), timedelta(days=43))),
        (timedelta(days=45), (timedelta(days=29), timedelta(days=31))),
        (timedelta(hours=160), (timedelta(hours=100), timedelta(hours=110))),
    ],
)
def test_ari_time_inside_the_window(life: timedelta, window: tuple[timedelta, timedelta]) -> None:
    """With a window: the drawn time, inside it, wins over the lifetime rule."""
    cert = stored_cert(life, timedelta(0))
    start, end = (cert.not_before + w for w in window)
    for rand in (0.0, 0.3, 0.99):
        record = fold_answer(
            None,
            CID,
            answer(start, end),
            not_before=cert.not_before,
            not_after=cert.not_after,
            now=NOW,
            interval=6 * HOUR,
            rand=rand,
        )
        rule = renew_time(CID, cert.not_before, cert.not_after, record)
        assert rule.ari and start <= rule.at <= end and record.problem == ""


def settled(
    old: AriRecord | None, got: Answer, now: datetime = NOW, rand: float = 0.5
) -> AriRecord:
    nb, na = LIFE
    return fold_answer(
        old, CID, got, not_before=nb, not_after=na, now=now, interval=6 * HOUR, rand=rand
    )


@pytest.mark.parametrize(
    ("retry_after", "next_poll"),
    [
        (None, at(6)),  # ACME_ARI_INTERVAL
        (at(2), at(2)),  # sooner when the CA asks
        (at(24), at(6)),  # at least every ACME_ARI_INTERVAL
        (NOW + timedelta(seconds=5), NOW + timedelta(minutes=1)),  # never within a minute
    ],
)
def test_next_fetch_after_retry_after(retry_after: datetime | None, next_poll: datetime) -> None:
    """The window is fetched again after ACME_ARI_INTERVAL, sooner on the CA's Retry-After."""
    got = answer(at(24), at(48))
    record = settled(None, Answer(got.data, retry_after))
    assert record.next_poll == next_poll


def test_the_drawn_time_is_kept_while_the_window_stays() -> None:
    """Asking again with the same window keeps the drawn time; a new window draws again."""
    first = settled(None, answer(at(24), at(48)), rand=0.25)
    again = settled(first, answer(at(24), at(48)), now=at(6), rand=0.75)
    moved = settled(again, answer(at(-2), at(-1)), now=at(12))
    assert first.renew_at == again.renew_at == at(30)
    assert moved.renew_at == at(12)  # the window moved into the past: renew now


@pytest.mark.parametrize(
    "bad",
    [
        Answer(error="renewalInfo unreachable: ConnectTimeout"),
        Answer(error="the CA offers no renewalInfo"),
        Answer({"suggestedWindow": {"start": iso(at(48)), "end": iso(at(24))}}),
        Answer({"suggestedWindow": "soon"}),
    ],
)
def test_an_unusable_answer_keeps_the_known_window(bad: Answer) -> None:
    """A failed or malformed answer keeps the window known for the certificate, says why,
    and falls back to the lifetime rule when none is known."""
    known = settled(None, answer(at(24), at(48)))
    kept = settled(known, bad, now=at(1))
    assert (kept.start, kept.renew_at) == (known.start, known.renew_at) and kept.problem
    fresh = settled(None, bad)
    assert fresh.renew_at is None and fresh.problem
    nb, na = LIFE
    assert not renew_time(CID, nb, na, fresh).ari


def test_a_record_for_another_certificate_is_not_used() -> None:
    """A window kept for the certificate before (another serial) does not count."""
    record = settled(None, answer(at(-2), at(-1)))
    nb, na = LIFE
    rule = renew_time("other.AQ", nb, na, record)
    assert not rule.ari and rule.at == nb + (na - nb) * 2 / 3
    assert poll_due("other.AQ", nb, na, record, NOW) == NOW  # asked for the new one at once


def plan_with(record: AriRecord | None, **kwargs: Any) -> Any:
    cert = stored_cert(timedelta(days=90), timedelta(days=30))
    return make_plan(
        GROUPS,
        {HOST: Verdict(HOST, True, "ok")},
        {HOST: cert},
        shape=Shape(),
        force=False,
        now=NOW,
        ari={HOST: record} if record else None,
        **kwargs,
    )


def test_planner_renews_at_the_ari_time_with_replaces() -> None:
    """A window in the past (a revocation): renewed now, the order names the old CertID; a
    future one keeps the certificate; nothing due means no order."""
    now = plan_with(settled(None, answer(at(-2), at(-1))))
    assert now.certs[0].action is Action.RENEW and now.certs[0].replaces == CID
    assert "the CA asks for it" in now.certs[0].reason
    later = plan_with(settled(None, answer(at(24), at(48))))
    assert later.certs[0].action is Action.KEEP and not later.to_order
    assert later.certs[0].renew_at == at(36)
    plain = plan_with(None)
    assert plain.certs[0].action is Action.KEEP and not plain.to_order


def test_a_due_renewal_after_failures_waits() -> None:
    """Due by ARI but held (back-off after failures, the CA's Retry-After): no order yet."""

    waiting = CertLedger(next_attempt=at(2), failures=3, last_error="3 failures in a row")
    rules = HoldRules(State(certs={HOST: waiting}))
    plan = plan_with(settled(None, answer(at(-2), at(-1))), hold_rules=rules)
    assert plan.certs[0].action is Action.WAIT and not plan.to_order
    assert plan.certs[0].renew_at == at(2)


def report_of(cert: StoredCert, ledger: CertLedger, action: Action = Action.KEEP) -> Report:
    plan = plan_with(None)
    plan = type(plan)(
        certs=(type(plan.certs[0])(plan.certs[0].spec, action, "x", at(2)),),
        default_name=HOST,
    )
    state = State(certs={HOST: ledger})
    return Report(Outcome.OK, plan, stored={HOST: cert}, state=state)


@pytest.mark.parametrize(
    ("life", "age", "ledger", "action", "ari", "sleep", "why"),
    [
        # a 60-second certificate just issued: half its life, not the daily check
        (timedelta(seconds=60), timedelta(0), CertLedger(), Action.RENEW, False, 30, "renewal"),
        (timedelta(days=90), timedelta(0), CertLedger(), Action.KEEP, False, 86400, "regular"),
        # ARI on: a certificate whose window was never fetched is asked at once
        (timedelta(days=90), timedelta(0), CertLedger(), Action.KEEP, True, 1, "ARI window"),
        # the next fetch of a known window
        (
            timedelta(days=90),
            timedelta(0),
            CertLedger(ari=AriRecord(CID, at(6), at(24 * 59), at(24 * 61), at(24 * 60))),
            Action.KEEP,
            True,
            6 * 3600,
            "ARI window",
        ),
        # the drawn time of a window comes before the next fetch
        (
            timedelta(days=90),
            timedelta(days=59),
            CertLedger(ari=AriRecord(CID, at(6), at(-1), at(24), at(3))),
            Action.KEEP,
            True,
            3 * 3600,
            "renewal",
        ),
        # due, ordered and failed: its next attempt from the ledger, no busy loop
        (
            timedelta(days=90),
            timedelta(days=70),
            CertLedger(failures=1, next_attempt=at(0.5), last_error="dns"),
            Action.RENEW,
            True,
            1800,
            "next attempt",
        ),
        # held (Retry-After): until the hold ends
        (timedelta(days=90), timedelta(days=70), CertLedger(), Action.WAIT, False, 7200, "held"),
    ],
)
def test_wake_up_on_time(
    life: timedelta,
    age: timedelta,
    ledger: CertLedger,
    action: Action,
    ari: bool,
    sleep: float,
    why: str,
) -> None:
    """The next wake-up: the earliest renewal time, ARI fetch, retry, hold or daily check."""
    pacing = Pacing(DAY, timedelta(minutes=1), HOUR, (timedelta(minutes=1),), HOUR, ari=ari)
    wake = next_wake(report_of(stored_cert(life, age), ledger, action), pacing, NOW)
    assert wake.seconds == pytest.approx(sleep) and why in wake.reason, wake


def test_a_retry_time_passed_during_the_cycle_wakes_at_once() -> None:
    """A chain not stored (full volume) whose one-second retry passed while the cycle went on:
    the next cycle comes at once, not after the daily check."""
    ledger = CertLedger(failures=1, next_attempt=at(-0.001), unstored="PEM", last_error="ENOSPC")
    cert = stored_cert(timedelta(days=90), timedelta(days=70))
    pacing = Pacing(DAY, timedelta(minutes=1), HOUR, (timedelta(minutes=1),), HOUR)
    wake = next_wake(report_of(cert, ledger, Action.RENEW), pacing, NOW)
    assert wake.seconds == 1 and "ENOSPC" in wake.reason
    held = next_wake(report_of(cert, CertLedger(next_attempt=at(-5)), Action.WAIT), pacing, NOW)
    assert held.seconds == 7200  # an old retry time of a held certificate: its hold counts
