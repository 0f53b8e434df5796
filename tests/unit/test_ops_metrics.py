"""Prometheus metrics: the values a finished cycle implies, and stale series removed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from acme_sidecar.core.model import Plan, StoredCert, Verdict
from acme_sidecar.core.report import Outcome, Report
from acme_sidecar.ops.hooks import CycleEvent
from acme_sidecar.ops.metrics import Metrics, sample

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
EXPIRY = "acme_sidecar_certificate_expiration_timestamp_seconds"
RENEWAL = "acme_sidecar_certificate_renewal_timestamp_seconds"


def cert(name: str, days_old: int = 10, lifetime: int = 90) -> StoredCert:
    start = NOW - timedelta(days=days_old)
    return StoredCert(name, (name,), start, start + timedelta(days=lifetime), 1, "CA", True)


def event(
    outcome: Outcome, certs: dict[str, StoredCert], skipped: int = 0, at: datetime = NOW
) -> CycleEvent:
    verdicts = tuple(Verdict(f"n{i}.example.org", False, "no A record") for i in range(skipped))
    plan = None if outcome is Outcome.SOURCE_DOWN else Plan((), None, skipped=verdicts)
    return CycleEvent(Report(outcome, plan), certs, at)


def test_sample_of_a_successful_cycle() -> None:
    """Expiry and renewal (⅔ of the lifetime) per certificate; success and cycle time now."""
    values = sample(event(Outcome.OK, {"mail.example.org": cert("mail.example.org")}, skipped=2))
    start = NOW - timedelta(days=10)
    assert values.expiration == {"mail.example.org": (start + timedelta(days=90)).timestamp()}
    assert values.renewal == {"mail.example.org": (start + timedelta(days=60)).timestamp()}
    assert values.cycle == values.success == NOW.timestamp()
    assert values.failure is None and values.names_skipped == 2


def test_sample_of_failed_cycles() -> None:
    """A failure names its outcome and keeps the last success; no plan means no skip count."""
    failed = sample(event(Outcome.FAILED, {}))
    assert failed.failure == "failed" and failed.success is None and failed.names_skipped == 0
    down = sample(event(Outcome.SOURCE_DOWN, {}))
    assert down.failure == "source_down" and down.names_skipped is None


def test_metrics_follow_the_cycles() -> None:
    """Counters add up by reason; a certificate that left the volume loses its series."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    value = registry.get_sample_value
    assert value("acme_sidecar_cycle_failures_total", {"reason": "failed"}) == 0
    both = {"a.example.org": cert("a.example.org"), "b.example.org": cert("b.example.org")}
    metrics.after_cycle(event(Outcome.OK, both, skipped=3))
    assert value(EXPIRY, {"name": "b.example.org"}) == both["b.example.org"].not_after.timestamp()
    assert value("acme_sidecar_names_skipped") == 3
    later = NOW + timedelta(hours=1)
    only_a = {"a.example.org": both["a.example.org"]}
    metrics.after_cycle(event(Outcome.FAILED, only_a, at=later))
    metrics.after_cycle(event(Outcome.NOTHING_VALID, only_a, at=later))
    assert value(EXPIRY, {"name": "b.example.org"}) is None
    assert value(RENEWAL, {"name": "b.example.org"}) is None
    assert value(EXPIRY, {"name": "a.example.org"}) is not None
    assert value("acme_sidecar_last_success_timestamp_seconds") == NOW.timestamp()
    assert value("acme_sidecar_last_cycle_timestamp_seconds") == later.timestamp()
    assert value("acme_sidecar_cycle_failures_total", {"reason": "failed"}) == 1
    assert value("acme_sidecar_cycle_failures_total", {"reason": "nothing_valid"}) == 1
    assert value("acme_sidecar_cycle_failures_total", {"reason": "source_down"}) == 0
    assert value("acme_sidecar_cycle_failures_created", {"reason": "failed"}) is None
