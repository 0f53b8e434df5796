"""Verify: does each service now serve the certificate we just wrote?

Connects like a client (SMTP STARTTLS, IMAP STARTTLS, or direct TLS for HTTPS) with SNI for
each certificate's first name, and compares the served serial with the stored one. Bounded: one
probe ends within its timeout however slowly the peer talks (every read, write and the TLS
handshake get the time left); ``check_served`` runs a few probes at once across services and
names and ends within its one deadline, or at once when told to stop. ``unresolved`` says which
endpoints' host names do not resolve (another stack's service names), so they are not probed.
May touch: the network (the consumers' TLS ports, the resolver) only.
"""

from __future__ import annotations

import heapq
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import structlog
from cryptography import x509

from acme_sidecar.core.consumers import Endpoint

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A service that serves something else than expected for a name."""

    endpoint: Endpoint
    server_name: str
    expected: int
    served: int | None
    error: str = ""


_LINE_CAP = 4096  # bytes of one SMTP/IMAP line
_LINES_CAP = 100  # lines of one greeting or EHLO answer
_WAIT_STEP = 0.05  # how often a wait for a probe looks at the stop event


Monotonic = Callable[[], float]
"""``clock()``: seconds on a clock that never goes back (``time.monotonic``; a test's fake). Every
deadline here is read from it; the waits between looks at it stay short (``_WAIT_STEP``)."""


class _Clock:
    """The end of one probe: every socket operation gets the time left before it."""

    def __init__(self, seconds: float, clock: Monotonic = time.monotonic) -> None:
        self.clock = clock
        self.end = clock() + seconds

    def left(self) -> float:
        left = self.end - self.clock()
        if left <= 0:
            raise TimeoutError("the server did not finish in time")
        return left

    def arm(self, sock: socket.socket) -> None:
        sock.settimeout(self.left())


def _read_line(sock: socket.socket, clock: _Clock, limit: int = _LINE_CAP) -> bytes:
    data = b""
    while not data.endswith(b"\n") and len(data) < limit:
        clock.arm(sock)
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def _send(sock: socket.socket, clock: _Clock, data: bytes) -> None:
    clock.arm(sock)
    sock.sendall(data)


def _reply(sock: socket.socket, clock: _Clock, more: Callable[[bytes], bool]) -> bytes:
    """Read lines while ``more(line)``; return the last one."""
    for _ in range(_LINES_CAP):
        line = _read_line(sock, clock)
        if not line or not more(line):
            return line
    raise OSError(f"the server sent more than {_LINES_CAP} lines")


def _smtp_starttls(sock: socket.socket, clock: _Clock) -> None:
    _reply(sock, clock, lambda line: line.startswith(b"220-"))  # greeting, maybe multi-line
    _send(sock, clock, b"EHLO acme-sidecar\r\n")
    _reply(sock, clock, lambda line: line[3:4] == b"-")
    _send(sock, clock, b"STARTTLS\r\n")
    if not _read_line(sock, clock).startswith(b"220"):
        raise OSError("the server refused STARTTLS")


def _imap_starttls(sock: socket.socket, clock: _Clock) -> None:
    _read_line(sock, clock)
    _send(sock, clock, b"a1 STARTTLS\r\n")
    line = _reply(sock, clock, lambda line: not line.startswith(b"a1 "))
    if not line.startswith(b"a1 OK"):
        raise OSError("the server refused STARTTLS")


def _handshake(tls: ssl.SSLSocket, clock: _Clock) -> None:
    """The TLS handshake within the time left (a blocking one would wait per read)."""
    tls.setblocking(False)
    while True:
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            ready = select.select([tls], [], [], clock.left())[0]
        except ssl.SSLWantWriteError:
            ready = select.select([], [tls], [], clock.left())[1]
        else:
            return
        if not ready:
            raise TimeoutError("the TLS handshake did not finish in time")


def _client_context() -> ssl.SSLContext:
    """One TLS client context for every probe: it trusts nothing (we compare serials; trust is
    the CA's business), so no CA store is loaded, which took ~60 ms of CPU per probe."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_CONTEXT = _client_context()


def served_serial(
    endpoint: Endpoint, server_name: str, timeout: float = 5.0, *, clock: Monotonic = time.monotonic
) -> int:
    """The serial of the certificate ``endpoint`` presents for ``server_name``, within
    ``timeout`` seconds (on ``clock``) for the whole exchange."""
    ends = _Clock(timeout, clock)
    context = _CONTEXT
    address = (endpoint.host, endpoint.port)
    with socket.create_connection(address, timeout=ends.left()) as raw:
        if endpoint.kind == "smtp":
            _smtp_starttls(raw, ends)
        elif endpoint.kind == "imap":
            _imap_starttls(raw, ends)
        ends.arm(raw)
        with context.wrap_socket(
            raw, server_hostname=server_name, do_handshake_on_connect=False
        ) as tls:
            _handshake(tls, ends)
            der = tls.getpeercert(binary_form=True)
    if der is None:
        raise OSError("no certificate presented")
    return x509.load_der_x509_certificate(der).serial_number


Probe = Callable[[Endpoint, str, float], int]
"""``probe(endpoint, server_name, timeout)``: the served serial, within ``timeout`` seconds."""

Resolve = Callable[[str, int], object]
"""``resolve(host, port)``: raises ``OSError`` (``socket.gaierror``) when ``host`` does not
resolve."""

WORKERS = 12  # probes in flight at once, across all services and names
_LOOKUP_PAUSES = (0.25, 0.5)  # a name may be missing briefly while its container restarts


def _lookup(host: str, port: int) -> object:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)


def unresolved(
    endpoints: Sequence[Endpoint],
    *,
    timeout: float = 5.0,
    stop: threading.Event | None = None,
    resolve: Resolve = _lookup,
    clock: Monotonic = time.monotonic,
) -> dict[Endpoint, str]:
    """The endpoints whose host name does not resolve, each with the reason.

    All hosts are looked up at once (daemon threads), each retried briefly; a lookup that has
    not answered within ``timeout`` seconds (on ``clock``), or when ``stop`` is set, counts as
    not resolving.
    """
    stop = stop or threading.Event()
    reasons: dict[Endpoint, str] = {}
    lock = threading.Lock()
    done = threading.Semaphore(0)

    def look(endpoint: Endpoint) -> None:
        for pause in (*_LOOKUP_PAUSES, None):
            try:
                resolve(endpoint.host, endpoint.port)
            except OSError as exc:
                with lock:
                    reasons[endpoint] = str(exc) or type(exc).__name__
            else:
                with lock:
                    reasons.pop(endpoint, None)
                break
            if pause is None or stop.wait(pause):
                break
        done.release()

    pending = list(dict.fromkeys(endpoints))
    end = clock() + timeout  # counted from before the first lookup starts
    for endpoint in pending:
        reasons[endpoint] = f"the lookup did not finish within {timeout:g}s"
        threading.Thread(target=look, args=(endpoint,), name="tls-lookup", daemon=True).start()
    finished = 0
    while finished < len(pending) and not stop.is_set() and clock() < end:
        finished += done.acquire(timeout=min(_WAIT_STEP, max(end - clock(), 0.0)))
    with lock:
        return dict(reasons)


@dataclass(slots=True)
class _Pair:
    """One (endpoint, name) to confirm: its attempts so far and the last answer."""

    endpoint: Endpoint
    name: str
    attempt: int = 0
    served: int | None = None
    error: str = ""
    finished: bool = False  # confirmed, or failed on its last attempt


class _Run:
    """The shared state of one ``check_served``: a queue of due pairs, ordered by time, and how
    many probes each endpoint has in flight (at most ``per_endpoint``, so that an endpoint that
    never answers cannot hold every worker while the others wait)."""

    def __init__(
        self,
        pairs: list[_Pair],
        end: float,
        stop: threading.Event,
        per_endpoint: int,
        clock: Monotonic,
    ) -> None:
        self.pairs = pairs
        self.clock = clock
        self.end = end
        self.stop = stop
        self.per_endpoint = per_endpoint
        self.busy: dict[Endpoint, int] = dict.fromkeys((p.endpoint for p in pairs), 0)
        self.lock = threading.Condition()
        self.due: list[tuple[float, int]] = [(0.0, i) for i in range(len(pairs))]
        heapq.heapify(self.due)
        self.open = len(pairs)
        self.closed = False

    def over(self) -> bool:
        return self.closed or self.stop.is_set() or self.clock() >= self.end

    def _pop_due(self, now: float) -> int | None:
        """The earliest due pair whose endpoint has room, taken off the queue."""
        held: list[tuple[float, int]] = []
        found = None
        while self.due and self.due[0][0] <= now:
            item = heapq.heappop(self.due)
            if self.busy[self.pairs[item[1]].endpoint] < self.per_endpoint:
                found = item[1]
                break
            held.append(item)
        for item in held:
            heapq.heappush(self.due, item)
        return found

    def take(self) -> int | None:
        """The next due pair (waiting for it), or None when the run is over."""
        with self.lock:
            while not self.over() and self.open:
                now = self.clock()
                index = self._pop_due(now)
                if index is not None:
                    self.busy[self.pairs[index].endpoint] += 1
                    return index
                wake = self.due[0][0] if self.due else self.end
                self.lock.wait(min(_WAIT_STEP, max(wake - now, 0.0)))
            return None

    def record(self, index: int, served: int | None, error: str, ok: bool, last: bool) -> None:
        with self.lock:
            pair = self.pairs[index]
            pair.served, pair.error = served, error
            pair.finished = ok or last
            self.open -= pair.finished
            self.busy[pair.endpoint] -= 1
            self.lock.notify_all()

    def again(self, index: int, at: float) -> None:
        with self.lock:
            heapq.heappush(self.due, (at, index))
            self.lock.notify_all()


def check_served(
    endpoints: Sequence[Endpoint],
    expected: Mapping[str, int],
    *,
    attempts: int = 5,
    first_delay: float = 0.5,
    probe: Probe = served_serial,
    sleep: Callable[[float], None] | None = None,
    timeout: float = 5.0,
    deadline: float | None = 120.0,
    stop: threading.Event | None = None,
    workers: int = WORKERS,
    clock: Monotonic = time.monotonic,
) -> list[Mismatch]:
    """Check every (endpoint, name) pair, retrying the failing ones with growing pauses.

    Up to ``workers`` probes run at once (daemon threads), the pairs taken name by name across
    the endpoints; each endpoint gets its share of the workers, so an endpoint that never
    answers slows only its own pairs. All of it ends within ``deadline`` seconds (None: no
    overall limit), and at once when ``stop`` is set: the pairs not yet finished are then
    mismatches with the error ``"deadline"`` or ``"stopped"``. Each probe gets ``timeout``
    seconds or the time left, whichever is less. A pair's n-th retry waits
    ``first_delay * 2**(n-1)`` seconds (``sleep``, if given, is called with that pause
    instead of waiting). The mismatches come in the order of ``endpoints``, then of
    ``expected``, each with the answer of its last attempt. Deadlines and due times are read
    from ``clock``.
    """
    stop = stop or threading.Event()
    end = clock() + deadline if deadline is not None else float("inf")
    pairs = [_Pair(e, n) for n in expected for e in endpoints]  # names spread over endpoints
    workers = max(1, min(workers, len(pairs)))
    run = _Run(
        pairs, end, stop, per_endpoint=max(1, -(-workers // max(len(endpoints), 1))), clock=clock
    )

    def work() -> None:
        while (index := run.take()) is not None:
            pair = pairs[index]
            left = end - clock()
            if left <= 0:
                return
            try:
                served, error = probe(pair.endpoint, pair.name, min(timeout, left)), ""
            except Exception as exc:  # noqa: BLE001 - any failure of a probe is a mismatch
                served, error = None, f"{type(exc).__name__}: {exc}"
            pair.attempt += 1
            ok, last = served == expected[pair.name], pair.attempt >= attempts
            run.record(index, served, error, ok, last)
            if ok or last:
                continue
            pause = first_delay * 2 ** (pair.attempt - 1)
            if sleep is not None:
                sleep(pause)
                pause = 0.0
            run.again(index, clock() + pause)

    for _ in range(workers):
        threading.Thread(target=work, name="tls-probe", daemon=True).start()
    with run.lock:
        while run.open and not run.over():
            run.lock.wait(min(_WAIT_STEP, max(end - clock(), 0.0)))
        run.closed = True
        run.lock.notify_all()
        why = "stopped" if stop.is_set() else "deadline"
        order = {(e, n): i for i, (e, n) in enumerate((e, n) for e in endpoints for n in expected)}
        return [
            Mismatch(p.endpoint, p.name, expected[p.name], p.served, p.error if p.finished else why)
            for p in sorted(pairs, key=lambda p: order[p.endpoint, p.name])
            if not (p.finished and p.served == expected[p.name])
        ]
