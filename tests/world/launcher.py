"""Starts test-world components lazily, in parallel threads, and tears them all down.

Each component is started at most once per process; asking for Pebble also starts the
mock DNS and nginx it depends on (concurrently). ``prefetch`` lets the pytest session kick
off everything the collected tests will need before the first test runs. The consumer
image is a component too: its root fs is debootstrapped (or found in the machine's cache)
while dockerd starts, then imported into it. So is the base image of the repository's
Dockerfiles (``compose.base_image``), for the container tests. The DNS-01 world is BIND and
PowerDNS sharing one port (``authdns``), BIND forwarding PowerDNS's zones, and a Pebble of its
own resolving through BIND (``dns01_pebble``). The DANE world's DNS is a signed BIND and a
validating BIND that trusts it (``dane_dns``).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from . import compose, images
from .authdns import (
    BIND_ZONES,
    PDNS_HOST,
    PDNS_ZONES,
    STALE_NAMESERVERS,
    STALE_ZONE,
    shared_port,
)
from .bind import Bind
from .dane import DaneDNS
from .dns import MockDNS
from .docker import DockerWorld
from .mariadb import MariaDB
from .pebble import Pebble
from .powerdns import PowerDNS
from .redis import RedisServer
from .web import Nginx

COMPONENTS = (
    "dns",
    "nginx",
    "pebble",
    "mariadb",
    "docker_world",
    "consumer_image",
    "redis_server",
    "base_image",
    "bind_server",
    "powerdns",
    "dns01_pebble",
    "dane_dns",
)
WORLD_COMPONENTS = ("dns", "nginx", "pebble", "mariadb", "docker_world")


class _Service(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


S = TypeVar("S", bound=_Service)


@dataclass(frozen=True)
class World:
    """All test-world components of one pytest session."""

    dns: MockDNS
    nginx: Nginx
    pebble: Pebble
    mariadb: MariaDB
    docker: DockerWorld


class Launcher:
    """Owns the private root directory and every component started under it."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="aw-", dir="/tmp"))
        self.timings: dict[str, float] = {}
        self._pool = ThreadPoolExecutor(max_workers=len(COMPONENTS), thread_name_prefix="world")
        self._lock = threading.Lock()
        self._futures: dict[str, Future[Any]] = {}
        self._services: list[_Service] = []
        self._closed = False
        self.dns01_port = shared_port()  # BIND's and PowerDNS's (see authdns)

    def _launch(self, name: str, make: Callable[[], S]) -> S:
        began = time.monotonic()
        service = make()
        with self._lock:
            self._services.append(service)
        service.start()
        self.timings[name] = time.monotonic() - began
        return service

    def _future(self, name: str) -> Future[Any]:
        factories: dict[str, Callable[[], object]] = {
            "dns": lambda: self._launch("dns", lambda: MockDNS(self.root / "dns")),
            "nginx": lambda: self._launch("nginx", lambda: Nginx(self.root / "web")),
            "pebble": self._make_pebble,
            "mariadb": lambda: self._launch("mariadb", lambda: MariaDB(self.root / "db")),
            "docker_world": lambda: self._launch("docker", lambda: DockerWorld(self.root / "dk")),
            "consumer_image": self._make_consumer_image,
            "redis_server": lambda: self._launch("redis", lambda: RedisServer(self.root / "redis")),
            "base_image": self._make_base_image,
            "bind_server": lambda: self._launch("bind", self._make_bind),
            "powerdns": lambda: self._launch("powerdns", self._make_powerdns),
            "dns01_pebble": self._make_dns01_pebble,
            "dane_dns": lambda: self._launch("dane_dns", lambda: DaneDNS(self.root / "dane")),
        }
        with self._lock:
            if self._closed:
                raise RuntimeError("test world is already torn down")
            if name not in self._futures:
                self._futures[name] = self._pool.submit(factories[name])
            return self._futures[name]

    def _make_pebble(self) -> Pebble:
        dns_future, nginx_future = self._future("dns"), self._future("nginx")
        dns, nginx = dns_future.result(), nginx_future.result()
        return self._launch("pebble", lambda: Pebble(self.root / "pebble", dns.port, nginx.port))

    def _make_bind(self) -> Bind:
        forwards = {zone: (PDNS_HOST, self.dns01_port) for zone in PDNS_ZONES}
        zones, stale = (*BIND_ZONES, STALE_ZONE), {STALE_ZONE: STALE_NAMESERVERS}
        return Bind(self.root / "bind", zones, forwards, self.dns01_port, nameservers=stale)

    def _make_powerdns(self) -> PowerDNS:
        zones, stale = (*PDNS_ZONES, STALE_ZONE), {STALE_ZONE: STALE_NAMESERVERS}
        return PowerDNS(self.root / "pdns", zones, self.dns01_port, nameservers=stale)

    def _make_dns01_pebble(self) -> Pebble:
        futures = [self._future(name) for name in ("bind_server", "powerdns", "nginx")]
        bind, _, nginx = (future.result() for future in futures)
        return self._launch(
            "dns01_pebble", lambda: Pebble(self.root / "pebble-dns01", bind.port, nginx.port)
        )

    def _make_consumer_image(self) -> str:
        began = time.monotonic()
        docker_future = self._future("docker_world")
        images.consumer_rootfs()
        docker: DockerWorld = docker_future.result()
        tag = docker.consumer_image()
        self.timings["consumer_image"] = time.monotonic() - began
        return tag

    def _make_base_image(self) -> str:
        began = time.monotonic()
        docker: DockerWorld = self._future("docker_world").result()
        tag = compose.base_image(docker.docker_host)
        self.timings["base_image"] = time.monotonic() - began
        return tag

    def prefetch(self, names: Iterable[str]) -> None:
        """Start the named components in the background without waiting for them."""
        for name in names:
            self._future(name)

    def dns(self) -> MockDNS:
        """The mock DNS server (started on first use)."""
        result: MockDNS = self._future("dns").result()
        return result

    def nginx(self) -> Nginx:
        """The nginx challenge webserver (started on first use)."""
        result: Nginx = self._future("nginx").result()
        return result

    def pebble(self) -> Pebble:
        """Pebble, after the DNS and nginx it depends on (started on first use)."""
        result: Pebble = self._future("pebble").result()
        return result

    def mariadb(self) -> MariaDB:
        """The MariaDB server (started on first use)."""
        result: MariaDB = self._future("mariadb").result()
        return result

    def docker_world(self) -> DockerWorld:
        """The private docker daemon (started on first use)."""
        result: DockerWorld = self._future("docker_world").result()
        return result

    def consumer_image(self) -> str:
        """Tag of the TLS consumer image in the private dockerd (built on first use)."""
        result: str = self._future("consumer_image").result()
        return result

    def base_image(self) -> str:
        """Tag of the repository's Debian base image in the private dockerd (imported on first
        use; debootstrapped when the machine's cache has none)."""
        result: str = self._future("base_image").result()
        return result

    def redis_server(self) -> RedisServer:
        """The Redis server standing in for mailcow's (started on first use)."""
        result: RedisServer = self._future("redis_server").result()
        return result

    def bind_server(self) -> Bind:
        """BIND: the ``BIND_ZONES`` and ``STALE_ZONE``, forwarding the ``PDNS_ZONES`` (started
        on first use)."""
        result: Bind = self._future("bind_server").result()
        return result

    def powerdns(self) -> PowerDNS:
        """PowerDNS with the API: the ``PDNS_ZONES`` and the frozen copy of ``STALE_ZONE``
        (started on first use)."""
        result: PowerDNS = self._future("powerdns").result()
        return result

    def dns01_pebble(self) -> Pebble:
        """A Pebble resolving through BIND (so both servers' zones), after BIND, PowerDNS and
        nginx (HTTP-01 of the zones' names lands on nginx too); started on first use."""
        result: Pebble = self._future("dns01_pebble").result()
        return result

    def dane_dns(self) -> DaneDNS:
        """The DANE world's DNS: BIND serving ``dane.SIGNED_ZONE`` signed (and an unsigned
        zone), and a validating BIND on 127.0.0.1:53 trusting it (started on first use)."""
        result: DaneDNS = self._future("dane_dns").result()
        return result

    def world(self) -> World:
        """Every component of ``World``, started in parallel."""
        self.prefetch(WORLD_COMPONENTS)
        return World(self.dns(), self.nginx(), self.pebble(), self.mariadb(), self.docker_world())

    def close(self) -> None:
        """Stop every started component (in parallel) and remove the private directory."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            futures = list(self._futures.values())
        wait(futures)
        with self._lock:
            services = list(self._services)
        stops = [self._pool.submit(service.stop) for service in services]
        errors = [f.exception() for f in stops if f.exception() is not None]
        self._pool.shutdown(wait=True)
        shutil.rmtree(self.root, ignore_errors=True)
        if errors:
            raise RuntimeError(f"test world teardown failed: {errors[0]!r}")
