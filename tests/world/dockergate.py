"""A gate in front of a Docker API: TCP on 127.0.0.1 forwarding to dockerd's unix socket.

Use ``docker_host`` (``tcp://127.0.0.1:PORT``) as a client's ``DOCKER_HOST``; the gate can then
fake the Docker API's outages while the client keeps running:

* ``refuse()``: nothing listens on the port any more (connection refused), as when dockerd is
  down; open connections are cut;
* ``black_hole()``: connections are accepted and never answered (nothing is read, nothing is
  sent), as when dockerd hangs; the client waits for its own timeout;
* ``restore()``: pass everything through again; connections held by the black hole are closed
  (like a dockerd restart), the port listens again if it was closed.

Bytes are copied both ways as they are, half-closes passed on, so hijacked connections
(``exec`` with ``Upgrade: tcp``) work too.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from pathlib import Path

from .proc import free_port

_CHUNK = 65536


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class DockerGate:
    """TCP on ``127.0.0.1:port`` in front of the unix socket ``upstream``."""

    host = "127.0.0.1"

    def __init__(self, upstream: Path) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.docker_host = f"tcp://{self.host}:{self.port}"
        self.mode = "pass"
        self.accepted = 0
        self.held = 0  # connections the black hole swallowed, in all
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._holding: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    # --- control ----------------------------------------------------------------------------

    def start(self) -> None:
        """Listen and pass everything through."""
        self.mode = "pass"
        self._listen()

    def refuse(self) -> None:
        """Stop listening (connection refused) and cut every open connection."""
        self.mode = "refuse"
        self._unlisten()
        self._cut_all()

    def black_hole(self) -> None:
        """Accept new connections and never answer them (open connections are cut)."""
        self.mode = "black_hole"
        self._cut_all()
        if self._listener is None:
            self._listen()

    def restore(self) -> None:
        """Pass everything through again; what the black hole held is closed."""
        self._cut_all()
        self.mode = "pass"
        if self._listener is None:
            self._listen()

    def stop(self) -> None:
        """Close the port and every connection."""
        self.mode = "refuse"
        self._unlisten()
        self._cut_all()

    # --- serving ----------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        self._listener = listener
        self._closing = threading.Event()
        self._thread = threading.Thread(
            target=self._accept_loop, args=(listener, self._closing), name="dockergate", daemon=True
        )
        self._thread.start()

    def _unlisten(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        listener.close()

    def _cut_all(self) -> None:
        with self._lock:
            doomed = [*self._open, *self._holding]
            self._open.clear()
            self._holding.clear()
        for sock in doomed:
            _close(sock)

    def _accept_loop(self, listener: socket.socket, closing: threading.Event) -> None:
        while not closing.is_set():
            ready, _, _ = select.select([listener], [], [], 0.05)
            if not ready:
                continue
            try:
                client, _ = listener.accept()
            except OSError:
                continue
            self.accepted += 1
            if self.mode == "black_hole":
                with self._lock:
                    self._holding.append(client)
                    self.held += 1
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(str(self.upstream))
        except OSError:
            _close(client)
            _close(upstream)
            return
        with self._lock:
            self._open.update((client, upstream))
        done = threading.Barrier(2, action=lambda: self._forget(client, upstream))
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._copy, args=(src, dst, done), daemon=True).start()

    def _forget(self, *socks: socket.socket) -> None:
        with self._lock:
            self._open.difference_update(socks)
        for sock in socks:
            _close(sock)

    @staticmethod
    def _copy(src: socket.socket, dst: socket.socket, done: threading.Barrier) -> None:
        try:
            while data := src.recv(_CHUNK):
                dst.sendall(data)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
        except OSError:
            _close(src)
            _close(dst)
        finally:
            with contextlib.suppress(threading.BrokenBarrierError):
                done.wait(timeout=600)
