"""The ports: what the cycle needs of each outside system, as small Protocols the core owns.

Each adapter implements one (``adapters/``); the shell depends on these, never on an adapter's
class; tests pass fakes. No I/O here.

- ``DomainSource``: the mail domains (MariaDB, ``adapters/mariadb.py``)
- ``Resolver``: A, AAAA, CNAME and CAA lookups (dnspython, ``adapters/dns.py``)
- ``HttpCheck``: the self-check through the webroot (``adapters/http_probe.py``)
- ``Issuer``: certificates over ACME (``adapters/acme/issuer.py``)
- ``WindowSource``: the CA's renewal windows, ARI (``adapters/acme/ari.py``)
- ``Services``: the consumers' reloads and restarts (``adapters/docker.py``, ``dockerapi.py``)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

from acme_sidecar.core.ari import Answer
from acme_sidecar.core.consumers import Reaction
from acme_sidecar.core.model import CertSpec, DomainRows, Issued, IssueFailure
from acme_sidecar.core.validate import CaaLookup, Lookup


class DomainSource(Protocol):
    """Where the mail domains come from."""

    def read(self) -> DomainRows:
        """Return the active, non-backup-MX domains and the MTA-STS facts."""


class Resolver(Protocol):
    """Looks up A, AAAA, CNAME and CAA records."""

    def lookup(self, name: str, rdtype: str) -> Lookup:
        """Return the addresses (or CNAME targets) of ``name`` for ``rdtype``."""

    def lookup_caa(self, name: str) -> CaaLookup:
        """Return the CAA records at exactly ``name`` (no climbing)."""


class HttpCheck(Protocol):
    """Fetches the self-check token of ``name`` from ``address``."""

    def check(self, name: str, address: str) -> str | None:
        """Return ``None`` when the token came back, else the reason it did not."""


class Issuer(Protocol):
    """Obtains certificates for a batch of specs."""

    def issue_all(
        self,
        specs: Sequence[CertSpec],
        key_pem: bytes | Mapping[str, bytes],
        *,
        replaces: Mapping[str, str] | None = None,
    ) -> Iterator[Issued | IssueFailure]:
        """Order every spec (in parallel) with ``key_pem`` (one key for all, or one per
        certificate name); yield one result per spec as each completes; never raises for a
        failed order. ``replaces`` maps a spec's name to the ARI CertID of the certificate its
        order replaces."""


class WindowSource(Protocol):
    """Fetches the renewal window of one certificate by its CertID."""

    def fetch(self, cid: str) -> Answer:
        """The CA's answer for ``cid``; a failure is ``Answer.error``, never an exception."""


class Services(Protocol):
    """The consumers of the certificate volume."""

    services: tuple[str, ...]
    can_rebuild_map: bool  # commands can be run in the containers (Postfix's postmap)

    def apply(self, actions: Mapping[str, Reaction]) -> dict[str, str]:
        """Do each service's reaction once; return ``{service: "reloaded"|"rebuilt"|...}``.
        Services not in ``actions`` (or with ``Act.NONE``) are not touched."""
