"""nginx serving a private webroot as ``/.well-known/acme-challenge/`` on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

from .proc import Child, free_port, require_binary, tcp_open, wait_for

_CONF = """\
user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        server_name _;
        location ^~ /.well-known/acme-challenge/ {{
            alias {webroot}/;
            default_type text/plain;
        }}
        location / {{ return 404; }}
    }}
}}
"""


class Nginx:
    """nginx in the foreground; files written to ``webroot`` appear under the challenge path."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path) -> None:
        binary = require_binary("nginx", "nginx-light")
        (workdir / "tmp").mkdir(parents=True, exist_ok=True)
        self.webroot = workdir / "webroot"
        self.webroot.mkdir()
        self.port = free_port()
        self.url = f"http://{self.host}:{self.port}/.well-known/acme-challenge/"
        conf = workdir / "nginx.conf"
        conf.write_text(_CONF.format(d=workdir, port=self.port, webroot=self.webroot))
        argv = [
            binary, "-c", str(conf), "-p", str(workdir),
            "-e", str(workdir / "error.log"), "-g", "daemon off;",
        ]  # fmt: skip
        self._child = Child("nginx", argv, workdir / "nginx.out", cwd=workdir)

    def start(self) -> None:
        """Start nginx and wait until it accepts connections."""
        self._child.start()
        wait_for(lambda: tcp_open(self.port), "nginx", self._child)

    def stop(self) -> None:
        """Stop nginx (SIGQUIT would wait for keep-alive clients; SIGTERM is immediate)."""
        self._child.stop()
