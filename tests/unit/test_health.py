"""The health rules behind `acme-sidecar health` and the health file hook."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from acme_sidecar.core.report import Outcome, Report
from acme_sidecar.ops.hooks import CycleEvent, HealthFile, health_problems, read_health

NOW = datetime(2026, 11, 24, tzinfo=UTC)


def test_failing_longer_than_threshold_is_unhealthy() -> None:
    """Failing for longer than the threshold is unhealthy; shorter is not."""
    health = {"failing_since": (NOW - timedelta(hours=3)).isoformat()}
    assert health_problems(health, NOW, failing_for=timedelta(hours=2))
    assert not health_problems(health, NOW, failing_for=timedelta(hours=4))


def test_expiry_within_seven_days_is_unhealthy() -> None:
    """A certificate expiring within 7 days is unhealthy."""
    soon = {"earliest_expiry": (NOW + timedelta(days=6)).isoformat()}
    later = {"earliest_expiry": (NOW + timedelta(days=8)).isoformat()}
    assert health_problems(soon, NOW, failing_for=timedelta(hours=2))
    assert not health_problems(later, NOW, failing_for=timedelta(hours=2))


def test_health_file_tracks_failures(tmp_path: Path) -> None:
    """The file keeps the first failure time until a success clears it."""
    hook = HealthFile(tmp_path / "h.json")
    hook.after_cycle(CycleEvent(Report(Outcome.FAILED), {}, NOW))
    hook.after_cycle(CycleEvent(Report(Outcome.FAILED), {}, NOW + timedelta(hours=1)))
    assert read_health(hook.path)["failing_since"] == NOW.isoformat()
    hook.after_cycle(CycleEvent(Report(Outcome.OK), {}, NOW + timedelta(hours=2)))
    data = read_health(hook.path)
    assert data["failing_since"] is None and data["last_success"]


def test_a_deploy_owed_too_long_is_unhealthy() -> None:
    """Certificates written but not deployed for longer than the failure window: unhealthy."""
    now = datetime(2026, 11, 29, 12, tzinfo=UTC)
    since = (now - timedelta(hours=3)).isoformat()
    problems = health_problems({"deploy_owed_since": since}, now, failing_for=timedelta(hours=2))
    assert problems == [f"certificates written since {since} are not yet served by the services"]
    assert not health_problems(
        {"deploy_owed_since": now.isoformat()}, now, failing_for=timedelta(hours=2)
    )
