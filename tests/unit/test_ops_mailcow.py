"""mailcow UI over Redis: which server, the ACME_LOG format, and never waiting on Redis."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

import redis

from acme_sidecar.config.settings import load_settings
from acme_sidecar.core.report import Outcome, Report
from acme_sidecar.ops.hooks import CycleEvent
from acme_sidecar.ops.mailcow_ui import (
    MailcowUi,
    RedisLog,
    RedisTarget,
    human_line,
    redis_target,
    ui_entry,
)

HOST = "mail.example.org"
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


class FakeRedis:
    """Keeps LPUSHed lists and SET values like Redis; raises ConnectionError while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self.lists: dict[str, list[str]] = {}
        self.values: dict[str, str] = {}
        self.calls = 0
        self.gate = threading.Event()
        self.gate.set()

    def lpush(self, name: str, *values: str) -> int:
        self.gate.wait()
        self.calls += 1
        if self.down:
            raise redis.ConnectionError("Connection refused")
        for value in values:
            self.lists.setdefault(name, []).insert(0, value)
        return len(self.lists[name])

    def set(self, name: str, value: str) -> bool:
        self.calls += 1
        if self.down:
            raise redis.ConnectionError("Connection refused")
        self.values[name] = value
        return True


def settings(**env: str) -> Any:
    return load_settings({"MAILCOW_HOSTNAME": HOST} | env)


def test_target_is_chosen_like_mailcow() -> None:
    """Off without REDISPASS and ACME_REDIS_HOST; REDIS_SLAVEOF_IP wins; password hidden."""
    assert redis_target(settings()) is None
    assert redis_target(settings(REDISPASS="s3cret")) == RedisTarget("redis", 6379, "s3cret")
    assert redis_target(settings(ACME_REDIS_HOST="10.0.0.5", ACME_REDIS_PORT="6380")) == (
        RedisTarget("10.0.0.5", 6380, "")
    )
    slave = settings(REDISPASS="s3cret", REDIS_SLAVEOF_IP="192.0.2.7", REDIS_SLAVEOF_PORT="")
    assert redis_target(slave) == RedisTarget("192.0.2.7", 6379, "s3cret")
    other = settings(REDISPASS="x", REDIS_SLAVEOF_IP="192.0.2.7", REDIS_SLAVEOF_PORT="16379")
    target = redis_target(other)
    assert target is not None and target.address == "192.0.2.7:16379"
    assert "s3cret" not in repr(redis_target(slave))


def test_human_line() -> None:
    """Event first, then key=value; quoted when needed; level only when loud; no newlines."""
    line = human_line(
        {
            "event": "name.skipped",
            "level": "warning",
            "timestamp": "2026-11-24T12:00:00Z",
            "name": "autoconfig.example.org",
            "reason": 'DNS A returned 192.0.2.1,\nexpected "198.51.100.7"',
            "services": None,
            "count": 3,
        }
    )
    assert line == (
        'warning: name.skipped name=autoconfig.example.org reason="DNS A returned 192.0.2.1, '
        'expected \\"198.51.100.7\\"" count=3'
    )
    assert human_line({"event": "cycle.done", "level": "info", "outcome": "ok"}) == (
        "cycle.done outcome=ok"
    )
    assert len(human_line({"event": "x", "blob": "y" * 5000})) == 2000


def test_ui_entry_is_mailcows_format() -> None:
    """{"time": "<epoch string>", "message": "<hostname> - <line>"}."""
    entry = json.loads(ui_entry(HOST, {"event": "cycle.done", "outcome": "ok"}, 1764000000))
    assert entry == {"time": "1764000000", "message": f"{HOST} - cycle.done outcome=ok"}


def test_lines_are_pushed_in_order() -> None:
    """Each tapped event becomes one LPUSH (newest first, like mailcow)."""
    fake = FakeRedis()
    sink = RedisLog(fake, HOST, clock=lambda: 1764000000.5)
    for i in range(3):
        sink({"event": "step", "i": i})
    assert sink.flush(5)
    messages = [json.loads(e)["message"] for e in fake.lists["ACME_LOG"]]
    assert messages == [f"{HOST} - step i=2", f"{HOST} - step i=1", f"{HOST} - step i=0"]
    assert json.loads(fake.lists["ACME_LOG"][0])["time"] == "1764000000"
    sink.close()


def test_redis_down_drops_lines_and_keeps_the_fail_time() -> None:
    """While Redis is down lines are dropped without retrying each one; the fail time waits."""
    fake = FakeRedis()
    fake.down = True
    clock = [100.0]
    sink = RedisLog(fake, HOST, retry_every=30, monotonic=lambda: clock[0])
    hook = MailcowUi(sink)
    hook.after_cycle(CycleEvent(Report(Outcome.FAILED), {}, NOW))
    for i in range(50):
        sink({"event": "step", "i": i})
    assert sink.flush(5)
    assert fake.calls == 1  # one failed attempt, then lines are dropped until the retry time
    assert sink.dropped == 50
    fake.down = False
    clock[0] += 31
    sink({"event": "back"})
    assert sink.flush(5)
    assert fake.values == {"ACME_FAIL_TIME": str(int(NOW.timestamp()))}
    assert [json.loads(e)["message"] for e in fake.lists["ACME_LOG"]] == [f"{HOST} - back"]
    assert sink.dropped == 0  # reported in the mailcow.redis_up line, then reset
    sink.close()


def test_fail_time_only_after_a_cycle_that_did_not_end_ok() -> None:
    """A successful cycle leaves ACME_FAIL_TIME alone (mailcow's watchdog alerts on a change)."""
    fake = FakeRedis()
    sink = RedisLog(fake, HOST)
    hook = MailcowUi(sink)
    hook.after_cycle(CycleEvent(Report(Outcome.OK), {}, NOW))
    assert sink.flush(5) and fake.values == {}
    hook.after_cycle(CycleEvent(Report(Outcome.NOTHING_VALID), {}, NOW))
    assert sink.flush(5) and fake.values == {"ACME_FAIL_TIME": str(int(NOW.timestamp()))}
    sink.close()


def test_a_quiet_failure_leaves_acme_fail_time_alone() -> None:
    """The database down for less than ACME_DB_WAIT: no ACME_FAIL_TIME (no watchdog mail)."""
    fake = FakeRedis()
    sink = RedisLog(fake, HOST)
    MailcowUi(sink).after_cycle(CycleEvent(Report(Outcome.SOURCE_DOWN), {}, NOW, quiet=True))
    assert sink.flush(5) and fake.values == {}
    sink.close()


def test_a_slow_redis_never_blocks_the_caller() -> None:
    """With the writer stuck, logging still returns at once; beyond the queue, lines drop."""
    fake = FakeRedis()
    fake.gate.clear()
    sink = RedisLog(fake, HOST, queue_size=10)
    for i in range(100):
        sink({"event": "step", "i": i})
    assert sink.dropped >= 80
    fake.gate.set()
    assert sink.flush(5)
    sink.close()
