"""Prometheus metrics: a hook that turns each finished cycle into gauges and counters.

``sample`` computes the values of one cycle without I/O; ``Metrics`` holds them in its own
``prometheus_client`` registry and, in the daemon only (``serve``), exposes them over HTTP from
a background thread on ``ACME_METRICS_ADDRESS:ACME_METRICS_PORT``. It touches nothing but that
listening socket: no file, no volume.

Names follow cert-manager's (``certificate_expiration_timestamp_seconds``) with the prefix
``acme_sidecar_``; series of certificates that left the volume are removed. ``dane_match`` is
1 when the TLSA records of ``_<port>._tcp.<host>`` match the served certificate and 0 when they
do not (or come without DNSSEC validation); a name without TLSA records has no series.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import prometheus_client
import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from acme_sidecar.core.ari import renew_time
from acme_sidecar.core.dane import DaneResult, Status
from acme_sidecar.core.report import Outcome
from acme_sidecar.ops.hooks import CycleEvent

log = structlog.get_logger(__name__)

PREFIX = "acme_sidecar_"
FAILURE_REASONS = tuple(o.value for o in Outcome if o is not Outcome.OK)


@dataclass(frozen=True, slots=True)
class Sample:
    """The metric values one finished cycle implies."""

    cycle: float
    success: float | None
    failure: str | None
    names_skipped: int | None
    expiration: Mapping[str, float] = field(default_factory=dict)
    renewal: Mapping[str, float] = field(default_factory=dict)


def sample(event: CycleEvent) -> Sample:
    """The values of ``event``: timestamps are Unix seconds; no I/O."""
    ok = event.report.outcome is Outcome.OK
    finished = event.finished.timestamp()
    plan = event.report.plan
    return Sample(
        cycle=finished,
        success=finished if ok else None,
        failure=None if ok else event.report.outcome.value,
        names_skipped=len(plan.skipped) if plan is not None else None,
        expiration={n: c.not_after.timestamp() for n, c in event.certificates.items()},
        renewal={  # the CA's ARI time when it gave one, else the lifetime rule
            n: renew_time(
                c.cert_id, c.not_before, c.not_after, event.report.state.cert(n).ari
            ).at.timestamp()
            for n, c in event.certificates.items()
        },
    )


def dane_values(results: Sequence[DaneResult]) -> dict[tuple[str, str], float]:
    """``dane_match`` per (host, port): 1 on a match, 0 on a mismatch or records without
    DNSSEC validation; no TLSA records or a failed lookup: no value."""
    values = {}
    for v in results:
        if v.status in (Status.MATCH, Status.MISMATCH, Status.INSECURE):
            values[(v.host, str(v.port))] = 1.0 if v.status is Status.MATCH else 0.0
    return values


class Metrics:
    """The hook holding the metrics; ``serve`` starts the HTTP endpoint (daemon only)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        dane: Callable[[], Sequence[DaneResult]] | None = None,
    ) -> None:
        """``dane``: the DANE check's latest results (a hook that runs before this one)."""
        self.dane = dane
        self.registry = registry if registry is not None else CollectorRegistry()
        # no *_created series next to the counter
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        reg = self.registry
        self.expiration = Gauge(
            PREFIX + "certificate_expiration_timestamp_seconds",
            "When the certificate expires (not after), per certificate directory",
            ["name"],
            registry=reg,
        )
        self.renewal = Gauge(
            PREFIX + "certificate_renewal_timestamp_seconds",
            "When the certificate is due for renewal, per certificate directory",
            ["name"],
            registry=reg,
        )
        self.last_success = Gauge(
            PREFIX + "last_success_timestamp_seconds",
            "When the last cycle that ended without errors finished",
            registry=reg,
        )
        self.last_cycle = Gauge(
            PREFIX + "last_cycle_timestamp_seconds",
            "When the last cycle finished, whatever its outcome",
            registry=reg,
        )
        self.failures = Counter(
            PREFIX + "cycle_failures",
            "Cycles that did not end OK, by outcome (failed, nothing_valid, source_down)",
            ["reason"],
            registry=reg,
        )
        for reason in FAILURE_REASONS:
            self.failures.labels(reason=reason)
        self.names_skipped = Gauge(
            PREFIX + "names_skipped",
            "Names that did not pass validation in the last cycle",
            registry=reg,
        )
        self.dane_match = Gauge(
            PREFIX + "dane_match",
            "1 when the TLSA records of _<port>._tcp.<host> match the served certificate, "
            "0 when not (or not DNSSEC-validated)",
            ["host", "port"],
            registry=reg,
        )
        self._names: set[str] = set()
        self._dane: set[tuple[str, str]] = set()
        self._server: Any = None

    def after_cycle(self, event: CycleEvent) -> None:
        """Record the cycle's values."""
        self.apply(sample(event))
        if self.dane is not None:
            self.apply_dane(dane_values(self.dane()))

    def apply_dane(self, values: Mapping[tuple[str, str], float]) -> None:
        """Set ``dane_match`` per (host, port); drop the series no longer checked."""
        for host, port in self._dane - set(values):
            self.dane_match.remove(host, port)
        for (host, port), value in values.items():
            self.dane_match.labels(host=host, port=port).set(value)
        self._dane = set(values)

    def apply(self, values: Sample) -> None:
        """Set the metrics to ``values``; drop series of certificates no longer present."""
        self.last_cycle.set(values.cycle)
        if values.success is not None:
            self.last_success.set(values.success)
        if values.failure is not None:
            self.failures.labels(reason=values.failure).inc()
        if values.names_skipped is not None:
            self.names_skipped.set(values.names_skipped)
        for name in self._names - set(values.expiration):
            self.expiration.remove(name)
            self.renewal.remove(name)
        for name, when in values.expiration.items():
            self.expiration.labels(name=name).set(when)
        for name, when in values.renewal.items():
            self.renewal.labels(name=name).set(when)
        self._names = set(values.expiration)

    def serve(self, address: str, port: int) -> bool:
        """Listen on ``address:port`` from a background thread; False (logged) when it fails."""
        try:
            self._server, _ = start_http_server(port, addr=address, registry=self.registry)
        except OSError as exc:
            log.error(
                "metrics.failed",
                address=address,
                port=port,
                error=str(exc),
                hint="another process uses the port? set ACME_METRICS_PORT to a free one",
            )
            return False
        log.info("metrics.listening", address=address, port=port, path="/metrics")
        return True

    def close(self) -> None:
        """Stop the HTTP endpoint, if it runs."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
