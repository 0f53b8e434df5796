"""One cycle: discover -> validate -> plan -> issue -> store -> apply, with one summary line.

This module wires the stages; it holds no decisions of its own beyond the order of steps and the
rule that archiving and clearing ``force_renew`` happen only after a cycle without errors.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from acme_sidecar.apply import Services
from acme_sidecar.config import Settings
from acme_sidecar.db import DomainSource
from acme_sidecar.discover import NameRules, candidate_groups
from acme_sidecar.errors import ServiceError, SourceError, StoreError
from acme_sidecar.issue import Issuer
from acme_sidecar.model import Action, Issued, NameGroup, Plan, Verdict
from acme_sidecar.plan import Shape, make_plan
from acme_sidecar.store import CertStore
from acme_sidecar.validate import HttpCheck, IpPolicy, Resolver, validate_names

log = structlog.get_logger(__name__)


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
    issued: int = 0
    failed: int = 0
    archived: int = 0
    restarted: tuple[str, ...] = ()
    next_due: datetime | None = None

    @property
    def all_valid(self) -> bool:
        """Every wanted certificate is in place and valid (``once`` exits 0 only then)."""
        return self.outcome is Outcome.OK and self.failed == 0


@dataclass
class Deps:
    """The adapters one cycle uses; the CLI builds them, tests pass fakes."""

    source: DomainSource
    resolver: Resolver
    store: CertStore
    issuer: Callable[[bytes], Issuer]
    http_check: Callable[[], contextlib.AbstractContextManager[HttpCheck]]
    public_ips: Callable[[], tuple[str | None, str | None]]
    services: Services | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


def rules_from(settings: Settings) -> NameRules:
    """The discovery rules that the settings imply."""
    return NameRules(
        hostname=settings.mailcow_hostname,
        static_sans=settings.static_sans,
        prefixes=settings.prefixes,
        autodiscover=settings.autodiscover_san,
        only_hostname=settings.only_mailcow_hostname,
    )


def _policy(settings: Settings, deps: Deps) -> IpPolicy:
    ipv4 = ipv6 = None
    if not settings.skip_ip_check:
        ipv4, ipv6 = deps.public_ips()
        log.info("ip.public", ipv4=ipv4, ipv6=ipv6)
    return IpPolicy(
        ipv4=ipv4,
        ipv6=ipv6,
        skip_ip_check=settings.skip_ip_check,
        snat4=settings.snat4,
        snat6=settings.snat6,
        skip_http=settings.skip_http_verification,
    )


@contextlib.contextmanager
def _no_check() -> Iterator[None]:
    yield None


def decide(settings: Settings, deps: Deps) -> Report:
    """Discover, validate and plan; no ACME order and no write to the volume."""
    now = deps.clock()
    try:
        rows = deps.source.read()
    except SourceError as exc:
        log.error("db.unreachable", error=str(exc), action="keeping current certificates")
        return Report(Outcome.SOURCE_DOWN)
    groups = candidate_groups(rules_from(settings), rows)
    log.info(
        "names.discovered",
        domains=len(rows.domains),
        names=sum(len(g.names) for g in groups),
    )
    names = [n for g in groups for n in g.names]
    policy = _policy(settings, deps)
    checker = _no_check() if settings.skip_http_verification else deps.http_check()
    with checker as http:
        verdicts = validate_names(names, deps.resolver, policy, http)
    stored = deps.store.load()
    plan = make_plan(
        groups,
        verdicts,
        stored,
        shape=Shape(sni=settings.enable_ssl_sni),
        force=deps.store.force_requested(),
        now=now,
    )
    for cert in plan.certs:
        log.info(
            f"cert.{cert.action.value}",
            certificate=cert.spec.name,
            names=" ".join(cert.spec.domains),
            reason=cert.reason,
        )
    if not plan.certs:
        return Report(Outcome.NOTHING_VALID, plan, verdicts, groups)
    return Report(Outcome.OK, plan, verdicts, groups)


def run_cycle(settings: Settings, deps: Deps) -> Report:
    """One full cycle; never raises for a failure of the CA, the database or Docker."""
    try:
        deps.store.prepare()
    except StoreError as exc:
        log.error("store.unusable", error=str(exc))
        return Report(Outcome.FAILED, failed=1)
    decided = decide(settings, deps)
    if decided.outcome is not Outcome.OK or decided.plan is None:
        if decided.outcome is Outcome.NOTHING_VALID:
            log.warning(
                "cycle.nothing_valid",
                reason="no name passed validation; keeping the current certificates",
                hint="see the name.skipped lines; SKIP_LETS_ENCRYPT=y turns the sidecar off",
            )
        return decided
    plan = decided.plan
    store = deps.store
    issued_count = failed = archived = 0
    changed = False
    written: set[str] = set()
    if plan.to_order:
        key_pem = store.domain_key()
        issuer = deps.issuer(store.account_key())
        results = issuer.issue_all([c.spec for c in plan.to_order], key_pem)
        for result in results:
            if not isinstance(result, Issued):
                failed += 1
                continue
            try:
                store.write_cert(result.spec, result.fullchain_pem, key_pem)
            except (StoreError, OSError) as exc:
                failed += 1
                log.error("cert.store_failed", certificate=result.spec.name, error=str(exc))
                continue
            stored_now = store.load().get(result.spec.name)
            log.info(
                "cert.stored",
                certificate=result.spec.name,
                names=" ".join(result.spec.domains),
                serial=f"{stored_now.serial:x}" if stored_now else None,
                not_after=stored_now.not_after.isoformat() if stored_now else None,
            )
            written.add(result.spec.name)
            issued_count += 1
            changed = True
            if result.dropped:
                failed += 1  # a wanted name is missing from the certificate
    default = _default_name(plan, written, store)
    if default is not None and store.set_default(default):
        log.info("cert.default", certificate=default, files="cert.pem key.pem")
        changed = True
    if failed == 0:
        for name in plan.archive:
            if name in written:
                continue
            target = store.archive(name)
            log.info("cert.archived", certificate=name, to=str(target.relative_to(store.root)))
            archived += 1
            changed = True
    restarted: tuple[str, ...] = ()
    if changed and deps.services is not None:
        try:
            restarted = tuple(deps.services.restart_all())
        except ServiceError as exc:
            failed += 1
            log.error("service.failed", error=str(exc))
    if store.force_requested():
        if failed == 0 and issued_count:
            store.clear_force()
            log.info("force_renew.cleared", reason="every certificate was re-issued")
        elif failed:
            log.warning("force_renew.kept", reason="the cycle had errors; will try again")
    next_due = min((c.renew_at for c in plan.certs if c.renew_at), default=None)
    outcome = Outcome.OK if failed == 0 else Outcome.FAILED
    return Report(
        outcome,
        plan,
        decided.verdicts,
        decided.groups,
        issued=issued_count,
        failed=failed,
        archived=archived,
        restarted=restarted,
        next_due=next_due,
    )


def _default_name(plan: Plan, written: set[str], store: CertStore) -> str | None:
    """The directory whose pair becomes the top-level cert.pem/key.pem."""
    first = plan.certs[0] if plan.certs else None
    if first is None:
        return None
    if (store.root / first.spec.name / "cert.pem").is_file():
        return first.spec.name
    return next(iter(sorted(written)), None)


def next_sleep(report: Report, settings: Settings, now: datetime) -> float:
    """Seconds until the next cycle: a day, 30 min after a failure, 1 h when nothing validated."""
    if report.outcome is Outcome.SOURCE_DOWN:
        return float(settings.acme_db_retry_interval)
    if report.outcome is Outcome.FAILED:
        return float(settings.acme_retry_interval)
    if report.outcome is Outcome.NOTHING_VALID:
        return float(settings.acme_idle_interval)
    wait = timedelta(seconds=settings.acme_check_interval)
    if report.next_due is not None:
        wait = min(wait, max(report.next_due - now, timedelta(seconds=60)))
    return wait.total_seconds()


def summarize(report: Report, sleep: float) -> None:
    """The one summary line of a cycle."""
    plan = report.plan
    kept = sum(1 for c in plan.certs if c.action is Action.KEEP) if plan else 0
    log.info(
        "cycle.done",
        outcome=report.outcome.value,
        certificates=len(plan.certs) if plan else 0,
        kept=kept,
        issued=report.issued,
        failed=report.failed,
        archived=report.archived,
        restarted=",".join(report.restarted) or None,
        skipped_names=len(plan.skipped) if plan else 0,
        next_check_in=f"{int(sleep)}s",
    )
