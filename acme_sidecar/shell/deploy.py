"""Deploy: after the volume changed, reload or restart the consumers and check what they serve.

Each service gets the action ``core.consumers.reactions`` chooses from what changed and the way to
the containers (reload, Postfix's map rebuild, restart; a service with nothing to do is not
touched). Then each service's TLS endpoint is asked, with SNI, for every certificate written
in this cycle; a service still serving an old serial after a reload is restarted once, and a
mismatch after that is one clear error naming service and name. An endpoint whose host name
does not resolve (another stack's service name) is one warning and is not checked; all checks
of a deploy run concurrently under one deadline (``policy.timeout``). The way to the containers
is chosen anew for each deploy (``Services.way``: ``ACME_DOCKER_API=auto``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

import structlog

from acme_sidecar.adapters.tls_probe import Mismatch, check_served, unresolved
from acme_sidecar.config.policies import DeployPolicy
from acme_sidecar.core.consumers import Change, Endpoint, reactions, restart_all
from acme_sidecar.core.errors import ServiceError
from acme_sidecar.core.ports import Services

log = structlog.get_logger(__name__)


_LOOKUP_TIMEOUT = 5.0  # seconds for the endpoints' host names, within the verification deadline


def _address(e: Endpoint) -> str:
    host = f"[{e.host}]" if ":" in e.host else e.host
    return f"{e.kind}://{host}:{e.port}"


def _resolving(
    checks: list[Endpoint], timeout: float, stop: threading.Event | None
) -> list[Endpoint]:
    """The endpoints whose host resolves; one warning for each other one (not checked)."""
    missing = unresolved(checks, timeout=timeout, stop=stop)
    if stop is not None and stop.is_set():
        return checks  # the verification ends at once as stopped
    for e in checks:
        if e in missing:
            log.warning(
                "service.verify_skipped",
                service=e.service,
                host=e.host,
                endpoint=_address(e),
                reason=f"the host name does not resolve ({missing[e]}): not checked",
            )
    return [e for e in checks if e not in missing]


def _log_mismatch(m: Mismatch) -> None:
    log.error(
        "service.verify_failed",
        service=m.endpoint.service,
        endpoint=_address(m.endpoint),
        name=m.server_name,
        served=f"{m.served:x}" if m.served is not None else None,
        expected=f"{m.expected:x}",
        error=m.error or None,
    )


def deploy(
    policy: DeployPolicy,
    services: Services | None,
    written: Mapping[str, int],
    *,
    change: Change,
    stop: threading.Event | None = None,
) -> tuple[tuple[str, ...], int]:
    """Apply the change to the consumers and verify; return (actions done, error count).

    Verification of all endpoints together ends at ``policy.timeout`` or at once when
    ``stop`` is set (``docker stop``): the caller keeps the deploy owed and finishes it later.
    """
    if services is None:
        return (), 0
    services = services.way()  # dockerapi or the socket, chosen now
    actions_of = reactions(services.services, change, can_rebuild_map=services.can_rebuild_map)
    if not actions_of:
        return (), 0
    try:
        done = services.apply(actions_of)
    except ServiceError as exc:
        log.error("service.failed", error=str(exc))
        return (), 1
    actions = tuple(f"{s}:{a}" for s, a in done.items())
    checks = [e for e in policy.endpoints if e.service in done]
    if not checks or not written:
        return actions, 0
    started = time.monotonic()
    deadline = started + policy.timeout
    checks = _resolving(checks, min(_LOOKUP_TIMEOUT, policy.timeout), stop)

    def verify(endpoints: list[Endpoint]) -> list[Mismatch]:
        left = max(0.0, deadline - time.monotonic())
        if not endpoints:
            return []
        return check_served(endpoints, written, attempts=policy.attempts, deadline=left, stop=stop)

    mismatches = verify(checks)
    if stop is not None and stop.is_set():
        log.warning("service.verify_stopped", reason="stopping; the deploy is finished later")
        return actions, len(mismatches) or 1
    reloaded = {
        m.endpoint.service for m in mismatches if done.get(m.endpoint.service) != "restarted"
    }
    if reloaded:
        log.warning("service.stale", services=",".join(sorted(reloaded)), action="restarting them")
        try:
            again_done = services.apply(
                restart_all(
                    sorted(reloaded), "it still served the old certificate after the reload"
                )
            )
            done.update(again_done)
            actions = tuple(f"{s}:{a}" for s, a in done.items())
        except ServiceError as exc:
            log.error("service.failed", error=str(exc))
            return actions, 1
        again = [e for e in checks if e.service in reloaded]
        mismatches = [m for m in mismatches if m.endpoint.service not in reloaded]
        mismatches += verify(again)
    for m in mismatches:
        _log_mismatch(m)
    if not mismatches and checks:
        log.info(
            "service.verified",
            names=len(written),
            endpoints=len(checks),
            checked=",".join(_address(e) for e in checks),
            seconds=round(time.monotonic() - started, 2),
        )
    return actions, len(mismatches)
