"""Verify: does each service now serve the certificate we just wrote?

Connects like a client (SMTP STARTTLS, IMAP STARTTLS, or direct TLS for HTTPS) with SNI for
each certificate's first name, and compares the served serial with the stored one. May touch:
the network (the consumers' TLS ports) only.
"""

from __future__ import annotations

import socket
import ssl
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


def _read_line(sock: ssl.SSLSocket | socket.socket, limit: int = 4096) -> bytes:
    data = b""
    while not data.endswith(b"\n") and len(data) < limit:
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def _smtp_starttls(sock: socket.socket) -> None:
    while True:  # greeting, possibly multi-line
        line = _read_line(sock)
        if not line.startswith(b"220-"):
            break
    sock.sendall(b"EHLO acme-sidecar\r\n")
    while True:
        line = _read_line(sock)
        if not line or line[3:4] != b"-":
            break
    sock.sendall(b"STARTTLS\r\n")
    if not _read_line(sock).startswith(b"220"):
        raise OSError("the server refused STARTTLS")


def _imap_starttls(sock: socket.socket) -> None:
    _read_line(sock)
    sock.sendall(b"a1 STARTTLS\r\n")
    while True:
        line = _read_line(sock)
        if not line or line.startswith(b"a1 "):
            break
    if not line.startswith(b"a1 OK"):
        raise OSError("the server refused STARTTLS")


def served_serial(endpoint: Endpoint, server_name: str, timeout: float = 5.0) -> int:
    """The serial of the certificate ``endpoint`` presents for ``server_name``."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # we compare serials; trust is the CA's business
    with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as raw:
        if endpoint.kind == "smtp":
            _smtp_starttls(raw)
        elif endpoint.kind == "imap":
            _imap_starttls(raw)
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
    if der is None:
        raise OSError("no certificate presented")
    return x509.load_der_x509_certificate(der).serial_number


def check_served(
    endpoints: Sequence[Endpoint],
    expected: Mapping[str, int],
    *,
    attempts: int = 5,
    first_delay: float = 0.5,
    probe: Callable[[Endpoint, str], int] = served_serial,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Mismatch]:
    """Check every (endpoint, name) pair, retrying the failing ones with growing pauses."""
    pending = [(e, n) for e in endpoints for n in expected]
    mismatches: list[Mismatch] = []
    delay = first_delay
    for attempt in range(1, attempts + 1):
        mismatches = []
        for endpoint, name in pending:
            try:
                served: int | None = probe(endpoint, name)
                error = ""
            except (OSError, ssl.SSLError, ValueError) as exc:
                served, error = None, f"{type(exc).__name__}: {exc}"
            if served != expected[name]:
                mismatches.append(Mismatch(endpoint, name, expected[name], served, error))
        if not mismatches:
            return []
        pending = [(m.endpoint, m.server_name) for m in mismatches]
        if attempt < attempts:
            sleep(delay)
            delay *= 2
    return mismatches
