"""Issue #15 item 5: ``SKIP_LETS_ENCRYPT=y`` is hands off. mailcow's snake-oil pair (made with
mailcow's own openssl command), then an own pair, then one without its chain: the sidecar writes
no certificate file (every file but its ledger and lock stays byte for byte, mtime and mode as
the admin left it), each change is one ``own.*`` line and nothing is logged per look, a good pair
is reloaded into the real consumers, and ``ACME_FAIL_TIME`` is never set in the real Redis. All
through ``python -m acme_sidecar run``.
"""

from __future__ import annotations

import hashlib
import json
import queue
import time
from pathlib import Path
from typing import Any

from tests.integration.ownpairs import OwnCA, snake_oil
from tests.integration.sidecar import HOST, Daemon
from tests.integration.stack import KINDS, Stack
from tests.integration.test_ops import ui_log
from tests.world import World
from tests.world.redis import RedisServer
from tests.world.tlsprobe import served_serial

OWN_NOTES = {"acme/state.json", "acme/lock"}  # the sidecar's ledger and lock: its only writes
LOOKS = 4  # idle looks watched after each change


def _files(volume: Path) -> dict[str, tuple[str, int, int]]:
    """Every file of the volume but the sidecar's own notes: SHA-256, mtime (ns) and mode."""
    out = {}
    for path in sorted(volume.rglob("*")):
        name = str(path.relative_to(volume))
        if path.is_file() and name not in OWN_NOTES:
            info = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[name] = (digest, info.st_mtime_ns, info.st_mode)
    return out


def _served(stack: Stack) -> set[int]:
    """What the three consumers serve for the hostname, with SNI and without."""
    return {
        served_serial(kind, stack.ports[service], name)
        for service, kind in KINDS
        for name in (HOST, None)
    }


def _last_look(health: Path) -> tuple[str, str]:
    data = json.loads(health.read_text()) if health.is_file() else {}
    return str(data.get("last_cycle")), str(data.get("last_outcome"))


def _drain(daemon: Daemon) -> list[Any]:
    """The lines logged since the last one read, parsed."""
    lines: list[Any] = []
    while True:
        try:
            line = daemon.lines.get_nowait()
        except queue.Empty:
            return lines
        daemon.seen.append(line)
        lines.append(json.loads(line) if line.startswith("{") else line)


def _idle(daemon: Daemon, health: Path, looks: int = LOOKS, timeout: float = 60) -> list[Any]:
    """Let the look in progress end (the health file's ``last_cycle`` changes after each), then
    wait for ``looks`` more, each ending ok; return the log lines of those looks."""
    seen, outcomes = {_last_look(health)[0]}, list[str]()
    deadline = time.monotonic() + timeout
    while len(outcomes) <= looks and time.monotonic() < deadline:
        when, outcome = _last_look(health)
        if when not in seen:
            seen.add(when)
            outcomes.append(outcome)
            if len(outcomes) == 1:
                time.sleep(0.3)  # the drain thread has the lines of the look in progress
                _drain(daemon)
        time.sleep(0.05)
    assert outcomes == ["ok"] * (looks + 1), outcomes
    time.sleep(0.3)
    return _drain(daemon)


def _own_lines(daemon: Daemon) -> list[dict[str, Any]]:
    parsed = [json.loads(line) for line in daemon.seen if line.startswith("{")]
    return [e for e in parsed if str(e.get("event", "")).startswith("own.")]


def test_skip_lets_encrypt_is_hands_off(
    world: World, stack: Stack, redis_server: RedisServer, tmp_path: Path
) -> None:
    """SKIP_LETS_ENCRYPT=y with mailcow's snake-oil, then a new own pair, then one without its
    chain: the first two are deployed (one own.accepted each, the snake-oil's saying it is
    self-signed; the consumers reload and serve it), the third is one own.refused warning and
    is not deployed; no certificate file is written, nothing is logged per look (journal and
    mailcow UI), and ACME_FAIL_TIME is never set."""
    redis_server.reset()
    volume = stack.volume
    for name in ("cert.pem", "key.pem"):  # mailcow's TLS reset: the volume emptied, then cp -n
        (volume / name).unlink()
    snake_oil(HOST, tmp_path / "ssl-example", volume)
    before = _files(volume)
    assert set(before) == {"cert.pem", "key.pem"}
    env = stack.env | {
        "SKIP_LETS_ENCRYPT": "y",
        "ACME_WATCH_INTERVAL": "1",
        "REDISPASS": redis_server.password,
        "ACME_REDIS_HOST": redis_server.host,
        "ACME_REDIS_PORT": str(redis_server.port),
    }
    health = Path(env["ACME_HEALTH_FILE"])
    reloads = stack.reloads(world)
    started = stack.started(world)
    daemon = Daemon(env)
    try:
        accepted = daemon.wait_for("own.accepted")
        assert accepted["subject"] == f"CN={HOST},OU=mailcow,O=mailcow,L=Willich,ST=NRW,C=DE"
        assert accepted["self_signed"] is True and "self-signed" in accepted["note"]
        assert accepted["names"] == HOST
        daemon.wait_for("service.verified")
        snake_serial = int(accepted["serial"], 16)
        assert _served(stack) == {snake_serial}
        assert _idle(daemon, health) == []
        assert _files(volume) == before

        pair = OwnCA().issue([HOST, f"imap.{HOST}"])
        pair.write(volume)
        written = _files(volume)
        accepted = daemon.wait_for("own.accepted")
        assert accepted["serial"] == f"{pair.serial:x}" and not accepted["self_signed"]
        daemon.wait_for("service.verified")
        assert _served(stack) == {pair.serial}
        assert _idle(daemon, health) == []
        assert _files(volume) == written

        chainless = OwnCA().issue([HOST])
        (volume / "cert.pem").write_bytes(chainless.leaf)
        (volume / "key.pem").unlink()  # a key moved in (mv), readable by others
        (volume / "key.pem").write_bytes(chainless.key)
        (volume / "key.pem").chmod(0o644)
        written = _files(volume)
        refused = daemon.wait_for("own.refused")
        assert refused["level"] == "warning" and "the chain is incomplete" in refused["problems"]
        assert _idle(daemon, health) == []
        assert _files(volume) == written
        assert _served(stack) == {pair.serial}
        ui_at_end = ui_log(redis_server)
        assert _idle(daemon, health) == []
        assert len(ui_log(redis_server)) == len(ui_at_end)  # nothing per look in the UI either
    finally:
        stopped = daemon.stop()
    assert stopped == 0
    assert [e["event"] for e in _own_lines(daemon)] == [
        "own.accepted",
        "own.accepted",
        "own.refused",
    ]
    assert stack.reloads(world) == {s: n + 2 for s, n in reloads.items()}
    assert stack.started(world) == started
    own_in_ui = [e["message"] for e in ui_at_end if " own." in e["message"]]
    assert len(own_in_ui) == 3, own_in_ui
    assert redis_server.client().get("ACME_FAIL_TIME") is None
    notes = {str(p.relative_to(volume)) for p in volume.rglob("*") if p.is_file()} - set(written)
    assert notes <= OWN_NOTES
    assert {p.name for p in volume.iterdir()} == {"cert.pem", "key.pem", "acme"}  # no backups
