"""Benchmark acme-sidecar against certbot (and lego) on the real-component test world.

Run from the repository root::

    .venv/bin/python -m bench.run [--domains 50] [--peers certbot,lego] [--peer-domains K]
                                  [--noop-domains 1000] [--repeat 3] [--json out.json]
                                  [--set ACME_PARALLEL_ORDERS=16] [--sidecar-rev HEAD]

The test world of ``tests/world`` is started once (Pebble 2.4 with ``PEBBLE_VA_NOSLEEP=1`` and
authorization reuse off, the pebble-challtestsrv mock DNS answering 127.0.0.1 for every name,
MariaDB, nginx serving the HTTP-01 webroot, a private dockerd). Then, side by side:

1. acme-sidecar ``once`` in SNI mode from an empty volume: N mail domains with an active MTA-STS
   row each (autodiscover., autoconfig., mta-sts.), so N domain certificates plus the server
   certificate; the HTTP self-check is on (``SKIP_HTTP_VERIFICATION=n``). ``DOCKER_HOST`` is the
   world's dockerd, which runs no container of the compose project ``acmebench``: the Docker API
   is asked, nothing is restarted. Repeated ``--repeat`` times, each time from a new empty volume.
2. ``once`` again on the first volume (nothing due), and the RSS of ``run`` idling after its
   first (no-op) cycle.
3. ``--noop-domains M``: M domains issued once by acme-sidecar, then the no-op ``once`` timed.
4. ``--peers``: one certbot (or lego) process per certificate, sequentially, as cron jobs run them,
   against the same Pebble for the same names; ``--peer-domains K`` runs only K and extrapolates.

certbot is installed into ``.bench-venv`` (created when missing); lego is Debian's ``lego``.
A watchdog restarts Pebble when its store deadlocks (see ``PebbleWatchdog``) and the affected
run is repeated. ACME requests are counted from Pebble's log (``<world>/pebble/pebble.log``, one
``METHOD /path -> calling handler()`` line per request). Peak RSS is the ``ru_maxrss`` that
``wait4`` reports for the measured process alone. Times of the sidecar's phases come from the
timestamps of its JSON log lines, relative to the moment the process was spawned.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.world.launcher import Launcher, World
from tests.world.pebble import Pebble

REPO = Path(__file__).resolve().parent.parent
BENCH_VENV = REPO / ".bench-venv"
HOSTNAME = "mail.bench.test"
PROJECT = "acmebench"
PREFIXES = ("autodiscover", "autoconfig", "mta-sts")
NEW_ORDER = "POST /order-plz"
REQUEST_LINE = re.compile(r"^Pebble \S+ \S+ ([A-Z]+) (\S+) -> calling handler\(\)\s*$", re.M)
PROGRESS_LINE = re.compile(r"Issued certificate|set VALID|set INVALID|Pulled a task|validate w/")
TARGETS = {
    "full_cycle_seconds": 4.0,
    "requests_per_cert": 13.0,
    "noop_1000_seconds": 2.0,
    "idle_rss_mb": 60.0,
}

# Milestones of a cycle in the sidecar's log: (phase that ends there, events, first or last).
MILESTONES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("start, settings, DB read", ("names.discovered",), "first"),
    ("DNS + HTTP validation", ("name.accepted", "name.skipped"), "last"),
    ("load volume, plan", ("cert.issue", "cert.renew", "cert.keep", "cert.wait"), "last"),
    ("keys (RSA keygen/load)", ("key.created", "key.reused"), "last"),
    ("ACME account", ("account.registered", "account.found"), "first"),
    ("ACME orders (parallel)", ("cert.stored",), "first"),
    ("store", ("cert.stored", "cert.default", "cert.archived", "state.saved"), "last"),
    ("apply (Docker API)", ("cycle.done",), "first"),
)
LAST_PHASE = "hooks (health file), exit"


def say(text: str) -> None:
    """Progress output (stderr, so stdout holds only the report)."""
    print(text, file=sys.stderr, flush=True)


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


# --- acme-sidecar ------------------------------------------------------------------------------


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


class Sidecar:
    """Runs acme-sidecar from a source tree against the test world."""

    def __init__(
        self, world: World, pebble_log: PebbleLog, src: Path, extra: dict[str, str]
    ) -> None:
        self.world = world
        self.pebble_log = pebble_log
        self.src = src
        self.extra = extra
        self.pebble_restarts = 0

    def env(self, cert_dir: Path) -> dict[str, str]:
        """The settings (cf. ``base_env`` in tests/integration/test_first_certificate.py)."""
        w = self.world
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(self.src),
            "MAILCOW_HOSTNAME": HOSTNAME,
            "DBNAME": w.mariadb.dbname,
            "DBUSER": w.mariadb.user,
            "DBPASS": w.mariadb.password,
            "DB_SOCKET": str(w.mariadb.socket),
            "COMPOSE_PROJECT_NAME": PROJECT,
            "DOCKER_HOST": w.docker.docker_host,
            "ACME_CERT_DIR": str(cert_dir),
            "ACME_WEBROOT": str(w.nginx.webroot),
            "ACME_CA_BUNDLE": str(w.pebble.ca_bundle),
            "DIRECTORY_URL": w.pebble.directory_url,
            "ACME_DNS_RESOLVERS": f"{w.dns.host}:{w.dns.port}",
            "ACME_HTTP_VERIFY_PORT": str(w.nginx.port),
            "PUBLIC_IPV4": "127.0.0.1",
            "ACME_IPV6_DETECT_URL": "",
            "ACME_ACCOUNT_EMAIL": "admin@bench.test",
            "ENABLE_SSL_SNI": "y",
            "SKIP_HTTP_VERIFICATION": "n",
            "ACME_LOG_FORMAT": "json",
            # nothing is restarted (no container of PROJECT), so nothing would be verified;
            # keep the health file next to the volume instead of /run/acme-sidecar
            "ACME_VERIFY_SMTP": "",
            "ACME_VERIFY_IMAP": "",
            "ACME_VERIFY_HTTPS": "",
            "ACME_HEALTH_FILE": str(cert_dir.with_name(cert_dir.name + ".health.json")),
            **self.extra,
        }

    def argv(self, command: str) -> list[str]:
        """``python -m acme_sidecar COMMAND`` with the benchmark's interpreter."""
        return [sys.executable, "-m", "acme_sidecar", command]

    def once(
        self, label: str, cert_dir: Path, timeout: float = 600, check: bool = True
    ) -> SidecarRun:
        """One ``once``; raise when it does not exit 0 (unless not ``check``)."""
        mark = self.pebble_log.mark()
        done = run_measured(self.argv("once"), self.env(cert_dir), self.src, timeout)
        requests = self.pebble_log.since(mark)
        events = []
        for line in done.stderr.splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        run = SidecarRun(label, done, events, requests)
        if check and done.code != 0:
            raise RuntimeError(
                f"acme-sidecar once ({label}) exited {done.code}"
                f"{' (timed out)' if done.timed_out else ''}:\n{done.tail()}"
            )
        return run

    def once_watched(self, label: str, cert_dir: Path, timeout: float = 600) -> SidecarRun | None:
        """``once`` with the Pebble watchdog; ``None`` when Pebble hung and was restarted."""
        with PebbleWatchdog(self.world.pebble, self.pebble_log) as dog:
            run = self.once(label, cert_dir, timeout, check=False)
        if dog.restarts:
            self.pebble_restarts += dog.restarts
            return None
        if run.exit.code != 0:
            raise RuntimeError(
                f"acme-sidecar once ({label}) exited {run.exit.code}"
                f"{' (timed out)' if run.exit.timed_out else ''}:\n{run.exit.tail()}"
            )
        return run

    def idle_rss(self, cert_dir: Path, settle: float = 2.0) -> dict[str, int]:
        """``VmRSS``/``VmHWM`` (kB) of ``run`` sleeping after its first cycle on ``cert_dir``."""
        proc = subprocess.Popen(
            self.argv("run"),
            env=self.env(cert_dir),
            cwd=self.src,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        cycle_done = threading.Event()

        def drain() -> None:
            assert proc.stderr is not None  # noqa: S101 (set by PIPE above)
            for line in proc.stderr:
                if '"cycle.done"' in line:
                    cycle_done.set()

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            if not cycle_done.wait(120):
                raise RuntimeError("acme-sidecar run logged no cycle.done within 120 s")
            time.sleep(settle)
            status = Path(f"/proc/{proc.pid}/status").read_text()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            reader.join(5)
        fields = dict(re.findall(r"^(Vm\w+):\s+(\d+) kB", status, re.M))
        return {"rss_kb": int(fields["VmRSS"]), "hwm_kb": int(fields["VmHWM"])}


def prepare_source(rev: str | None, scratch: Path) -> tuple[Path, str]:
    """The directory acme_sidecar is imported from, and a description of that version."""
    head = output_of(["git", "rev-parse", "--short", "HEAD"])
    if rev is None:
        dirty = output_of(["git", "status", "--porcelain", "--", "acme_sidecar"])
        return REPO, f"working tree at {head}" + (" + uncommitted changes" if dirty else "")
    target = scratch / "src"
    target.mkdir()
    archive = subprocess.run(
        ["git", "archive", rev, "acme_sidecar"], cwd=REPO, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    commit = output_of(["git", "rev-parse", "--short", rev])
    return target, f"git {rev} ({commit})"


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


# --- peers -------------------------------------------------------------------------------------


@dataclass
class PeerResult:
    """Sequential runs of one peer client, one process per certificate."""

    client: str
    version: str
    planned: int
    run_seconds: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    maxrss_kb: int = 0
    note: str = ""

    @property
    def runs(self) -> int:
        """Processes run (successful or not)."""
        return len(self.run_seconds)

    @property
    def measured_seconds(self) -> float:
        """Wall time of the runs done."""
        return sum(self.run_seconds)

    @property
    def extrapolated(self) -> bool:
        """Whether fewer certificates were ordered than planned."""
        return 0 < self.runs < self.planned

    @property
    def seconds(self) -> float:
        """Seconds for all planned certificates (linear extrapolation when fewer were run)."""
        if not self.runs:
            return 0.0
        return self.measured_seconds / self.runs * self.planned

    def summary(self) -> dict[str, Any]:
        """JSON-friendly facts."""
        issued = self.runs - len(self.failures)
        return {
            "client": self.client,
            "version": self.version,
            "certificates": self.planned,
            "runs": self.runs,
            "failures": self.failures,
            "measured_seconds": round(self.measured_seconds, 3),
            "seconds": round(self.seconds, 3),
            "extrapolated": self.extrapolated,
            "seconds_per_run": {
                "median": round(statistics.median(self.run_seconds), 3) if self.runs else None,
                "min": round(min(self.run_seconds), 3) if self.runs else None,
                "max": round(max(self.run_seconds), 3) if self.runs else None,
            },
            "acme_requests": sum(self.requests.values()),
            "requests_per_cert": round(sum(self.requests.values()) / issued, 2) if issued else None,
            "requests_by_endpoint": dict(self.requests.most_common()),
            "peak_rss_kb": self.maxrss_kb,
            "note": self.note,
        }


def ensure_certbot() -> Path:
    """``.bench-venv/bin/certbot``, creating the venv and installing certbot when missing."""
    certbot = BENCH_VENV / "bin" / "certbot"
    if certbot.exists():
        return certbot
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        say(f"creating {BENCH_VENV} for certbot")
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    say("pip install certbot (into .bench-venv)")
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "certbot"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0 or not certbot.exists():
        raise RuntimeError(f"pip install certbot failed:\n{done.stdout}\n{done.stderr}")
    return certbot


def peer_webroot(world: World, scratch: Path) -> Path:
    """A webroot whose ``.well-known/acme-challenge`` is nginx's challenge directory."""
    root = scratch / "peer-webroot"
    (root / ".well-known").mkdir(parents=True, exist_ok=True)
    link = root / ".well-known" / "acme-challenge"
    if not link.exists():
        link.symlink_to(world.nginx.webroot, target_is_directory=True)
    return root


def certbot_client(world: World, scratch: Path) -> tuple[str, Callable[[list[str]], Exit]]:
    """certbot's version and a function running ``certbot certonly --webroot`` for names."""
    certbot = ensure_certbot()
    home = scratch / "certbot"
    env = {
        "PATH": f"{certbot.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "REQUESTS_CA_BUNDLE": str(world.pebble.ca_bundle),
    }
    webroot = peer_webroot(world, scratch)
    version = output_of([str(certbot), "--version"], env)

    def issue(names: list[str]) -> Exit:
        argv = [
            str(certbot), "certonly", "--non-interactive", "--agree-tos",
            "--register-unsafely-without-email", "--server", world.pebble.directory_url,
            "--config-dir", str(home / "config"), "--work-dir", str(home / "work"),
            "--logs-dir", str(home / "logs"), "--webroot", "-w", str(webroot),
        ]  # fmt: skip
        for name in names:
            argv += ["-d", name]
        return run_measured(argv, env, scratch, timeout=180)

    return version, issue


def lego_client(world: World, scratch: Path) -> tuple[str, Callable[[list[str]], Exit]]:
    """lego's version and a function running ``lego --http --http.webroot … run`` for names."""
    lego = shutil.which("lego")
    if lego is None:
        raise FileNotFoundError("lego is not installed (Debian 12: `apt-get install lego`)")
    home = scratch / "lego"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LEGO_CA_CERTIFICATES": str(world.pebble.ca_bundle),
    }
    webroot = peer_webroot(world, scratch)
    version = output_of(["dpkg-query", "-W", "-f=${Version}", "lego"]) or output_of(
        [lego, "--version"]
    )

    def issue(names: list[str]) -> Exit:
        argv = [
            lego, "--server", world.pebble.directory_url, "--accept-tos",
            "--email", "bench@example.test", "--path", str(home / "data"),
            "--http", "--http.webroot", str(webroot),
        ]  # fmt: skip
        for name in names:
            argv += ["--domains", name]
        return run_measured([*argv, "run"], env, scratch, timeout=180)

    return f"lego {version}", issue


def run_peer(
    client: str,
    world: World,
    pebble_log: PebbleLog,
    scratch: Path,
    certs: list[list[str]],
    limit: int | None,
) -> PeerResult:
    """One process per certificate, sequentially; stop after ``limit`` certificates."""
    scratch.mkdir(parents=True, exist_ok=True)
    maker = {"certbot": certbot_client, "lego": lego_client}[client]
    version, issue = maker(world, scratch)
    result = PeerResult(client, version, planned=len(certs))
    todo = certs[:limit] if limit else certs
    say(f"{client}: {len(todo)} certificates, one process each ({version})")
    mark = pebble_log.mark()
    for i, names in enumerate(todo, 1):
        done = issue(names)
        result.run_seconds.append(done.seconds)
        result.maxrss_kb = max(result.maxrss_kb, done.maxrss_kb)
        if done.code != 0:
            result.failures.append(f"{names[0]}: exit {done.code}: {done.tail(5)}")
            say(f"  {client} failed for {names[0]} (exit {done.code}):\n{done.tail()}")
            if i == 1:
                result.note = "the first run failed; stopped"
                break
        if i % 10 == 0 or i == len(todo):
            say(f"  {i}/{len(todo)} in {result.measured_seconds:.1f} s")
    result.requests = pebble_log.since(mark)
    if result.extrapolated:
        result.note = (
            f"ran {result.runs} of {result.planned} certificates; seconds extrapolated linearly"
        )
    return result


# --- report ------------------------------------------------------------------------------------


def mb(kb: int | float) -> str:
    """Kilobytes as megabytes."""
    return f"{kb / 1024:.1f} MB"


def table(rows: list[list[str]], right: Sequence[int]) -> list[str]:
    """A pipe table with aligned columns (``right``: right-aligned column indexes)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.rjust(widths[i]) if i in right and n else c.ljust(widths[i])
            for i, c in enumerate(row)
        ]
        lines.append("| " + " | ".join(cells) + " |")
        if n == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return lines


def plural(count: int, noun: str) -> str:
    """``1 order``, ``2 orders``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def fmt_phases(run: SidecarRun) -> str:
    """``phase 0.12 s, phase 1.30 s, …``."""
    return ", ".join(f"{p} {s:.2f} s" for p, s in run.phases())


def verdict(value: float | None, limit: float) -> str:
    """``PASS``/``FAIL`` against an upper limit."""
    if value is None:
        return "not measured"
    return "PASS" if value <= limit else "FAIL"


def report(data: dict[str, Any], full: list[SidecarRun], noop: list[SidecarRun]) -> str:
    """The printed report."""
    out: list[str] = []
    certs = full[0].certificates
    seconds = statistics.median(r.exit.seconds for r in full)
    requests = sum(sum(r.requests.values()) for r in full)
    per_cert = requests / sum(r.stored for r in full)
    rows = [
        ["client", "certificates", "seconds", "certificates/s", "ACME requests/cert", "peak RSS"]
    ]
    rows.append(
        [
            f"acme-sidecar {data['sidecar']['version']} (SNI, 1 process)",
            str(certs),
            f"{seconds:.2f}",
            f"{certs / seconds:.2f}",
            f"{per_cert:.1f}",
            mb(max(r.exit.maxrss_kb for r in full)),
        ]
    )
    for peer in data["peers"]:
        if not peer["runs"]:
            continue
        issued = peer["runs"] - len(peer["failures"])
        rate = issued / peer["measured_seconds"] if peer["measured_seconds"] else 0.0
        rows.append(
            [
                f"{peer['version']} (1 process/cert)",
                str(peer["certificates"]),
                ("~" if peer["extrapolated"] else "") + f"{peer['seconds']:.2f}",
                f"{rate:.2f}",
                f"{peer['requests_per_cert']:.1f}" if peer["requests_per_cert"] else "-",
                mb(peer["peak_rss_kb"]),
            ]
        )
    out += table(rows, right=(1, 2, 3, 4, 5))
    out.append("")
    if len(full) > 1:
        times = ", ".join(f"{r.exit.seconds:.2f}" for r in full)
        out.append(
            f"acme-sidecar full cycle: median of {len(full)} runs, each from an empty "
            f"volume: {times} s"
        )
    for peer in data["peers"]:
        if peer["note"]:
            out.append(f"{peer['client']}: {peer['note']}")
        if peer["failures"]:
            out.append(f"{peer['client']}: {len(peer['failures'])} runs failed")
    for skipped in data["peers_skipped"]:
        out.append(f"peer skipped: {skipped}")
    noop_s = statistics.median(r.exit.seconds for r in noop)
    out.append(
        f"no-op cycle ({noop[0].certificates} certificates, nothing due): {noop_s:.2f} s "
        f"(median of {len(noop)}), {plural(sum(noop[0].requests.values()), 'ACME request')}, "
        f"{plural(noop[0].orders, 'order')}"
    )
    big = data.get("noop_large")
    if big:
        out.append(
            f"no-op cycle ({big['domains']} domains, {big['certificates']} certificates): "
            f"{big['median_seconds']:.2f} s (median of {len(big['runs'])}: "
            f"{', '.join(f'{s:.2f}' for s in big['runs'])}), "
            f"{plural(big['acme_requests'], 'ACME request')}, {plural(big['orders'], 'order')}; "
            f"issuing them first took "
            f"{big['issue']['seconds']:.1f} s ({big['issue']['stored']} certificates, "
            f"{big['issue']['requests_per_cert']:.1f} requests/cert)"
        )
        tries = big["issue"]["attempts_seconds"]
        if len(tries) > 1:
            out.append(
                f"  issuing needed {len(tries)} runs of `once` ({', '.join(map(str, tries))} s):"
                " Pebble hung and was restarted in between; the numbers above are the last run"
            )
    idle = data["sidecar"]["idle"]
    out.append(
        f"acme-sidecar memory: peak RSS of `once` {mb(max(r.exit.maxrss_kb for r in full))} "
        f"(full cycle), {mb(noop[0].exit.maxrss_kb)} (no-op); `run` idle after a cycle: "
        f"RSS {mb(idle['rss_kb'])} (high-water {mb(idle['hwm_kb'])})"
    )
    out.append("")
    out.append(f"phases of the first full cycle: {fmt_phases(full[0])}")
    gaps = full[0].store_gaps()
    if gaps:
        out.append(
            f"  between consecutive cert.stored lines: {gaps[0]:.1f} ms (first tenth), "
            f"{gaps[1]:.1f} ms (last tenth)"
        )
    out.append(f"phases of the no-op cycle: {fmt_phases(noop[0])}")
    if big:
        out.append(f"phases of the {big['domains']}-domain no-op cycle: {big['phases_text']}")
        out.append(f"phases of the {big['domains']}-domain issuing cycle: {big['issue_phases']}")
        big_gaps = big["issue"]["store_gap_ms_first_last_tenth"]
        if big_gaps:
            out.append(
                f"  between consecutive cert.stored lines: {big_gaps[0]:.1f} ms (first tenth), "
                f"{big_gaps[1]:.1f} ms (last tenth)"
            )
    by = full[0].requests
    stored = full[0].stored
    out.append(
        "acme-sidecar requests/cert by endpoint: "
        + ", ".join(f"{k} {v / stored:.2f}" for k, v in by.most_common())
    )
    for peer in data["peers"]:
        issued = peer["runs"] - len(peer["failures"])
        if issued:
            out.append(
                f"{peer['client']} requests/cert by endpoint: "
                + ", ".join(
                    f"{k} {v / issued:.2f}" for k, v in peer["requests_by_endpoint"].items()
                )
            )
    out.append("")
    t = data["targets"]
    out.append("README targets:")
    out.append(
        f"  {data['domains']} domains SNI full cycle <= {TARGETS['full_cycle_seconds']:.0f} s: "
        f"{seconds:.2f} s {verdict(seconds, TARGETS['full_cycle_seconds'])}"
    )
    out.append(
        f"  ACME requests/cert <= {TARGETS['requests_per_cert']:.0f}: {per_cert:.1f} "
        f"{verdict(per_cert, TARGETS['requests_per_cert'])}"
    )
    out.append(
        f"  no-op cycle for 1,000 domains <= {TARGETS['noop_1000_seconds']:.0f} s, no order: "
        + (
            f"{t['noop_1000_seconds']:.2f} s, {big['orders']} orders "
            f"{verdict(t['noop_1000_seconds'], TARGETS['noop_1000_seconds'])}"
            if big and big["domains"] == 1000
            else "not measured (--noop-domains 1000)"
        )
    )
    out.append(
        f"  idle memory <= {TARGETS['idle_rss_mb']:.0f} MB: {mb(idle['rss_kb'])} "
        f"{verdict(idle['rss_kb'] / 1024, TARGETS['idle_rss_mb'])}"
    )
    out.append("")
    extra = "".join(f", {k}={v}" for k, v in data["sidecar"]["extra_env"].items())
    out.append(
        f"setup: {data['environment']['cpus']} CPUs (1-min load average "
        f"{data['environment']['load_average_1min'][0]} before, "
        f"{data['environment']['load_average_1min'][1]} after), "
        f"Pebble {data['environment']['pebble']}, "
        f"acme-sidecar from {data['sidecar']['source']}; DOCKER_HOST = the world's dockerd with "
        f"no container of compose project {PROJECT!r} (Docker API asked, nothing restarted); "
        f"SKIP_HTTP_VERIFICATION=n{extra}; world started in {data['world_start_seconds']:.1f} s; "
        f"benchmark took {data['total_seconds']:.0f} s"
        + (
            f"; Pebble hung and was restarted {data['pebble_restarts']} times (runs repeated)"
            if data["pebble_restarts"]
            else ""
        )
    )
    return "\n".join(out)


# --- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--domains", type=int, default=50, help="mail domains (default 50)")
    parser.add_argument(
        "--peers", default="", help="comma list of peer clients: certbot, lego (default none)"
    )
    parser.add_argument(
        "--peer-domains",
        type=int,
        default=None,
        metavar="K",
        help="run each peer for only K certificates and extrapolate (default: all)",
    )
    parser.add_argument(
        "--noop-domains",
        type=int,
        default=0,
        metavar="M",
        help="also issue M domains once, then time the no-op cycle (default 0: skip)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="full cycles (each from an empty volume) and no-op cycles to run (default 3)",
    )
    parser.add_argument(
        "--sidecar-rev",
        default=None,
        metavar="REV",
        help="benchmark acme_sidecar as of this git revision (default: the working tree)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="extra environment for acme-sidecar (repeatable), e.g. ACME_PARALLEL_ORDERS=16",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="write JSON here")
    args = parser.parse_args(argv)
    args.extra_env = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--set wants VAR=VALUE, got {item!r}")
        args.extra_env[name] = value
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = set(peers) - {"certbot", "lego"}
    if unknown:
        parser.error(f"unknown peer(s): {', '.join(sorted(unknown))} (known: certbot, lego)")
    if args.domains < 1 or args.repeat < 1:
        parser.error("--domains and --repeat must be at least 1")
    args.peer_list = peers
    return args


def measure_large(
    sidecar: Sidecar, world: World, scratch: Path, domains: int, repeat: int
) -> dict[str, Any]:
    """Issue ``domains`` domains once, then time the no-op cycle ``repeat`` times."""
    say(f"seeding {domains} domains; issuing them once with acme-sidecar")
    seed(world, domains)
    volume = scratch / f"volume-{domains}"
    issue: SidecarRun | None = None
    attempts: list[float] = []
    for attempt in range(1, 5):
        began = time.monotonic()
        issue = sidecar.once_watched(f"issue {domains} #{attempt}", volume, timeout=3600)
        attempts.append(time.monotonic() - began)
        if issue is not None:
            break
        say("  Pebble was restarted: running once again (it orders what is still missing)")
    if issue is None:
        raise RuntimeError(f"could not issue {domains} domains: Pebble kept hanging")
    say(f"  issued {issue.stored} certificates in {issue.exit.seconds:.1f} s")
    runs = [sidecar.once(f"no-op {domains} #{i + 1}", volume) for i in range(repeat)]
    median = statistics.median(r.exit.seconds for r in runs)
    say(f"  no-op: {', '.join(f'{r.exit.seconds:.2f}' for r in runs)} s")
    issue_requests = sum(issue.requests.values())
    return {
        "domains": domains,
        "certificates": runs[0].certificates,
        "median_seconds": round(median, 3),
        "runs": [round(r.exit.seconds, 3) for r in runs],
        "acme_requests": sum(runs[0].requests.values()),
        "orders": max(r.orders for r in runs),
        "phases_text": fmt_phases(runs[0]),
        "issue_phases": fmt_phases(issue),
        "noop_runs": [r.summary() for r in runs],
        "issue": issue.summary()
        | {
            "requests_per_cert": issue_requests / issue.stored if issue.stored else 0.0,
            "attempts_seconds": [round(a, 1) for a in attempts],
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Start the world, measure, print the table, write JSON."""
    args = parse_args(argv)
    began = time.monotonic()
    load_before = os.getloadavg()[0]
    launcher = Launcher()
    scratch = launcher.root / "bench"
    scratch.mkdir()
    try:
        say(f"starting the test world in {launcher.root}")
        world = launcher.world()
        world_seconds = time.monotonic() - began
        pebble_log = PebbleLog(launcher.root / "pebble" / "pebble.log")
        src, source = prepare_source(args.sidecar_rev, scratch)
        sidecar = Sidecar(world, pebble_log, src, args.extra_env)
        version = (output_of(sidecar.argv("--version"), sidecar.env(scratch), src) or "?").split()[
            -1
        ]
        say(f"acme-sidecar {version} from {source}")

        domains = seed(world, args.domains)
        full: list[SidecarRun] = []
        first_volume = scratch / "unset"
        for i in range(args.repeat):
            run = None
            for attempt in range(1, 4):
                volume = scratch / f"volume-{args.domains}-{i + 1}-{attempt}"
                run = sidecar.once_watched(f"full #{i + 1}", volume)
                if run is not None:
                    if i == 0:
                        first_volume = volume
                    break
                say(f"  full cycle #{i + 1} is void (Pebble restarted): again, new volume")
            if run is None:
                raise RuntimeError("Pebble kept hanging during the full cycles")
            say(
                f"full cycle #{i + 1}: {run.exit.seconds:.2f} s, {run.stored} certificates, "
                f"{sum(run.requests.values())} ACME requests"
            )
            full.append(run)
        noop = [sidecar.once(f"no-op #{i + 1}", first_volume) for i in range(args.repeat)]
        say(f"no-op cycles: {', '.join(f'{r.exit.seconds:.2f}' for r in noop)} s")
        if any(r.orders for r in noop):
            say("WARNING: a no-op cycle placed an ACME order")
        idle = sidecar.idle_rss(first_volume)
        say(f"run idle: RSS {mb(idle['rss_kb'])}")

        peers: list[PeerResult] = []
        skipped: list[str] = []
        certs = cert_names(domains)
        for client in args.peer_list:
            try:
                peers.append(
                    run_peer(client, world, pebble_log, scratch / client, certs, args.peer_domains)
                )
            except FileNotFoundError as exc:
                skipped.append(f"{client}: {exc}")
                say(f"skipping {client}: {exc}")

        large = (
            measure_large(sidecar, world, scratch, args.noop_domains, args.repeat)
            if args.noop_domains
            else None
        )
        full_seconds = statistics.median(r.exit.seconds for r in full)
        requests = sum(sum(r.requests.values()) for r in full)
        data: dict[str, Any] = {
            "domains": args.domains,
            "environment": {
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
                "pebble": output_of(["dpkg-query", "-W", "-f=${Version}", "pebble"]),
            },
            "sidecar": {
                "version": version,
                "source": source,
                "extra_env": args.extra_env,
                "docker": f"DOCKER_HOST={world.docker.docker_host}, no container of {PROJECT}",
                "full": [r.summary() for r in full],
                "full_median_seconds": round(full_seconds, 3),
                "requests_per_cert": round(requests / sum(r.stored for r in full), 2),
                "noop": [r.summary() for r in noop],
                "noop_median_seconds": round(statistics.median(r.exit.seconds for r in noop), 3),
                "idle": idle,
            },
            "peers": [p.summary() for p in peers],
            "peers_skipped": skipped,
            "noop_large": large,
            "targets": {
                "full_cycle_seconds": round(full_seconds, 3),
                "requests_per_cert": round(requests / sum(r.stored for r in full), 2),
                "noop_1000_seconds": large["median_seconds"] if large else None,
                "idle_rss_mb": round(idle["rss_kb"] / 1024, 1),
            },
            "world_start_seconds": round(world_seconds, 2),
            "pebble_restarts": sidecar.pebble_restarts,
        }
    finally:
        say("stopping the test world")
        launcher.close()
    data["total_seconds"] = round(time.monotonic() - began, 1)
    data["environment"]["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(report(data, full, noop))
    if args.json is not None:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
