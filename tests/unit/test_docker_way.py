"""Issue #15 item 4: ACME_DOCKER_API is chosen anew at each deploy (reboots), the dockerapi's
long and short names are both tried, and a change of the way is one line, not one per deploy."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from acme_sidecar.adapters.docker import DockerServices
from acme_sidecar.adapters.docker_way import (
    ChosenWay,
    Mode,
    Unreachable,
    Way,
    choose,
    has_socket,
    unresolved_urls,
)
from acme_sidecar.adapters.dockerapi import DockerapiServices
from acme_sidecar.config.policies import DeployPolicy
from acme_sidecar.core.consumers import Act, Change, Reaction
from acme_sidecar.core.errors import ServiceError
from acme_sidecar.shell.deploy import deploy
from tests.unit.fakes import FakeServices

LONG = "https://dockerapi.x_mailcow-network"
SHORT = "https://dockerapi"
URLS = (LONG, SHORT)
GONE = "Name or service not known"


@pytest.mark.parametrize(
    ("mode", "unresolved", "socket_there", "expected"),
    [
        ("socket", {LONG: GONE, SHORT: GONE}, False, Way("socket")),
        ("auto", {}, False, Way("dockerapi", LONG)),  # both resolve: the long name, as before
        ("auto", {}, True, Way("dockerapi", LONG)),
        ("auto", {LONG: GONE}, False, Way("dockerapi", SHORT)),  # mailcow#6170
        ("auto", {SHORT: GONE}, False, Way("dockerapi", LONG)),
        ("auto", {LONG: GONE, SHORT: GONE}, True, Way("socket")),
        ("auto", {LONG: GONE, SHORT: GONE}, False, Way("dockerapi", None)),  # mailcow: no socket
        ("dockerapi", {LONG: GONE, SHORT: GONE}, True, Way("dockerapi", None)),
        ("dockerapi", {LONG: GONE}, True, Way("dockerapi", SHORT)),
    ],
)
def test_choice_of_the_way(
    mode: Mode, unresolved: dict[str, str], socket_there: bool, expected: Way
) -> None:
    """The first dockerapi name that resolves wins (long, then short); with none, ``auto``
    takes the socket only when there is one, else dockerapi all the same; ``socket`` and
    ``dockerapi`` never take the other way."""
    chosen = choose(mode, URLS, unresolved, socket_there)
    assert chosen == expected
    assert chosen.reason.startswith(f"ACME_DOCKER_API={mode}")


def test_no_name_resolving_says_why_for_each_name() -> None:
    """The reason of an unreachable dockerapi names each name tried and its lookup error."""
    chosen = choose("auto", URLS, {LONG: GONE, SHORT: "timed out"}, False)
    assert "dockerapi.x_mailcow-network: Name or service not known" in chosen.reason
    assert "dockerapi: timed out" in chosen.reason
    assert "no Docker socket" in chosen.reason


class Names:
    """A resolver that knows the names in ``known`` (changed by the test) and counts lookups."""

    def __init__(self, *known: str) -> None:
        self.known = set(known)
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> object:
        self.asked.append(host)
        if host not in self.known:
            raise socket.gaierror(socket.EAI_NONAME, GONE)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]


def _way(names: Names, tmp_path: Path, mode: Mode = "auto", **kw: Any) -> ChosenWay:
    return ChosenWay(
        mode,
        urls=URLS,
        project="x",
        services=["postfix-mailcow"],
        resolve=names,
        socket_path=tmp_path / "docker.sock",
        **kw,
    )


def test_each_deploy_chooses_again(tmp_path: Path) -> None:
    """No name at start and no socket: dockerapi, whose deploy fails with why; once the short
    name resolves, the next deploy goes to it, without a new ``ChosenWay`` (no restart)."""
    names = Names()
    way = _way(names, tmp_path)
    first = way.way()
    assert isinstance(first, Unreachable)
    with pytest.raises(ServiceError, match=r"cannot reach mailcow.s dockerapi: .*dockerapi:"):
        first.apply({"postfix-mailcow": Reaction(Act.RESTART, "new directory")})
    names.known.add("dockerapi")
    later = way.way()
    assert isinstance(later, DockerapiServices)
    assert later.url == SHORT
    names.known.add("dockerapi.x_mailcow-network")
    assert way.way().url == LONG  # type: ignore[attr-defined]


def test_one_line_per_change_of_the_way_not_per_deploy(tmp_path: Path) -> None:
    """Three deploys on one way give one ``services.api`` line; a change gives one more with
    from and to; the way lost is a warning, the way found again an info line."""
    names = Names()
    way = _way(names, tmp_path)
    with capture_logs() as logs:
        for _ in range(3):
            way.way()
        names.known.add("dockerapi")
        for _ in range(3):
            way.way()
    lines = [e for e in logs if e["event"] == "services.api"]
    assert [(e["log_level"], e["api"], e["url"]) for e in lines] == [
        ("warning", "dockerapi", None),
        ("info", "dockerapi", SHORT),
    ]
    assert "from" not in lines[0]
    assert lines[1]["from"] == "dockerapi (no name of it resolves)"
    assert lines[1]["to"] == f"dockerapi {SHORT}"
    assert "dockerapi resolves" in lines[1]["reason"]


@pytest.fixture
def docker_socket(tmp_path: Path) -> Iterator[Path]:
    """A real unix socket at a path of the test's own (the default's stand-in)."""
    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        yield path


def test_auto_with_a_socket_falls_back_and_comes_back(tmp_path: Path, docker_socket: Path) -> None:
    """With a Docker socket, ``auto`` takes it while no dockerapi name resolves and goes back
    to dockerapi once one does; neither needs a wait at start, so none is looked up for it."""
    names = Names()
    way = _way(names, tmp_path)
    assert isinstance(way.way(), DockerServices)
    names.asked.clear()
    assert way.waiting_for() is None and names.asked == []
    names.known.add("dockerapi.x_mailcow-network")
    assert isinstance(way.way(), DockerapiServices)


def test_start_waits_only_when_deploys_need_dockerapi(tmp_path: Path) -> None:
    """``waiting_for`` says why while no dockerapi name resolves and there is no socket;
    ``None`` once one resolves, and always in ``socket`` mode (no lookup made)."""
    names = Names()
    reason = _way(names, tmp_path).waiting_for()
    assert reason is not None and "no name of it resolves yet" in reason
    names.known.add("dockerapi")
    assert _way(names, tmp_path).waiting_for() is None
    names.asked.clear()
    assert _way(Names(), tmp_path, mode="socket").waiting_for() is None
    assert names.asked == []


def test_the_deploy_reacts_for_the_way_chosen_now(tmp_path: Path) -> None:
    """The reactions follow the way of this deploy: the socket rebuilds Postfix's map, the
    dockerapi restarts Postfix, for the same change."""
    ways = {"socket": FakeServices(services=("postfix",), can_rebuild_map=True)}
    ways["dockerapi"] = FakeServices(services=("postfix",), can_rebuild_map=False)
    names = Names()
    way = _way(names, tmp_path, mode="dockerapi", build=lambda w: ways["dockerapi"])
    by_socket = _way(names, tmp_path, mode="socket", build=lambda w: ways["socket"])
    change = Change(dirs=frozenset({"mail"}))
    deploy(DeployPolicy(), by_socket, {}, change=change)
    deploy(DeployPolicy(), way, {}, change=change)
    assert ways["socket"].calls == [{"postfix": Act.REBUILD}]
    assert ways["dockerapi"].calls == [{"postfix": Act.RESTART}]


def test_has_socket(tmp_path: Path, docker_socket: Path) -> None:
    """DOCKER_HOST counts (a unix one only when its socket exists), else the default socket."""
    missing = tmp_path / "none.sock"
    assert has_socket("tcp://docker:2375", missing)
    assert not has_socket(f"unix://{missing}", docker_socket)
    assert has_socket(f"unix://{docker_socket}", missing)
    assert has_socket("", docker_socket)
    assert not has_socket("", missing)
    (tmp_path / "plain").write_text("")
    assert not has_socket("", tmp_path / "plain")


def test_a_hanging_lookup_counts_as_not_resolving() -> None:
    """A lookup still running at the timeout is no answer; the other name still counts."""
    release = threading.Event()

    def resolve(host: str, port: int) -> object:
        if host == "dockerapi.x_mailcow-network":
            release.wait(5)
            raise socket.gaierror(socket.EAI_AGAIN, "late")
        return []

    try:
        unresolved = unresolved_urls(URLS, resolve, timeout=0.05)
    finally:
        release.set()
    assert unresolved == {LONG: "no answer within 0.05s"}
    assert choose("auto", URLS, unresolved, False) == Way("dockerapi", SHORT)
