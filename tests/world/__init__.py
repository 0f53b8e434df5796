"""Real-component test world: DNS, Pebble, nginx, MariaDB and dockerd on loopback.

Every service runs as a child process in a private temporary directory, listens on
127.0.0.1 on a port picked at runtime, and is torn down at the end of the pytest
session. See ``tests/conftest.py`` for the fixtures that start them.
"""

from .launcher import World

__all__ = ["World"]
