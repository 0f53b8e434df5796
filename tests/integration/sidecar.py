"""Run the real ``acme-sidecar`` command against the test world and read what it logged."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.world import World

HOST = "mail.example.test"
PROJECT = "acmetest"


@dataclass
class Run:
    """One finished ``acme-sidecar`` process."""

    code: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines, parsed."""
        out = []
        for line in self.stderr.splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def named(self, event: str) -> list[dict[str, Any]]:
        """Every log line with this event name."""
        return [e for e in self.events if e.get("event") == event]


def sidecar(env: dict[str, str], *args: str, timeout: float = 120) -> Run:
    """Run ``python -m acme_sidecar ARGS`` with exactly ``env`` (plus PATH)."""
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ACME_LOG_FORMAT": "json", **env}
    proc = subprocess.run(
        [sys.executable, "-m", "acme_sidecar", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``root`` with its mtime (ns) and content."""
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def base_env(world: World, cert_dir: Path) -> dict[str, str]:
    """The settings a test sidecar runs with: everything points at the test world."""
    return {
        "MAILCOW_HOSTNAME": HOST,
        "DBNAME": world.mariadb.dbname,
        "DBUSER": world.mariadb.user,
        "DBPASS": world.mariadb.password,
        "DB_SOCKET": str(world.mariadb.socket),
        "COMPOSE_PROJECT_NAME": PROJECT,
        "ACME_CERT_DIR": str(cert_dir),
        "ACME_WEBROOT": str(world.nginx.webroot),
        "ACME_CA_BUNDLE": str(world.pebble.ca_bundle),
        "DIRECTORY_URL": world.pebble.directory_url,
        "ACME_DNS_RESOLVERS": f"{world.dns.host}:{world.dns.port}",
        "ACME_HTTP_VERIFY_PORT": str(world.nginx.port),
        "PUBLIC_IPV4": "127.0.0.1",
        "ACME_IPV6_DETECT_URL": "",
        "ACME_VERIFY_SMTP": "",  # these busybox containers serve no TLS; see test_deploy
        "ACME_VERIFY_IMAP": "",
        "ACME_VERIFY_HTTPS": "",
        "ACME_ACCOUNT_EMAIL": "admin@example.test",
        "DOCKER_HOST": world.docker.docker_host,
        "ACME_HEALTH_FILE": str(cert_dir.with_name(cert_dir.name + ".health.json")),
        # every cycle checks every name, as the tests expect; test_parity covers the default
        "ACME_REVALIDATE_AFTER": "0s",
    }


def seed(world: World, domains: Sequence[str], mta_sts: Sequence[str] = ()) -> None:
    """Replace the database rows: active domains, and MTA-STS for some of them."""
    world.mariadb.reset()
    for domain in domains:
        world.mariadb.execute("INSERT INTO domain (domain) VALUES (%s)", (domain,))
    for domain in mta_sts:
        world.mariadb.execute("INSERT INTO mta_sts (domain) VALUES (%s)", (domain,))


def leaf(path: Path) -> Any:
    """The leaf certificate of a PEM chain file."""
    from cryptography import x509

    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def cert_dirs(root: Path) -> dict[str, str]:
    """Every certificate directory of the volume with its ``domains`` line."""
    return {
        p.name: (p / "domains").read_text()
        for p in sorted(root.iterdir())
        if p.is_dir() and (p / "domains").is_file() and (p / "cert.pem").is_file()
    }


class Daemon:
    """``acme-sidecar run`` in the background; its stderr is drained by a thread so the
    process can never block on a full pipe, and lines can be awaited by event name."""

    def __init__(self, env: dict[str, str]) -> None:
        full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ACME_LOG_FORMAT": "json", **env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "acme_sidecar", "run"],
            env=full,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, event: str, timeout: float = 60) -> dict[str, Any]:
        """Block until a log line with ``event`` arrives; return it parsed."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if line.startswith("{") and json.loads(line).get("event") == event:
                parsed: dict[str, Any] = json.loads(line)
                return parsed
        raise AssertionError(f"no {event} within {timeout}s: {''.join(self.seen[-15:])}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Send ``sig`` and wait; kill it (and fail) if it does not exit in time."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
