"""The DNS provider seam: put a record at a name, take it away again (the TXT values of DNS-01,
the TLSA records of a DANE key rollover).

A provider is one configured DNS host (an RFC 2136 server, a provider's API). It is called
from the order threads, so it is safe to call concurrently. Errors are ``DnsUpdateError``: one
line naming the provider and the cause, never a credential. May touch: nothing (interface).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from acme_sidecar.core.errors import SidecarError


class DnsUpdateError(SidecarError):
    """A provider could not add or remove a record. ``transient``: a network fault that may
    pass (a timeout, a refused connection); otherwise the configuration is wrong (a key the
    server refuses, a 401 from an API, a zone it does not serve)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class DnsProvider(Protocol):
    """One configured DNS host."""

    @property
    def label(self) -> str:
        """What the provider is, for log lines (``dns_nsupdate 127.0.0.1:53``); no secret."""

    def add_txt(self, zone: str, records: Mapping[str, tuple[str, ...]]) -> None:
        """Add each name's values to its TXT records (in ``zone``), keeping the others; in
        one update where the host allows it."""

    def remove_txt(self, zone: str, records: Mapping[str, tuple[str, ...]]) -> None:
        """Remove exactly these values from the TXT records of each name."""

    def add_records(
        self, zone: str, rtype: str, records: Mapping[str, tuple[str, ...]], ttl: int
    ) -> None:
        """Add each name's values (presentation form: ``3 1 1 <hex>`` for TLSA) to its
        ``rtype`` records, keeping the others, with ``ttl``."""

    def remove_records(self, zone: str, rtype: str, records: Mapping[str, tuple[str, ...]]) -> None:
        """Remove exactly these values from the ``rtype`` records of each name."""
