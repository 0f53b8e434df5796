"""Issue #3: apply with the least disruption, then verify what the services really serve.

The consumers are real TLS listeners in containers (tests/world/consumer_server.py) that build
their SNI maps from the volume at start and re-read the files on reload, like mailcow's Postfix,
Dovecot and nginx. The sidecar checks the served serial over SMTP and IMAP STARTTLS and HTTPS.
"""

from __future__ import annotations

from tests.integration.sidecar import HOST, cert_dirs, leaf, seed, sidecar
from tests.integration.stack import KINDS, Stack
from tests.world import World
from tests.world.proc import free_port


def test_new_set_restarts_then_renewal_reloads(world: World, stack: Stack) -> None:
    """A new certificate directory restarts the consumers and the new certificate is served;
    a renewal (same directories) reloads them in place (Postfix after postmap -F) and the
    renewed one is served."""
    seed(world, ["one.test"])
    first = sidecar(stack.env, "once")
    assert first.code == 0, first.stderr
    assert sorted(e["service"] for e in first.named("service.restarted")) == sorted(
        s for s, _ in KINDS
    )
    assert first.named("service.verified")
    for service, _ in KINDS:
        world.docker.wait_ready(stack.containers[service].id)
    issued = leaf(stack.volume / HOST / "cert.pem").serial_number
    assert {stack.serial(kind, HOST) for _, kind in KINDS} == {issued}

    started = stack.started(world)
    (stack.volume / "force_renew").touch()
    renewal = sidecar(stack.env, "once")
    assert renewal.code == 0, renewal.stderr
    assert renewal.named("service.restarted") == []
    reloaded = {e["service"]: e["action"] for e in renewal.named("service.reloaded")}
    assert reloaded == {  # the hostname's directory is in Postfix's sni.map too
        "postfix-mailcow": "rebuild-map-and-reload",
        "dovecot-mailcow": "reload",
        "nginx-mailcow": "reload",
    }
    assert renewal.named("service.stale") == []
    assert stack.started(world) == started
    assert stack.reloads(world) == {s: 1 for s, _ in KINDS}
    renewed = leaf(stack.volume / HOST / "cert.pem").serial_number
    assert renewed != issued
    assert {stack.serial(kind, HOST) for _, kind in KINDS} == {renewed}


def test_sni_certificates_served_per_name(world: World, stack: Stack) -> None:
    """In SNI mode every domain certificate is served for its names after the restart, and
    the sidecar's own check covered each of them."""
    seed(world, ["one.test", "two.test"])
    run = sidecar(stack.env | {"ENABLE_SSL_SNI": "y"}, "once")
    assert run.code == 0, run.stderr
    verified = run.named("service.verified")
    assert verified and verified[0]["names"] == 3
    for service, _ in KINDS:
        world.docker.wait_ready(stack.containers[service].id)
    for name in cert_dirs(stack.volume):
        expected = leaf(stack.volume / name / "cert.pem").serial_number
        for _, kind in KINDS:
            assert stack.serial(kind, name) == expected, (kind, name)


def test_wrong_certificate_served_is_one_clear_error(world: World, stack: Stack) -> None:
    """When a service keeps serving something else, it is restarted once and then reported
    with the service and the name, and the cycle counts as failed."""
    seed(world, ["one.test"])
    port = free_port()
    impostor = world.docker.run_consumer("impostor", "nginx-mailcow", "https", port, stack.volume)
    try:
        env = stack.env | {"ACME_VERIFY_HTTPS": f"127.0.0.1:{port}", "ACME_VERIFY_ATTEMPTS": "2"}
        run = sidecar(env, "once")
    finally:
        impostor.remove(force=True)
    assert run.code == 1
    failures = run.named("service.verify_failed")
    assert {(f["service"], f["name"]) for f in failures} == {("nginx-mailcow", HOST)}
    assert failures[0]["expected"] != failures[0]["served"]
