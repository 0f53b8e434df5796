"""Redis server (Debian's ``redis-server``) on 127.0.0.1, with a password, in a private dir.

Plays mailcow's ``redis-mailcow`` for the UI integration: nothing is persisted to disk.
"""

from __future__ import annotations

from pathlib import Path

import redis

from .proc import Child, free_port, require_binary, wait_for


class RedisServer:
    """``redis-server`` with ``--requirepass``; ports stay the same across stop()/start()."""

    host = "127.0.0.1"
    password = "redispass-test"

    def __init__(self, workdir: Path) -> None:
        binary = require_binary("redis-server", "redis-server")
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.port = free_port()
        argv = [
            binary, "--bind", self.host, "--port", str(self.port),
            "--requirepass", self.password, "--dir", str(workdir),
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--protected-mode", "yes", "--logfile", "",
        ]  # fmt: skip
        self._child = Child("redis-server", argv, workdir / "redis.log", cwd=workdir)

    def client(self) -> redis.Redis:
        """A client authenticated with the password, answering str (decoded)."""
        return redis.Redis(
            host=self.host,
            port=self.port,
            password=self.password,
            decode_responses=True,
            socket_timeout=5,
        )

    def _ready(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        self._child.start()
        wait_for(self._ready, "redis-server", self._child)

    def stop(self) -> None:
        """Stop the server (simulates Redis being down); start() brings it back, empty."""
        self._child.stop()

    def running(self) -> bool:
        """Return True while the server process is alive."""
        return self._child.running()

    def reset(self) -> None:
        """Delete every key."""
        self.client().flushall()
