"""Issue #8, test 5: each consumer gets what it needs to serve a change, and no more.

The Postfix-like consumer serves SNI names from copies made at its start (mailcow's
``postmap -F hash:/opt/postfix/conf/sni.map``); the Dovecot- and nginx-like ones re-read the
files of the names they know on reload; all three learn new names only at start. The real
sidecar (``once``) runs against Pebble, in SNI mode, through the Docker socket and through the
dockerapi stand-in. Starts, reloads and map rebuilds are counted in each container (kept
across restarts), and every name is read back from every consumer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.integration.sidecar import HOST, Run, cert_dirs, leaf, seed, sidecar
from tests.integration.stack import KINDS, Stack
from tests.world import World
from tests.world.dockerapi import DockerapiServer

POSTFIX, DOVECOT, NGINX = (s for s, _ in KINDS)


@pytest.fixture(params=["socket", "dockerapi"])
def env(request: pytest.FixtureRequest, world: World, stack: Stack) -> Iterator[dict[str, str]]:
    """The sidecar's settings in SNI mode, reaching the consumers one way or the other."""
    base = stack.env | {"ENABLE_SSL_SNI": "y"}
    if request.param == "socket":
        yield base
        return
    server = DockerapiServer(world.docker.docker_host)
    server.start()
    try:
        without_socket = {k: v for k, v in base.items() if k != "DOCKER_HOST"}
        yield without_socket | {"ACME_DOCKER_API": "dockerapi", "ACME_DOCKERAPI_URL": server.url}
    finally:
        server.stop()


def _once(world: World, stack: Stack, env: dict[str, str]) -> Run:
    run = sidecar(env, "once")
    assert run.code == 0, run.stderr
    assert run.named("service.stale") == [], "the table left a consumer stale"
    assert run.named("service.verified")
    for container in stack.containers.values():
        world.docker.wait_ready(container.id)
    return run


def _all_served(stack: Stack) -> dict[str, int]:
    """Every name of every directory, and the default pair, served by every consumer with
    the serial in the volume; returns the serial per directory."""
    serials = {}
    for directory, names in cert_dirs(stack.volume).items():
        serials[directory] = leaf(stack.volume / directory / "cert.pem").serial_number
        for name in names.split():
            for _, kind in KINDS:
                assert stack.serial(kind, name) == serials[directory], (kind, name)
    default = leaf(stack.volume / "cert.pem").serial_number
    assert {stack.serial(kind, None) for _, kind in KINDS} == {default}
    return serials


def _delta(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, str]:
    """Per service: what happened between two counts, as "restart=1 reload=0 postmap=0"."""
    out = {}
    for service, counts in after.items():
        restart = counts["start"] - before[service]["start"]
        reload = counts["reload"] - before[service]["reload"]
        postmap = counts["postmap"] - before[service]["postmap"]
        out[service] = f"restart={restart} reload={reload} postmap={postmap}"
    return out


def _actions(run: Run) -> dict[str, str]:
    lines = run.named("service.reloaded") + run.named("service.restarted")
    assert len(lines) == len({e["service"] for e in lines}), "one line per service"
    return {e["service"]: e["action"] for e in lines}


def test_fewest_restarts_the_table_allows(
    world: World, stack: Stack, env: dict[str, str], totals: Callable[[str, dict[str, int]], None]
) -> None:
    """New directories restart all three. A renewal of the SNI and default certificates
    reloads Dovecot and nginx and rebuilds Postfix's map in place (socket) or restarts Postfix
    (dockerapi cannot run postmap). A name added to an existing SNI directory restarts all
    three. After each step every name is served its new certificate by every consumer."""
    socket = "DOCKER_HOST" in env
    seed(world, ["one.test"])
    counts = stack.events(world)
    assert counts == {s: {"start": 1, "reload": 0, "postmap": 0} for s in stack.containers}

    first = _once(world, stack, env)
    assert _actions(first) == dict.fromkeys(stack.containers, "restart")
    after_first = stack.events(world)
    assert _delta(counts, after_first) == dict.fromkeys(
        stack.containers, "restart=1 reload=0 postmap=0"
    )
    issued = _all_served(stack)
    sni_dir = next(d for d in issued if d != HOST)

    (stack.volume / "force_renew").touch()
    renewal = _once(world, stack, env)
    after_renewal = stack.events(world)
    renewed = _all_served(stack)
    assert all(renewed[d] != issued[d] for d in issued)
    postfix = "restart=0 reload=1 postmap=1" if socket else "restart=1 reload=0 postmap=0"
    assert _delta(after_first, after_renewal) == {
        POSTFIX: postfix,
        DOVECOT: "restart=0 reload=1 postmap=0",
        NGINX: "restart=0 reload=1 postmap=0",
    }
    assert _actions(renewal) == {
        POSTFIX: "rebuild-map-and-reload" if socket else "restart",
        DOVECOT: "reload",
        NGINX: "reload",
    }

    names_before = set(cert_dirs(stack.volume)[sni_dir].split())
    seed(world, ["one.test"], mta_sts=["one.test"])  # mta-sts.one.test joins the directory
    grown = _once(world, stack, env)
    after_grown = stack.events(world)
    assert set(cert_dirs(stack.volume)[sni_dir].split()) == names_before | {"mta-sts.one.test"}
    assert set(cert_dirs(stack.volume)) == set(issued), "the name joined an existing directory"
    grown_serials = _all_served(stack)
    assert grown_serials[sni_dir] != renewed[sni_dir]
    assert grown_serials[HOST] == renewed[HOST]
    assert _actions(grown) == dict.fromkeys(stack.containers, "restart")
    assert _delta(after_renewal, after_grown) == dict.fromkeys(
        stack.containers, "restart=1 reload=0 postmap=0"
    )
    mode = "socket" if socket else "dockerapi"
    for step, (old, new) in {
        "renewal": (after_first, after_renewal),
        "new name": (after_renewal, after_grown),
    }.items():
        totals(
            f"consumer table, {mode}, {step}",
            {
                f"{s.split('-')[0]}_{what}": new[s][what] - old[s][what]
                for s in stack.containers
                for what in ("start", "reload", "postmap")
            },
        )
