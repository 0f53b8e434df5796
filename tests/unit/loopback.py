"""Misbehaving loopback HTTP servers for the bounded-network tests, and the counters they check.

``Loopback(respond)`` listens on 127.0.0.1 (over TLS with ``tls=``), runs ``respond(server,
conn)`` per connection in its own thread, and sets ``closed`` when a client went away. The
answers: ``hang`` (accepts, reads the request, never answers), ``drip_body`` and ``drip_head``
(one byte every ``STEP`` seconds, 10 s for the 100-byte body; ``sent`` counts them), ``huge``
(a 100 MiB body), ``replies`` (one answer per request on a kept-alive connection).
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HUGE = 100 * 1024 * 1024
STEP = 0.1  # seconds between dripped bytes: each read is quick, the whole never ends
Respond = Callable[["Loopback", socket.socket], None]


class Loopback:
    """A loopback TCP server; ``respond(server, conn)`` runs per connection in its own thread."""

    def __init__(self, respond: Respond, *, tls: ssl.SSLContext | None = None) -> None:
        self.respond = respond
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sent = 0  # body bytes written before the client went away
        self.connections = 0
        self.closed = threading.Event()  # a client closed its connection
        self.gone = 0  # connections the client closed
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def __enter__(self) -> Loopback:
        self._spawn(self._accept)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (close alone does not)
        self.listener.close()
        for thread in self._threads:
            thread.join(5)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            self._spawn(self._serve, conn)

    def _serve(self, raw: socket.socket) -> None:
        with raw, contextlib.suppress(OSError):
            conn = self.tls.wrap_socket(raw, server_side=True) if self.tls else raw
            try:
                self.respond(self, conn)
            except OSError:  # the client shut its socket: what the bounded clients do
                self._gone()

    def _gone(self) -> None:
        with self._lock:
            self.gone += 1
        self.closed.set()

    def wait_gone(self, conn: socket.socket) -> None:
        """Block until the client closes ``conn`` (then count it) or the test ends."""
        conn.settimeout(STEP)
        while not self.stop.is_set():
            try:
                if not conn.recv(4096):
                    break
            except TimeoutError:
                continue
        else:
            return
        self._gone()

    def drip(self, conn: socket.socket, byte: bytes = b" ") -> None:
        """Send ``byte`` every STEP seconds until the client goes or the test ends."""
        while not self.stop.wait(STEP):
            conn.sendall(byte)
            self.sent += len(byte)


def request_of(conn: socket.socket) -> bytes:
    """The request head and its body (by Content-Length); b"" when the client closed."""
    conn.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(65536)
    return head


def hang(server: Loopback, conn: socket.socket) -> None:
    request_of(conn)
    server.wait_gone(conn)


def drip_body(server: Loopback, conn: socket.socket) -> None:
    request_of(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
    conn.sendall(b"Content-Length: 100\r\n\r\n")
    server.drip(conn)


def drip_head(server: Loopback, conn: socket.socket) -> None:
    request_of(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    server.drip(conn, b"a")


def huge(content_type: str = "application/json", size: int = HUGE) -> Respond:
    """An answer of ``size`` bytes of ``content_type``, sent as fast as the client reads."""

    def respond(server: Loopback, conn: socket.socket) -> None:
        request_of(conn)
        head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {size}\r\n\r\n"
        conn.sendall(head.encode())
        chunk = b" " * 65536
        while server.sent < size:
            conn.sendall(chunk[: size - server.sent])
            server.sent += min(len(chunk), size - server.sent)
        server.wait_gone(conn)

    return respond


def reply(body: bytes, content_type: str = "application/json", status: str = "200 OK") -> bytes:
    """One kept-alive HTTP answer."""
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


def replies(*answers: bytes | Respond) -> Respond:
    """On one kept-alive connection, the n-th request gets the n-th answer (bytes, or a
    respond function that takes the connection over from there)."""

    def respond(server: Loopback, conn: socket.socket) -> None:
        for answer in answers:
            if isinstance(answer, bytes):
                if not request_of(conn):
                    break
                conn.sendall(answer)
            else:
                answer(server, conn)
                return
        server.wait_gone(conn)

    return respond


def open_sockets() -> int:
    """How many sockets this process holds open (``/proc/self/fd`` links to ``socket:``)."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            count += str(fd.readlink()).startswith("socket:")
    return count


def settled(before: tuple[int, int], wait: threading.Event) -> tuple[int, int]:
    """(threads, sockets) once ``wait`` is set and neither count is above ``before``, or
    after 5 s of waiting for that: what the caller compares with ``before``. (Below is
    fine: an earlier test's leftovers may end meanwhile.)"""
    wait.wait(5)
    now = counts()
    for _ in range(50):
        if not above(now, before):
            break
        threading.Event().wait(0.1)
        now = counts()
    return now


def above(now: tuple[int, int], before: tuple[int, int]) -> bool:
    """Whether there are more threads or more sockets ``now`` than ``before``."""
    return now[0] > before[0] or now[1] > before[1]


def counts() -> tuple[int, int]:
    """(threads, sockets) of this process now, after a garbage collection; the threads leave
    out the one deadline thread every watchdog shares (``adapters.bounded``), which lives as
    long as the process."""
    gc.collect()
    threads = sum(1 for t in threading.enumerate() if t.name != "bounded-deadlines")
    return threads, open_sockets()


def tls_server(tmp: Path, names: Sequence[str] = ("127.0.0.1",)) -> tuple[ssl.SSLContext, Path]:
    """A server TLS context with a self-signed certificate for 127.0.0.1, and the path of
    that certificate (the clients' CA bundle)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(n)) for n in names]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "loopback.pem", tmp / "loopback.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path
