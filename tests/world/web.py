"""nginx serving a private webroot as ``/.well-known/acme-challenge/`` on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

from .proc import Child, free_port, require_binary, tcp_open, wait_for


def nginx_conf(d: Path, servers: str, access_log: str = "") -> str:
    """An nginx.conf for one foreground nginx under ``d`` with these ``server`` blocks;
    ``access_log``: a ``log_format`` of the access log (default: nginx's own)."""
    log = (
        f"    log_format custom '{access_log}';\n    access_log {d}/access.log custom;"
        if (access_log)
        else f"    access_log {d}/access.log;"
    )
    temps = "".join(
        f"    {kind}_temp_path {d}/tmp/{path};\n"
        for kind, path in (
            ("client_body", "body"),
            ("proxy", "proxy"),
            ("fastcgi", "fastcgi"),
            ("uwsgi", "uwsgi"),
            ("scgi", "scgi"),
        )
    )
    return (
        f"user root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n"
        f"events {{ worker_connections 64; }}\nhttp {{\n{log}\n{temps}"
        f"    default_type application/octet-stream;\n{servers}}}\n"
    )


def challenge(webroot: Path) -> str:
    """The ``location`` blocks that serve ``webroot`` as the challenge path, 404 elsewhere."""
    return (
        "        location ^~ /.well-known/acme-challenge/ {\n"
        f"            alias {webroot}/;\n"
        "            default_type text/plain;\n"
        "        }\n"
        "        location / { return 404; }\n"
    )


def nginx_child(name: str, workdir: Path, conf: Path) -> Child:
    """nginx in the foreground with ``conf``, its prefix and logs in ``workdir``."""
    binary = require_binary("nginx", "nginx-light")
    argv = [
        binary, "-c", str(conf), "-p", str(workdir),
        "-e", str(workdir / "error.log"), "-g", "daemon off;",
    ]  # fmt: skip
    return Child(name, argv, workdir / "nginx.out", cwd=workdir)


class Nginx:
    """nginx in the foreground; files written to ``webroot`` appear under the challenge path."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path) -> None:
        (workdir / "tmp").mkdir(parents=True, exist_ok=True)
        self.webroot = workdir / "webroot"
        self.webroot.mkdir()
        self.port = free_port()
        self.url = f"http://{self.host}:{self.port}/.well-known/acme-challenge/"
        conf = workdir / "nginx.conf"
        server = (
            f"    server {{\n        listen 127.0.0.1:{self.port};\n        server_name _;\n"
            f"{challenge(self.webroot)}    }}\n"
        )
        conf.write_text(nginx_conf(workdir, server))
        self._child = nginx_child("nginx", workdir, conf)

    def start(self) -> None:
        """Start nginx and wait until it accepts connections."""
        self._child.start()
        wait_for(lambda: tcp_open(self.port), "nginx", self._child)

    def stop(self) -> None:
        """Stop nginx (SIGQUIT would wait for keep-alive clients; SIGTERM is immediate)."""
        self._child.stop()
