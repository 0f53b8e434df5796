"""Bounded network: slow or huge answers end at the deadline and never get buffered whole.

Real loopback servers (one thread per connection) that trickle one byte every half second or
offer a 50 MiB body; the clients under test get shortened deadlines so the tests take seconds.
What is asserted is the outcome (which error, how much was read); where a real socket waits out
a real deadline, the time taken has only a generous bound (a hang fails, a busy machine does
not). The TLS probe and ``check_served`` read a ``TestClock`` that the trickling server or the
test moves on, so their deadline logic is checked without wall time.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from structlog.testing import capture_logs

from acme_sidecar.adapters.http_probe import FetchFailed, WebrootSelfCheck, detect_public_ip, fetch
from acme_sidecar.adapters.tls_probe import check_served, served_serial
from acme_sidecar.core.consumers import Endpoint
from acme_sidecar.ops.alerts import Notice
from acme_sidecar.ops.channels import WebhookChannel
from tests.unit.timing import LIMIT, TestClock, in_thread, wait_until, within_limit

HUGE = 50 * 1024 * 1024
STEP = 0.5  # seconds between trickled bytes
DEADLINE = 1.5
GENEROUS = (
    DEADLINE + 5.0
)  # real seconds to wait for a cut-off client to hang up (a bound, no assert)
NAME = "mail.example.org"


class Server:
    """A loopback TCP server; ``respond(server, conn)`` runs per connection in its own thread."""

    def __init__(
        self, respond: Callable[[Server, socket.socket], None], clock: TestClock | None = None
    ) -> None:
        self.respond = respond
        self.clock = clock  # moved on by STEP with every trickled byte
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sent = 0  # body bytes written before the client went away
        self.stop = threading.Event()
        self.hung_up = threading.Event()  # the client closed a trickled answer

    def __enter__(self) -> Server:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop.set()
        self.listener.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        # an OSError means the client closed: what the bounded clients do
        with conn, contextlib.suppress(OSError):
            self.respond(self, conn)

    def trickle(self, conn: socket.socket, byte: bytes = b"x") -> None:
        """Send ``byte`` every STEP seconds until the client goes or the test ends. With a
        test clock, STEP passes on it with each byte while the real pause is short, so the
        client's socket waits (the time left, on that clock) never run out first."""
        pause = STEP if self.clock is None else STEP / 25
        while not self.stop.wait(pause):
            if self.clock is not None:
                self.clock.advance(STEP)
            try:
                conn.sendall(byte)
            except OSError:
                self.hung_up.set()
                raise


def request_of(conn: socket.socket) -> bytes:
    """The request head (up to the blank line)."""
    conn.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def trickled_body(server: Server, conn: socket.socket) -> None:
    request_of(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    server.trickle(conn)


def trickled_headers(server: Server, conn: socket.socket) -> None:
    request_of(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    server.trickle(conn, b"a")


def huge_body(server: Server, conn: socket.socket) -> None:
    request_of(conn)
    conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {HUGE}\r\n\r\n".encode())
    chunk = b"x" * 65536
    while server.sent < HUGE:
        conn.sendall(chunk)
        server.sent += len(chunk)


def reply(conn: socket.socket, body: bytes, status: str = "200 OK") -> None:
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    conn.sendall(head.encode() + body)


def answer(body: bytes, status: str = "200 OK") -> Callable[[Server, socket.socket], None]:
    def respond(server: Server, conn: socket.socket) -> None:
        request_of(conn)
        reply(conn, body, status)

    return respond


def echo_token(server: Server, conn: socket.socket) -> None:
    path = request_of(conn).split(b" ", 2)[1]
    reply(conn, path.rsplit(b"/", 1)[1])


@pytest.fixture
def webroot(tmp_path: Path) -> Path:
    return tmp_path / "webroot"


def peak_memory(call: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        return call(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def self_check(webroot: Path, port: int) -> str | None:
    with WebrootSelfCheck(webroot, port, DEADLINE) as check:
        return check.check(NAME, "127.0.0.1")


# --- the HTTP self-check -----------------------------------------------------------------


def test_self_check_passes_when_the_token_comes_back(webroot: Path) -> None:
    """The bounded self-check still accepts a server that serves the token."""
    with Server(echo_token) as server:
        assert self_check(webroot, server.port) is None


@pytest.mark.parametrize("respond", [trickled_body, trickled_headers])
def test_self_check_ends_at_its_deadline(
    webroot: Path, respond: Callable[[Server, socket.socket], None]
) -> None:
    """A server trickling one byte every 0.5 s (body or headers) is cut off at the deadline."""
    with Server(respond) as server:
        reason = self_check(webroot, server.port)
        hung_up = server.hung_up.wait(GENEROUS)  # the trickle would go on until the test ends
    assert reason is not None and f"no complete answer within {DEADLINE:g}s" in reason
    assert hung_up


def test_fetch_reads_its_deadline_from_the_clock() -> None:
    """A body sent in 16 KiB pieces (the reader's chunk), each 0.5 s apart on the test clock (a
    short real pause): the request ends once the clock passes its 1.5 s deadline (the cap of
    256 KiB is not reached), long before the real-time watchdog would fire."""
    clock = TestClock()

    def slow_pieces(server: Server, conn: socket.socket) -> None:
        request_of(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n")
        while not server.stop.wait(0.02):
            clock.advance(STEP)
            conn.sendall(b"x" * 16 * 1024)

    ended: list[float] = []

    def get(port: int) -> None:
        try:
            fetch(
                "GET", f"http://127.0.0.1:{port}/", deadline=DEADLINE, cap=256 * 1024, clock=clock
            )
        finally:
            ended.append(clock.elapsed)

    with Server(slow_pieces) as server, pytest.raises(FetchFailed, match=r"within 1\.5s"):
        within_limit(lambda: get(server.port))
    # ended by the clock: a real-time cut-off would have let ~75 pieces (37 s) pass on it
    assert DEADLINE <= ended[0] < DEADLINE + 4 * STEP


def test_self_check_cuts_a_huge_body_off(webroot: Path) -> None:
    """A 50 MiB answer fails the self-check on its size (not its deadline) without being
    buffered: a few KiB are read."""
    with Server(huge_body) as server:
        reason, peak = peak_memory(lambda: self_check(webroot, server.port))
        sent = server.sent
    assert reason is not None and "longer than 4096 bytes" in reason
    assert sent < HUGE and peak < 4 * 1024 * 1024


# --- public IP detection -----------------------------------------------------------------


def detect(port: int) -> tuple[str | None, list[MutableMapping[str, Any]]]:
    with capture_logs() as logs:
        got = detect_public_ip(f"http://127.0.0.1:{port}/", 4, DEADLINE)
    return got, logs


def test_detection_reads_the_address() -> None:
    """An answer of one IPv4 address is this server's address."""
    with Server(answer(b"203.0.113.9\n")) as server:
        assert detect(server.port)[0] == "203.0.113.9"


def test_detection_ends_at_its_deadline() -> None:
    """A trickling detection service gives no address, cut off at the deadline, and says why."""
    with Server(trickled_headers) as server:
        got, logs = detect(server.port)
        hung_up = server.hung_up.wait(GENEROUS)
    assert got is None and f"no complete answer within {DEADLINE:g}s" in logs[0]["error"]
    assert hung_up


def test_detection_cuts_a_huge_body_off() -> None:
    """A 50 MiB answer gives no address, on its size (not the deadline); at most the cap is
    read."""
    with Server(huge_body) as server:
        (got, logs), peak = peak_memory(lambda: detect(server.port))
        sent = server.sent
    assert got is None and "longer than 256 bytes" in logs[0]["error"]
    assert sent < HUGE and peak < 4 * 1024 * 1024


# --- the webhook ---------------------------------------------------------------------------

NOTICE = Notice("cycle_failed", "cycle_failed", "a cycle failed")
NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


def post(port: int, path: str = "hook") -> tuple[set[str], list[MutableMapping[str, Any]]]:
    channel = WebhookChannel(f"http://127.0.0.1:{port}/{path}", hostname=NAME, deadline=DEADLINE)
    with capture_logs() as logs:
        delivered = channel.send([NOTICE], NOW, resolved=False)
    return delivered, logs


def test_webhook_ends_at_its_deadline() -> None:
    """A webhook that trickles its answer is given up at the deadline and logged."""
    with Server(trickled_headers) as server:
        delivered, logs = post(server.port)
        hung_up = server.hung_up.wait(GENEROUS)
    assert delivered == set() and logs[0]["event"] == "notify.failed"
    assert f"no complete answer within {DEADLINE:g}s" in logs[0]["error"] and hung_up


def test_webhook_does_not_read_a_huge_answer() -> None:
    """A 2xx with a 50 MiB body counts as delivered (no deadline reached); the body is not
    read."""
    with Server(huge_body) as server:
        (delivered, logs), peak = peak_memory(lambda: post(server.port))
        sent = server.sent
    assert delivered == {"cycle_failed"} and not [e for e in logs if e["event"] == "notify.failed"]
    assert sent < HUGE and peak < 4 * 1024 * 1024


def test_webhook_failure_log_hides_the_url() -> None:
    """A refused POST logs the host and status, never the URL's password or path token."""
    with Server(answer(b"no", "500 Internal Server Error")) as server:
        delivered, logs = post(server.port, "hook/t0ken")
        channel = WebhookChannel(
            f"http://user:s3cret@127.0.0.1:{server.port}/hook/t0ken", hostname=NAME
        )
        with capture_logs() as more:
            channel.send([NOTICE], NOW, resolved=False)
    assert delivered == set() and logs[0]["error"] == "HTTP 500 Internal Server Error"
    shown = repr(logs + more) + repr(channel)
    assert "s3cret" not in shown and "t0ken" not in shown and "127.0.0.1" in shown


# --- TLS verification --------------------------------------------------------------------


def test_served_serial_ends_within_its_timeout_on_a_trickling_greeting() -> None:
    """An SMTP server trickling its greeting cannot hold a probe beyond its timeout: every byte
    moves the clock 0.5 s on, and the probe ends when the clock passes its 1 s."""

    def greeting(server: Server, conn: socket.socket) -> None:
        conn.sendall(b"220-")
        server.trickle(conn, b"x")

    clock = TestClock()
    with Server(greeting, clock) as server:
        endpoint = Endpoint("postfix", "smtp", "127.0.0.1", server.port)
        with pytest.raises(TimeoutError, match="the server did not finish in time"):
            within_limit(lambda: served_serial(endpoint, NAME, timeout=1.0, clock=clock))
    assert clock.elapsed >= 1.0  # it ran until the clock passed its timeout


def test_served_serial_bounds_the_tls_handshake() -> None:
    """A server trickling its TLS handshake cannot hold a probe beyond its timeout: the
    handshake ends when the clock, moved on by each byte, passes the probe's 1 s."""

    def handshake(server: Server, conn: socket.socket) -> None:
        conn.recv(4096)  # ClientHello
        conn.sendall(b"\x16\x03\x03\x40\x00")  # a 16 KiB handshake record, sent slowly
        server.trickle(conn, b"\x02")

    clock = TestClock()
    with Server(handshake, clock) as server:
        endpoint = Endpoint("nginx", "https", "127.0.0.1", server.port)
        with pytest.raises(TimeoutError, match="the server did not finish in time"):
            within_limit(lambda: served_serial(endpoint, NAME, timeout=1.0, clock=clock))
    assert clock.elapsed >= 1.0  # it ran until the clock passed its timeout


EP = Endpoint("postfix", "smtp", "postfix", 25)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Lets blocked fake probes finish when the test ends."""
    event = threading.Event()
    yield event
    event.set()


def test_check_served_returns_at_once_when_stopped(release: threading.Event) -> None:
    """A stop set while both probes block ends the verification at once: pairs 'stopped', the
    clock standing still (neither the deadline nor an answer ended it)."""
    stop, clock = threading.Event(), TestClock()
    blocked: list[str] = []

    def blocks(endpoint: Endpoint, name: str, timeout: float) -> int:
        blocked.append(name)
        if len(blocked) == 2:
            stop.set()
        release.wait(30)
        return 1

    result = within_limit(
        lambda: check_served([EP], {NAME: 1, "b": 2}, probe=blocks, stop=stop, clock=clock)
    )
    assert [(m.server_name, m.served, m.error) for m in result] == [
        (NAME, None, "stopped"),
        ("b", None, "stopped"),
    ]
    assert clock.elapsed == 0


def test_check_served_honours_its_deadline_while_retrying() -> None:
    """A wrong pair is retried after 0.1, 0.2, 0.4 s, each probe given only the time left of
    the 1 s deadline; the next pause (0.8 s) passes the deadline, so it ends there."""
    given: list[float] = []
    clock = TestClock()

    def wrong(endpoint: Endpoint, name: str, timeout: float) -> int:
        given.append(timeout)
        return 7

    result = check_served(
        [EP],
        {NAME: 1},
        probe=wrong,
        attempts=100,
        first_delay=0.1,
        deadline=1.0,
        sleep=clock.advance,
        clock=clock,
    )
    assert [(m.served, m.error) for m in result] == [(7, "deadline")]
    assert given == pytest.approx([1.0, 0.9, 0.7, 0.3]) and clock.elapsed == pytest.approx(1.5)


def test_check_served_honours_its_deadline_while_a_probe_blocks(release: threading.Event) -> None:
    """A probe that blocks past the deadline does not hold the verification: it ends when the
    clock reaches the deadline, not before."""
    clock = TestClock()
    probing = threading.Event()

    def blocked(endpoint: Endpoint, name: str, timeout: float) -> int:
        probing.set()
        release.wait(30)
        return 1

    running = in_thread(
        lambda: check_served([EP], {NAME: 1}, probe=blocked, deadline=0.5, clock=clock)
    )
    wait_until(probing.is_set, "the probe started")
    clock.advance(0.49)
    assert not running.done()
    clock.advance(0.01)
    assert [m.error for m in running.result(timeout=LIMIT)] == ["deadline"]


def test_check_served_confirms_on_a_later_attempt() -> None:
    """A pair that turns right on a retry is confirmed; nothing is reported."""
    answers = iter([7, 1])
    pauses: list[float] = []
    result = check_served([EP], {NAME: 1}, probe=lambda e, n, t: next(answers), sleep=pauses.append)
    assert result == [] and pauses == [0.5]


def test_watchdogs_share_one_deadline_thread() -> None:
    """A watchdog starts no thread of its own (one per request cost the cycle a second under
    eight order threads): a hundred come and go on the one deadline thread, which fires an
    expired one and not a cancelled one."""
    from acme_sidecar.adapters.bounded import Watchdog

    Watchdog(30.0).cancel()  # the deadline thread starts with the first watchdog
    before = threading.active_count()
    for _ in range(100):
        Watchdog(30.0).cancel()
    assert threading.active_count() == before
    assert [t.name for t in threading.enumerate()].count("bounded-deadlines") == 1
    expired = Watchdog(0.0)
    for _ in range(200):  # the deadline thread fires it at once; allow it a scheduling turn
        if expired.fired:
            break
        time.sleep(0.01)
    assert expired.fired
    cancelled = Watchdog(0.0)
    cancelled.cancel()
    cancelled.fire()  # the deadline thread may have popped it just before the cancel
    assert not cancelled.fired
