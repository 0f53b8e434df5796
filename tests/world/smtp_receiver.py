"""A minimal receiving SMTP server with STARTTLS, serving a certificate volume's top-level pair.

It stands in for mailcow's Postfix on the receiving side of the DANE world: ``220`` greeting,
EHLO (advertising STARTTLS), STARTTLS, then EHLO/MAIL/RCPT/DATA/RSET/NOOP/QUIT; each message
taken is kept in ``messages`` (its envelope and body). The pair (``cert.pem`` with its chain,
``key.pem``) is read at every connection, so a certificate the sidecar deploys is served from the
next connection on. One thread per connection; touches only its loopback socket and reads the
pair.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .proc import free_port

GREETING_NAME = "mail.example.test"


@dataclass(frozen=True)
class Message:
    """One message taken: envelope sender, recipients and the body's text."""

    sender: str
    recipients: tuple[str, ...]
    body: str


class SmtpReceiver:
    """``start``/``stop``; listens on 127.0.0.1 at ``port``; serves ``pair_dir``'s pair."""

    host = "127.0.0.1"

    def __init__(self, pair_dir: Path) -> None:
        self.pair_dir = pair_dir
        self.port = free_port()
        self.messages: list[Message] = []
        self.handshakes = 0
        self._sock: socket.socket | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        """Listen and accept connections in a background thread."""
        sock = socket.create_server((self.host, self.port))
        sock.settimeout(0.2)
        self._sock = sock
        threading.Thread(target=self._accept, name="smtp-receiver", daemon=True).start()

    def stop(self) -> None:
        """Stop accepting connections."""
        self._stop.set()
        if self._sock is not None:
            self._sock.close()

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _context(self) -> ssl.SSLContext:
        """The pair as it is now. Between the sidecar's writes of ``key.pem`` and ``cert.pem``
        the two may not belong together; mailcow's Postfix never serves such a pair (it reads
        the files at the reload after the deploy), so it is read again until they do."""
        for _ in range(40):
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                context.load_cert_chain(self.pair_dir / "cert.pem", self.pair_dir / "key.pem")
            except ssl.SSLError:  # key values mismatch: a deploy under way
                time.sleep(0.05)
                continue
            return context
        raise ssl.SSLError(f"{self.pair_dir}: cert.pem and key.pem do not belong together")

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        stream: socket.socket = conn
        try:
            reader = stream.makefile("rb")
            self._send(stream, f"220 {GREETING_NAME} ESMTP test receiver")
            sender, tls = "", False
            recipients: list[str] = []
            while line := reader.readline(8192):
                verb = line.decode(errors="replace").strip()
                upper = verb.upper()
                if upper.startswith(("EHLO", "HELO")):
                    extra = [] if tls else ["250-STARTTLS"]
                    self._send(stream, f"250-{GREETING_NAME}", *extra, "250 8BITMIME")
                elif upper == "STARTTLS" and not tls:
                    self._send(stream, "220 go ahead")
                    stream = self._context().wrap_socket(stream, server_side=True)
                    self.handshakes += 1
                    reader, tls = stream.makefile("rb"), True
                elif upper.startswith("MAIL FROM:"):
                    sender, recipients = verb[10:].strip(), []
                    self._send(stream, "250 ok")
                elif upper.startswith("RCPT TO:"):
                    recipients.append(verb[8:].strip())
                    self._send(stream, "250 ok")
                elif upper == "DATA":
                    self._send(stream, "354 end with .")
                    body = self._data(reader)
                    self.messages.append(Message(sender, tuple(recipients), body))
                    self._send(stream, f"250 ok queued as {len(self.messages)}")
                elif upper == "QUIT":
                    self._send(stream, "221 bye")
                    return
                elif upper in ("RSET", "NOOP"):
                    self._send(stream, "250 ok")
                else:
                    self._send(stream, "502 not implemented")
        except (OSError, ssl.SSLError):
            return
        finally:
            stream.close()

    @staticmethod
    def _data(reader: BinaryIO) -> str:
        lines = []
        while True:
            line = reader.readline(65536)
            if not line or line.rstrip(b"\r\n") == b".":
                break
            lines.append(line.decode(errors="replace"))
        return "".join(lines)

    @staticmethod
    def _send(stream: socket.socket, *lines: str) -> None:
        stream.sendall("".join(f"{line}\r\n" for line in lines).encode())
