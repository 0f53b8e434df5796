"""Deploy: after the volume changed, reload or restart the consumers and check what they serve.

The set of certificate directories changed -> restart (SNI maps are built at start); only
contents changed -> reload. Then each service's TLS endpoint is asked, with SNI, for every
certificate written in this cycle; a service still serving an old serial after a reload is
restarted once, and a mismatch after that is one clear error naming service and name.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from acme_sidecar.adapters.docker import Services
from acme_sidecar.adapters.tls_probe import Endpoint, Kind, Mismatch, check_served
from acme_sidecar.config.settings import Settings
from acme_sidecar.core.errors import ServiceError

log = structlog.get_logger(__name__)


def endpoints(settings: Settings) -> list[Endpoint]:
    """The TLS endpoints to check, each tied to the restart service it belongs to."""
    out: list[Endpoint] = []
    specs: list[tuple[Kind, str, str]] = [
        ("smtp", settings.acme_verify_smtp, "postfix"),
        ("imap", settings.acme_verify_imap, "dovecot"),
        ("https", settings.acme_verify_https, "nginx"),
    ]
    for kind, address, word in specs:
        if not address:
            continue
        service = next((s for s in settings.acme_restart_services if word in s), word)
        host, _, port = address.rpartition(":")
        out.append(Endpoint(service, kind, host.strip("[]"), int(port)))
    return out


def _log_mismatch(m: Mismatch) -> None:
    log.error(
        "service.verify_failed",
        service=m.endpoint.service,
        endpoint=f"{m.endpoint.kind}://{m.endpoint.host}:{m.endpoint.port}",
        name=m.server_name,
        served=f"{m.served:x}" if m.served is not None else None,
        expected=f"{m.expected:x}",
        error=m.error or None,
    )


def deploy(
    settings: Settings,
    services: Services | None,
    written: Mapping[str, int],
    *,
    set_changed: bool,
) -> tuple[tuple[str, ...], int]:
    """Apply the change to the consumers and verify; return (actions done, error count)."""
    if services is None:
        return (), 0
    try:
        done = services.apply(restart=set_changed)
    except ServiceError as exc:
        log.error("service.failed", error=str(exc))
        return (), 1
    actions = tuple(f"{s}:{a}" for s, a in done.items())
    checks = [e for e in endpoints(settings) if e.service in done]
    if not checks or not written:
        return actions, 0
    attempts = settings.acme_verify_attempts
    mismatches = check_served(checks, written, attempts=attempts)
    reloaded = {
        m.endpoint.service for m in mismatches if done.get(m.endpoint.service) != "restarted"
    }
    if reloaded:
        log.warning("service.stale", services=",".join(sorted(reloaded)), action="restarting them")
        try:
            again_done = services.apply(
                restart=True,
                only=sorted(reloaded),
                reason="it still served the old certificate after the reload",
            )
            done.update(again_done)
            actions = tuple(f"{s}:{a}" for s, a in done.items())
        except ServiceError as exc:
            log.error("service.failed", error=str(exc))
            return actions, 1
        again = [e for e in checks if e.service in reloaded]
        mismatches = [m for m in mismatches if m.endpoint.service not in reloaded]
        mismatches += check_served(again, written, attempts=attempts)
    for m in mismatches:
        _log_mismatch(m)
    if not mismatches:
        log.info("service.verified", names=len(written), endpoints=len(checks))
    return actions, len(mismatches)
