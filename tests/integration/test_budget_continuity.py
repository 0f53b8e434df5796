"""Issue #16, must-show 2: Let's Encrypt's limits forced on (``ACME_RATE_LIMITS=letsencrypt``)
against a Pebble of 60-second certificates, with the continuity probes of
``test_continuity`` (three consumers, every SNI name every 0.5 s, ``continuity.judge``).

After the first certificates, the ledger is given three more certificates this week for each
set of names: Let's Encrypt allows 5, the budget 4, so every later order is one the budget
would hold. Then:

1. **ARI** (the ``AriProxy`` windows of ``continuity.SCHEDULE``): every renewal names the
   certificate it replaces and is exempt: ordered at its ARI time, one ``budget.exempt`` line
   each, no probe expired.
2. **No ARI** (the proxy's directory names no ``renewalInfo``, the ledger's windows dropped:
   the lifetime rule, half the life): each renewal is held by the budget until its certificate
   is urgent (its last ⅙: 10 s), then ordered past it, one ``budget.overridden`` line each; the
   daemon wakes for it (it never sleeps a lifetime).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from acme_sidecar.adapters.volume import CertStore
from tests.integration.conftest import SHORT_VALIDITY, consumer_stack
from tests.integration.continuity import (
    EventLog,
    Probe,
    Prober,
    RenewalWindows,
    Stored,
    VolumeWatch,
    defaults,
    judge,
    proxy_running,
    renewal_delays,
    timeline,
)
from tests.integration.sidecar import Daemon, cert_dirs, seed
from tests.integration.stack import KINDS, Stack
from tests.world import World
from tests.world.ariproxy import AriProxy
from tests.world.pebble import Pebble

pytestmark = pytest.mark.slow  # minutes: left out by -m "not slow" (README, Run the tests)

VALIDITY = SHORT_VALIDITY  # seconds: the certificates of short_pebble (conftest)
EXEMPT = 2  # renewals per certificate with ARI, each past the spent budget
URGENT = 2  # renewals per certificate without ARI, each at its urgent time
SPENT = 3  # certificates added to the ledger per set of names: 4 this week, the budget's all


@dataclass
class Phase:
    """One run of the daemon, watched: its log, the volume's serials and the probes."""

    events: EventLog
    history: dict[str, list[Stored]]
    probes: list[Probe]
    took: float

    def renewed(self, directories: list[str]) -> dict[str, int]:
        return {d: len(self.history[d]) - 1 for d in directories}

    def lines(self, event: str) -> dict[str, int]:
        """How many ``event`` lines each certificate got."""
        counts: dict[str, int] = {}
        for _, e in self.events.named(event):
            counts[e["certificate"]] = counts.get(e["certificate"], 0) + 1
        return counts


def watched(
    env: dict[str, str], stack: Stack, directory_of: dict[str, str], renewals: int, limit: float
) -> Phase:
    """Run the daemon until every certificate directory was renewed ``renewals`` times,
    probing every service and name all along."""
    directories = sorted(set(directory_of.values()) - {"."})
    started = time.monotonic()
    daemon = Daemon(env)
    events = EventLog(daemon)
    events.start()
    watch = VolumeWatch(stack.volume, [*directories, "."])
    prober = Prober({s: (k, stack.ports[s]) for s, k in KINDS}, sorted(directory_of))
    watch.start()
    prober.start()
    try:
        while min(len(watch.history[d]) for d in directories) <= renewals:
            assert daemon.proc.poll() is None, "".join(daemon.seen[-15:])
            assert time.monotonic() - started < limit, {
                d: len(watch.history[d]) for d in directories
            }
            time.sleep(0.5)
        time.sleep(3)  # the last deploy: served before the probing ends
    finally:
        probes = prober.stop()
        watch.halt.set()
        watch.join()
        code = daemon.stop()
        events.halt.set()
        events.join()
    assert code == 0
    return Phase(events, watch.history, probes, time.monotonic() - started)


def first_certificates(env: dict[str, str]) -> None:
    """Run the daemon until its first cycle is done (every certificate issued), then stop it."""
    daemon = Daemon(env)
    try:
        done = daemon.wait_for("cycle.done", timeout=120)
        assert done["issued"] >= 3, done
    finally:
        code = daemon.stop()
    assert code == 0


def spend_budget(volume: Path, *, drop_ari: bool = False) -> None:
    """Add ``SPENT`` certificates an hour old to each set of names in the ledger (the budget
    for identical certificates is spent); ``drop_ari``: forget the CA's windows too."""
    store = CertStore(volume, set_aside=False)
    state, damage = store.ledger.read()
    assert not damage and state.certs, damage
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    certs = {}
    for name, ledger in state.certs.items():
        names = ledger.issued[-1][1]
        issued = tuple(sorted(ledger.issued + ((hour_ago, names),) * SPENT))
        certs[name] = replace(ledger, issued=issued, ari=None if drop_ari else ledger.ari)
    store.ledger.save(replace(state, certs=certs))


def judged(phase: Phase, directory_of: dict[str, str]) -> list[tuple[Probe, str]]:
    cycles = [t for t, _ in phase.events.named("cycle.done")]
    return judge(phase.probes, phase.history, directory_of, cycles).failed


def test_lets_encrypt_limits_yield_to_ari_and_to_expiry(
    world: World,
    consumer_image: str,
    short_pebble: Pebble,
    tmp_path: Path,
    totals: Callable[[str, dict[str, int]], None],
) -> None:
    """Under Let's Encrypt's limits, spent: every ARI renewal is exempt (one budget.exempt line
    each, ``replaces`` in each order), and without ARI every renewal waits for the budget until
    its certificate is urgent and goes out then (one budget.overridden line each); no probe of
    any service and name finds an expired certificate in either."""
    seed(world, ["one.test", "two.test"])
    proxy = AriProxy(tmp_path / "proxy", short_pebble.port, short_pebble.ca_bundle)
    with consumer_stack(world, tmp_path / "ssl") as stack, proxy_running(proxy):
        proxy.window_for = RenewalWindows(stack.volume)
        env = defaults(stack.env) | {
            "ENABLE_SSL_SNI": "y",
            "DIRECTORY_URL": proxy.directory_url(),
            "ACME_CA_BUNDLE": str(proxy.ca_bundle),
            "ACME_RATE_LIMITS": "letsencrypt",
        }
        first_certificates(env)
        for container in stack.containers.values():
            world.docker.wait_ready(container.id)
        directory_of = {"": "."}  # no SNI: the top-level pair
        for directory, domains in cert_dirs(stack.volume).items():
            for name in domains.split():
                directory_of.setdefault(name, directory)
        directories = sorted(set(directory_of.values()) - {"."})

        spend_budget(stack.volume)
        placed = len(proxy.orders)
        ari = watched(env, stack, directory_of, EXEMPT, limit=150)
        ari_orders = [payload for _, payload in proxy.orders[placed:]]

        proxy.ari = False
        spend_budget(stack.volume, drop_ari=True)
        placed = len(proxy.orders)
        plain = watched(env, stack, directory_of, URGENT, limit=200)
        plain_orders = [payload for _, payload in proxy.orders[placed:]]

    summary: dict[str, Any] = {}
    for label, phase in (("ari", ari), ("no_ari", plain)):
        sleeps = [int(e["next_check_in"].rstrip("s")) for _, e in phase.events.named("cycle.done")]
        failed = judged(phase, directory_of)
        renewals = {d: phase.history[d] for d in directories}
        margins = renewal_delays(renewals, phase.probes, directory_of, {})[2]
        summary[label] = {
            "seconds": round(phase.took),
            "renewals": phase.renewed(directories),
            "budget.exempt": phase.lines("budget.exempt"),
            "budget.overridden": phase.lines("budget.overridden"),
            "budget_waits": sum(
                1 for _, e in phase.events.named("cert.wait") if "this week" in e["reason"]
            ),
            "probes": len(phase.probes),
            "failed_probes": len(failed),
            "expired_probes": sum(1 for _, why in failed if why == "expired"),
            "longest_sleep": max(sleeps),
            "least_margin_s": round(min(margins), 1),
        }
        print(f"\n{label}: {summary[label]}")
        for probe, why in failed[:10]:
            print(f"failed: {probe.service} {probe.name!r} at {probe.began:.2f}: {why}")
        if failed:
            timeline(phase.events, phase.history, {directory_of[p.name] for p, _ in failed})
    for label, counts in summary.items():
        totals(
            f"budget continuity ({label})",
            {
                "renewals": sum(counts["renewals"].values()),
                "exempt_lines": sum(counts["budget.exempt"].values()),
                "overridden_lines": sum(counts["budget.overridden"].values()),
                "probes": counts["probes"],
                "expired_probes": counts["expired_probes"],
                "failed_probes": counts["failed_probes"],
            },
        )

    with_ari, without = summary["ari"], summary["no_ari"]
    # 1. ARI: every renewal an exempt replaces order, none held, nothing expired
    assert min(with_ari["renewals"].values()) >= EXEMPT, with_ari
    replacing = sum(1 for o in ari_orders if o.get("replaces"))
    assert replacing >= sum(with_ari["renewals"].values()), ari_orders
    # one line per renewal (one more when the stop cut an order short)
    for directory, renewed in with_ari["renewals"].items():
        assert renewed <= with_ari["budget.exempt"].get(directory, 0) <= renewed + 1, with_ari
    assert with_ari["budget.overridden"] == {} and with_ari["budget_waits"] == 0, with_ari
    assert with_ari["failed_probes"] == 0, with_ari
    # 2. no ARI: the budget holds each renewal, then it goes out urgent with its line
    assert min(without["renewals"].values()) >= URGENT, without
    assert plain_orders and not any(o.get("replaces") for o in plain_orders), plain_orders
    for directory, renewed in without["renewals"].items():
        assert renewed <= without["budget.overridden"].get(directory, 0) <= renewed + 1, without
    assert without["budget.exempt"] == {} and without["budget_waits"] >= URGENT, without
    assert without["longest_sleep"] < VALIDITY, without
    assert without["failed_probes"] == 0 and without["least_margin_s"] > 0, without
    assert len(plain.probes) > len(KINDS) * len(directory_of) * URGENT * 30  # ~every 0.5 s
