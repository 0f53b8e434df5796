"""Frozen value types that flow between the stages of a cycle. No I/O here."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class DomainRows:
    """What the domain source returned: already normalised, still to be checked as hostnames."""

    domains: tuple[str, ...]
    mta_sts_domains: frozenset[str] = frozenset()
    alias_mta_sts: tuple[str, ...] = ()
    refused: tuple[tuple[str, str], ...] = ()  # (table, raw value): not a host name, not used


@dataclass(frozen=True, slots=True)
class NameGroup:
    """The names that belong together: the server names, or the names of one mail domain."""

    key: str
    names: tuple[str, ...]
    server: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a name may be ordered, and why."""

    name: str
    ok: bool
    reason: str


@dataclass(frozen=True, slots=True)
class StoredCert:
    """A certificate directory found in the volume."""

    name: str
    domains: tuple[str, ...]
    not_before: datetime
    not_after: datetime
    serial: int
    issuer: str
    key_matches: bool
    sans: tuple[str, ...] = ()
    cert_id: str = ""  # the ARI CertID (``core.ari.cert_id``); "" without an AKI
    key_type: str = ""  # rsa2048 ... ec384 (core.profiles.KEY_TYPES); "" when another kind
    client_auth: bool | None = None  # its leaf allows TLS client authentication (EKU)


@dataclass(frozen=True, slots=True)
class CertSpec:
    """A certificate that should exist: its directory name and its names, first name first."""

    name: str
    domains: tuple[str, ...]


class Action(enum.Enum):
    """What the plan does with one certificate."""

    KEEP = "keep"
    ISSUE = "issue"
    RENEW = "renew"
    WAIT = "wait"  # would be ordered, but the CA asked us to wait (Retry-After)


@dataclass(frozen=True, slots=True)
class CertPlan:
    """One certificate of the plan with its action and the reason for it."""

    spec: CertSpec
    action: Action
    reason: str
    renew_at: datetime | None = None
    replaces: str = ""  # the ARI CertID of the certificate this order replaces (RFC 9773 §5)
    past_budget: str = ""  # why this order goes past a limit that would hold it (core.budget)


@dataclass(frozen=True, slots=True)
class RenewalGroup:
    """Certificates renewed together at ``at`` (``core.coalesce``): inside the common part of
    their renewal spans, from ``start`` to ``end``; ``why`` says what they share ("" for a
    certificate alone)."""

    names: tuple[str, ...]
    at: datetime
    start: datetime
    end: datetime
    why: str = ""

    def named(self, but: str = "", most: int = 3) -> str:
        """The members for a log line, less ``but`` (one of them): at most ``most`` names, then
        how many more. A group may hold thousands of certificates issued together: this looks
        at ``most + 1`` names, not at all of them."""
        shown = [n for n in self.names[: most + 1] if n != but][:most]
        more = len(self.names) - (1 if but else 0) - len(shown)
        return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything one cycle should do; computed by ``plan.make_plan`` without I/O."""

    certs: tuple[CertPlan, ...]
    default_name: str | None
    archive: tuple[str, ...] = ()
    skipped: tuple[Verdict, ...] = field(default=())
    notes: tuple[str, ...] = ()
    groups: tuple[RenewalGroup, ...] = ()  # certificates renewed together (two or more)
    decided: datetime | None = None  # the time the plan was made for (``now`` of make_plan)

    @property
    def to_order(self) -> tuple[CertPlan, ...]:
        """The certificates that need an ACME order now."""
        return tuple(c for c in self.certs if c.action in (Action.ISSUE, Action.RENEW))


class FailureKind(enum.Enum):
    """Why an order failed, which decides when it is tried again (``core.settle``)."""

    SYSTEMIC = "systemic"  # the CA unreachable or answering 5xx, badNonce without end, or every
    # failed name failed for a DNS/connection cause on the CA's side: short retry ladder
    REJECTED = "rejected"  # the CA refused every name for its own reason: per-name back-off
    RATE_LIMITED = "rate_limited"  # the CA's rateLimited answer: its Retry-After, else back-off
    OTHER = "other"  # anything else (order deadline, malformed answer): exponential back-off


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate the CA issued, not yet stored.

    ``dropped`` are names the CA rejected for its own reason (left out of this certificate);
    ``failed_validations`` every name whose authorization went invalid on the way (for the
    rate-limit budget); ``orders`` how many new orders were placed for it.
    """

    spec: CertSpec
    fullchain_pem: bytes
    dropped: dict[str, str] = field(default_factory=dict)
    failed_validations: tuple[str, ...] = ()
    orders: int = 1
    profile: str = ""  # the ACME profile it was ordered with ("" = the CA's default)


@dataclass(frozen=True, slots=True)
class IssueFailure:
    """An order that did not produce a certificate.

    ``rejected`` are names the CA refused for its own reason (unauthorized, incorrect response,
    CAA, rejected identifier): they get a per-name back-off. Names that failed for a transient
    cause (the CA's DNS lookup or connection failed) are only in ``failed_validations``.
    """

    spec: CertSpec
    reason: str
    retry_after: datetime | None = None
    rejected: dict[str, str] = field(default_factory=dict)
    kind: FailureKind = FailureKind.OTHER
    failed_validations: tuple[str, ...] = ()
    orders: int = 0
