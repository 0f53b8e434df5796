"""Issue #9, test 1: ARI against Pebble 2.6 with a running daemon (``acme-sidecar run``).

A Pebble of its own issues one-hour certificates (the lifetime rule would renew them after 30
minutes); an ``AriProxy`` in front of it records every newOrder payload and answers
``renewalInfo`` with windows the test chooses, or passes Pebble's own answer through. The
daemon, with ACME_ARI_INTERVAL=3s, deploys to the three TLS consumers of the test world:

1. the first certificate is renewed inside its chosen window (seconds away, not 30 minutes),
   by an order whose ``replaces`` names it;
2. the renewed certificate is revoked as a CA's drill does (revokeCert signed by the
   certificate's key, with the ``acme`` library): Pebble's "renew now" window is seen at the
   next fetch and the certificate is renewed and served by every consumer within one ARI
   interval (plus the order);
3. the first certificate, put back into the volume, is due again: its second replacement is
   refused by Pebble (conflict) and the order placed again without ``replaces`` succeeds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from acme import client
from cryptography import x509
from josepy.jwa import ES256, RS256
from josepy.jwk import JWK, JWKEC

from acme_sidecar.core.ari import cert_id
from tests.integration.sidecar import HOST, Daemon, leaf, seed
from tests.integration.stack import KINDS, Stack
from tests.world import World
from tests.world.ariproxy import AriProxy
from tests.world.dns import MockDNS
from tests.world.pebble import Pebble
from tests.world.web import Nginx

LIFETIME = 3600  # seconds: the lifetime rule would renew after 30 minutes
INTERVAL = 3.0  # ACME_ARI_INTERVAL of the test


@pytest.fixture(scope="module")
def hour_pebble(
    dns: MockDNS, nginx: Nginx, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pebble]:
    """A Pebble 2.6 of its own issuing one-hour certificates."""
    workdir = tmp_path_factory.mktemp("pebble-ari")
    ca = Pebble(workdir, dns.port, nginx.port)
    path = workdir / "pebble-config.json"
    config = json.loads(path.read_text())
    config["pebble"]["certificateValidityPeriod"] = LIFETIME
    path.write_text(json.dumps(config, indent=2))
    ca.start()
    yield ca
    ca.stop()


@pytest.fixture
def proxy(hour_pebble: Pebble, tmp_path: Path) -> Iterator[AriProxy]:
    """The ARI proxy in front of the one-hour Pebble."""
    ari = AriProxy(tmp_path / "proxy", hour_pebble.port, hour_pebble.ca_bundle)
    ari.start()
    yield ari
    ari.stop()


def revoke(pebble: Pebble, cert: x509.Certificate, key_pem: bytes) -> None:
    """revokeCert signed by the certificate's own key (no account), as in a CA's drill."""
    jwk = JWK.load(key_pem)
    alg = ES256 if isinstance(jwk, JWKEC) else RS256
    net = client.ClientNetwork(jwk, alg=alg, verify_ssl=str(pebble.ca_bundle))  # type: ignore[arg-type]
    acme = client.ClientV2(client.ClientV2.get_directory(pebble.directory_url, net), net)
    acme.revoke(cert, 0)


def until(daemon: Daemon, event: str, timeout: float, **match: Any) -> tuple[float, dict[str, Any]]:
    """The next log line ``event`` (with the ``match`` fields) and when it arrived."""
    deadline = time.monotonic() + timeout
    while True:
        line = daemon.wait_for(event, timeout=max(deadline - time.monotonic(), 0.1))
        if all(line.get(k) == v for k, v in match.items()):
            return time.monotonic(), line


def served(stack: Stack) -> set[int]:
    return {stack.serial(kind, HOST) for _, kind in KINDS}


@pytest.mark.slow  # about 30 s: three renewals, each waiting for its ARI window
def test_ari_renewal_revocation_and_replaces(
    world: World, stack: Stack, hour_pebble: Pebble, proxy: AriProxy
) -> None:
    """Renewed at the ARI-chosen time with ``replaces``; after a revocation renewed and served
    within one ARI interval; a second replacement refused by Pebble, then ordered without."""
    seed(world, [])
    first_seen: dict[str, datetime] = {}
    near: set[str] = set()  # CertIDs answered with a window seconds away
    past: set[str] = set()  # ... with a window already over
    own: set[str] = set()  # ... with Pebble's own answer (after the revocation)

    def window_for(cid: str) -> tuple[datetime, datetime] | None:
        now = datetime.now(UTC)
        seen = first_seen.setdefault(cid, now)
        if cid in own:
            return None
        if cid in past:
            return now - timedelta(minutes=10), now - timedelta(minutes=5)
        if not near:
            near.add(cid)
        if cid in near:
            return seen + timedelta(seconds=6), seen + timedelta(seconds=10)
        return seen + timedelta(minutes=40), seen + timedelta(minutes=50)

    proxy.window_for = window_for
    env = stack.env | {
        "DIRECTORY_URL": proxy.directory_url(),
        "ACME_CA_BUNDLE": str(proxy.ca_bundle),
        "ACME_ARI_INTERVAL": f"{INTERVAL:.0f}s",
    }
    daemon = Daemon(env)
    try:
        until(daemon, "cert.stored", 120)
        first_pem = (stack.volume / HOST / "cert.pem").read_bytes()
        first = leaf(stack.volume / HOST / "cert.pem")
        first_id = cert_id(first)
        _, window = until(daemon, "ari.window", 30)
        chosen, start, end = (
            datetime.fromisoformat(window[k]) for k in ("renew_at", "start", "end")
        )
        assert start <= chosen <= end

        # 1. renewed at the chosen time, by an order replacing the first certificate
        until(daemon, "order.replaces", 60, replaces=first_id)
        renewed_at = datetime.now(UTC)
        until(daemon, "cert.stored", 60)
        until(daemon, "service.verified", 60)
        second = leaf(stack.volume / HOST / "cert.pem")
        assert second.serial_number != first.serial_number
        early = (renewed_at - chosen).total_seconds()
        assert 0 <= early <= 8, (chosen, renewed_at)  # not before, and promptly
        assert (renewed_at - first.not_valid_before_utc).total_seconds() < LIFETIME / 2
        replacing = [p for s, p in proxy.orders if p.get("replaces")]
        assert [p["replaces"] for p in replacing] == [first_id]
        assert served(stack) == {second.serial_number}

        # 2. the drill: revoked with the certificate's key; renewed within one ARI interval
        second_id = cert_id(second)
        until(daemon, "ari.window", 30)  # its window (40 minutes away) is known
        key_pem = (stack.volume / HOST / "key.pem").read_bytes()
        revoke(hour_pebble, second, key_pem)
        revoked_at = time.monotonic()
        own.add(second_id)
        seen_at, _ = until(daemon, "ari.renew_now", 30)
        until(daemon, "order.replaces", 30, replaces=second_id)
        stored_at, _ = until(daemon, "cert.stored", 60)
        verified_at, _ = until(daemon, "service.verified", 60)
        third = leaf(stack.volume / HOST / "cert.pem")
        assert served(stack) == {third.serial_number} != {second.serial_number}
        noticed = seen_at - revoked_at
        print(
            f"\nrevocation noticed after {noticed:.1f}s, renewal stored after "
            f"{stored_at - revoked_at:.1f}s, served (verified) after "
            f"{verified_at - revoked_at:.1f}s; ACME_ARI_INTERVAL={INTERVAL:.0f}s; first renewal "
            f"{early:+.1f}s from its chosen time {chosen:%H:%M:%S} (window "
            f"{start:%H:%M:%S}-{end:%H:%M:%S}), {LIFETIME / 2:.0f}s before the lifetime rule"
        )
        assert noticed <= INTERVAL + 2.5
        assert stored_at - revoked_at <= INTERVAL + 20

        # 3. the first certificate again: its second replacement is refused, then ordered
        # without replaces
        past.add(first_id)
        (stack.volume / HOST / "cert.pem").write_bytes(first_pem)
        daemon.proc.send_signal(1)  # SIGHUP: a cycle now
        _, refused = until(daemon, "order.replaces_refused", 60, replaces=first_id)
        assert refused["problem"] == "conflict"
        until(daemon, "cert.stored", 60)
        fourth = leaf(stack.volume / HOST / "cert.pem")
        assert fourth.serial_number not in {first.serial_number, third.serial_number}
        statuses = [(s, p.get("replaces")) for s, p in proxy.orders]
        assert statuses[-2:] == [(409, first_id), (201, None)], statuses
    finally:
        daemon.stop()
