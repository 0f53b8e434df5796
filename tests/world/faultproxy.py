"""A misbehaving CA: a TLS-terminating reverse proxy in front of Pebble that answers some or
all requests with HTTP 500 and an ``application/problem+json`` ``serverInternal`` problem.

The proxy keeps the client's ``Host`` header, so Pebble builds every URL it hands out
(directory, orders, authorizations) with the proxy's address and the client stays behind the
proxy for the whole flow. ``fail_rate`` (0.0 to 1.0) can be changed while it runs; the choice
of which requests fail is seeded, so a run is repeatable. ``rewrite_chain``, when set, replaces
every certificate chain Pebble sends (``application/pem-certificate-chain``) by what it returns.
"""

from __future__ import annotations

import http.client
import json
import random
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .proc import free_port
from .tls import make_server_cert

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade"}


class FaultProxy:
    """HTTPS on 127.0.0.1 forwarding to ``upstream_port`` (Pebble) unless a fault is due."""

    host = "127.0.0.1"

    def __init__(
        self, workdir: Path, upstream_port: int, upstream_ca: Path, fail_rate: float = 0.0
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        tls = make_server_cert(workdir, "fault proxy")
        self.ca_bundle = tls.ca_cert
        self.port = free_port()
        self.fail_rate = fail_rate
        self.forwarded = 0
        self.failed = 0
        self.seen: list[tuple[str, str]] = []
        self.rewrite_chain: Callable[[bytes], bytes] | None = None
        self.rewritten = 0
        self._upstream = (self.host, upstream_port)
        self._upstream_tls = ssl.create_default_context(cafile=str(upstream_ca))
        self._random = random.Random(7)  # noqa: S311  # which requests fail, not a secret
        self._lock = threading.Lock()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert, tls.key)
        self._server = ThreadingHTTPServer((self.host, self.port), self._handler_class())
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread: threading.Thread | None = None

    def directory_url(self, path: str = "/dir") -> str:
        """The URL of Pebble's ``path`` as seen through the proxy."""
        return f"https://{self.host}:{self.port}{path}"

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="faultproxy", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _fault_due(self, method: str, path: str) -> bool:
        with self._lock:
            self.seen.append((method, path))
            due = self.fail_rate >= 1.0 or self._random.random() < self.fail_rate
            if due:
                self.failed += 1
            else:
                self.forwarded += 1
            return due

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPSConnection(*self._upstream, context=self._upstream_tls, timeout=30)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def _rewritten(self, headers: list[tuple[str, str]], data: bytes) -> bytes:
        """``data``, or what ``rewrite_chain`` makes of it when it is a certificate chain."""
        kind = next((v for k, v in headers if k.lower() == "content-type"), "")
        rewrite = self.rewrite_chain
        if rewrite is None or not kind.startswith("application/pem-certificate-chain"):
            return data
        with self._lock:
            self.rewritten += 1
        return rewrite(data)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                return None

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy._fault_due(self.command, self.path):
                    problem = {
                        "type": "urn:ietf:params:acme:error:serverInternal",
                        "detail": "fault proxy: injected server error",
                        "status": 500,
                    }
                    self._reply(500, [("Content-Type", "application/problem+json")], problem)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                try:
                    status, upstream_headers, data = proxy._forward(
                        self.command, self.path, headers, body
                    )
                except OSError as exc:
                    self._reply(502, [("Content-Type", "text/plain")], f"upstream: {exc}".encode())
                    return
                kept = [(k, v) for k, v in upstream_headers if k.lower() not in _HOP_BY_HOP]
                self._reply(status, kept, proxy._rewritten(kept, data))

            def _reply(
                self, status: int, headers: list[tuple[str, str]], body: bytes | object
            ) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_HEAD = _serve

        return Handler
