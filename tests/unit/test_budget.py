"""The rate-limit budget (issue #16): whose limits it keeps (``ACME_RATE_LIMITS=auto``), ARI
renewals exempt, urgent certificates ordered past it, registered domains by the public suffix
list, a wake-up never later than a held certificate's urgent time, and ``status`` showing it."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from acme_sidecar.config.policies import rate_limits, registered_domain
from acme_sidecar.config.settings import load_settings
from acme_sidecar.core.ari import AriRecord
from acme_sidecar.core.budget import HoldRules, Limits, last_two_labels, urgent_at, usage
from acme_sidecar.core.ledger import CertLedger, State
from acme_sidecar.core.model import Action, CertSpec, NameGroup, StoredCert, Verdict
from acme_sidecar.core.plan import Shape, make_plan
from acme_sidecar.core.report import Outcome, Report
from acme_sidecar.core.wake import MIN_SLEEP, Pacing, next_wake
from acme_sidecar.shell.cycle import guarded_cycle, next_sleep
from acme_sidecar.shell.status import collect, render
from tests.unit.fakes import World, cycle_policy, daemon_policy

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
HOST = "mail.example.org"
NAMES = (HOST, "webmail.example.org")
GROUPS = (NameGroup(HOST, NAMES, server=True),)
VERDICTS = {n: Verdict(n, True, "ok") for n in NAMES}
CID = "aki.serial"
LE = "https://acme-v02.api.letsencrypt.org/directory"
PRIVATE = "https://ca.internal.example:9000/acme/acme/directory"


def limits_for(directory: str) -> Limits:
    """The budget ``ACME_RATE_LIMITS=auto`` (the default) keeps for ``directory``."""
    env = {"MAILCOW_HOSTNAME": HOST, "DIRECTORY_URL": directory}
    return rate_limits(load_settings(env))


def stored(age: timedelta, life: timedelta = 90 * DAY) -> StoredCert:
    """The server certificate, issued ``age`` ago."""
    born = NOW - age
    return StoredCert(HOST, NAMES, born, born + life, 7, "CN=CA", True, NAMES, cert_id=CID)


def ledger(*, ari: bool, backoff: bool = False) -> CertLedger:
    """Four certificates for exactly these names this week (Let's Encrypt allows five, the
    budget four); ``ari``: the CA's window asks for the renewal now (an order with
    ``replaces``); ``backoff``: the CA's Retry-After runs for another hour."""
    issued = tuple((NOW - timedelta(hours=h), " ".join(NAMES)) for h in (30, 20, 10, 5))
    record = AriRecord(CID, NOW + DAY, NOW - DAY, NOW - timedelta(hours=1), NOW - DAY)
    return CertLedger(
        issued=issued,
        ari=record if ari else None,
        next_attempt=NOW + timedelta(hours=1) if backoff else None,
        failures=1 if backoff else 0,
        last_error="rateLimited: retry after 1 hour" if backoff else "",
    )


DUE = timedelta(days=61)  # the lifetime rule renews a 90-day certificate at day 60
URGENT = timedelta(days=84)  # in its last 7 days (⅙ of 90 days is 15: the smaller counts)
EXPIRED = timedelta(days=91)


@pytest.mark.parametrize(
    ("directory", "ari", "age", "backoff", "action", "past"),
    [
        # Let's Encrypt's directory: its limits hold a plain renewal ...
        (LE, False, DUE, False, Action.WAIT, ""),
        # ... not an ARI renewal (replaces): exempt
        (LE, True, DUE, False, Action.RENEW, "exempt"),
        # ... not an urgent one, nor an expired one: ordered past the budget
        (LE, False, URGENT, False, Action.RENEW, "urgent since"),
        (LE, False, EXPIRED, False, Action.RENEW, "urgent since"),
        (LE, True, URGENT, False, Action.RENEW, "exempt"),
        # the CA's Retry-After holds all of them: urgent at most once per Retry-After
        (LE, True, URGENT, True, Action.WAIT, ""),
        (LE, False, EXPIRED, True, Action.WAIT, ""),
        # any other CA: no limits (auto), only the back-off
        (PRIVATE, False, DUE, False, Action.RENEW, ""),
        (PRIVATE, True, DUE, False, Action.RENEW, ""),
        (PRIVATE, False, URGENT, False, Action.RENEW, ""),
        (PRIVATE, False, URGENT, True, Action.WAIT, ""),
    ],
)
def test_the_budget_table(
    directory: str, ari: bool, age: timedelta, backoff: bool, action: Action, past: str
) -> None:
    """Let's Encrypt's directory or not (auto), replaces or not, urgent or not, back-off or
    not: whether a due renewal is ordered, and why it goes past a limit that would hold it."""
    state = State(certs={HOST: ledger(ari=ari, backoff=backoff)})
    rules = HoldRules(state, limits_for(directory))
    record = state.cert(HOST).ari
    plan = make_plan(
        GROUPS,
        VERDICTS,
        {HOST: stored(age)},
        shape=Shape(directory=directory),
        force=False,
        now=NOW,
        hold_rules=rules,
        ari={HOST: record} if record else None,
    )
    cert = plan.certs[0]
    assert (cert.action, cert.replaces) == (action, CID if ari and action is Action.RENEW else "")
    assert past in cert.past_budget and bool(past) == bool(cert.past_budget), cert.past_budget
    if past:  # the line says what the budget would have said
        assert "4 certificates for exactly these names this week" in cert.past_budget
    if action is Action.WAIT and not backoff:
        assert (
            "exactly these names" in cert.reason
            and cert.renew_at == NOW - timedelta(hours=30) + 7 * DAY
        )


@pytest.mark.parametrize(
    ("life", "left"),
    [
        (timedelta(seconds=60), timedelta(seconds=10)),  # Pebble's test certificates
        (6 * DAY, DAY),  # Let's Encrypt's shortlived
        (42 * DAY, 7 * DAY),  # where ⅙ and 7 days meet
        (90 * DAY, 7 * DAY),  # classic: 7 days, not 15
        (365 * DAY, 7 * DAY),
    ],
)
def test_the_urgent_window(life: timedelta, left: timedelta) -> None:
    """A certificate is urgent in its last ⅙ of the lifetime, at most its last 7 days."""
    assert urgent_at(NOW, NOW + life) == NOW + life - left


def test_public_suffix_grouping() -> None:
    """``a.example.co.uk`` and ``b.example.co.uk`` count together under ``example.co.uk``;
    ``example.co.uk`` and ``other.co.uk`` count apart (the last two labels lumped them all
    under ``co.uk``)."""
    assert registered_domain("a.example.co.uk") == registered_domain("b.example.co.uk")
    assert registered_domain("a.example.co.uk") == "example.co.uk"
    assert registered_domain("other.co.uk") == "other.co.uk"
    assert registered_domain("*.mail.example.org") == "example.org"
    assert registered_domain("mail.example.test") == "example.test"  # no listed suffix
    issued = {
        n: CertLedger(issued=((NOW - DAY, n),))
        for n in ("a.example.co.uk", "b.example.co.uk", "example.co.uk", "other.co.uk")
    }
    state = State(certs=issued)
    psl = Limits(per_domain_per_week=3, domain_of=registered_domain)

    def per_domain(name: str, limits: Limits) -> dict[str, tuple[int, int]]:
        found = usage(CertSpec(name, (name,)), state, NOW, limits)
        return {u.what: (u.used, u.left) for u in found if u.what.endswith("per week")}

    assert per_domain("c.example.co.uk", psl)["certificates for example.co.uk per week"] == (3, 0)
    assert per_domain("www.other.co.uk", psl)["certificates for other.co.uk per week"] == (1, 1)
    lumped = Limits(per_domain_per_week=3, domain_of=last_two_labels)
    assert per_domain("www.other.co.uk", lumped)["certificates for co.uk per week"] == (4, 0)


def test_registered_domain_needs_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suffix list is tldextract's bundled snapshot: no socket is opened for it."""
    import socket

    from acme_sidecar.config import policies

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a network connection for the public suffix list")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    policies._suffix_list.cache_clear()
    policies.registered_domain.cache_clear()
    assert policies.registered_domain("x.y.example.co.uk") == "example.co.uk"


def test_limits_off_count_nothing() -> None:
    """``off`` (and auto for another CA) keeps no limit: nothing to count or show."""
    state = State(certs={HOST: ledger(ari=False)})
    assert usage(CertSpec(HOST, NAMES), state, NOW, Limits.off()) == []
    assert limits_for(PRIVATE) == Limits.off()


def held(cert: StoredCert, state: State) -> Report:
    """The report of a cycle at ``NOW`` whose plan held ``cert`` under Let's Encrypt's
    limits (``state``: its ledger)."""
    plan = make_plan(
        GROUPS,
        VERDICTS,
        {HOST: cert},
        shape=Shape(),
        force=False,
        now=NOW,
        hold_rules=HoldRules(state, limits_for(LE)),
    )
    assert plan.certs[0].action is Action.WAIT
    return Report(Outcome.OK, plan, stored={HOST: cert}, state=state)


def test_a_held_certificate_wakes_the_daemon_when_urgent() -> None:
    """A renewal the budget holds for a day wakes the daemon at its urgent time (10 s before
    a 60-second certificate expires), not at the hold's end nor the daily check."""
    cert = stored(timedelta(seconds=45), life=timedelta(seconds=60))
    report = held(cert, State(certs={HOST: ledger(ari=False)}))
    pacing = Pacing(DAY, timedelta(minutes=1), timedelta(hours=1), (), timedelta(hours=1))
    wake = next_wake(report, pacing, NOW)
    assert wake.seconds == 5.0 and "urgent" in wake.reason  # born 45 s ago: urgent at 50 s
    # the cycle took 6 s: it became urgent meanwhile, so the next cycle runs at once
    late = next_wake(report, pacing, NOW + timedelta(seconds=6))
    assert late.seconds == MIN_SLEEP and "urgent" in late.reason, late


def test_a_held_urgent_certificate_waits_for_its_retry_not_in_a_loop() -> None:
    """Held while urgent already (the CA's Retry-After): the wake is the retry time, never at
    once again and again."""
    cert = stored(timedelta(seconds=55), life=timedelta(seconds=60))
    retry = NOW + timedelta(seconds=30)
    waiting = replace(ledger(ari=False), next_attempt=retry, last_error="rateLimited")
    report = held(cert, State(certs={HOST: waiting}))
    pacing = Pacing(DAY, timedelta(minutes=1), timedelta(hours=1), (), timedelta(hours=1))
    wake = next_wake(report, pacing, NOW + timedelta(seconds=1))
    assert wake.seconds == 29.0 and "rateLimited" in wake.reason, wake


def test_expiry_beats_the_budget_over_ten_lifetimes(tmp_path: Path) -> None:
    """Let's Encrypt's limits and no ARI, one-day certificates, ten lifetimes of daemon
    wake-ups: once the week's budget is spent every renewal goes out at its urgent time, each
    with one budget.overridden line, and no certificate is ever left expired."""
    w = World(tmp_path / "ssl")
    w.issuer.lifetime = DAY
    policy = replace(cycle_policy(), limits=Limits())  # Let's Encrypt's limits, forced
    pacing, deps = daemon_policy(), w.deps()
    end = w.clock() + 10 * DAY
    with capture_logs() as logs:
        report = guarded_cycle(policy, deps)
        while w.clock() < end:
            sleep = next_sleep(report, pacing, w.clock())
            certs = w.store.certs.load()
            assert certs and min(c.not_after for c in certs.values()) > w.clock()
            assert w.clock() + timedelta(seconds=sleep) < min(c.not_after for c in certs.values())
            w.clock.advance(sleep)
            report = guarded_cycle(policy, deps, report.state)
            assert report.outcome is Outcome.OK
    overridden = [e for e in logs if e["event"] == "budget.overridden"]
    renewals = {n: w.issuer.count(n) - 1 for n in w.store.certs.names()}
    assert renewals and min(renewals.values()) >= 10, renewals
    # 4 renewals a week fit the budget (the first certificate counts too): the rest are urgent
    assert len(overridden) == sum(renewals.values()) - 3 * len(renewals), len(overridden)
    assert all("ordered past the budget" in e["reason"] for e in overridden)


def test_status_shows_the_budget(tmp_path: Path) -> None:
    """`status` shows each limit kept with what is used and left, and whether the next order
    is counted, urgent (past its urgent time) or exempt (an ARI window for this certificate);
    with no limits kept for the CA, it says so."""
    w = World(tmp_path / "ssl")
    w.issuer.lifetime = DAY
    guarded_cycle(replace(cycle_policy(), limits=Limits()), w.deps())
    state, _ = w.store.ledger.read()
    certs = w.store.certs.load()
    name = "mail.example.test"  # the fakes' hostname
    data = collect(w.store, w.clock(), limits=Limits())
    row = next(r for r in data["certificates"] if r["name"] == name)
    budget = row["budget"]
    assert budget["next_order"] == "counted" and budget["urgent_at"]
    identical = budget["limits"][0]
    assert identical["limit"] == "certificates for exactly these names per week"
    assert (identical["used"], identical["left"], identical["allowed"], identical["ca"]) == (
        1,
        3,
        4,
        5,
    )
    out = io.StringIO()
    render(data, out)
    text = out.getvalue()
    assert "certificates for exactly these names per week: 1 used, 3 left (of 4" in text
    assert "next order: counted against the CA's limits (urgent from " in text

    w.clock.advance(21 * 3600)  # a one-day certificate is urgent from 20 hours on
    urgent = collect(w.store, w.clock(), limits=Limits())
    row = next(r for r in urgent["certificates"] if r["name"] == name)
    assert row["budget"]["next_order"] == "urgent"

    cert = certs[name]
    record = AriRecord(cert.cert_id, w.clock() + DAY, w.clock(), w.clock() + DAY, w.clock())
    assert cert.cert_id  # the fake CA's certificates carry an AKI: ARI applies
    w.store.ledger.save(
        replace(state, certs={**state.certs, name: replace(state.cert(name), ari=record)})
    )
    exempt = collect(w.store, w.clock(), limits=Limits())
    row = next(r for r in exempt["certificates"] if r["name"] == name)
    assert row["budget"]["next_order"] == "exempt"
    out = io.StringIO()
    render(exempt, out)
    assert "next order: exempt from the CA's limits (an ARI renewal: replaces)" in out.getvalue()

    off = collect(w.store, w.clock(), limits=Limits.off())
    row = next(r for r in off["certificates"] if r["name"] == name)
    assert row["budget"] == {
        "limits": [],
        "next_order": "no limits",
        "urgent_at": row["budget"]["urgent_at"],
    }
    out = io.StringIO()
    render(off, out)
    assert "no rate limits kept for this CA" in out.getvalue() and "budget:" not in out.getvalue()
