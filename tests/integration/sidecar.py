"""Run the real ``acme-sidecar`` command against the test world and read what it logged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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
