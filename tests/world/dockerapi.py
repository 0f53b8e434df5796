"""A stand-in for mailcow's dockerapi: HTTPS on 127.0.0.1 in front of the world's dockerd.

The server is the demo stack's ``demo/dockerapi/server.py`` (one implementation of mailcow's
dockerapi contract for the demo and the tests); here it listens on a free loopback port and
forwards to the private dockerd given by its ``docker_host``.
"""

from __future__ import annotations

from demo.dockerapi.server import RELOAD_TASKS, DockerapiServer

__all__ = ["RELOAD_TASKS", "DockerapiServer"]
