"""Notifications: the alerts of ``ops/alerts.py``, sent by mail and/or webhook.

The channels come from ``ACME_NOTIFY_EMAIL``/``ACME_NOTIFY_WEBHOOK`` when either is set, else
from mailcow's watchdog settings, which mailcow.conf already holds and the override example
passes: ``WATCHDOG_NOTIFY_EMAIL`` (mail as the watchdog sends it: from
``watchdog@<MAILCOW_HOSTNAME>``, subject ``<WATCHDOG_SUBJECT>: acme-mailcow: ...``,
``X-Priority: 1``) and ``WATCHDOG_NOTIFY_WEBHOOK`` with its ``WATCHDOG_NOTIFY_WEBHOOK_BODY``.
Mail goes through ``ACME_NOTIFY_SMTP`` (the stack's own Postfix) either way. mailcow's values
are read leniently: a bad one is one warning and is left out. One line at start says which
channel is used and where it came from.

``Notifier`` is the hook: it reads the alert state (``ACME_NOTIFY_STATE``, default
``<ACME_CERT_DIR>/acme/notify.json``), sends what ``alerts.step`` decides, and writes the state
back (atomically, only when it changed). Nothing else is touched.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

import structlog

from acme_sidecar.config.settings import Settings
from acme_sidecar.core.values import is_email, url_origin
from acme_sidecar.ops.alerts import Notice, load_state, problems, save_state, settle, step
from acme_sidecar.ops.channels import Channel, SmtpChannel, TemplateWebhook, WebhookChannel
from acme_sidecar.ops.hooks import CycleEvent

log = structlog.get_logger(__name__)

_URL = re.compile(r"https?://[^\s/]+(/\S*)?")


class Notifier:
    """The hook: find the problems, send the alerts and resolutions due, remember them."""

    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        state: Path,
        expiry_days: int = 14,
        alert_after: timedelta = timedelta(days=1),
        more: Callable[[], Sequence[Notice]] | None = None,
    ) -> None:
        """``more``: problems found by another hook that ran before (the DANE check)."""
        self.channels = tuple(channels)
        self.more = more
        self.state = state
        self.expiry_days = expiry_days
        self.alert_after = alert_after

    def after_cycle(self, event: CycleEvent) -> None:
        """Send what is due on each channel; what a channel did not deliver is tried on that
        channel again next cycle (the others, which got it, are not sent it again)."""
        now = event.finished
        notices = problems(event, expiry_days=self.expiry_days)
        notices += self.more() if self.more is not None else []
        names = [c.name for c in self.channels]
        before = load_state(self.state, names)
        done = step(before, names, notices, now, alert_after=self.alert_after, quiet=event.quiet)
        delivered: dict[str, set[str]] = {}
        for channel in self.channels:
            got = delivered.setdefault(channel.name, set())
            for batch, resolved in ((done.fire, False), (done.resolve, True)):
                notices_due = batch[channel.name]
                if not notices_due:
                    continue
                sent = channel.send(notices_due, now, resolved=resolved)
                if sent:
                    log.info(
                        "notify.sent",
                        channel=channel.name,
                        kind="resolved" if resolved else "alert",
                        problems=",".join(sorted(sent)),
                    )
                got |= sent
        after = settle(before, done, delivered, now)
        if after == before:
            return
        try:
            save_state(self.state, after)
        except OSError as exc:
            log.error("notify.state_failed", path=str(self.state), error=str(exc))


def state_path(settings: Settings) -> Path:
    """``ACME_NOTIFY_STATE``, default ``<ACME_CERT_DIR>/acme/notify.json``."""
    return settings.acme_notify_state or settings.acme_cert_dir / "acme" / "notify.json"


def sender(settings: Settings) -> str:
    """``ACME_NOTIFY_FROM``, default ``acme-sidecar@<MAILCOW_HOSTNAME>``."""
    return settings.acme_notify_from or f"acme-sidecar@{settings.mailcow_hostname}"


def watchdog_recipients(value: str) -> tuple[str, ...]:
    """``WATCHDOG_NOTIFY_EMAIL`` read as the watchdog reads it (surrounding double quotes
    dropped, comma-separated); an entry that is no e-mail address is one warning, skipped."""
    text = value.strip()
    text = text.removeprefix('"').removesuffix('"')
    found = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        if is_email(item):
            found.append(item)
        else:
            log.warning(
                "config.lenient",
                variable="WATCHDOG_NOTIFY_EMAIL",
                value=item,
                reading="skipped: not an e-mail address such as admin@example.org",
            )
    return tuple(dict.fromkeys(found))


def _watchdog_channels(settings: Settings) -> list[Channel]:
    s = settings
    channels: list[Channel] = []
    recipients = watchdog_recipients(s.watchdog_notify_email)
    prefix = f"{s.watchdog_subject.strip() or 'Watchdog ALERT'}: acme-mailcow:"
    if recipients:
        channels.append(
            SmtpChannel(
                s.acme_notify_smtp,
                hostname=s.mailcow_hostname,
                sender=s.acme_notify_from or f"watchdog@{s.mailcow_hostname}",
                recipients=recipients,
                prefix=prefix,
                headers={"X-Priority": "1"},
            )
        )
    url = s.watchdog_notify_webhook.get_secret_value().strip()
    if url and not _URL.fullmatch(url):
        log.warning(
            "config.lenient",
            variable="WATCHDOG_NOTIFY_WEBHOOK",
            value=url_origin(url),
            reading="not used: not an http:// or https:// URL",
        )
    elif url and not s.watchdog_notify_webhook_body.strip():
        log.warning(
            "notify.webhook_skipped",
            variable="WATCHDOG_NOTIFY_WEBHOOK_BODY",
            reason="empty: mailcow's watchdog skips its webhook then too",
        )
    elif url:
        channels.append(
            TemplateWebhook(
                url, s.watchdog_notify_webhook_body, hostname=s.mailcow_hostname, prefix=prefix
            )
        )
    return channels


def from_settings(
    settings: Settings, more: Callable[[], Sequence[Notice]] | None = None
) -> Notifier | None:
    """The notifier the settings ask for, or None when there is no channel; one line says
    which channel is used and where it came from. ``more``: see ``Notifier``."""
    s = settings
    channels: list[Channel] = []
    webhook = s.acme_notify_webhook.get_secret_value()
    if s.acme_notify_email or webhook:
        source = "ACME_NOTIFY_EMAIL/ACME_NOTIFY_WEBHOOK"
        if s.acme_notify_email:
            channels.append(
                SmtpChannel(
                    s.acme_notify_smtp,
                    hostname=s.mailcow_hostname,
                    sender=sender(s),
                    recipients=s.acme_notify_email,
                )
            )
        if webhook:
            channels.append(WebhookChannel(webhook, hostname=s.mailcow_hostname))
    else:
        source = "mailcow.conf: WATCHDOG_NOTIFY_EMAIL/WATCHDOG_NOTIFY_WEBHOOK"
        channels = _watchdog_channels(s)
    if not channels:
        log.info("notify.off", reason="no usable alert channel (see the lines above)")
        return None
    log.info(
        "notify.channel",
        channels="; ".join(_describe(c) for c in channels),
        source=source,
        alert_after=f"{s.acme_alert_after}s",
    )
    return Notifier(
        channels,
        state=state_path(s),
        expiry_days=s.acme_notify_expiry_days,
        alert_after=timedelta(seconds=s.acme_alert_after),
        more=more,
    )


def _describe(channel: Channel) -> str:
    if isinstance(channel, SmtpChannel):
        return (
            f"{channel.name} to {','.join(channel.recipients)} "
            f"via {channel.host}:{channel.port} from {channel.sender}"
        )
    if isinstance(channel, WebhookChannel):
        return f"{channel.name} to {channel.host}"
    return channel.name
