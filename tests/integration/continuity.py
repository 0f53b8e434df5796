"""Watch a running sidecar's renewals from the outside: what is stored, served and done.

- ``VolumeWatch`` polls every certificate directory's ``cert.pem`` (0.1 s) and keeps each
  serial the volume held, with the file's mtime (when it was written, never later than the
  consumers could see it) and its validity.
- ``Prober`` asks every consumer for every SNI name every 0.5 s (one thread per service) and
  keeps what was served, or the error.
- ``EventLog`` drains the daemon's JSON log lines with the (wall-clock) time each arrived.
- ``RenewalWindows`` is the renewal window (ARI) the CA answers for each certificate
  (``AriProxy.window_for``): when in its life each one is renewed, the same in every run.
- ``judge`` applies the continuity rule to every probe (see its docstring).
- ``defaults`` and ``proxy_running``: the daemon's settings as a user has them, and the ARI
  proxy serving.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import queue
import statistics
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from docker.models.containers import Container

from acme_sidecar.core.ari import lifetime_time as renewal_time
from tests.integration.sidecar import Daemon, cert_dirs
from tests.world.ariproxy import AriProxy
from tests.world.tlsprobe import served_certificate

PROBE_EVERY = 0.5
WATCH_EVERY = 0.1


def defaults(env: dict[str, str]) -> dict[str, str]:
    """``env`` with the test world's own pacing dropped (``ACME_REVALIDATE_AFTER=0s``): the
    daemon runs the defaults a user gets, pointed at the test world."""
    paced = {"ACME_REVALIDATE_AFTER", "ACME_CHECK_INTERVAL", "ACME_RATE_LIMITS"}
    return {k: v for k, v in env.items() if k not in paced}


@contextmanager
def proxy_running(proxy: AriProxy) -> Iterator[AriProxy]:
    """``proxy`` serving for the ``with`` block."""
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


@dataclass(frozen=True)
class Stored:
    """One certificate the volume held for a directory."""

    serial: int
    written: float  # mtime of cert.pem (epoch seconds)
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True)
class Probe:
    """One TLS handshake with a consumer, asking for ``name`` by SNI."""

    service: str
    name: str
    began: float
    ended: float
    serial: int | None = None
    not_after: float | None = None
    error: str | None = None


class VolumeWatch(threading.Thread):
    """Every serial each directory's cert.pem held, in order (a thread polling the volume)."""

    def __init__(self, root: Path, directories: Sequence[str]) -> None:
        super().__init__(name="volume-watch", daemon=True)
        self.root = root
        self.history: dict[str, list[Stored]] = {d: [] for d in directories}
        self.halt = threading.Event()
        self._look()

    def _look(self) -> None:
        for directory, seen in self.history.items():
            path = self.root / directory / "cert.pem"
            try:
                # the time and the bytes of one file: a stat, then a read by name, may straddle
                # a rename and date the new certificate with the old file's time
                with path.open("rb") as file:
                    written = os.fstat(file.fileno()).st_mtime
                    pem = file.read()
                cert = x509.load_pem_x509_certificates(pem)[0]
            except (OSError, ValueError):
                continue  # between renames: the next look sees it
            if not seen or seen[-1].serial != cert.serial_number:
                seen.append(
                    Stored(
                        cert.serial_number,
                        written,
                        cert.not_valid_before_utc,
                        cert.not_valid_after_utc,
                    )
                )

    def run(self) -> None:
        while not self.halt.wait(WATCH_EVERY):
            self._look()


class Prober:
    """One thread per service probing every name each ``PROBE_EVERY`` seconds (the name ``""``:
    no SNI at all)."""

    def __init__(self, endpoints: Mapping[str, tuple[str, int]], names: Sequence[str]) -> None:
        self.endpoints = dict(endpoints)  # service -> (kind, port)
        self.names = list(names)
        self.probes: list[Probe] = []
        self.halt = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._loop, args=(s,), name=f"probe-{s}", daemon=True)
            for s in self.endpoints
        ]

    def _one(self, service: str, name: str) -> Probe:
        kind, port = self.endpoints[service]
        began = time.time()
        try:
            cert = served_certificate(kind, port, name or None, timeout=5)
        except (OSError, ValueError) as exc:
            return Probe(service, name, began, time.time(), error=repr(exc))
        ended = time.time()
        after = cert.not_valid_after_utc.timestamp()
        return Probe(service, name, began, ended, cert.serial_number, after)

    def _loop(self, service: str) -> None:
        tick = time.monotonic()
        while not self.halt.is_set():
            done = [self._one(service, name) for name in self.names]
            with self._lock:
                self.probes.extend(done)
            tick = max(tick + PROBE_EVERY, time.monotonic())  # late: no catching up in bursts
            self.halt.wait(tick - time.monotonic())

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> list[Probe]:
        self.halt.set()
        for thread in self._threads:
            thread.join(timeout=15)
        with self._lock:
            return list(self.probes)


class EventLog(threading.Thread):
    """The daemon's log lines as (arrival time, parsed line), drained from its queue."""

    def __init__(self, daemon: Daemon) -> None:
        super().__init__(name="event-log", daemon=True)
        self.daemon_proc = daemon
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                line = self.daemon_proc.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            self.daemon_proc.seen.append(line)
            if line.startswith("{"):
                self.events.append((time.time(), json.loads(line)))

    def named(self, event: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, e) for t, e in list(self.events) if e.get("event") == event]


# The window of each generation of a certificate, in order (rotated by the certificate's place,
# so that different certificates do not reach the same entry together): mostly early, at 30 % of
# its life, and once each a window already over (renewed at once, right after the deploy of the
# one it replaces) and a late one, with a quarter of the life left (the old certificate served
# up to the new one's deploy that late too; still ~15 s before its expiry, which a loaded
# machine needs: under a load of 14 on 2 cores a renewal took 11 s from due to served by all).
SCHEDULE = ("early", "early", "now", "early", "early", "late", "early", "early", "early", "early")
EARLY = 0.3  # share of the life gone when an "early" window opens (each window lasts a second)
LATE = 0.75  # ... when a "late" one ends


def stored_cert(root: Path, serial: int) -> tuple[str, x509.Certificate] | None:
    """The certificate directory under ``root`` whose ``cert.pem`` has ``serial``, with it."""
    for directory in cert_dirs(root):
        try:
            pem = (root / directory / "cert.pem").read_bytes()
            cert = x509.load_pem_x509_certificates(pem)[0]
        except (OSError, ValueError):
            continue
        if cert.serial_number == serial:
            return directory, cert
    return None


def consumer_actions(container: Container, since: float, until: float) -> list[tuple[float, str]]:
    """The reloads and (re)starts a consumer logged from ``since`` to ``until`` (epoch seconds,
    as Docker stamped its log lines; its logs outlive restarts): (time, "reload" or "start")."""
    raw = container.logs(timestamps=True, since=int(since)).decode(errors="replace")
    found = []
    for line in raw.splitlines():
        stamp, _, text = line.partition(" ")
        at = datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()
        if not since <= at <= until:
            continue
        if text.strip() == "consumer: reloaded":
            found.append((at, "reload"))
        elif " listening on " in text:
            found.append((at, "start"))
    return found


def cid_serial(cid: str) -> int:
    """The serial number in an ARI CertID (``base64url(AKI).base64url(DER serial)``)."""
    part = cid.rsplit(".", 1)[-1]
    return int.from_bytes(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)), "big")


class RenewalWindows:
    """The window the CA answers for each certificate's CertID, by ``SCHEDULE``: the n-th
    certificate asked for in a directory gets its n-th entry. A CertID asked again gets the
    same window; one not (yet) in the volume gets None (Pebble's own answer)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.given: dict[str, tuple[datetime, datetime]] = {}
        self.kinds: dict[str, list[str]] = {}  # directory -> the kind of each window, in order
        self._lock = threading.Lock()

    def __call__(self, cid: str) -> tuple[datetime, datetime] | None:
        with self._lock:
            if cid in self.given:
                return self.given[cid]
            found = stored_cert(self.root, cid_serial(cid))
            if found is None:
                return None
            directory, cert = found
            kinds = self.kinds.setdefault(directory, [])
            place = list(self.kinds).index(directory)
            kind = SCHEDULE[(len(kinds) + 3 * place) % len(SCHEDULE)]
            kinds.append(kind)
            born, dies = cert.not_valid_before_utc, cert.not_valid_after_utc
            life = dies - born
            second = timedelta(seconds=1)
            if kind == "now":
                window = (born - 2 * second, born - second)
            elif kind == "late":
                window = (born + life * LATE - second, born + life * LATE)
            else:
                window = (born + life * EARLY, born + life * EARLY + second)
            self.given[cid] = window
            return window


@dataclass
class Verdicts:
    """Every probe judged: the failed ones with why, and the grace the deploys needed."""

    failed: list[tuple[Probe, str]] = field(default_factory=list)
    old_in_grace: int = 0
    latest_old: float = 0.0  # seconds after the new cert.pem was written that the old was seen


def deploy_end(written: float, cycles_done: Sequence[float]) -> float:
    """The end of the deploy that follows a write: the first ``cycle.done`` after it."""
    return next((t for t in cycles_done if t >= written), float("inf"))


def judge(
    probes: Sequence[Probe],
    history: Mapping[str, Sequence[Stored]],
    directory_of: Mapping[str, str],
    cycles_done: Sequence[float],
) -> Verdicts:
    """The continuity rule, per probe of ``name`` on a service, handshake within [began, ended]:

    - it got a certificate (no connection or TLS error);
    - that certificate had not expired at ``ended``;
    - its serial is one the volume held for ``name``'s directory at some instant of
      [began, ended] (the *stored* one), or the serial that one replaced while that deploy was
      in flight: the new cert.pem was written (mtime) at or before ``ended`` and the cycle that
      wrote it had not yet logged ``cycle.done`` (reload and the sidecar's own check of what is
      served both happen before it) at ``began``.
    """
    verdicts = Verdicts()
    for probe in probes:
        if probe.error is not None or probe.serial is None or probe.not_after is None:
            verdicts.failed.append((probe, f"no certificate: {probe.error}"))
            continue
        if probe.not_after <= probe.ended:
            verdicts.failed.append((probe, "expired"))
            continue
        seen = history[directory_of[probe.name]]
        # the serial stored at ``began`` and every serial written up to ``ended``
        held = [i for i, s in enumerate(seen) if s.written <= probe.ended]
        first = max((i for i in held if seen[i].written <= probe.began), default=0)
        stored = {seen[i].serial for i in held if i >= first}
        if probe.serial in stored:
            continue
        replaced = [
            i
            for i in held
            if i >= max(first, 1)
            and seen[i - 1].serial == probe.serial
            and probe.began <= deploy_end(seen[i].written, cycles_done)
        ]
        if replaced:
            verdicts.old_in_grace += 1
            late = probe.began - seen[replaced[-1]].written
            verdicts.latest_old = max(verdicts.latest_old, late)
            continue
        verdicts.failed.append((probe, f"mismatched: served {probe.serial:x}"))
    return verdicts


def renewal_delays(
    history: Mapping[str, Sequence[Stored]],
    probes: Sequence[Probe],
    directory_of: Mapping[str, str],
    chosen: Mapping[str, Sequence[tuple[float, float]]],
) -> tuple[list[float], list[float], list[float]]:
    """Per renewal: seconds from its due time to the new cert.pem written, from its due time to
    served by all (the first probe of the last (service, name) pair of its directory that got
    it), and from served by all to the replaced certificate's expiry (the margin left).

    The due time is the renewal time the daemon chose from the CA's ARI window while the
    replaced certificate was stored (``chosen``: per certificate, the ``ari.window`` lines as
    (arrival, renew_at), epoch seconds), else the lifetime rule on the replaced certificate."""
    first: dict[tuple[str, str, int], float] = {}
    for p in probes:
        if p.serial is not None:
            key = (p.service, p.name, p.serial)
            first[key] = min(first.get(key, p.ended), p.ended)
    services = sorted({p.service for p in probes})
    written: list[float] = []
    served: list[float] = []
    margins: list[float] = []
    for directory, seen in history.items():
        names = [n for n, d in directory_of.items() if d == directory]
        for before, after in itertools.pairwise(seen):
            due = renewal_time(before.not_before, before.not_after).timestamp()
            windows = chosen.get(directory, ())
            due = next(
                (at for t, at in reversed(windows) if before.written <= t < after.written), due
            )
            last = max(
                first.get((s, n, after.serial), float("inf")) for s in services for n in names
            )
            written.append(after.written - due)
            served.append(last - due)
            margins.append(before.not_after.timestamp() - last)
    return written, served, margins


def deploy_times(
    history: Mapping[str, Sequence[Stored]], cycles_done: Sequence[float]
) -> list[float]:
    """Per renewal, seconds from the new cert.pem written to the end of its deploy (the grace
    during which the replaced certificate may still be served)."""
    return [
        deploy_end(after.written, cycles_done) - after.written
        for seen in history.values()
        for after in seen[1:]
    ]


def probe_gaps(probes: Sequence[Probe]) -> list[float]:
    """Seconds between the starts of consecutive probes of one service and name."""
    last: dict[tuple[str, str], float] = {}
    gaps: list[float] = []
    for p in sorted(probes, key=lambda p: p.began):
        key = (p.service, p.name)
        if key in last:
            gaps.append(p.began - last[key])
        last[key] = p.began
    return gaps


def spread(values: Sequence[float]) -> str:
    """``min/median/max`` of seconds, one decimal."""
    if not values:
        return "none"
    return f"{min(values):.1f}/{statistics.median(values):.1f}/{max(values):.1f}"


def timeline(
    events: EventLog,
    history: Mapping[str, Sequence[Stored]],
    directories: set[str],
    around: float | None = None,
) -> None:
    """Print the daemon's lines about ``directories`` and its cycles with their arrival times
    (within 60 s of ``around`` when given), then every serial each directory held: why a
    renewal came late, or what the volume held when a probe found another certificate."""
    keep = ("cycle.", "budget.", "cert.", "order.", "deploy.", "service", "ari.", "dane.")
    for at, event in list(events.events):
        if around is not None and abs(at - around) > 60:
            continue
        name = str(event.get("event", ""))
        about = str(event.get("certificate", event.get("name", "")))
        if name.startswith(keep) and (not about or about in directories):
            brief = {k: v for k, v in event.items() if k not in ("event", "timestamp", "level")}
            print(f"{at:.2f} {name} {str(brief)[:400]}")
    for directory in sorted(directories):
        for stored in history.get(directory, ()):
            print(
                f"{directory or '.'}: {stored.serial:x} written {stored.written:.2f} "
                f"valid {stored.not_before:%H:%M:%S}-{stored.not_after:%H:%M:%S}"
            )
