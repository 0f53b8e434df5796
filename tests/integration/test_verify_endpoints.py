"""Issue #8: the verification endpoints after a deploy, against real TLS consumers.

``ACME_VERIFY_HTTPS`` follows mailcow's ``HTTPS_PORT``; an endpoint whose host does not resolve
is one warning and no check; the verification of many SNI certificates runs concurrently under
one deadline, also when an endpoint resolves but never answers.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.integration.sidecar import HOST, PROJECT, Run, leaf, seed, sidecar
from tests.integration.stack import Stack
from tests.world import World
from tests.world.proc import free_port
from tests.world.tlsprobe import served_serial

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
    [again] = renewal.named("service.verified")
    assert again["names"] == 51 and again["seconds"] < 10
    print(
        f"\nverify 51 SNI x 3 endpoints: after restart {verify_seconds(first):.2f}s, "
        f"after reload {verify_seconds(renewal):.2f}s"
    )


HTTPS_PORT = 8443  # nginx's port inside its container behind mailcow's documented reverse proxy


def test_https_check_follows_https_port(world: World, stack: Stack) -> None:
    """HTTPS_PORT=8443 with nginx listening there: the sidecar checks nginx on 8443 (a host
    alone in ACME_VERIFY_HTTPS takes HTTPS_PORT) and the cycle is ok."""
    with socket.socket() as probe:  # the fixed port must be free on this machine
        probe.bind(("127.0.0.1", HTTPS_PORT))
    nginx = world.docker.run_consumer(PROJECT, "nginx-mailcow", "https", HTTPS_PORT, stack.volume)
    stack.containers["nginx-mailcow"] = nginx  # replaced the fixture's nginx; removed after
    stack.ports["nginx-mailcow"] = HTTPS_PORT
    seed(world, ["one.test"])
    env = stack.env | {"HTTPS_PORT": str(HTTPS_PORT), "ACME_VERIFY_HTTPS": "127.0.0.1"}
    run = sidecar(env, "once")
    assert run.code == 0, run.stderr[-3000:]
    [verified] = run.named("service.verified")
    assert f"https://127.0.0.1:{HTTPS_PORT}" in verified["checked"].split(",")
    assert verified["endpoints"] == 3
    world.docker.wait_ready(nginx.id)
    expected = leaf(stack.volume / HOST / "cert.pem").serial_number
    assert served_serial("https", HTTPS_PORT, HOST) == expected


def test_endpoint_that_does_not_resolve_is_one_warning(world: World, stack: Stack) -> None:
    """ACME_VERIFY_HTTPS unset is nginx on HTTPS_PORT; where ``nginx`` does not resolve (another
    stack's name) that is one warning naming service and host, the rest is verified, exit 0."""
    with pytest.raises(socket.gaierror):  # setup: this machine must not resolve "nginx"
        socket.getaddrinfo("nginx", HTTPS_PORT)
    seed(world, ["one.test"])
    env = {k: v for k, v in stack.env.items() if k != "ACME_VERIFY_HTTPS"}
    run = sidecar(env | {"HTTPS_PORT": str(HTTPS_PORT)}, "once")
    assert run.code == 0, run.stderr[-3000:]
    [skipped] = run.named("service.verify_skipped")
    assert skipped["level"] == "warning"
    assert skipped["service"] == "nginx-mailcow" and skipped["host"] == "nginx"
    assert skipped["endpoint"] == f"https://nginx:{HTTPS_PORT}"
    assert "not checked" in skipped["reason"]
    assert run.named("service.verify_failed") == []
    [verified] = run.named("service.verified")
    assert verified["endpoints"] == 2


def test_proxy_protocol_turns_the_nginx_check_off(world: World, stack: Stack) -> None:
    """NGINX_USE_PROXY_PROTOCOL=y: one line at start says why the HTTPS check is off; Postfix
    and Dovecot are still verified and the cycle is ok."""
    seed(world, ["one.test"])
    env = {k: v for k, v in stack.env.items() if k != "ACME_VERIFY_HTTPS"}
    run = sidecar(env | {"NGINX_USE_PROXY_PROTOCOL": "y"}, "once")
    assert run.code == 0, run.stderr[-3000:]
    [note] = run.named("config.verify_https")
    assert note["level"] == "info" and "PROXY header" in note["reason"]
    [verified] = run.named("service.verified")
    assert verified["endpoints"] == 2 and "https://" not in verified["checked"]


@pytest.fixture(params=["refusing", "blackholed"])
def dead_endpoint(request: pytest.FixtureRequest) -> Iterator[str]:
    """host:port that resolves but refuses connections, or accepts them and never answers."""
    if request.param == "refusing":
        yield f"127.0.0.1:{free_port()}"
        return
    with socket.create_server(("127.0.0.1", 0), backlog=1) as hole:
        yield f"127.0.0.1:{hole.getsockname()[1]}"


DEADLINE = 5  # ACME_VERIFY_TIMEOUT of the dead-endpoint test (the default is 120 s)


def test_dead_endpoint_ends_within_the_deadline(
    world: World, stack: Stack, dead_endpoint: str
) -> None:
    """51 SNI certificates and Dovecot's endpoint dead: the verification ends within the one
    deadline (ACME_VERIFY_TIMEOUT=5s), Postfix and nginx are confirmed meanwhile, and each
    name is one error naming the Dovecot service."""
    seed(world, SNI_DOMAINS)
    env = stack.env | {
        "ENABLE_SSL_SNI": "y",
        "ACME_VERIFY_IMAP": dead_endpoint,
        "ACME_VERIFY_TIMEOUT": f"{DEADLINE}s",
    }
    run = sidecar(env, "once", timeout=300)
    assert run.code == 1, run.stderr[-3000:]
    failed = run.named("service.verify_failed")
    assert {f["service"] for f in failed} == {"dovecot-mailcow"}
    assert len(failed) == 51 and all(f["level"] == "error" and f["error"] for f in failed)
    took = verify_seconds(run)
    print(f"\nverify with a {dead_endpoint} endpoint: {took:.2f}s, {failed[0]['error']}")
    assert took < DEADLINE + 1.0
