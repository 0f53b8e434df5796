"""The quiet start: waiting for the database and the webroot, and the grace of ACME_DB_WAIT."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog.testing

from acme_sidecar.config.policies import StartPolicy
from acme_sidecar.core.ledger import State
from acme_sidecar.core.report import Outcome
from acme_sidecar.core.validate import IpPolicy, Lookup
from acme_sidecar.shell import startup
from acme_sidecar.shell.cycle import guarded_cycle
from acme_sidecar.shell.startup import DbGrace, wait_for, wait_until_ready, webroot_gate
from tests.unit.fakes import World, cycle_policy


@pytest.fixture(autouse=True)
def quick_ladder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(startup, "LADDER", (0.01, 0.01))
    monkeypatch.setattr(startup, "LAST_STEP", 0.01)


def ready_after(n: int) -> tuple[list[int], startup.Probe]:
    calls: list[int] = []

    def probe() -> str | None:
        calls.append(1)
        return None if len(calls) > n else "not yet"

    return calls, probe


def test_ready_at_once_logs_nothing() -> None:
    _, probe = ready_after(0)
    with structlog.testing.capture_logs() as logs:
        assert wait_for("database", probe, 10, threading.Event())
    assert logs == []


def test_one_waiting_line_and_one_ready_line() -> None:
    calls, probe = ready_after(5)
    with structlog.testing.capture_logs() as logs:
        assert wait_for("database", probe, 10, threading.Event())
    assert [e["event"] for e in logs] == ["start.waiting", "start.ready"]
    assert logs[0]["component"] == "database" and logs[0]["reason"] == "not yet"
    assert len(calls) == 6


def test_gives_up_after_the_limit() -> None:
    _, probe = ready_after(10**9)
    with structlog.testing.capture_logs() as logs:
        assert not wait_for("database", probe, 0.1, threading.Event())
    assert [e["event"] for e in logs] == ["start.waiting", "start.gave_up"]
    assert logs[1]["action"] == "starting the cycles anyway"


def test_stop_ends_the_wait_without_a_gave_up_line() -> None:
    _, probe = ready_after(10**9)
    stop = threading.Event()
    stop.set()
    with structlog.testing.capture_logs() as logs:
        assert not wait_for("database", probe, 60, stop)
    assert [e["event"] for e in logs] == ["start.waiting"]


class Source:
    def __init__(self, fails: int) -> None:
        self.fails = fails

    def read(self) -> object:
        from acme_sidecar.core.errors import SourceError

        if self.fails:
            self.fails -= 1
            raise SourceError("MariaDB: connection refused")
        return object()


class Resolver:
    def lookup(self, name: str, rdtype: str) -> Lookup:
        return Lookup(("127.0.0.1",) if rdtype == "A" else ())


class Check:
    def __init__(self, answers: list[str | None]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str]] = []

    def check(self, name: str, address: str) -> str | None:
        self.asked.append((name, address))
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class Deps:
    def __init__(
        self, source: Source, check: Check, services_ready: startup.Probe | None = None
    ) -> None:
        self.source = source
        self.resolver = Resolver()
        self.stop = threading.Event()
        self.services_ready = services_ready
        self._check = check
        self.policies: list[IpPolicy] = []

    @contextmanager
    def http_check(self, policy: IpPolicy) -> Iterator[Check]:
        self.policies.append(policy)
        yield self._check


def test_waits_for_the_database_then_the_webroot() -> None:
    check = Check(["404 Not Found", None])
    deps = Deps(Source(fails=2), check)
    policy = StartPolicy(hostname="mail.example.org", own_addresses=("127.0.0.1",))
    with structlog.testing.capture_logs() as logs:
        wait_until_ready(policy, deps)  # type: ignore[arg-type]
    assert [(e["event"], e["component"]) for e in logs] == [
        ("start.waiting", "database"),
        ("start.ready", "database"),
        ("start.waiting", "webroot"),
        ("start.ready", "webroot"),
    ]
    assert check.asked[0] == ("mail.example.org", "127.0.0.1")


def test_waits_for_dockerapi_between_the_database_and_the_webroot() -> None:
    """dockerapi's name is waited for after the database and before the webroot, with one
    waiting line and one ready line, as acme-mailcow's ``until ping dockerapi``."""
    _, dockerapi = ready_after(3)
    deps = Deps(Source(fails=1), Check([None]), services_ready=dockerapi)
    policy = StartPolicy(hostname="mail.example.org", own_addresses=("127.0.0.1",))
    with structlog.testing.capture_logs() as logs:
        wait_until_ready(policy, deps)  # type: ignore[arg-type]
    assert [(e["event"], e["component"]) for e in logs] == [
        ("start.waiting", "database"),
        ("start.ready", "database"),
        ("start.waiting", "dockerapi"),
        ("start.ready", "dockerapi"),
    ]


def test_dockerapi_never_there_is_one_line_each_way_and_the_start_goes_on() -> None:
    """A dockerapi that never comes is bounded by ACME_DOCKERAPI_WAIT: one waiting line, one
    gave-up line, and the webroot wait still follows; 0 does not wait at all."""
    _, never = ready_after(10**9)
    check = Check([None])
    deps = Deps(Source(fails=0), check, services_ready=never)
    policy = StartPolicy(
        hostname="mail.example.org", own_addresses=("127.0.0.1",), dockerapi_wait=0.05
    )
    with structlog.testing.capture_logs() as logs:
        wait_until_ready(policy, deps)  # type: ignore[arg-type]
    assert [(e["event"], e["component"]) for e in logs] == [
        ("start.waiting", "dockerapi"),
        ("start.gave_up", "dockerapi"),
    ]
    assert check.asked == [("mail.example.org", "127.0.0.1")]
    off = StartPolicy(hostname="mail.example.org", own_addresses=("127.0.0.1",), dockerapi_wait=0)
    with structlog.testing.capture_logs() as logs:
        wait_until_ready(off, deps)  # type: ignore[arg-type]
    assert logs == []


def test_the_webroot_probe_never_goes_to_a_foreign_private_address() -> None:
    check = Check([None])
    deps = Deps(Source(fails=0), check)
    policy = StartPolicy(hostname="mail.example.org", webroot_wait=0.05)
    with structlog.testing.capture_logs() as logs:
        wait_until_ready(policy, deps)  # type: ignore[arg-type]
    assert check.asked == []
    assert "no address the self-check may use" in logs[0]["reason"]
    assert logs[-1]["event"] == "start.gave_up"


def test_the_webroot_probe_goes_to_a_lan_address_under_skip_ip_check() -> None:
    """SKIP_IP_CHECK=y: the hostname's split-horizon answer is checked at start too, and the
    self-check's redirects get the same address rule."""

    class Lan:
        def lookup(self, name: str, rdtype: str) -> Lookup:
            return Lookup(("192.168.1.10",) if rdtype == "A" else ())

    check = Check([None])
    deps = Deps(Source(fails=0), check)
    deps.resolver = Lan()  # type: ignore[assignment]
    policy = StartPolicy(hostname="mail.example.org", skip_ip_check=True)
    wait_until_ready(policy, deps)  # type: ignore[arg-type]
    assert check.asked == [("mail.example.org", "192.168.1.10")]
    assert [p.skip_ip_check for p in deps.policies] == [True]


def test_no_webroot_wait_when_http_verification_is_skipped() -> None:
    check = Check(["refused"])
    deps = Deps(Source(fails=0), check)
    policy = StartPolicy(hostname="mail.example.org", check_webroot=False)
    with structlog.testing.capture_logs() as logs:
        wait_until_ready(policy, deps)  # type: ignore[arg-type]
    assert logs == [] and check.asked == []


def test_database_down_is_quiet_until_acme_db_wait() -> None:
    start = datetime(2026, 11, 30, tzinfo=UTC)
    grace = DbGrace(timedelta(minutes=10), start)
    assert grace.quiet(True, start + timedelta(minutes=9))
    assert not grace.quiet(True, start + timedelta(minutes=10))
    # up again: a later outage gets its own ten minutes
    assert not grace.quiet(False, start + timedelta(minutes=11))
    assert grace.quiet(True, start + timedelta(hours=2))
    assert grace.quiet(True, start + timedelta(hours=2, minutes=9))
    assert not grace.quiet(True, start + timedelta(hours=2, minutes=10))


def test_the_webroot_wait_comes_before_the_first_self_check_only(tmp_path: Path) -> None:
    """The daemon waits for the webroot before the first cycle that self-checks a name, once;
    a first cycle that reuses every recent verdict (a restart) checks nothing and does not
    wait, so it imports neither dnspython nor requests."""
    world = World(tmp_path / "ssl")
    policy = cycle_policy()
    calls: list[str] = []
    deps = replace(world.deps(), before_checks=lambda: calls.append("webroot"))
    first = guarded_cycle(policy, deps)  # new volume: every name is checked
    assert first.outcome is Outcome.OK and calls == ["webroot"]
    calls.clear()
    world.clock.advance(3600)  # a restart within ACME_REVALIDATE_AFTER
    ledger = State.from_json((world.root / "acme/state.json").read_text())
    again = guarded_cycle(policy, deps, ledger)
    assert again.outcome is Outcome.OK and calls == []


def test_the_webroot_gate_waits_once() -> None:
    """The gate runs the webroot wait the first time only; later self-checks go straight on."""
    check = Check(["404 Not Found", None])
    deps = Deps(Source(fails=0), check)
    policy = StartPolicy(hostname="mail.example.org", own_addresses=("127.0.0.1",))
    gate = webroot_gate(policy, deps)  # type: ignore[arg-type]
    with structlog.testing.capture_logs() as logs:
        gate()
        gate()
    assert [e["event"] for e in logs] == ["start.waiting", "start.ready"]
    assert len(check.asked) == 2  # the two probes of the first wait, none after it


def test_the_database_is_tried_at_least_every_db_retry_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The start wait's steps never exceed ACME_DB_RETRY_INTERVAL: with 2 s the ladder
    1, 2, 5, 10, 15, 30 s becomes 1, 2, 2, 2 s; the default keeps the ladder."""
    monkeypatch.setattr(startup, "LADDER", (1.0, 2.0, 5.0, 10.0, 15.0))
    monkeypatch.setattr(startup, "LAST_STEP", 30.0)

    class Stop:
        def __init__(self) -> None:
            self.waits: list[float] = []

        def wait(self, seconds: float) -> bool:
            self.waits.append(seconds)
            return False

        def is_set(self) -> bool:
            return False

    for every, steps in ((2.0, [1.0, 2.0, 2.0, 2.0]), (60.0, [1.0, 2.0, 5.0, 10.0])):
        stop = Stop()
        _, probe = ready_after(4)
        assert wait_for("database", probe, 600, stop, every=every)  # type: ignore[arg-type]
        assert stop.waits == steps
