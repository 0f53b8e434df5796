"""A stand-in for mailcow's dockerapi, for the demo stack and the test world.

mailcow keeps the Docker socket inside its ``dockerapi-mailcow`` container; the certificate
daemon reaches it over HTTPS on the mailcow network. This server implements the part of that
contract a certificate daemon uses, written from mailcow's documented behaviour, by forwarding
to a Docker engine through the Docker SDK:

* ``GET /containers/json`` (``?all=true`` for stopped ones too): one JSON object keyed by the
  container Id, each value its ``docker inspect`` document;
* ``POST /containers/<id>/restart``;
* ``POST /containers/<id>/exec`` with ``{"cmd": "reload", "task": "postfix"|"dovecot"|"nginx"}``:
  runs ``postfix reload``, ``doveadm reload`` or ``nginx -s reload`` in the container.

Every answer is HTTP 200 with ``{"type": "success"|"danger", "msg": ...}`` (or the listing), as
the original. Like the original it has a self-signed certificate made at start and no
authentication. ``calls`` records ``(method, path)`` of every request; ``fail_reloads`` makes
every exec answer ``danger`` without running anything.

Run as a program (the demo's ``dockerapi`` service): ``python3 server.py [--port 443]``, with
the Docker engine at ``DOCKER_HOST`` or the mounted ``/var/run/docker.sock``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import ssl
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import docker
import docker.errors
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

RELOAD_TASKS: dict[str, list[str]] = {
    "postfix": ["postfix", "reload"],
    "dovecot": ["doveadm", "reload"],
    "nginx": ["nginx", "-s", "reload"],
}


def self_signed_context(name: str = "dockerapi") -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for ``name`` (as dockerapi makes
    at each start, so a client cannot pin it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context.load_cert_chain(cert_file, key_file)
    return context


class DockerapiServer:
    """mailcow's dockerapi contract on ``url``, forwarding to the engine at ``docker_host``."""

    def __init__(self, docker_host: str | None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.docker_host = docker_host
        self.host = host
        self.port = port
        self.calls: list[tuple[str, str]] = []
        self.fail_reloads = False
        self._lock = threading.Lock()
        self._client: Any = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL a client is given (``ACME_DOCKERAPI_URL``)."""
        if self._server is None:
            raise RuntimeError("DockerapiServer is not started")
        return f"https://{self.host}:{self._server.server_address[1]}"

    def start(self) -> None:
        """Connect to the engine and listen (in a thread) with a fresh certificate."""
        if self.docker_host:
            self._client = docker.DockerClient(base_url=self.docker_host, version="auto")
        else:
            self._client = docker.from_env(version="auto")
        context = self_signed_context()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: ``calls`` records the requests."""

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

        server = ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Serve until the process ends."""
        if self._thread is not None:
            self._thread.join()

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
                answer = self._dispatch(method, path, body)
            except docker.errors.NotFound:
                answer = {"type": "danger", "msg": "no container found"}
            except docker.errors.DockerException as exc:
                answer = {"type": "danger", "msg": str(exc)}
        if method == "POST":
            print(f"dockerapi: {method} {path} {body or ''} -> {answer}", file=sys.stderr)
        return answer

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


def main(argv: list[str] | None = None) -> int:
    """Serve mailcow's dockerapi contract on all addresses until killed."""
    parser = argparse.ArgumentParser(description="a stand-in for mailcow's dockerapi")
    parser.add_argument("--port", type=int, default=443)
    args = parser.parse_args(argv)
    server = DockerapiServer(None, host="0.0.0.0", port=args.port)  # noqa: S104 - a service
    server.start()
    print(f"dockerapi: listening on :{args.port}", file=sys.stderr, flush=True)
    server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
