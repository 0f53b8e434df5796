"""The printed report: one table side by side, then phases, memory and the targets.

Pure formatting of what ``bench.run`` measured; touches nothing.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from .measure import SidecarRun
from .world import PROJECT

TARGETS = {
    "full_cycle_seconds": 4.0,
    "requests_per_cert": 13.0,
    "noop_1000_seconds": 2.0,
    "idle_rss_mb": 50.0,
    "quiet_10000_seconds": 2.0,
}


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
        rounds = big["issue"].get("budget_rounds", 1)
        if rounds > 1:
            out.append(
                f"  issuing took {rounds} runs of `once` (acme-sidecar places at most 270 orders "
                "per 3 hours, Let's Encrypt's 300 less 10 %; the ledger's order times were moved "
                "3 h back in between); the numbers above are their sums"
            )
        if len(tries) > rounds:
            out.append(
                f"  Pebble hung and was restarted {len(tries) - rounds} times while issuing "
                f"(runs of `once`: {', '.join(map(str, tries))} s); those runs were repeated"
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
        out.append(
            f"phases of the (first) {big['domains']}-domain issuing cycle: {big['issue_phases']}"
        )
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
    quiet = {q["domains"]: q for q in data.get("quiet", [])}
    out.append(
        f"  quiet cycle for 10,000 domains (in-process) <= {TARGETS['quiet_10000_seconds']:.0f} s: "
        + (
            f"{quiet[10000]['quiet_median_seconds']:.2f} s "
            f"{verdict(quiet[10000]['quiet_median_seconds'], TARGETS['quiet_10000_seconds'])}"
            if 10000 in quiet
            else "not measured (--quiet-domains 10000)"
        )
    )
    for q in quiet.values():
        out.append(
            f"quiet cycle in-process, {q['domains']} domains ({q['certificates']} certificates): "
            f"{q['quiet_median_seconds']:.3f} s (median of {len(q['quiet_seconds'])}: "
            f"{', '.join(f'{s:.3f}' for s in q['quiet_seconds'])}); first cycle (validates "
            f"every name) {q['first_seconds']:.2f} s"
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
