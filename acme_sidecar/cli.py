"""The command line: the only place that parses arguments and exits; ``wiring`` builds the
adapters and hooks it runs with.

Subcommands: ``run`` (the daemon), ``once`` (one cycle), ``check`` (dry run), ``status``,
``health``, ``import`` (an own certificate as the top-level pair, ``shell/importer.py``).
Exit codes: 0 fine, 1 a certificate is missing or invalid after ``once`` (or an import refused),
2 invalid settings.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from acme_sidecar import __version__
from acme_sidecar.adapters.volume import CertStore, toppair
from acme_sidecar.config.policies import cycle_policy, daemon_policy, own_policy, rate_limits
from acme_sidecar.config.settings import Settings, load_settings
from acme_sidecar.core.errors import ConfigError, StoreError
from acme_sidecar.core.ledger import State
from acme_sidecar.core.report import Outcome
from acme_sidecar.core.settle import force_seen
from acme_sidecar.core.values import mask_url
from acme_sidecar.ops.hooks import expiry_lines, health_problems, read_health
from acme_sidecar.ops.log import configure
from acme_sidecar.ops.terminal import Printable
from acme_sidecar.shell.cycle import Deps, guarded_cycle, look, pacing_of, plan_wake, summarize
from acme_sidecar.shell.daemon import Daemon, after_cycle
from acme_sidecar.wiring import build_deps, build_hooks

# The other subcommands' modules (import, status, the SKIP_LETS_ENCRYPT watch) are imported when
# they run: a quiet cycle of `run` does not need them (the daemon's memory).

log = structlog.get_logger("acme_sidecar")

HTTP_CA = "ACME_ALLOW_HTTP_CA=y: the CA is reached over plain http (for a test CA only)"
SKIPPED = {  # what becomes of a mailcow value left out (config.skipped)
    "ADDITIONAL_SAN": "this entry is left out; the other names are ordered",
    "ACME_ACCOUNT_EMAIL": "no contact is sent to the CA",
}


def _health(settings: Settings) -> int:
    health = read_health(settings.acme_health_file)
    now = datetime.now(UTC)
    out = Printable(sys.stdout)
    try:
        problems = health_problems(
            health, now, failing_for=timedelta(seconds=settings.acme_health_fail_after)
        )
        warnings = "".join(f"; warning: {w}" for w in expiry_lines(health, now))
    except (ValueError, TypeError, OverflowError) as exc:  # hand-edited, or an older version's
        print(
            f"unhealthy: the health file {settings.acme_health_file} is damaged "
            f"({type(exc).__name__}: {str(exc)[:200]}); the next cycle rewrites it",
            file=out,
        )
        return 1
    if problems:
        print("unhealthy: " + "; ".join(problems), file=out)
        return 1
    if settings.skip_lets_encrypt:
        print(f"healthy: SKIP_LETS_ENCRYPT=y{warnings}", file=out)
        return 0
    print(f"healthy: last cycle {health.get('last_cycle') or 'not yet run'}{warnings}", file=out)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acme-sidecar",
        description="Keeps the TLS certificates of a mail server stack valid over ACME.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the daemon loop (the container's command)")
    sub.add_parser("once", help="run one cycle; exit 0 when every certificate is valid after it")
    sub.add_parser("check", help="dry run: every name with its verdict, then the plan")
    status = sub.add_parser("status", help="the certificates in the volume")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sub.add_parser("health", help="exit 0 when healthy, 1 when not (the container HEALTHCHECK)")
    own = sub.add_parser(
        "import", help="check an own certificate and install it as the top-level pair"
    )
    own.add_argument("--cert", required=True, type=Path, help="the certificate (PEM)")
    own.add_argument("--key", required=True, type=Path, help="its private key (PEM)")
    own.add_argument("--chain", type=Path, help="intermediate certificates, appended (PEM)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``acme-sidecar`` and ``python -m acme_sidecar``."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"acme-sidecar: invalid settings: {exc}", file=sys.stderr)
        return 2
    configure(settings.acme_log_format, tz=settings.tz)
    for variable, value in settings.lenient_flags:
        log.warning("config.lenient", variable=variable, value=value, reading="no")
    for variable, value, valid in settings.skipped_values:
        log.warning("config.skipped", variable=variable, value=value, valid=valid,
                    action=SKIPPED[variable])  # fmt: skip
    if settings.hostname_given:
        used, reason = settings.mailcow_hostname, "host names are used in lower case (IDNA)"
        log.info("config.hostname", given=settings.hostname_given, used=used, reason=reason)
    if settings.verify_https_note:
        log.info("config.verify_https", reason=settings.verify_https_note)
    if settings.le_staging and settings.directory_url:
        log.warning(
            "config.directory",
            reason="LE_STAGING=y wins over DIRECTORY_URL",
            ignored=mask_url(settings.directory_url),
        )
    if settings.directory.startswith("http://"):
        log.warning("config.http_ca", directory=mask_url(settings.directory), reason=HTTP_CA)
    if args.command == "status":
        return _status(settings, as_json=args.json)
    if args.command == "health":
        return _health(settings)
    if args.command == "import":  # writes the top-level pair only: nothing else is moved
        store = CertStore(
            settings.acme_cert_dir, backup_keep=settings.acme_backup_keep, set_aside=False
        )
        from acme_sidecar.shell.importer import import_pair

        out = Printable(sys.stdout)
        return import_pair(own_policy(settings), store, args.cert, args.key, args.chain, out=out)
    stop = threading.Event()
    if args.command == "check":  # a dry run: no takeover, nothing written
        return _check(settings, build_deps(settings, stop, read_only=True))
    deps = build_deps(settings, stop)
    from acme_sidecar.shell.takeover import take_over_once

    take_over_once(deps.store, settings.directory, deps.clock())  # mailcow's acme.sh keys
    if args.command == "once":
        hooks = build_hooks(settings)  # before the cycle: it taps the log for the mailcow UI
        if settings.skip_lets_encrypt:
            log.info("daemon.idle", reason="SKIP_LETS_ENCRYPT=y: the top-level pair is checked")
            from acme_sidecar.shell.watch import watch_cycle

            report = watch_cycle(cycle_policy(settings, _credentials(deps)), deps)
            after_cycle(report, deps, hooks)
            return 0 if report.outcome is Outcome.OK else 1
        report = guarded_cycle(cycle_policy(settings, _credentials(deps)), deps)
        summarize(report, plan_wake(report, daemon_policy(settings), deps.clock(), streak=1))
        after_cycle(report, deps, hooks)
        return 0 if report.all_valid else 1
    daemon = Daemon(
        daemon_policy(settings),
        cycle_policy(settings, _credentials(deps)),
        deps,
        stop=stop,
        hooks=build_hooks(settings, daemon=True),
    )
    daemon.install_signals()
    return daemon.run()


def _credentials(deps: Deps) -> str:
    """The hash of the DNS-01 credentials the hosts were built with ("" without DNS-01)."""
    return deps.dns01.credentials if deps.dns01 is not None else ""


def _check(settings: Settings, deps: Deps) -> int:
    """The dry run: every name with its verdict, then the plan. Reads the volume (a damaged
    file is reported, not moved) and writes nothing; what it prints is escaped (CAA values
    and the like are text others control)."""
    out = Printable(sys.stdout)
    try:
        ledger, damage = deps.store.ledger.read()
    except (StoreError, OSError) as exc:
        ledger, damage = State(), str(exc)
    if damage:
        path = deps.store.layout.state_path
        print(f"warning: {path} is unreadable ({damage}); checked without it", file=out)
    state = force_seen(ledger, deps.store.force_requested(), deps.clock())
    report = look(cycle_policy(settings, _credentials(deps)), deps, state, fresh=True)
    for file, error in sorted(_unreadable(deps.store).items()):
        print(f"unreadable: {file}: {error} (the daemon sets it aside)", file=out)
    if report.outcome is Outcome.SOURCE_DOWN:
        print("cannot read the domain database; see the log above", file=out)
        return 1
    print(f"{'NAME':<45} {'VERDICT':<8} REASON", file=out)
    for group in report.groups:
        for name in group.names:
            verdict = report.verdicts.get(name)
            mark = "ok" if verdict and verdict.ok else "skip"
            print(f"{name:<45} {mark:<8} {verdict.reason if verdict else ''}", file=out)
    print("\nPLAN", file=out)
    if report.plan is None or not report.plan.certs:
        print("nothing can be ordered: no name passed validation", file=out)
        return 1
    for cert in report.plan.certs:
        print(f"{cert.action.value:<7} {cert.spec.name}: {cert.reason}", file=out)
        print(f"        names: {' '.join(cert.spec.domains)}", file=out)
    for name in report.plan.archive:
        print(f"archive {name}: no longer wanted (only after a cycle without errors)", file=out)
    return 0


def _unreadable(store: CertStore) -> dict[str, str]:
    """The certificate files ``store.load`` found unreadable, and the top-level pair's."""
    found = {f: e for f, e in store.unreadable().items() if f != str(store.layout.state_path)}
    try:
        pair = toppair.read_top(store)
    except (StoreError, OSError) as exc:
        return found | {str(store.root / "cert.pem"): str(exc)}
    facts = toppair.inspect_pair(*pair) if pair else None
    if facts is not None and facts.unreadable:
        file, why = toppair.unreadable_file(store, facts)
        found[str(file)] = why
    return found


def _status(settings: Settings, *, as_json: bool) -> int:
    from acme_sidecar.shell.status import collect, render

    store = CertStore(settings.acme_cert_dir, set_aside=False)  # reads only
    now = datetime.now(UTC)
    policy = own_policy(settings)
    pacing = pacing_of(daemon_policy(settings))
    days = settings.acme_notify_expiry_days
    limits = rate_limits(settings)
    dane = settings.dane_state if settings.acme_dane != "off" else None
    data = collect(store, now, own=policy, days=days, pacing=pacing, limits=limits, dane=dane)
    render(data, Printable(sys.stdout), as_json=as_json)
    return 0
