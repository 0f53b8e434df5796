"""Benchmark acme-sidecar against certbot (and lego) on the real-component test world.

Run from the repository root::

    .venv/bin/python -m bench.run [--domains 50] [--peers certbot,lego] [--peer-domains K]
                                  [--noop-domains 1000] [--repeat 3] [--json out.json]
                                  [--set ACME_PARALLEL_ORDERS=16] [--sidecar-rev HEAD]
                                  [--quiet-domains 1000,10000]

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
5. ``--quiet-domains``: the quiet cycle in-process (``bench.quiet``), after the world stopped.

certbot is installed into ``.bench-venv`` (created when missing); lego is Debian's ``lego``.
A watchdog restarts Pebble when its store deadlocks (see ``PebbleWatchdog``) and the affected
run is repeated. ACME requests are counted from Pebble's log (``<world>/pebble/pebble.log``, one
``METHOD /path -> calling handler()`` line per request). Peak RSS is the ``ru_maxrss`` that
``wait4`` reports for the measured process alone. Times of the sidecar's phases come from the
timestamps of its JSON log lines, relative to the moment the process was spawned.

This module parses the command line and runs the steps above; the package holds the rest:
``world`` (seeding MariaDB, Pebble's request log and watchdog), ``measure`` (one measured process,
a sidecar run's phases and requests), ``clients`` (acme-sidecar, certbot, lego) and ``report``.
``python -m bench`` is the same as ``python -m bench.run``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.world.launcher import Launcher, World

from .clients import PeerResult, Sidecar, age_orders, prepare_source, run_peer
from .measure import SidecarRun, output_of
from .report import fmt_phases, mb, report
from .world import PROJECT, REPO, PebbleLog, cert_names, say, seed


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
    parser.add_argument(
        "--quiet-domains",
        default="",
        metavar="N,M",
        help="also time the quiet cycle in-process (bench.quiet) at these domain counts, "
        "after the world is stopped (default: skip)",
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


THREE_HOURS = timedelta(hours=3)  # the window of the order budget


def run_quiet(domains: str, rev: str | None) -> list[dict[str, Any]]:
    """``python -m bench.quiet`` at ``domains`` (against ``rev`` when given): its results."""
    with tempfile.TemporaryDirectory(prefix="bench-quiet-") as tmp:
        out = Path(tmp) / "quiet.json"
        cmd = [sys.executable, "-m", "bench.quiet", "--domains", domains, "--json", str(out)]
        if rev is not None:
            cmd += ["--rev", rev]
        say(f"quiet cycle in-process: {' '.join(cmd[1:])}")
        subprocess.run(cmd, cwd=REPO, check=True, stdout=sys.stderr)
        results: list[dict[str, Any]] = json.loads(out.read_text())["results"]
        return results


def issue_all(sidecar: Sidecar, volume: Path, domains: int) -> tuple[list[SidecarRun], list[float]]:
    """Issue every certificate of ``domains`` onto ``volume``: the runs of ``once`` that counted
    and the wall time of every run tried.

    ``once`` is run again when Pebble hung (it orders what is still missing) and when the
    sidecar's order budget (270 per 3 hours) left certificates to a later cycle; then the
    ledger's order times are first moved 3 hours into the past (``age_orders``).
    """
    rounds: list[SidecarRun] = []
    attempts: list[float] = []
    restarts = failures = 0
    while restarts < 4 and failures < 4:
        began = time.monotonic()
        label = f"issue {domains} #{len(attempts) + 1}"
        run = sidecar.once_watched(label, volume, timeout=3600, budget_ok=True, failed_ok=True)
        attempts.append(time.monotonic() - began)
        if run is None:
            restarts += 1
            say("  Pebble was restarted: running once again (it orders what is still missing)")
            continue
        rounds.append(run)
        if run.failed:  # Pebble timed out on an order: wait out the sidecar's back-off
            failures += 1
            wait = min(run.next_check_seconds, 150.0) + 2
            say(f"  {run.failed} certificates failed (see the log): once again in {wait:.0f} s")
            time.sleep(wait)
            if not run.budget_held:
                continue
        if not run.budget_held:
            return rounds, attempts
        aged = age_orders(volume, THREE_HOURS)
        if not aged:
            raise RuntimeError(f"{label}: held back by the order budget, but no order to age")
        say(
            f"  {run.stored} certificates stored, {run.budget_held} held back by the order "
            f"budget: {aged} order times moved 3 h back, once again"
        )
    raise RuntimeError(f"could not issue {domains} domains: Pebble kept hanging or failing")


def measure_large(
    sidecar: Sidecar, world: World, scratch: Path, domains: int, repeat: int
) -> dict[str, Any]:
    """Issue ``domains`` domains once, then time the no-op cycle ``repeat`` times."""
    say(f"seeding {domains} domains; issuing them once with acme-sidecar")
    seed(world, domains)
    volume = scratch / f"volume-{domains}"
    rounds, attempts = issue_all(sidecar, volume, domains)
    stored = sum(r.stored for r in rounds)
    seconds = sum(r.exit.seconds for r in rounds)
    issue_requests = sum(sum(r.requests.values()) for r in rounds)
    say(f"  issued {stored} certificates in {seconds:.1f} s ({len(rounds)} runs of once)")
    runs = [sidecar.once(f"no-op {domains} #{i + 1}", volume) for i in range(repeat)]
    median = statistics.median(r.exit.seconds for r in runs)
    say(f"  no-op: {', '.join(f'{r.exit.seconds:.2f}' for r in runs)} s")
    return {
        "domains": domains,
        "certificates": runs[0].certificates,
        "median_seconds": round(median, 3),
        "runs": [round(r.exit.seconds, 3) for r in runs],
        "acme_requests": sum(runs[0].requests.values()),
        "orders": max(r.orders for r in runs),
        "phases_text": fmt_phases(runs[0]),
        "issue_phases": fmt_phases(rounds[0]),
        "noop_runs": [r.summary() for r in runs],
        # the first issuing run, with the sums over all of them
        "issue": rounds[0].summary()
        | {
            "seconds": round(seconds, 3),
            "stored": stored,
            "acme_requests": issue_requests,
            "requests_per_cert": issue_requests / stored if stored else 0.0,
            "attempts_seconds": [round(a, 1) for a in attempts],
            "budget_rounds": len(rounds),
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
    data["quiet"] = run_quiet(args.quiet_domains, args.sidecar_rev) if args.quiet_domains else []
    data["targets"]["quiet_10000_seconds"] = next(
        (q["quiet_median_seconds"] for q in data["quiet"] if q["domains"] == 10000), None
    )
    data["total_seconds"] = round(time.monotonic() - began, 1)
    data["environment"]["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(report(data, full, noop))
    if args.json is not None:
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
