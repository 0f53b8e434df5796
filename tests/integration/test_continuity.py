"""Issue #9, test 2: continuity over many renewals of one-minute certificates.

``acme-sidecar run`` (SNI mode, three certificates) against a Pebble whose certificates live
60 seconds, with the three TLS consumers of the test world (real containers on the private
dockerd). For ``LIFETIMES`` lifetimes, and until it has renewed every certificate at least
``RENEWALS`` times in a row, a prober asks every service for every SNI name every 0.5 s;
``continuity.judge`` holds each answer to the rule (never an error, never expired, never
anything but the stored certificate or, while its deploy is in flight, the one it replaced).
Each renewal cycle may cost each service at most one reload or restart: counted from the
daemon's ``cycle.done`` lines and, independently, from the containers themselves (their log
of reloads and starts, ``/run/reloads``, ``StartedAt``).

When each certificate is renewed is the CA's word (ARI): an ``AriProxy`` in front of Pebble
answers ``renewalInfo`` by ``continuity.SCHEDULE``, so every run renews at the same points of
the lives: mostly at 30 % of it, and each certificate once right away (a window already over)
and once late (a quarter of its life left). Pebble 2.6's own window spans the whole life, so
the daemon drew anywhere in it and the run lasted as long as the slowest of three random walks
(4 3/4 to 6 1/3 minutes, the edges reached by chance).

The daemon runs with the default settings (issue #16): no ``ACME_RATE_LIMITS`` (``auto``: Pebble
is not Let's Encrypt, so no Let's Encrypt limits, which would hold the fifth certificate for the
same names in a week), the default check interval and revalidation. Let's Encrypt's limits
forced on, with and without ARI, are ``test_budget_continuity``.
"""

from __future__ import annotations

import base64
import itertools
import math
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from docker.models.containers import Container

from tests.certs import write_pair
from tests.integration.conftest import SHORT_VALIDITY, consumer_stack
from tests.integration.continuity import (
    SCHEDULE,
    EventLog,
    Probe,
    Prober,
    RenewalWindows,
    Stored,
    VolumeWatch,
    consumer_actions,
    defaults,
    deploy_times,
    judge,
    probe_gaps,
    proxy_running,
    renewal_delays,
    spread,
    timeline,
)
from tests.integration.sidecar import Daemon, cert_dirs, leaf, seed
from tests.integration.stack import KINDS, Stack
from tests.world import World
from tests.world.ariproxy import AriProxy
from tests.world.pebble import Pebble

pytestmark = pytest.mark.slow  # minutes: left out by -m "not slow" (README, Run the tests)

RENEWALS = 10  # per certificate, in a row, at the least
VALIDITY = SHORT_VALIDITY  # seconds: the certificates of short_pebble (conftest)
LIFETIMES = 10  # the daemon runs at least this many lifetimes (issue #16)
RUN_LIMIT = LIFETIMES * VALIDITY + 4 * 60.0  # seconds (RENEWALS take about 3 1/2 minutes)


def map_rebuilds(container: Container) -> int:
    """``postmap`` runs a consumer recorded (the Postfix-like one with an SNI snapshot; 0 where
    the consumer keeps no events file)."""
    code, out = container.exec_run(["cat", "/var/lib/consumer/events"])
    return out.decode().split().count("postmap") if code == 0 else 0


def container_actions(
    world: World, stack: Stack, since: float, until: float
) -> dict[str, dict[str, int]]:
    """Reloads and (re)starts each consumer logged from ``since`` to ``until`` (its logs
    outlive restarts); ``until`` is the last ``cycle.done`` read: a reload after it belongs to
    a cycle the stop cut short, which no ``cycle.done`` line counts."""
    counts: dict[str, dict[str, int]] = {}
    for service, container in stack.containers.items():
        kinds = Counter(kind for _, kind in consumer_actions(container, since, until))
        counts[service] = {"reloads": kinds["reload"], "starts": kinds["start"]}
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
    proxy = AriProxy(tmp_path / "proxy", short_pebble.port, short_pebble.ca_bundle)
    with consumer_stack(world, tmp_path / "ssl") as stack, proxy_running(proxy):
        windows = RenewalWindows(stack.volume)
        proxy.window_for = windows
        env = defaults(stack.env) | {
            "ENABLE_SSL_SNI": "y",
            "DIRECTORY_URL": proxy.directory_url(),
            "ACME_CA_BUNDLE": str(proxy.ca_bundle),
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
            directory_of = {"": "."}  # no SNI: the top-level pair
            for directory, domains in cert_dirs(stack.volume).items():
                for name in domains.split():
                    directory_of.setdefault(name, directory)  # as the consumers map them
            started = {s: world.docker.started_at(c.id) for s, c in stack.containers.items()}
            since = time.time()
            watch = VolumeWatch(stack.volume, [*directories, "."])
            prober = Prober({s: (k, stack.ports[s]) for s, k in KINDS}, sorted(directory_of))
            watch.start()
            prober.start()
            began = time.monotonic()
            limit, run_for = began + RUN_LIMIT, began + LIFETIMES * VALIDITY
            progress, moved = 0, time.monotonic()
            while (
                min(len(h) for h in watch.history.values()) <= RENEWALS
                or time.monotonic() < run_for
            ):
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
            ran = time.monotonic() - began
            probes = prober.stop()
            watch.halt.set()
            watch.join()
        finally:
            code = daemon.stop()
            events.halt.set()
            events.join()
        assert code == 0
        last_done = max((t for t, _ in events.named("cycle.done")), default=since)
        actions = container_actions(world, stack, since, last_done)
        reload_files = stack.reloads(world)
        postmaps = {s: map_rebuilds(c) for s, c in stack.containers.items()}
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
    certificates = {d: watch.history[d] for d in directories}
    renewed = {d: len(h) - 1 for d, h in certificates.items()}
    applied = [
        [a.split(":")[0] for a in (e.get("services") or "").split(",") if a] for _, e in cycles
    ]
    renewal_cycles = sum(1 for _, e in cycles if e.get("issued"))
    chosen: dict[str, list[tuple[float, float]]] = {}  # ARI (when the CA offers it)
    for t, e in events.named("ari.window") + events.named("ari.renew_now"):
        if e.get("renew_at"):
            at = datetime.fromisoformat(e["renew_at"]).timestamp()
            chosen.setdefault(e["certificate"], []).append((t, at))
    to_written, to_served, margins = renewal_delays(certificates, probes, directory_of, chosen)
    summary = {
        "renewals": sum(renewed.values()),
        "renewal_cycles": renewal_cycles,
        "probes": len(probes),
        "failed_probes": len(verdicts.failed),
        "old_served_in_grace": verdicts.old_in_grace,
        **{f"{s}_reloads": a["reloads"] for s, a in actions.items()},
        **{f"{s}_restarts": a["starts"] for s, a in actions.items()},
    }
    totals("continuity", summary)
    per_renewal = {s: (a["reloads"] + a["starts"]) / renewal_cycles for s, a in actions.items()}
    print(f"\ncontinuity: {summary}")
    print(f"ran {ran:.0f} s ({ran / VALIDITY:.1f} lifetimes); renewals per certificate: {renewed}")
    print(f"names probed: {len(directory_of)} (one without SNI)")
    print(f"actions per renewal cycle and service: {per_renewal}")
    print(f"services acted on per cycle: {[len(a) for a in applied]}; postmap runs: {postmaps}")
    due_by = f"ARI for {sum(map(len, chosen.values()))}, else the lifetime rule"
    print(f"s from due ({due_by}) to written, min/median/max: {spread(to_written)}")
    print(f"s from due to served by all: {spread(to_served)}")
    print(f"s left on the replaced certificate when served by all: {spread(margins)}")
    print(
        f"s from written to deploy done (grace): {spread(deploy_times(certificates, cycles_done))}"
    )
    print(f"latest old certificate served, s after write: {verdicts.latest_old:.1f}")
    print(f"renewal windows asked per certificate: {windows.kinds}")
    print(f"s between probes of one service and name: {spread(probe_gaps(probes))}")
    print(f"failed probes by reason: {dict(Counter(w.split(':')[0] for _, w in verdicts.failed))}")
    for probe, why in verdicts.failed[:10]:
        print(f"failed: {probe.service} {probe.name!r} at {probe.began:.2f}: {why}")
    if verdicts.failed:
        first = verdicts.failed[0][0]
        failing = {directory_of[p.name] for p, _ in verdicts.failed} | {"."}
        timeline(events, watch.history, failing, around=first.began)

    sleeps = [int(e["next_check_in"].rstrip("s")) for _, e in cycles]
    budget_waits = [e for _, e in events.named("cert.wait") if "this week" in e["reason"]]
    print(f"longest sleep after a cycle: {max(sleeps)} s; waits for the budget: {budget_waits}")

    assert min(renewed.values()) >= RENEWALS and ran >= LIFETIMES * VALIDITY, (renewed, ran)
    assert budget_waits == [] and max(sleeps) < VALIDITY, (budget_waits, max(sleeps))
    assert verdicts.failed == [], verdicts.failed[:5]
    assert len(probes) > len(KINDS) * len(directory_of) * RENEWALS * 30  # ~every 0.5 s
    assert all(sorted(a) == sorted(set(a)) for a in applied), applied  # at most one each
    for service, _ in KINDS:
        done = sum(1 for a in applied if service in a)
        assert actions[service]["reloads"] + actions[service]["starts"] == done, (service, actions)
        assert done <= renewal_cycles
    # the containers' own counters agree: no restart, every reload in /run/reloads
    assert not any(restarted.values()) and set(restart_counts.values()) == {0}
    assert {s: a["reloads"] for s, a in actions.items()} == reload_files
    # the new one served by all before the old one expired; a renewal written in the last
    # seconds of the run may not have been served by all before the probing ended (-inf)
    probing_ended = max(p.ended for p in probes)
    writes = [b.written for seen in certificates.values() for _, b in itertools.pairwise(seen)]
    unserved = [w for w, m in zip(writes, margins, strict=True) if m == -math.inf]
    assert all(w > probing_ended - 10 for w in unserved), (unserved, probing_ended)
    assert min(m for m in margins if m != -math.inf) > 0, margins
    # each certificate was renewed right away and late among the renewals counted
    assert all({"now", "late"} <= set(k[:RENEWALS]) for k in windows.kinds.values()), windows.kinds
    assert set(windows.kinds) == set(directories), windows.kinds


def test_the_continuity_rule() -> None:
    """``judge`` on constructed probes (no test world): the stored serial passes; the one it
    replaced passes only until the deploy's ``cycle.done``; an older one, an expired one or an
    error fails."""
    day = datetime(2026, 1, 1, tzinfo=UTC)
    later = day + timedelta(days=1)
    history = {
        "d": [
            Stored(1, 100.0, day, later),
            Stored(2, 200.0, day, later),
            Stored(3, 300.0, day, later),
        ]
    }
    end = later.timestamp()

    def probe(at: float, serial: int | None, not_after: float = end) -> Probe:
        error = None if serial else "ConnectionRefusedError()"
        return Probe("smtp", "a.test", at, at + 0.1, serial, not_after if serial else None, error)

    probes = [
        probe(150, 1),  # stored
        probe(199.95, 2),  # written during the handshake
        probe(201, 1),  # replaced, deploy in flight (cycle.done at 203)
        probe(202.95, 1),  # began before cycle.done
        probe(203.5, 1),  # after the deploy: mismatched
        probe(301, 1),  # two behind: mismatched
        probe(250, 2, not_after=250.05),  # expired
        probe(260, None),  # no certificate
    ]
    verdicts = judge(probes, history, {"a.test": "d"}, [203.0, 303.0])
    assert [p.began for p, _ in verdicts.failed] == [203.5, 301, 250, 260]
    assert [w.split(":")[0] for _, w in verdicts.failed] == [
        "mismatched",
        "mismatched",
        "expired",
        "no certificate",
    ]
    assert verdicts.old_in_grace == 2 and verdicts.latest_old == pytest.approx(2.95)


def test_the_renewal_schedule(tmp_path: Path) -> None:
    """``RenewalWindows`` on a volume (no test world): the certificates of each directory, in
    the order their CertIDs are first asked for, get the windows of ``SCHEDULE`` (rotated by
    three per directory): early at 30 % of the life, one already over, one ending with a
    quarter of the life left; a CertID asked again gets its window again, one of a
    certificate not in the volume None (Pebble's own answer)."""
    windows = RenewalWindows(tmp_path)

    def cid(serial: int) -> str:  # as core.ari.cert_id encodes it
        octets = serial.to_bytes(serial.bit_length() // 8 + 1, "big", signed=True)
        return "aki." + base64.urlsafe_b64encode(octets).decode().rstrip("=")

    seen: dict[str, list[tuple[datetime, datetime, datetime, datetime]]] = {}
    for _ in SCHEDULE:
        for directory in ("a.test", "b.test"):
            serial = write_pair(tmp_path / directory, [directory])
            cert = leaf(tmp_path / directory / "cert.pem")
            window = windows(cid(serial))
            assert window is not None and windows(cid(serial)) == window
            born, dies = cert.not_valid_before_utc, cert.not_valid_after_utc
            seen.setdefault(directory, []).append((*window, born, dies))
    assert windows(cid(12345)) is None
    assert windows.kinds == {"a.test": list(SCHEDULE), "b.test": [*SCHEDULE[3:], *SCHEDULE[:3]]}
    for directory, kinds in windows.kinds.items():
        for kind, (start, end, born, dies) in zip(kinds, seen[directory], strict=True):
            life, second = dies - born, timedelta(seconds=1)
            expected = {
                "early": (born + life * 0.3, born + life * 0.3 + second),
                "now": (born - 2 * second, born - second),
                "late": (born + life * 0.75 - second, born + life * 0.75),
            }[kind]
            assert (start, end) == expected, (directory, kind)
