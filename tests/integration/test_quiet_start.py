"""Issue #8: a quiet start. The daemon waits for MariaDB without alarming mailcow's watchdog.

mailcow's watchdog mails on every change of Redis' ``ACME_FAIL_TIME``. On a mailcow start or
update MariaDB often comes up after this container: the daemon waits for it quietly (one
``start.waiting`` line, no ``ACME_FAIL_TIME``) and issues once it is up. Only after
``ACME_DB_WAIT`` is the database being down a failure the watchdog hears of.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from acme_sidecar.shell.startup import LADDER
from tests.integration.sidecar import HOST, Daemon, base_env, cert_dirs, seed
from tests.world import World
from tests.world.redis import RedisServer

pytestmark = pytest.mark.slow  # minutes: left out by -m "not slow" (README, Run the tests)

# Seconds MariaDB stays down after the daemon started. The issue spoke of 2 minutes; what the wait
# does in them is its ladder (1, 2, 5, 10, 15 s) and then a try every 30 s, far inside the default
# ACME_DB_WAIT of 10 minutes. 40 s covers the whole ladder and one 30 s step, so the 2-minute
# outage is the same test 80 s longer.
DOWN_AT_START = sum(LADDER) + 7.0


def redis_env(world: World, volume: Path, redis_server: RedisServer) -> dict[str, str]:
    return base_env(world, volume) | {
        "REDISPASS": redis_server.password,
        "ACME_REDIS_HOST": redis_server.host,
        "ACME_REDIS_PORT": str(redis_server.port),
        "ACME_DB_RETRY_INTERVAL": "1",
    }


@pytest.fixture
def db_down(world: World) -> Iterator[None]:
    """MariaDB stopped for the test (seeded with one domain before); running again
    afterwards whatever happened."""
    seed(world, ["one.test"])
    world.mariadb.stop()
    try:
        yield
    finally:
        if not world.mariadb.running():
            world.mariadb.start()


def events(daemon: Daemon, name: str) -> list[str]:
    return [line for line in daemon.seen if f'"event": "{name}"' in line]


@pytest.mark.usefixtures("db_down")
def test_mariadb_down_at_start_is_waited_for_quietly(
    world: World, volume: Path, redis_server: RedisServer
) -> None:
    """MariaDB down at start past the whole retry ladder (40 s, under the default ACME_DB_WAIT):
    one waiting line, no ACME_FAIL_TIME, and the certificates are issued once it is up."""
    redis_server.reset()
    daemon = Daemon(redis_env(world, volume, redis_server))
    try:
        daemon.wait_for("start.waiting", timeout=60)
        time.sleep(DOWN_AT_START)
        assert daemon.proc.poll() is None
        world.mariadb.start()
        ready = daemon.wait_for("start.ready", timeout=60)
        done = daemon.wait_for("cycle.done", timeout=120)
        assert done["outcome"] == "ok", daemon.seen[-20:]
    finally:
        stopped = daemon.stop()
    assert stopped == 0
    waiting = events(daemon, "start.waiting")
    assert len(waiting) == 1 and '"component": "database"' in waiting[0]
    assert float(ready["waited"].rstrip("s")) >= DOWN_AT_START
    assert not events(daemon, "db.unreachable"), "no failed cycle while waiting"
    assert redis_server.client().get("ACME_FAIL_TIME") is None
    assert HOST in cert_dirs(volume)
    print(f"\nquiet start: MariaDB down {DOWN_AT_START:.0f}s, waited {ready['waited']}")


@pytest.mark.usefixtures("db_down")
def test_database_down_past_acme_db_wait_is_a_failure(
    world: World, volume: Path, redis_server: RedisServer
) -> None:
    """With ACME_DB_WAIT=3s and MariaDB staying down: one start.gave_up line, then the cycle
    fails with db.unreachable and ACME_FAIL_TIME is set for the watchdog."""
    redis_server.reset()
    daemon = Daemon(redis_env(world, volume, redis_server) | {"ACME_DB_WAIT": "3s"})
    try:
        gave_up = daemon.wait_for("start.gave_up", timeout=60)
        done = daemon.wait_for("cycle.done", timeout=60)
        daemon.wait_for("mailcow.fail_time", timeout=30)
    finally:
        stopped = daemon.stop()
    assert stopped == 0
    assert gave_up["component"] == "database"
    assert done["outcome"] == "source_down"
    assert redis_server.client().get("ACME_FAIL_TIME") is not None
