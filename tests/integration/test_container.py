"""Issue #4: the container is the product. The repository's ``docker-compose.yml`` runs on a real
Docker engine (the test world's private dockerd) with Debian's ``docker-compose`` (or Compose v2,
see tests/world/compose.py): the README's command alone, ``up -d`` on an engine that has only the
debootstrapped base image (issue #15), builds every image from the repository's Dockerfiles
without asking a registry for one; the sidecar obtains the certificates from Pebble and real
Postfix, Dovecot and nginx serve them per SNI name; a forced renewal is applied and explained in
``docker logs``; the HEALTHCHECK follows the CA.

The tests share one stack (module fixture) and run in file order: each starts from the state
the previous one left.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.sidecar import cert_dirs, leaf
from tests.world.compose import ComposeStack, copy_checkout
from tests.world.docker import DockerWorld
from tests.world.launcher import Launcher
from tests.world.tlsprobe import served_serial

pytestmark = pytest.mark.slow  # minutes: left out by -m "not slow" (README, Run the tests)

SERVICES = ("acme", "dockerapi", "postfix", "dovecot", "nginx", "mysql", "pebble", "challtestsrv")
CONSUMERS = {"postfix": ("smtp", 25), "dovecot": ("imap", 143), "nginx": ("https", 443)}
HOSTNAME = "mail.example.test"
DOMAINS = ("example.test", "demo.test")
ISSUE_WITHIN = 180.0  # seconds from `up` until every name is served with its new certificate
# short intervals for the health tests; the HEALTHCHECK itself every 3 s (start_period 0 would
# inherit the image's 180 s)
TEST_OVERRIDE = {
    "services": {
        "acme": {
            "environment": {
                "ACME_RETRY_INTERVAL": "5",
                "ACME_RETRY_LADDER": "2s",
                "ACME_HEALTH_FAIL_AFTER": "10s",
            },
            "healthcheck": {
                "test": ["CMD", "acme-sidecar", "health"],
                "interval": "3s",
                "timeout": "20s",
                "retries": 1,
                "start_period": "1s",
            },
        }
    }
}


@pytest.fixture(scope="module")
def stack(
    docker_world: DockerWorld,
    base_image: str,
    world_launcher: Launcher,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ComposeStack]:
    """The demo stack started by the README's command alone (``up -d``) on an engine without
    the stack's images (removed first; the base image they are built from stays)."""
    checkout = copy_checkout(tmp_path_factory.mktemp("checkout"))
    demo = ComposeStack(
        checkout,
        docker_world.client,
        docker_world.docker_host,
        docker_world.socket,
        base_image=base_image,
        overrides=[TEST_OVERRIDE],
    )
    try:
        demo.remove_images()
        demo.up()
        yield demo
    finally:
        try:
            demo.down()
        finally:
            world_launcher.timings.update(demo.timings)


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, stack: ComposeStack, interval: float = 1
) -> None:
    """Poll ``check`` until it is true; fail with the containers' state and logs."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f}s\n{stack.describe()}")
        time.sleep(interval)


def stored(volume: Path) -> dict[str, int]:
    """``{name: serial}`` of every certificate directory in the volume."""
    return {
        name: leaf(volume / directory / "cert.pem").serial_number
        for directory, names in cert_dirs(volume).items()
        for name in names.split()
    }


def served(stack: ComposeStack, names: Iterator[str] | list[str]) -> dict[tuple[str, str], Any]:
    """``{(service, name): serial}`` served by Postfix, Dovecot and nginx (an error text when
    the dialogue fails), asked from the host at the containers' addresses."""
    out: dict[tuple[str, str], Any] = {}
    for name in names:
        for service, (kind, port) in CONSUMERS.items():
            try:
                out[service, name] = served_serial(kind, port, name, stack.address(service), 5)
            except OSError as exc:
                out[service, name] = f"{type(exc).__name__}: {exc}"
    return out


def everything_served(stack: ComposeStack, expect: Callable[[dict[str, int]], bool]) -> bool:
    """True when the volume's certificates satisfy ``expect`` and each is served for each of
    its names by all three consumers."""
    volume = stack.volume("ssl")
    want = stored(volume)
    if not want or not expect(want):
        return False
    got = served(stack, list(want))
    return all(got[service, name] == want[name] for service in CONSUMERS for name in want)


def test_readme_command_builds_on_an_empty_engine(stack: ComposeStack, base_image: str) -> None:
    """`up -d` alone, on an engine with none of the stack's images, built every one of them
    and tried no pull (the dockerapi service shares the sidecar's image: issue #15)."""
    assert stack.images_before_up == [], "the engine had images of the stack before `up -d`"
    assert stack.client.images.list(name=base_image), base_image
    images = stack.images()
    assert {"acme-sidecar", "acme-sidecar-demo-pebble"} <= set(images)
    assert all(stack.client.images.list(name=image) for image in images), images
    pulls = [line for line in stack.up_output.splitlines() if re.search(r"(?i)\bpull", line)]
    assert not pulls, pulls


def test_every_service_comes_up(stack: ComposeStack, base_image: str) -> None:
    """`docker-compose up -d` brings every service up and healthy; every image was built from
    the same debootstrapped base."""

    def all_healthy() -> bool:
        containers = stack.containers()
        return set(containers) == set(SERVICES) and all(
            stack.health(service) == "healthy" for service in SERVICES
        )

    wait_until(all_healthy, 90, "every service healthy", stack)
    base_layer = stack.client.images.get(base_image).attrs["RootFS"]["Layers"][0]
    for service, container in stack.containers().items():
        image = stack.client.images.get(container.attrs["Config"]["Image"])
        assert image.attrs["RootFS"]["Layers"][0] == base_layer, service


def test_certificates_served_per_sni_name(stack: ComposeStack) -> None:
    """Within three minutes of `up`, the sidecar has issued the server certificate and one per
    mail domain, and Postfix (STARTTLS 25), Dovecot (STARTTLS 143) and nginx (443) serve each
    of them for each of its names."""
    left = ISSUE_WITHIN - (time.monotonic() - stack.started)
    wait_until(
        lambda: everything_served(stack, lambda want: len(set(want.values())) == 3),
        max(left, 1),
        "three certificates, all served",
        stack,
        interval=2,
    )
    stack.timings["demo_first_certificates"] = time.monotonic() - stack.started
    directories = cert_dirs(stack.volume("ssl"))
    assert not list(stack.volume("ssl").glob(".snakeoil*")), "the snake-oil lock is left over"
    assert set(directories) == {HOSTNAME, *(f"autodiscover.{d}" for d in DOMAINS)}
    assert directories[HOSTNAME].split() == [HOSTNAME]
    assert set(directories["autodiscover.example.test"].split()) == {
        "autodiscover.example.test",
        "autoconfig.example.test",
        "mta-sts.example.test",
    }
    issuer = leaf(stack.volume("ssl") / HOSTNAME / "cert.pem").issuer.rfc4514_string()
    assert "Pebble" in issuer
    # the default pair (no SNI) is the server certificate too
    default = leaf(stack.volume("ssl") / "cert.pem").serial_number
    assert {served_serial(k, p, None, stack.address(s)) for s, (k, p) in CONSUMERS.items()} == {
        default
    }


def test_force_renew_and_restart(stack: ComposeStack) -> None:
    """`touch force_renew` + `docker-compose restart acme`: every certificate is issued again,
    served, the flag is gone, and `docker logs` says so in plain lines."""
    volume = stack.volume("ssl")
    before = stored(volume)
    (volume / "force_renew").touch()
    since = datetime.now(UTC)
    stack.compose("restart", "acme")
    wait_until(
        lambda: (
            not (volume / "force_renew").exists()
            and everything_served(stack, lambda want: not set(want.values()) & set(before.values()))
        ),
        120,
        "renewed certificates served and force_renew removed",
        stack,
        interval=2,
    )
    logs = stack.container("acme").logs(since=since).decode(errors="replace").splitlines()
    assert logs, "docker logs of the sidecar are empty"
    assert not any(line.lstrip().startswith("{") for line in logs), "JSON, not console lines"

    def lines(event: str) -> list[str]:
        return [line for line in logs if f" {event} " in f" {line} "]

    for event in ("cert.renew", "cert.stored", "service.verified", "force_renew.cleared"):
        assert lines(event), f"no {event} line in:\n" + "\n".join(logs)
    assert len(lines("cert.renew")) == 3
    assert all("reason=" in line for line in lines("cert.renew"))
    applied = lines("service.reloaded") + lines("service.restarted")
    for service in CONSUMERS:
        assert any(f"service={service}" in line for line in applied), service


def test_consumers_are_driven_through_dockerapi(stack: ComposeStack) -> None:
    """As in mailcow, the sidecar has no Docker socket: it chose the dockerapi service, and
    every reload or restart it logged went through that service to the real engine."""
    acme = stack.container("acme")
    mounts = [m["Destination"] for m in acme.attrs["Mounts"]]
    assert "/var/run/docker.sock" not in mounts
    logs = acme.logs().decode(errors="replace").splitlines()
    assert any(" services.api " in f" {line} " and "api=dockerapi" in line for line in logs)
    api_log = stack.container("dockerapi").logs().decode(errors="replace").splitlines()
    posts = [line for line in api_log if line.startswith("dockerapi: POST /containers/")]
    consumers = {stack.container(s).id for s in CONSUMERS}
    assert posts and all("'type': 'success'" in line for line in posts), api_log[-20:]
    touched = {line.split("/")[2] for line in posts}
    assert touched <= consumers and len(touched) == len(consumers)


def test_healthcheck_follows_the_ca(stack: ComposeStack) -> None:
    """With the CA unreachable and a renewal due, the HEALTHCHECK turns unhealthy once cycles
    have failed for ACME_HEALTH_FAIL_AFTER; with the CA back and a cycle run (SIGHUP), healthy.

    The CA refuses connections rather than being stopped: Pebble keeps its accounts in memory,
    and a stopped Pebble forgets them (that case is the next test). (Taking it off the network
    would work too, but a name the embedded DNS does not know takes 10 s to fail here: its
    upstream resolvers are unreachable from this engine's networks.)"""
    volume = stack.volume("ssl")
    wait_until(lambda: stack.health("acme") == "healthy", 30, "sidecar healthy", stack)
    stack.refuse("pebble", 14000)
    try:
        (volume / "force_renew").touch()
        stack.container("acme").kill(signal=signal.SIGHUP)
        wait_until(lambda: stack.health("acme") == "unhealthy", 60, "sidecar unhealthy", stack)
        state = stack.client.api.inspect_container(stack.container("acme").id)["State"]
        assert "unhealthy: cycles have failed since" in state["Health"]["Log"][-1]["Output"]
        assert (volume / "force_renew").exists(), "force_renew must stay while cycles fail"
    finally:
        stack.accept("pebble", 14000)
    stack.container("acme").kill(signal=signal.SIGHUP)
    wait_until(lambda: stack.health("acme") == "healthy", 60, "sidecar healthy again", stack)
    wait_until(lambda: not (volume / "force_renew").exists(), 30, "force_renew removed", stack)


def test_ca_restarted_without_the_account(stack: ComposeStack) -> None:
    """`docker-compose stop pebble` and `start pebble`: the CA comes back without the account
    (Pebble keeps accounts in memory). The next cycle (SIGHUP) must still renew: register again
    with the same key, renew, stay healthy."""
    volume = stack.volume("ssl")
    before = stored(volume)
    stack.compose("stop", "pebble")
    stack.compose("start", "pebble")
    wait_until(lambda: stack.health("pebble") == "healthy", 60, "pebble healthy", stack)
    (volume / "force_renew").touch()
    since = datetime.now(UTC)
    stack.container("acme").kill(signal=signal.SIGHUP)

    def logs() -> str:
        return str(stack.container("acme").logs(since=since).decode(errors="replace"))

    def cycle_over() -> bool:
        failed = "force_renew.kept" in logs()  # the cycle ended with errors
        return failed or not (volume / "force_renew").exists()

    wait_until(cycle_over, 60, "a cycle after the CA restart", stack)
    assert not (volume / "force_renew").exists(), logs()
    assert not set(stored(volume).values()) & set(before.values())
    wait_until(lambda: stack.health("acme") == "healthy", 30, "sidecar healthy", stack)
