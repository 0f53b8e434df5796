"""Gather and decide: read the domains, validate the names, plan. No order, no volume write.

``decide`` asks the adapters (database, DNS, HTTP self-check, the volume's certificates) and
hands their answers to the pure core (discover, state rules, budget, plan).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import structlog

from acme_sidecar.adapters.acme import Issuer
from acme_sidecar.adapters.acme.ari import WindowSource
from acme_sidecar.adapters.docker import Services
from acme_sidecar.adapters.mariadb import DomainSource
from acme_sidecar.adapters.volume import CertStore
from acme_sidecar.config.policies import CyclePolicy
from acme_sidecar.core.budget import Hold, hold_for
from acme_sidecar.core.discover import candidate_groups
from acme_sidecar.core.dns01 import Routes, covers
from acme_sidecar.core.errors import SourceError
from acme_sidecar.core.ledger import State
from acme_sidecar.core.model import CertSpec, Plan, Verdict
from acme_sidecar.core.plan import make_plan
from acme_sidecar.core.report import Outcome, Report
from acme_sidecar.core.settle import force_done
from acme_sidecar.core.state import apply_memory, record_validated, reusable_verdicts
from acme_sidecar.core.validate import HttpCheck, IpPolicy, Resolver, validate_names

log = structlog.get_logger(__name__)


@dataclass
class Deps:
    """The adapters one cycle uses; the CLI builds them, tests pass fakes."""

    source: DomainSource
    resolver: Resolver
    store: CertStore
    issuer: Callable[[bytes], Issuer]  # account key PEM -> the ACME issuer
    http_check: Callable[[], contextlib.AbstractContextManager[HttpCheck]]
    public_ips: Callable[[], tuple[str | None, str | None]]
    ca_identities: Callable[[], tuple[str, ...]] = lambda: ()
    services: Services | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    stop: threading.Event = field(default_factory=threading.Event)
    windows: Callable[[], WindowSource] | None = None  # the CA's renewal windows (ARI)
    dns01: Routes | None = None  # ACME_DNS_CHALLENGE=y: which names DNS-01 can answer


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
        own=tuple(dict.fromkeys([*v.own, *(a for a in (ipv4, ipv6) if a)])),
        skip_http=v.skip_http,
        ca_identities=identities,
        dns01=dns01,
    )


@contextlib.contextmanager
def _no_check() -> Iterator[None]:
    yield None


def decide(
    policy: CyclePolicy,
    deps: Deps,
    state: State,
    *,
    fresh: bool = False,
    refused: frozenset[str] = frozenset(),
    own: str | None = None,
) -> Report:
    """Discover, validate and plan against ``state``; no ACME order and no write.

    Names that passed validation recently and sit in a certificate that is not due are not
    checked again (see ``state.reusable_verdicts``) unless ``fresh``. Certificates whose
    directory the volume refused (a symbolic link) are held. ``own`` (why the top-level pair is
    an own certificate) steps aside for it (``plan.make_plan``).
    """
    now = deps.clock()
    try:
        rows = deps.source.read()
    except SourceError as exc:
        log.error("db.unreachable", error=str(exc), action="keeping current certificates")
        return Report(Outcome.SOURCE_DOWN, state=state)
    groups = candidate_groups(policy.rules, rows)
    names = [n for g in groups for n in g.names]
    log.info("names.discovered", domains=len(rows.domains), names=len(names))
    stored = deps.store.load()
    force = state.force_since is not None
    v = policy.validation
    reused = (
        {}
        if fresh
        else reusable_verdicts(
            names, stored, state, now=now, revalidate_after=v.revalidate_after, force=force
        )
    )
    checked: dict[str, Verdict] = {}
    ip_policy: IpPolicy | None = None

    def check(batch: list[str]) -> None:
        nonlocal ip_policy
        if not batch:
            return
        ip_policy = ip_policy or _ip_policy(policy, deps)
        checker = _no_check() if v.skip_http or v.dns01 else deps.http_check()
        with checker as http:
            checked.update(validate_names(batch, deps.resolver, ip_policy, http))

    def hold(spec: CertSpec, planned: int) -> Hold | None:
        if spec.name in refused:
            return Hold(now + policy.retry.interval, "its directory is a symbolic link (refused)")
        ledger = after.cert(spec.name)
        if ledger.unstored:  # issued already: store it (on its retry schedule), never re-order
            until = max(ledger.next_attempt or now, now)
            return Hold(until, "issued already; waiting to be stored in the volume")
        return hold_for(spec, after, now, limits=policy.limits, planned_orders=planned)

    after = state
    # the key type in force: ACME_KEY_TYPE, else the volume's key's (a stored certificate of
    # another type is ordered again)
    shape = replace(policy.shape, key_type=deps.store.key_type(policy.shape.key_type))

    def planned() -> tuple[Plan, dict[str, Verdict], State]:
        nonlocal after
        verdicts = {n: checked.get(n) or reused[n] for n in names}
        remember = v.revalidate_after.total_seconds() > 0
        after = record_validated(state, checked, now) if remember else state
        verdicts, after = apply_memory(verdicts, stored, after, grace=v.grace, now=now)
        plan = make_plan(
            groups,
            verdicts,
            stored,
            shape=shape,
            force=force,
            force_done=force_done(after),
            now=now,
            hold=hold,
            own_default=own,
            ari={n: c.ari for n, c in after.certs.items() if c.ari is not None},
            profiles={n: after.cert(n).profile for n in stored},
        )
        return plan, verdicts, after

    check([n for n in names if n not in reused])
    plan, verdicts, after = planned()
    # a certificate that will be ordered gets every one of its names checked afresh
    stale = sorted({n for c in plan.to_order for n in c.spec.domains if n not in checked})
    if stale:
        check(stale)
        plan, verdicts, after = planned()
    if len(checked) < len(names):
        log.info(
            "names.reused",
            names=len(names) - len(checked),
            reason="validated recently and their certificates are not due",
        )
    for note in plan.notes:
        log.warning("plan.note", note=note)
    by_parent: dict[str, list[str]] = {}  # a wildcard covers only names one label below it
    for name in dict.fromkeys(n for g in groups for n in g.names):
        by_parent.setdefault(name.partition(".")[2], []).append(name)
    for cert in plan.certs:
        listed = set(cert.spec.domains)
        for wildcard in (d for d in cert.spec.domains if d.startswith("*.")):
            for name in by_parent.get(wildcard[2:], ()):
                verdict = verdicts.get(name)
                covered = name not in listed and covers(wildcard, name)
                if covered and verdict is not None and verdict.ok:
                    log.info("name.covered", name=name, certificate=cert.spec.name)
        log.info(
            f"cert.{cert.action.value}",
            certificate=cert.spec.name,
            names=" ".join(cert.spec.domains),
            reason=cert.reason,
        )
    outcome = Outcome.OK if plan.certs or own is not None else Outcome.NOTHING_VALID
    return Report(outcome, plan, verdicts, groups, rows, stored, after)
