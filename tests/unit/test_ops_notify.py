"""Alerts: which problems a cycle shows, when one becomes an alert, when it is resolved, and
the channels the settings make (ACME_NOTIFY_*, else mailcow's WATCHDOG_*)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from acme_sidecar.config.settings import load_settings
from acme_sidecar.core.errors import ConfigError
from acme_sidecar.core.ledger import CertLedger, Deploy, State
from acme_sidecar.core.model import Action, CertPlan, CertSpec, Plan, StoredCert, Verdict
from acme_sidecar.core.report import Outcome, Report
from acme_sidecar.ops.alerts import AlertState, Notice, load_state, problems
from acme_sidecar.ops.channels import (
    SmtpChannel,
    TemplateWebhook,
    build_email,
    fill_template,
    webhook_payload,
)
from acme_sidecar.ops.hooks import CycleEvent
from acme_sidecar.ops.notify import Notifier, from_settings

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
HOST = "mail.example.org"


def cert(name: str, days_left: float) -> StoredCert:
    end = NOW + timedelta(days=days_left)
    return StoredCert(
        name, (name, f"autodiscover.{name}"), end - timedelta(days=90), end, 1, "CA", True
    )


def event(outcome: Outcome = Outcome.OK, *certs: StoredCert, at: datetime = NOW) -> CycleEvent:
    skipped = (Verdict("autoconfig.example.org", False, "no A or AAAA record"),)
    return CycleEvent(
        Report(outcome, Plan((), None, skipped=skipped), failed=1), {c.name: c for c in certs}, at
    )


class FakeChannel:
    """Records what it was asked to send; delivers only while ``up``."""

    def __init__(self, name: str, up: bool = True) -> None:
        self.name = name
        self.up = up
        self.sent: list[list[str]] = []

    def send(self, notices: Sequence[Notice], now: datetime, *, resolved: bool) -> set[str]:
        self.sent.append([("resolved " if resolved else "") + n.key for n in notices])
        return {n.key for n in notices} if self.up else set()


AFTER = timedelta(days=1)


def failing_ca(at: datetime = NOW) -> CycleEvent:
    """A cycle whose order for mail.example.org failed at the CA (recorded in the ledger)."""
    spec = CertSpec(HOST, (HOST, f"autodiscover.{HOST}"))
    ledger = CertLedger(failures=2, last_error="urn:ietf:params:acme:error:connection: timeout")
    report = Report(
        Outcome.FAILED,
        Plan((CertPlan(spec, Action.RENEW, "due"),), HOST),
        state=State(certs={HOST: ledger}),
        failed=1,
    )
    return CycleEvent(report, {}, at)


def test_problems_of_a_cycle() -> None:
    """A failed cycle and each certificate within the margin are problems; others are not."""
    found = problems(
        event(Outcome.FAILED, cert("a.example.org", 3), cert("b.example.org", 40), cert("c", -1)),
        expiry_days=14,
    )
    assert [n.key for n in found] == ["cycle_failed", "expiring:a.example.org", "expiring:c"]
    assert found[0].event == "cycle_failed"
    assert found[0].details["skipped_names"] == {"autoconfig.example.org": "no A or AAAA record"}
    assert found[1].event == "certificate_expiring" and "3.0 days" in found[1].summary
    assert found[1].details["names"] == ["a.example.org", "autodiscover.a.example.org"]
    assert "expired" in found[2].summary
    assert problems(event(Outcome.OK, cert("b.example.org", 40)), expiry_days=14) == []


def test_the_cause_names_the_certificate_and_the_ca_answer() -> None:
    """A failing order is named with its certificate, its names and the CA's problem."""
    (notice,) = problems(failing_ca(), expiry_days=14)
    (cause,) = notice.details["causes"]
    assert cause.startswith(f"certificate {HOST} ({HOST} autodiscover.{HOST}): 2 failed")
    assert "the CA: urn:ietf:params:acme:error:connection: timeout" in cause


def test_every_fault_is_a_cause() -> None:
    """An unfinished deploy, the database, and no valid name each name their component; a
    back-off cycle that ends OK still shows the certificate that fails."""
    owed = State(deploy=Deploy(NOW - timedelta(hours=3), (HOST,), attempts=2))
    (deploy,) = problems(CycleEvent(Report(Outcome.FAILED, state=owed), {}, NOW), expiry_days=14)
    assert deploy.details["causes"][0].startswith("the services (Postfix, Dovecot, nginx)")
    (db,) = problems(event(Outcome.SOURCE_DOWN), expiry_days=14)
    assert db.details["causes"] == ["the mailcow database (MariaDB): it cannot be read"]
    (none,) = problems(event(Outcome.NOTHING_VALID), expiry_days=14)
    assert "autoconfig.example.org: no A or AAAA record" in none.details["causes"][0]
    waiting = failing_ca()
    ok = replace(waiting, report=replace(waiting.report, outcome=Outcome.OK, failed=0))
    assert [n.key for n in problems(ok, expiry_days=14)] == ["cycle_failed"]


def test_a_quiet_failure_is_no_problem_yet() -> None:
    """The database down for less than ACME_DB_WAIT is not notified."""
    quiet = replace(event(Outcome.SOURCE_DOWN), quiet=True)
    assert problems(quiet, expiry_days=14) == []


def test_one_alert_after_alert_after_then_one_resolved(tmp_path: Path) -> None:
    """Failing work is told once, when it has failed ACME_ALERT_AFTER without a break, and once
    more when it recovers; a restart in between (a new Notifier on the same state file) neither
    repeats nor forgets."""
    state = tmp_path / "acme" / "notify.json"
    mail = FakeChannel("email")

    def notifier() -> Notifier:
        return Notifier([mail], state=state, alert_after=AFTER)

    notifier().after_cycle(failing_ca(NOW))
    notifier().after_cycle(failing_ca(NOW + timedelta(hours=23)))
    assert mail.sent == [] and load_state(state).failing_since == NOW
    notifier().after_cycle(failing_ca(NOW + timedelta(days=1)))
    assert mail.sent == [["cycle_failed"]]
    for hours in (25, 48, 72):
        notifier().after_cycle(failing_ca(NOW + timedelta(hours=hours)))
    assert mail.sent == [["cycle_failed"]]
    notifier().after_cycle(event(Outcome.OK, at=NOW + timedelta(days=4)))
    assert mail.sent == [["cycle_failed"], ["resolved cycle_failed"]]
    notifier().after_cycle(event(Outcome.OK, at=NOW + timedelta(days=5)))
    assert len(mail.sent) == 2 and load_state(state) == AlertState()


def test_a_break_starts_the_wait_again(tmp_path: Path) -> None:
    """A success before ACME_ALERT_AFTER ends the episode: no alert and no resolved message."""
    mail = FakeChannel("email")
    notifier = Notifier([mail], state=tmp_path / "n.json", alert_after=AFTER)
    notifier.after_cycle(failing_ca(NOW))
    notifier.after_cycle(event(Outcome.OK, at=NOW + timedelta(hours=12)))
    notifier.after_cycle(failing_ca(NOW + timedelta(hours=13)))
    notifier.after_cycle(failing_ca(NOW + timedelta(hours=36)))
    assert mail.sent == []
    notifier.after_cycle(failing_ca(NOW + timedelta(hours=37)))
    assert mail.sent == [["cycle_failed"]]


def test_a_quiet_cycle_neither_resolves_nor_starts(tmp_path: Path) -> None:
    """The database briefly down after an alert is no recovery."""
    mail = FakeChannel("email")
    notifier = Notifier([mail], state=tmp_path / "n.json", alert_after=timedelta(0))
    notifier.after_cycle(event(Outcome.NOTHING_VALID))
    quiet = replace(event(Outcome.SOURCE_DOWN, at=NOW + timedelta(hours=1)), quiet=True)
    notifier.after_cycle(quiet)
    assert mail.sent == [["cycle_failed"]]


def test_expiry_alerts_at_once_again_when_worse_and_resolves(tmp_path: Path) -> None:
    """A certificate inside its expiry warning is an alert at once, not again at the same
    level, again when urgent, and resolved once it is renewed."""
    mail = FakeChannel("email")
    notifier = Notifier([mail], state=tmp_path / "n.json", alert_after=AFTER)
    notifier.after_cycle(event(Outcome.OK, cert("a", 10)))
    notifier.after_cycle(event(Outcome.OK, cert("a", 9), at=NOW + timedelta(days=1)))
    assert mail.sent == [["expiring:a"]]
    notifier.after_cycle(event(Outcome.OK, cert("a", 6), at=NOW + timedelta(days=4)))
    notifier.after_cycle(event(Outcome.OK, cert("a", 80), at=NOW + timedelta(days=5)))
    assert mail.sent == [["expiring:a"], ["expiring:a"], ["resolved expiring:a"]]


def test_undelivered_alerts_are_tried_again(tmp_path: Path) -> None:
    """When no channel delivered, the alert is not recorded and the next cycle tries again."""
    state = tmp_path / "notify.json"
    mail = FakeChannel("email", up=False)
    notifier = Notifier([mail], state=state, alert_after=timedelta(0))
    notifier.after_cycle(event(Outcome.FAILED))
    assert load_state(state).alerted == {}
    mail.up = True
    notifier.after_cycle(event(Outcome.FAILED, at=NOW + timedelta(minutes=30)))
    assert (
        mail.sent == [["cycle_failed"], ["cycle_failed"]]
        and "cycle_failed" in (load_state(state).alerted["email"])
    )


def test_a_failed_channel_alone_is_tried_again(tmp_path: Path) -> None:
    """Mail delivers and the webhook fails: the next cycles try only the webhook until it
    delivers, then nothing is sent again; the resolved message goes the same way."""
    state = tmp_path / "notify.json"
    mail, hook = FakeChannel("email"), FakeChannel("webhook", up=False)

    def cycle(hours: int, failing: bool = True) -> None:
        at = NOW + timedelta(hours=hours)
        Notifier([mail, hook], state=state, alert_after=timedelta(0)).after_cycle(
            failing_ca(at) if failing else event(Outcome.OK, at=at)
        )

    cycle(0)
    assert mail.sent == [["cycle_failed"]] and hook.sent == [["cycle_failed"]]
    cycle(1)
    assert mail.sent == [["cycle_failed"]] and hook.sent == [["cycle_failed"]] * 2
    hook.up = True
    cycle(2)
    cycle(3)
    assert mail.sent == [["cycle_failed"]] and hook.sent == [["cycle_failed"]] * 3
    assert set(load_state(state).alerted) == {"email", "webhook"}
    mail.up = False
    cycle(4, failing=False)
    assert mail.sent[1:] == [["resolved cycle_failed"]] and hook.sent[3:] == [
        ["resolved cycle_failed"]
    ]
    assert set(load_state(state).alerted) == {"email"}
    mail.up = True
    cycle(5, failing=False)
    cycle(6, failing=False)
    assert mail.sent[1:] == [["resolved cycle_failed"]] * 2 and len(hook.sent) == 4
    assert load_state(state) == AlertState()


def test_a_state_file_from_before_channels_counts_as_sent_on_all(tmp_path: Path) -> None:
    """A notify.json with one ``alerted`` for all channels (the format before) reads as sent
    on every channel: the alert is not sent again; its resolved message goes to each."""
    state = tmp_path / "notify.json"
    state.write_text(
        json.dumps(
            {
                "failing_since": NOW.isoformat(),
                "alerted": {"cycle_failed": {"at": NOW.isoformat(), "summary": "s", "level": ""}},
            }
        )
    )
    mail, hook = FakeChannel("email"), FakeChannel("webhook")
    notifier = Notifier([mail, hook], state=state, alert_after=timedelta(0))
    notifier.after_cycle(failing_ca(NOW + timedelta(hours=1)))
    assert mail.sent == [] and hook.sent == []
    notifier.after_cycle(event(Outcome.OK, at=NOW + timedelta(hours=2)))
    assert mail.sent == [["resolved cycle_failed"]] and hook.sent == [["resolved cycle_failed"]]
    assert json.loads(state.read_text()) == {"failing_since": None, "channels": {}}


def test_email_and_webhook_content() -> None:
    """The mail lists every problem with its causes; the webhook body says alert or resolved."""
    notices = problems(event(Outcome.FAILED, cert("a.example.org", 3)), expiry_days=14)
    msg = build_email(
        notices, hostname=HOST, sender=f"acme@{HOST}", recipients=["x@y.org"], now=NOW
    )
    assert msg["Subject"] == f"[acme-sidecar] {HOST}: 2 certificate problems"
    assert msg["To"] == "x@y.org" and msg["Auto-Submitted"] == "auto-generated"
    body = msg.get_content()
    assert notices[0].summary in body and "autoconfig.example.org" in body
    assert "- the cycle had 1 error(s); see the log" in body
    resolved = build_email(
        notices[:1], hostname=HOST, sender="s@x.org", recipients=["x@y.org"], now=NOW,
        prefix="Watchdog ALERT: acme-mailcow:", resolved=True,
    )  # fmt: skip
    assert resolved["Subject"] == f"Watchdog ALERT: acme-mailcow: {notices[0].summary}"
    assert webhook_payload(notices[1], HOST, resolved=True) == {
        "event": "certificate_expiring",
        "status": "resolved",
        "hostname": HOST,
        "summary": notices[1].summary,
        "details": dict(notices[1].details),
    }


def test_watchdog_body_is_filled_as_the_watchdog_does() -> None:
    """$SUBJECT/${SUBJECT} and $BODY/${BODY} are replaced, JSON-escaped; a template that is no
    JSON once filled is a ValueError."""
    template = '{"title": "$SUBJECT", "text": "**${SUBJECT}**\\n${BODY}", "b": "$BODY"}'
    filled = fill_template(template, 'a "quoted" subject', "line 1\nline 2")
    assert filled == {
        "title": 'a "quoted" subject',
        "text": '**a "quoted" subject**\nline 1\nline 2',
        "b": "line 1\nline 2",
    }
    with pytest.raises(ValueError):
        fill_template("$SUBJECT", "x", "y")


def settings(tmp_path: Path, **env: str) -> dict[str, str]:
    return {"MAILCOW_HOSTNAME": HOST, "ACME_CERT_DIR": str(tmp_path)} | env


def test_acme_notify_settings_make_the_channels(tmp_path: Path) -> None:
    """ACME_NOTIFY_EMAIL/WEBHOOK make the channels (they win over WATCHDOG_*); defaults for
    sender, server, state file and ACME_ALERT_AFTER (1 day)."""
    base = settings(tmp_path, WATCHDOG_NOTIFY_EMAIL="w@example.org")
    with capture_logs() as logs:
        notifier = from_settings(
            load_settings(
                base
                | {
                    "ACME_NOTIFY_EMAIL": "a@example.org,b@example.org",
                    "ACME_NOTIFY_WEBHOOK": "https://h.example/x",
                }
            )
        )
    assert notifier is not None and notifier.state == tmp_path / "acme" / "notify.json"
    assert [c.name for c in notifier.channels] == ["email", "webhook"]
    mail = notifier.channels[0]
    assert isinstance(mail, SmtpChannel) and mail.sender == f"acme-sidecar@{HOST}"
    assert (mail.host, mail.port, mail.recipients) == (
        "postfix",
        25,
        ("a@example.org", "b@example.org"),
    )
    assert notifier.expiry_days == 14 and notifier.alert_after == timedelta(days=1)
    (line,) = [e for e in logs if e["event"] == "notify.channel"]
    assert line["source"] == "ACME_NOTIFY_EMAIL/ACME_NOTIFY_WEBHOOK"
    assert "/x" not in line["channels"] and "h.example" in line["channels"]


def test_watchdog_settings_are_the_default_channel(tmp_path: Path) -> None:
    """With no ACME_NOTIFY_*, mailcow's WATCHDOG_NOTIFY_EMAIL is read as the watchdog reads it
    (quotes dropped, a bad entry one warning and skipped), mail is sent as the watchdog sends
    it, and WATCHDOG_NOTIFY_WEBHOOK is used with its body; one line names the source."""
    env = settings(
        tmp_path,
        WATCHDOG_NOTIFY_EMAIL='"ops@example.org,not-an-address, b@example.org"',
        WATCHDOG_NOTIFY_WEBHOOK="https://chat.example/hooks/t0ken",
        WATCHDOG_NOTIFY_WEBHOOK_BODY='{"text": "$SUBJECT: $BODY"}',
        WATCHDOG_SUBJECT="mailcow says",
        ACME_ALERT_AFTER="3s",
    )
    with capture_logs() as logs:
        notifier = from_settings(load_settings(env))
    assert notifier is not None and notifier.alert_after == timedelta(seconds=3)
    mail, hook = notifier.channels
    assert isinstance(mail, SmtpChannel) and isinstance(hook, TemplateWebhook)
    assert mail.recipients == ("ops@example.org", "b@example.org")
    assert mail.sender == f"watchdog@{HOST}" and mail.prefix == "mailcow says: acme-mailcow:"
    assert mail.headers == {"X-Priority": "1"}
    (skipped,) = [e for e in logs if e["event"] == "config.lenient"]
    assert skipped["variable"] == "WATCHDOG_NOTIFY_EMAIL" and skipped["value"] == "not-an-address"
    (line,) = [e for e in logs if e["event"] == "notify.channel"]
    assert line["source"].startswith("mailcow.conf: WATCHDOG_NOTIFY_EMAIL")
    assert "t0ken" not in json.dumps(logs) and "t0ken" not in repr(hook)


def test_watchdog_webhook_without_body_is_skipped(tmp_path: Path) -> None:
    """As in mailcow's watchdog, a webhook without WATCHDOG_NOTIFY_WEBHOOK_BODY is not used (one
    warning); with nothing else set there is no notifier."""
    env = settings(tmp_path, WATCHDOG_NOTIFY_WEBHOOK="https://chat.example/hooks/t0ken")
    with capture_logs() as logs:
        assert from_settings(load_settings(env)) is None
    assert [e["event"] for e in logs] == ["notify.webhook_skipped", "notify.off"]
    assert from_settings(load_settings(settings(tmp_path))) is None


def test_alert_after_is_a_duration() -> None:
    """ACME_ALERT_AFTER takes 3s, 12h, 1d or seconds; anything else stops with its name."""
    assert (
        load_settings({"MAILCOW_HOSTNAME": HOST, "ACME_ALERT_AFTER": "12h"}).acme_alert_after
        == 43200
    )
    with pytest.raises(ConfigError, match="ACME_ALERT_AFTER"):
        load_settings({"MAILCOW_HOSTNAME": HOST, "ACME_ALERT_AFTER": "soon"})


def test_damaged_state_means_nothing_was_sent(tmp_path: Path) -> None:
    """A damaged or old-format state file is read as empty (an alert too many beats none)."""
    state = tmp_path / "notify.json"
    state.write_text("{not json")
    assert load_state(state) == AlertState()
    state.write_text('{"sent": {"cycle_failed": "2026-11-24T12:00:00+00:00"}}')
    assert load_state(state) == AlertState()
