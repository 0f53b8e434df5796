"""In-memory fakes of the outside systems, for in-process tests of the cycle and the daemon.

The volume is the real ``CertStore`` on ``tmp_path``; certificates are real (signed by a
throw-away CA for the volume's own key), so the store's checks all run.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from acme_sidecar.adapters.docker import DONE
from acme_sidecar.adapters.volume import CertStore
from acme_sidecar.adapters.volume.pem import load_key
from acme_sidecar.config.policies import CyclePolicy, DaemonPolicy
from acme_sidecar.core.consumers import Act, Reaction
from acme_sidecar.core.discover import NameRules
from acme_sidecar.core.model import CertSpec, DomainRows, FailureKind, Issued, IssueFailure
from acme_sidecar.core.plan import Shape
from acme_sidecar.core.ports import HttpCheck
from acme_sidecar.core.settle import RetryPolicy
from acme_sidecar.core.validate import CaaLookup, IpPolicy, Lookup
from acme_sidecar.shell.gather import Deps
from tests.certs import CA, cert_pem, leaf

HOST = "mail.example.test"
ADDRESS = "192.0.2.10"


class Clock:
    """A settable clock."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 29, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakeSource:
    domains: tuple[str, ...] = ("a.test", "b.test", "c.test")
    error: BaseException | None = None

    def read(self) -> DomainRows:
        if self.error is not None:
            raise self.error
        return DomainRows(self.domains)


@dataclass
class FakeResolver:
    error: BaseException | None = None

    def lookup(self, name: str, rdtype: str) -> Lookup:
        if self.error is not None:
            raise self.error
        return Lookup((ADDRESS,)) if rdtype == "A" else Lookup()

    def lookup_caa(self, name: str) -> CaaLookup:
        return CaaLookup()


@dataclass
class FakeHttp:
    error: BaseException | None = None

    def check(self, name: str, address: str) -> str | None:
        if self.error is not None:
            raise self.error
        return None


@dataclass
class FakeIssuer:
    """Issues real certificates; ``fail`` maps a domain to how orders for certificates whose
    name ends with it fail."""

    clock: Clock
    fail: dict[str, FailureKind] = field(default_factory=dict)
    error: BaseException | None = None  # raised from inside issue_all
    orders: list[tuple[datetime, str]] = field(default_factory=list)
    days: int = 90
    lifetime: timedelta | None = None  # instead of ``days`` (short certificates)
    replaced: dict[str, str] = field(default_factory=dict)  # name -> the CertID it replaced
    _ca: CA = field(default_factory=lambda: CA.new("Fake CA"))

    def __call__(self, account_pem: bytes) -> FakeIssuer:
        return self

    def issue_all(
        self,
        specs: Sequence[CertSpec],
        key_pem: bytes | Mapping[str, bytes],
        *,
        replaces: Mapping[str, str] | None = None,
    ) -> Iterator[Issued | IssueFailure]:
        self.replaced.update(replaces or {})
        for spec in specs:
            if self.error is not None:
                raise self.error
            self.orders.append((self.clock(), spec.name))
            kind = next((k for d, k in self.fail.items() if spec.name.endswith(d)), None)
            if kind is None:
                key = key_pem if isinstance(key_pem, bytes) else key_pem[spec.name]
                yield Issued(spec, self.sign(spec, key))
            elif kind is FailureKind.SYSTEMIC:
                yield IssueFailure(
                    spec,
                    "dns: the CA could not resolve the names",
                    kind=kind,
                    failed_validations=spec.domains,
                    orders=1,
                )
            else:
                yield IssueFailure(spec, f"{kind.value}: no", kind=kind, orders=1)

    def sign(self, spec: CertSpec, key_pem: bytes) -> bytes:
        start = self.clock() - timedelta(minutes=1)
        end = self.clock() + (self.lifetime or timedelta(days=self.days))
        cert = leaf(
            spec.domains,
            key=load_key(key_pem),
            issuer=self._ca,
            subject=x509.Name([]),
            not_before=start,
            not_after=end,
        )
        return cert_pem(cert)

    def count(self, name: str) -> int:
        return sum(1 for _, n in self.orders if n == name)


@dataclass
class FakeServices:
    """Records every apply (``{service: act}``); ``error`` is raised by the next applies
    while set. ``can_rebuild_map``: like the Docker socket (True) or dockerapi (False)."""

    services: tuple[str, ...] = ("postfix", "dovecot", "nginx")
    can_rebuild_map: bool = True
    calls: list[dict[str, Act]] = field(default_factory=list)
    error: BaseException | None = None

    def way(self) -> FakeServices:
        return self

    def apply(self, actions: Mapping[str, Reaction]) -> dict[str, str]:
        if self.error is not None:
            raise self.error
        todo: dict[str, Act] = {s: a.act for s, a in actions.items() if a.act is not Act.NONE}
        self.calls.append(todo)
        return {s: DONE[act] for s, act in todo.items()}


@dataclass
class World:
    """A cycle's world: fakes plus the real volume."""

    root: Path
    clock: Clock = field(default_factory=Clock)
    source: FakeSource = field(default_factory=FakeSource)
    resolver: FakeResolver = field(default_factory=FakeResolver)
    http: FakeHttp = field(default_factory=FakeHttp)
    services: FakeServices = field(default_factory=FakeServices)
    stop: threading.Event = field(default_factory=threading.Event)
    issuer: FakeIssuer = field(init=False)
    store: CertStore = field(init=False)

    def __post_init__(self) -> None:
        self.issuer = FakeIssuer(self.clock)
        self.store = CertStore(self.root)
        key = self.root / "acme" / "key.pem"
        if key.exists():  # a restart on the same volume keeps its key
            return
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_bytes(
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key.chmod(0o600)

    def deps(self) -> Deps:
        def http(policy: IpPolicy) -> contextlib.AbstractContextManager[HttpCheck]:
            return contextlib.nullcontext(self.http)

        return Deps(
            source=self.source,
            resolver=self.resolver,
            store=self.store,
            issuer=self.issuer,
            http_check=http,
            public_ips=lambda: (ADDRESS, None),
            services=self.services,
            clock=self.clock,
            stop=self.stop,
        )


RETRY = RetryPolicy(jitter=0.0)


def cycle_policy(sni: bool = True) -> CyclePolicy:
    """SNI certificates for the fake domains, Let's Encrypt's limits, the default ladder."""
    return CyclePolicy(rules=NameRules(hostname=HOST), shape=Shape(sni=sni), retry=RETRY)


def daemon_policy() -> DaemonPolicy:
    """The daemon's defaults with the jitter-free retry policy."""
    return DaemonPolicy(retry=RETRY)
