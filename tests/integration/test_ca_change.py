"""Issue #15 must-show 7: switching ``DIRECTORY_URL`` from one Pebble to another re-issues every
certificate exactly once.

Pebble A is the session's; Pebble B is a second instance with ports and a work directory of its
own (both validate through the same nginx and mock DNS). Each sits behind a pass-through proxy
(``FaultProxy``) that counts the orders placed with it. ``once`` against A in SNI mode issues a
certificate for the hostname and one per mail domain; the first ``once`` against B re-issues
each of them from B (one ``cert.renew`` line each with the reason, one ``ca.changed`` line),
the second orders nothing at either CA.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.integration.sidecar import Run, base_env, cert_dirs, leaf, seed, sidecar
from tests.world import World
from tests.world.faultproxy import FaultProxy
from tests.world.pebble import Pebble

NEW_ORDER = "/order-plz"  # Pebble's newOrder path
DOMAINS = ["one.test", "two.test", "three.test"]


@pytest.fixture(scope="module")
def pebble_b(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    """A second Pebble, on ports and in a work directory of its own."""
    ca = Pebble(tmp_path_factory.mktemp("pebble-b"), world.dns.port, world.nginx.port)
    ca.start()
    try:
        yield ca
    finally:
        ca.stop()


@pytest.fixture
def proxies(world: World, pebble_b: Pebble, tmp_path: Path) -> Iterator[tuple[FaultProxy, ...]]:
    """Pass-through proxies in front of Pebble A and Pebble B, counting requests."""
    made = (
        FaultProxy(tmp_path / "proxy-a", world.pebble.port, world.pebble.ca_bundle),
        FaultProxy(tmp_path / "proxy-b", pebble_b.port, pebble_b.ca_bundle),
    )
    for proxy in made:
        proxy.start()
    try:
        yield made
    finally:
        for proxy in made:
            proxy.stop()


def orders(proxy: FaultProxy) -> int:
    """New orders placed through ``proxy``."""
    return proxy.seen.count(("POST", NEW_ORDER))


def issuers(volume: Path) -> dict[str, x509.Name]:
    """The issuer of every certificate directory's leaf."""
    return {name: leaf(volume / name / "cert.pem").issuer for name in cert_dirs(volume)}


def _ok(run: Run) -> None:
    assert run.code == 0, run.stderr[-3000:]
    assert [e for e in run.events if e.get("level") in ("error", "critical")] == []


def test_switching_the_ca_re_issues_every_certificate_once(
    world: World,
    pebble_b: Pebble,
    proxies: tuple[FaultProxy, FaultProxy],
    volume: Path,
    totals: Callable[[str, dict[str, int]], None],
) -> None:
    """Every certificate from Pebble A is re-issued from Pebble B by the first run against B
    (one order at B each, none at A, the reason on each line); the second run orders nothing."""
    proxy_a, proxy_b = proxies
    seed(world, DOMAINS)
    env = base_env(world, volume) | {"ENABLE_SSL_SNI": "y"}
    at_a = env | {
        "DIRECTORY_URL": proxy_a.directory_url(),
        "ACME_CA_BUNDLE": str(proxy_a.ca_bundle),
    }
    at_b = env | {
        "DIRECTORY_URL": proxy_b.directory_url(),
        "ACME_CA_BUNDLE": str(proxy_b.ca_bundle),
    }

    first = sidecar(at_a, "once", timeout=180)
    _ok(first)
    certs = sorted(cert_dirs(volume))
    assert len(certs) == 1 + len(DOMAINS)  # the hostname's and one per mail domain
    assert orders(proxy_a) == len(certs) and orders(proxy_b) == 0
    from_a = issuers(volume)
    serials = {n: leaf(volume / n / "cert.pem").serial_number for n in certs}

    switched = sidecar(at_b, "once", timeout=180)
    _ok(switched)
    assert orders(proxy_b) == len(certs) and orders(proxy_a) == len(certs)
    [line] = switched.named("ca.changed")
    assert (line["certificates"], line["ordered"]) == (len(certs), len(certs))
    renewed = switched.named("cert.renew")
    assert sorted(e["certificate"] for e in renewed) == certs
    why = f"due: issued by another CA ({proxy_a.directory_url()} -> {proxy_b.directory_url()})"
    assert {e["reason"] for e in renewed} == {why}
    assert sorted(e["certificate"] for e in switched.named("cert.stored")) == certs
    intermediate_b = x509.load_pem_x509_certificate(pebble_b.intermediate_pem()).subject
    assert set(issuers(volume).values()) == {intermediate_b}
    assert intermediate_b not in from_a.values()
    assert all(leaf(volume / n / "cert.pem").serial_number != serials[n] for n in certs)

    again = sidecar(at_b, "once", timeout=180)
    _ok(again)
    assert orders(proxy_b) == len(certs) and orders(proxy_a) == len(certs)
    assert again.named("ca.changed") == [] and again.named("cert.stored") == []
    assert sorted(e["certificate"] for e in again.named("cert.keep")) == certs
    totals(
        "ca change (must-show 7)",
        {"certificates": len(certs), "orders_a": orders(proxy_a), "orders_b": orders(proxy_b)},
    )
