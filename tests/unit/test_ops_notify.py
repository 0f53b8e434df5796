"""Notifications: which problems a cycle shows, which are due given what was sent, and when."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from acme_sidecar.config.settings import load_settings
from acme_sidecar.core.model import Plan, StoredCert, Verdict
from acme_sidecar.core.report import Outcome, Report
from acme_sidecar.ops.hooks import CycleEvent
from acme_sidecar.ops.notify import (
    Notice,
    Notifier,
    SmtpChannel,
    build_email,
    due,
    from_settings,
    load_sent,
    problems,
    remember,
    webhook_payload,
)

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

    def send(self, notices: Sequence[Notice], now: datetime) -> set[str]:
        self.sent.append([n.key for n in notices])
        return {n.key for n in notices} if self.up else set()


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


def test_every_failed_outcome_is_a_problem() -> None:
    """failed, nothing_valid and source_down all count as a failed cycle."""
    for outcome in (Outcome.FAILED, Outcome.NOTHING_VALID, Outcome.SOURCE_DOWN):
        (notice,) = problems(event(outcome), expiry_days=14)
        assert notice.key == "cycle_failed" and notice.details["outcome"] == outcome.value


def test_a_quiet_failure_is_no_problem_yet() -> None:
    """The database down for less than ACME_DB_WAIT is not notified."""
    quiet = replace(event(Outcome.SOURCE_DOWN), quiet=True)
    assert problems(quiet, expiry_days=14) == []


def test_due_at_most_once_a_day() -> None:
    """A problem sent less than a day ago is not due; after a day it is again."""
    notices = [Notice("cycle_failed", "cycle_failed", "x"), Notice("expiring:a", "e", "y")]
    sent = {"cycle_failed": NOW - timedelta(hours=23)}
    assert [n.key for n in due(notices, sent, NOW)] == ["expiring:a"]
    assert [n.key for n in due(notices, sent, NOW + timedelta(hours=1))] == [
        "cycle_failed",
        "expiring:a",
    ]


def test_remember_forgets_old_entries() -> None:
    """Sending records the time; entries older than a day are dropped from the state."""
    sent = {"old": NOW - timedelta(days=2), "recent": NOW - timedelta(hours=1)}
    assert remember(sent, ["new"], NOW) == {"recent": sent["recent"], "new": NOW}


def test_email_and_webhook_content() -> None:
    """The mail lists every problem; the webhook body has event, hostname, summary, details."""
    notices = problems(event(Outcome.FAILED, cert("a.example.org", 3)), expiry_days=14)
    msg = build_email(
        notices, hostname=HOST, sender=f"acme@{HOST}", recipients=["x@y.org"], now=NOW
    )
    assert msg["Subject"] == f"[acme-sidecar] {HOST}: 2 certificate problems"
    assert msg["To"] == "x@y.org" and msg["Auto-Submitted"] == "auto-generated"
    body = msg.get_content()
    assert notices[0].summary in body and "autoconfig.example.org" in body
    assert webhook_payload(notices[1], HOST) == {
        "event": "certificate_expiring",
        "hostname": HOST,
        "summary": notices[1].summary,
        "details": dict(notices[1].details),
    }


def test_notifier_sends_once_and_remembers(tmp_path: Path) -> None:
    """First cycle sends and writes the state; the next cycle the same day sends nothing."""
    state = tmp_path / "acme" / "notify.json"
    mail, hook = FakeChannel("email"), FakeChannel("webhook")
    notifier = Notifier([mail, hook], state=state, expiry_days=14)
    notifier.after_cycle(event(Outcome.OK, cert("ok.example.org", 60)))
    assert not state.exists() and mail.sent == []  # nothing to say, nothing written
    notifier.after_cycle(event(Outcome.FAILED, cert("a.example.org", 3)))
    assert mail.sent == hook.sent == [["cycle_failed", "expiring:a.example.org"]]
    assert set(load_sent(state)) == {"cycle_failed", "expiring:a.example.org"}
    notifier.after_cycle(
        event(Outcome.FAILED, cert("a.example.org", 3), at=NOW + timedelta(hours=2))
    )
    assert len(mail.sent) == 1
    notifier.after_cycle(event(Outcome.FAILED, at=NOW + timedelta(days=1)))
    assert mail.sent[-1] == ["cycle_failed"]


def test_undelivered_problems_are_tried_again(tmp_path: Path) -> None:
    """When no channel delivered, nothing is recorded and the next cycle tries again."""
    state = tmp_path / "notify.json"
    mail = FakeChannel("email", up=False)
    notifier = Notifier([mail], state=state)
    notifier.after_cycle(event(Outcome.FAILED))
    assert not state.exists()
    mail.up = True
    notifier.after_cycle(event(Outcome.FAILED, at=NOW + timedelta(minutes=30)))
    assert mail.sent == [["cycle_failed"], ["cycle_failed"]] and state.exists()


def test_damaged_state_means_nothing_was_sent(tmp_path: Path) -> None:
    """A damaged state file is ignored (a notification too many beats none)."""
    state = tmp_path / "notify.json"
    state.write_text("{not json")
    assert load_sent(state) == {}
    state.write_text('{"sent": {"cycle_failed": "yesterday"}}')
    assert load_sent(state) == {}


def test_settings_make_the_channels(tmp_path: Path) -> None:
    """No recipient and no webhook: no notifier; defaults for sender, server and state file."""
    base = {"MAILCOW_HOSTNAME": HOST, "ACME_CERT_DIR": str(tmp_path)}
    assert from_settings(load_settings(base)) is None
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
    assert notifier.expiry_days == 14
