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

from .proc import Child, free_port, require_binary, tcp_open, wait_for

_CONF = """\
user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    log_format hops '$server_port $host $request_uri $status';
    access_log {d}/access.log hops;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{http_port};
        server_name _;
        return 301 https://$host:{https_port}$request_uri;
    }}
    server {{
        listen 127.0.0.1:{https_port} ssl;
        server_name _;
        ssl_certificate {d}/tls.pem;
        ssl_certificate_key {d}/tls.key;
        location ^~ /.well-known/acme-challenge/ {{
            alias {webroot}/;
            default_type text/plain;
        }}
        location / {{ return 404; }}
    }}
}}
"""


class FrontProxy:
    """nginx in the foreground: the redirecting port and the HTTPS port serving ``webroot``."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path) -> None:
        binary = require_binary("nginx", "nginx-light")
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
        conf.write_text(
            _CONF.format(
                d=workdir,
                http_port=self.http_port,
                https_port=self.https_port,
                webroot=self.webroot,
            )
        )
        argv = [
            binary, "-c", str(conf), "-p", str(workdir),
            "-e", str(workdir / "error.log"), "-g", "daemon off;",
        ]  # fmt: skip
        self._child = Child("front-proxy", argv, workdir / "nginx.out", cwd=workdir)

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
