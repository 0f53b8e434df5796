"""A stand-in for mailcow's dockerapi: HTTPS on 127.0.0.1 in front of the world's dockerd.

It implements the part of dockerapi's contract a certificate daemon uses (see
``/work/shared/reference/mailcow-dockerapi.md``) by forwarding to the real private dockerd
through the Docker SDK:

* ``GET /containers/json`` (``?all=true`` for stopped ones too): one JSON object keyed by the
  container Id, each value its ``docker inspect`` document;
* ``POST /containers/<id>/restart``;
* ``POST /containers/<id>/exec`` with ``{"cmd": "reload", "task": "postfix"|"dovecot"|"nginx"}``:
  runs ``postfix reload``, ``doveadm reload`` or ``nginx -s reload`` in the container.

Every answer is HTTP 200 with ``{"type": "success"|"danger", "msg": ...}`` (or the listing), like
the original. Like the original it has a self-signed certificate made at start and no
authentication. ``calls`` records ``(method, path)`` of every request; ``fail_reloads`` makes
every exec answer ``danger`` without running anything.
"""

from __future__ import annotations

import json
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import docker.errors

from .tls import make_server_cert

RELOAD_TASKS: dict[str, list[str]] = {
    "postfix": ["postfix", "reload"],
    "dovecot": ["doveadm", "reload"],
    "nginx": ["nginx", "-s", "reload"],
}


class DockerapiServer:
    """mailcow's dockerapi contract on ``url`` (``https://127.0.0.1:PORT``)."""

    def __init__(self, docker_host: str) -> None:
        self.docker_host = docker_host
        self.calls: list[tuple[str, str]] = []
        self.fail_reloads = False
        self._lock = threading.Lock()
        self._client: Any = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL the sidecar is given as ``ACME_DOCKERAPI_URL``."""
        if self._server is None:
            raise RuntimeError("DockerapiServer is not started")
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        """Make a self-signed certificate, connect to dockerd and listen on a free port."""
        self._client = docker.DockerClient(base_url=self.docker_host, version="auto")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory() as tmp:
            cert = make_server_cert(Path(tmp), "dockerapi")
            context.load_cert_chain(cert.cert, cert.key)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test reads ``calls`` instead."""

            def do_GET(self) -> None:
                self._answer(owner.handle("GET", self.path, None))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                self._answer(owner.handle("POST", self.path, body))

            def _answer(self, answer: Any) -> None:
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and close the Docker client."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def posts(self, action: str) -> list[str]:
        """Container ids that got ``POST /containers/<id>/<action>``, in order."""
        out = []
        for method, path in self.calls:
            parts = path.split("/")
            if method == "POST" and len(parts) == 4 and parts[3] == action:
                out.append(parts[2])
        return out

    def handle(self, method: str, path: str, body: Any) -> Any:
        """The JSON answer to one request."""
        with self._lock:
            self.calls.append((method, path))
            try:
                return self._dispatch(method, path, body)
            except docker.errors.NotFound:
                return {"type": "danger", "msg": "no container found"}
            except docker.errors.DockerException as exc:
                return {"type": "danger", "msg": str(exc)}

    def _dispatch(self, method: str, path: str, body: Any) -> Any:
        route, _, query = path.partition("?")
        parts = route.strip("/").split("/")
        if method == "GET" and parts == ["containers", "json"]:
            listing = self._client.api.containers(all="all=true" in query.lower())
            return {c["Id"]: self._client.api.inspect_container(c["Id"]) for c in listing}
        if method != "POST" or len(parts) != 3 or parts[0] != "containers":
            return {"type": "danger", "msg": "container_post - unknown api call"}
        cid, action = parts[1], parts[2]
        if not cid.isalnum():
            return {"type": "danger", "msg": "invalid container id or missing action"}
        if action == "restart":
            self._client.api.restart(cid)
            return {"type": "success", "msg": "command completed successfully"}
        fields = body if isinstance(body, dict) else {}
        task = fields.get("task")
        if action != "exec" or fields.get("cmd") != "reload" or task not in RELOAD_TASKS:
            return {"type": "danger", "msg": "container_post - unknown api call"}
        if self.fail_reloads:
            return {"type": "danger", "msg": f"{task} reload failed (fail_reloads)"}
        code, output = self._client.containers.get(cid).exec_run(RELOAD_TASKS[task])
        if code == 0:
            return {"type": "success", "msg": "command completed successfully"}
        return {"type": "danger", "msg": output.decode(errors="replace")}
