"""A client for the TLS consumers: which certificate does a server present for a name?

``served_certificate`` speaks just enough SMTP or IMAP to reach STARTTLS (or starts TLS at
once for ``https``), sends ``server_name`` as SNI (none when it is None), finishes the
dialogue politely and returns the peer certificate, without verifying it.
"""

from __future__ import annotations

import socket
import ssl

from cryptography import x509

KINDS = ("smtp", "imap", "https")


class _Lines:
    """A line reader over a plain socket that never reads past a line end it needs."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def line(self) -> str:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"server closed the connection; got {self.buffer!r}")
            self.buffer += chunk
        raw, _, self.buffer = self.buffer.partition(b"\n")
        return raw.decode("latin-1").rstrip("\r")

    def smtp_reply(self) -> tuple[int, list[str]]:
        lines = [self.line()]
        while len(lines[-1]) > 3 and lines[-1][3] == "-":
            lines.append(self.line())
        return int(lines[-1][:3]), lines

    def expect(self, prefix: str) -> str:
        line = self.line()
        if not line.startswith(prefix):
            raise ConnectionError(f"expected {prefix!r}, server said {line!r}")
        return line


def _client_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # we want whatever is served, valid or not
    return context


def _peer(sock: ssl.SSLSocket) -> x509.Certificate:
    der = sock.getpeercert(binary_form=True)
    if der is None:
        raise ConnectionError("server presented no certificate")
    return x509.load_der_x509_certificate(der)


def _smtp(sock: socket.socket, server_name: str | None) -> x509.Certificate:
    plain = _Lines(sock)
    if plain.smtp_reply()[0] != 220:
        raise ConnectionError("no SMTP greeting")
    sock.sendall(b"EHLO probe.test\r\n")
    code, lines = plain.smtp_reply()
    if code != 250 or not any(line[4:].upper().startswith("STARTTLS") for line in lines):
        raise ConnectionError(f"no STARTTLS offered: {lines}")
    sock.sendall(b"STARTTLS\r\n")
    if plain.smtp_reply()[0] != 220:
        raise ConnectionError("STARTTLS refused")
    with _client_context().wrap_socket(sock, server_hostname=server_name) as tls:
        cert = _peer(tls)
        tls.sendall(b"QUIT\r\n")
        if _Lines(tls).smtp_reply()[0] != 221:
            raise ConnectionError("QUIT over TLS was not answered with 221")
    return cert


def _imap(sock: socket.socket, server_name: str | None) -> x509.Certificate:
    plain = _Lines(sock)
    plain.expect("* OK")
    sock.sendall(b"a1 STARTTLS\r\n")
    plain.expect("a1 OK")
    with _client_context().wrap_socket(sock, server_hostname=server_name) as tls:
        cert = _peer(tls)
        tls.sendall(b"a2 LOGOUT\r\n")
        lines = _Lines(tls)
        lines.expect("* BYE")
        lines.expect("a2 OK")
    return cert


def _https(sock: socket.socket, server_name: str | None) -> x509.Certificate:
    with _client_context().wrap_socket(sock, server_hostname=server_name) as tls:
        cert = _peer(tls)
        host = server_name or "localhost"
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        _Lines(tls).expect("HTTP/1.1 200")
    return cert


def served_certificate(
    kind: str, port: int, server_name: str | None, host: str = "127.0.0.1", timeout: float = 10.0
) -> x509.Certificate:
    """The certificate the ``kind`` server on ``host:port`` presents for SNI ``server_name``."""
    dialogues = {"smtp": _smtp, "imap": _imap, "https": _https}
    if kind not in dialogues:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    with socket.create_connection((host, port), timeout=timeout) as sock:
        return dialogues[kind](sock, server_name)


def served_serial(
    kind: str, port: int, server_name: str | None, host: str = "127.0.0.1", timeout: float = 10.0
) -> int:
    """The serial number of the certificate served for ``server_name`` (see above)."""
    return served_certificate(kind, port, server_name, host, timeout).serial_number
