"""Gather: every fact one cycle decides on, each looked up once. No order, no volume write.

``gather`` reads the database rows (and makes the name groups from them), takes the volume's
certificates as one snapshot, fetches the CA's renewal windows due for them (``shell.ari``;
folded into the ledger of the facts), and validates the names whose recent verdict cannot be reused
(DNS, CAA, the HTTP self-check: ``shell.lookups``); ``recheck`` validates more names when the
decision asks for them. It returns ``core.decide.Facts`` (None when the database is down) and
logs what it found. ``Deps`` holds the adapters a cycle uses.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from acme_sidecar.adapters.volume import CertStore
from acme_sidecar.config.policies import CyclePolicy
from acme_sidecar.core.decide import Facts
from acme_sidecar.core.discover import candidate_groups, omitted_names
from acme_sidecar.core.dns01 import Routes
from acme_sidecar.core.errors import SourceError
from acme_sidecar.core.ledger import State
from acme_sidecar.core.memory import reusable_verdicts
from acme_sidecar.core.ports import (
    DomainSource,
    HttpCheck,
    Issuer,
    Resolver,
    Services,
    WindowSource,
)
from acme_sidecar.core.report import Deployed
from acme_sidecar.core.validate import IpPolicy
from acme_sidecar.shell.ari import refresh_windows
from acme_sidecar.shell.lookups import validate_names

if TYPE_CHECKING:  # imported with ACME_DANE on (wiring)
    from acme_sidecar.shell.rollover import KeyRoll

log = structlog.get_logger(__name__)


@dataclass
class Deps:
    """The adapters one cycle uses; the CLI builds them, tests pass fakes."""

    source: DomainSource
    resolver: Resolver
    store: CertStore
    issuer: Callable[[bytes], Issuer]  # account key PEM -> the ACME issuer
    # the self-check, given where its redirects may connect (the cycle's address policy)
    http_check: Callable[[IpPolicy], contextlib.AbstractContextManager[HttpCheck]]
    public_ips: Callable[[], tuple[str | None, str | None]]
    ca_identities: Callable[[], tuple[str, ...]] = lambda: ()
    services: Services | None = None
    services_ready: Callable[[], str | None] | None = None  # at start: why dockerapi is not yet
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    stop: threading.Event = field(default_factory=threading.Event)
    windows: Callable[[], WindowSource] | None = None  # the CA's renewal windows (ARI)
    dns01: Routes | None = None  # ACME_DNS_CHALLENGE=y: which names DNS-01 can answer
    deployed: Callable[[Deployed], None] | None = None  # the deploy hook; must not raise
    # the daemon's start: waits for the webroot before the first self-check (startup.py)
    before_checks: Callable[[], None] | None = None
    rollover: KeyRoll | None = None  # ACME_DANE: a key change waits for its TLSA record


def _ip_policy(policy: CyclePolicy, deps: Deps) -> IpPolicy:
    v = policy.validation
    ipv4 = ipv6 = None
    dns01 = (deps.dns01 or Routes()) if v.dns01 else None
    if not v.skip_ip_check and dns01 is None:
        ipv4, ipv6 = deps.public_ips()
        log.info("ip.public", ipv4=ipv4, ipv6=ipv6)
    identities = v.caa_identities or deps.ca_identities()
    if not identities:
        log.info("caa.unchecked", reason="the CA names no CAA identity; it checks CAA itself")
    return IpPolicy(
        ipv4=ipv4,
        ipv6=ipv6,
        skip_ip_check=v.skip_ip_check,
        snat4=v.snat4,
        snat6=v.snat6,
        own_addresses=tuple(dict.fromkeys([*v.own_addresses, *(a for a in (ipv4, ipv6) if a)])),
        skip_http=v.skip_http,
        ca_identities=identities,
        dns01=dns01,
    )


@contextlib.contextmanager
def _no_check() -> Iterator[None]:
    yield None


def gather(
    policy: CyclePolicy,
    deps: Deps,
    state: State,
    now: datetime,
    *,
    own: str | None = None,
    fresh: bool = False,
) -> Facts | None:
    """The facts of this cycle, or None when the database cannot be read (logged).

    ``own`` (why the top-level pair is the admin's own certificate) is passed through; ``fresh``
    validates every name, reusing no recent verdict (``acme-sidecar check``).
    """
    if not fresh:  # a new volume's account key, made while the names are read and checked
        deps.store.keys.prepare_account_key()
    try:
        rows = deps.source.read()
    except SourceError as exc:
        log.error("db.unreachable", error=str(exc), action="keeping current certificates")
        return None
    for table, value in rows.refused:
        log.warning(
            "domain.skipped",
            table=table,
            value=value,
            reason="not a valid host name after IDNA encoding",
        )
    groups = candidate_groups(policy.rules, rows)
    for name in omitted_names(policy.rules, rows):
        log.info("name.omitted", name=name, reason="MTA-STS not active")
    names = [n for g in groups for n in g.names]
    log.info("names.discovered", domains=len(rows.domains), names=len(names))
    stored, refused = deps.store.certs.read()  # one scan of the volume
    if deps.windows is not None:  # the CA's renewal windows due for the stored certificates
        state = refresh_windows(deps.windows, deps.stop, state, stored, policy.ari_interval, now)
    roll = None  # a key change that DANE pins: looked up before the plan (shell.rollover)
    if deps.rollover is not None:
        roll = deps.rollover.before_plan(
            deps.store, policy.shape.key_type, reuse=policy.key_reuse, now=now
        )
    key_type = deps.store.keys.key_type(policy.shape.key_type)
    v = policy.validation
    reused = (
        {}
        if fresh
        else reusable_verdicts(
            names,
            stored,
            state,
            now=now,
            revalidate_after=v.revalidate_after,
            force=state.force_since is not None,
        )
    )
    facts = Facts(
        rows=rows,
        groups=groups,
        stored=stored,
        state=state,
        reused=reused,
        refused=frozenset(refused),
        own=own,
        key_type=roll.kind if roll is not None and roll.held else key_type,
        rollover=roll,
    )
    facts = recheck(policy, deps, facts, [n for n in names if n not in reused])
    if reused:
        log.info(
            "names.reused",
            names=len(set(names) - set(facts.checked)),
            reason="validated recently and their certificates are not due",
        )
    return facts


def recheck(policy: CyclePolicy, deps: Deps, facts: Facts, names: list[str]) -> Facts:
    """``facts`` with ``names`` validated afresh (the public addresses looked up first)."""
    if not names:
        return facts
    v = policy.validation
    if deps.before_checks is not None and not (v.skip_http or v.dns01):
        deps.before_checks()
    ip_policy = _ip_policy(policy, deps)
    checker = _no_check() if v.skip_http or v.dns01 else deps.http_check(ip_policy)
    with checker as http:
        checked = validate_names(names, deps.resolver, ip_policy, http)
    return replace(facts, checked={**facts.checked, **checked})
