"""The daemon's wake-up after a cycle that stored certificates (issue #9: one-minute
certificates were left expired because the daemon then slept the daily check)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from acme_sidecar.core.budget import Limits
from acme_sidecar.core.report import Outcome
from acme_sidecar.shell.cycle import guarded_cycle, next_sleep
from tests.unit.fakes import World, cycle_policy, daemon_policy


def test_the_daemon_wakes_when_fresh_certificates_are_due(tmp_path: Path) -> None:
    """A cycle that issued every certificate sleeps until the first of them is due (half of a
    one-day lifetime), not the daily check; ten such wake-ups renew each one ten times."""
    w = World(tmp_path / "ssl")
    w.issuer.days = 1
    policy = replace(cycle_policy(), limits=Limits.off())  # 20 a week: over Let's Encrypt's 5
    pacing, deps = daemon_policy(), w.deps()
    report = guarded_cycle(policy, deps)
    assert report.issued == 4
    for _ in range(10):
        sleep = next_sleep(report, pacing, w.clock())
        assert 12 * 3600 - 60 <= sleep <= 12 * 3600  # half of the lifetime, from 1 minute ago
        w.clock.advance(sleep)
        report = guarded_cycle(policy, deps, report.state)
        assert report.outcome is Outcome.OK and report.issued == 4
    assert all(w.issuer.count(n) == 11 for n in w.store.certs.names())
