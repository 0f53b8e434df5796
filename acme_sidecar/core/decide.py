"""Decide: the facts one cycle gathered in, what to do with every certificate out. Pure.

``decide(facts, policy, now)`` takes the ``Facts`` (database rows and the name groups made from
them, the volume's certificates as read once this cycle, the ledger, the verdicts on the names)
and returns a ``Decision``: the plan (``core.plan``), the verdicts it used, the ledger with the
validations (and the CA of certificates with no record, ``core.ca``) remembered, the names that
must be checked afresh before an order, and what the shell should log. No I/O, no logging, no
clock: ``now`` is a parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from acme_sidecar.core.budget import HoldRules, Limits
from acme_sidecar.core.ca import adopt_directory, directory_changes
from acme_sidecar.core.coalesce import Coalesce
from acme_sidecar.core.ledger import State
from acme_sidecar.core.memory import apply_memory, record_validated
from acme_sidecar.core.model import DomainRows, NameGroup, Plan, StoredCert, Verdict
from acme_sidecar.core.names import covers
from acme_sidecar.core.plan import Shape, make_plan
from acme_sidecar.core.rollover import Rollover
from acme_sidecar.core.settle import force_done


@dataclass(frozen=True, slots=True)
class DecisionPolicy:
    """The settings a decision reads."""

    shape: Shape = field(default_factory=Shape)
    limits: Limits = field(default_factory=Limits)
    retry_interval: timedelta = timedelta(minutes=5)  # a refused directory waits this long
    grace: timedelta = timedelta(days=7)  # a name that stops validating is kept this long
    revalidate_after: timedelta = timedelta(hours=12)  # a verdict is reused this long
    coalesce: Coalesce = field(default_factory=Coalesce)  # ACME_COALESCE (core.coalesce)


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything one cycle knows before it decides, gathered once (``shell.gather``).

    ``checked`` are this cycle's verdicts, ``reused`` the recent ones kept for names whose
    certificate is not due (``state.reusable_verdicts``). ``refused`` are the certificate
    directories the volume refused (symbolic links); ``own`` says why the top-level pair is the
    admin's own certificate (None: it is not); ``key_type`` is the key type in force (while a
    key change waits for its TLSA record, the current key's: ``rollover``, ``core.rollover``).
    """

    rows: DomainRows
    groups: tuple[NameGroup, ...]
    stored: Mapping[str, StoredCert]
    state: State
    checked: Mapping[str, Verdict] = field(default_factory=dict)
    reused: Mapping[str, Verdict] = field(default_factory=dict)
    refused: frozenset[str] = frozenset()
    own: str | None = None
    key_type: str = ""
    rollover: Rollover | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """Every name the groups hold, in order."""
        return tuple(n for g in self.groups for n in g.names)


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do, and what to say about it.

    ``recheck``: names of certificates to be ordered whose verdict was reused; the shell checks
    them afresh and decides again before anything is ordered. ``covered``: (name, certificate)
    for names that a wildcard of the certificate covers without listing them. ``other_ca``: the
    stored certificates issued from another CA than the configured one (each is renewed).
    ``rollover``: the key rollover's step (the facts'), which the orders' keys follow.
    """

    plan: Plan
    verdicts: dict[str, Verdict]
    state: State
    recheck: tuple[str, ...] = ()
    covered: tuple[tuple[str, str], ...] = ()
    nothing_valid: bool = False
    other_ca: tuple[str, ...] = ()
    rollover: Rollover | None = None


def decide(facts: Facts, policy: DecisionPolicy, now: datetime) -> Decision:
    """Plan every certificate from ``facts`` (see the module docstring)."""
    names = facts.names
    verdicts = {n: facts.checked.get(n) or facts.reused[n] for n in names}
    state = facts.state
    if policy.revalidate_after.total_seconds() > 0:
        state = record_validated(state, facts.checked, now)
    verdicts, state = apply_memory(verdicts, facts.stored, state, grace=policy.grace, now=now)
    other_ca = directory_changes(facts.stored, state, policy.shape.directory)
    state = adopt_directory(state, facts.stored, policy.shape.directory, other_ca)
    plan = make_plan(
        facts.groups,
        verdicts,
        facts.stored,
        shape=replace(policy.shape, key_type=facts.key_type or policy.shape.key_type),
        force=state.force_since is not None,
        force_done=force_done(state),
        now=now,
        hold_rules=HoldRules(state, policy.limits, facts.refused, policy.retry_interval),
        own_default=facts.own,
        ari={n: c.ari for n, c in state.certs.items() if c.ari is not None},
        profiles={n: state.cert(n).profile for n in facts.stored},
        other_ca=other_ca,
        coalesce=policy.coalesce,
    )
    recheck = sorted({n for c in plan.to_order for n in c.spec.domains if n not in facts.checked})
    return Decision(
        plan,
        verdicts,
        state,
        recheck=tuple(recheck),
        covered=_covered(plan, facts.groups, verdicts),
        nothing_valid=not plan.certs and facts.own is None,
        other_ca=tuple(sorted(other_ca)),
        rollover=facts.rollover,
    )


def _covered(
    plan: Plan, groups: tuple[NameGroup, ...], verdicts: Mapping[str, Verdict]
) -> tuple[tuple[str, str], ...]:
    by_parent: dict[str, list[str]] = {}  # a wildcard covers only names one label below it
    for name in dict.fromkeys(n for g in groups for n in g.names):
        by_parent.setdefault(name.partition(".")[2], []).append(name)
    out: list[tuple[str, str]] = []
    for cert in plan.certs:
        listed = set(cert.spec.domains)
        for wildcard in (d for d in cert.spec.domains if d.startswith("*.")):
            for name in by_parent.get(wildcard[2:], ()):
                verdict = verdicts.get(name)
                if name in listed or verdict is None or not verdict.ok:
                    continue
                if covers(wildcard, name):
                    out.append((name, cert.spec.name))
    return tuple(out)
