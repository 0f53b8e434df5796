"""Issue #14 must-show 3 against real components: Pebble behind a proxy that rewrites the
certificate it sends, the real ``acme-sidecar once``, and three TLS consumers serving the volume.

After a good first run, the proxy makes every issued chain wrong (a certificate for other names,
or the chain sent intermediate first). A forced renewal then stores nothing: the good files stay
byte for byte and are still what the consumers serve; the run fails with one ``cert.rejected``
line; a run right after places no order (the back-off holds).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from tests.integration.sidecar import HOST, leaf, seed, sidecar
from tests.integration.stack import KINDS, Stack
from tests.unit.fake_chain import Signer, pem
from tests.world import World
from tests.world.faultproxy import FaultProxy

NEW_ORDER = "/order-plz"  # Pebble's newOrder path


def intermediate_first(chain: bytes) -> bytes:
    """Pebble's chain with its certificates in reverse order."""
    certs = x509.load_pem_x509_certificates(chain)
    assert len(certs) >= 2
    return pem(*reversed(certs))


def other_names(chain: bytes) -> bytes:
    """A certificate for attacker.example with the same key, from a CA of its own."""
    ours = x509.load_pem_x509_certificates(chain)[0]
    signer = Signer()
    now = datetime.now(UTC)
    fake = signer.leaf(("attacker.example",), ours.public_key(), now, now + timedelta(days=90))
    return pem(fake, signer.inter)


def pem_files(root: Path) -> dict[str, bytes]:
    """The certificate and key files of the volume, the top-level pair included."""
    files = [*root.glob("*.pem"), *root.glob("*/*.pem")]
    return {str(p.relative_to(root)): p.read_bytes() for p in files if p.parent.name != "acme"}


@pytest.fixture
def proxy(world: World, tmp_path: Path) -> Iterator[FaultProxy]:
    """The proxy in front of the session's Pebble, passing everything through at first."""
    fault = FaultProxy(tmp_path / "proxy", world.pebble.port, world.pebble.ca_bundle)
    fault.start()
    yield fault
    fault.stop()


@pytest.mark.parametrize(
    "rewrite", [other_names, intermediate_first], ids=["other names", "out of order"]
)
def test_a_wrong_certificate_is_not_stored_nor_served(
    world: World, stack: Stack, proxy: FaultProxy, rewrite: Callable[[bytes], bytes]
) -> None:
    """The good certificate stays and is served; the failure backs off; no re-order."""
    seed(world, ["one.test"])
    env = stack.env | {
        "DIRECTORY_URL": proxy.directory_url(),
        "ACME_CA_BUNDLE": str(proxy.ca_bundle),
    }
    first = sidecar(env, "once")
    assert first.code == 0, first.stderr
    for service, _ in KINDS:
        world.docker.wait_ready(stack.containers[service].id)
    good, serial = pem_files(stack.volume), leaf(stack.volume / HOST / "cert.pem").serial_number
    assert {stack.serial(kind, HOST) for _, kind in KINDS} == {serial}

    proxy.rewrite_chain = rewrite
    (stack.volume / "force_renew").touch()
    orders = proxy.seen.count(("POST", NEW_ORDER))
    renewal = sidecar(env, "once")
    assert renewal.code != 0, renewal.stderr
    [rejected] = renewal.named("cert.rejected")
    assert rejected["certificate"] == HOST and proxy.rewritten == 1
    said = "is for other names: attacker.example" if rewrite is other_names else "not signed by"
    assert said in rejected["reason"]
    assert renewal.named("cert.stored") == [] and renewal.named("service.reloaded") == []
    # one order; a second one only when the CA refused the first's ``replaces`` (Pebble 2.6
    # cannot look up a serial whose hex form has an odd number of digits): placed again without
    placed = orders + 1 + len(renewal.named("order.replaces_refused"))
    assert proxy.seen.count(("POST", NEW_ORDER)) == placed, renewal.stderr[-3000:]

    again = sidecar(env, "once")  # at once: the back-off holds the order
    assert proxy.seen.count(("POST", NEW_ORDER)) == placed
    assert again.named("cert.rejected") == [] and again.named("cert.wait")
    assert pem_files(stack.volume) == good
    assert {stack.serial(kind, HOST) for _, kind in KINDS} == {serial}
