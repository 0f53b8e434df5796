"""Hooks: what else happens after each cycle (health file, metrics, notifications, mailcow UI).

A hook gets the settings-independent ``Report`` of a cycle and the certificates in the volume.
Hooks must never raise: a broken notifier must not stop certificate work (the daemon catches and
logs what a hook raises anyway).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

import structlog

from acme_sidecar.adapters.volume.files import atomic_write
from acme_sidecar.core.expiry import URGENT, WARNING, expiry_warning
from acme_sidecar.core.model import StoredCert
from acme_sidecar.core.report import Outcome, Report

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CycleEvent:
    """What hooks see after a cycle."""

    report: Report
    certificates: Mapping[str, StoredCert]
    finished: datetime
    quiet: bool = False  # a failure that raises no alarm yet (database down < ACME_DB_WAIT)


class Hook(Protocol):
    """Something that reacts to a finished cycle."""

    def after_cycle(self, event: CycleEvent) -> None:
        """React; must not raise."""


def run_hooks(hooks: Sequence[Hook], event: CycleEvent) -> None:
    """Call every hook; log (never propagate) what one raises."""
    for hook in hooks:
        try:
            hook.after_cycle(event)
        except Exception as exc:  # noqa: BLE001 - a hook must never stop the daemon
            log.error("hook.failed", hook=type(hook).__name__, error=str(exc)[:300])


class HealthFile:
    """Writes ``ACME_HEALTH_FILE`` for ``acme-sidecar health`` (the container HEALTHCHECK).

    It lives outside the certificate volume (default under /run), so a quiet cycle writes
    nothing into the volume.
    """

    def __init__(self, path: Path, *, expiry_days: int = 14) -> None:
        self.path = path
        self.expiry_days = expiry_days

    def after_cycle(self, event: CycleEvent) -> None:
        """Record the last success, since when it fails, and the earliest expiry."""
        previous = read_health(self.path)
        ok = event.report.outcome is Outcome.OK
        failing_since = (
            None if ok else (previous.get("failing_since") or event.finished.isoformat())
        )
        expiry = min((c.not_after for c in event.certificates.values()), default=None)
        owed = event.report.state.deploy
        data = {
            "last_cycle": event.finished.isoformat(),
            "last_outcome": event.report.outcome.value,
            "last_success": event.finished.isoformat() if ok else previous.get("last_success"),
            "failing_since": failing_since,
            "earliest_expiry": expiry.isoformat() if expiry else None,
            "deploy_owed_since": owed.since.isoformat() if owed else None,
            "expiry_days": str(self.expiry_days),
            "certificates": json.dumps(
                {
                    n: [c.not_before.isoformat(), c.not_after.isoformat()]
                    for n, c in sorted(event.certificates.items())
                }
            ),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps(data, indent=1).encode(), 0o644)


def read_health(path: Path) -> dict[str, str | None]:
    """The health file, or an empty dict when missing or damaged."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return (
        {str(k): (str(v) if v is not None else None) for k, v in data.items()}
        if isinstance(data, dict)
        else {}
    )


def health_problems(
    health: Mapping[str, str | None],
    now: datetime,
    *,
    failing_for: timedelta,
    expiry_margin: timedelta = timedelta(days=7),
) -> list[str]:
    """Why the sidecar is unhealthy (empty when healthy)."""
    problems = []
    since = health.get("failing_since")
    if since and now - datetime.fromisoformat(since) > failing_for:
        problems.append(f"cycles have failed since {since}")
    owed = health.get("deploy_owed_since")
    if owed and now - datetime.fromisoformat(owed) > failing_for:
        problems.append(f"certificates written since {owed} are not yet served by the services")
    certs = _certificates(health)
    if certs is None:  # a health file of an older acme-sidecar
        expiry = health.get("earliest_expiry")
        if expiry and datetime.fromisoformat(expiry) - now < expiry_margin:
            problems.append(f"a certificate expires at {expiry}")
        return problems
    return problems + expiry_lines(health, now, levels=(URGENT, "expired"))


def _certificates(health: Mapping[str, str | None]) -> dict[str, list[str]] | None:
    raw = health.get("certificates")
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def expiry_lines(
    health: Mapping[str, str | None], now: datetime, *, levels: Sequence[str] = (WARNING,)
) -> list[str]:
    """The certificates of the health file whose expiry warning (``core.expiry``) is at one of
    ``levels`` now: ``urgent``/``expired`` make the sidecar unhealthy, ``warning`` is shown."""
    out = []
    days = int(health.get("expiry_days") or 14)
    for name, (not_before, not_after) in sorted((_certificates(health) or {}).items()):
        end = datetime.fromisoformat(not_after)
        warning = expiry_warning(datetime.fromisoformat(not_before), end, now, days)
        if warning is not None and warning.level in levels:
            out.append(warning.summary(name, end))
    return out
