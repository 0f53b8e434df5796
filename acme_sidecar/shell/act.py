"""Act: carry out a decision. Orders placed, certificates stored, the default pair and the
archive updated, the services reloaded or restarted and verified.

Each step that writes to the volume first records in the ledger what it now owes (a deploy,
the default pair's reload), so a kill between two writes is finished by the next cycle
(``finish_deploy``, ``store_unstored``). ``act`` returns what it did as an ``Acted``; the
cycle settles it into the ledger. May touch: the CA, the volume, the services.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import structlog

from acme_sidecar.adapters.volume import toppair
from acme_sidecar.adapters.volume.pem import key_matches, load_chain, load_key
from acme_sidecar.config.policies import CyclePolicy
from acme_sidecar.core.decide import Decision
from acme_sidecar.core.errors import StoreError
from acme_sidecar.core.issued import problems, spki
from acme_sidecar.core.model import CertSpec, Issued, StoredCert
from acme_sidecar.core.ports import Volume
from acme_sidecar.core.report import deployed_of
from acme_sidecar.core.settle import (
    RetryPolicy,
    begin_orders,
    deploy_begin,
    deploy_checks,
    deploy_finished,
    deploy_wrote,
    deploy_wrote_default,
    settle_result,
    settle_store_failed,
    settle_stored,
    sni_map,
)
from acme_sidecar.shell.ari import refresh_windows
from acme_sidecar.shell.boundary import Book
from acme_sidecar.shell.gather import Deps
from acme_sidecar.shell.own import own_written

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Acted:
    """What a stage that acts did."""

    issued: int = 0
    failed: int = 0  # orders, stores and deploys that failed
    archived: int = 0
    applied: tuple[str, ...] = ()  # the services reloaded or restarted
    order_failed: int = 0  # of ``failed``, before the deploy: archiving waits for a clean cycle

    def __add__(self, other: Acted) -> Acted:
        return Acted(
            self.issued + other.issued,
            self.failed + other.failed,
            self.archived + other.archived,
            self.applied + other.applied,
            self.order_failed + other.order_failed,
        )


def owe(book: Book, store: Volume, now: datetime) -> None:
    """Record the deploy owed before the first write of a cycle (with the SNI map before)."""
    if book.state.deploy is None:
        domains = {n: c.domains for n, c in store.certs.load().items()}
        book.update(deploy_begin(book.state, store.certs.names(), now, sni_map(domains)))


def store_one(
    book: Book,
    store: Volume,
    spec: CertSpec,
    chain: bytes,
    key_pem: bytes,
    now: datetime,
    retry: RetryPolicy,
) -> bool:
    """Store an issued chain, owing its deploy first; False when it could not be stored."""
    owe(book, store, now)
    book.update(deploy_wrote(book.state, spec.name))
    try:
        store.certs.write_cert(spec, chain, key_pem)
    except (StoreError, OSError) as exc:
        log.error("cert.store_failed", certificate=spec.name, error=str(exc)[:300])
        book.update(settle_store_failed(book.state, spec.name, str(exc), now, retry))
        return False
    book.note(settle_stored(book.state, spec.name))
    leaf = load_chain(chain)[0]
    log.info(
        "cert.stored",
        certificate=spec.name,
        names=" ".join(spec.domains),
        serial=f"{leaf.serial_number:x}",
        not_after=leaf.not_valid_after_utc.isoformat(),
    )
    return True


def store_unstored(book: Book, store: Volume, now: datetime, retry: RetryPolicy) -> Acted:
    """Chains issued in an earlier cycle that could not be stored: store them, never re-order."""
    stored = failed = 0
    pending = [(n, c) for n, c in sorted(book.state.certs.items()) if c.unstored]
    key_pem = store.keys.domain_key() if pending else b""
    for name, ledger in pending:
        spec = CertSpec(name, ledger.unstored_names or (name,))
        chain = ledger.unstored.encode()
        try:
            leaf = load_chain(chain)[0]
        except StoreError:
            leaf = None
        if leaf is None or leaf.not_valid_after_utc <= now:
            log.warning("cert.unstored_dropped", certificate=name, reason="unusable or expired")
            book.update(settle_stored(book.state, name))
            continue
        if not key_matches(leaf, load_key(key_pem)):  # a fresh key (ACME_KEY_REUSE=n), gone
            log.warning("cert.unstored_dropped", certificate=name, reason="its key was not kept")
            book.update(settle_stored(book.state, name))
            continue
        found = problems(chain, spec.domains, spki(load_key(key_pem).public_key()), now)
        if found:  # held from before the issued check (core.issued): checked here too
            log.warning("cert.unstored_dropped", certificate=name, reason="; ".join(found))
            book.update(settle_stored(book.state, name))
            continue
        if store.certs.holds_chain(name, chain):  # stored just before a kill
            book.update(settle_stored(book.state, name))
            continue
        log.info("cert.unstored_retry", certificate=name, reason="issued earlier, not yet stored")
        ok = store_one(book, store, spec, chain, key_pem, now, retry)
        stored, failed = stored + ok, failed + (not ok)
    return Acted(issued=stored, failed=failed)


def finish_deploy(policy: CyclePolicy, deps: Deps, book: Book) -> Acted:
    """Apply and verify the deploy the ledger owes; clear it only when it fully succeeded."""
    owed = book.state.deploy
    if owed is None:
        return Acted()
    certs = deps.store.certs.load()
    change, checks = deploy_checks(owed, {n: c.domains for n, c in certs.items()})
    written = {name: certs[directory].serial for name, directory in checks.items()}
    written |= own_written(policy.own, deps.store, owed, certs)
    if owed.attempts:
        log.info("deploy.resumed", certificates=",".join(owed.certs) or None, since=str(owed.since))
    from acme_sidecar.shell.deploy import deploy  # with the TLS probe: when a deploy is owed

    actions, errors = deploy(policy.deploy, deps.services, written, change=change, stop=deps.stop)
    book.update(deploy_finished(book.state, ok=errors == 0))
    if errors == 0 and deps.deployed is not None and (owed.certs or owed.default):
        deps.deployed(deployed_of(owed, toppair.with_top(deps.store, certs), actions))
    return Acted(failed=errors, applied=actions)


def act(
    policy: CyclePolicy,
    deps: Deps,
    book: Book,
    decision: Decision,
    stored: Mapping[str, StoredCert],
    *,
    clean: bool,
    now: datetime,
) -> tuple[Acted, dict[str, StoredCert]]:
    """Order what the plan says, store each certificate as it arrives, update the default pair,
    archive what is no longer wanted (only when nothing failed, ``clean`` saying whether
    anything did before), deploy; return what was done and the volume's certificates as the
    cycle leaves them (``stored``: as the decision saw them)."""
    store, plan = deps.store, decision.plan
    done = _order(policy, deps, book, decision, now) if plan.to_order else Acted()
    if plan.default_name and not store.certs.is_default(plan.default_name):
        owe(book, store, now)
        book.update(deploy_wrote_default(book.state))
        store.certs.set_default(plan.default_name)
        log.info("cert.default", certificate=plan.default_name, files="cert.pem key.pem")
    archived = 0
    if clean and done.failed == 0 and plan.archive:
        owe(book, store, now)
        for name in plan.archive:
            target = store.certs.archive(name)
            log.info("cert.archived", certificate=name, to=str(target.relative_to(store.root)))
            archived += 1
    done = done + Acted(archived=archived, order_failed=done.failed)
    done = done + finish_deploy(policy, deps, book)
    after = store.certs.load() if done.issued or archived else dict(stored)
    if deps.windows is not None and done.issued:  # the new ones' windows: no wake-up for them
        state = refresh_windows(
            deps.windows, deps.stop, book.state, after, policy.ari_interval, deps.clock()
        )
        book.update(state)
    return done, after


def _order(policy: CyclePolicy, deps: Deps, book: Book, decision: Decision, now: datetime) -> Acted:
    """Place the plan's orders; store each certificate as it arrives."""
    if deps.stop.is_set():
        return Acted()
    store, to_order = deps.store, decision.plan.to_order
    names = [c.spec.name for c in to_order]
    if decision.rollover is None:
        keys = store.keys.order_keys(policy.shape.key_type, names, reuse=policy.key_reuse)
    else:  # ACME_DANE: the key changes only once its TLSA record is published
        from acme_sidecar.shell.rollover import order_keys

        keys = order_keys(
            store,
            decision.rollover,
            policy.shape.key_type,
            names,
            reuse=policy.key_reuse,
            server=decision.plan.default_name,
        )
    book.update(begin_orders(book.state, names, now))
    results = deps.issuer(store.keys.account_key()).issue_all(
        [c.spec for c in to_order],
        keys,
        replaces={c.spec.name: c.replaces for c in to_order if c.replaces},
    )
    issued = failed = 0
    for result in results:
        settled = settle_result(
            book.state, result, deps.clock(), policy.retry, directory=policy.shape.directory
        )
        if not isinstance(result, Issued):
            book.update(settled)
            failed += 1
            continue
        book.note(settled)  # saved with the deploy owed, before the first file is written
        key_pem = keys if isinstance(keys, bytes) else keys[result.spec.name]
        if not store_one(
            book, store, result.spec, result.fullchain_pem, key_pem, now, policy.retry
        ):
            failed += 1
            continue
        issued += 1
        failed += 1 if result.dropped else 0  # a wanted name is missing
    return Acted(issued=issued, failed=failed)
