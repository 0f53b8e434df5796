"""Verify: does each service now serve the certificate we just wrote?

Connects like a client (SMTP STARTTLS, IMAP STARTTLS, or direct TLS for HTTPS) with SNI for
each certificate's first name, and compares the served serial with the stored one. Bounded: one
probe ends within its timeout however slowly the peer talks (every read, write and the TLS
handshake get the time left), and ``check_served`` ends within its deadline or when told to stop.
May touch: the network (the consumers' TLS ports) only.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import structlog
from cryptography import x509

log = structlog.get_logger(__name__)

Kind = Literal["smtp", "imap", "https"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One TLS listener of one service."""

    service: str
    kind: Kind
    host: str
    port: int


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


class _Clock:
    """The end of one probe: every socket operation gets the time left before it."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        left = self.end - time.monotonic()
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


def served_serial(endpoint: Endpoint, server_name: str, timeout: float = 5.0) -> int:
    """The serial of the certificate ``endpoint`` presents for ``server_name``, within
    ``timeout`` seconds for the whole exchange."""
    clock = _Clock(timeout)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # we compare serials; trust is the CA's business
    address = (endpoint.host, endpoint.port)
    with socket.create_connection(address, timeout=clock.left()) as raw:
        if endpoint.kind == "smtp":
            _smtp_starttls(raw, clock)
        elif endpoint.kind == "imap":
            _imap_starttls(raw, clock)
        clock.arm(raw)
        with context.wrap_socket(
            raw, server_hostname=server_name, do_handshake_on_connect=False
        ) as tls:
            _handshake(tls, clock)
            der = tls.getpeercert(binary_form=True)
    if der is None:
        raise OSError("no certificate presented")
    return x509.load_der_x509_certificate(der).serial_number


Probe = Callable[[Endpoint, str, float], int]
"""``probe(endpoint, server_name, timeout)``: the served serial, within ``timeout`` seconds."""


def _probe_once(
    probe: Probe,
    endpoint: Endpoint,
    name: str,
    timeout: float,
    stop: threading.Event,
    end: float,
) -> tuple[int | None, str] | None:
    """(served, error) of one probe, run in a daemon thread so that a stop or the deadline is
    answered at once even while the probe blocks; None when it was cut short."""
    result: list[tuple[int | None, str]] = []
    done = threading.Event()

    def work() -> None:
        try:
            result.append((probe(endpoint, name, timeout), ""))
        except Exception as exc:  # noqa: BLE001 - any failure of a probe is a mismatch
            result.append((None, f"{type(exc).__name__}: {exc}"))
        finally:
            done.set()

    threading.Thread(target=work, name=f"tls-probe-{endpoint.service}", daemon=True).start()
    while not done.wait(min(_WAIT_STEP, max(end - time.monotonic(), 0.0))):
        if stop.is_set() or time.monotonic() >= end:
            return None
    return result[0]


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
) -> list[Mismatch]:
    """Check every (endpoint, name) pair, retrying the failing ones with growing pauses.

    All of it ends within ``deadline`` seconds (None: no overall limit), and at once when
    ``stop`` is set: the pairs not yet confirmed are then mismatches with the error
    ``"deadline"`` or ``"stopped"``. Each probe gets ``timeout`` seconds or the time left,
    whichever is less. The pauses wait on ``stop`` (``sleep``, if given, replaces them).
    """
    stop = stop or threading.Event()
    end = time.monotonic() + deadline if deadline is not None else float("inf")
    pending = [(e, n) for e in endpoints for n in expected]
    last: dict[tuple[Endpoint, str], int | None] = {}

    def cut_short() -> list[Mismatch]:
        why = "stopped" if stop.is_set() else "deadline"
        return [Mismatch(e, n, expected[n], last.get((e, n)), why) for e, n in pending]

    mismatches: list[Mismatch] = []
    delay = first_delay
    for attempt in range(1, attempts + 1):
        mismatches = []
        for endpoint, name in pending:
            left = end - time.monotonic()
            if stop.is_set() or left <= 0:
                return cut_short()
            got = _probe_once(probe, endpoint, name, min(timeout, left), stop, end)
            if got is None:
                return cut_short()
            served, error = got
            last[endpoint, name] = served
            if served != expected[name]:
                mismatches.append(Mismatch(endpoint, name, expected[name], served, error))
        if not mismatches:
            return []
        pending = [(m.endpoint, m.server_name) for m in mismatches]
        if attempt < attempts:
            pause = min(delay, end - time.monotonic())
            if sleep is not None:
                sleep(max(pause, 0.0))
            elif pause > 0:
                stop.wait(pause)
            if stop.is_set() or time.monotonic() >= end:
                return cut_short()
            delay *= 2
    return mismatches
