"""The deploy hook: tell what lies outside compose (a host's reverse proxy) about each deploy.

After every successful deploy (``shell.act.finish_deploy``) the certificates put in service go
to ``ACME_DEPLOY_HOOK_URL`` as one JSON POST (within 15 s, the answer's body unread) and/or to
``ACME_DEPLOY_HOOK_COMMAND``, run with ``/bin/sh -c`` in its own process group: the same JSON
on its stdin, the names and serials in its environment, killed with its children after 60 s
(and what it leaves running when it exits).
Of the sidecar's own environment the command gets only ``PATH``, ``HOME``, ``LANG``/``LC_*``
and ``TZ``: the rest holds database, Redis and DNS-provider credentials. Its output is read
as it comes, keeping only the last 64 KiB.
A failure is one ``deploy_hook.failed`` line and never stops the daemon. The URL is logged as
its scheme and host only, the command as its first word only: both may hold a token.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import structlog

from acme_sidecar.core.report import Deployed
from acme_sidecar.core.values import url_origin
from acme_sidecar.ops.channels import post

log = structlog.get_logger(__name__)

URL_DEADLINE = 15.0  # seconds for the POST, connection and answer included
COMMAND_DEADLINE = 60.0  # seconds for the command and every process it starts
_OUTPUT_CAP = 64 * 1024  # bytes of the command's output kept (its last line is logged)
# the only variables of the sidecar's environment the command gets: the rest may hold secrets
_PASSED = frozenset({"PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ"})


def _tail(stream: Any, keep: bytearray) -> None:
    """Read ``stream`` to its end, keeping only its last ``_OUTPUT_CAP`` bytes in ``keep``."""
    with contextlib.suppress(OSError, ValueError):
        for chunk in iter(lambda: stream.read1(16 * 1024), b""):
            keep += chunk
            del keep[: max(len(keep) - _OUTPUT_CAP, 0)]


def payload(deployed: Deployed, hostname: str, cert_dir: Path) -> dict[str, Any]:
    """The JSON the URL and the command get."""
    return {
        "event": "deployed",
        "hostname": hostname,
        "cert_dir": str(cert_dir),
        "certificates": [
            {
                "certificate": c.certificate,
                "names": list(c.names),
                "serial": c.serial,
                "not_after": c.not_after,
            }
            for c in deployed.certificates
        ],
        "default": deployed.default,
        "services": list(deployed.services),
    }


def environment(deployed: Deployed, hostname: str, cert_dir: Path) -> dict[str, str]:
    """The command's extra environment: space-separated lists, in the same order."""
    certs = deployed.certificates
    return {
        "ACME_DEPLOY_HOSTNAME": hostname,
        "ACME_DEPLOY_CERT_DIR": str(cert_dir),
        "ACME_DEPLOY_CERTIFICATES": " ".join(c.certificate for c in certs),
        "ACME_DEPLOY_SERIALS": " ".join(c.serial for c in certs),
        "ACME_DEPLOY_NAMES": " ".join(dict.fromkeys(n for c in certs for n in c.names)),
        "ACME_DEPLOY_DEFAULT": "y" if deployed.default else "n",
    }


def run_command(
    command: str, stdin: bytes, env: dict[str, str], deadline: float
) -> tuple[int | None, str]:
    """Run ``command`` with ``/bin/sh -c``; (exit code or None when killed, last output line).
    The whole process group is killed at ``deadline``, so a child left behind cannot hold the
    daemon; ``stdin`` comes from a file, so a command that does not read it cannot block."""
    passed = {k: v for k, v in os.environ.items() if k in _PASSED or k.startswith("LC_")}
    output = bytearray()
    with tempfile.TemporaryFile() as given:
        given.write(stdin)
        given.seek(0)
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            stdin=given,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=passed | env,
            start_new_session=True,
        )
        reader = threading.Thread(
            target=_tail, args=(proc.stdout, output), name="deploy-hook-output", daemon=True
        )
        reader.start()
        try:
            code: int | None = proc.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            code = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # what it left behind, or all of it at the deadline
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()
    if code is None:
        return None, ""
    lines = bytes(output).decode("utf-8", "replace").strip().splitlines()
    return code, lines[-1][:200] if lines else ""


class DeployHook:
    """Called with each confirmed deploy; never raises."""

    def __init__(
        self,
        *,
        url: str,
        command: str,
        hostname: str,
        cert_dir: Path,
        url_deadline: float = URL_DEADLINE,
        command_deadline: float = COMMAND_DEADLINE,
    ) -> None:
        self._url = url
        self._command = command
        self.hostname = hostname
        self.cert_dir = cert_dir
        self.url_deadline = url_deadline
        self.command_deadline = command_deadline

    def __repr__(self) -> str:
        return f"DeployHook(url={url_origin(self._url) if self._url else None!r})"

    @property
    def program(self) -> str:
        """The command's first word, the only part of it logged (``sh -c`` when it sets a
        variable, which may be a token)."""
        first = self._command.split(maxsplit=1)[0] if self._command.strip() else ""
        return "sh -c" if "=" in first else first

    def __call__(self, deployed: Deployed) -> None:
        """POST and/or run the command; log each result in one line."""
        data = payload(deployed, self.hostname, self.cert_dir)
        certificates = ",".join(c.certificate for c in deployed.certificates) or None
        if self._url:
            try:
                error = post(self._url, data, self.url_deadline)
            except Exception as exc:  # noqa: BLE001 - a hook never stops the daemon
                error = f"{type(exc).__name__}: {exc}"
            target = url_origin(self._url)
            if error:
                log.error("deploy_hook.failed", url=target, error=error[:300])
            else:
                log.info("deploy_hook.posted", url=target, certificates=certificates)
        if self._command.strip():
            stdin = json.dumps(data).encode()
            env = environment(deployed, self.hostname, self.cert_dir)
            try:
                code, last = run_command(self._command, stdin, env, self.command_deadline)
            except Exception as exc:  # noqa: BLE001 - a hook never stops the daemon
                code, last = -1, f"{type(exc).__name__}: {str(exc)[:200]}"
            if code == 0:
                log.info("deploy_hook.ran", command=self.program, certificates=certificates)
            elif code is None:
                log.error(
                    "deploy_hook.failed",
                    command=self.program,
                    error=f"no end within {self.command_deadline:g}s: killed",
                )
            else:
                log.error("deploy_hook.failed", command=self.program, exit=code, output=last)
