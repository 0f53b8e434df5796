"""Alerts: which problems a cycle shows, and when one becomes an alert or is resolved.

Two kinds of problem (``Notice``):

- ``cycle_failed``: certificate work is failing. A certificate whose orders fail (the CA's
  answer in the ledger), a deploy the services did not take, the database unreadable (past
  ``ACME_DB_WAIT``), no name passing validation, or a cycle that ended with another error. It
  becomes an alert once it has lasted ``ACME_ALERT_AFTER`` without a break.
- ``expiring:<certificate>``: a certificate inside its expiry warning (``core.expiry``). It is
  an alert at once, and again when its level rises (warning, urgent, expired).
- ``dane:<tlsa owner>``: the TLSA records of an MX name match no served key (``ops.dane``, which
  makes these notices). An alert at once.
- ``dane-next:<key>``: a key change waits for the admin to publish the next key's TLSA record
  (``ops.dane``; ``core.rollover``). An alert at once, once per next key.

Each alert is sent once on each channel; when the problem is gone, one "resolved" message
follows. A channel that failed to deliver is tried again at the next cycles, on its own: the
channels that got the message are not sent it again. What each channel was alerted, and since
when the work fails, is an ``AlertState`` kept in ``ACME_NOTIFY_STATE`` so a restart neither
forgets nor repeats. Pure: the clock is the event's, the file is read and
written by ``load_state``/``save_state`` only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from acme_sidecar.adapters.volume.files import atomic_write
from acme_sidecar.core.ari import renew_time
from acme_sidecar.core.expiry import expiry_warning
from acme_sidecar.core.report import Outcome, Report
from acme_sidecar.ops.hooks import CycleEvent

CYCLE_FAILED = "cycle_failed"
EXPIRING = "certificate_expiring"
DANE_MISMATCH = "dane_mismatch"
DANE_PUBLISH_NEXT = "dane_publish_next"
_CAUSES_SHOWN = 10  # causes listed in one message; the rest are counted

_FAILURE_SUMMARY = {
    Outcome.FAILED: "certificate work is failing; the current certificates stay in place",
    Outcome.NOTHING_VALID: "no name passed validation, so no certificate can be ordered",
    Outcome.SOURCE_DOWN: "the mailcow database cannot be read; certificates are not checked",
}


@dataclass(frozen=True, slots=True)
class Notice:
    """One problem worth telling the admin about."""

    key: str  # the same problem: cycle_failed, expiring:<cert>, dane:<owner>, dane-next:<key>
    event: str  # cycle_failed | certificate_expiring | dane_mismatch | dane_publish_next
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict)


def causes(report: Report) -> list[str]:
    """Why certificate work fails, one line per cause naming the certificate or component:
    each certificate whose orders fail (with the CA's answer), an unfinished deploy, and what
    the cycle's outcome says. Empty when nothing fails."""
    found = []
    names = {c.spec.name: c.spec.domains for c in report.plan.certs} if report.plan else {}
    for name, ledger in sorted(report.state.certs.items()):
        if ledger.failures:
            shown = " ".join(names.get(name) or ledger.unstored_names or (name,))
            found.append(
                f"certificate {name} ({shown}): {ledger.failures} failed attempt(s) in a row; "
                f"the CA: {ledger.last_error or 'no answer recorded'}"
            )
    deploy = report.state.deploy
    if deploy is not None and deploy.attempts:
        found.append(
            f"the services (Postfix, Dovecot, nginx): certificates written since "
            f"{deploy.since.isoformat()} are not served yet after {deploy.attempts} attempt(s)"
        )
    if report.outcome is Outcome.SOURCE_DOWN:
        found.append("the mailcow database (MariaDB): it cannot be read")
    elif report.outcome is Outcome.NOTHING_VALID:
        skipped = report.plan.skipped if report.plan else ()
        found.append(
            "name validation: no name passed ("
            + "; ".join(f"{v.name}: {v.reason}" for v in skipped[:_CAUSES_SHOWN])
            + ")"
        )
    elif report.crashed and not found:
        found.append("the cycle ended with an error (the certificate volume, or unexpected)")
    elif report.outcome is Outcome.FAILED and not found:
        found.append(f"the cycle had {report.failed} error(s); see the log")
    return found


def problems(event: CycleEvent, *, expiry_days: int) -> list[Notice]:
    """The problems of a finished cycle: failing certificate work, and every certificate
    inside its expiry warning. A quiet failure (the database down less than
    ``ACME_DB_WAIT``) is not one."""
    notices = []
    report = event.report
    found = [] if event.quiet and report.outcome is Outcome.SOURCE_DOWN else causes(report)
    if found:
        skipped = report.plan.skipped if report.plan else ()
        more = len(found) - _CAUSES_SHOWN
        notices.append(
            Notice(
                CYCLE_FAILED,
                CYCLE_FAILED,
                _FAILURE_SUMMARY.get(report.outcome, _FAILURE_SUMMARY[Outcome.FAILED]),
                {
                    "outcome": report.outcome.value,
                    "causes": found[:_CAUSES_SHOWN] + ([f"and {more} more"] if more > 0 else []),
                    "skipped_names": {v.name: v.reason for v in skipped[:_CAUSES_SHOWN]},
                    "hint": "docker compose logs acme-mailcow; acme-sidecar status",
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


@dataclass(frozen=True, slots=True)
class Alerted:
    """An alert that was sent and is not resolved yet."""

    at: datetime
    summary: str
    level: str = ""  # an expiry warning's level: a higher one is a new alert


@dataclass(frozen=True, slots=True)
class AlertState:
    """What the alerts remember across cycles and restarts: since when work fails, and per
    channel (its name) the alerts it got and that are not resolved on it yet."""

    failing_since: datetime | None = None
    alerted: Mapping[str, Mapping[str, Alerted]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Step:
    """What one cycle's problems mean, per channel: the alerts to send, the resolved messages
    to send, and the state once each of them is delivered (``settle``)."""

    fire: Mapping[str, tuple[Notice, ...]]
    resolve: Mapping[str, tuple[Notice, ...]]
    failing_since: datetime | None


def step(
    state: AlertState,
    channels: Iterable[str],
    notices: Iterable[Notice],
    now: datetime,
    *,
    alert_after: timedelta,
    quiet: bool = False,
) -> Step:
    """Decide, for each channel on its own: a channel that did not get an alert (or its
    resolved message) is sent it, one that got it is not. ``quiet``: the cycle says nothing
    about failing work (the database down for less than ``ACME_DB_WAIT``): a failing episode
    neither starts nor ends."""
    current = {n.key: n for n in notices}
    failing = CYCLE_FAILED in current
    since = state.failing_since
    if quiet and not failing:
        failing = since is not None
    elif failing:
        since = since or now
    else:
        since = None
    fire: dict[str, tuple[Notice, ...]] = {}
    resolve: dict[str, tuple[Notice, ...]] = {}
    for channel in channels:
        alerted = state.alerted.get(channel, {})
        fire[channel] = tuple(_due(alerted, current, since, now, alert_after))
        resolve[channel] = tuple(
            _resolved(key, sent, state.failing_since)
            for key, sent in sorted(alerted.items())
            if key not in current and not (key == CYCLE_FAILED and failing)
        )
    return Step(fire, resolve, since)


def _due(
    alerted: Mapping[str, Alerted],
    current: Mapping[str, Notice],
    since: datetime | None,
    now: datetime,
    alert_after: timedelta,
) -> list[Notice]:
    """The alerts one channel is owed."""
    fire = []
    for key, notice in current.items():
        if key == CYCLE_FAILED:
            if key in alerted or since is None or now - since < alert_after:
                continue
            notice = replace(notice, details={"failing_since": since.isoformat(), **notice.details})
        else:
            before = alerted.get(key)
            level = str(notice.details.get("level", ""))
            if before is not None and _rank(level) <= _rank(before.level):
                continue
        fire.append(notice)
    return fire


def settle(
    state: AlertState, done: Step, delivered: Mapping[str, set[str]], now: datetime
) -> AlertState:
    """The state after ``done``, per channel: delivered alerts remembered, delivered
    resolutions forgotten; what a channel did not deliver is tried on it again at the next
    cycle. A channel not in ``done`` (no longer configured) is forgotten, as is one with
    nothing alerted."""
    alerted: dict[str, dict[str, Alerted]] = {}
    for channel, fire in done.fire.items():
        got = delivered.get(channel, set())
        resolved = {n.key for n in done.resolve.get(channel, ())} & got
        kept = {k: a for k, a in state.alerted.get(channel, {}).items() if k not in resolved}
        for notice in fire:
            if notice.key in got:
                level = str(notice.details.get("level", ""))
                kept[notice.key] = Alerted(now, notice.summary, level)
        if kept:
            alerted[channel] = kept
    return AlertState(done.failing_since, alerted)


_LEVELS = ("", "warning", "urgent", "expired")


def _rank(level: str) -> int:
    return _LEVELS.index(level) if level in _LEVELS else 0


def _resolved(key: str, alerted: Alerted, since: datetime | None) -> Notice:
    details: dict[str, Any]
    if key == CYCLE_FAILED:
        summary = "resolved: certificate work succeeds again"
        details = {"failing_since": since.isoformat() if since else None}
        event = CYCLE_FAILED
    elif key.startswith("dane:"):
        owner = key.removeprefix("dane:")
        summary = f"resolved: the TLSA records at {owner} no longer mismatch the served certificate"
        details = {"tlsa": owner}
        event = DANE_MISMATCH
    elif key.startswith("dane-next:"):
        summary = "resolved: the TLSA record of the next key is published"
        details = {}
        event = DANE_PUBLISH_NEXT
    else:
        name = key.removeprefix("expiring:")
        summary = f"resolved: certificate {name} is no longer close to expiry"
        details = {"certificate": name}
        event = EXPIRING
    return Notice(
        key,
        event,
        summary,
        {**details, "alert": alerted.summary, "alerted_at": alerted.at.isoformat()},
    )


def load_state(path: Path, channels: Iterable[str] = ()) -> AlertState:
    """The alert state; empty when the file is missing or damaged (or of the oldest format,
    which only said when each problem was last sent). A file of the format before channels
    were told apart (one ``alerted`` for all) counts as sent on every one of ``channels``: no
    alert is sent twice."""
    try:
        data = json.loads(path.read_text("utf-8"))
        since = data.get("failing_since")
        if "channels" in data:
            per_channel = data["channels"]
        else:
            shared = data.get("alerted", {})
            per_channel = dict.fromkeys(channels, shared) if shared else {}
        return AlertState(
            datetime.fromisoformat(since) if since else None,
            {str(c): _read_alerted(alerted) for c, alerted in per_channel.items()},
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return AlertState()


def _read_alerted(data: Mapping[str, Any]) -> dict[str, Alerted]:
    return {
        str(k): Alerted(datetime.fromisoformat(v["at"]), str(v["summary"]), str(v["level"]))
        for k, v in data.items()
    }


def save_state(path: Path, state: AlertState) -> None:
    """Write the alert state atomically."""
    data = {
        "failing_since": state.failing_since.isoformat() if state.failing_since else None,
        "channels": {
            channel: {
                k: {"at": a.at.isoformat(), "summary": a.summary, "level": a.level}
                for k, a in sorted(alerted.items())
            }
            for channel, alerted in sorted(state.alerted.items())
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data, indent=1).encode(), 0o644)
