"""Issue #8: the verification endpoints after a deploy, against real TLS consumers.

``ACME_VERIFY_HTTPS`` follows mailcow's ``HTTPS_PORT``; an endpoint whose host does not resolve
is one warning and no check; the verification of many SNI certificates runs concurrently under
one deadline, also when an endpoint resolves but never answers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.integration.sidecar import Run, seed, sidecar
from tests.integration.stack import Stack
from tests.world import World

SNI_DOMAINS = [f"d{i:02}.test" for i in range(50)]  # + the hostname: 51 SNI certificates


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["timestamp"]))


def verify_seconds(run: Run) -> float:
    """Seconds from the last consumer action (restart or reload) to the end of verification."""
    acted = run.named("service.restarted") + run.named("service.reloaded")
    ended = run.named("service.verified") + run.named("service.verify_failed")
    assert acted and ended, run.stderr[-3000:]
    return (max(map(_at, ended)) - max(map(_at, acted))).total_seconds()


def test_51_sni_certificates_verified_against_reachable_consumers(
    world: World, stack: Stack
) -> None:
    """51 SNI certificates on three reachable consumers: issued, restarted, all verified; a
    renewal reloads and verifies them again (the durations are printed for the report)."""
    seed(world, SNI_DOMAINS)
    env = stack.env | {"ENABLE_SSL_SNI": "y"}
    first = sidecar(env, "once", timeout=300)
    assert first.code == 0, first.stderr[-3000:]
    [verified] = first.named("service.verified")
    assert verified["names"] == 51 and verified["endpoints"] == 3
    (stack.volume / "force_renew").touch()
    renewal = sidecar(env, "once", timeout=300)
    assert renewal.code == 0, renewal.stderr[-3000:]
    assert renewal.named("service.verified")
    print(
        f"\nverify 51 SNI x 3 endpoints: after restart {verify_seconds(first):.2f}s, "
        f"after reload {verify_seconds(renewal):.2f}s"
    )
