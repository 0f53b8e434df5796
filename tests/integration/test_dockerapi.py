"""Issue #8: the sidecar reaches the consumers through a mailcow-like dockerapi, no socket.

``tests/world/dockerapi.py`` serves mailcow's dockerapi contract over HTTPS (a self-signed
certificate made at its start) in front of the world's real dockerd. The sidecar gets no
``DOCKER_HOST``: everything it does to containers goes through that server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.sidecar import HOST, leaf, seed, sidecar
from tests.integration.stack import KINDS, Stack
from tests.world import World
from tests.world.dockerapi import DockerapiServer

SERVICES = sorted(s for s, _ in KINDS)
POSTFIX = "postfix-mailcow"


@pytest.fixture
def dockerapi(world: World) -> Iterator[DockerapiServer]:
    """The dockerapi stand-in in front of the world's dockerd."""
    server = DockerapiServer(world.docker.docker_host)
    server.start()
    yield server
    server.stop()


def _env(stack: Stack, server: DockerapiServer) -> dict[str, str]:
    env = {k: v for k, v in stack.env.items() if k != "DOCKER_HOST"}
    return env | {"ACME_DOCKER_API": "dockerapi", "ACME_DOCKERAPI_URL": server.url}


def test_issue_restart_and_reload_through_dockerapi(
    world: World, stack: Stack, dockerapi: DockerapiServer
) -> None:
    """Without the Docker socket, a new certificate restarts the three consumers and a
    renewal reloads Dovecot and nginx and restarts Postfix (its sni.map holds copies that
    dockerapi cannot rebuild), all through dockerapi; they serve the new certificates and a
    container of another project with the same service name is never touched."""
    decoy = world.docker.run_service("decoy", "postfix-mailcow")
    decoy_started = world.docker.started_at(decoy.id)
    ids = {s: c.id for s, c in stack.containers.items()}
    try:
        seed(world, ["one.test"])
        first = sidecar(_env(stack, dockerapi), "once")
        assert first.code == 0, first.stderr
        assert [e["api"] for e in first.named("services.api")] == ["dockerapi"]
        assert sorted(e["service"] for e in first.named("service.restarted")) == SERVICES
        assert first.named("service.verified")
        assert sorted(dockerapi.posts("restart")) == sorted(ids.values())
        for service in SERVICES:
            world.docker.wait_ready(ids[service])
        issued = leaf(stack.volume / HOST / "cert.pem").serial_number
        assert {stack.serial(kind, HOST) for _, kind in KINDS} == {issued}

        started = stack.started(world)
        (stack.volume / "force_renew").touch()
        renewal = sidecar(_env(stack, dockerapi), "once")
        assert renewal.code == 0, renewal.stderr
        assert renewal.named("service.stale") == []
        assert [e["service"] for e in renewal.named("service.restarted")] == [POSTFIX]
        reloaded = sorted(e["service"] for e in renewal.named("service.reloaded"))
        assert reloaded == [s for s in SERVICES if s != POSTFIX]
        assert sorted(dockerapi.posts("exec")) == sorted(ids[s] for s in reloaded)
        world.docker.wait_ready(ids[POSTFIX])
        now = stack.started(world)
        assert {s for s in SERVICES if now[s] != started[s]} == {POSTFIX}
        assert stack.reloads(world) == {s: int(s != POSTFIX) for s in SERVICES}
        renewed = leaf(stack.volume / HOST / "cert.pem").serial_number
        assert renewed != issued
        assert {stack.serial(kind, HOST) for _, kind in KINDS} == {renewed}

        assert decoy.id not in dockerapi.posts("restart") + dockerapi.posts("exec")
        assert world.docker.started_at(decoy.id) == decoy_started
        assert world.docker.reloads(decoy.id) == 0
    finally:
        decoy.remove(force=True)


def test_failed_reload_restarts_through_dockerapi(
    world: World, stack: Stack, dockerapi: DockerapiServer
) -> None:
    """When dockerapi answers a reload with ``danger``, the consumer is restarted instead and
    serves the renewed certificate (Postfix is restarted by the table, without a reload)."""
    seed(world, ["one.test"])
    first = sidecar(_env(stack, dockerapi), "once")
    assert first.code == 0, first.stderr
    for container in stack.containers.values():
        world.docker.wait_ready(container.id)
    started = stack.started(world)

    dockerapi.fail_reloads = True
    (stack.volume / "force_renew").touch()
    renewal = sidecar(_env(stack, dockerapi), "once")
    assert renewal.code == 0, renewal.stderr
    assert renewal.named("service.reloaded") == []
    failed = sorted(e["service"] for e in renewal.named("service.reload_failed"))
    assert failed == [s for s in SERVICES if s != POSTFIX]
    restarted = renewal.named("service.restarted")
    assert sorted(e["service"] for e in restarted) == SERVICES
    assert {e["reason"] for e in restarted if e["service"] != POSTFIX} == {"reload did not work"}
    for service, container in stack.containers.items():
        world.docker.wait_ready(container.id)
        assert world.docker.started_at(container.id) != started[service]
    renewed = leaf(stack.volume / HOST / "cert.pem").serial_number
    assert {stack.serial(kind, HOST) for _, kind in KINDS} == {renewed}
