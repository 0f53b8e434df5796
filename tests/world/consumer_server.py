#!/usr/bin/python3
"""A TLS listener that uses the certificate volume like mailcow's Postfix, Dovecot and nginx.

Runs as PID 1 inside the consumer image (Debian's ``python3-minimal``, stdlib only) with the
volume mounted at ``/etc/ssl/mail``. At start it builds its SNI map the way mailcow's
containers do: the default pair ``cert.pem`` + ``key.pem``, and for every directory
``<dir>/`` holding ``domains``, ``cert.pem`` and ``key.pem`` each (whitespace-separated)
name in ``domains`` maps to that directory's pair. The default pair must exist at start
(mailcow's installer always creates one); otherwise the server exits with status 2.

SIGHUP is a reload: the cert/key files of the pairs known since start are read again and
served from then on, but no directory is added or dropped (only a restart rebuilds the map);
a pair that cannot be read keeps its old context. Every handled SIGHUP appends ``reload``
to ``/run/reloads``. ``/run/ready`` is touched once the socket listens; SIGTERM exits.
Every start, reload and map rebuild also appends ``start``, ``reload`` or ``postmap`` to
``/var/lib/consumer/events``, which is kept across restarts (the container's own layer).

``--sni-snapshot`` is mailcow's Postfix: at start it writes ``sni.map`` (one line per name:
name, key file, cert file) and copies the contents of those files into ``sni.map.db``, as
``postmap -F hash:/opt/postfix/conf/sni.map`` does; SNI answers come from the copies only.
A reload re-reads the default pair from the volume and the SNI pairs from the copies.
``--postmap`` (run by the image's ``postmap`` stand-in) copies the files named in
``sni.map`` again: renewed contents of the names known since start, never a new name; a
file that is gone fails it (exit 1), as with the real ``postmap``.

``--kind smtp``: ``220`` greeting, EHLO, ``STARTTLS``, ``QUIT``. ``--kind imap``: ``* OK``
greeting, ``<tag> STARTTLS``, ``LOGOUT``. ``--kind https``: TLS from the first byte, every
request is answered with ``200`` and the connection closed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import ssl
import sys
import threading
import time
from pathlib import Path
from types import FrameType

CERT_ROOT = Path("/etc/ssl/mail")
READY_FILE = Path("/run/ready")
RELOADS_FILE = Path("/run/reloads")
EVENTS_FILE = Path("/var/lib/consumer/events")
POSTFIX_CONF = Path("/opt/postfix/conf")
SNI_MAP = POSTFIX_CONF / "sni.map"
SNI_DB = POSTFIX_CONF / "sni.map.db"
LISTEN_BACKLOG = 128
CLIENT_TIMEOUT = 30.0
MAX_LINE = 8192
HTTP_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
    b"Connection: close\r\n\r\nok\n"
)


def log(message: str) -> None:
    """One line on stderr (``docker logs``)."""
    print(f"consumer: {message}", file=sys.stderr, flush=True)


def event(word: str) -> None:
    """Append ``word`` to the events file kept across restarts."""
    EVENTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    with EVENTS_FILE.open("a") as out:
        out.write(word + "\n")


def _copy(source: Path, target: Path) -> None:
    """Copy a file's contents, replacing ``target`` atomically."""
    staged = target.with_name(target.name + ".new")
    staged.write_bytes(source.read_bytes())
    staged.replace(target)


def write_sni_map(root: Path) -> None:
    """postfix.sh at start: ``sni.map`` for every certificate directory, then ``postmap -F``."""
    lines = []
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        if not all((directory / f).is_file() for f in ("domains", "cert.pem", "key.pem")):
            continue
        for name in (directory / "domains").read_text().split():
            lines.append(f"{name} {directory}/key.pem {directory}/cert.pem\n")
    POSTFIX_CONF.mkdir(parents=True, exist_ok=True)
    SNI_MAP.write_text("".join(lines))
    postmap()


def postmap() -> None:
    """``postmap -F``: copy the contents of every file ``sni.map`` names into ``sni.map.db``
    (raises OSError when one is gone)."""
    for line in SNI_MAP.read_text().splitlines():
        _, key, cert = line.split()
        copies = SNI_DB / Path(cert).parent.name
        copies.mkdir(parents=True, exist_ok=True)
        _copy(Path(key), copies / "key.pem")
        _copy(Path(cert), copies / "cert.pem")


class Pair:
    """One certificate/key pair on disk and the context last loaded from it; ``source`` is
    where its files are read (the volume, or the copies in ``sni.map.db``)."""

    def __init__(self, directory: Path, consumer: Consumer, source: Path | None = None) -> None:
        self.directory = directory
        self.source = source or directory
        self.consumer = consumer
        self.context = self.load()

    def load(self) -> ssl.SSLContext:
        """A fresh server context from the files (raises OSError/SSLError)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.source / "cert.pem", self.source / "key.pem")
        context.sni_callback = self.consumer.select
        return context

    def reload(self) -> None:
        """Re-read the files; keep serving the old context if they cannot be loaded."""
        try:
            self.context = self.load()
        except OSError as exc:
            log(f"reload of {self.directory}: {exc}; keeping the certificate loaded before")


class Consumer:
    """The SNI map built at start: a default pair and per-name pairs (served from copies made
    at start when ``snapshot``, like Postfix's ``sni.map.db``)."""

    def __init__(self, root: Path, snapshot: bool = False) -> None:
        self.root = root
        if snapshot:
            write_sni_map(root)
        self.default = Pair(root, self)
        self.by_name: dict[str, Pair] = {}
        self.pairs = [self.default]
        for directory in sorted(p for p in root.iterdir() if p.is_dir()):
            if not all((directory / f).is_file() for f in ("domains", "cert.pem", "key.pem")):
                continue
            try:
                pair = Pair(directory, self, SNI_DB / directory.name if snapshot else None)
                names = (directory / "domains").read_text().split()
            except OSError as exc:
                log(f"skipping {directory}: {exc}")
                continue
            self.pairs.append(pair)
            for name in names:
                self.by_name.setdefault(name.lower().rstrip("."), pair)
        log(f"SNI map: {sorted(self.by_name)}")

    def select(self, connection: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        """``sni_callback``: switch the connection to the pair of the requested name."""
        pair = self.by_name.get(server_name.lower().rstrip(".")) if server_name else None
        connection.context = (pair or self.default).context

    def reload(self) -> None:
        """Re-read the files of every known pair and record the reload."""
        for pair in self.pairs:
            pair.reload()
        with RELOADS_FILE.open("a") as out:
            out.write("reload\n")
        event("reload")
        log("reloaded")


class Connection:
    """A client socket with a line reader; ``starttls`` switches it to TLS."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def send(self, text: str) -> None:
        """Send ``text`` (CRLF line ends are the caller's)."""
        self.sock.sendall(text.encode())

    def line(self) -> str | None:
        """The next line without its line end, or None on EOF or an overlong line."""
        while b"\n" not in self.buffer:
            if len(self.buffer) > MAX_LINE:
                return None
            chunk = self.sock.recv(4096)
            if not chunk:
                return None
            self.buffer += chunk
        raw, _, self.buffer = self.buffer.partition(b"\n")
        return raw.decode("latin-1").rstrip("\r")

    def starttls(self, context: ssl.SSLContext) -> None:
        """Handshake as server; plaintext pipelined after STARTTLS is dropped."""
        self.buffer = b""
        self.sock = context.wrap_socket(self.sock, server_side=True)


def serve_smtp(conn: Connection, consumer: Consumer, host: str) -> None:
    """A Postfix-like STARTTLS dialogue."""
    conn.send(f"220 {host} ESMTP\r\n")
    tls = False
    while (line := conn.line()) is not None:
        verb = line.split(" ", 1)[0].upper()
        if verb in ("EHLO", "HELO"):
            conn.send(f"250 {host}\r\n" if tls else f"250-{host}\r\n250 STARTTLS\r\n")
        elif verb == "STARTTLS" and not tls:
            conn.send("220 ready\r\n")
            conn.starttls(consumer.default.context)
            tls = True
        elif verb == "NOOP":
            conn.send("250 OK\r\n")
        elif verb == "QUIT":
            conn.send("221 Bye\r\n")
            return
        else:
            conn.send("502 command not implemented\r\n")


def serve_imap(conn: Connection, consumer: Consumer) -> None:
    """A Dovecot-like STARTTLS dialogue."""
    conn.send("* OK ready\r\n")
    tls = False
    while (line := conn.line()) is not None:
        tag, _, rest = line.partition(" ")
        command = rest.split(" ", 1)[0].upper()
        if command == "CAPABILITY":
            extra = "" if tls else " STARTTLS"
            conn.send(f"* CAPABILITY IMAP4rev1{extra}\r\n{tag} OK done\r\n")
        elif command == "STARTTLS" and not tls:
            conn.send(f"{tag} OK Begin TLS\r\n")
            conn.starttls(consumer.default.context)
            tls = True
        elif command == "NOOP":
            conn.send(f"{tag} OK done\r\n")
        elif command == "LOGOUT":
            conn.send(f"* BYE\r\n{tag} OK done\r\n")
            return
        else:
            conn.send(f"{tag} BAD unknown command\r\n")


def serve_https(conn: Connection, consumer: Consumer) -> None:
    """Direct TLS; any request head gets a small 200 response."""
    conn.starttls(consumer.default.context)
    while b"\r\n\r\n" not in conn.buffer and len(conn.buffer) < MAX_LINE * 8:
        chunk = conn.sock.recv(4096)
        if not chunk:
            return
        conn.buffer += chunk
    conn.sock.sendall(HTTP_RESPONSE)


def handle(kind: str, consumer: Consumer, sock: socket.socket, host: str) -> None:
    """Serve one client; any socket or TLS error just ends the connection."""
    sock.settimeout(CLIENT_TIMEOUT)
    conn = Connection(sock)
    try:
        if kind == "smtp":
            serve_smtp(conn, consumer, host)
        elif kind == "imap":
            serve_imap(conn, consumer)
        else:
            serve_https(conn, consumer)
    except OSError as exc:  # includes ssl.SSLError and timeouts
        log(f"{kind} client: {exc!r}")
    finally:
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_RDWR)
        conn.sock.close()


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build the SNI map, listen and serve forever."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kind", choices=("smtp", "imap", "https"))
    parser.add_argument("--port", type=int)
    parser.add_argument("--certs", type=Path, default=CERT_ROOT)
    parser.add_argument("--sni-snapshot", action="store_true", help="Postfix's sni.map.db")
    parser.add_argument("--postmap", action="store_true", help="rebuild sni.map.db and exit")
    args = parser.parse_args(argv)
    if args.postmap:
        try:
            postmap()
        except (OSError, ValueError) as exc:
            print(f"postmap: fatal: {exc}", file=sys.stderr)
            return 1
        event("postmap")
        return 0
    if args.kind is None or args.port is None:
        parser.error("--kind and --port are required")
    kind: str = args.kind
    event("start")
    try:
        consumer = Consumer(args.certs, snapshot=args.sni_snapshot)
    except OSError as exc:
        log(f"cannot load the default certificate from {args.certs}: {exc}")
        return 2

    # The handler only writes a byte to a pipe (no locks in signal context); a thread does
    # one reload per byte, so a SIGHUP landing inside a print of the main thread is harmless.
    # (``queue`` is not in python3-minimal: only modules of libpython3.11-minimal are here.)
    wake_read, wake_write = os.pipe()

    def reloader() -> None:
        while os.read(wake_read, 1):
            consumer.reload()

    def on_hup(_signum: int, _frame: FrameType | None) -> None:
        os.write(wake_write, b"h")

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        os._exit(0)

    threading.Thread(target=reloader, name="reloader", daemon=True).start()
    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, on_term)
    host = socket.gethostname()
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", args.port))
    server.listen(LISTEN_BACKLOG)
    READY_FILE.touch()
    log(f"{kind} listening on 127.0.0.1:{args.port}")
    while True:
        try:
            sock, _ = server.accept()
        except OSError as exc:  # e.g. EMFILE under a flood: keep accepting
            log(f"accept: {exc}")
            time.sleep(0.05)
            continue
        threading.Thread(target=handle, args=(kind, consumer, sock, host), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
