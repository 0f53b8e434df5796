"""Expiry warnings in the log: one ``cert.expiring`` warning line per certificate and day.

The line reaches the mailcow UI (``ACME_LOG``) through the log tap when Redis is configured;
mail and webhook notices come from ``ops/notify.py`` (the same rule, ``core.expiry``). Which
certificate was warned about when is kept in ``<ACME_CERT_DIR>/acme/expiry.json`` (written
atomically, only when a line was logged). Touches nothing else.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from acme_sidecar.core.expiry import expiry_warning
from acme_sidecar.core.own import OWN_MARK
from acme_sidecar.ops.hooks import CycleEvent
from acme_sidecar.ops.notify import EXPIRING, Notice, due, load_sent, remember, save_sent

log = structlog.get_logger(__name__)


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
