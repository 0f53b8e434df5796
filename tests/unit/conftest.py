"""Unit-test fixtures shared by every module."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

import pytest

from acme_sidecar.adapters.volume import keys
from acme_sidecar.adapters.volume.pem import PrivateKey


@cache
def _account_key() -> PrivateKey:
    return keys.generate(keys.ACCOUNT_KEY_TYPE)


@pytest.fixture(autouse=True)
def _one_account_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A new volume's account key is RSA 4096 (seconds to make): made once per session."""
    monkeypatch.setattr(keys, "new_account_key", _account_key)
    yield
