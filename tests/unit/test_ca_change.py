"""A change of CA (``DIRECTORY_URL`` or ``LE_STAGING``) re-issues every certificate of the old
CA once, within the budget (issue #15): the rule (``core.ca``), the decision with small fakes and
an injected clock, the ledger's record, and whole cycles with the fake issuer."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from acme_sidecar.config.ca_settings import LE_PRODUCTION, LE_STAGING
from acme_sidecar.config.policies import cycle_policy as settings_policy
from acme_sidecar.config.settings import load_settings
from acme_sidecar.core.ari import AriRecord
from acme_sidecar.core.budget import Limits
from acme_sidecar.core.ca import directory_change, same_directory
from acme_sidecar.core.decide import Decision, DecisionPolicy, Facts, decide
from acme_sidecar.core.ledger import CertLedger, State
from acme_sidecar.core.model import Action, DomainRows, Issued, NameGroup, StoredCert, Verdict
from acme_sidecar.core.plan import Shape
from acme_sidecar.core.settle import RetryPolicy, begin_orders, settle_result, tidy
from acme_sidecar.shell.cycle import guarded_cycle
from tests.unit.fakes import World, cycle_policy

A = "https://ca-a.test/dir"
B = "https://ca-b.test/dir"
HOST = "mail.example.test"
NOW = datetime(2027, 3, 1, 12, tzinfo=UTC)
STAGING_ISSUER = "CN=(STAGING) Ersatz Edamame E1,O=(STAGING) Let's Encrypt,C=US"
LE_ISSUER = "CN=E5,O=Let's Encrypt,C=US"


# --- the rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recorded", "issuer", "directory", "expected"),
    [
        (A, LE_ISSUER, A, None),
        (A + "/", LE_ISSUER, "HTTPS://CA-A.test/dir", None),
        (A, LE_ISSUER, B, f"issued by another CA ({A} -> {B})"),
        (A, STAGING_ISSUER, A, None),  # a record wins over the issuer's name
        ("", LE_ISSUER, B, None),  # unknown: the configured CA's
        ("", "CN=Pebble Intermediate CA 1a2b3c", B, None),
        ("", STAGING_ISSUER, LE_STAGING, None),
        ("", STAGING_ISSUER, LE_PRODUCTION,
         f"issued by another CA (Let's Encrypt staging, {STAGING_ISSUER} -> {LE_PRODUCTION})"),
        (A, LE_ISSUER, "", None),  # no CA configured (a test policy): nothing to compare
    ],
)  # fmt: skip
def test_directory_change(recorded: str, issuer: str, directory: str, expected: str | None) -> None:
    """Another recorded CA is a change; an unknown one only when the issuer's name shows Let's
    Encrypt staging while staging is not configured."""
    assert directory_change(recorded, issuer, directory) == expected


def test_same_directory_compares_scheme_and_host_without_case() -> None:
    """Case of scheme and host and a trailing slash do not make another CA; the path does."""
    assert same_directory("https://CA-A.test/dir/", A)
    assert not same_directory("https://ca-a.test/other", A)


# --- the decision --------------------------------------------------------------------------


def stored(name: str, issuer: str = "CN=Pebble Intermediate CA 1a2b3c") -> StoredCert:
    """A certificate for ``name`` alone, issued 10 days before NOW for 90 days."""
    return StoredCert(
        name=name,
        domains=(name,),
        not_before=NOW - timedelta(days=10),
        not_after=NOW + timedelta(days=80),
        serial=1,
        issuer=issuer,
        key_matches=True,
        cert_id=f"id-{name}",
    )


def facts(domains: list[str], state: State, issuer: str = "CN=Pebble") -> Facts:
    """SNI facts: the hostname and one certificate per domain, all stored, all valid."""
    names = [HOST, *domains]
    groups = (
        NameGroup("server", (HOST,), server=True),
        *(NameGroup(d, (d,)) for d in domains),
    )
    return Facts(
        rows=DomainRows(tuple(domains)),
        groups=groups,
        stored={n: stored(n, issuer) for n in names},
        state=state,
        checked={n: Verdict(n, True, "ok") for n in names},
    )


def recorded(names: list[str], directory: str) -> State:
    """A ledger that records ``directory`` for every certificate in ``names``."""
    return State(certs={n: CertLedger(directory=directory) for n in names})


def policy(directory: str, limits: Limits | None = None) -> DecisionPolicy:
    return DecisionPolicy(shape=Shape(sni=True, directory=directory), limits=limits or Limits())


def actions(decision: Decision) -> dict[Action, int]:
    out: dict[Action, int] = {}
    for cert in decision.plan.certs:
        out[cert.action] = out.get(cert.action, 0) + 1
    return out


def test_every_certificate_of_the_old_ca_is_renewed_with_the_reason() -> None:
    """Certificates recorded as issued from A are all renewed when B is configured, each with
    "due: issued by another CA (A -> B)", never as a replacement of the old certificate."""
    domains = ["a.test", "b.test"]
    state = recorded([HOST, *domains], A)
    ari = AriRecord(cert_id=f"id-{HOST}", next_poll=NOW + timedelta(hours=6),
                    start=NOW - timedelta(days=1), end=NOW + timedelta(days=1))  # fmt: skip
    state = replace(state, certs={**state.certs, HOST: CertLedger(directory=A, ari=ari)})
    decision = decide(facts(domains, state), policy(B), NOW)
    assert len(decision.plan.certs) == 3
    for cert in decision.plan.certs:
        assert cert.action is Action.RENEW
        assert cert.reason == f"due: issued by another CA ({A} -> {B})"
        assert cert.replaces == ""
    assert decision.other_ca == tuple(sorted([HOST, *domains]))


def test_a_certificate_of_the_configured_ca_is_kept() -> None:
    """Recorded as issued from the configured CA: kept, nothing ordered, no other_ca."""
    domains = ["a.test", "b.test"]
    decision = decide(facts(domains, recorded([HOST, *domains], B)), policy(B), NOW)
    assert actions(decision) == {Action.KEEP: 3} and decision.other_ca == ()


def test_an_unknown_ca_is_the_configured_one_and_is_recorded() -> None:
    """No record (a ledger from before): kept as the configured CA's, and the decision's ledger
    records it, so that a later change is seen."""
    decision = decide(facts(["a.test"], State()), policy(B), NOW)
    assert actions(decision) == {Action.KEEP: 2} and decision.other_ca == ()
    assert {n: c.directory for n, c in decision.state.certs.items()} == {HOST: B, "a.test": B}
    later = decide(facts(["a.test"], decision.state), policy(A), NOW)
    assert actions(later) == {Action.RENEW: 2}


def test_an_unknown_staging_certificate_is_renewed_for_production() -> None:
    """No record, but the issuer is Let's Encrypt staging while production is configured: renewed
    (and not recorded as production's)."""
    decision = decide(facts(["a.test"], State(), STAGING_ISSUER), policy(LE_PRODUCTION), NOW)
    assert actions(decision) == {Action.RENEW: 2}
    assert all("Let's Encrypt staging" in c.reason for c in decision.plan.certs)
    assert all(not c.directory for c in decision.state.certs.values())


def test_a_change_of_300_certificates_is_spread_over_cycles_by_the_budget() -> None:
    """300 certificates of A, B configured, Let's Encrypt's limits: the first cycle orders 270
    (300 orders per 3 hours less the margin), the 30 others wait with the reason and the hold;
    3 hours later they are ordered; after that nothing is ordered again."""
    domains = [f"d{i:03}.test" for i in range(299)]
    state = recorded([HOST, *domains], A)
    now, retry = NOW, RetryPolicy(jitter=0.0)
    ordered: list[int] = []
    for _ in range(3):
        decision = decide(facts(domains, state), policy(B), now)
        todo = decision.plan.to_order
        ordered.append(len(todo))
        if ordered == [270]:
            waits = [c for c in decision.plan.certs if c.action is Action.WAIT]
            assert len(waits) == 30
            for cert in waits:
                assert cert.reason.startswith(f"due: issued by another CA ({A} -> {B}); ")
                assert "orders in 3 hours (the CA allows 300)" in cert.reason
                assert cert.renew_at == now + timedelta(hours=3)
        state = begin_orders(decision.state, [c.spec.name for c in todo], now)
        for cert in todo:
            result = Issued(cert.spec, b"chain")
            state = settle_result(state, result, now, retry, directory=B)
        state = tidy(state, now, {c.spec.name for c in decision.plan.certs})
        now += timedelta(hours=3)
    assert ordered == [270, 30, 0]
    assert {c.directory for c in state.certs.values()} == {B}


def test_the_weekly_limit_per_set_of_names_still_holds() -> None:
    """A certificate issued 4 times this week for the same names (5 allowed, less the margin)
    waits out the week even though it is from another CA."""
    issued = tuple((NOW - timedelta(days=d), "a.test") for d in (1, 2, 3, 4))
    state = recorded([HOST], A)
    state = replace(state, certs={**state.certs, "a.test": CertLedger(issued=issued, directory=A)})
    decision = decide(facts(["a.test"], state), policy(B), NOW)
    [wait] = [c for c in decision.plan.certs if c.spec.name == "a.test"]
    assert wait.action is Action.WAIT
    assert "issued by another CA" in wait.reason and "for exactly these names" in wait.reason
    assert wait.renew_at == NOW - timedelta(days=4) + timedelta(days=7)


# --- the ledger and the settings -----------------------------------------------------------


def test_the_ledger_keeps_the_directory() -> None:
    """The CA a certificate was issued from survives the JSON form; a ledger written before
    the record existed reads as unknown."""
    state = State(certs={"a.test": CertLedger(directory=A), "b.test": CertLedger()})
    back = State.from_json(state.to_json())
    assert back.cert("a.test").directory == A and back.cert("b.test").directory == ""
    assert '"directory"' not in State(certs={"b.test": CertLedger()}).to_json()


@pytest.mark.parametrize(
    ("values", "expected"),
    [({}, LE_PRODUCTION), ({"LE_STAGING": "y"}, LE_STAGING), ({"DIRECTORY_URL": B}, B)],
)
def test_the_shape_names_the_configured_directory(values: dict[str, str], expected: str) -> None:
    """DIRECTORY_URL and LE_STAGING reach the cycle as the directory certificates come from."""
    settings = load_settings({"MAILCOW_HOSTNAME": HOST, **values})
    assert settings_policy(settings).shape.directory == expected


# --- whole cycles --------------------------------------------------------------------------


def test_cycles_re_issue_each_certificate_of_the_old_ca_once(tmp_path: Path) -> None:
    """Cycles against A issue 4 certificates; switched to B, the next cycle re-issues each once
    (one ca.changed line, one cert.renew line each) and the one after orders nothing."""
    w = World(tmp_path / "ssl")
    deps = w.deps()
    at_a = cycle_policy()
    at_a = replace(at_a, shape=replace(at_a.shape, directory=A))
    at_b = replace(at_a, shape=replace(at_a.shape, directory=B))
    first = guarded_cycle(at_a, deps)
    names = sorted(w.store.certs.names())
    assert len(names) == 4 and len(w.issuer.orders) == 4
    assert {first.state.cert(n).directory for n in names} == {A}
    w.clock.advance(600)
    with capture_logs() as logs:
        switched = guarded_cycle(at_b, deps, first.state)
    assert switched.issued == 4 and sorted(n for _, n in w.issuer.orders[4:]) == names
    [line] = [e for e in logs if e["event"] == "ca.changed"]
    assert (line["certificates"], line["ordered"], line["waiting"]) == (4, 4, None)
    renewals = [e for e in logs if e["event"] == "cert.renew"]
    assert sorted(e["certificate"] for e in renewals) == names
    assert all(e["reason"] == f"due: issued by another CA ({A} -> {B})" for e in renewals)
    assert {switched.state.cert(n).directory for n in names} == {B}
    w.clock.advance(600)
    with capture_logs() as logs:
        again = guarded_cycle(at_b, deps, switched.state)
    assert len(w.issuer.orders) == 8 and again.issued == 0
    assert [e for e in logs if e["event"] == "ca.changed"] == []
