"""Session fixtures for the real-component test world (see ``tests/world``).

Components start lazily, only when a collected test needs them; the ones the selected
tests need are started in parallel right after collection, and all are torn down at the
end of the session. A missing binary is an error, never a skip.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.world.bind import Bind
from tests.world.dane import DaneDNS
from tests.world.dns import MockDNS
from tests.world.docker import DockerWorld
from tests.world.launcher import COMPONENTS, Launcher, World
from tests.world.mariadb import MariaDB
from tests.world.pebble import Pebble
from tests.world.powerdns import PowerDNS
from tests.world.redis import RedisServer
from tests.world.web import Nginx

_LAUNCHER = pytest.StashKey[Launcher]()
_TOTALS = pytest.StashKey[dict[str, dict[str, int]]]()
_INTEGRATION_DIR = Path(__file__).resolve().parent / "integration"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: uses real services of the test world (tests/world)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)


def _launcher(config: pytest.Config) -> Launcher:
    if _LAUNCHER not in config.stash:
        launcher = Launcher()
        atexit.register(launcher.close)
        config.stash[_LAUNCHER] = launcher
    return config.stash[_LAUNCHER]


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    needed = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    wanted = [name for name in COMPONENTS if name in needed]
    if wanted:
        _launcher(session.config).prefetch(wanted)


def pytest_sessionfinish(session: pytest.Session) -> None:
    launcher = session.config.stash.get(_LAUNCHER, None)
    if launcher is not None:
        launcher.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    launcher = terminalreporter.config.stash.get(_LAUNCHER, None)
    if launcher is not None and launcher.timings:
        times = ", ".join(f"{k} {v:.2f}s" for k, v in sorted(launcher.timings.items()))
        terminalreporter.write_line(f"test world startup: {times}")
    for title, counts in terminalreporter.config.stash.get(_TOTALS, {}).items():
        terminalreporter.write_line(f"{title}: " + " ".join(f"{k}={v}" for k, v in counts.items()))


@pytest.fixture
def totals(pytestconfig: pytest.Config) -> Callable[[str, dict[str, int]], None]:
    """Add counts to a line printed in the run's summary (``title: key=N ...``), so numbers a
    suite must show (e.g. the fault-injection tally) appear without ``-s``."""
    table = pytestconfig.stash.setdefault(_TOTALS, {})

    def add(title: str, counts: dict[str, int]) -> None:
        line = table.setdefault(title, {})
        for key, value in counts.items():
            line[key] = line.get(key, 0) + value

    return add


@pytest.fixture(scope="session")
def world_launcher(pytestconfig: pytest.Config) -> Launcher:
    """The launcher owning every test-world component of this session."""
    return _launcher(pytestconfig)


@pytest.fixture(scope="session")
def dns(world_launcher: Launcher) -> MockDNS:
    """Mock DNS (pebble-challtestsrv): every name resolves to 127.0.0.1 by default."""
    return world_launcher.dns()


@pytest.fixture(scope="session")
def nginx(world_launcher: Launcher) -> Nginx:
    """nginx serving ``nginx.webroot`` as ``/.well-known/acme-challenge/``."""
    return world_launcher.nginx()


@pytest.fixture(scope="session")
def pebble(dns: MockDNS, nginx: Nginx, world_launcher: Launcher) -> Pebble:
    """Pebble ACME CA resolving through ``dns`` and validating HTTP-01 via ``nginx``."""
    return world_launcher.pebble()


@pytest.fixture(scope="session")
def mariadb(world_launcher: Launcher) -> MariaDB:
    """MariaDB with the mailcow database, user and tables."""
    return world_launcher.mariadb()


@pytest.fixture(scope="session")
def docker_world(world_launcher: Launcher) -> Iterator[DockerWorld]:
    """Private dockerd with the ``acme-test-busybox`` image."""
    yield world_launcher.docker_world()


@pytest.fixture(scope="session")
def consumer_image(world_launcher: Launcher, docker_world: DockerWorld) -> str:
    """Tag of the Debian TLS consumer image in ``docker_world`` (see ``DockerWorld.run_consumer``).

    The root fs is debootstrapped once per machine (about a minute) and cached under
    ``/var/cache/acme-sidecar-tests``; each session imports it (a few seconds).
    """
    return world_launcher.consumer_image()


@pytest.fixture(scope="session")
def base_image(world_launcher: Launcher, docker_world: DockerWorld) -> str:
    """Tag of the image the repository's Dockerfiles build ``FROM`` in ``docker_world``.

    ``helper-scripts/build-base-image.sh`` debootstraps it once per machine (cached under
    ``/var/cache/acme-sidecar-tests``); each session imports it (a few seconds).
    """
    return world_launcher.base_image()


@pytest.fixture(scope="session")
def redis_server(world_launcher: Launcher) -> RedisServer:
    """Redis with a password, standing in for mailcow's ``redis-mailcow``."""
    return world_launcher.redis_server()


@pytest.fixture(scope="session")
def bind_server(world_launcher: Launcher) -> Bind:
    """BIND 9 authoritative for ``authdns.BIND_ZONES`` and ``STALE_ZONE`` (TSIG updates),
    forwarding ``authdns.PDNS_ZONES`` to ``powerdns``; on the same port as ``powerdns``."""
    return world_launcher.bind_server()


@pytest.fixture(scope="session")
def powerdns(world_launcher: Launcher) -> PowerDNS:
    """PowerDNS (gsqlite3, API on) authoritative for ``authdns.PDNS_ZONES`` and for a copy of
    ``authdns.STALE_ZONE`` that never changes (its second NS)."""
    return world_launcher.powerdns()


@pytest.fixture(scope="session")
def dns01_pebble(
    bind_server: Bind, powerdns: PowerDNS, nginx: Nginx, world_launcher: Launcher
) -> Pebble:
    """A Pebble of its own whose DNS is ``bind_server``: DNS-01 for names of both servers'
    zones (HTTP-01 of those names lands on ``nginx``, their A records being 127.0.0.x)."""
    return world_launcher.dns01_pebble()


@pytest.fixture(scope="session")
def dane_dns(world_launcher: Launcher) -> DaneDNS:
    """BIND serving ``example.test`` DNSSEC-signed (and ``plain.test`` unsigned), TLSA records
    set with ``nsupdate``; a validating BIND on 127.0.0.1:53 that trusts the signed zone."""
    return world_launcher.dane_dns()


@pytest.fixture(scope="session")
def world(
    dns: MockDNS, nginx: Nginx, pebble: Pebble, mariadb: MariaDB, docker_world: DockerWorld
) -> World:
    """All test-world components bundled in a frozen dataclass."""
    return World(dns=dns, nginx=nginx, pebble=pebble, mariadb=mariadb, docker=docker_world)
