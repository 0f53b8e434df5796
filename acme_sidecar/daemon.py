"""The daemon loop: run a cycle, sleep until the next one, stop at once on SIGTERM.

SIGHUP wakes the loop for a cycle right away. Signals only set events; the loop acts on them.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType

import structlog

from acme_sidecar.config import Settings
from acme_sidecar.cycle import Deps, Report, next_sleep, run_cycle, summarize
from acme_sidecar.errors import SourceError
from acme_sidecar.hooks import CycleEvent, Hook, run_hooks

log = structlog.get_logger(__name__)


def after_cycle(report: Report, deps: Deps, hooks: Sequence[Hook]) -> None:
    """Run the hooks with the cycle's report and the certificates now in the volume."""
    if hooks:
        event = CycleEvent(report, deps.store.load(), deps.clock())
        run_hooks(hooks, event)


class Daemon:
    """Repeats cycles until stopped."""

    def __init__(
        self,
        settings: Settings,
        deps: Deps,
        *,
        stop: threading.Event | None = None,
        cycle: Callable[[Settings, Deps], Report] = run_cycle,
        hooks: Sequence[Hook] = (),
    ) -> None:
        self.settings = settings
        self.deps = deps
        self.hooks = tuple(hooks)
        self.stop = stop or threading.Event()
        self.wake = threading.Event()
        self._cycle = cycle

    def install_signals(self) -> None:
        """SIGTERM/SIGINT stop the loop; SIGHUP starts a cycle now."""

        def on_stop(signum: int, frame: FrameType | None) -> None:
            log.info("daemon.stopping", signal=signal.Signals(signum).name)
            self.stop.set()
            self.wake.set()

        def on_hup(signum: int, frame: FrameType | None) -> None:
            log.info("daemon.woken", signal="SIGHUP", action="starting a cycle now")
            self.wake.set()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    def _sleep(self, seconds: float, report: Report) -> None:
        """Sleep ``seconds``; every ACME_DB_POLL seconds look whether the domains changed."""
        deadline = time.monotonic() + seconds
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self.wake.wait(min(left, self.settings.acme_db_poll)):
                return
            if report.rows is None:
                continue
            try:
                rows = self.deps.source.read()
            except SourceError:
                continue  # the next cycle logs it
            if rows != report.rows:
                log.info("domains.changed", action="starting a cycle now")
                return

    def run(self) -> int:
        """Loop until ``stop`` is set; return the process exit code (0)."""
        if self.settings.skip_lets_encrypt:
            log.info(
                "daemon.idle",
                reason="SKIP_LETS_ENCRYPT=y: no certificates are requested; set it to n to "
                "let acme-sidecar manage them",
            )
            self.stop.wait()
            return 0
        log.info(
            "daemon.started",
            hostname=self.settings.mailcow_hostname,
            directory=self.settings.directory,
            cert_dir=str(self.settings.acme_cert_dir),
        )
        while not self.stop.is_set():
            self.wake.clear()
            report = self._cycle(self.settings, self.deps)
            if self.stop.is_set():
                break
            sleep = next_sleep(report, self.settings, self.deps.clock())
            summarize(report, sleep)
            after_cycle(report, self.deps, self.hooks)
            self._sleep(sleep, report)
        log.info("daemon.stopped")
        return 0
