"""Issue #9, test 2: continuity over many renewals of one-minute certificates.

``acme-sidecar run`` (SNI mode, three certificates) against a Pebble whose certificates live
60 seconds, with the three TLS consumers of the test world (real containers on the private
dockerd). While it renews every certificate at least ``RENEWALS`` times in a row, a prober asks
every service for every SNI name every 0.5 s; ``continuity.judge`` holds each answer to the rule
(never an error, never expired, never anything but the stored certificate or, while its deploy
is in flight, the one it replaced). Each renewal cycle may cost each service at most one reload
or restart: counted from the daemon's ``cycle.done`` lines and, independently, from the
containers themselves (their log of reloads and starts, ``/run/reloads``, ``StartedAt``).

The rate-limit budget is off (``ACME_RATE_LIMITS=off``): Let's Encrypt's limits do not apply
to Pebble, and five renewals of the same names a week would be held under them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.integration.conftest import consumer_stack
from tests.integration.continuity import (
    EventLog,
    Prober,
    VolumeWatch,
    judge,
    renewal_delays,
    spread,
)
from tests.integration.sidecar import Daemon, cert_dirs, seed
from tests.integration.stack import KINDS, Stack
from tests.world import World
from tests.world.pebble import Pebble

RENEWALS = 10  # per certificate, in a row
VALIDITY = 60  # seconds: Pebble's certificateValidityPeriod
RUN_LIMIT = 12 * 60.0  # seconds for the renewals (10 at half of 60 s take about 5 minutes)


@pytest.fixture(scope="module")
def short_pebble(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    """A Pebble of its own issuing 60-second certificates (the shared one keeps 5 years)."""
    pebble = Pebble(
        tmp_path_factory.mktemp("pebble-short"),
        world.dns.port,
        world.nginx.port,
        certificateValidityPeriod=VALIDITY,
    )
    pebble.start()
    yield pebble
    pebble.stop()


def container_actions(world: World, stack: Stack, since: float) -> dict[str, dict[str, int]]:
    """Reloads and (re)starts each consumer logged since ``since`` (its logs outlive restarts)."""
    counts: dict[str, dict[str, int]] = {}
    for service, container in stack.containers.items():
        raw = container.logs(timestamps=True, since=int(since)).decode(errors="replace")
        tally = {"reloads": 0, "starts": 0}
        for line in raw.splitlines():
            stamp, _, text = line.partition(" ")
            at = datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()
            if at < since:
                continue
            tally["reloads"] += text.strip() == "consumer: reloaded"
            tally["starts"] += " listening on " in text
        counts[service] = tally
    return counts


def test_continuity_over_renewals(
    world: World,
    consumer_image: str,
    short_pebble: Pebble,
    tmp_path: Path,
    totals: Callable[[str, dict[str, int]], None],
) -> None:
    """Every certificate renewed RENEWALS times in a row by `run`; every probe of every service
    and SNI name got the stored certificate (or, in flight, the one it replaced), never an
    expired one; each renewal cycle cost each service at most one reload or restart."""
    seed(world, ["one.test", "two.test"])
    with consumer_stack(world, tmp_path / "ssl") as stack:
        env = stack.env | {
            "ENABLE_SSL_SNI": "y",
            "DIRECTORY_URL": short_pebble.directory_url,
            "ACME_CA_BUNDLE": str(short_pebble.ca_bundle),
            "ACME_RATE_LIMITS": "off",
            "ACME_REVALIDATE_AFTER": "12h",
        }
        daemon = Daemon(env)
        events = EventLog(daemon)
        events.start()
        try:
            deadline = time.monotonic() + 120
            while not events.named("cycle.done"):
                assert time.monotonic() < deadline, "".join(daemon.seen[-15:])
                assert daemon.proc.poll() is None, "".join(daemon.seen[-15:])
                time.sleep(0.1)
            for container in stack.containers.values():
                world.docker.wait_ready(container.id)
            directories = sorted(cert_dirs(stack.volume))
            directory_of: dict[str, str] = {}
            for directory, domains in cert_dirs(stack.volume).items():
                for name in domains.split():
                    directory_of.setdefault(name, directory)
            started = {s: world.docker.started_at(c.id) for s, c in stack.containers.items()}
            since = time.time()
            watch = VolumeWatch(stack.volume, directories)
            prober = Prober({s: (k, stack.ports[s]) for s, k in KINDS}, sorted(directory_of))
            watch.start()
            prober.start()
            limit = time.monotonic() + RUN_LIMIT
            progress, moved = 0, time.monotonic()
            while min(len(h) for h in watch.history.values()) <= RENEWALS:
                assert daemon.proc.poll() is None, "".join(daemon.seen[-15:])
                assert time.monotonic() < limit, {d: len(h) for d, h in watch.history.items()}
                if (written := sum(len(h) for h in watch.history.values())) != progress:
                    progress, moved = written, time.monotonic()
                stalled = time.monotonic() - moved
                assert stalled < VALIDITY, f"nothing renewed for {stalled:.0f}s: " + "".join(
                    daemon.seen[-8:]
                )
                time.sleep(0.5)
            time.sleep(3)  # the last deploy: served before the probing ends
            probes = prober.stop()
            watch.halt.set()
            watch.join()
        finally:
            code = daemon.stop()
            events.halt.set()
            events.join()
        assert code == 0
        actions = container_actions(world, stack, since)
        reload_files = stack.reloads(world)
        restarted = {
            s: world.docker.started_at(c.id) != started[s] for s, c in stack.containers.items()
        }
        restart_counts = {
            s: int(world.docker.client.api.inspect_container(c.id)["RestartCount"])
            for s, c in stack.containers.items()
        }

    cycles = [(t, e) for t, e in events.named("cycle.done") if t >= since]
    cycles_done = [t for t, _ in cycles]
    verdicts = judge(probes, watch.history, directory_of, cycles_done)
    renewal_cycles = [(t, e) for t, e in cycles if e.get("issued")]
    renewed = {d: len(h) - 1 for d, h in watch.history.items()}
    per_cycle = [
        [a.split(":")[0] for a in (e.get("services") or "").split(",") if a]
        for _, e in renewal_cycles
    ]
    to_written, to_served = renewal_delays(watch.history, probes, directory_of)
    reasons = Counter(why.split(":")[0] for _, why in verdicts.failed)
    summary = {
        "renewals": sum(renewed.values()),
        "renewal_cycles": len(renewal_cycles),
        "probes": len(probes),
        "failed_probes": len(verdicts.failed),
        "old_in_grace": verdicts.old_in_grace,
        **{f"{s}_reloads": a["reloads"] for s, a in actions.items()},
        **{f"{s}_restarts": a["starts"] for s, a in actions.items()},
    }
    totals("continuity", summary)
    print(f"\ncontinuity: {summary}")
    print(f"renewals per certificate: {renewed}")
    print(f"actions per renewal cycle (service counts): {[len(c) for c in per_cycle]}")
    print(f"seconds due -> written, min/median/max: {spread(to_written)}")
    print(f"seconds due -> served by all, min/median/max: {spread(to_served)}")
    print(f"failed probes by reason: {dict(reasons)}")
    for probe, why in verdicts.failed[:10]:
        print(f"failed: {probe.service} {probe.name} at {probe.began:.2f}: {why}")

    assert min(renewed.values()) >= RENEWALS, renewed
    assert verdicts.failed == [], verdicts.failed[:5]
    assert len(probes) > 0
    for services in per_cycle:
        assert sorted(services) == sorted(set(services)), services  # at most one each
    for service, _ in KINDS:
        done = sum(1 for c in per_cycle if service in c)
        assert actions[service]["reloads"] + actions[service]["starts"] == done, (service, actions)
        assert done <= len(renewal_cycles)
    # the containers' own counters agree: no restart, every reload in /run/reloads
    assert not any(restarted.values()) and set(restart_counts.values()) == {0}
    assert {s: a["reloads"] for s, a in actions.items()} == reload_files
    assert max(to_served) < VALIDITY / 2, to_served  # served before the old one expired
