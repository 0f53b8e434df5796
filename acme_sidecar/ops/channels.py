"""The ways alerts are delivered: mail over SMTP, our JSON webhook, and mailcow's watchdog webhook.

``SmtpChannel`` sends one plain-text message per batch (the alerts of a cycle, or its resolved
problems) to ``host:port`` (the stack's own Postfix by default), with opportunistic STARTTLS.
``WebhookChannel`` POSTs one JSON body per notice; ``TemplateWebhook`` POSTs one body per
batch made from mailcow's ``WATCHDOG_NOTIFY_WEBHOOK_BODY`` the way the watchdog fills it
(``$SUBJECT``/``${SUBJECT}`` and ``$BODY``/``${BODY}``). Every POST ends within 15 s and its
answer's body is not read; a webhook URL is never logged, only its host (paths hold tokens).
A channel returns the keys it delivered and logs (never raises) what failed.
"""

from __future__ import annotations

import json
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, Protocol
from urllib.parse import urlsplit

import structlog

from acme_sidecar import __version__
from acme_sidecar.adapters.http_probe import FetchFailed, fetch
from acme_sidecar.core.values import parse_host_port
from acme_sidecar.ops.alerts import Notice

log = structlog.get_logger(__name__)

WEBHOOK_DEADLINE = 15.0  # seconds for one POST, connection and answer included


def subject(notices: Sequence[Notice], prefix: str, *, resolved: bool) -> str:
    """``PREFIX SUMMARY`` for one notice, ``PREFIX N certificate problems [resolved]`` else."""
    if len(notices) == 1:
        return f"{prefix} {notices[0].summary}"
    return f"{prefix} {len(notices)} certificate problems" + (" resolved" if resolved else "")


def body(notices: Sequence[Notice], hostname: str, *, resolved: bool) -> str:
    """The plain text of a message: every notice with its details."""
    parts = [f"acme-sidecar on {hostname} reports:", ""]
    for notice in notices:
        parts.append(f"* {notice.summary}")
        for key, value in notice.details.items():
            if isinstance(value, list) and value and key == "causes":
                parts.append(f"    {key}:")
                parts.extend(f"      - {item}" for item in value)
                continue
            shown = json.dumps(value) if isinstance(value, dict | list) else str(value)
            parts.append(f"    {key}: {shown}")
        parts.append("")
    parts.append(
        "Nothing more is sent about these."
        if resolved
        else "Each problem is reported once; a message follows when it is resolved."
    )
    return "\n".join(parts) + "\n"


def build_email(
    notices: Sequence[Notice],
    *,
    hostname: str,
    sender: str,
    recipients: Sequence[str],
    now: datetime,
    prefix: str = "",
    resolved: bool = False,
    headers: Mapping[str, str] | None = None,
) -> EmailMessage:
    """One plain-text message listing every notice."""
    msg = EmailMessage()
    msg["Subject"] = subject(notices, prefix or f"[acme-sidecar] {hostname}:", resolved=resolved)
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid("acme-sidecar", domain=hostname)
    msg["Auto-Submitted"] = "auto-generated"
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body(notices, hostname, resolved=resolved))
    return msg


def webhook_payload(notice: Notice, hostname: str, *, resolved: bool = False) -> dict[str, Any]:
    """The JSON body of the webhook POST for one notice."""
    return {
        "event": notice.event,
        "status": "resolved" if resolved else "alert",
        "hostname": hostname,
        "summary": notice.summary,
        "details": dict(notice.details),
    }


def fill_template(template: str, subject_text: str, body_text: str) -> Any:
    """mailcow's ``WATCHDOG_NOTIFY_WEBHOOK_BODY`` with ``$SUBJECT``/``${SUBJECT}`` and
    ``$BODY``/``${BODY}`` replaced (JSON-escaped, as they sit inside JSON strings), parsed;
    ``ValueError`` when the result is not JSON."""
    filled = template
    for name, value in (("SUBJECT", subject_text), ("BODY", body_text)):
        escaped = json.dumps(value)[1:-1]
        filled = filled.replace(f"${{{name}}}", escaped).replace(f"${name}", escaped)
    return json.loads(filled)


class Channel(Protocol):
    """A way to deliver notices; returns the keys it delivered, logs (never raises) failures."""

    name: str

    def send(self, notices: Sequence[Notice], now: datetime, *, resolved: bool) -> set[str]:
        """Deliver ``notices`` (alerts, or ``resolved`` ones)."""


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
        prefix: str = "",
        headers: Mapping[str, str] | None = None,
        timeout: float = 20.0,
    ) -> None:
        parsed = parse_host_port(endpoint)
        if parsed is None:
            raise ValueError(f"not host:port: {endpoint!r}")
        self.host, self.port = parsed
        self.hostname = hostname
        self.sender = sender
        self.recipients = tuple(recipients)
        self.prefix = prefix
        self.headers = dict(headers or {})
        self.timeout = timeout

    def send(self, notices: Sequence[Notice], now: datetime, *, resolved: bool) -> set[str]:
        """Send one message with every notice."""
        msg = build_email(
            notices,
            hostname=self.hostname,
            sender=self.sender,
            recipients=self.recipients,
            now=now,
            prefix=self.prefix,
            resolved=resolved,
            headers={} if resolved else self.headers,
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


def post(url: str, payload: Any, deadline: float) -> str:
    """POST ``payload`` as JSON; the error ("" on a 2xx answer)."""
    try:
        answer = fetch(
            "POST",
            url,
            deadline=deadline,
            cap=0,
            json=payload,
            headers={"User-Agent": f"acme-sidecar/{__version__}"},
        )
    except FetchFailed as exc:
        return str(exc)
    return "" if 200 <= answer.status < 300 else f"HTTP {answer.status} {answer.reason}"


class WebhookChannel:
    """One JSON POST per notice to ``url`` (``webhook_payload``), each within ``deadline`` s.

    Redirects are not followed. The URL is never logged, only its host: webhook paths and user
    names often hold a token.
    """

    name = "webhook"

    def __init__(self, url: str, *, hostname: str, deadline: float = WEBHOOK_DEADLINE) -> None:
        self._url = url
        self.host = urlsplit(url).hostname or ""
        self.hostname = hostname
        self.deadline = deadline

    def __repr__(self) -> str:
        return f"{type(self).__name__}(host={self.host!r})"

    def send(self, notices: Sequence[Notice], now: datetime, *, resolved: bool) -> set[str]:
        """POST each notice; the keys whose POST got a 2xx answer."""
        delivered = set()
        for notice in notices:
            payload = webhook_payload(notice, self.hostname, resolved=resolved)
            error = post(self._url, payload, self.deadline)
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


class TemplateWebhook(WebhookChannel):
    """mailcow's watchdog webhook: one POST per message, its body ``WATCHDOG_NOTIFY_WEBHOOK_BODY``
    with the subject and the text filled in (``fill_template``)."""

    name = "watchdog webhook"

    def __init__(
        self,
        url: str,
        template: str,
        *,
        hostname: str,
        prefix: str,
        deadline: float = WEBHOOK_DEADLINE,
    ) -> None:
        super().__init__(url, hostname=hostname, deadline=deadline)
        self.template = template
        self.prefix = prefix

    def send(self, notices: Sequence[Notice], now: datetime, *, resolved: bool) -> set[str]:
        """POST one filled-in body for all ``notices``."""
        title = subject(notices, self.prefix, resolved=resolved)
        text = body(notices, self.hostname, resolved=resolved)
        try:
            payload = fill_template(self.template, title, text)
        except ValueError as exc:
            error = f"WATCHDOG_NOTIFY_WEBHOOK_BODY is no JSON once filled in ({exc})"
        else:
            error = post(self._url, payload, self.deadline)
        if error:
            log.error("notify.failed", channel=self.name, host=self.host, error=error[:300])
            return set()
        return {n.key for n in notices}
