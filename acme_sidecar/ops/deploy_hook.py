"""The deploy hook: tell what lies outside compose (a host's reverse proxy) about each deploy.

After every successful deploy (``shell.act.finish_deploy``) the certificates put in service go
to ``ACME_DEPLOY_HOOK_URL`` as one JSON POST (within 15 s, the answer's body unread) and/or to
``ACME_DEPLOY_HOOK_COMMAND``, run with ``/bin/sh -c`` in its own process group: the same JSON
on its stdin, the names and serials in its environment (the sidecar's secrets left out),
killed with its children after 60 s.
A failure is one ``deploy_hook.failed`` line and never stops the daemon. The URL is logged as
its scheme and host only, the command as its first word only: both may hold a token.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import structlog

from acme_sidecar.config.settings import HIDDEN, ORIGIN_ONLY
from acme_sidecar.core.report import Deployed
from acme_sidecar.core.values import url_origin
from acme_sidecar.ops.channels import post

log = structlog.get_logger(__name__)

URL_DEADLINE = 15.0  # seconds for the POST, connection and answer included
COMMAND_DEADLINE = 60.0  # seconds for the command and every process it starts
_OUTPUT_CAP = 64 * 1024  # bytes of the command's output kept (its last line is logged)
# the sidecar's secrets stay out of the command's environment
_SECRETS = HIDDEN | ORIGIN_ONLY | {"watchdog_notify_webhook"}


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
    daemon."""
    proc = subprocess.Popen(
        ["/bin/sh", "-c", command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if k.lower() not in _SECRETS} | env,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(stdin, timeout=deadline)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=5)
        return None, ""
    lines = out[-_OUTPUT_CAP:].decode("utf-8", "replace").strip().splitlines()
    return proc.returncode, lines[-1][:200] if lines else ""


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
        """The command's first word, the only part of it logged."""
        return self._command.split(maxsplit=1)[0] if self._command.strip() else ""

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
