"""What one cycle did: its outcome and report, the value the daemon and the ops hooks read; and
what one successful deploy put in service (``Deployed``, for the deploy hook)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from acme_sidecar.core.ledger import Deploy, State
from acme_sidecar.core.model import Action, DomainRows, NameGroup, Plan, StoredCert, Verdict


class Outcome(enum.Enum):
    """How a cycle ended; the daemon picks its next wake-up from this."""

    OK = "ok"
    FAILED = "failed"
    NOTHING_VALID = "nothing_valid"
    SOURCE_DOWN = "source_down"


@dataclass(frozen=True, slots=True)
class Report:
    """What one cycle did."""

    outcome: Outcome
    plan: Plan | None = None
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    groups: tuple[NameGroup, ...] = ()
    rows: DomainRows | None = None
    stored: dict[str, StoredCert] = field(default_factory=dict)
    state: State = field(default_factory=State)
    issued: int = 0
    failed: int = 0
    archived: int = 0
    applied: tuple[str, ...] = ()
    crashed: bool = False  # ended by an unexpected exception (see shell.cycle.guarded_cycle)
    rollover_at: datetime | None = None  # a key rollover's next step (core.rollover.wake_at)

    @property
    def all_valid(self) -> bool:
        """Every wanted certificate is in place and valid (``once`` exits 0 only then).

        A certificate held back by the CA's Retry-After counts as not valid: it is wanted and
        its stored version (if any) is due or has the wrong names.
        """
        waiting = bool(self.plan and any(c.action is Action.WAIT for c in self.plan.certs))
        return self.outcome is Outcome.OK and self.failed == 0 and not waiting

    @property
    def settled(self) -> bool:
        """Nothing is left to retry soon: every certificate valid and no deploy owed."""
        return self.all_valid and self.state.deploy is None


@dataclass(frozen=True, slots=True)
class DeployedCert:
    """One certificate a successful deploy put in service."""

    certificate: str  # its directory, or ``(default)`` for an own top-level pair
    names: tuple[str, ...]
    serial: str  # hexadecimal, as ``openssl x509 -serial`` shows it (lower case)
    not_after: str  # ISO 8601


@dataclass(frozen=True, slots=True)
class Deployed:
    """A deploy confirmed: the certificates written since it was owed, whether the top-level
    pair was among them, and what was done to the services (``postfix:reloaded``...)."""

    certificates: tuple[DeployedCert, ...]
    default: bool
    services: tuple[str, ...]


def deployed_of(
    owed: Deploy, certs: Mapping[str, StoredCert], services: tuple[str, ...]
) -> Deployed:
    """What the finished deploy ``owed`` put in service, from the certificates now in the
    volume (the top-level pair under ``(default)`` when it is an own one)."""
    return Deployed(
        certificates=tuple(
            DeployedCert(
                d, certs[d].domains, f"{certs[d].serial:x}", certs[d].not_after.isoformat()
            )
            for d in owed.certs
            if d in certs
        ),
        default=owed.default,
        services=services,
    )
