"""Expiry warnings in the log: one ``cert.expiring`` warning line per certificate and day.

The line reaches the mailcow UI (``ACME_LOG``) through the log tap when Redis is configured;
mail and webhook alerts come from ``ops/alerts.py`` (the same rule, ``core.expiry``). Which
certificate was warned about when is kept in ``<ACME_CERT_DIR>/acme/expiry.json`` (written
atomically, only when a line was logged). Touches nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import structlog

from acme_sidecar.adapters.volume.files import atomic_write
from acme_sidecar.core.expiry import expiry_warning
from acme_sidecar.core.own import OWN_MARK
from acme_sidecar.ops.alerts import EXPIRING, Notice
from acme_sidecar.ops.hooks import CycleEvent

log = structlog.get_logger(__name__)

EVERY = timedelta(days=1)


def due(notices: Sequence[Notice], sent: Mapping[str, datetime], now: datetime) -> list[Notice]:
    """The notices whose problem was not logged within the last day."""
    return [n for n in notices if n.key not in sent or now - sent[n.key] >= EVERY]


def remember(
    sent: Mapping[str, datetime], keys: Sequence[str], now: datetime
) -> dict[str, datetime]:
    """The state after logging ``keys`` at ``now``; entries older than a day are forgotten."""
    kept = {k: t for k, t in sent.items() if now - t < EVERY}
    return kept | dict.fromkeys(keys, now)


def load_sent(path: Path) -> dict[str, datetime]:
    """When each certificate was last warned about; empty when missing or damaged."""
    try:
        data = json.loads(path.read_text("utf-8"))
        return {str(k): datetime.fromisoformat(str(v)) for k, v in data["sent"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def save_sent(path: Path, sent: Mapping[str, datetime]) -> None:
    """Write the state file atomically."""
    data = {"sent": {k: t.isoformat() for k, t in sorted(sent.items())}}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data, indent=1).encode(), 0o644)


class ExpiryLog:
    """The hook: log each certificate close to expiry, at most once a day."""

    def __init__(self, state: Path, *, days: int = 14) -> None:
        self.state = state
        self.days = days

    def after_cycle(self, event: CycleEvent) -> None:
        """Log what is due; remember it (a failed write is logged, the line repeats)."""
        notices = []
        for name, cert in sorted(event.certificates.items()):
            warning = expiry_warning(cert.not_before, cert.not_after, event.finished, self.days)
            if warning is None:
                continue
            own = name == OWN_MARK
            details = {
                "level": warning.level,
                "issuer": cert.issuer,
                "not_after": cert.not_after.isoformat(),
                "own": own or None,
                "hint": "replace it (acme-sidecar import)"
                if own
                else "see acme-sidecar status and the cycle's lines",
            }
            summary = warning.summary(name, cert.not_after)
            notices.append(Notice(f"expiring:{name}", EXPIRING, summary, details))
        if not notices:
            return
        sent = load_sent(self.state)
        todo = due(notices, sent, event.finished)
        for notice in todo:
            log.warning(
                "cert.expiring",
                certificate=notice.key.removeprefix("expiring:"),
                summary=notice.summary,
                **notice.details,
            )
        if not todo:
            return
        try:
            save_sent(self.state, remember(sent, [n.key for n in todo], event.finished))
        except OSError as exc:
            log.error("expiry.state_failed", path=str(self.state), error=str(exc))
