"""Issue #8: which consumer is reloaded, has its map rebuilt or is restarted, for each change."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from structlog.testing import capture_logs

from acme_sidecar.adapters.docker import DockerServices
from acme_sidecar.core.consumers import (
    Act,
    Change,
    ConsumerKind,
    Reaction,
    kind_of,
    reactions,
    reactions_by_kind,
)

N, L, R, B, S = Act.NONE, Act.RELOAD, Act.REBUILD, Act.RESTART, "one.test"
SERVICES = ("postfix-mailcow", "dovecot-mailcow", "nginx-mailcow", "sogo-mailcow")

# default pair written, SNI directories written, layout changed, the Docker socket (True) or
# dockerapi (False) -> postfix, dovecot, nginx, other
TABLE = [
    (False, False, False, True, (N, N, N, N)),
    (False, False, False, False, (N, N, N, N)),
    (True, False, False, True, (L, L, L, B)),
    (True, False, False, False, (L, L, L, B)),
    (False, True, False, True, (R, L, L, B)),
    (False, True, False, False, (B, L, L, B)),
    (True, True, False, True, (R, L, L, B)),
    (True, True, False, False, (B, L, L, B)),
    (False, False, True, True, (B, B, B, B)),
    (False, False, True, False, (B, B, B, B)),
    (True, False, True, True, (B, B, B, B)),
    (True, False, True, False, (B, B, B, B)),
    (False, True, True, True, (B, B, B, B)),
    (False, True, True, False, (B, B, B, B)),
    (True, True, True, True, (B, B, B, B)),
    (True, True, True, False, (B, B, B, B)),
]


@pytest.mark.parametrize(("default", "sni", "layout", "socket", "expected"), TABLE)
def test_the_table(
    default: bool, sni: bool, layout: bool, socket: bool, expected: tuple[Act, ...]
) -> None:
    """Every combination of what changed and the way to the containers gets the action the
    consumer needs, each with a reason."""
    change = Change(default=default, dirs=frozenset({S} if sni else set()), layout=layout)
    table = reactions_by_kind(change, can_rebuild_map=socket)
    kinds = (ConsumerKind.POSTFIX, ConsumerKind.DOVECOT, ConsumerKind.NGINX, ConsumerKind.OTHER)
    assert tuple(table[k].act for k in kinds) == expected
    assert all(table[k].reason for k in kinds)


def test_reasons_say_why() -> None:
    """The reasons name what the consumer builds at start and why dockerapi restarts."""
    sni = Change(dirs=frozenset({"b.test", "a.test", "c.test", "d.test"}))
    socket = reactions_by_kind(sni, can_rebuild_map=True)[ConsumerKind.POSTFIX].reason
    assert "a.test, b.test, c.test and 1 more" in socket and "postmap -F" in socket
    assert (
        "dockerapi cannot run postmap"
        in reactions_by_kind(sni, can_rebuild_map=False)[ConsumerKind.POSTFIX].reason
    )
    layout = reactions_by_kind(Change(layout=True), can_rebuild_map=True)
    assert "sni.map is built at start" in layout[ConsumerKind.POSTFIX].reason
    assert "SNI configuration is built at start" in layout[ConsumerKind.DOVECOT].reason
    default = reactions_by_kind(Change(default=True), can_rebuild_map=False)
    assert default[ConsumerKind.POSTFIX] == Reaction(Act.RELOAD, "the default certificate changed")


@pytest.mark.parametrize(
    ("service", "kind"),
    [
        ("postfix-mailcow", ConsumerKind.POSTFIX),
        ("dovecot-mailcow", ConsumerKind.DOVECOT),
        ("nginx-mailcow", ConsumerKind.NGINX),
        ("mypostfix", ConsumerKind.POSTFIX),
        ("sogo-mailcow", ConsumerKind.OTHER),
        ("", ConsumerKind.OTHER),
    ],
)
def test_kind_by_a_word_in_the_service_name(service: str, kind: ConsumerKind) -> None:
    """Services are matched to kinds by a word in their compose service name."""
    assert kind_of(service) is kind


def test_plan_leaves_untouched_services_out() -> None:
    """Services with nothing to do are not in the plan; the rest get their kind's action."""
    assert reactions(SERVICES, Change(), can_rebuild_map=True) == {}
    chosen = reactions(SERVICES, Change(dirs=frozenset({S})), can_rebuild_map=True)
    acts = {s: a.act for s, a in chosen.items()}
    assert acts == {
        "postfix-mailcow": R,
        "dovecot-mailcow": L,
        "nginx-mailcow": L,
        "sogo-mailcow": B,
    }


# --- the Docker socket adapter runs the commands of each action ---------------------------


@dataclass
class Result:
    exit_code: int
    output: bytes = b""


@dataclass
class FakeContainer:
    """A container that records exec'd commands; ``fail`` commands exit 1."""

    name: str
    labels: dict[str, str]
    fail: set[str] = field(default_factory=set)
    log: list[str] = field(default_factory=list)

    def exec_run(self, argv: list[str]) -> Result:
        command = " ".join(argv)
        self.log.append(command)
        return Result(1, b"postmap: fatal") if argv[0] in self.fail else Result(0)

    def restart(self, timeout: int) -> None:
        self.log.append("restart")


class FakeClient:
    def __init__(self, containers: list[FakeContainer]) -> None:
        self.containers = self
        self._all = containers

    def list(self, filters: dict[str, Any]) -> list[FakeContainer]:
        return self._all

    def close(self) -> None:
        """Nothing to close."""


def _container(service: str, fail: set[str] | None = None) -> FakeContainer:
    labels = {"com.docker.compose.project": "acmetest", "com.docker.compose.service": service}
    return FakeContainer(f"acmetest-{service}-1", labels, fail or set())


def test_socket_rebuilds_postfix_map_then_reloads() -> None:
    """Through the socket, Postfix's map is rebuilt with postmap -F, then Postfix reloads with
    mailcow's config directory; one log line names service, container, action and reason."""
    postfix, nginx = _container("postfix-mailcow"), _container("nginx-mailcow")
    services = DockerServices(
        "acmetest", SERVICES, client_factory=lambda: FakeClient([postfix, nginx])
    )
    actions = reactions(services.services, Change(dirs=frozenset({S})), can_rebuild_map=True)
    with capture_logs() as logs:
        done = services.apply({s: actions[s] for s in ("postfix-mailcow", "nginx-mailcow")})
    assert done == {"postfix-mailcow": "rebuilt", "nginx-mailcow": "reloaded"}
    assert postfix.log == [
        "postmap -F hash:/opt/postfix/conf/sni.map",
        "postfix -c /opt/postfix/conf reload",
    ]
    assert nginx.log == ["nginx -s reload"]
    lines = [e for e in logs if e["event"] == "service.reloaded"]
    assert [(e["service"], e["container"], e["action"]) for e in lines] == [
        ("postfix-mailcow", "acmetest-postfix-mailcow-1", "rebuild-map-and-reload"),
        ("nginx-mailcow", "acmetest-nginx-mailcow-1", "reload"),
    ]
    assert all(e["reason"] for e in lines)


def test_failed_rebuild_falls_back_to_restart() -> None:
    """A postmap that fails stops the rebuild (no reload) and restarts the container."""
    postfix = _container("postfix-mailcow", fail={"postmap"})
    services = DockerServices(
        "acmetest", ["postfix-mailcow"], client_factory=lambda: FakeClient([postfix])
    )
    with capture_logs() as logs:
        done = services.apply({"postfix-mailcow": Reaction(Act.REBUILD, "sni.map holds copies")})
    assert done == {"postfix-mailcow": "restarted"}
    assert postfix.log == ["postmap -F hash:/opt/postfix/conf/sni.map", "restart"]
    assert [e["event"] for e in logs] == ["service.reload_failed", "service.restarted"]
    assert logs[1]["reason"] == "map rebuild or reload did not work"


def test_none_touches_nothing() -> None:
    """An action of ``none`` does not even connect to Docker."""

    def refuse() -> FakeClient:
        raise AssertionError("connected")

    services = DockerServices("acmetest", SERVICES, client_factory=refuse)
    assert services.apply({"nginx-mailcow": Reaction(Act.NONE, "nothing changed")}) == {}
