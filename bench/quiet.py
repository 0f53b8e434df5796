"""The quiet cycle in-process: a real volume of N SNI certificates, nothing due, timed.

Run from the repository root::

    .venv/bin/python -m bench.quiet [--domains 1000,10000] [--repeat 3] [--rev REV]
                                    [--profile FILE]

For each N, a certificate volume (the real ``CertStore``) holds one valid certificate per mail
domain (SNI mode: autodiscover., autoconfig. and mta-sts. of the domain) plus the server
certificate, each written by the store's own ``write_cert`` and the server certificate made the
default pair. They are signed by one local test CA on one shared EC key (the volume's
``acme/key.pem``), so 10,000 are made in seconds; the volume is kept under
``/tmp/acme-sidecar-bench/`` by N and hard-linked into a scratch directory for each run (every
write of the store is a rename, so the cache is never changed).

The cycle's outside systems are fakes: the database returns the N domains (MTA-STS active on
each), DNS answers this server's address for every name and no CAA record, the HTTP self-check
passes, the services record what they are asked, and the issuer fails the run when it is asked
for at all (a quiet cycle orders nothing). The first cycle validates every name and records the
verdicts; the next ``--repeat`` cycles, each on the ledger of the one before as the daemon
does, are the quiet cycles timed (``guarded_cycle``: lock, recovery, the five stages). Logging
is the product's JSON logging, into a sink that counts the lines.

``--rev REV`` runs the same bench against acme_sidecar as of a git revision: the volumes are
made first by this tree, then ``git archive REV acme_sidecar`` is unpacked into a temporary
directory together with this file, and the bench runs there with ``PYTHONPATH`` pointing at it.
This module imports nothing else of ``bench`` or ``tests`` for that reason.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from acme_sidecar.adapters.volume import CertStore
from acme_sidecar.config.policies import CyclePolicy, OwnPolicy, ValidationPolicy
from acme_sidecar.core.discover import NameRules
from acme_sidecar.core.model import DomainRows, Verdict
from acme_sidecar.core.plan import Shape, wanted_specs
from acme_sidecar.core.report import Outcome
from acme_sidecar.core.validate import CaaLookup, Lookup
from acme_sidecar.shell.cycle import guarded_cycle
from acme_sidecar.shell.gather import Deps

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(tempfile.gettempdir()) / "acme-sidecar-bench"
LAYOUT = "v1"  # bump when the volume's layout changes: the cached volumes are made again
HOST = "mail.bench.test"
ADDRESS = "192.0.2.10"
LIFETIME = timedelta(days=90)
FRESH_FOR = timedelta(days=20)  # a cached volume older than this is made again (renewal at 60)


def say(text: str) -> None:
    """Progress output (stderr; stdout holds the results)."""
    print(text, file=sys.stderr, flush=True)


def domains_of(count: int) -> tuple[str, ...]:
    """The benchmark's mail domains."""
    return tuple(f"quiet{i:05d}.test" for i in range(count))


def rows_of(count: int) -> DomainRows:
    """The database rows: ``count`` domains, MTA-STS active on each."""
    domains = domains_of(count)
    return DomainRows(domains, mta_sts_domains=frozenset(domains))


def policy() -> CyclePolicy:
    """SNI mode, the HTTP self-check on, CAA checked, Let's Encrypt's limits."""
    return CyclePolicy(
        rules=NameRules(hostname=HOST),
        shape=Shape(sni=True),
        validation=ValidationPolicy(caa_identities=("letsencrypt.org",)),
        own=OwnPolicy(hostname=HOST),
    )


# --- the volume ------------------------------------------------------------------------------


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def build_volume(count: int) -> Path:
    """The cached volume of ``count`` domains, made when missing or old (see the docstring)."""
    root = CACHE / f"quiet-{LAYOUT}-{count}"
    done = root / "complete"
    if done.is_file():
        made = datetime.fromisoformat(done.read_text().strip())
        if datetime.now(UTC) - made < FRESH_FOR:
            return root / "volume"
    if root.exists():
        shutil.rmtree(root)
    began = time.monotonic()
    now = datetime.now(UTC)
    volume = root / "volume"
    store = CertStore(volume)
    store.prepare()
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = _pem_key(key)
    acme_dir = volume / "acme"  # the layout of every revision
    (acme_dir / "key.pem").write_bytes(key_pem)
    (acme_dir / "key.pem").chmod(0o600)
    certs: Any = getattr(store, "certs", store)  # older revisions: the store itself
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme-sidecar bench CA")])
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    ca_pem = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    p = policy()
    from acme_sidecar.core.discover import candidate_groups

    groups = candidate_groups(p.rules, rows_of(count))
    ok = {n: Verdict(n, True, "bench") for g in groups for n in g.names}
    for spec in wanted_specs(groups, ok, p.shape):
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec.domains[0])]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now - timedelta(hours=1) + LIFETIME)
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in spec.domains]), False
            )
            .add_extension(aki, False)
            .sign(ca_key, hashes.SHA256())
        )
        certs.write_cert(spec, leaf.public_bytes(serialization.Encoding.PEM) + ca_pem, key_pem)
    certs.set_default(HOST)
    done.write_text(now.isoformat() + "\n")
    say(f"made the volume of {count} domains in {time.monotonic() - began:.1f} s: {volume}")
    return volume


@contextlib.contextmanager
def scratch_copy(volume: Path) -> Iterator[Path]:
    """A hard-linked copy of ``volume`` (the store only ever renames over its files)."""
    with tempfile.TemporaryDirectory(prefix="quiet-", dir=CACHE) as tmp:
        target = Path(tmp) / "volume"
        shutil.copytree(volume, target, copy_function=os.link, symlinks=True)
        yield target


# --- the fakes -------------------------------------------------------------------------------


@dataclass
class Source:
    """The database: the same rows every read."""

    rows: DomainRows
    reads: int = 0

    def read(self) -> DomainRows:
        self.reads += 1
        return self.rows


@dataclass
class Resolver:
    """This server's address for every A query, nothing else (no AAAA, no CAA)."""

    lookups: int = 0

    def lookup(self, name: str, rdtype: str) -> Lookup:
        self.lookups += 1
        return Lookup((ADDRESS,)) if rdtype == "A" else Lookup()

    def lookup_caa(self, name: str) -> CaaLookup:
        self.lookups += 1
        return CaaLookup()


@dataclass
class Http:
    """The HTTP self-check: the token always comes back."""

    checks: int = 0

    def check(self, name: str, address: str) -> str | None:
        self.checks += 1
        return None


@dataclass
class Issuer:
    """An issuer that must not be asked: the call is recorded and refused."""

    calls: list[str] = field(default_factory=list)

    def __call__(self, account_pem: bytes) -> Any:
        self.calls.append("issuer")
        raise RuntimeError("the quiet cycle asked for the ACME issuer")


@dataclass
class Services:
    """Records every apply."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    def apply(self, actions: Mapping[str, Any]) -> dict[str, str]:
        self.calls.append(dict(actions))
        return {}


class Sink(io.TextIOBase):
    """Where the log goes: counted, not kept."""

    def __init__(self) -> None:
        self.lines = 0

    def write(self, text: str) -> int:
        self.lines += text.count("\n")
        return len(text)


@contextlib.contextmanager
def json_log_into(sink: Sink) -> Iterator[None]:
    """The product's JSON logging (``ops.log.configure``), into ``sink``."""
    from acme_sidecar.ops import log

    real = sys.stderr
    sys.stderr = sink  # configure binds the file it sees
    try:
        log.configure("json")
    finally:
        sys.stderr = real
    yield


class Counted:
    """Counts the reads of the volume (``load`` or ``read`` of the certificate directories, the
    outermost call) and the certificates parsed, where the revision has them: ``CertDirs`` and
    ``certdir.parse`` now, ``CertStore`` and its ``_parse`` in older revisions."""

    def __init__(self) -> None:
        self.counts = {"reads": 0, "parses": 0}
        self.depth = 0
        holder: Any = CertStore
        certdir: Any = None
        try:
            from acme_sidecar.adapters.volume import certdir, certdirs
        except ImportError:
            pass
        else:
            holder = certdirs.CertDirs
        for name, counter in (("load", "reads"), ("read", "reads"), ("_parse", "parses")):
            original = getattr(holder, name, None)
            if original is not None:
                setattr(holder, name, self._wrap(counter, original))
        if certdir is not None:
            certdir.parse = self._wrap("parses", certdir.parse)

    def _wrap(self, counter: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            if counter == "parses" or not self.depth:
                self.counts[counter] += 1
            self.depth += counter == "reads"
            try:
                return original(*args, **kwargs)
            finally:
                self.depth -= counter == "reads"

        return counted

    def take(self) -> dict[str, int]:
        """The counts since the last ``take``."""
        out, self.counts = self.counts, dict.fromkeys(self.counts, 0)
        return out


# --- the run ---------------------------------------------------------------------------------


def measure(count: int, repeat: int, profile: Path | None) -> dict[str, Any]:
    """Time the first cycle and ``repeat`` quiet cycles on a copy of the volume of ``count``."""
    volume = build_volume(count)
    sink, counted = Sink(), Counted()
    issuer, services = Issuer(), Services()
    resolver, http = Resolver(), Http()
    with scratch_copy(volume) as root, json_log_into(sink):
        deps = Deps(
            source=Source(rows_of(count)),
            resolver=resolver,
            store=CertStore(root),
            issuer=issuer,
            http_check=lambda policy: contextlib.nullcontext(http),
            public_ips=lambda: (ADDRESS, None),
            ca_identities=lambda: ("letsencrypt.org",),
            services=services,  # type: ignore[arg-type]
            stop=threading.Event(),
        )
        p = policy()
        began = time.perf_counter()
        report = guarded_cycle(p, deps)
        first = time.perf_counter() - began
        first_counts = counted.take() | {"log_lines": sink.lines, "lookups": resolver.lookups}
        check(report, issuer, services, "the first cycle")
        certificates = len(report.plan.certs) if report.plan else 0
        state, times, counts = report.state, [], []
        for i in range(repeat):
            sink.lines, resolver.lookups, http.checks = 0, 0, 0
            last = profile is not None and i == repeat - 1
            prof = cProfile.Profile() if last else None
            began = time.perf_counter()
            if prof is not None:
                prof.enable()
            report = guarded_cycle(p, deps, state)
            if prof is not None:
                prof.disable()
            times.append(time.perf_counter() - began)
            counts.append(
                counted.take()
                | {"log_lines": sink.lines, "lookups": resolver.lookups, "checks": http.checks}
            )
            check(report, issuer, services, f"quiet cycle #{i + 1}")
            state = report.state
            if prof is not None and profile is not None:
                path = profile.with_name(f"{profile.stem}-{count}{profile.suffix}")
                prof.dump_stats(path)
                say(f"profile of the last quiet cycle of {count} domains: {path}")
    return {
        "domains": count,
        "certificates": certificates,
        "first_seconds": round(first, 3),
        "first_counts": first_counts,
        "quiet_seconds": [round(t, 3) for t in times],
        "quiet_median_seconds": round(statistics.median(times), 3),
        "quiet_counts": counts[-1],
        "issuer_calls": len(issuer.calls),
        "service_applies": len(services.calls),
    }


def check(report: Any, issuer: Issuer, services: Services, label: str) -> None:
    """Fail the bench when a cycle was not quiet: crashed, not OK, ordered or applied."""
    acted = [c for c in report.plan.certs if c.action.value != "keep"] if report.plan else []
    problems = [
        f"outcome {report.outcome.value}" if report.outcome is not Outcome.OK else "",
        "crashed" if report.crashed else "",
        f"{len(issuer.calls)} issuer calls" if issuer.calls else "",
        f"{len(acted)} certificates not kept (first: {acted[0].reason})" if acted else "",
        f"services applied: {services.calls[-1]}" if services.calls else "",
        f"{report.issued} issued" if report.issued else "",
    ]
    problems = [p for p in problems if p]
    if problems:
        raise SystemExit(f"{label} was not quiet: {'; '.join(problems)}")


def fmt(result: dict[str, Any], source: str) -> str:
    """One result as text."""
    q = result["quiet_counts"]
    times = ", ".join(f"{s:.3f}" for s in result["quiet_seconds"])
    return (
        f"quiet cycle, {result['domains']} domains ({result['certificates']} certificates), "
        f"{source}: {result['quiet_median_seconds']:.3f} s median of "
        f"{len(result['quiet_seconds'])} ({times}); "
        f"volume reads {q['reads']}, certificates parsed {q['parses']}, "
        f"log lines {q['log_lines']}, DNS lookups {q['lookups']}; "
        f"first cycle (validates every name) {result['first_seconds']:.2f} s, "
        f"{result['first_counts']['lookups']} DNS lookups, "
        f"{result['first_counts']['parses']} certificates parsed"
    )


def describe(rev: str | None) -> str:
    """Which acme_sidecar is measured."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    if rev is None:
        dirty = git("status", "--porcelain", "--", "acme_sidecar")
        head = git("rev-parse", "--short", "HEAD")
        return f"working tree at {head}" + (" + changes" if dirty else "")
    return f"git {rev} ({git('rev-parse', '--short', rev)})"


def at_revision(rev: str, argv: Sequence[str]) -> int:
    """Run this bench (``argv`` without ``--rev``) against acme_sidecar as of ``rev``."""
    with tempfile.TemporaryDirectory(prefix="quiet-src-") as tmp:
        src = Path(tmp)
        archive = subprocess.run(
            ["git", "archive", rev, "acme_sidecar"], cwd=REPO, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
        (src / "bench").mkdir()
        (src / "bench" / "__init__.py").write_text("")
        shutil.copy(Path(__file__), src / "bench" / "quiet.py")
        env = dict(os.environ, PYTHONPATH=str(src), QUIET_BENCH_SOURCE=describe(rev))
        cmd = [sys.executable, "-m", "bench.quiet", *argv]
        return subprocess.run(cmd, cwd=src, env=env, check=False).returncode


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, make the volumes, measure, print."""
    title = __doc__.split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.quiet", description=title)
    parser.add_argument("--domains", default="1000,10000", help="comma list (default 1000,10000)")
    parser.add_argument("--repeat", type=int, default=3, help="quiet cycles timed (default 3)")
    parser.add_argument("--rev", default=None, help="acme_sidecar as of this git revision")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="FILE",
        help="cProfile the last quiet cycle into FILE, N added to the name (FILE-N.prof)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="write JSON here")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.domains.split(",") if c.strip()]
    if not counts or min(counts) < 1 or args.repeat < 1:
        parser.error("--domains wants positive numbers, --repeat at least 1")
    CACHE.mkdir(exist_ok=True)
    for count in counts:
        build_volume(count)  # by this tree, also for --rev
    if args.rev is not None:
        rest = list(argv if argv is not None else sys.argv[1:])
        rest = [a for a in rest if not a.startswith("--rev=")]
        if "--rev" in rest:
            i = rest.index("--rev")
            rest = rest[:i] + rest[i + 2 :]
        return at_revision(args.rev, rest)
    source = os.environ.get("QUIET_BENCH_SOURCE") or describe(None)
    results = []
    for count in counts:
        result = measure(count, args.repeat, args.profile)
        print(fmt(result, source), flush=True)
        results.append(result)
    if args.json is not None:
        args.json.write_text(json.dumps({"source": source, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
