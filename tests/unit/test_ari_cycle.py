"""The cycle with ARI and the wake-up, in-process: fakes of the outside systems (a fake CA
issuing real certificates with an AKI, a fake ``renewalInfo``) and a real volume."""

from __future__ import annotations

import io
from collections.abc import MutableMapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from acme_sidecar.core.ari import Answer
from acme_sidecar.core.budget import Limits
from acme_sidecar.core.coalesce import DEFAULT, OFF
from acme_sidecar.core.report import Report
from acme_sidecar.shell.cycle import guarded_cycle, pacing_of, plan_wake, summarize
from acme_sidecar.shell.status import collect, render
from tests.unit.fakes import World, cycle_policy, daemon_policy


@dataclass
class FakeWindows:
    """``renewalInfo``: the same window (relative to the clock at each fetch) for every
    certificate, or a fixed ``error``; records the CertIDs asked."""

    world: World
    start: timedelta = timedelta(hours=1)
    end: timedelta = timedelta(hours=2)
    error: str = ""
    asked: list[str] = field(default_factory=list)
    fixed: tuple[datetime, datetime] | None = None

    def __call__(self) -> FakeWindows:
        return self

    def fetch(self, cid: str) -> Answer:
        self.asked.append(cid)
        if self.error:
            return Answer(error=self.error)
        now = self.world.clock()
        start, end = self.fixed or (now + self.start, now + self.end)
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        window = {"start": start.strftime(fmt), "end": end.strftime(fmt)}
        return Answer({"suggestedWindow": window})


def run(
    w: World,
    state: Report | None,
    *,
    windows: FakeWindows | None = None,
    limits: Limits | None = None,
) -> tuple[Report, float, list[MutableMapping[str, Any]]]:
    """One cycle and the sleep after it (ARI when ``windows``); the captured log lines."""
    deps = w.deps()
    deps.windows = windows
    ari = windows is not None
    with capture_logs() as logs:
        policy = cycle_policy() if limits is None else replace(cycle_policy(), limits=limits)
        report = guarded_cycle(policy, deps, state.state if state else None)
        wake = plan_wake(report, replace(daemon_policy(), ari=ari), w.clock(), streak=0)
        summarize(report, wake)
    return report, wake.seconds, logs


def test_short_certificates_wake_the_daemon_on_time(tmp_path: Path) -> None:
    """With 3-minute certificates the daemon sleeps until half their life, not a day, and
    renews each in time (the issue's run logged next_check_in 86400s)."""
    w = World(tmp_path / "ssl")
    w.issuer.lifetime = timedelta(minutes=2)  # valid from a minute ago: 3 minutes in all
    report, sleep, logs = run(w, None, limits=Limits.off())
    assert report.issued == 4 and sleep == 30
    done = next(e for e in logs if e["event"] == "cycle.done")
    assert done["next_check_in"] == "30s" and "renewal of" in str(done["next_reason"])
    for _ in range(10):
        w.clock.advance(sleep)
        report, sleep, _ = run(w, report, limits=Limits.off())
        assert all(c.not_after > w.clock() for c in w.store.certs.load().values())
    assert all(w.issuer.count(n) >= 6 for n in w.store.certs.names())


def test_renewed_at_the_ari_time_with_replaces_then_after_a_revocation(tmp_path: Path) -> None:
    """The window is fetched right after issuance; the certificates are renewed inside it with
    ``replaces``, together in one cycle; a window moved into the past (a revocation) renews them
    at the next fetch."""
    w = World(tmp_path / "ssl")
    windows = FakeWindows(w)
    report, sleep, logs = run(w, None, windows=windows)
    first = {n: c.cert_id for n, c in w.store.certs.load().items()}
    assert report.issued == 4
    assert sorted(windows.asked) == sorted(first.values())  # in the same cycle
    assert sum(e["event"] == "ari.window" for e in logs) == 4
    records = [report.state.cert(n).ari for n in first]
    chosen = [r.renew_at for r in records if r is not None and r.renew_at is not None]
    assert len(chosen) == 4
    lo, hi = w.clock() + timedelta(hours=1), w.clock() + timedelta(hours=2)
    assert all(lo <= t <= hi for t in chosen)
    # the four windows are one: renewed together at one time drawn inside it (core.coalesce)
    at = w.clock() + timedelta(seconds=sleep)
    assert lo <= at <= hi
    w.clock.advance(1800)
    report, sleep, logs = run(w, report, windows=windows)  # nothing due: no fetch, no order
    assert len(windows.asked) == 4 and report.issued == 0
    assert report.plan is not None and [(len(g.names), g.at) for g in report.plan.groups] == [
        (4, at)
    ]
    assert [e["renew_at"] for e in logs if e["event"] == "renewal.coalesced"] == [at.isoformat()]
    assert 1800 <= sleep <= 5400
    while w.issuer.replaced == {}:
        w.clock.advance(sleep)
        report, sleep, _ = run(w, report, windows=windows)
    renewed_at = w.clock()
    assert renewed_at >= at and len(w.issuer.replaced) == 4  # all four in one cycle
    assert set(w.issuer.replaced.items()) <= set(first.items())
    # the drill: the CA moves every window into the past
    windows.fixed = (w.clock() - timedelta(hours=1), w.clock() - timedelta(minutes=30))
    before = len(w.issuer.orders)
    elapsed = 0.0
    while len(w.issuer.orders) - before < 4 and elapsed < 7 * 3600:
        w.clock.advance(sleep)
        elapsed += sleep
        report, sleep, logs = run(w, report, windows=windows)
    assert len(w.issuer.orders) - before >= 4 and elapsed <= 6 * 3600  # one ARI interval


def test_without_renewal_info_the_lifetime_rule_applies(tmp_path: Path) -> None:
    """A CA without renewalInfo: one line, the lifetime rule, no replaces, asked again after
    the interval."""
    w = World(tmp_path / "ssl")
    windows = FakeWindows(w, error="the CA offers no renewalInfo")
    report, sleep, logs = run(w, None, windows=windows)
    unused = [e for e in logs if e["event"] == "ari.unused"]
    assert len(unused) == 1 and unused[0]["log_level"] == "info"
    assert sleep == 6 * 3600
    w.clock.advance(61 * 86400)
    report, sleep, _ = run(w, report, windows=windows)
    assert report.issued == 4 and w.issuer.replaced == {}


def test_status_shows_the_window_the_chosen_time_and_why_it_waits(tmp_path: Path) -> None:
    """``status``: per certificate the CA's window, the time drawn in it, what the renewal
    waits for (the time of the group it is renewed with); and the next wake-up."""
    w = World(tmp_path / "ssl")
    windows = FakeWindows(w)
    run(w, None, windows=windows)
    alone = replace(daemon_policy(), ari=True, coalesce=OFF)
    data = collect(w.store, w.clock(), pacing=pacing_of(alone))
    row = data["certificates"][0]
    assert row["ari"]["window_start"] and row["ari"]["chosen"] == row["renew_at"]
    assert row["waiting"].startswith(f"until {row['renew_at']} (ARI window")
    assert data["next_wake"]["reason"].startswith("renewal of")
    together = collect(w.store, w.clock(), pacing=pacing_of(replace(alone, coalesce=DEFAULT)))
    rows = together["certificates"]
    assert len({r["renew_at"] for r in rows}) == 1 and "together with" in rows[0]["waiting"]
    assert together["next_wake"]["at"] == rows[0]["renew_at"]
    assert rows[0]["ari"]["window_start"] <= rows[0]["renew_at"] <= rows[0]["ari"]["window_end"]
    out = io.StringIO()
    render(data, out)
    assert "ARI:       window" in out.getvalue() and "next wake-up:" in out.getvalue()
