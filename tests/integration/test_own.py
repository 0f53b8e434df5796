"""Issue #8, own certificates: the sidecar steps aside for a top-level pair from another CA;
with SKIP_LETS_ENCRYPT=y the running daemon deploys a replaced pair to the consumers (or
refuses a bad one and keeps the last good one served); ``import``; expiry warnings through a
real SMTP receiver and the Redis UI log. All through ``python -m acme_sidecar``.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.ownpairs import OwnCA
from tests.integration.sidecar import HOST, Daemon, Run, base_env, seed, sidecar, snapshot
from tests.integration.stack import KINDS, Stack
from tests.integration.test_ops import (  # noqa: F401 - smtp and webhook are its fixtures
    RECIPIENTS,
    Smtp,
    Webhook,
    smtp,
    ui_log,
    webhook,
)
from tests.world import World
from tests.world.redis import RedisServer
from tests.world.tlsprobe import served_serial


def test_own_pair_is_never_overwritten(world: World, volume: Path) -> None:
    """A top-level pair from a private CA, without SKIP_LETS_ENCRYPT: after two `once` cycles
    against Pebble it is byte-identical, nothing was ordered for the hostname, and a line says
    why (accepted the first time, kept the second)."""
    seed(world, ["one.test"])
    pair = OwnCA().issue([HOST])
    pair.write(volume)
    before = {p: data for p, (_, data) in snapshot(volume).items()}
    first = sidecar(base_env(world, volume), "once")
    second = sidecar(base_env(world, volume), "once")
    assert first.code == 0, first.stderr
    assert second.code == 0, second.stderr
    assert (volume / "cert.pem").read_bytes() == before["cert.pem"] == pair.chain
    assert (volume / "key.pem").read_bytes() == before["key.pem"] == pair.key
    assert not (volume / HOST).exists()
    assert first.named("cert.issue") == [] and second.named("cert.issue") == []
    (accepted,) = first.named("own.accepted")
    assert accepted["issuer"] == "CN=Own Test CA,O=Example Corp"
    assert "not issued by the configured CA" in accepted["reason"]
    (kept,) = second.named("own.kept")
    assert kept["subject"] == f"CN={HOST}" and kept["not_after"]
    assert "never overwritten" in kept["reason"]
    assert (volume / "acme" / "own" / "cert.pem").read_bytes() == pair.chain


def test_snake_oil_is_still_replaced(world: World, volume: Path) -> None:
    """mailcow's self-signed placeholder is not an own certificate: it is replaced (backed up)."""
    from tests.certs import write_pair

    seed(world, ["one.test"])
    write_pair(volume, [HOST], domains_file=False)
    old = (volume / "cert.pem").read_bytes()
    run = sidecar(base_env(world, volume), "once")
    assert run.code == 0, run.stderr
    assert run.named("own.kept") == [] and run.named("own.accepted") == []
    assert (volume / "cert.pem").read_bytes() == (volume / HOST / "cert.pem").read_bytes() != old


def _served(stack: Stack) -> set[int]:
    """What the three consumers serve for the hostname, with SNI and without."""
    return {
        served_serial(kind, stack.ports[service], name)
        for service, kind in KINDS
        for name in (HOST, None)
    }


def test_skip_lets_encrypt_deploys_a_replaced_pair(world: World, stack: Stack) -> None:
    """SKIP_LETS_ENCRYPT=y, `run`: a good pair copied into the volume is served by the three
    consumers after a reload (no restart); a pair whose key belongs to another certificate is
    refused with one warning and not deployed: the files stay as the admin wrote them and the
    consumers keep serving the good one."""
    env = stack.env | {"SKIP_LETS_ENCRYPT": "y", "ACME_WATCH_INTERVAL": "1"}
    ca = OwnCA()
    daemon = Daemon(env)
    try:
        daemon.wait_for("service.verified")  # the snake-oil pair, accepted at start
        started = stack.started(world)
        reloads = stack.reloads(world)
        good = ca.issue([HOST, f"imap.{HOST}"])
        good.write(stack.volume)
        accepted = daemon.wait_for("own.accepted")
        assert accepted["serial"] == f"{good.serial:x}"
        verified = daemon.wait_for("service.verified")
        assert verified["names"] == 1
        assert _served(stack) == {good.serial}
        assert stack.started(world) == started
        assert stack.reloads(world) == {s: n + 1 for s, n in reloads.items()}

        other = ca.issue([HOST])
        mismatched = ca.issue([HOST])
        (stack.volume / "cert.pem").write_bytes(other.chain)
        (stack.volume / "key.pem").write_bytes(mismatched.key)
        refused = daemon.wait_for("own.refused")
        assert refused["level"] == "warning"
        assert "key.pem is not the key of the certificate" in refused["problems"]
        assert "not deployed" in refused["action"]
        assert (stack.volume / "cert.pem").read_bytes() == other.chain
        assert (stack.volume / "key.pem").read_bytes() == mismatched.key
        assert not (stack.volume / "backups").exists()
        assert _served(stack) == {good.serial}
        assert stack.started(world) == started
        assert stack.reloads(world) == {s: n + 1 for s, n in reloads.items()}
    finally:
        stopped = daemon.stop()
    assert stopped == 0
    lines = [json.loads(line) for line in daemon.seen if line.startswith("{")]
    assert [e["event"] for e in lines].count("own.refused") == 1


def test_import(world: World, volume: Path) -> None:
    """`import` installs a good pair (certificate and --chain) as the top-level pair with a
    backup of the old one; a bad pair is refused with a clear message and changes nothing."""
    env = base_env(world, volume) | {"SKIP_LETS_ENCRYPT": "y"}
    ca = OwnCA()
    first, second = ca.issue([HOST]), ca.issue([f"*.{HOST.split('.', 1)[1]}"])
    files = volume.parent / "upload"
    files.mkdir()
    for n, pair in (("1", first), ("2", second)):
        (files / f"cert{n}.pem").write_bytes(pair.leaf)
        (files / f"key{n}.pem").write_bytes(pair.key)
    (files / "ca.pem").write_bytes(first.ca)

    def imp(cert: str, key: str, *, chain: bool = True) -> Run:
        extra = ["--chain", str(files / "ca.pem")] if chain else []
        return sidecar(
            env, "import", "--cert", str(files / f"cert{cert}.pem"),
            "--key", str(files / f"key{key}.pem"), *extra,
        )  # fmt: skip

    run = imp("1", "1")
    assert run.code == 0, run.stdout + run.stderr
    assert "installed CN=mail.example.test" in run.stdout
    assert (volume / "cert.pem").read_bytes() == first.chain
    assert (volume / "key.pem").read_bytes() == first.key

    run = imp("2", "2")
    assert run.code == 0, run.stdout + run.stderr  # the wildcard covers the hostname
    (backup,) = (volume / "backups" / "default").iterdir()
    assert (backup / "cert.pem").read_bytes() == first.chain
    assert (volume / "cert.pem").read_bytes() == second.chain

    bad = imp("1", "2")
    assert bad.code == 1
    assert "not installed: key.pem is not the key of the certificate" in bad.stdout
    no_chain = imp("1", "1", chain=False)
    assert no_chain.code == 1 and "the chain is incomplete" in no_chain.stdout
    other = ca.issue(["other.example.test"])
    (files / "cert3.pem").write_bytes(other.leaf)
    (files / "key3.pem").write_bytes(other.key)
    names = imp("3", "3")
    assert names.code == 1 and f"do not cover MAILCOW_HOSTNAME {HOST}" in names.stdout
    assert (volume / "cert.pem").read_bytes() == second.chain


def test_expiry_warning_once_a_day(
    world: World,
    volume: Path,
    smtp: Smtp,  # noqa: F811
    webhook: Webhook,  # noqa: F811
    redis_server: RedisServer,
) -> None:
    """An own certificate 10 days from expiry (90-day lifetime): two cycles on the same day
    give one mail, one webhook POST and one cert.expiring line in the mailcow UI log; `status`
    and `health` show it."""
    redis_server.reset()
    OwnCA().issue([HOST], days_left=10, lifetime=90).write(volume)
    env = base_env(world, volume) | {
        "SKIP_LETS_ENCRYPT": "y",
        "ACME_NOTIFY_EMAIL": RECIPIENTS,
        "ACME_NOTIFY_SMTP": smtp.endpoint,
        "ACME_NOTIFY_WEBHOOK": webhook.url,
        "REDISPASS": redis_server.password,
        "ACME_REDIS_HOST": redis_server.host,
        "ACME_REDIS_PORT": str(redis_server.port),
    }
    first = sidecar(env, "once")
    second = sidecar(env, "once")
    assert first.code == 0 and second.code == 0, first.stderr + second.stderr
    (line,) = first.named("cert.expiring")
    assert line["certificate"] == "(default)" and line["level"] == "warning"
    assert second.named("cert.expiring") == []
    (mail,) = smtp.inbox.mails
    assert "certificate (default) expires in 9.9 days" in mail.message["Subject"] or (
        "certificate (default) expires in 10.0 days" in mail.message["Subject"]
    )
    (post,) = webhook.posts
    assert post["event"] == "certificate_expiring" and post["details"]["level"] == "warning"
    ui = [e["message"] for e in ui_log(redis_server) if "cert.expiring" in e["message"]]
    assert len(ui) == 1 and ui[0].startswith(f"{HOST} - warning: cert.expiring ")

    status = sidecar(env, "status")
    assert "WARNING: certificate (default) expires in" in status.stdout
    assert "top level: own certificate: SKIP_LETS_ENCRYPT=y" in status.stdout
    health = sidecar(env, "health")
    assert health.code == 0 and "warning: certificate (default) expires in" in health.stdout
