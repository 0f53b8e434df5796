"""Issue #16, must show 3: renewals coalesce. Six SNI certificates whose renewal windows
overlap are renewed together, so the services reload once per renewal instead of once per
certificate.

Two ``acme-sidecar run`` side by side, each with its own volume and its own three consumers
(real containers on the private dockerd), against one Pebble issuing 60-second certificates:
one with the default ``ACME_COALESCE`` and one with ``ACME_COALESCE=0`` (each certificate at
its own time, as before). An ``AriProxy`` in front of Pebble answers each certificate's
``renewalInfo`` with the window from half to four fifths of its life (Pebble 2.6's own window
spans the whole life). The deploy cycles are counted from the containers themselves: each
consumer's log of reloads and starts (``consumer: reloaded``, ``listening on``), with the time
Docker stamped on each line.

The daemons run with the default rate limits (``auto``: Pebble is not Let's Encrypt, so none).
"""

from __future__ import annotations

import itertools
import threading
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from tests.integration.conftest import SHORT_VALIDITY, consumer_stack
from tests.integration.continuity import EventLog, cid_serial, consumer_actions, stored_cert
from tests.integration.sidecar import Daemon, cert_dirs, seed
from tests.integration.stack import Stack
from tests.world import World
from tests.world.ariproxy import AriProxy
from tests.world.pebble import Pebble

pytestmark = pytest.mark.slow  # two minutes: left out by -m "not slow" (README, Run the tests)

VALIDITY = SHORT_VALIDITY  # seconds: the certificates of short_pebble (conftest)
DOMAINS = ["c1.test", "c2.test", "c3.test", "c4.test", "c5.test"]  # with the server's: six
CERTIFICATES = len(DOMAINS) + 1
RENEWALS = 3  # per certificate, after the first issuance
OPENS, CLOSES = 0.5, 0.8  # the share of its life gone when a certificate's window opens, ends
RUN_LIMIT = 150.0  # seconds (by the windows, three renewals take about two minutes)


class Windows:
    """The CA's window for each certificate of ``root``: from OPENS to CLOSES of its life
    (None for a certificate not in the volume: Pebble's own answer)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def __call__(self, cid: str) -> tuple[datetime, datetime] | None:
        with self._lock:
            found = stored_cert(self.root, cid_serial(cid))
        if found is None:
            return None
        born, dies = found[1].not_valid_before_utc, found[1].not_valid_after_utc
        return born + (dies - born) * OPENS, born + (dies - born) * CLOSES


class Run:
    """One sidecar with its own stack and ARI proxy, and what it was seen doing."""

    def __init__(self, stack: Stack, proxy: AriProxy, coalesce: str | None) -> None:
        self.stack = stack
        self.proxy = proxy
        proxy.window_for = Windows(stack.volume)
        env = (
            stack.env
            | {
                "ENABLE_SSL_SNI": "y",
                "DIRECTORY_URL": proxy.directory_url(),
                "ACME_CA_BUNDLE": str(proxy.ca_bundle),
                "ACME_REVALIDATE_AFTER": "12h",
            }
            | ({"ACME_COALESCE": coalesce} if coalesce is not None else {})
        )
        self.daemon = Daemon(env)
        self.events = EventLog(self.daemon)
        self.events.start()
        self.since = 0.0  # the end of the first issuance's deploy
        self.serials: dict[str, set[int]] = {}

    def look(self) -> None:
        """Note the serial each certificate directory holds now."""
        for directory in cert_dirs(self.stack.volume):
            try:
                pem = (self.stack.volume / directory / "cert.pem").read_bytes()
                serial = x509.load_pem_x509_certificates(pem)[0].serial_number
            except (OSError, ValueError):
                continue
            self.serials.setdefault(directory, set()).add(serial)

    def renewals(self) -> int:
        """Renewals of the certificate renewed least often (the first issuance not counted)."""
        if len(self.serials) < CERTIFICATES:
            return 0
        return min(len(s) for s in self.serials.values()) - 1

    def stop(self) -> int:
        code = self.daemon.stop()
        self.events.halt.set()
        self.events.join()
        return code

    def named(self, event: str) -> list[tuple[float, dict[str, Any]]]:
        return self.events.named(event)


def test_six_certificates_with_overlapping_windows_deploy_together(
    world: World, consumer_image: str, short_pebble: Pebble, tmp_path: Path
) -> None:
    """With the default ACME_COALESCE the six certificates are renewed in one cycle each time:
    at most two deploy cycles (counted from the consumers' own reloads and starts) per
    lifetime (per generation of the certificates, and per 60 s), against about one per
    certificate with ACME_COALESCE=0; each group renewal has its line, each order is a
    replacement (ARI)."""
    seed(world, DOMAINS)
    runs: dict[str, Run] = {}
    began = time.monotonic()
    with ExitStack() as stack:
        for mode, coalesce in (("coalesced", None), ("alone", "0")):
            consumers = stack.enter_context(
                consumer_stack(world, tmp_path / mode / "ssl", project=f"coalesce{mode}")
            )
            proxy = AriProxy(tmp_path / mode / "proxy", short_pebble.port, short_pebble.ca_bundle)
            proxy.start()
            stack.callback(proxy.stop)
            runs[mode] = Run(consumers, proxy, coalesce)
        try:
            deadline = time.monotonic() + 120
            for run in runs.values():
                while not run.named("cycle.done"):
                    assert time.monotonic() < deadline, "".join(run.daemon.seen[-15:])
                    assert run.daemon.proc.poll() is None, "".join(run.daemon.seen[-15:])
                    time.sleep(0.1)
                run.since = time.time()
                run.look()
            limit = time.monotonic() + RUN_LIMIT
            while min(r.renewals() for r in runs.values()) < RENEWALS:
                for mode, run in runs.items():
                    assert run.daemon.proc.poll() is None, (mode, "".join(run.daemon.seen[-15:]))
                    run.look()
                assert time.monotonic() < limit, {m: r.serials for m, r in runs.items()}
                time.sleep(0.2)
            time.sleep(3)  # the last deploy: done before the count
        finally:
            codes = {mode: run.stop() for mode, run in runs.items()}
        until = time.time()
        deploys = {
            mode: {
                service: [t for t, _ in consumer_actions(container, run.since, until)]
                for service, container in run.stack.containers.items()
            }
            for mode, run in runs.items()
        }
    took = time.monotonic() - began

    counted: dict[str, dict[str, float]] = {}
    for mode, run in runs.items():
        cycles = max(len(times) for times in deploys[mode].values())  # each deploy: every one
        span = until - run.since
        renewed = run.renewals()
        counted[mode] = {
            "deploy_cycles": cycles,
            "renewals_per_certificate": renewed,
            "per_lifetime": cycles / renewed,  # a lifetime: one generation of the certificates
            "per_60s": cycles * VALIDITY / span,
        }
    groups = runs["coalesced"].named("renewal.coalesced")
    print(f"\ncoalesce: {counted}; test took {took:.0f}s")
    print(f"groups logged: {len(groups)}; one: {groups[-1][1] if groups else None}")

    assert codes == {"coalesced": 0, "alone": 0}
    assert counted["coalesced"]["per_lifetime"] <= 2, counted
    assert counted["coalesced"]["per_60s"] <= 2, counted
    assert counted["alone"]["per_lifetime"] >= 3, counted  # about one per certificate
    assert counted["coalesced"]["deploy_cycles"] < counted["alone"]["deploy_cycles"]
    # every group renewal had its line naming all six certificates, with the time and why
    assert groups and all(e["count"] == CERTIFICATES for _, e in groups), groups
    assert all(len(e["certificates"].split(", ")) == CERTIFICATES for _, e in groups), groups
    assert all("ARI windows overlap" in e["reason"] for _, e in groups)
    assert not runs["alone"].named("renewal.coalesced")
    # the renewals stayed ARI renewals: each renewal's order names the certificate it replaces
    # (placed again without it only when Pebble refused it: 2.6 and a serial of odd hex length)
    placed = runs["coalesced"].proxy.orders
    issued = list(itertools.accumulate(int(status == 201) for status, _ in placed))
    orders = placed[issued.index(CERTIFICATES) + 1 :]  # after the six first certificates
    assert sum(1 for _, p in orders if p.get("replaces")) >= RENEWALS * CERTIFICATES, orders
    for (status, before), (_, order) in itertools.pairwise(orders):
        if not order.get("replaces"):
            refused = status != 201 and before.get("replaces")
            assert refused and before["identifiers"] == order["identifiers"], orders
    assert orders and orders[0][1].get("replaces"), orders
