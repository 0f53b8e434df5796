"""Notifications: mail and/or webhook when a cycle fails or a certificate is close to expiry.

Close to expiry follows ``core.expiry``: ``ACME_NOTIFY_EXPIRY_DAYS`` (14) and half of it (7)
before ``not_after``, at most ⅓ and ⅙ of the lifetime for short certificates; every certificate
counts, issued or own (the top-level pair is ``(default)`` when it is not a copy of one).

Decisions are pure (``problems``, ``due``, ``remember``, ``build_email``): which problems a
cycle shows, which of them were not already sent within a day, and what the messages say. The
I/O is in ``SmtpChannel`` (the stack's own Postfix by default), ``WebhookChannel`` (one JSON POST
per problem, each within 15 s, its answer's body unread) and ``Notifier``, which reads and writes
the small state file ``ACME_NOTIFY_STATE`` (default ``<ACME_CERT_DIR>/acme/notify.json``, written
atomically and only when something was sent). Nothing else is touched.
"""

from __future__ import annotations

import json
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import structlog

from acme_sidecar import __version__
from acme_sidecar.adapters.http_probe import FetchFailed, fetch
from acme_sidecar.adapters.volume.files import atomic_write
from acme_sidecar.config.settings import Settings
from acme_sidecar.core.ari import renew_time
from acme_sidecar.core.expiry import expiry_warning
from acme_sidecar.core.report import Outcome
from acme_sidecar.core.values import parse_host_port
from acme_sidecar.ops.hooks import CycleEvent

log = structlog.get_logger(__name__)

EVERY = timedelta(days=1)
WEBHOOK_DEADLINE = 15.0  # seconds for one POST, connection and answer included
CYCLE_FAILED = "cycle_failed"
EXPIRING = "certificate_expiring"

_FAILURE_SUMMARY = {
    Outcome.FAILED: "a certificate cycle had errors; the current certificates stay in place",
    Outcome.NOTHING_VALID: "no name passed validation, so no certificate can be ordered",
    Outcome.SOURCE_DOWN: "the mailcow database could not be read; certificates were not checked",
}


@dataclass(frozen=True, slots=True)
class Notice:
    """One problem worth telling the admin about."""

    key: str  # what "the same problem" means: cycle_failed, expiring:<certificate>
    event: str  # cycle_failed | certificate_expiring
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict)


def problems(event: CycleEvent, *, expiry_days: int) -> list[Notice]:
    """The problems of a finished cycle: its failure, and every certificate close to expiry."""
    notices = []
    report = event.report
    if report.outcome is not Outcome.OK and not event.quiet:
        skipped = report.plan.skipped if report.plan else ()
        notices.append(
            Notice(
                CYCLE_FAILED,
                CYCLE_FAILED,
                _FAILURE_SUMMARY[report.outcome],
                {
                    "outcome": report.outcome.value,
                    "errors": report.failed,
                    "skipped_names": {v.name: v.reason for v in skipped},
                    "hint": "docker compose logs acme; acme-sidecar check",
                },
            )
        )
    for name, cert in sorted(event.certificates.items()):
        warning = expiry_warning(cert.not_before, cert.not_after, event.finished, expiry_days)
        if warning is None:
            continue
        notices.append(
            Notice(
                f"expiring:{name}",
                EXPIRING,
                warning.summary(name, cert.not_after),
                {
                    "certificate": name,
                    "names": list(cert.domains),
                    "issuer": cert.issuer,
                    "not_after": cert.not_after.isoformat(),
                    "days_left": round(warning.days_left, 1),
                    "level": warning.level,
                    "renew_at": renew_time(  # the one rule: the CA's window, else lifetime
                        cert.cert_id, cert.not_before, cert.not_after, report.state.cert(name).ari
                    ).at.isoformat(),
                },
            )
        )
    return notices


def due(notices: Sequence[Notice], sent: Mapping[str, datetime], now: datetime) -> list[Notice]:
    """The notices whose problem was not notified within the last day."""
    return [n for n in notices if n.key not in sent or now - sent[n.key] >= EVERY]


def remember(
    sent: Mapping[str, datetime], keys: Sequence[str], now: datetime
) -> dict[str, datetime]:
    """The state after sending ``keys`` at ``now``; entries older than a day are forgotten."""
    kept = {k: t for k, t in sent.items() if now - t < EVERY}
    return kept | dict.fromkeys(keys, now)


def load_sent(path: Path) -> dict[str, datetime]:
    """When each problem was last notified; empty when the file is missing or damaged."""
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


def build_email(
    notices: Sequence[Notice],
    *,
    hostname: str,
    sender: str,
    recipients: Sequence[str],
    now: datetime,
) -> EmailMessage:
    """One plain-text message listing every notice."""
    msg = EmailMessage()
    first = notices[0].summary if len(notices) == 1 else f"{len(notices)} certificate problems"
    msg["Subject"] = f"[acme-sidecar] {hostname}: {first}"
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid("acme-sidecar", domain=hostname)
    msg["Auto-Submitted"] = "auto-generated"
    parts = [f"acme-sidecar on {hostname} reports:", ""]
    for notice in notices:
        parts.append(f"* {notice.summary}")
        for key, value in notice.details.items():
            shown = json.dumps(value) if isinstance(value, dict | list) else str(value)
            parts.append(f"    {key}: {shown}")
        parts.append("")
    parts.append("Each problem is reported at most once a day while it lasts.")
    msg.set_content("\n".join(parts) + "\n")
    return msg


def webhook_payload(notice: Notice, hostname: str) -> dict[str, Any]:
    """The JSON body of the webhook POST for one notice."""
    return {
        "event": notice.event,
        "hostname": hostname,
        "summary": notice.summary,
        "details": dict(notice.details),
    }


class Channel(Protocol):
    """A way to deliver notices; returns the keys it delivered, logs (never raises) failures."""

    name: str

    def send(self, notices: Sequence[Notice], now: datetime) -> set[str]:
        """Deliver ``notices``."""


class SmtpChannel:
    """Plain SMTP to ``host:port``, with STARTTLS (unverified) when the server offers it."""

    name = "email"

    def __init__(
        self,
        endpoint: str,
        *,
        hostname: str,
        sender: str,
        recipients: Sequence[str],
        timeout: float = 20.0,
    ) -> None:
        parsed = parse_host_port(endpoint)
        if parsed is None:
            raise ValueError(f"not host:port: {endpoint!r}")
        self.host, self.port = parsed
        self.hostname = hostname
        self.sender = sender
        self.recipients = tuple(recipients)
        self.timeout = timeout

    def send(self, notices: Sequence[Notice], now: datetime) -> set[str]:
        """Send one message with every notice."""
        msg = build_email(
            notices, hostname=self.hostname, sender=self.sender, recipients=self.recipients, now=now
        )
        try:
            with smtplib.SMTP(
                self.host, self.port, local_hostname=self.hostname, timeout=self.timeout
            ) as smtp:
                smtp.ehlo()
                if smtp.has_extn("starttls"):
                    # Opportunistic: the server may be presenting the very certificate that
                    # is failing, so it is not verified.
                    context = ssl.create_default_context()
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                    smtp.starttls(context=context)
                    smtp.ehlo()
                smtp.send_message(msg, from_addr=self.sender, to_addrs=list(self.recipients))
        except (smtplib.SMTPException, OSError) as exc:
            log.error(
                "notify.failed",
                channel=self.name,
                server=f"{self.host}:{self.port}",
                error=str(exc)[:300],
            )
            return set()
        return {n.key for n in notices}


class WebhookChannel:
    """One JSON POST per notice to ``url``, each done within ``deadline`` seconds.

    The answer's body is not read (only its status counts) and redirects are not followed. The
    URL is never logged, only its host: webhook paths and user names often hold a token.
    """

    name = "webhook"

    def __init__(self, url: str, *, hostname: str, deadline: float = WEBHOOK_DEADLINE) -> None:
        self._url = url
        self.host = urlsplit(url).hostname or ""
        self.hostname = hostname
        self.deadline = deadline

    def __repr__(self) -> str:
        return f"WebhookChannel(host={self.host!r})"

    def send(self, notices: Sequence[Notice], now: datetime) -> set[str]:
        """POST each notice; the keys whose POST got a 2xx answer."""
        delivered = set()
        for notice in notices:
            try:
                answer = fetch(
                    "POST",
                    self._url,
                    deadline=self.deadline,
                    cap=0,
                    json=webhook_payload(notice, self.hostname),
                    headers={"User-Agent": f"acme-sidecar/{__version__}"},
                )
            except FetchFailed as exc:
                error = str(exc)
            else:
                ok = 200 <= answer.status < 300
                error = "" if ok else f"HTTP {answer.status} {answer.reason}"
            if error:
                log.error(
                    "notify.failed",
                    channel=self.name,
                    problem=notice.key,
                    host=self.host,
                    error=error,
                )
                continue
            delivered.add(notice.key)
        return delivered


class Notifier:
    """The hook: find the problems, send those not sent within a day, remember what was sent."""

    def __init__(self, channels: Sequence[Channel], *, state: Path, expiry_days: int = 14) -> None:
        self.channels = tuple(channels)
        self.state = state
        self.expiry_days = expiry_days

    def after_cycle(self, event: CycleEvent) -> None:
        """Notify what is due; a failing channel is logged and tried again next cycle."""
        notices = problems(event, expiry_days=self.expiry_days)
        if not notices:
            return
        sent = load_sent(self.state)
        now = event.finished
        todo = due(notices, sent, now)
        if not todo:
            return
        delivered: set[str] = set()
        for channel in self.channels:
            got = channel.send(todo, now)
            if got:
                log.info("notify.sent", channel=channel.name, problems=",".join(sorted(got)))
            delivered |= got
        if not delivered:
            return
        try:
            save_sent(self.state, remember(sent, sorted(delivered), now))
        except OSError as exc:
            log.error("notify.state_failed", path=str(self.state), error=str(exc))


def state_path(settings: Settings) -> Path:
    """``ACME_NOTIFY_STATE``, default ``<ACME_CERT_DIR>/acme/notify.json``."""
    return settings.acme_notify_state or settings.acme_cert_dir / "acme" / "notify.json"


def sender(settings: Settings) -> str:
    """``ACME_NOTIFY_FROM``, default ``acme-sidecar@<MAILCOW_HOSTNAME>``."""
    return settings.acme_notify_from or f"acme-sidecar@{settings.mailcow_hostname}"


def from_settings(settings: Settings) -> Notifier | None:
    """The notifier the settings ask for, or None when no recipient and no webhook is set."""
    s = settings
    channels: list[Channel] = []
    if s.acme_notify_email:
        channels.append(
            SmtpChannel(
                s.acme_notify_smtp,
                hostname=s.mailcow_hostname,
                sender=sender(s),
                recipients=s.acme_notify_email,
            )
        )
    if s.acme_notify_webhook.get_secret_value():
        channels.append(
            WebhookChannel(s.acme_notify_webhook.get_secret_value(), hostname=s.mailcow_hostname)
        )
    if not channels:
        return None
    return Notifier(channels, state=state_path(s), expiry_days=s.acme_notify_expiry_days)
