"""The cycle and the daemon in-process, with fakes of the outside systems and a real volume."""

from __future__ import annotations

import errno
import io
import socket
import threading
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from structlog.testing import capture_logs

from acme_sidecar.adapters.volume import CertStore
from acme_sidecar.adapters.volume.certdirs import CertDirs
from acme_sidecar.config.policies import DeployPolicy
from acme_sidecar.core.consumers import Act, Endpoint
from acme_sidecar.core.ledger import State
from acme_sidecar.core.model import FailureKind, StoredCert
from acme_sidecar.core.report import Outcome
from acme_sidecar.core.settle import RetryPolicy
from acme_sidecar.shell.cycle import guarded_cycle, next_sleep
from acme_sidecar.shell.daemon import Daemon
from acme_sidecar.shell.status import collect, render
from tests.unit.fakes import World, cycle_policy, daemon_policy

WEEK = timedelta(days=7)


def max_in_window(times: list[float], span: float) -> int:
    """The most events within any window of ``span`` seconds."""
    times = sorted(times)
    return max((sum(1 for u in times[i:] if u - t < span) for i, t in enumerate(times)), default=0)


@pytest.mark.parametrize(
    "kind",
    [FailureKind.SYSTEMIC, FailureKind.OTHER, FailureKind.REJECTED, FailureKind.RATE_LIMITED],
)
def test_a_week_of_one_failing_certificate_under_force(tmp_path: Path, kind: FailureKind) -> None:
    """One certificate failing all week under force_renew: the healthy ones are re-issued once,
    the failing one stays within the CA's limits, force_renew stays for it alone."""
    w = World(tmp_path / "ssl")
    w.issuer.fail["b.test"] = kind
    policy, pacing, deps = cycle_policy(), daemon_policy(), w.deps()
    first = guarded_cycle(policy, deps)
    healthy = [n for n in w.store.certs.names() if not n.endswith("b.test")]
    assert len(healthy) == 3 and first.outcome is Outcome.FAILED
    w.clock.advance(3600)
    (w.root / "force_renew").touch()
    state, streak, end, cycles = first.state, 1, w.clock() + WEEK, 0
    while w.clock() < end:
        report = guarded_cycle(policy, deps, state)
        assert not report.crashed
        state, cycles = report.state, cycles + 1
        streak = 0 if report.settled else streak + 1
        w.clock.advance(next_sleep(report, pacing, w.clock(), streak=streak))
    assert all(w.issuer.count(n) == 2 for n in healthy), w.issuer.orders
    failing = [t.timestamp() for t, n in w.issuer.orders if n.endswith("b.test")]
    if kind is FailureKind.SYSTEMIC:  # every name's validation failed each time
        assert max_in_window(failing, 3600) <= 5
    else:
        assert len(failing) <= 12  # 30 min doubling to a day: about ten in a week
    assert max_in_window(failing, 3 * 3600) <= 300
    assert (w.root / "force_renew").exists()
    assert cycles < 7 * 48 + 20  # never more often than the ladder asks


ERRORS = {
    "database": ("source", RuntimeError("cursor exploded")),
    "dns": ("resolver", OSError("resolver socket")),
    "http probe": ("http", OSError("self-check socket")),
    "acme": ("issuer", requests.ConnectionError("CA reset")),
    "docker": ("services", requests.ReadTimeout("dockerd never answered")),
    "volume": ("store", OSError(errno.EIO, "Input/output error")),
}


class BrokenCerts(CertDirs):
    """The real certificate directories, but reading them fails with ``error``."""

    error: BaseException | None = None

    def read(self) -> tuple[dict[str, StoredCert], list[str]]:
        if self.error is not None:
            raise self.error
        return super().read()


class BrokenStore(CertStore):
    """The real volume adapter, but reading the certificates fails with ``error``."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.broken = BrokenCerts(self.layout, self.found, backup_keep=10, set_aside=True)
        self.certs = self.broken

    @property
    def error(self) -> BaseException | None:
        return self.broken.error

    @error.setter
    def error(self, value: BaseException | None) -> None:
        self.broken.error = value


@pytest.mark.parametrize("adapter", sorted(ERRORS))
def test_an_adapter_exception_never_ends_the_daemon(tmp_path: Path, adapter: str) -> None:
    """Whatever an adapter raises: one line naming the error type, the ledger saved, the next
    try soon; a restart right after places no order again."""
    w = World(tmp_path / "ssl")
    w.store = BrokenStore(w.root)
    part, error = ERRORS[adapter]
    getattr(w, part).error = error
    with capture_logs() as logs:
        report = guarded_cycle(cycle_policy(), w.deps())
    crashed = [e for e in logs if e["event"] == "cycle.crashed"]
    assert len(crashed) == 1, [e["event"] for e in logs]
    assert crashed[0]["error_type"] == type(error).__name__ and crashed[0]["component"]
    assert report.outcome is not Outcome.OK
    assert next_sleep(report, daemon_policy(), w.clock(), streak=1) <= 60
    orders = len(w.issuer.orders)
    assert (w.root / "acme" / "state.json").is_file()
    restarted = World(w.root, clock=w.clock)  # a new process: nothing in memory
    restarted.issuer, restarted.store = w.issuer, BrokenStore(w.root)
    getattr(restarted, part).error = error
    guarded_cycle(cycle_policy(), restarted.deps())
    assert len(w.issuer.orders) == orders, "a restart placed an order again"


def test_store_failure_keeps_the_issued_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A certificate issued but not stored (full volume) is stored later, never ordered again."""
    w = World(tmp_path / "ssl")
    deps = w.deps()
    real = w.store.certs.write_cert

    def full(*args: object, **kw: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(w.store.certs, "write_cert", full)
    first = guarded_cycle(cycle_policy(), deps)
    assert first.outcome is Outcome.FAILED and w.store.certs.names() == []
    orders = len(w.issuer.orders)
    monkeypatch.setattr(w.store.certs, "write_cert", real)
    w.clock.advance(61)
    second = guarded_cycle(cycle_policy(), deps, first.state)
    assert second.outcome is Outcome.OK, second
    assert len(w.issuer.orders) == orders and len(w.store.certs.names()) == 4


def test_deploy_owed_is_finished_by_the_next_cycle(tmp_path: Path) -> None:
    """Certificates stored but not deployed (Docker down) are deployed by the next cycle,
    even though nothing is ordered then."""
    w = World(tmp_path / "ssl")
    w.services.error = requests.ConnectionError("docker.sock")
    first = guarded_cycle(cycle_policy(), w.deps())
    assert first.state.deploy is not None and w.services.calls == []
    w.services.error = None
    second = guarded_cycle(cycle_policy(), w.deps())  # a restart: the ledger from the volume
    assert second.outcome is Outcome.OK and second.state.deploy is None
    restart = {s: Act.RESTART for s in w.services.services}  # new directories
    assert w.services.calls == [restart] and second.issued == 0


@pytest.mark.parametrize("socket", [True, False])
def test_renewal_and_new_name_take_the_table(tmp_path: Path, socket: bool) -> None:
    """A renewal of every certificate rebuilds Postfix's map (socket) or restarts it (dockerapi)
    and reloads the others; a new layout (SAN mode: one directory, the others archived)
    restarts all."""
    w = World(tmp_path / "ssl")
    w.services.can_rebuild_map = socket
    everyone = w.services.services
    guarded_cycle(cycle_policy(), w.deps())
    assert w.services.calls == [dict.fromkeys(everyone, Act.RESTART)]  # new directories
    w.clock.advance(3600)
    (w.root / "force_renew").touch()
    renewal = guarded_cycle(cycle_policy(), w.deps())
    assert renewal.outcome is Outcome.OK and renewal.issued == 4
    postfix = Act.REBUILD if socket else Act.RESTART
    assert w.services.calls[-1] == {"postfix": postfix, "dovecot": Act.RELOAD, "nginx": Act.RELOAD}
    w.source.domains = ("a.test", "b.test", "c.test", "d.test")
    w.clock.advance(3600)
    grown = guarded_cycle(cycle_policy(sni=False), w.deps())
    assert grown.outcome is Outcome.OK
    assert w.services.calls[-1] == dict.fromkeys(everyone, Act.RESTART)


def test_symlinked_directory_is_held(tmp_path: Path) -> None:
    """A certificate directory that is a symbolic link is not written through and not ordered
    again every cycle."""
    w = World(tmp_path / "ssl")
    guarded_cycle(cycle_policy(), w.deps())
    name = next(n for n in w.store.certs.names() if n.endswith("a.test"))
    target = tmp_path / "elsewhere"
    (w.root / name).rename(target)
    (w.root / name).symlink_to(target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    orders = len(w.issuer.orders)
    for _ in range(3):
        w.clock.advance(3600)
        guarded_cycle(cycle_policy(), w.deps())
    assert len(w.issuer.orders) == orders
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before


def test_daemon_survives_a_crashing_cycle(tmp_path: Path) -> None:
    """The daemon loop goes on after an exception in a cycle and stops at once on request."""
    w = World(tmp_path / "ssl")
    w.source.error = RuntimeError("boom")
    stop = threading.Event()
    seen: list[bool] = []

    def cycle(policy: object, deps: object, state: object) -> object:
        report = guarded_cycle(cycle_policy(), w.deps(), None)
        seen.append(report.crashed)
        if len(seen) == 2:
            stop.set()
        return report

    fast = replace(daemon_policy(), retry=RetryPolicy(ladder=(timedelta(seconds=1),)))
    daemon = Daemon(fast, cycle_policy(), w.deps(), stop=stop, cycle=cycle)  # type: ignore[arg-type]
    assert daemon.run() == 0
    assert seen == [True, True]


def test_status_shows_until_when_an_order_waits(tmp_path: Path) -> None:
    """`status` shows a held certificate, until when and why, and a deploy still owed."""
    w = World(tmp_path / "ssl")
    w.issuer.fail["b.test"] = FailureKind.OTHER
    w.services.error = requests.ConnectionError("docker.sock")
    guarded_cycle(cycle_policy(), w.deps())
    data = collect(w.store, w.clock())
    held = {r["name"]: r for r in data["certificates"] if r["held_until"]}
    [row] = [r for n, r in held.items() if n.endswith("b.test")]
    assert not row["stored"] and row["failures"] == 1 and "other: no" in row["held_because"]
    assert data["deploy_owed"] and len(data["deploy_owed"]["certificates"]) == 3
    out = io.StringIO()
    render(data, out)
    assert "no order before" in out.getvalue() and "deploy owed since" in out.getvalue()


def test_stop_ends_verification_and_the_deploy_stays_owed(tmp_path: Path) -> None:
    """SIGTERM (the stop event) during verification ends it at once; the deploy stays owed."""
    w = World(tmp_path / "ssl")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts connections, never answers: verification would wait
    port = silent.getsockname()[1]
    endpoints = (Endpoint("postfix", "smtp", "127.0.0.1", port),)
    policy = replace(
        cycle_policy(), deploy=DeployPolicy(endpoints=endpoints, attempts=50, timeout=60)
    )
    threading.Timer(1.0, w.stop.set).start()
    started = time.monotonic()
    try:
        report = guarded_cycle(policy, w.deps())
    finally:
        silent.close()
    assert time.monotonic() - started < 10
    assert report.state.deploy is not None and len(report.state.deploy.certs) == 4
    assert State.from_json((w.root / "acme" / "state.json").read_text()).deploy is not None


def test_a_cycle_that_crashes_before_reading_the_ledger_never_writes_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected error before the ledger is read (state=None: a restart) ends the cycle
    with one crash line, and the volume's state.json is left byte-identical (no empty ledger
    is saved over it)."""
    w = World(tmp_path / "ssl")
    assert guarded_cycle(cycle_policy(), w.deps()).outcome is Outcome.OK
    state_file = w.store.root / "acme" / "state.json"
    before = state_file.read_bytes()
    assert b'"certs"' in before  # a real ledger with certificates in it

    def broken() -> None:
        raise RuntimeError("volume went away")

    monkeypatch.setattr(w.store, "prepare", broken)
    report = guarded_cycle(cycle_policy(), w.deps())
    assert report.crashed and state_file.read_bytes() == before
