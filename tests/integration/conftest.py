"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.certs import write_pair
from tests.integration.eab import eab_pebble  # noqa: F401 - a fixture (test_keys, compatible files)
from tests.integration.sidecar import HOST, PROJECT, base_env
from tests.integration.stack import KINDS, Stack
from tests.world import World
from tests.world.pebble import Pebble
from tests.world.proc import free_port

SHORT_VALIDITY = 60  # seconds: the certificates of ``short_pebble``


@contextmanager
def consumer_stack(
    world: World, volume: Path, *, postmap: bool = True, project: str = PROJECT
) -> Iterator[Stack]:
    """``volume`` holding mailcow's snake-oil default pair, served by three consumers (removed
    afterwards), with the sidecar settings that point at them. ``postmap``: the Postfix-like
    one serves SNI names from copies made at start, as mailcow's ``postmap -F`` does.
    ``project``: the compose project of the containers (two stacks side by side)."""
    write_pair(volume, [HOST], domains_file=False)  # the snake-oil cert.pem/key.pem
    ports = {service: free_port() for service, _ in KINDS}
    containers = {
        service: world.docker.run_consumer(
            project, service, kind, ports[service], volume, sni_snapshot=postmap and kind == "smtp"
        )
        for service, kind in KINDS
    }
    env = base_env(world, volume) | {
        "COMPOSE_PROJECT_NAME": project,
        "ACME_VERIFY_SMTP": f"127.0.0.1:{ports['postfix-mailcow']}",
        "ACME_VERIFY_IMAP": f"127.0.0.1:{ports['dovecot-mailcow']}",
        "ACME_VERIFY_HTTPS": f"127.0.0.1:{ports['nginx-mailcow']}",
    }
    try:
        yield Stack(volume, env, containers, ports)
    finally:
        for container in containers.values():
            container.remove(force=True)


@pytest.fixture(scope="module")
def short_pebble(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    """A Pebble of the module's own issuing ``SHORT_VALIDITY``-second certificates (the shared
    one keeps 5 years): the continuity, budget and coalescing tests."""
    pebble = Pebble(
        tmp_path_factory.mktemp("pebble-short"),
        world.dns.port,
        world.nginx.port,
        config={"certificateValidityPeriod": SHORT_VALIDITY},
    )
    pebble.start()
    yield pebble
    pebble.stop()


@pytest.fixture
def stack(world: World, consumer_image: str, tmp_path: Path) -> Iterator[Stack]:
    """A volume holding mailcow's snake-oil default pair, served by three consumers."""
    with consumer_stack(world, tmp_path / "ssl") as built:
        yield built


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    """A fresh, empty certificate volume."""
    path = tmp_path / "ssl"
    path.mkdir()
    return path
