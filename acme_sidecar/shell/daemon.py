"""The daemon loop: run a cycle, sleep until the next one, stop at once on SIGTERM.

SIGHUP wakes the loop for a cycle right away; so does a change of the top-level pair, looked at
every ACME_WATCH_INTERVAL. With SKIP_LETS_ENCRYPT=y the loop runs ``watch_cycle`` instead
(no order: the top-level pair is checked and deployed when it changes). Signals only set
events; the loop acts on them.
The ledger is carried from cycle to cycle in memory (and saved by each cycle), so a volume that
cannot be written for a while loses nothing. No exception ends the loop: ``guarded_cycle`` is
the boundary, and the hooks are guarded too.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from types import FrameType

import structlog

from acme_sidecar.adapters.volume import toppair
from acme_sidecar.config.policies import CyclePolicy, DaemonPolicy
from acme_sidecar.core.ledger import State
from acme_sidecar.core.report import Outcome, Report
from acme_sidecar.ops.hooks import CycleEvent, Hook, run_hooks
from acme_sidecar.shell.cycle import Deps, guarded_cycle, plan_wake, summarize
from acme_sidecar.shell.startup import DbGrace, wait_until_ready, webroot_gate

log = structlog.get_logger(__name__)


def after_cycle(report: Report, deps: Deps, hooks: Sequence[Hook], *, quiet: bool = False) -> None:
    """Run the hooks with the cycle's report and the certificates now in the volume (the
    top-level pair included when it is not a copy of one of them: an own certificate);
    ``quiet``: the failure raises no alarm yet (see ``startup.DbGrace``)."""
    if not hooks:
        return
    try:
        certificates = toppair.with_top(deps.store, deps.store.certs.load())
    except Exception as exc:  # noqa: BLE001 - hooks must never stop the daemon
        log.error("hook.failed", hook="volume", error_type=type(exc).__name__, error=str(exc))
        certificates = {}
    run_hooks(hooks, CycleEvent(report, certificates, deps.clock(), quiet=quiet))


def release_memory() -> None:
    """Between cycles: collect garbage and hand freed heap pages back to the system (glibc's
    ``malloc_trim``), so an idle daemon holds what it needs, not a cycle's high-water mark."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class Daemon:
    """Repeats cycles until stopped."""

    def __init__(
        self,
        policy: DaemonPolicy,
        cycle_policy: CyclePolicy,
        deps: Deps,
        *,
        stop: threading.Event | None = None,
        cycle: Callable[[CyclePolicy, Deps, State | None], Report] = guarded_cycle,
        hooks: Sequence[Hook] = (),
    ) -> None:
        self.policy = policy
        self.cycle_policy = cycle_policy
        self.deps = deps
        self.hooks = tuple(hooks)
        self.stop = stop or threading.Event()
        self.wake = threading.Event()
        self.signals: list[int] = []
        self._cycle = cycle
        self._top = ""  # fingerprint of the top-level pair after the last cycle

    def _top_fingerprint(self) -> str:
        try:
            pair = toppair.read_top(self.deps.store)
        except Exception:  # noqa: BLE001 - a link or an unreadable file: the cycle says so
            return "unreadable"
        return toppair.fingerprint(*pair) if pair else ""

    def install_signals(self) -> None:
        """SIGTERM/SIGINT stop the loop; SIGHUP starts a cycle now.

        The handlers only set events and note the signal: logging from a signal handler can
        deadlock on the logger's lock when the signal interrupts a log write.
        """

        def on_stop(signum: int, frame: FrameType | None) -> None:
            self.signals.append(signum)
            self.stop.set()
            self.wake.set()

        def on_hup(signum: int, frame: FrameType | None) -> None:
            self.signals.append(signum)
            self.wake.set()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    def _report_signals(self) -> None:
        while self.signals:
            signum = self.signals.pop(0)
            if signum == signal.SIGHUP:
                log.info("daemon.woken", signal="SIGHUP", action="starting a cycle now")
            else:
                log.info("daemon.stopping", signal=signal.Signals(signum).name)

    def _sleep(self, seconds: float, report: Report) -> None:
        """Sleep ``seconds``; every ACME_DB_POLL seconds look whether the domains changed."""
        deadline = time.monotonic() + seconds
        poll_at = time.monotonic() + self.policy.db_poll
        look_at = time.monotonic() + self.policy.watch_interval
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= deadline:
                return
            # short slices: a signal handler then runs promptly whatever thread it hit
            if self.wake.wait(min(deadline - now, poll_at - now, look_at - now, 0.5)):
                return
            if time.monotonic() >= look_at:
                look_at = time.monotonic() + self.policy.watch_interval
                if self._top_fingerprint() != self._top:
                    log.info("own.changed", action="the top-level pair changed; a cycle now")
                    return
            if time.monotonic() < poll_at:
                continue
            poll_at = time.monotonic() + self.policy.db_poll
            if report.rows is None:
                continue
            try:
                rows = self.deps.source.read()
            except Exception:  # noqa: BLE001, S112 - SourceError or worse: the next cycle logs it
                continue
            if rows != report.rows:
                log.info("domains.changed", action="starting a cycle now")
                return

    def run(self) -> int:
        """Loop until ``stop`` is set; return the process exit code (0)."""
        if self.policy.skip_lets_encrypt:
            return self._watch()
        log.info("daemon.started", **self.policy.banner)
        start = self.policy.start
        if start is not None:
            wait_until_ready(start, self.deps, webroot=False)
            self.deps = replace(self.deps, before_checks=webroot_gate(start, self.deps))
        grace = DbGrace(timedelta(seconds=start.db_wait if start else 0), self.deps.clock())
        state: State | None = None
        streak = 0
        while not self.stop.is_set():
            self.wake.clear()
            self._report_signals()
            report = self._cycle(self.cycle_policy, self.deps, state)
            state = report.state
            self._top = self._top_fingerprint()
            streak = 0 if report.settled else streak + 1
            if self.stop.is_set():
                break
            wake = plan_wake(report, self.policy, self.deps.clock(), streak=streak)
            summarize(report, wake)
            quiet = grace.quiet(report.outcome is Outcome.SOURCE_DOWN, self.deps.clock())
            after_cycle(report, self.deps, self.hooks, quiet=quiet)
            release_memory()
            self._sleep(wake.seconds, report)
        self._report_signals()
        log.info("daemon.stopped")
        return 0

    def _watch(self) -> int:
        """SKIP_LETS_ENCRYPT=y: look at the top-level pair every ACME_WATCH_INTERVAL (a deploy
        still owed is retried then too); the hooks run after each look (expiry warnings are
        sent once a day). ``own.kept`` is logged at start and once per ACME_CHECK_INTERVAL."""
        log.info(
            "daemon.idle",
            reason="SKIP_LETS_ENCRYPT=y: no certificates are requested; the top-level pair is "
            "checked and deployed when it changes; set it to n to let acme-sidecar manage them",
            every=f"{int(self.policy.watch_interval)}s",
        )
        from acme_sidecar.shell.watch import watch_cycle as watch  # this mode only

        state: State | None = None
        kept_line_at = 0.0
        while not self.stop.is_set():
            self.wake.clear()
            self._report_signals()
            quiet = time.monotonic() < kept_line_at
            report = watch(self.cycle_policy, self.deps, state, quiet=quiet)
            if not quiet:
                kept_line_at = time.monotonic() + self.policy.check_interval.total_seconds()
            state = report.state
            if report.applied or report.failed:
                summarize(report, self.policy.watch_interval)
            after_cycle(report, self.deps, self.hooks)
            self.wake.wait(self.policy.watch_interval)
        self._report_signals()
        log.info("daemon.stopped")
        return 0
