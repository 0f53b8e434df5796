"""Issue #15 item 2: behind a reverse proxy that redirects port 80 to HTTPS, names validate.

A front proxy (a real nginx, ``tests.world.frontproxy``) takes the validation port and answers
every request with a 301 to HTTPS on another port, where the same nginx serves the webroot with
a throwaway self-signed certificate for another name. A Pebble of its own validates HTTP-01 on
that validation port (its ``httpPort``) and follows the redirect, as Let's Encrypt does. The
sidecar runs with its defaults (the self-check on), its webroot being the one only the HTTPS
side serves: the name is accepted after the self-check followed the redirect, and issued. With
the HTTPS port not allowed for redirects, the redirect is refused in one log line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.integration.sidecar import HOST, base_env, leaf, seed, sidecar
from tests.world import World
from tests.world.dns import MockDNS
from tests.world.frontproxy import FrontProxy
from tests.world.pebble import Pebble

CHALLENGE = "/.well-known/acme-challenge/"


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FrontProxy]:
    """The redirecting front proxy and its HTTPS side."""
    proxy = FrontProxy(tmp_path_factory.mktemp("front-proxy"))
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def front_pebble(
    dns: MockDNS, front: FrontProxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pebble]:
    """A Pebble of its own whose HTTP-01 validation port is the front proxy's."""
    ca = Pebble(tmp_path_factory.mktemp("pebble-front"), dns.port, front.http_port)
    ca.start()
    try:
        yield ca
    finally:
        ca.stop()


def env_for(world: World, front: FrontProxy, ca: Pebble, volume: Path) -> dict[str, str]:
    """The test sidecar's settings, with the front proxy as the only way to the webroot."""
    return base_env(world, volume) | {
        "DIRECTORY_URL": ca.directory_url,
        "ACME_CA_BUNDLE": str(ca.ca_bundle),
        "ACME_WEBROOT": str(front.webroot),
        "ACME_HTTP_VERIFY_PORT": str(front.http_port),  # the CA's port 80 in this world
        "ACME_HTTPS_VERIFY_PORT": str(front.https_port),  # the CA's port 443 in this world
    }


def test_issued_through_a_redirect_to_https(
    world: World, front: FrontProxy, front_pebble: Pebble, volume: Path
) -> None:
    """The self-check (on, as by default) follows the 301 to HTTPS and accepts the name; Pebble
    validates through the same redirect; the certificate is issued and stored."""
    seed(world, [])
    before = len(front.hops())
    run = sidecar(env_for(world, front, front_pebble, volume), "once")
    assert run.code == 0, run.stderr[-3000:]
    [accepted] = run.named("name.accepted")
    assert accepted["name"] == HOST and "HTTP self-check passed" in accepted["reason"]
    assert run.named("redirect.refused") == [] and run.named("name.skipped") == []
    names = leaf(volume / HOST / "cert.pem").extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert names.value.get_values_for_type(x509.DNSName) == [HOST]
    hops = [h for h in front.hops()[before:] if h[2].startswith(CHALLENGE)]
    redirected = [h for h in hops if h[0] == front.http_port]
    served = [h for h in hops if h[0] == front.https_port]
    # every request on the validation port was redirected; each was followed to HTTPS, by the
    # self-check (first) and by the CA, and answered there
    assert redirected and all(status == 301 for *_, status in redirected)
    assert len(served) == len(redirected) >= 2
    assert all(status == 200 and host == HOST for _, host, _, status in served)
    print(f"\nfront proxy: {len(redirected)} redirects followed to HTTPS, all answered 200")


def test_a_redirect_to_a_port_not_allowed_is_refused_in_one_line(
    world: World, front: FrontProxy, front_pebble: Pebble, volume: Path
) -> None:
    """Without ACME_HTTPS_VERIFY_PORT the redirect leads to a port the CA would not follow
    (not 443): the self-check does not follow it, says so in one ``redirect.refused`` line
    naming the hop and why, and nothing is ordered."""
    seed(world, [])
    env = env_for(world, front, front_pebble, volume)
    del env["ACME_HTTPS_VERIFY_PORT"]
    before = len(front.hops())
    run = sidecar(env, "once")
    [refused] = run.named("redirect.refused")
    assert refused["name"] == HOST and refused["hop"] == 1
    assert refused["location"].startswith(f"https://{HOST}:{front.https_port}{CHALLENGE}")
    assert refused["reason"] == (f"port {front.https_port}; the CA follows https: to port 443 only")
    [skipped] = run.named("name.skipped")
    assert "not followed" in skipped["reason"]
    assert run.named("cert.stored") == [] and not (volume / HOST / "cert.pem").exists()
    assert {port for port, *_ in front.hops()[before:]} == {front.http_port}
