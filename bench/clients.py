"""The clients measured: acme-sidecar (from a source tree), certbot and lego.

``Sidecar`` runs ``python -m acme_sidecar once``/``run`` with the settings of the test world;
``run_peer`` runs certbot (installed into ``.bench-venv``, created when missing) or Debian's
lego once per certificate, sequentially, as cron jobs run them. Touches the scratch directory,
``.bench-venv`` and the processes it starts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.world.launcher import World

from .measure import Exit, SidecarRun, output_of, run_measured
from .world import HOSTNAME, PROJECT, REPO, PebbleLog, PebbleWatchdog, say

BENCH_VENV = REPO / ".bench-venv"

# --- acme-sidecar ------------------------------------------------------------------------------


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

    def once_watched(
        self,
        label: str,
        cert_dir: Path,
        timeout: float = 600,
        budget_ok: bool = False,
        failed_ok: bool = False,
    ) -> SidecarRun | None:
        """``once`` with the Pebble watchdog; ``None`` when Pebble hung and was restarted.

        With ``budget_ok``, a run that failed nothing but left certificates to a later cycle
        because of the order budget (exit 1) is returned too; with ``failed_ok``, a run in
        which certificates failed (exit 1) as well.
        """
        with PebbleWatchdog(self.world.pebble, self.pebble_log) as dog:
            run = self.once(label, cert_dir, timeout, check=False)
        if dog.restarts:
            self.pebble_restarts += dog.restarts
            return None
        held = budget_ok and run.budget_held > 0 and run.failed == 0
        if run.exit.code != 0 and not held and not (failed_ok and run.failed > 0):
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


def age_orders(cert_dir: Path, by: timedelta) -> int:
    """Move the order times in the volume's ledger (``acme/state.json``) ``by`` into the past.

    The sidecar places at most 270 orders per 3 hours (``core/budget.py``); the benchmark
    needs more certificates than that issued before it times a no-op cycle, and Pebble has
    no such limit. Returns how many times were moved (0 for a ledger without order times).
    """
    path = cert_dir / "acme" / "state.json"
    if not path.is_file():
        return 0
    state = json.loads(path.read_text())
    moved = 0
    for ledger in state.get("certs", {}).values():
        placed = [datetime.fromisoformat(t) - by for t in ledger.get("placed", [])]
        ledger["placed"] = [t.isoformat() for t in placed]
        moved += len(placed)
    temp = path.with_name(path.name + ".bench")
    temp.write_text(json.dumps(state, sort_keys=True))
    temp.chmod(0o600)
    temp.replace(path)
    return moved


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
