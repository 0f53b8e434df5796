"""Quiet start: before its first cycle the daemon waits for what mailcow starts beside it.

On a mailcow start or update MariaDB and nginx often come up after this container, and after a
host reboot dockerapi too. Like acme-mailcow, the daemon waits for them instead of failing: the
database (``ACME_DB_WAIT``, default 10 minutes), then a name of mailcow's dockerapi resolving
when deploys will go through it (``ACME_DOCKERAPI_WAIT``, default 2 minutes; acme-mailcow's
``until ping dockerapi``), then the webroot being served through the hostname (the HTTP
self-check's own target, up to ``ACME_WEBROOT_WAIT``). The daemon waits for the webroot only
before the first self-check of its life (``webroot_gate``): a first cycle that reuses every
recent verdict checks nothing, so it does not wait, and imports neither dnspython nor requests
(the daemon's idle memory). Each wait logs one ``start.waiting`` line
when it begins and one ``start.ready`` (or ``start.gave_up``) line when it ends; nothing is
reported to the mailcow UI or the watchdog while waiting. After ``ACME_DB_WAIT`` the database
being down is a failure like any other (``db_quiet`` tells the hooks when it is not yet one);
a dockerapi still missing after its wait only means deploys stay owed until it is there.
May touch: the database, DNS, dockerapi's names and the webroot through the adapters in ``Deps``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from acme_sidecar.config.policies import StartPolicy
from acme_sidecar.core.errors import SourceError
from acme_sidecar.core.validate import IpPolicy, self_check_refusal
from acme_sidecar.shell.gather import Deps

log = structlog.get_logger(__name__)

LADDER = (1.0, 2.0, 5.0, 10.0, 15.0)  # seconds between tries; then every 30 s
LAST_STEP = 30.0

Probe = Callable[[], str | None]
"""A readiness check: ``None`` when ready, else why not."""


def wait_for(
    component: str,
    probe: Probe,
    limit: float,
    stop: threading.Event,
    *,
    every: float = LAST_STEP,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Try ``probe`` on a short ladder, then every ``every`` seconds (at most ``LAST_STEP``),
    until it is ready, ``limit`` seconds pass or ``stop`` is set; True when ready. One line when
    the wait begins and one when it ends."""
    start = clock()
    reason = probe()
    if reason is None:
        return True
    log.info("start.waiting", component=component, reason=reason, limit=f"{limit:.0f}s")
    for n in range(1_000_000):
        step = min(LADDER[n] if n < len(LADDER) else LAST_STEP, max(every, 0.01))
        left = limit - (clock() - start)
        if left <= 0 or stop.wait(min(step, left)):
            break
        reason = probe()
        if reason is None:
            log.info("start.ready", component=component, waited=f"{clock() - start:.1f}s")
            return True
    if not stop.is_set():
        log.warning(
            "start.gave_up",
            component=component,
            waited=f"{clock() - start:.0f}s",
            reason=reason,
            action="starting the cycles anyway",
        )
    return False


def _database(deps: Deps) -> Probe:
    def probe() -> str | None:
        try:
            deps.source.read()
        except SourceError as exc:
            return str(exc)
        return None

    return probe


def _webroot(policy: StartPolicy, deps: Deps) -> Probe:
    """The self-check of the hostname through its own addresses (as the first cycle does)."""
    allowed = IpPolicy(
        ipv4=None,
        ipv6=None,
        skip_ip_check=policy.skip_ip_check,
        own_addresses=policy.own_addresses,
    )

    def probe() -> str | None:
        addresses = [
            a
            for rdtype in ("A", "AAAA")
            for a in deps.resolver.lookup(policy.hostname, rdtype).addresses
            if self_check_refusal(a, allowed) is None
        ]
        if not addresses:
            return f"{policy.hostname} has no address the self-check may use"
        reasons = []
        with deps.http_check(allowed) as check:
            for address in addresses:
                why = check.check(policy.hostname, address)
                if why is None:
                    return None
                reasons.append(f"{address}: {why}")
        return "; ".join(reasons)

    return probe


def wait_until_ready(policy: StartPolicy, deps: Deps, *, webroot: bool = True) -> None:
    """Wait for the database, then for dockerapi, then (``webroot``) for the webroot; never
    raises, never longer than the policy's limits, and not at all once ``deps.stop`` is set."""
    try:
        wait_for("database", _database(deps), policy.db_wait, deps.stop, every=policy.db_retry)
        dockerapi = deps.services_ready
        if dockerapi is not None and policy.dockerapi_wait > 0 and not deps.stop.is_set():
            wait_for("dockerapi", dockerapi, policy.dockerapi_wait, deps.stop)
        if webroot:
            _wait_for_webroot(policy, deps)
    except Exception as exc:  # noqa: BLE001 - waiting is a courtesy; the cycle reports faults
        log.warning("start.wait_failed", error_type=type(exc).__name__, error=str(exc))


def _wait_for_webroot(policy: StartPolicy, deps: Deps) -> None:
    if policy.check_webroot and policy.webroot_wait > 0 and not deps.stop.is_set():
        wait_for("webroot", _webroot(policy, deps), policy.webroot_wait, deps.stop)


def webroot_gate(policy: StartPolicy, deps: Deps) -> Callable[[], None]:
    """The webroot wait, run once: before the first self-check of the daemon's life
    (``Deps.before_checks``); never raises."""
    lock = threading.Lock()
    done = False

    def gate() -> None:
        nonlocal done
        with lock:
            if done:
                return
            done = True
            try:
                _wait_for_webroot(policy, deps)
            except Exception as exc:  # noqa: BLE001 - waiting is a courtesy
                log.warning("start.wait_failed", error_type=type(exc).__name__, error=str(exc))

    return gate


class DbGrace:
    """Whether a cycle with the database down is a failure yet: only once it has been down
    for ``wait`` (counted from the daemon's start, or from the first such cycle after one
    that could read it)."""

    def __init__(self, wait: timedelta, started: datetime) -> None:
        self.wait = wait
        self.down_since: datetime | None = started

    def quiet(self, source_down: bool, now: datetime) -> bool:
        """True when this cycle's failure must not raise an alarm yet."""
        if not source_down:
            self.down_since = None
            return False
        if self.down_since is None:
            self.down_since = now
        return now - self.down_since < self.wait
