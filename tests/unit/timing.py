"""A monotonic clock the test drives, for code that takes ``clock: Callable[[], float]``.

Fakes "take time" with ``clock.sleep(seconds)``: the calling thread blocks until the test moves
the clock past its wake time. ``drive`` runs the code under test in a thread and moves the clock
to the next wake time each time ``ready()`` says the threads have done all they can at this
instant, so results depend on the deadline logic, never on how busy the machine is. A real-time
limit (``LIMIT``, generous) only turns a hang into a clear failure.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
LIMIT = 20.0  # real seconds before a test that waits on the clock or on a thread gives up


class TestClock:
    """Seconds that pass only when the test says so; starts at ``start``."""

    __test__ = False  # not a pytest test class

    def __init__(self, start: float = 1000.0) -> None:
        self.start = start
        self._now = start
        self._cond = threading.Condition()
        self._wakes: list[float] = []  # wake times of the threads sleeping on the clock

    def __call__(self) -> float:
        with self._cond:
            return self._now

    @property
    def elapsed(self) -> float:
        return self() - self.start

    @property
    def sleepers(self) -> int:
        """Threads asleep on the clock whose wake time is still ahead."""
        with self._cond:
            return sum(wake > self._now for wake in self._wakes)

    def advance(self, seconds: float) -> None:
        with self._cond:
            self._now += seconds
            self._cond.notify_all()

    def jump(self) -> None:
        """Move to the earliest wake time ahead (nothing when no one sleeps)."""
        with self._cond:
            ahead = [wake for wake in self._wakes if wake > self._now]
            if ahead:
                self._now = min(ahead)
                self._cond.notify_all()

    def sleep(self, seconds: float) -> None:
        """Block until the clock has moved ``seconds`` on."""
        with self._cond:
            wake = self._now + seconds
            self._wakes.append(wake)
            try:
                if not self._cond.wait_for(lambda: self._now >= wake, timeout=LIMIT):
                    raise AssertionError(f"the test clock was not moved past {wake}")
            finally:
                self._wakes.remove(wake)


def wait_until(ready: Callable[[], bool], what: str) -> None:
    """Wait (real time, up to ``LIMIT``) until ``ready()``."""
    end = time.monotonic() + LIMIT
    while not ready():
        if time.monotonic() > end:
            raise AssertionError(f"not reached within {LIMIT:g}s: {what}")
        time.sleep(0.002)


def drive(call: Callable[[], T], clock: TestClock, ready: Callable[[], bool]) -> T:
    """Run ``call`` in a thread; whenever ``ready()``, move ``clock`` to the next wake time.

    ``ready`` says that every thread has done what it can at the current instant (typically:
    so many are asleep on the clock), so moving on cannot overtake anyone.
    """
    pool = ThreadPoolExecutor(1)
    try:
        future = pool.submit(call)
        end = time.monotonic() + LIMIT
        while not future.done():
            if time.monotonic() > end:
                raise AssertionError(f"still running after {LIMIT:g}s at clock {clock.elapsed}")
            if ready():
                clock.jump()
            time.sleep(0.002)
        return future.result()
    finally:
        pool.shutdown(wait=False)


def within_limit(call: Callable[[], T]) -> T:
    """``call()`` in a thread, failing the test (not hanging it) when it does not return."""
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(call).result(timeout=LIMIT)
    finally:
        pool.shutdown(wait=False)


def in_thread(call: Callable[[], T]) -> Future[T]:
    """``call()`` started in a thread of its own; ``.result(timeout=LIMIT)`` to collect it."""
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(call)
    finally:
        pool.shutdown(wait=False)
