"""One cycle: discover -> validate -> plan -> issue -> store -> apply, with one summary line.

This module wires the stages; it holds no decisions of its own beyond the order of steps and the
rules that archiving and clearing ``force_renew`` happen only after a cycle without errors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from acme_sidecar.adapters.acme import Issuer
from acme_sidecar.adapters.docker import Services
from acme_sidecar.adapters.mariadb import DomainSource
from acme_sidecar.adapters.volume import CertStore, load_chain
from acme_sidecar.config.settings import Settings
from acme_sidecar.core.discover import NameRules, candidate_groups
from acme_sidecar.core.errors import SourceError, StoreError
from acme_sidecar.core.model import Action, Issued, Plan, Verdict
from acme_sidecar.core.plan import Shape, make_plan
from acme_sidecar.core.report import Outcome, Report
from acme_sidecar.core.state import (
    State,
    apply_memory,
    record_issued,
    record_rejections,
    record_retry_after,
    record_validated,
    reusable_verdicts,
)
from acme_sidecar.core.validate import HttpCheck, IpPolicy, Resolver, validate_names
from acme_sidecar.shell.deploy import deploy

log = structlog.get_logger(__name__)


@dataclass
class Deps:
    """The adapters one cycle uses; the CLI builds them, tests pass fakes."""

    source: DomainSource
    resolver: Resolver
    store: CertStore
    issuer: Callable[[bytes], Issuer]
    http_check: Callable[[], contextlib.AbstractContextManager[HttpCheck]]
    public_ips: Callable[[], tuple[str | None, str | None]]
    ca_identities: Callable[[], tuple[str, ...]] = lambda: ()
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
    identities = settings.acme_caa_identities or deps.ca_identities()
    if not identities:
        log.info("caa.unchecked", reason="the CA names no CAA identity; it checks CAA itself")
    return IpPolicy(
        ipv4=ipv4,
        ipv6=ipv6,
        skip_ip_check=settings.skip_ip_check,
        snat4=settings.snat4,
        snat6=settings.snat6,
        skip_http=settings.skip_http_verification,
        ca_identities=identities,
    )


@contextlib.contextmanager
def _no_check() -> Iterator[None]:
    yield None


def decide(settings: Settings, deps: Deps, *, fresh: bool = False) -> Report:
    """Discover, validate and plan; no ACME order and no write to the volume.

    Names that passed validation recently and sit in a certificate that is not due are not
    checked again (see ``state.reusable_verdicts``) unless ``fresh``.
    """
    now = deps.clock()
    try:
        rows = deps.source.read()
    except SourceError as exc:
        log.error("db.unreachable", error=str(exc), action="keeping current certificates")
        return Report(Outcome.SOURCE_DOWN)
    groups = candidate_groups(rules_from(settings), rows)
    names = [n for g in groups for n in g.names]
    log.info("names.discovered", domains=len(rows.domains), names=len(names))
    stored = deps.store.load()
    state = deps.store.load_state()
    force = deps.store.force_requested()
    reused = (
        {}
        if fresh
        else reusable_verdicts(
            names,
            stored,
            state,
            now=now,
            revalidate_after=timedelta(seconds=settings.acme_revalidate_after),
            force=force,
        )
    )
    shape = Shape(sni=settings.enable_ssl_sni, max_names=settings.acme_max_names)
    grace = timedelta(seconds=settings.acme_name_grace)
    checked: dict[str, Verdict] = {}
    policy: IpPolicy | None = None

    def check(batch: list[str]) -> None:
        nonlocal policy
        if not batch:
            return
        policy = policy or _policy(settings, deps)
        checker = _no_check() if settings.skip_http_verification else deps.http_check()
        with checker as http:
            checked.update(validate_names(batch, deps.resolver, policy, http))

    def planned() -> tuple[Plan, dict[str, Verdict], State]:
        verdicts = {n: checked.get(n) or reused[n] for n in names}
        remember = settings.acme_revalidate_after > 0
        after = record_validated(state, checked, now) if remember else state
        verdicts, after = apply_memory(verdicts, stored, after, grace=grace, now=now)
        plan = make_plan(
            groups,
            verdicts,
            stored,
            shape=shape,
            force=force,
            now=now,
            retry_after=after.cert_retry_after,
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
    state = after
    for note in plan.notes:
        log.warning("plan.note", note=note)
    for cert in plan.certs:
        log.info(
            f"cert.{cert.action.value}",
            certificate=cert.spec.name,
            names=" ".join(cert.spec.domains),
            reason=cert.reason,
        )
    outcome = Outcome.OK if plan.certs else Outcome.NOTHING_VALID
    return Report(outcome, plan, verdicts, groups, rows, stored, state)


def run_cycle(settings: Settings, deps: Deps) -> Report:
    """One full cycle; never raises for a failure of the CA, the database or Docker."""
    try:
        deps.store.prepare()
    except StoreError as exc:
        log.error("store.unusable", error=str(exc))
        return Report(Outcome.FAILED, failed=1)
    dirs_before = set(deps.store.names())
    # a new volume needs an RSA-4096 key (up to seconds of CPU, outside the GIL): make it
    # while the database is read and the names are validated
    key_job = None
    if not deps.store.domain_key_path.exists():
        key_job = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keygen")
        key_future = key_job.submit(deps.store.domain_key)
    decided = decide(settings, deps)
    if key_job is not None:
        key_job.shutdown(wait=True)
        key_future.result()
    if decided.outcome is Outcome.SOURCE_DOWN or decided.plan is None:
        return decided
    store, plan, state, now = deps.store, decided.plan, decided.state, deps.clock()
    if decided.outcome is Outcome.NOTHING_VALID:
        store.save_state(state)
        log.warning(
            "cycle.nothing_valid",
            reason="no certificate can be ordered; keeping the current certificates",
            hint="see the name.skipped lines; SKIP_LETS_ENCRYPT=y turns the sidecar off",
        )
        return decided
    issued = failed = archived = 0
    written: dict[str, int] = {}
    if plan.to_order:
        key_pem = store.domain_key()
        results = deps.issuer(store.account_key()).issue_all(
            [c.spec for c in plan.to_order], key_pem
        )
        for result in results:
            if not isinstance(result, Issued):
                failed += 1
                state = record_rejections(state, result.rejected, now)
                if result.retry_after:
                    state = record_retry_after(state, result.spec.name, result.retry_after)
                continue
            state = record_rejections(state, result.dropped, now)
            try:
                store.write_cert(result.spec, result.fullchain_pem, key_pem)
            except (StoreError, OSError) as exc:
                failed += 1
                log.error("cert.store_failed", certificate=result.spec.name, error=str(exc))
                continue
            state = record_issued(state, set(result.spec.domains), result.spec.name)
            leaf = load_chain(result.fullchain_pem)[0]
            written[result.spec.name] = leaf.serial_number
            log.info(
                "cert.stored",
                certificate=result.spec.name,
                names=" ".join(result.spec.domains),
                serial=f"{leaf.serial_number:x}",
                not_after=leaf.not_valid_after_utc.isoformat(),
            )
            issued += 1
            failed += 1 if result.dropped else 0  # a wanted name is missing
    default_changed = False
    if plan.default_name and (store.root / plan.default_name / "cert.pem").is_file():
        default_changed = store.set_default(plan.default_name)
        if default_changed:
            log.info("cert.default", certificate=plan.default_name, files="cert.pem key.pem")
    if failed == 0:
        for name in plan.archive:
            if name not in written:
                target = store.archive(name)
                log.info("cert.archived", certificate=name, to=str(target.relative_to(store.root)))
                archived += 1
    applied: tuple[str, ...] = ()
    issue_failed = failed  # failures of ordering and storing, before any deploy problem
    if written or archived or default_changed:
        set_changed = set(store.names()) != dirs_before
        applied, errors = deploy(settings, deps.services, written, set_changed=set_changed)
        failed += errors
    if store.force_requested():
        # cleared once every certificate was re-issued and stored: a deploy problem is
        # reported, but must not make the next cycles order everything again
        if issue_failed == 0 and issued:
            store.clear_force()
            log.info("force_renew.cleared", reason="every certificate was re-issued")
        elif failed:
            log.warning("force_renew.kept", reason="the cycle had errors; it will try again")
    store.save_state(state)
    waits = [c.renew_at for c in plan.certs if c.renew_at and c.action is not Action.RENEW]
    return Report(
        Outcome.OK if failed == 0 else Outcome.FAILED,
        plan,
        decided.verdicts,
        decided.groups,
        decided.rows,
        decided.stored,
        state,
        issued=issued,
        failed=failed,
        archived=archived,
        applied=applied,
        next_due=min(waits, default=None),
    )


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
        services=",".join(report.applied) or None,
        skipped_names=len(plan.skipped) if plan else 0,
        next_check_in=f"{int(sleep)}s",
    )
