"""A Pebble of its own that requires External Account Binding, with one MAC key (``KID``,
``HMAC``), for the tests of EAB; ``WRONG`` is a key it does not know."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator

import pytest

from tests.world import World
from tests.world.pebble import Pebble

KID = "kid-mailcow"
HMAC = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
WRONG = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


@pytest.fixture(scope="module")
def eab_pebble(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    """A second Pebble that requires External Account Binding, with one MAC key."""
    pebble = Pebble(
        tmp_path_factory.mktemp("pebble-eab"),
        world.dns.port,
        world.nginx.port,
        config={"externalAccountBindingRequired": True, "externalAccountMACKeys": {KID: HMAC}},
    )
    pebble.start()
    try:
        yield pebble
    finally:
        pebble.stop()
