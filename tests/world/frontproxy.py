"""A reverse proxy as mailcow's docs set it up: port "80" redirects everything to HTTPS.

One nginx on 127.0.0.1 with two servers: ``http_port`` answers every request with
``301 https://$host:<https_port>$request_uri`` (mailcow's r_p-nginx example, with the port the
test world uses instead of 443), and ``https_port`` serves ``webroot`` as
``/.well-known/acme-challenge/`` with a throwaway self-signed certificate for another name, which
nobody trusts: the CA and the self-check must follow the redirect without verifying it.
"""

from __future__ import annotations

from pathlib import Path

from tests.certs import key_pem, make_cert, new_key

from .proc import free_port, tcp_open, wait_for
from .web import challenge, nginx_child, nginx_conf


class FrontProxy:
    """nginx in the foreground: the redirecting port and the HTTPS port serving ``webroot``."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path) -> None:
        (workdir / "tmp").mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.webroot = workdir / "webroot"
        self.webroot.mkdir()
        self.http_port = free_port()
        self.https_port = free_port()
        key = new_key()
        (workdir / "tls.key").write_bytes(key_pem(key))
        (workdir / "tls.pem").write_bytes(make_cert(key, ["front-proxy.invalid"], days=1))
        conf = workdir / "nginx.conf"
        servers = (
            f"    server {{\n        listen 127.0.0.1:{self.http_port};\n        server_name _;\n"
            f"        return 301 https://$host:{self.https_port}$request_uri;\n    }}\n"
            f"    server {{\n        listen 127.0.0.1:{self.https_port} ssl;\n"
            f"        server_name _;\n        ssl_certificate {workdir}/tls.pem;\n"
            f"        ssl_certificate_key {workdir}/tls.key;\n{challenge(self.webroot)}    }}\n"
        )
        conf.write_text(nginx_conf(workdir, servers, "$server_port $host $request_uri $status"))
        self._child = nginx_child("front-proxy", workdir, conf)

    def start(self) -> None:
        """Start nginx and wait until both ports accept connections."""
        self._child.start()
        wait_for(
            lambda: tcp_open(self.http_port) and tcp_open(self.https_port),
            "front proxy",
            self._child,
        )

    def stop(self) -> None:
        """Stop nginx."""
        self._child.stop()

    def hops(self) -> list[tuple[int, str, str, int]]:
        """Every request so far: (port, Host, path, status), from the access log."""
        log = self.workdir / "access.log"
        lines = log.read_text().splitlines() if log.exists() else []
        out = []
        for line in lines:
            port, host, path, status = line.split(" ")
            out.append((int(port), host, path, int(status)))
        return out
