"""The ports: what the cycle needs of each outside system, as small Protocols the core owns.

Each adapter implements one (``adapters/``); the shell depends on these, never on an adapter's
class; tests pass fakes. No I/O here.

- ``DomainSource``: the mail domains (MariaDB, ``adapters/mariadb.py``)
- ``Resolver``: A, AAAA, CNAME and CAA lookups (dnspython, ``adapters/dns.py``)
- ``HttpCheck``: the self-check through the webroot (``adapters/http_probe.py``)
- ``Issuer``: certificates over ACME (``adapters/acme/issuer.py``)
- ``WindowSource``: the CA's renewal windows, ARI (``adapters/acme/windows.py``)
- ``Services``: the consumers' reloads and restarts (``adapters/docker.py``, ``dockerapi.py``)
- ``Volume``: the certificate volume, one part per job: ``CertFiles`` (the certificate
  directories), ``KeyStore`` (the keys), ``LedgerStore`` (the ledger's file)
  (``adapters/volume``)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from acme_sidecar.core.ari import Answer
from acme_sidecar.core.consumers import Reaction
from acme_sidecar.core.ledger import State
from acme_sidecar.core.model import CertSpec, DomainRows, Issued, IssueFailure, StoredCert
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

    @property
    def can_rebuild_map(self) -> bool:
        """Commands can be run in the containers (Postfix's postmap)."""

    def way(self) -> Services:
        """The way to the containers for one deploy: this adapter, or the one chosen now
        (``ACME_DOCKER_API=auto``, ``adapters/docker_way.py``)."""

    def apply(self, actions: Mapping[str, Reaction]) -> dict[str, str]:
        """Do each service's reaction once; return ``{service: "reloaded"|"rebuilt"|...}``.
        Services not in ``actions`` (or with ``Act.NONE``) are not touched."""


class CertFiles(Protocol):
    """The certificate directories of the volume."""

    def read(self) -> tuple[dict[str, StoredCert], list[str]]:
        """The certificates that parse, and the directories refused (symbolic links)."""

    def load(self) -> dict[str, StoredCert]:
        """The certificates that parse (``read``'s first part)."""

    def names(self) -> list[str]:
        """The certificate directories, without parsing them."""

    def holds_chain(self, name: str, fullchain: bytes) -> bool:
        """Whether certificate ``name`` already holds exactly ``fullchain``."""

    def write_cert(self, spec: CertSpec, fullchain: bytes, key_pem: bytes) -> None:
        """Store an issued certificate atomically (the old files backed up first)."""

    def is_default(self, name: str) -> bool:
        """Whether the top-level pair already holds certificate ``name``."""

    def set_default(self, name: str) -> bool:
        """Make certificate ``name`` the top-level pair; True when it changed."""

    def archive(self, name: str) -> Path:
        """Move certificate directory ``name`` into ``backups/``; return where."""


class KeyStore(Protocol):
    """The volume's account and certificate keys."""

    def account_key(self) -> bytes:
        """The ACME account key (PEM), made when there is none."""

    def prepare_account_key(self) -> None:
        """Start making the account key in the background when there is none (a new volume),
        so that ``account_key`` does not wait for it."""

    def domain_key(self, kind: str = "") -> bytes:
        """The certificate key (PEM) of type ``kind`` (made, or replaced on a type change)."""

    def has_domain_key(self) -> bool:
        """Whether the volume has its certificate key yet."""

    def order_keys(
        self, kind: str, names: Sequence[str], *, reuse: bool
    ) -> bytes | dict[str, bytes]:
        """The key for new orders: the volume's, or (not ``reuse``) a fresh one per name."""

    def key_type(self, configured: str = "") -> str:
        """The certificate key type in force."""


class LedgerStore(Protocol):
    """The ledger's file."""

    def read(self) -> tuple[State, str]:
        """The ledger and "", or an empty one and why the file cannot be read (not moved)."""

    def load(self) -> State:
        """The ledger; a damaged file is kept aside first."""

    def save(self, state: State) -> None:
        """Write the ledger atomically when it changed."""


class RecordWriter(Protocol):
    """Adds and removes DNS records through the configured DNS hosts (``ACME_DANE=publish``:
    TLSA); each returns None when every host took it, else one line saying why not."""

    def add(self, records: Mapping[str, tuple[str, ...]], ttl: int) -> str | None:
        """Add each owner's values (``3 1 1 <hex>``) with ``ttl``."""

    def remove(self, records: Mapping[str, tuple[str, ...]]) -> str | None:
        """Remove exactly these values."""


class Volume(Protocol):
    """The certificate volume: one part per job, its lock and the admin's flag."""

    @property
    def root(self) -> Path:
        """Where the volume is (to name paths in log lines)."""

    @property
    def certs(self) -> CertFiles:
        """The certificate directories."""

    @property
    def keys(self) -> KeyStore:
        """The keys."""

    @property
    def ledger(self) -> LedgerStore:
        """The ledger's file."""

    def prepare(self) -> None:
        """Create the directories; finish a swap a crash interrupted."""

    def lock(self) -> AbstractContextManager[None]:
        """Hold the volume's lock (``VolumeBusy`` when another process holds it)."""

    def unreadable(self) -> dict[str, str]:
        """The files found unreadable so far (path → what is wrong)."""

    def force_requested(self) -> bool:
        """Whether the admin asked for a forced renewal (``force_renew``)."""

    def clear_force(self) -> None:
        """Delete ``force_renew``."""
