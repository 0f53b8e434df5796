"""The planner: which certificates exist with which names, and what happens to each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from acme_sidecar.core.ari import lifetime_time as renewal_time
from acme_sidecar.core.budget import HoldRules
from acme_sidecar.core.ledger import CertLedger, State
from acme_sidecar.core.model import Action, NameGroup, StoredCert, Verdict
from acme_sidecar.core.plan import Shape, make_plan, wanted_specs

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
HOST = "mail.example.org"
GROUPS = (
    NameGroup(HOST, (HOST, "webmail.example.org"), server=True),
    NameGroup("a.test", ("autodiscover.a.test", "autoconfig.a.test")),
    NameGroup("b.test", ("autodiscover.b.test", "autoconfig.b.test")),
)


def ok(*names: str) -> dict[str, Verdict]:
    return {n: Verdict(n, True, "ok") for n in names}


def all_ok() -> dict[str, Verdict]:
    return ok(*(n for g in GROUPS for n in g.names))


def stored(name: str, domains: tuple[str, ...], age: timedelta, life: int = 90) -> StoredCert:
    nb = NOW - age
    return StoredCert(name, domains, nb, nb + timedelta(days=life), 1, "CN=x", True, domains)


def test_san_mode_one_cert_hostname_first_rest_sorted() -> None:
    """SAN mode puts every valid name into one certificate, the hostname first."""
    specs = wanted_specs(GROUPS, all_ok(), Shape())
    assert [s.name for s in specs] == [HOST]
    assert specs[0].domains == (
        HOST,
        "autoconfig.a.test",
        "autoconfig.b.test",
        "autodiscover.a.test",
        "autodiscover.b.test",
        "webmail.example.org",
    )


def test_sni_mode_one_cert_per_domain() -> None:
    """SNI mode: the server cert holds hostname and static names; each domain its own."""
    specs = wanted_specs(GROUPS, all_ok(), Shape(sni=True))
    assert [(s.name, s.domains) for s in specs] == [
        (HOST, (HOST, "webmail.example.org")),
        ("autodiscover.a.test", ("autodiscover.a.test", "autoconfig.a.test")),
        ("autodiscover.b.test", ("autodiscover.b.test", "autoconfig.b.test")),
    ]


def test_failed_names_are_left_out() -> None:
    """A name with a failed verdict is not in any certificate."""
    verdicts = all_ok() | {"autoconfig.a.test": Verdict("autoconfig.a.test", False, "no")}
    (spec,) = wanted_specs(GROUPS, verdicts, Shape())
    assert "autoconfig.a.test" not in spec.domains


@pytest.mark.parametrize("limit", [1, 2, 3, 100])
def test_split_never_exceeds_limit(limit: int) -> None:
    """No certificate holds more names than the CA allows, and no name is lost."""
    specs = wanted_specs(GROUPS, all_ok(), Shape(max_names=limit))
    assert all(len(s.domains) <= limit for s in specs)
    assert sorted(n for s in specs for n in s.domains) == sorted(all_ok())
    assert specs[0].domains[0] == HOST


def test_150_names_make_two_certificates() -> None:
    """150 names in SAN mode give two certificates within the 100-name limit."""
    names = tuple(f"autodiscover.d{i:03}.test" for i in range(149))
    groups = (NameGroup(HOST, (HOST,), server=True), NameGroup("x", names))
    specs = wanted_specs(groups, ok(HOST, *names), Shape())
    assert [len(s.domains) for s in specs] == [100, 50]


@pytest.mark.parametrize(
    ("existing", "force", "action"),
    [
        (None, False, Action.ISSUE),
        (stored(HOST, (HOST,), timedelta(days=10)), False, Action.ISSUE),  # names changed
        (None, True, Action.ISSUE),
    ],
)
def test_issue_when_missing_or_names_changed(
    existing: StoredCert | None, force: bool, action: Action
) -> None:
    """A missing certificate or one with other names is issued."""
    have = {HOST: existing} if existing else {}
    plan = make_plan(GROUPS, all_ok(), have, shape=Shape(), force=force, now=NOW)
    assert plan.certs[0].action is action


def _current(age: timedelta, life: int = 90) -> dict[str, StoredCert]:
    spec = wanted_specs(GROUPS, all_ok(), Shape())[0]
    return {HOST: stored(HOST, spec.domains, age, life)}


@pytest.mark.parametrize(
    ("age_days", "life", "force", "action"),
    [
        (10, 90, False, Action.KEEP),
        (59, 90, False, Action.KEEP),
        (60, 90, False, Action.RENEW),  # one third of 90 days left
        (10, 90, True, Action.RENEW),  # force_renew
        (2, 6, False, Action.KEEP),
        (3, 6, False, Action.RENEW),  # short-lived: half the lifetime
    ],
)
def test_renewal_timing(age_days: int, life: int, force: bool, action: Action) -> None:
    """Renew at a third of the lifetime left (half under 10 days) or when forced."""
    plan = make_plan(
        GROUPS,
        all_ok(),
        _current(timedelta(days=age_days), life),
        shape=Shape(),
        force=force,
        now=NOW,
    )
    assert plan.certs[0].action is action


def test_second_run_orders_nothing() -> None:
    """A fresh certificate with the right names means nothing to order."""
    plan = make_plan(
        GROUPS, all_ok(), _current(timedelta(days=1)), shape=Shape(), force=False, now=NOW
    )
    assert plan.to_order == ()


def test_orphans_archived_but_not_when_nothing_valid() -> None:
    """A stored cert no longer wanted is archived; with no valid name nothing is archived."""
    have = _current(timedelta(days=1)) | {
        "old.test": stored("old.test", ("old.test",), timedelta(days=1))
    }
    plan = make_plan(GROUPS, all_ok(), have, shape=Shape(), force=False, now=NOW)
    assert plan.archive == ("old.test",)
    empty = make_plan(GROUPS, {}, have, shape=Shape(), force=False, now=NOW)
    assert empty.archive == () and empty.certs == ()


def test_renewal_time_fractions() -> None:
    """⅔ of a 90-day lifetime, ½ of a 6-day one."""
    assert renewal_time(NOW, NOW + timedelta(days=90)) == NOW + timedelta(days=60)
    assert renewal_time(NOW, NOW + timedelta(days=6)) == NOW + timedelta(days=3)


def test_hostname_failing_blocks_server_cert_not_others() -> None:
    """Without a valid hostname no server certificate is planned and the stored one is kept;
    in SNI mode the domain certificates go on."""
    verdicts = all_ok() | {HOST: Verdict(HOST, False, "no A")}
    have = _current(timedelta(days=1))
    plan = make_plan(GROUPS, verdicts, have, shape=Shape(sni=True), force=False, now=NOW)
    assert [c.spec.name for c in plan.certs] == ["autodiscover.a.test", "autodiscover.b.test"]
    assert plan.archive == () and plan.default_name is None and plan.notes
    san = make_plan(GROUPS, verdicts, have, shape=Shape(), force=False, now=NOW)
    assert san.certs == () and san.archive == ()


def test_hold_turns_an_order_into_wait() -> None:
    """A certificate on hold (back-off, Retry-After, budget) is not ordered before its time."""
    later = NOW + timedelta(hours=2)

    waiting = CertLedger(next_attempt=later, failures=1, last_error="the CA asked to wait")
    holds = HoldRules(State(certs={HOST: waiting}))
    plan = make_plan(GROUPS, all_ok(), {}, shape=Shape(), force=False, now=NOW, hold_rules=holds)
    assert plan.certs[0].action is Action.WAIT and plan.to_order == ()
    assert plan.certs[0].renew_at == later and "the CA asked to wait" in plan.certs[0].reason
    plan = make_plan(GROUPS, all_ok(), {}, shape=Shape(), force=False, now=later)
    assert plan.certs[0].action is Action.ISSUE


def test_force_skips_certificates_already_reissued() -> None:
    """Under force_renew a certificate re-issued since the flag appeared is kept, not renewed."""
    have = _current(timedelta(days=1))
    done = make_plan(GROUPS, all_ok(), have, shape=Shape(), force=True, now=NOW, force_done={HOST})
    assert done.certs[0].action is Action.KEEP
    todo = make_plan(GROUPS, all_ok(), have, shape=Shape(), force=True, now=NOW)
    assert todo.certs[0].action is Action.RENEW
