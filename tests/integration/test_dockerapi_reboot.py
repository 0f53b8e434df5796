"""Issue #15 item 4: after a host reboot, deploys reach dockerapi once it is there, with no
restart of the sidecar.

On a reboot dockerd starts every container in no set order, and dockerapi's names resolve only
while it runs. Here the sidecar runs as in mailcow: ``ACME_DOCKER_API`` and
``ACME_DOCKERAPI_URL`` unset (so the URLs are mailcow's ``https://dockerapi.<project>_mailcow-
network`` and ``https://dockerapi``, port 443), no ``DOCKER_HOST`` and no Docker socket. The
names are answered by the world's real DNS server (``container_dns/sitecustomize.py`` plays
Docker's embedded DNS): both answer SERVFAIL at the start; later the dockerapi server (the demo's
``demo/dockerapi/server.py`` in front of the world's dockerd) starts on a loopback address and
the short name gets its A record there. The long name never resolves (mailcow#6170).
"""

from __future__ import annotations

import json
import random
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.sidecar import HOST, PROJECT, Daemon, leaf, seed
from tests.integration.stack import KINDS, Stack
from tests.world import World
from tests.world.dockerapi import DockerapiServer

SERVICES = sorted(s for s, _ in KINDS)
POSTFIX = "postfix-mailcow"
LONG = f"dockerapi.{PROJECT}_mailcow-network"
SHORT = "dockerapi"
CONTAINER_DNS = Path(__file__).parent / "container_dns"


@pytest.fixture
def names_gone(world: World) -> Iterator[str]:
    """Both dockerapi names answer SERVFAIL; yields the loopback address the short one gets
    later. Everything is answered as before afterwards."""
    address = f"127.77.{random.randint(1, 254)}.{random.randint(1, 254)}"  # noqa: S311
    for name in (LONG, SHORT):
        world.dns.set_servfail(name)
    try:
        yield address
    finally:
        for name in (LONG, SHORT):
            world.dns.clear_servfail(name)
        world.dns.clear_a(SHORT)


def _events(daemon: Daemon, name: str) -> list[dict[str, Any]]:
    lines = (json.loads(line) for line in daemon.seen if line.startswith("{"))
    return [e for e in lines if e.get("event") == name]


def test_dockerapi_missing_at_start_is_used_once_it_resolves(
    world: World, stack: Stack, names_gone: str
) -> None:
    """dockerapi does not resolve when the daemon starts: one waiting line, bounded
    (ACME_DOCKERAPI_WAIT), and the first deploy stays owed. Once dockerapi runs and its short
    name resolves, the owed deploy and then a renewal go through it, the consumers serve the
    new certificates, and the same daemon process did it all (no restart)."""
    assert not Path("/var/run/docker.sock").exists(), (
        "setup: this host has /var/run/docker.sock, so ACME_DOCKER_API=auto would rightly take "
        "the socket; run this test where only the world's private dockerd exists"
    )
    env = {k: v for k, v in stack.env.items() if k != "DOCKER_HOST"} | {
        "ACME_DOCKERAPI_WAIT": "3s",
        "PYTHONPATH": str(CONTAINER_DNS),
        "TEST_CONTAINER_DNS": f"{world.dns.host}:{world.dns.port}",
        "TEST_CONTAINER_NAMES": f"{LONG},{SHORT}",
    }
    server = DockerapiServer(world.docker.docker_host, host=names_gone, port=443)
    ids = {s: c.id for s, c in stack.containers.items()}
    seed(world, ["one.test"])
    daemon = Daemon(env)
    try:
        waiting = daemon.wait_for("start.waiting", timeout=60)
        gave_up = daemon.wait_for("start.gave_up", timeout=30)
        first = daemon.wait_for("cycle.done", timeout=180)
        assert first["deploy_owed"] is True, daemon.seen[-20:]
        assert server.calls == []

        server.start()  # dockerapi is up ...
        world.dns.clear_servfail(SHORT)  # ... and its alias resolves; the long name never does
        world.dns.add_a(SHORT, [names_gone])
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for("deploy.resumed", timeout=60)
        second = daemon.wait_for("cycle.done", timeout=120)
        assert second.get("deploy_owed") is None, daemon.seen[-20:]
        restarted = sorted(server.posts("restart"))
        for service in SERVICES:
            world.docker.wait_ready(ids[service])
        issued = leaf(stack.volume / HOST / "cert.pem").serial_number
        assert {stack.serial(kind, HOST) for _, kind in KINDS} == {issued}

        (stack.volume / "force_renew").touch()
        daemon.proc.send_signal(signal.SIGHUP)
        third = daemon.wait_for("cycle.done", timeout=180)
        assert third["issued"] >= 1 and third.get("deploy_owed") is None, daemon.seen[-20:]
        world.docker.wait_ready(ids[POSTFIX])
        renewed = leaf(stack.volume / HOST / "cert.pem").serial_number
        assert renewed != issued
        assert {stack.serial(kind, HOST) for _, kind in KINDS} == {renewed}
        assert daemon.proc.poll() is None, "the daemon ran on, never restarted"
    finally:
        stopped = daemon.stop()
        server.stop()
    assert stopped == 0

    assert (waiting["component"], gave_up["component"]) == ("dockerapi", "dockerapi")
    assert [e["component"] for e in _events(daemon, "start.waiting")] == ["dockerapi"]
    failed = [e for e in _events(daemon, "service.failed") if "error" in e]
    assert failed and "cannot reach mailcow's dockerapi" in failed[0]["error"]
    assert restarted == sorted(ids.values())
    assert len(_events(daemon, "service.verified")) == 2
    reloaded = sorted(e["service"] for e in _events(daemon, "service.reloaded"))
    assert reloaded == [s for s in SERVICES if s != POSTFIX]
    assert sorted(server.posts("exec")) == sorted(ids[s] for s in reloaded)
    ways = _events(daemon, "services.api")
    assert [(w["api"], w["url"]) for w in ways] == [
        ("dockerapi", None),
        ("dockerapi", "https://dockerapi"),
    ], "one line per change of the way, none per deploy"
    assert ways[1]["from"] == "dockerapi (no name of it resolves)"
