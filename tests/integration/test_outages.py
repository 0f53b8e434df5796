"""Issue #7: a RUNNING daemon (``acme-sidecar run``) rides out outages of the real servers.

Each test starts with a volume holding valid certificates (the daemon's first cycle), starts
one outage, touches ``force_renew`` and sends SIGHUP, and checks the cycle under the outage:
one line naming the component, no traceback, no certificate lost, the process alive. Then it
ends the outage and checks that ``force_renew`` is honoured and the first successful cycle
comes within ``RECOVERY_LIMIT`` seconds (the time is printed per outage).

The line naming the component, per outage:

=========================  ==========================================================
MariaDB stopped            ``db.unreachable`` (level error; the adapter's quick retries before it
                           are debug lines, ``db.retry``)
Pebble stopped             ``order.failed`` (kind=systemic, the CA is unreachable)
DNS server stopped         ``order.failed`` (kind=systemic), after ``name.skipped`` (our
                           lookups failed; the names are kept) and ``name.unvalidated``
                           (the CA could not resolve them)
dockerd unreachable        ``service.failed`` (``cannot reach the Docker API``)
Docker API black hole      ``service.failed`` (after ACME_DOCKER_TIMEOUT, here 5 s)
Pebble rejecting nonces    none: every badNonce is retried (``acme.bad_nonce`` is a
                           debug line); should the bound be hit: ``order.failed``
CA answering 500           ``order.failed`` (kind=systemic, serverInternal)
volume full                ``cert.store_failed`` (ENOSPC; ``state.unsaved`` too)
volume read-only           ``store.unusable`` (EROFS: the lock cannot be opened)
=========================  ==========================================================
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from acme_sidecar.adapters.volume.pem import key_matches, load_chain, load_key
from tests.integration.fullfs import fill
from tests.integration.sidecar import Daemon, base_env, cert_dirs, seed
from tests.integration.stack import KINDS, Stack
from tests.world import World
from tests.world.dns import MockDNS
from tests.world.dockergate import DockerGate
from tests.world.faultproxy import FaultProxy
from tests.world.pebble import Pebble
from tests.world.web import Nginx

pytestmark = pytest.mark.slow  # minutes: left out by -m "not slow" (README, Run the tests)

RECOVERY_LIMIT = 120.0
FAST = {
    "ENABLE_SSL_SNI": "y",  # two certificates: the hostname's and the domain's
    "ACME_RETRY_LADDER": "1s,2s,5s",
    "ACME_RETRY_INTERVAL": "5",
    "ACME_DB_RETRY_INTERVAL": "1",
    "ACME_DB_POLL": "1",
    "ACME_VERIFY_TIMEOUT": "30",
    "ACME_VERIFY_ATTEMPTS": "5",
}
Event = dict[str, Any]
Match = Callable[[Event], bool]


def stamp(event: Event) -> float:
    """The log line's own time (epoch seconds)."""
    return datetime.fromisoformat(event["timestamp"]).timestamp()


def is_ok_cycle(event: Event) -> bool:
    return bool(
        event.get("event") == "cycle.done"
        and event.get("outcome") == "ok"
        and event.get("failed") == 0
    )


def named(*names: str, **fields: Any) -> Match:
    """A line with one of these event names and these field values."""
    return lambda e: e.get("event") in names and all(e.get(k) == v for k, v in fields.items())


class Watch:
    """A running daemon whose lines are read in order and kept, parsed, for the assertions."""

    def __init__(self, env: dict[str, str]) -> None:
        self.daemon = Daemon(env)
        self.pid = self.daemon.proc.pid
        self.events: list[Event] = []

    def _next(self, timeout: float) -> str | None:
        try:
            line = self.daemon.lines.get(timeout=max(timeout, 0.01))
        except queue.Empty:
            return None
        self.daemon.seen.append(line)
        if line.startswith("{"):
            self.events.append(json.loads(line))
        return line

    def until(self, match: Match, timeout: float, what: str) -> Event:
        """Read lines until one matches (it is returned); fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            line = self._next(left)
            if line is None:
                break
            if line.startswith("{") and match(self.events[-1]):
                return self.events[-1]
        tail = "".join(self.daemon.seen[-20:])
        raise AssertionError(f"no {what} within {timeout:.0f}s; last lines:\n{tail}")

    def since(self, mark: int, *names: str) -> list[Event]:
        """The lines read since ``mark`` (an index into ``events``), of these events if given."""
        return [e for e in self.events[mark:] if not names or e.get("event") in names]

    def hup(self) -> None:
        self.daemon.proc.send_signal(signal.SIGHUP)

    def alive(self) -> bool:
        return self.daemon.proc.poll() is None

    def stderr(self) -> str:
        """Everything the daemon wrote to stderr so far (reading what is queued)."""
        while self._next(0.2) is not None:
            pass
        return "".join(self.daemon.seen)

    def stop(self) -> int:
        code = self.daemon.stop()
        self.stderr()
        return code


@pytest.fixture
def watch() -> Iterator[Callable[[dict[str, str]], Watch]]:
    """Start daemons; each is stopped (and must stop cleanly) after the test."""
    started: list[Watch] = []

    def start(env: dict[str, str]) -> Watch:
        started.append(Watch(env))
        return started[-1]

    yield start
    for w in started:
        if w.alive():
            w.daemon.stop()


@dataclass(frozen=True)
class Pair:
    """One certificate directory: its serial and validity start."""

    serial: int
    not_before: datetime


def pairs(volume: Path) -> dict[str, Pair]:
    """Every certificate directory with its leaf, each checked to hold a matching pair."""
    out = {}
    for name in cert_dirs(volume):
        chain = load_chain((volume / name / "cert.pem").read_bytes())
        key = load_key((volume / name / "key.pem").read_bytes())
        assert key_matches(chain[0], key), f"{name}: key.pem does not match cert.pem"
        out[name] = Pair(chain[0].serial_number, chain[0].not_valid_before_utc)
    top = load_chain((volume / "cert.pem").read_bytes())[0]
    assert key_matches(top, load_key((volume / "key.pem").read_bytes())), "default pair torn"
    return out


def assert_nothing_lost(volume: Path, before: dict[str, Pair]) -> None:
    """Every directory is still there with a matching pair, its serial unchanged or newer."""
    now = pairs(volume)
    assert now.keys() == before.keys(), "a certificate directory was lost or added"
    for name, old in before.items():
        new = now[name]
        assert new.serial == old.serial or new.not_before >= old.not_before, name
    assert not list(volume.rglob("*.new")), "a staged file was left"


def assert_clean(w: Watch) -> None:
    text = w.stderr()
    assert "Traceback" not in text, text[max(0, text.index("Traceback") - 2000) :][:6000]
    assert w.since(0, "cycle.crashed") == [], "the cycle boundary caught an unexpected error"


@dataclass(frozen=True)
class Outage:
    """How to start and end one outage, and the line that must name its component."""

    name: str
    start: Callable[[], None]
    end: Callable[[], None]
    line: Match
    line_timeout: float = 60.0


@dataclass(frozen=True)
class Ridden:
    """What ``ride_out`` saw."""

    line: Event
    recovery: float
    mark: int  # index of the first line after the outage ended


SHOWN = ("kind", "component", "service", "certificate", "name", "error")


def report(capsys: pytest.CaptureFixture[str], outage: str, ridden: Ridden) -> None:
    with capsys.disabled():
        print(
            f"\n[outage] {outage}: line {ridden.line['event']} "
            f"({', '.join(f'{k}={v}' for k, v in ridden.line.items() if k in SHOWN)}); "
            f"first ok cycle {ridden.recovery:.1f}s after the outage ended"
        )


def ride_out(w: Watch, volume: Path, outage: Outage) -> Ridden:
    """Valid certificates, the outage, force_renew and SIGHUP; the checks under the outage;
    the outage ended; the first successful cycle. Returns the component line and the time."""
    w.until(is_ok_cycle, 180, "first successful cycle")
    before = pairs(volume)
    outage.start()
    try:
        (volume / "force_renew").touch()
        mark = len(w.events)
        w.hup()
        w.until(named("daemon.woken"), 30, "daemon.woken")
        line = w.until(outage.line, outage.line_timeout, f"the line naming {outage.name}")
        w.until(named("cycle.done"), 120, "the summary of the cycle under the outage")
        cycle = w.since(mark)
        assert all(not is_ok_cycle(e) for e in cycle if e["event"] == "cycle.done")
        said = [(e["event"], e.get("certificate")) for e in cycle if outage.line(e)]
        assert len(said) == len(set(said)), f"said more than once in one cycle: {said}"
        assert w.alive(), "the daemon died"
        assert_clean(w)
        assert_nothing_lost(volume, before)
    finally:
        outage.end()
    ended = time.time()
    mark = len(w.events)
    ok = w.until(
        lambda e: is_ok_cycle(e) and stamp(e) >= ended, RECOVERY_LIMIT + 10, "a successful cycle"
    )
    recovery = stamp(ok) - ended
    assert recovery < RECOVERY_LIMIT
    assert not (volume / "force_renew").exists(), "force_renew was not honoured"
    after = pairs(volume)
    assert after.keys() == before.keys()
    assert all(after[n].serial != before[n].serial for n in before), "not every cert re-issued"
    assert w.alive()
    assert_clean(w)
    return Ridden(line, recovery, mark)


def stop_and_check(w: Watch) -> None:
    assert w.stop() == 0
    assert_clean(w)


# --- the database, the CA, DNS ---------------------------------------------------------------


def test_mariadb_stopped(
    world: World, volume: Path, watch: Callable[[dict[str, str]], Watch], capsys: Any
) -> None:
    """MariaDB stopped: db.unreachable, nothing changed; back, force_renew is honoured."""
    seed(world, ["one.test"])
    w = watch(base_env(world, volume) | FAST)
    outage = Outage(
        "MariaDB",
        world.mariadb.stop,
        world.mariadb.start,
        named("db.unreachable", level="error"),  # after quiet retries (db.retry, debug)
    )
    ridden = ride_out(w, volume, outage)
    report(capsys, "MariaDB stopped", ridden)
    stop_and_check(w)


def test_pebble_stopped(
    world: World, volume: Path, watch: Callable[[dict[str, str]], Watch], capsys: Any
) -> None:
    """Pebble stopped: a systemic order failure; restarted (it forgot the account), the daemon
    registers again and re-issues everything."""
    seed(world, ["one.test"])
    w = watch(base_env(world, volume) | FAST)
    outage = Outage(
        "the CA (stopped)",
        world.pebble.stop,
        world.pebble.start,
        named("order.failed", "orders.not_started", kind="systemic"),
    )
    ridden = ride_out(w, volume, outage)
    assert w.since(ridden.mark, "account.registered"), "the forgotten account was not registered"
    report(capsys, "Pebble stopped", ridden)
    stop_and_check(w)


def test_dns_stopped(
    world: World, volume: Path, watch: Callable[[dict[str, str]], Watch], capsys: Any
) -> None:
    """The DNS server stopped: our lookups and the CA's validation fail; systemic, nothing
    rejected for good; back, every certificate is re-issued."""
    seed(world, ["one.test"])
    w = watch(base_env(world, volume) | FAST)
    outage = Outage(
        "DNS",
        world.dns.stop,
        world.dns.start,
        named("order.failed", "orders.not_started", kind="systemic"),
    )
    ridden = ride_out(w, volume, outage)
    lines = w.since(0)
    ours = [e for e in lines if e["event"] == "name.skipped" and "lookup failed" in e["reason"]]
    assert ours, "our own lookups did not fail"
    assert any(e["event"] == "name.unvalidated" for e in lines), "the CA's side was not named"
    assert not any(e["event"] == "name.rejected" for e in lines), "a DNS outage banned a name"
    report(capsys, "DNS (challtestsrv) stopped", ridden)
    stop_and_check(w)


@pytest.fixture
def nonce_pebble(
    dns: MockDNS, nginx: Nginx, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pebble]:
    """A second Pebble on its own ports, accepting every nonce until told otherwise."""
    ca = Pebble(tmp_path_factory.mktemp("pebble-nonce"), dns.port, nginx.port)
    ca.start()
    yield ca
    ca.stop()


def restart_rejecting(ca: Pebble, percent: int) -> None:
    """Restart ``ca`` (same ports; it forgets every account) rejecting ``percent`` % of nonces."""
    ca.stop()
    assert ca._child.env is not None
    ca._child.env["PEBBLE_WFE_NONCEREJECT"] = str(percent)
    ca.start()


def test_pebble_rejecting_nonces(
    world: World,
    nonce_pebble: Pebble,
    volume: Path,
    watch: Callable[[dict[str, str]], Watch],
    capsys: Any,
) -> None:
    """Pebble rejecting half of all nonces: the daemon re-registers and re-issues through the
    badNonce retries; any failure is a systemic order.failed naming badNonce, retried on the
    ladder. After the CA is back to normal, a forced renewal works at once."""
    seed(world, ["one.test"])
    env = base_env(world, volume) | FAST
    env |= {"DIRECTORY_URL": nonce_pebble.directory_url}
    env |= {"ACME_CA_BUNDLE": str(nonce_pebble.ca_bundle)}
    w = watch(env)
    w.until(is_ok_cycle, 180, "first successful cycle")
    before = pairs(volume)
    restart_rejecting(nonce_pebble, 50)
    assert "reject 50% of good nonces" in nonce_pebble._child.log_tail(200)
    (volume / "force_renew").touch()
    mark = len(w.events)
    w.hup()
    began = time.time()
    ok = w.until(is_ok_cycle, RECOVERY_LIMIT, "a successful cycle under nonce rejection")
    under = stamp(ok) - began
    for failure in w.since(mark, "order.failed", "orders.not_started"):
        assert failure["kind"] == "systemic" and "badNonce" in failure["error"], failure
    assert not (volume / "force_renew").exists()
    renewed = pairs(volume)
    assert all(renewed[n].serial != before[n].serial for n in before)
    assert_clean(w)
    assert w.alive()
    restart_rejecting(nonce_pebble, 0)
    ended = time.time()
    (volume / "force_renew").touch()
    mark = len(w.events)
    w.hup()
    ok = w.until(is_ok_cycle, RECOVERY_LIMIT, "a successful cycle after the nonce outage")
    assert w.since(mark, "order.failed") == []
    assert not (volume / "force_renew").exists()
    assert all(pairs(volume)[n].serial != renewed[n].serial for n in before)
    with capsys.disabled():
        print(
            f"\n[outage] Pebble rejecting 50% of nonces: no failure line "
            f"({len(w.since(0, 'order.failed'))} order.failed); forced renewal done "
            f"{under:.1f}s after SIGHUP; after the CA was back {stamp(ok) - ended:.1f}s"
        )
    stop_and_check(w)


@pytest.fixture
def proxy(pebble: Pebble, tmp_path: Path) -> Iterator[FaultProxy]:
    """The fault proxy in front of the session's Pebble, passing everything through at first."""
    fault = FaultProxy(tmp_path / "proxy", pebble.port, pebble.ca_bundle)
    fault.start()
    yield fault
    fault.stop()


def test_ca_answering_500(
    world: World,
    proxy: FaultProxy,
    volume: Path,
    watch: Callable[[dict[str, str]], Watch],
    capsys: Any,
) -> None:
    """The CA answers 500 to everything: a systemic order.failed; once it passes requests
    through again, the next step of the ladder re-issues everything."""
    seed(world, ["one.test"])
    env = base_env(world, volume) | FAST
    env |= {"DIRECTORY_URL": proxy.directory_url(), "ACME_CA_BUNDLE": str(proxy.ca_bundle)}
    w = watch(env)

    def fail(rate: float) -> Callable[[], None]:
        return lambda: setattr(proxy, "fail_rate", rate)

    outage = Outage(
        "the CA (HTTP 500)",
        fail(1.0),
        fail(0.0),
        named("order.failed", "orders.not_started", kind="systemic"),
    )
    ridden = ride_out(w, volume, outage)
    assert "500" in ridden.line["error"] or "serverInternal" in ridden.line["error"]
    assert proxy.failed > 0
    report(capsys, "CA answering 500", ridden)
    stop_and_check(w)


# --- the Docker API ------------------------------------------------------------------------


@pytest.fixture
def gate(world: World) -> Iterator[DockerGate]:
    """A TCP gate in front of the session's dockerd (its socket is never touched)."""
    door = DockerGate(world.docker.socket)
    door.start()
    yield door
    door.stop()


DOCKER_OUTAGES = {
    "refused": (DockerGate.refuse, 30.0),
    "black_hole": (DockerGate.black_hole, 60.0),  # each call ends at ACME_DOCKER_TIMEOUT (5 s)
}


@pytest.mark.parametrize("kind", DOCKER_OUTAGES)
def test_docker_api_outage(
    world: World,
    stack: Stack,
    gate: DockerGate,
    kind: str,
    watch: Callable[[dict[str, str]], Watch],
    capsys: Any,
) -> None:
    """The Docker API down (refused) or hanging (black hole): the certificates are re-issued
    and stored, service.failed names it, the deploy stays owed; once the API answers, the
    owed deploy reloads the consumers and they serve the new serials."""
    seed(world, ["one.test"])
    env = {"DOCKER_HOST": gate.docker_host, "ACME_DOCKER_TIMEOUT": "5s"}
    w = watch(stack.env | FAST | env)
    begin, timeout = DOCKER_OUTAGES[kind]
    line = named("service.failed")
    outage = Outage(f"the Docker API ({kind})", lambda: begin(gate), gate.restore, line, timeout)
    ridden = ride_out(w, stack.volume, outage)
    assert "Docker API" in ridden.line["error"]
    if kind == "black_hole":
        assert gate.held > 0
    after = pairs(stack.volume)
    for name, pair in after.items():
        for _, probe in KINDS:
            assert stack.serial(probe, name) == pair.serial, (probe, name)
    assert w.since(ridden.mark, "service.reloaded", "service.restarted")
    report(capsys, f"Docker API {kind}", ridden)
    stop_and_check(w)


# --- the volume: full, read-only -----------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs at ``tmp_path/ssl``, unmounted afterwards."""
    mount = tmp_path / "ssl"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["mount", "-o", "remount,rw", str(mount)], check=False)
    if subprocess.run(["umount", str(mount)], check=False).returncode != 0:
        subprocess.run(["umount", "-l", str(mount)], check=True)


VOLATILE = {"filler", "force_renew", "acme/state.json", "acme/lock"}


def contents(root: Path) -> dict[str, bytes]:
    """Every regular file of the volume but the filler, the flag, the ledger and the lock."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and str(p.relative_to(root)) not in VOLATILE
    }


def assert_whole(root: Path) -> None:
    """No staged, empty or torn file: every *.pem parses, every pair matches."""
    assert not list(root.rglob("*.new"))
    for name, data in contents(root).items():
        assert data, f"{name} is empty"
        if name.endswith(".pem"):
            (load_chain if b"CERTIFICATE" in data else load_key)(data)
    pairs(root)


def remount(root: Path, mode: str) -> None:
    """Remount ``root`` ro or rw; between cycles no file is open for writing, so retry EBUSY."""
    for _ in range(50):
        done = subprocess.run(["mount", "-o", f"remount,{mode}", str(root)], check=False)
        if done.returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"could not remount {root} {mode}")


def test_full_volume_stores_the_issued_chain_later(
    world: World, tmpfs: Path, watch: Callable[[dict[str, str]], Watch], capsys: Any
) -> None:
    """The volume full: the chains are issued, cert.store_failed names ENOSPC, the old pairs
    stay byte-identical; freed, the same chains are stored without a new order and without a
    restart of the daemon."""
    seed(world, ["one.test"])
    w = watch(base_env(world, tmpfs) | FAST)
    w.until(is_ok_cycle, 180, "first successful cycle")
    before, files = pairs(tmpfs), contents(tmpfs)
    (tmpfs / "force_renew").touch()
    filler = fill(tmpfs)
    mark = len(w.events)
    w.hup()
    w.until(named("daemon.woken"), 30, "daemon.woken")
    line = w.until(named("cert.store_failed"), 60, "cert.store_failed")
    assert "ENOSPC" in line["error"], line
    w.until(named("cycle.done"), 60, "the summary of the cycle on the full volume")
    ordered = [e["certificate"] for e in w.since(mark, "order.created")]
    assert sorted(ordered) == sorted(before), "every certificate is ordered once"
    failed = [e["certificate"] for e in w.since(mark, "cert.store_failed")]
    assert sorted(failed) == sorted(before), "one cert.store_failed per certificate"
    # still full: the next tries store the chains kept in the ledger, and order nothing
    w.until(named("cert.unstored_retry"), 30, "a retry of the unstored chain")
    retry = w.until(named("cycle.done"), 30, "the summary of the retry")
    assert contents(tmpfs) == files, "a file changed on the full volume"
    assert_whole(tmpfs)
    assert w.alive()
    assert_clean(w)
    # the chains are still not stored: that cycle failed, and the next try is on the ladder
    assert retry["outcome"] != "ok" and retry["failed"] > 0, f"unstored, yet: {retry}"
    assert int(retry["next_check_in"].rstrip("s")) <= 10, f"unstored, yet: {retry}"
    filler.unlink()
    ended = time.time()
    later = len(w.events)
    ok = w.until(lambda e: is_ok_cycle(e) and stamp(e) >= ended, RECOVERY_LIMIT, "a good cycle")
    stored = w.since(later, "cert.unstored_retry", "cert.stored")
    for name in before:
        assert [e["event"] for e in stored if e["certificate"] == name][-2:] == [
            "cert.unstored_retry",
            "cert.stored",
        ], name
    orders = [e["certificate"] for e in w.since(mark, "order.created")]
    assert sorted(orders) == sorted(before), "an issued chain was ordered again"
    assert not (tmpfs / "force_renew").exists()
    after = pairs(tmpfs)
    assert all(after[n].serial != before[n].serial for n in before)
    assert_whole(tmpfs)
    assert w.pid == w.daemon.proc.pid and w.alive()
    with capsys.disabled():
        print(
            f"\n[outage] volume full: line cert.store_failed ({line['error'][:120]}); "
            f"first ok cycle {stamp(ok) - ended:.1f}s after the filler was deleted"
        )
    stop_and_check(w)


def test_read_only_volume_orders_nothing_until_writable(
    world: World, tmpfs: Path, watch: Callable[[dict[str, str]], Watch], capsys: Any
) -> None:
    """The volume read-only: store.unusable names EROFS (the daemon cannot take its lock, so
    it orders nothing), the files stay byte-identical; remounted rw, force_renew is honoured
    with one order per certificate, without a restart of the daemon."""
    seed(world, ["one.test"])
    w = watch(base_env(world, tmpfs) | FAST)
    w.until(is_ok_cycle, 180, "first successful cycle")
    before, files = pairs(tmpfs), contents(tmpfs)
    (tmpfs / "force_renew").touch()
    remount(tmpfs, "ro")
    try:
        mark = len(w.events)
        w.hup()
        w.until(named("daemon.woken"), 30, "daemon.woken")
        line = w.until(named("store.unusable", "cert.store_failed"), 60, "the store's error")
        assert "EROFS" in line["error"], line
        w.until(named("cycle.done"), 60, "the summary of the cycle on the read-only volume")
        assert len(w.since(mark, "store.unusable", "cert.store_failed")) == 1
        w.until(named("store.unusable", "cert.store_failed"), 30, "the next try")
        assert w.since(mark, "order.created") == [], "ordered what cannot be stored"
        assert contents(tmpfs) == files
        assert_whole(tmpfs)
        assert w.alive()
        assert_clean(w)
    finally:
        remount(tmpfs, "rw")
    ended = time.time()
    ok = w.until(lambda e: is_ok_cycle(e) and stamp(e) >= ended, RECOVERY_LIMIT, "a good cycle")
    orders = [e["certificate"] for e in w.since(mark, "order.created")]
    assert sorted(orders) == sorted(before), "one order per certificate"
    assert not (tmpfs / "force_renew").exists()
    after = pairs(tmpfs)
    assert all(after[n].serial != before[n].serial for n in before)
    assert_whole(tmpfs)
    assert w.pid == w.daemon.proc.pid and w.alive()
    with capsys.disabled():
        print(
            f"\n[outage] volume read-only: line {line['event']} ({line['error'][:120]}); "
            f"first ok cycle {stamp(ok) - ended:.1f}s after the rw remount"
        )
    stop_and_check(w)
