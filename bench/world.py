"""The benchmark's world: the names it seeds into MariaDB and the Pebble it watches.

The servers themselves are ``tests/world`` (started by ``tests.world.launcher.Launcher``); this
module only seeds mail domains into its MariaDB, reads Pebble's request log and restarts Pebble
when its store deadlocks. It touches the world's MariaDB, Pebble's log file and Pebble's process.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tests.world.launcher import World
from tests.world.pebble import Pebble

REPO = Path(__file__).resolve().parent.parent
HOSTNAME = "mail.bench.test"
PROJECT = "acmebench"
PREFIXES = ("autodiscover", "autoconfig", "mta-sts")
REQUEST_LINE = re.compile(r"^Pebble \S+ \S+ ([A-Z]+) (\S+) -> calling handler\(\)\s*$", re.M)
PROGRESS_LINE = re.compile(r"Issued certificate|set VALID|set INVALID|Pulled a task|validate w/")


def say(text: str) -> None:
    """Progress output (stderr, so stdout holds only the report)."""
    print(text, file=sys.stderr, flush=True)


def seed(world: World, count: int) -> list[str]:
    """Replace the mail domains with ``count`` active domains, each with active MTA-STS."""
    domains = [f"bench{i:04d}.test" for i in range(count)]
    world.mariadb.reset()
    conn = world.mariadb.connect()
    with conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO domain (domain) VALUES (%s)", [(d,) for d in domains])
        cur.executemany(
            "INSERT INTO mta_sts (domain, active) VALUES (%s, 1)", [(d,) for d in domains]
        )
    return domains


def cert_names(domains: Sequence[str]) -> list[list[str]]:
    """The certificates of SNI mode: the server certificate, then one per domain."""
    return [[HOSTNAME]] + [[f"{p}.{d}" for p in PREFIXES] for d in domains]


# --- Pebble's request log --------------------------------------------------------------------


class PebbleLog:
    """Counts the requests Pebble logged after a mark."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise RuntimeError(f"Pebble's log is not at {path}; has tests/world/pebble.py changed?")
        self.path = path

    def mark(self) -> int:
        """The current end of the log."""
        return self.path.stat().st_size

    def read_from(self, offset: int) -> tuple[list[str], int]:
        """The complete lines after ``offset``, and the offset after the last of them."""
        with self.path.open("rb") as log:
            log.seek(offset)
            data = log.read()
        end = data.rfind(b"\n") + 1
        return data[:end].decode(errors="replace").splitlines(), offset + end

    def since(self, mark: int) -> Counter[str]:
        """``{"POST /order-plz": 51, ...}`` for every request logged after ``mark``."""
        time.sleep(0.05)  # the last handler line is written before the response; be safe
        with self.path.open("rb") as log:
            log.seek(mark)
            text = log.read().decode(errors="replace")
        return Counter(f"{m[1]} {m[2]}" for m in REQUEST_LINE.finditer(text))


class PebbleWatchdog:
    """Restarts Pebble when requests keep arriving but it makes no progress for ``stall`` s.

    Pebble 2.4's in-memory store can deadlock under many parallel orders: seen in a
    1,000-domain run, where a goroutine dump showed ``NewOrder`` -> ``FindValidAuthorization``
    holding the store's read lock while waiting for an authorization's lock, ``AddChallenge``
    waiting for the write lock and every later request queued behind them. Every order then
    ends in a 30 s read timeout. A restarted Pebble has forgotten all accounts and orders, so
    the run that was going on fails and has to be repeated.
    """

    def __init__(self, pebble: Pebble, log: PebbleLog, stall: float = 20.0) -> None:
        self.pebble = pebble
        self.log = log
        self.stall = stall
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="pebble-watchdog", daemon=True)

    def __enter__(self) -> PebbleWatchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        offset = self.log.mark()
        waiting: list[float] = []  # when requests arrived since the last sign of progress
        while not self._stop.wait(1.0):
            lines, offset = self.log.read_from(offset)
            now = time.monotonic()
            for line in lines:
                if PROGRESS_LINE.search(line):
                    waiting.clear()
                elif REQUEST_LINE.match(line):
                    waiting.append(now)
            stuck = len(waiting) >= 8 and now - waiting[0] > self.stall
            if stuck and now - waiting[-1] < self.stall / 2:
                say(
                    f"  Pebble answered nothing useful for {now - waiting[0]:.0f} s while "
                    f"{len(waiting)} requests arrived (store deadlock): restarting Pebble"
                )
                self.pebble.stop()
                self.pebble.start()
                self.restarts += 1
                waiting.clear()
                offset = self.log.mark()
