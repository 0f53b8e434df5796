"""mailcow UI integration over Redis: the ACME log in the UI and the watchdog's failure signal.

It writes exactly two Redis keys, like acme-mailcow: ``LPUSH ACME_LOG`` one JSON entry per log
line (``{"time": "<epoch>", "message": "<MAILCOW_HOSTNAME> - <line>"}``, shown under Logs ->
ACME) and ``SET ACME_FAIL_TIME <epoch>`` after a cycle that did not end OK (the watchdog alerts
on any change of it). It reads nothing and touches no file.

Redis never holds the daemon up: lines are queued (bounded) and written by one background
thread with one-second socket timeouts; while Redis is unreachable, lines are dropped (said once
in the log) and a pending ACME_FAIL_TIME is kept until Redis answers again. Formatting
(``human_line``, ``ui_entry``) and the choice of server (``redis_target``) are pure.
"""

from __future__ import annotations

import atexit
import json
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
import structlog
from redis.backoff import NoBackoff
from redis.retry import Retry

from acme_sidecar.config.settings import Settings
from acme_sidecar.core.report import Outcome
from acme_sidecar.ops.hooks import CycleEvent
from acme_sidecar.ops.log import add_tap

log = structlog.get_logger(__name__)

LOG_KEY = "ACME_LOG"
FAIL_KEY = "ACME_FAIL_TIME"
MAX_LINE = 2000
_HIDDEN = frozenset({"event", "level", "timestamp", "logger", "exc_info", "stack_info"})
_LOUD = frozenset({"warning", "error", "critical"})


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where the mailcow Redis is; the password is never shown."""

    host: str
    port: int
    password: str = field(default="", repr=False)

    @property
    def address(self) -> str:
        """``host:port`` for log lines."""
        return f"{self.host}:{self.port}"


def redis_target(settings: Settings) -> RedisTarget | None:
    """The Redis to write to, or None when the integration is off.

    On when ``REDISPASS`` or ``ACME_REDIS_HOST`` is set. ``REDIS_SLAVEOF_IP`` (with
    ``REDIS_SLAVEOF_PORT``, default 6379) wins: writes go to that master, as mailcow intends.
    """
    s = settings
    password = s.redispass.get_secret_value()
    if not (password or s.acme_redis_host):
        return None
    if s.redis_slaveof_ip:
        return RedisTarget(s.redis_slaveof_ip, s.redis_slaveof_port or 6379, password)
    return RedisTarget(s.acme_redis_host or "redis", s.acme_redis_port, password)


def _one_line(text: str) -> str:
    return re.sub(r"\s*[\r\n\t]+\s*", " ", text)


def _shown(value: Any) -> str:
    text = _one_line(str(value))
    if not text or re.search(r'[\s="]', text):
        return json.dumps(text, ensure_ascii=False)
    return text


def human_line(event: Mapping[str, Any]) -> str:
    """One readable line of a log event: ``[level: ]event key=value ...`` (None values left out)."""
    parts = []
    level = str(event.get("level", ""))
    if level in _LOUD:
        parts.append(f"{level}:")
    parts.append(str(event.get("event", "")))
    parts += [f"{k}={_shown(v)}" for k, v in event.items() if k not in _HIDDEN and v is not None]
    line = _one_line(" ".join(parts))
    return line if len(line) <= MAX_LINE else line[: MAX_LINE - 3] + "..."


def ui_entry(hostname: str, event: Mapping[str, Any], epoch: int) -> str:
    """The ``ACME_LOG`` entry of a log event, in acme-mailcow's format."""
    return json.dumps({"time": str(epoch), "message": f"{hostname} - {human_line(event)}"})


class RedisWriter(Protocol):
    """The two Redis commands used (``redis.Redis`` has them; tests pass a fake)."""

    def lpush(self, name: str, *values: str) -> Any:
        """LPUSH."""

    def set(self, name: str, value: str) -> Any:
        """SET."""


class RedisLog:
    """The log tap and ACME_FAIL_TIME writer: a bounded queue drained by one thread."""

    def __init__(
        self,
        client: RedisWriter,
        hostname: str,
        *,
        where: str = "redis",
        queue_size: int = 1000,
        retry_every: float = 30.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.hostname = hostname
        self.where = where
        self.retry_every = retry_every
        self.clock = clock
        self.monotonic = monotonic
        self.dropped = 0
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._fail_time: int | None = None
        self._down = False
        self._retry_at = 0.0
        self._thread = threading.Thread(target=self._work, name="mailcow-redis", daemon=True)
        self._thread.start()

    def __call__(self, event: Mapping[str, Any]) -> None:
        """The log tap: queue the line, or drop it when the queue is full; never blocks."""
        self._put("line", ui_entry(self.hostname, event, int(self.clock())))

    def fail(self, epoch: int) -> None:
        """Set ACME_FAIL_TIME to ``epoch`` (now, or as soon as Redis answers again)."""
        with self._lock:
            self._fail_time = epoch
        self._put("fail", None)

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until what is queued now was written or dropped; False after ``timeout``."""
        done = threading.Event()
        try:
            self._queue.put(("flush", done), timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Flush, then stop the thread (the wiring registers this to run at exit)."""
        if not self._thread.is_alive():
            return
        self.flush(timeout)
        self._put("stop", None)
        self._thread.join(timeout)

    def _put(self, kind: str, value: Any) -> None:
        try:
            self._queue.put_nowait((kind, value))
        except queue.Full:
            if kind == "line":
                self.dropped += 1

    def _work(self) -> None:
        while True:
            kind, value = self._queue.get()
            if kind == "stop":
                return
            if kind == "flush":
                value.set()
                continue
            self._send(value if kind == "line" else None)

    def _drop(self, line: str | None) -> None:
        if line is not None:
            self.dropped += 1

    def _send(self, line: str | None) -> None:
        if self._down and self.monotonic() < self._retry_at:
            self._drop(line)
            return
        with self._lock:
            fail_time = self._fail_time
        try:
            if fail_time is not None:
                self.client.set(FAIL_KEY, str(fail_time))
                with self._lock:
                    if self._fail_time == fail_time:
                        self._fail_time = None
            if line is not None:
                self.client.lpush(LOG_KEY, line)
        except (redis.RedisError, OSError) as exc:
            self._drop(line)
            self._retry_at = self.monotonic() + self.retry_every
            if not self._down:
                self._down = True
                log.warning(
                    "mailcow.redis_down",
                    redis=self.where,
                    error=str(exc)[:200],
                    action=f"log lines for the mailcow UI are dropped until Redis answers; "
                    f"retrying every {int(self.retry_every)}s",
                )
            return
        if self._down:
            self._down = False
            log.info("mailcow.redis_up", redis=self.where, dropped_lines=self.dropped)
            self.dropped = 0


class MailcowUi:
    """The hook: after a cycle that did not end OK, set ACME_FAIL_TIME for the watchdog."""

    def __init__(self, sink: RedisLog) -> None:
        self.sink = sink

    def after_cycle(self, event: CycleEvent) -> None:
        """Signal a failed cycle; a successful one leaves ACME_FAIL_TIME alone."""
        if event.report.outcome is Outcome.OK:
            return
        if event.quiet:
            log.info(
                "mailcow.fail_time_held", reason="the database is down for less than ACME_DB_WAIT"
            )
            return
        epoch = int(event.finished.timestamp())
        self.sink.fail(epoch)
        log.info("mailcow.fail_time", key=FAIL_KEY, value=epoch, outcome=event.report.outcome.value)


def connect(target: RedisTarget) -> redis.Redis:
    """A client with short timeouts and no retries (a missed line is better than a wait)."""
    return redis.Redis(
        host=target.host,
        port=target.port,
        password=target.password or None,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        retry=Retry(NoBackoff(), 0),
        client_name="acme-sidecar",
    )


def from_settings(settings: Settings) -> MailcowUi | None:
    """Enable the integration when the settings ask for it: tap the log, flush at exit."""
    target = redis_target(settings)
    if target is None:
        return None
    sink = RedisLog(connect(target), settings.mailcow_hostname, where=target.address)
    add_tap(sink)
    atexit.register(sink.close)
    log.info("mailcow.ui", redis=target.address, keys=f"{LOG_KEY} {FAIL_KEY}")
    return MailcowUi(sink)
