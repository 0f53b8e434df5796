"""The way to the containers (``ACME_DOCKER_API``), chosen anew at each deploy.

``dockerapi`` is mailcow's dockerapi (``adapters/dockerapi.py``), ``socket`` the Docker socket
(``adapters/docker.py``, ``DOCKER_HOST``). ``auto`` takes, at each deploy, the first dockerapi URL
whose host resolves; when none does, the Docker socket if there is one, else dockerapi all the
same: mailcow mounts no socket, so dockerapi is the only way there, and a deploy that cannot
reach it stays owed and is retried (``shell/act.py``). Deciding once at start is what broke
after a host reboot: dockerd starts dockerapi in no set order, and its name resolves only while
it runs. The URLs are tried in order: mailcow's long name first (as acme-mailcow), then its
alias ``dockerapi`` (mailcow#6170: only the alias resolved).

One ``services.api`` line when the way changes (the first one included), never one per deploy.
``waiting_for`` is the start-up probe (``shell/startup.py``): why dockerapi, the way deploys
will take, cannot be reached yet. Host lookups run at once in daemon threads and count as
failed after ``LOOKUP_TIMEOUT`` seconds.
May touch: name resolution (``getaddrinfo``) and whether the Docker socket exists.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

import structlog

from acme_sidecar.adapters.docker import DockerServices
from acme_sidecar.core.consumers import Act, Reaction
from acme_sidecar.core.errors import ServiceError
from acme_sidecar.core.ports import Services

log = structlog.get_logger(__name__)

Mode = Literal["dockerapi", "socket", "auto"]
Resolve = Callable[[str, int], object]
"""``resolve(host, port)``: raises ``OSError`` (``socket.gaierror``) when ``host`` does not
resolve."""

DOCKER_SOCKET = Path("/var/run/docker.sock")  # the Docker SDK's endpoint without DOCKER_HOST
LOOKUP_TIMEOUT = 5.0  # seconds for all the dockerapi names together


def _getaddrinfo(host: str, port: int) -> object:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


def _host(url: str) -> str:
    return urlsplit(url).hostname or url


def _port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


@dataclass(frozen=True, slots=True)
class Way:
    """One choice: ``socket``, or ``dockerapi`` at ``url`` (``None``: no name of it resolves)."""

    api: Literal["dockerapi", "socket"]
    url: str | None = None
    reason: str = field(default="", compare=False)

    def __str__(self) -> str:
        if self.api == "socket":
            return "socket"
        return f"dockerapi {self.url}" if self.url else "dockerapi (no name of it resolves)"


def choose(mode: Mode, urls: Sequence[str], unresolved: Mapping[str, str], has_socket: bool) -> Way:
    """The way for one deploy. ``unresolved``: each URL whose host did not resolve, with why
    (a URL not in it resolved); ``has_socket``: ``DOCKER_HOST`` or the default socket is there."""
    if mode == "socket":
        return Way("socket", reason="ACME_DOCKER_API=socket")
    found = next((u for u in urls if u not in unresolved), None)
    if found is not None:
        return Way("dockerapi", found, f"ACME_DOCKER_API={mode}: {_host(found)} resolves")
    why = "; ".join(f"{_host(u)}: {unresolved[u]}" for u in urls)
    if mode == "auto" and has_socket:
        return Way("socket", reason=f"ACME_DOCKER_API=auto: no dockerapi name resolves ({why})")
    lead = "no Docker socket, so dockerapi; " if mode == "auto" else ""
    reason = (
        f"ACME_DOCKER_API={mode}: {lead}no name of it resolves yet ({why}); "
        "the deploy stays owed and is tried again"
    )
    return Way("dockerapi", None, reason)


def unresolved_urls(
    urls: Sequence[str],
    resolve: Resolve = _getaddrinfo,
    timeout: float = LOOKUP_TIMEOUT,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, str]:
    """The URLs whose host does not resolve, with why; all looked up at once, and a lookup
    still running after ``timeout`` seconds counts as not resolving."""
    reasons = {u: f"no answer within {timeout:g}s" for u in urls}
    lock = threading.Lock()
    done = threading.Semaphore(0)

    def look(url: str) -> None:
        why: str | None = None
        try:
            resolve(_host(url), _port(url))
        except (OSError, UnicodeError, ValueError) as exc:
            why = str(exc) or type(exc).__name__
        with lock:
            if why is None:
                reasons.pop(url, None)
            else:
                reasons[url] = why
        done.release()

    end = clock() + timeout  # counted from before the first lookup starts
    for url in urls:
        threading.Thread(target=look, args=(url,), name="dockerapi-lookup", daemon=True).start()
    for _ in urls:
        if not done.acquire(timeout=max(end - clock(), 0.0)):
            break
    with lock:
        return dict(reasons)


def has_socket(docker_host: str, default: Path = DOCKER_SOCKET) -> bool:
    """Whether the Docker SDK has an endpoint: ``DOCKER_HOST`` (a ``unix://`` one only when
    that socket exists), else the default socket."""
    if docker_host.startswith("unix://"):
        return Path(docker_host.removeprefix("unix://")).is_socket()
    return bool(docker_host) or default.is_socket()


class Unreachable:
    """dockerapi when no name of it resolves: every deploy fails with why (and stays owed)."""

    can_rebuild_map = False

    def __init__(self, services: Sequence[str], why: str) -> None:
        self.services = tuple(services)
        self.why = why

    def way(self) -> Self:
        return self

    def apply(self, actions: Mapping[str, Reaction]) -> dict[str, str]:
        if all(a.act is Act.NONE for a in actions.values()):
            return {}
        raise ServiceError(f"cannot reach mailcow's dockerapi: {self.why}")


class ChosenWay:
    """The consumers of one project, reached the way ``ACME_DOCKER_API`` says; ``way()``
    chooses it for one deploy and logs a change of it."""

    def __init__(
        self,
        mode: Mode,
        *,
        urls: Sequence[str],
        project: str,
        services: Sequence[str],
        docker_host: str = "",
        docker_timeout: int = 60,
        resolve: Resolve = _getaddrinfo,
        socket_path: Path = DOCKER_SOCKET,
        build: Callable[[Way], Services] | None = None,
    ) -> None:
        """``build``: the adapter of a way (tests); by default dockerapi's or the socket's."""
        self.mode: Mode = mode
        self.urls = tuple(urls)
        self.project = project
        self.services = tuple(services)
        self.docker_host = docker_host
        self.docker_timeout = docker_timeout
        self._resolve = resolve
        self._socket_path = socket_path
        self._build = build or self._adapter
        self._last: Way | None = None

    def _adapter(self, way: Way) -> Services:
        if way.api == "socket":
            return DockerServices(self.project, self.services, timeout=self.docker_timeout)
        if way.url is None:
            return Unreachable(self.services, way.reason)
        from acme_sidecar.adapters.dockerapi import DockerapiServices  # requests: at first use

        return DockerapiServices(self.project, self.services, url=way.url)

    def choose(self) -> Way:
        """The way now (nothing logged)."""
        unresolved = {} if self.mode == "socket" else unresolved_urls(self.urls, self._resolve)
        socket_there = has_socket(self.docker_host, self._socket_path)
        return choose(self.mode, self.urls, unresolved, socket_there)

    def way(self) -> Services:
        """The adapter for this deploy; one ``services.api`` line when the way changed."""
        chosen = self.choose()
        if chosen != self._last:
            moved = {"from": str(self._last), "to": str(chosen)} if self._last else {}
            lost = chosen.api == "dockerapi" and chosen.url is None
            (log.warning if lost else log.info)(
                "services.api", api=chosen.api, url=chosen.url, reason=chosen.reason, **moved
            )
            self._last = chosen
        return self._build(chosen)

    @property
    def can_rebuild_map(self) -> bool:
        """Whether the way chosen now can run ``postmap`` (``way()`` is what deploys use)."""
        return self.way().can_rebuild_map

    def apply(self, actions: Mapping[str, Reaction]) -> dict[str, str]:
        """``actions`` done the way chosen now."""
        return self.way().apply(actions)

    def waiting_for(self) -> str | None:
        """At start: why dockerapi, the way deploys would take, cannot be reached yet;
        ``None`` when it can, or when deploys take the socket (``auto`` with a socket: either
        dockerapi resolves or the socket is used, so nothing is looked up)."""
        if self.mode != "dockerapi" and has_socket(self.docker_host, self._socket_path):
            return None
        chosen = self.choose()
        if chosen.api == "dockerapi" and chosen.url is None:
            return chosen.reason
        return None
