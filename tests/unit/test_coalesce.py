"""Coalescing (``core.coalesce``): certificates that fall due together are renewed at one time,
inside every member's span; the plan renews the group in one cycle and the wake-up matches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acme_sidecar.config.ari_settings import parse_coalesce
from acme_sidecar.config.policies import cycle_policy, daemon_policy
from acme_sidecar.config.settings import load_settings
from acme_sidecar.core.ari import LATEST_LEFT, AriRecord, lifetime_time, poll_due
from acme_sidecar.core.coalesce import OFF, Coalesce, Span, group_spans, renewal_groups, span_of
from acme_sidecar.core.errors import ConfigError
from acme_sidecar.core.ledger import CertLedger, State
from acme_sidecar.core.model import Action, NameGroup, RenewalGroup, StoredCert, Verdict
from acme_sidecar.core.plan import Shape, make_plan
from acme_sidecar.core.report import Outcome, Report
from acme_sidecar.core.wake import Pacing, next_wake

NOW = datetime(2026, 12, 1, tzinfo=UTC)
HOUR, DAY = timedelta(hours=1), timedelta(days=1)


def cert(name: str, born: timedelta, life: timedelta = 90 * DAY) -> StoredCert:
    """A stored certificate of ``name`` issued ``born`` after NOW (negative: before)."""
    nb = NOW + born
    return StoredCert(name, (name,), nb, nb + life, 1, "CN=x", True, (name,), cert_id=f"id-{name}")


def window(c: StoredCert, start: timedelta, end: timedelta, at: timedelta) -> AriRecord:
    """The CA's window for ``c`` from NOW+``start`` to NOW+``end``, drawn at NOW+``at``."""
    return AriRecord(c.cert_id, NOW + DAY, NOW + start, NOW + end, NOW + at)


def test_overlapping_windows_make_one_group_inside_every_window() -> None:
    """Three certificates whose ARI windows overlap renew at one time inside the common part
    (not each at its own draw); the line says so."""
    certs = {n: cert(n, -60 * DAY) for n in ("a", "b", "c")}
    records = {
        "a": window(certs["a"], 1 * HOUR, 10 * HOUR, 2 * HOUR),
        "b": window(certs["b"], 4 * HOUR, 12 * HOUR, 11 * HOUR),
        "c": window(certs["c"], 3 * HOUR, 8 * HOUR, 5 * HOUR),
    }
    groups = renewal_groups(certs, records)
    group = groups["a"]
    assert group is groups["b"] is groups["c"] and group.names == ("a", "b", "c")
    assert (group.start, group.end) == (NOW + 4 * HOUR, NOW + 8 * HOUR)
    assert group.start <= group.at <= group.end
    assert group.why.startswith("their ARI windows overlap from 2026-12-01 04:00:00Z")
    assert renewal_groups(certs, records) == groups  # the same time on every cycle


def test_disjoint_windows_keep_their_own_draws() -> None:
    """Windows that do not overlap: each certificate alone, at the time drawn in its window."""
    certs = {n: cert(n, -60 * DAY) for n in ("a", "b")}
    records = {
        "a": window(certs["a"], 1 * HOUR, 2 * HOUR, 90 * timedelta(minutes=1)),
        "b": window(certs["b"], 3 * HOUR, 4 * HOUR, 200 * timedelta(minutes=1)),
    }
    groups = renewal_groups(certs, records)
    assert groups["a"].names == ("a",) and groups["a"].at == records["a"].renew_at
    assert groups["b"].names == ("b",) and groups["b"].at == records["b"].renew_at
    assert groups["a"].why == groups["b"].why == ""


@pytest.mark.parametrize(
    ("apart", "together"),
    [
        (timedelta(0), True),
        (timedelta(hours=23), True),  # 10 % of 90 days is 9 days: capped at a day
        (timedelta(hours=25), False),
    ],
)
def test_lifetime_rule_within_a_day_of_the_first(apart: timedelta, together: bool) -> None:
    """Lifetime-rule certificates (90 days: 10 % would be 9 days, capped at a day) due within a
    day of each other renew together at the first one's time, never later than their own."""
    certs = {"a": cert("a", -50 * DAY), "b": cert("b", -50 * DAY + apart)}
    groups = renewal_groups(certs, {})
    first = lifetime_time(certs["a"].not_before, certs["a"].not_after)
    assert groups["a"].at == first
    if together:
        assert groups["b"] is groups["a"] and "within ACME_COALESCE (10%)" in groups["a"].why
    else:
        assert groups["b"].names == ("b",)
        assert groups["b"].at == lifetime_time(certs["b"].not_before, certs["b"].not_after)


@pytest.mark.parametrize(
    ("rules", "apart", "together"),
    [
        (Coalesce(), timedelta(seconds=6), True),  # 10 % of a minute
        (Coalesce(), timedelta(seconds=7), False),
        (Coalesce(fixed=timedelta(seconds=12)), timedelta(seconds=12), True),
        (Coalesce(fixed=timedelta(hours=1)), timedelta(seconds=16), False),  # ¼ of the life
        (parse_coalesce("20%"), timedelta(seconds=12), True),
        (OFF, timedelta(0), False),
        (parse_coalesce("0"), timedelta(0), False),
    ],
)
def test_acme_coalesce_for_one_minute_certificates(
    rules: Coalesce, apart: timedelta, together: bool
) -> None:
    """ACME_COALESCE as a share of the lifetime or a duration (at most a quarter of it); 0 turns
    coalescing off: each certificate at its own time even when the times are the same."""
    minute = timedelta(minutes=1)
    certs = {"a": cert("a", timedelta(0), minute), "b": cert("b", apart, minute)}
    groups = renewal_groups(certs, {}, rules)
    assert (groups["a"] is groups["b"]) is together
    assert groups["a"].at == NOW + minute / 2


def test_never_past_a_window_end_nor_a_tenth_of_the_life() -> None:
    """A window that reaches past a tenth of the life left is cut there; the group's time is
    never after the earliest end of its members, never before the latest start."""
    short = cert("short", -10 * HOUR, 20 * HOUR)  # a tenth left from NOW+8h
    long = cert("long", -60 * DAY)
    records = {
        "short": window(short, 2 * HOUR, 15 * HOUR, 3 * HOUR),
        "long": window(long, 5 * HOUR, 30 * HOUR, 29 * HOUR),
    }
    span = span_of("short", short, records["short"])
    assert span.end == short.not_after - (short.not_after - short.not_before) / LATEST_LEFT
    group = renewal_groups({"short": short, "long": long}, records)["long"]
    assert group.names == ("long", "short")
    assert NOW + 5 * HOUR <= group.at <= NOW + 8 * HOUR


def test_a_window_and_a_lifetime_rule_share_a_time() -> None:
    """An ARI certificate and a lifetime-rule one: the time lies in the window and within
    ACME_COALESCE before the lifetime-rule time."""
    life = 6 * DAY  # lifetime rule: half of it, ACME_COALESCE 10 %: 14.4 hours before
    lone = cert("lone", -3 * DAY + 5 * HOUR, life)  # due NOW+5h
    ari = cert("ari", -60 * DAY)
    records = {"ari": window(ari, -2 * HOUR, 20 * HOUR, 19 * HOUR)}
    group = renewal_groups({"lone": lone, "ari": ari}, records)["lone"]
    assert group.names == ("ari", "lone") and "ARI windows and renewal times" in group.why
    assert NOW + 5 * HOUR - timedelta(hours=14.4) <= group.at <= NOW + 5 * HOUR


def test_a_window_already_over_takes_along_the_open_ones() -> None:
    """A window over (the CA wants it now; drawn at the fetch) groups with certificates whose
    window has opened, not with those whose window opens later."""
    certs = {n: cert(n, -60 * DAY) for n in ("revoked", "open", "later")}
    records = {
        "revoked": window(certs["revoked"], -3 * HOUR, -2 * HOUR, -HOUR),
        "open": window(certs["open"], -5 * HOUR, 5 * HOUR, 4 * HOUR),
        "later": window(certs["later"], 2 * HOUR, 5 * HOUR, 4 * HOUR),
    }
    groups = renewal_groups(certs, records)
    assert groups["revoked"].names == ("open", "revoked") and groups["revoked"].at <= NOW
    assert groups["later"].names == ("later",)


spans = st.lists(
    st.tuples(st.integers(0, 1000), st.integers(0, 200), st.integers(0, 100), st.booleans()).map(
        lambda t: (
            NOW + timedelta(minutes=t[0]),
            NOW + timedelta(minutes=t[0] + t[1]),
            t[2] / 100,
            t[3],
        )
    ),
    min_size=1,
    max_size=12,
)


@given(spans)
def test_every_time_lies_in_every_members_span(
    drawn: list[tuple[datetime, datetime, float, bool]],
) -> None:
    """Whatever the spans: each is in exactly one group, and each group's time lies between
    every member's start and end."""
    made = [
        Span(f"c{i}", start, end, start + (end - start) * share, ari, f"id{i}")
        for i, (start, end, share, ari) in enumerate(drawn)
    ]
    groups = group_spans(made)
    assert sorted(n for g in groups for n in g.names) == sorted(s.name for s in made)
    by_name = {s.name: s for s in made}
    for group in groups:
        for name in group.names:
            assert by_name[name].start <= group.at <= by_name[name].end


def plan_at(
    now: datetime, certs: dict[str, StoredCert], records: dict[str, AriRecord]
) -> dict[str, tuple[Action, str, str]]:
    """The plan for SNI certificates of ``certs`` at ``now``: action, reason, replaces."""
    groups = tuple(NameGroup(n, (n,), server=i == 0) for i, n in enumerate(certs))
    verdicts = {n: Verdict(n, True, "ok") for n in certs}
    plan = make_plan(
        groups, verdicts, certs, shape=Shape(sni=True), force=False, now=now, ari=records
    )
    return {c.spec.name: (c.action, c.reason, c.replaces) for c in plan.certs}


def test_the_plan_renews_the_group_in_one_cycle_with_replaces() -> None:
    """At the group's time every member is renewed, those pulled forward with ``replaces``
    (inside their windows: still ARI renewals); a moment before, none is."""
    certs = {n: cert(n, -60 * DAY) for n in ("a.test", "b.test", "c.test")}
    records = {
        "a.test": window(certs["a.test"], 1 * HOUR, 10 * HOUR, 9 * HOUR),
        "b.test": window(certs["b.test"], 2 * HOUR, 12 * HOUR, 11 * HOUR),
        "c.test": window(certs["c.test"], 3 * HOUR, 8 * HOUR, 7 * HOUR),
    }
    at = renewal_groups(certs, records)["a.test"].at
    before = plan_at(at - timedelta(seconds=1), certs, records)
    assert {a for a, _, _ in before.values()} == {Action.KEEP}
    assert "together with b.test, c.test" in before["a.test"][1]
    due = plan_at(at, certs, records)
    assert {n: (a, r) for n, (a, _, r) in due.items()} == {
        n: (Action.RENEW, c.cert_id) for n, c in certs.items()
    }
    assert "together with a.test, c.test" in due["b.test"][1]


def test_the_wake_up_is_the_groups_time() -> None:
    """The daemon wakes at the group's time, not at a member's own earlier draw."""
    certs = {n: cert(n, -60 * DAY) for n in ("a.test", "b.test")}
    records = {
        "a.test": window(certs["a.test"], 1 * HOUR, 10 * HOUR, 2 * HOUR),  # own draw: 2 h
        "b.test": window(certs["b.test"], 5 * HOUR, 12 * HOUR, 11 * HOUR),
    }
    at = renewal_groups(certs, records)["a.test"].at
    assert at >= NOW + 5 * HOUR
    state = State(certs={n: CertLedger(ari=r) for n, r in records.items()})
    groups = tuple(NameGroup(n, (n,), server=i == 0) for i, n in enumerate(certs))
    verdicts = {n: Verdict(n, True, "ok") for n in certs}
    plan = make_plan(
        groups, verdicts, certs, shape=Shape(sni=True), force=False, now=NOW, ari=records
    )
    report = Report(Outcome.OK, plan, stored=certs, state=state)
    pacing = Pacing(DAY, HOUR, HOUR, (), HOUR)
    wake = next_wake(report, pacing, NOW)
    assert wake.seconds == (at - NOW).total_seconds()
    assert wake.reason.startswith("renewal of a.test, b.test together")
    alone = next_wake(report, Pacing(DAY, HOUR, HOUR, (), HOUR, coalesce=OFF), NOW)
    assert alone.seconds == 2 * 3600


def test_a_certificate_waiting_for_its_group_still_has_its_window_fetched() -> None:
    """Past its own draw but inside its window (waiting for the group's time) the window is
    still fetched on its schedule, so a revocation is seen; after the window, never."""
    c = cert("a", -60 * DAY)
    record = window(c, -2 * HOUR, 5 * HOUR, -HOUR)  # drawn an hour ago
    assert poll_due(c.cert_id, c.not_before, c.not_after, record, NOW) == record.next_poll
    after = NOW + 6 * HOUR
    assert poll_due(c.cert_id, c.not_before, c.not_after, record, after) is None


@pytest.mark.parametrize(
    ("value", "rules"),
    [
        (None, Coalesce()),
        ("10%", Coalesce()),
        ("25%", Coalesce(share=0.25)),
        ("6h", Coalesce(fixed=6 * HOUR)),
        ("0", Coalesce(fixed=timedelta(0))),
    ],
)
def test_acme_coalesce_reaches_the_plan_and_the_wake_up(value: str | None, rules: Coalesce) -> None:
    """ACME_COALESCE (default 10 % of the lifetime, at most a day) reaches both policies."""
    env = {"MAILCOW_HOSTNAME": "mail.example.org"} | ({"ACME_COALESCE": value} if value else {})
    settings = load_settings(env)
    assert cycle_policy(settings).coalesce == daemon_policy(settings).coalesce == rules


@pytest.mark.parametrize("value", ["x", "51%", "8d", "-1%", "%", "ten%"])
def test_acme_coalesce_refuses_what_it_cannot_read(value: str) -> None:
    """A bad ACME_COALESCE is one message naming the setting and what is valid."""
    with pytest.raises(ValueError, match="share of the lifetime from 0% to 50%"):
        parse_coalesce(value)
    with pytest.raises(ConfigError) as info:
        load_settings({"MAILCOW_HOSTNAME": "mail.example.org", "ACME_COALESCE": value})
    assert "ACME_COALESCE" in str(info.value).upper() and "0% to 50%" in str(info.value)


def test_a_large_group_is_named_by_its_first_members_and_a_count() -> None:
    """A group of 10,001 certificates issued together is named by at most ``most`` members and
    how many more, less the certificate the line is about (the quiet cycle at 10,000 domains
    names the group once per certificate: never all of it)."""
    at = datetime(2026, 12, 6, tzinfo=UTC)
    names = tuple(f"d{i:05d}.test" for i in range(10_001))
    group = RenewalGroup(names, at, at, at, "their ARI windows overlap")
    assert group.named(but="d00001.test") == "d00000.test, d00002.test, d00003.test and 9997 more"
    assert group.named(but="d05000.test", most=2) == "d00000.test, d00001.test and 9998 more"
    assert group.named(most=20).count(", ") == 19 and group.named(most=20).endswith("9981 more")
    pair = RenewalGroup(("a.test", "b.test"), at, at, at, "x")
    assert (pair.named(but="a.test"), pair.named()) == ("b.test", "a.test, b.test")
