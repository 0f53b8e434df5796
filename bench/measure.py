"""Measuring one process: wall time, peak RSS, and what a sidecar run's log says.

``run_measured`` spawns a process and waits for it with ``wait4`` (its own ``ru_maxrss``);
``SidecarRun`` turns the JSON log of one ``acme_sidecar once`` and the ACME requests Pebble
logged meanwhile into phases, certificate counts and requests per endpoint. Touches only the
processes it starts and temporary files for their output.
"""

from __future__ import annotations

import itertools
import os
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .world import REPO

NEW_ORDER = "POST /order-plz"
# the reason of a ``cert.wait`` held back by the sidecar's per-account order budget
ORDER_BUDGET = "orders in 3 hours"

# Milestones of a cycle in the sidecar's log: (phase that ends there, events, first or last).
MILESTONES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("start, settings, DB read", ("names.discovered",), "first"),
    ("DNS + HTTP validation", ("name.accepted", "name.skipped"), "last"),
    ("load volume, plan", ("cert.issue", "cert.renew", "cert.keep", "cert.wait"), "last"),
    ("keys (RSA keygen/load)", ("key.created", "key.reused"), "last"),
    ("ACME account", ("account.registered", "account.found"), "first"),
    ("ACME orders (parallel)", ("cert.stored",), "first"),
    ("store", ("cert.stored", "cert.default", "cert.archived"), "last"),
    ("apply (Docker API)", ("cycle.done",), "first"),
)
LAST_PHASE = "hooks (health file), exit"


# --- processes -----------------------------------------------------------------------------


@dataclass
class Exit:
    """One finished, measured process."""

    argv: list[str]
    code: int
    seconds: float
    maxrss_kb: int
    started: float
    stdout: str
    stderr: str
    timed_out: bool = False

    def tail(self, lines: int = 15) -> str:
        """The last lines of stderr and stdout, for error messages."""
        text = (self.stderr + "\n" + self.stdout).strip().splitlines()
        return "\n".join(text[-lines:])


def run_measured(argv: Sequence[str], env: dict[str, str], cwd: Path, timeout: float) -> Exit:
    """Run ``argv``; wall time from spawn to exit and the peak RSS of this process alone."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        killed = threading.Event()
        started = time.time()
        began = time.monotonic()
        proc = subprocess.Popen(
            list(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )

        def kill() -> None:
            killed.set()
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C: do not leave the measured process behind
            proc.kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
        seconds = time.monotonic() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Exit(
            argv=list(argv),
            code=proc.returncode,
            seconds=seconds,
            maxrss_kb=usage.ru_maxrss,
            started=started,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            timed_out=killed.is_set(),
        )


def output_of(argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path = REPO) -> str:
    """The stripped stdout (or stderr) of a quick command; empty when it cannot run."""
    try:
        done = subprocess.run(
            list(argv), env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = done.stdout.strip() or done.stderr.strip()
    return text.splitlines()[0] if text else ""


# --- a sidecar run ------------------------------------------------------------------------------


@dataclass
class SidecarRun:
    """One ``python -m acme_sidecar once`` with its log and the ACME requests it caused."""

    label: str
    exit: Exit
    events: list[dict[str, Any]]
    requests: Counter[str]

    @property
    def stored(self) -> int:
        """Certificates written."""
        return sum(1 for e in self.events if e.get("event") == "cert.stored")

    @property
    def certificates(self) -> int:
        """Certificates in the plan (kept or issued), from ``cycle.done``."""
        done = [e for e in self.events if e.get("event") == "cycle.done"]
        return int(done[-1].get("certificates", 0)) if done else 0

    @property
    def failed(self) -> int:
        """Certificates that failed, from ``cycle.done``."""
        done = [e for e in self.events if e.get("event") == "cycle.done"]
        return int(done[-1].get("failed", 0)) if done else 0

    @property
    def next_check_seconds(self) -> float:
        """When the sidecar would have run its next cycle (``cycle.done``'s next_check_in)."""
        done = [e for e in self.events if e.get("event") == "cycle.done"]
        text = str(done[-1].get("next_check_in", "0s")) if done else "0s"
        return float(text.removesuffix("s") or 0)

    @property
    def budget_held(self) -> int:
        """Certificates held back by the order budget (300 orders per 3 hours, less 10 %)."""
        return sum(
            1
            for e in self.events
            if e.get("event") == "cert.wait" and ORDER_BUDGET in str(e.get("reason", ""))
        )

    @property
    def orders(self) -> int:
        """newOrder requests Pebble saw."""
        return self.requests[NEW_ORDER]

    def offset(self, event: dict[str, Any]) -> float:
        """Seconds from spawning the process to this log line."""
        stamp = datetime.fromisoformat(str(event["timestamp"]))
        return stamp.timestamp() - self.exit.started

    def event_times(self) -> dict[str, dict[str, float]]:
        """Per event name: how often, and the offsets of its first and last line."""
        out: dict[str, dict[str, float]] = {}
        for event in self.events:
            if "timestamp" not in event:
                continue
            at = self.offset(event)
            row = out.setdefault(str(event["event"]), {"count": 0, "first": at, "last": at})
            row["count"] += 1
            row["last"] = at
        return out

    def phases(self) -> list[tuple[str, float]]:
        """Consecutive phases of the cycle, from the milestones found in its log."""
        times = self.event_times()
        points: list[tuple[str, float]] = []
        for label, names, which in MILESTONES:
            hits = [times[n][which] for n in names if n in times]
            if hits:
                points.append((label, min(hits) if which == "first" else max(hits)))
        points.append((LAST_PHASE, self.exit.seconds))
        out: list[tuple[str, float]] = []
        previous = 0.0
        for label, at in points:
            if at < previous:
                continue
            out.append((label, at - previous))
            previous = at
        return out

    def store_gaps(self) -> tuple[float, float] | None:
        """Mean ms between consecutive ``cert.stored`` lines in the first and the last tenth."""
        at = [self.offset(e) for e in self.events if e.get("event") == "cert.stored"]
        gaps = [b - a for a, b in itertools.pairwise(at)]
        if len(gaps) < 10:
            return None
        tenth = len(gaps) // 10
        return (
            statistics.mean(gaps[:tenth]) * 1000,
            statistics.mean(gaps[-tenth:]) * 1000,
        )

    def summary(self) -> dict[str, Any]:
        """JSON-friendly facts of this run."""
        gaps = self.store_gaps()
        return {
            "label": self.label,
            "store_gap_ms_first_last_tenth": [round(g, 2) for g in gaps] if gaps else None,
            "exit_code": self.exit.code,
            "seconds": round(self.exit.seconds, 3),
            "peak_rss_kb": self.exit.maxrss_kb,
            "certificates": self.certificates,
            "stored": self.stored,
            "orders": self.orders,
            "acme_requests": sum(self.requests.values()),
            "requests_by_endpoint": dict(self.requests.most_common()),
            "phases": [{"phase": p, "seconds": round(s, 3)} for p, s in self.phases()],
            "events": {
                k: {"count": int(v["count"]), "first": round(v["first"], 3)}
                | {"last": round(v["last"], 3)}
                for k, v in self.event_times().items()
            },
        }
