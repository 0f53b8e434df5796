"""Issue #14 must-show 3, in-process: a CA that answers a renewal with a wrong certificate, over
many cycles of an injected clock, with the real ``AcmeIssuer`` (``FakeCA`` behind the network
object) and the real volume. The good certificate stays, byte for byte, and stays the default;
the failure backs off; the names are not ordered again every cycle."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from acme import messages
from josepy.jwa import JWASignature
from josepy.jwk import JWK
from structlog.testing import capture_logs

from acme_sidecar.adapters.acme import AcmeIssuer, AcmeNetwork
from acme_sidecar.core.report import Outcome
from acme_sidecar.shell.cycle import guarded_cycle
from acme_sidecar.shell.gather import Deps
from tests.unit import fake_chain
from tests.unit.fake_chain import Dishonest
from tests.unit.fakes import World, cycle_policy
from tests.unit.test_acme_adapter import CA, FakeCA, FakeNetwork, NullResponder

DAY = 86400


def acme_deps(w: World, ca: FakeCA) -> Deps:
    """The world's fakes with the real ACME issuer talking to ``ca`` on the world's clock."""

    def issuer(account_pem: bytes) -> AcmeIssuer:
        def network(
            key: JWK, alg: JWASignature, account: messages.RegistrationResource | None
        ) -> AcmeNetwork:
            return FakeNetwork(ca, key, alg=alg, account=account)

        return AcmeIssuer(
            directory_url=f"{CA}/dir",
            account_pem=account_pem,
            webroot=w.root,
            network_factory=network,
            responders=NullResponder,
            clock=w.clock,
        )

    return replace(w.deps(), issuer=issuer)


def volume(root: Path) -> dict[str, bytes]:
    """Every certificate and key file of the volume (the top-level pair included)."""
    files = [*root.glob("*.pem"), *root.glob("*/*.pem")]
    return {str(p.relative_to(root)): p.read_bytes() for p in files if "acme" not in p.parts}


@pytest.mark.parametrize(
    ("answer", "hours", "per_certificate"),
    [
        (fake_chain.other_names("attacker.example"), 24, 6),  # at 0, 0.5, 1.5, 3.5, 7.5, 15.5 h
        (fake_chain.expired, 2, 3),  # at 0, 0.5, 1.5 h
        (fake_chain.intermediate_first, 2, 3),
        (fake_chain.another_key, 2, 3),
    ],
    ids=["other names", "expired", "out of order", "another key"],
)
def test_a_wrong_renewal_keeps_the_good_certificate_and_backs_off(
    tmp_path: Path, answer: Dishonest, hours: int, per_certificate: int
) -> None:
    """After a good first cycle, the CA answers every renewal wrongly. Cycles every 5 minutes
    (a day: 288 cycles): the volume stays byte-identical (nothing deployed again), each cycle
    with an order says failed, each certificate is ordered once until its 30-minute back-off
    ends, then at doubling intervals (6 orders in the day, not 288)."""
    w = World(tmp_path / "ssl")
    ca = FakeCA(clock=w.clock)
    policy, deps = cycle_policy(), acme_deps(w, ca)
    first = guarded_cycle(policy, deps)
    assert first.outcome is Outcome.OK and first.issued == 4, first
    good, deploys, certs = volume(w.root), len(w.services.calls), len(ca.new_orders)
    assert certs == 4 and "cert.pem" in good and len(good) == 10  # 4 directories + default

    ca.answer = answer
    w.clock.advance(61 * DAY)  # 90-day certificates: due for renewal, still valid
    state, orders, failed_cycles = first.state, [], 0
    with capture_logs() as logs:
        for _ in range(hours * 12):
            report = guarded_cycle(policy, deps, state)
            state = report.state
            orders.append(len(ca.new_orders) - certs)
            failed_cycles += report.outcome is Outcome.FAILED
            assert volume(w.root) == good
            w.clock.advance(300)

    assert orders[:6] == [4] * 6  # cycles at 0 .. 25 minutes: the first failure waits
    assert orders[6] == 8  # the 30-minute back-off ended
    assert orders[-1] == 4 * per_certificate
    rejected = [e for e in logs if e["event"] == "cert.rejected"]
    assert len(rejected) == orders[-1]  # one line per refused certificate
    assert failed_cycles == per_certificate  # a cycle that refused one is not ok
    assert len(w.services.calls) == deploys  # the good certificates were never deployed again
    assert all(c.failures == per_certificate for c in state.certs.values())
    assert all(c.unstored == "" for c in state.certs.values())


def test_an_honest_answer_after_the_back_off_is_stored(tmp_path: Path) -> None:
    """When the CA answers correctly again, the next order after the back-off is stored."""
    w = World(tmp_path / "ssl")
    ca = FakeCA(clock=w.clock)
    policy, deps = cycle_policy(), acme_deps(w, ca)
    state = guarded_cycle(policy, deps).state
    good = volume(w.root)
    ca.answer = fake_chain.other_names("attacker.example")
    w.clock.advance(61 * DAY)
    state = guarded_cycle(policy, deps, state).state
    assert volume(w.root) == good
    ca.answer = None
    w.clock.advance(31 * 60)
    report = guarded_cycle(policy, deps, state)
    assert report.outcome is Outcome.OK and report.issued == 4
    renewed = volume(w.root)
    assert set(renewed) == set(good) and all(renewed[f] != good[f] for f in good if "cert" in f)


def test_the_ledger_says_why(tmp_path: Path) -> None:
    """The refused certificate's ledger keeps the reason (``status`` shows it)."""
    w = World(tmp_path / "ssl")
    ca = FakeCA(clock=w.clock)
    policy, deps = cycle_policy(), acme_deps(w, ca)
    state = guarded_cycle(policy, deps).state
    ca.answer = fake_chain.other_names("attacker.example")
    w.clock.advance(61 * DAY)
    report = guarded_cycle(policy, deps, state)
    errors = {c.last_error for c in report.state.certs.values()}
    assert len(errors) == 4
    assert all(e.startswith("the CA's certificate was refused: ") for e in errors)
    assert all("is for other names: attacker.example" in e for e in errors)
