"""Verification after a deploy: concurrent probes under one deadline, and endpoints whose host
does not resolve.

Fake probes and resolvers (``probe(endpoint, name, timeout)``, ``resolve(host, port)``) stand in
for the network. Time comes from a ``TestClock``: a fake probe "takes" its seconds on it, and the
test moves it on only when every probe has done what it can, so what is asserted is the deadline
logic (which pairs end how, at which clock reading), never the machine's speed.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from acme_sidecar.adapters.tls_probe import Mismatch, check_served, unresolved
from acme_sidecar.config.policies import DeployPolicy
from acme_sidecar.core.consumers import Change, Endpoint
from acme_sidecar.shell.deploy import deploy
from tests.unit.fakes import FakeServices
from tests.unit.timing import LIMIT, TestClock, drive, in_thread, wait_until, within_limit

ENDPOINTS = [
    Endpoint("postfix", "smtp", "postfix", 25),
    Endpoint("dovecot", "imap", "dovecot", 143),
    Endpoint("nginx", "https", "nginx", 443),
]
NAMES = {f"d{i:02}.test": 1000 + i for i in range(51)}  # 51 SNI certificates


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Lets blocked fake probes and lookups finish when the test ends."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def clock() -> TestClock:
    return TestClock()


def test_51_names_on_3_endpoints_run_concurrently(clock: TestClock) -> None:
    """153 probes of 0.1 s each (15.3 s one after another) take 1.3 s: 12 at a time, in 13
    rounds, each pair with its own answer rather than a deadline."""
    done = 0
    lock = threading.Lock()

    def slow(endpoint: Endpoint, name: str, timeout: float) -> int:
        nonlocal done
        clock.sleep(0.1)
        with lock:
            done += 1
        return NAMES[name]

    result = drive(
        lambda: check_served(ENDPOINTS, NAMES, probe=slow, deadline=30, clock=clock),
        clock,
        ready=lambda: clock.sleepers == min(12, 153 - done),
    )
    assert result == [] and done == 153
    assert clock.elapsed == pytest.approx(1.3)


def test_all_timing_out_end_at_the_one_deadline(clock: TestClock) -> None:
    """51 names x 3 blackholed endpoints, 5 attempts of 1 s each: all of it ends at the 2 s
    deadline (two rounds of 12 probes), every pair reported once, as 'deadline'."""
    given: list[float] = []

    def times_out(endpoint: Endpoint, name: str, timeout: float) -> int:
        given.append(timeout)
        clock.sleep(timeout)
        raise TimeoutError("the server did not finish in time")

    result = drive(
        lambda: check_served(
            ENDPOINTS, NAMES, probe=times_out, timeout=1.0, deadline=2.0, clock=clock
        ),
        clock,
        ready=lambda: clock.sleepers == 12,
    )
    assert clock.elapsed == pytest.approx(2.0) and given == [1.0] * 24
    assert len(result) == 153 and len({(m.endpoint, m.server_name) for m in result}) == 153
    assert {m.error for m in result} == {"deadline"}


def test_a_blackholed_endpoint_does_not_starve_the_others(clock: TestClock) -> None:
    """Dovecot never answers (each probe takes its full 1 s): while its probes hang, Postfix
    and nginx are confirmed for every name; at the 2 s deadline only Dovecot's pairs are
    reported."""
    confirmed = 0
    lock = threading.Lock()

    def dovecot_dead(endpoint: Endpoint, name: str, timeout: float) -> int:
        nonlocal confirmed
        if endpoint.service == "dovecot":
            clock.sleep(timeout)
            raise TimeoutError("the server did not finish in time")
        with lock:
            confirmed += 1
        return NAMES[name]

    result = drive(
        lambda: check_served(
            ENDPOINTS, NAMES, probe=dovecot_dead, timeout=1.0, deadline=2.0, clock=clock
        ),
        clock,
        ready=lambda: confirmed == 102 and clock.sleepers == 4,  # Dovecot's share of 12
    )
    assert len(result) == 51 and {m.endpoint.service for m in result} == {"dovecot"}
    assert {m.error for m in result} == {"deadline"} and clock.elapsed == pytest.approx(2.0)


def test_failing_pairs_end_on_their_last_attempt_before_the_deadline() -> None:
    """Pairs that fail fast get all their attempts (pauses 0.05, 0.1 s) and keep their error."""
    calls: list[str] = []
    pauses: list[float] = []

    def refused(endpoint: Endpoint, name: str, timeout: float) -> int:
        calls.append(name)
        raise ConnectionRefusedError("refused")

    result = check_served(
        ENDPOINTS,
        NAMES,
        probe=refused,
        attempts=3,
        first_delay=0.05,
        deadline=10,
        sleep=pauses.append,
        clock=TestClock(),
    )
    assert len(calls) == 153 * 3 and sorted(set(pauses)) == [0.05, 0.1]
    assert len(result) == 153 and {m.error for m in result} == {"ConnectionRefusedError: refused"}


def test_stop_ends_it_at_once(clock: TestClock, release: threading.Event) -> None:
    """A stop while 12 probes block ends the verification at once: every pair 'stopped', with
    the clock standing still (so neither the deadline nor an answer ended it)."""
    stop = threading.Event()
    blocked = 0
    lock = threading.Lock()

    def blocks(endpoint: Endpoint, name: str, timeout: float) -> int:
        nonlocal blocked
        with lock:
            blocked += 1
            if blocked == 12:
                stop.set()
        release.wait(30)
        return NAMES[name]

    result = within_limit(
        lambda: check_served(ENDPOINTS, NAMES, probe=blocks, stop=stop, clock=clock)
    )
    assert len(result) == 153 and {m.error for m in result} == {"stopped"}
    assert blocked == 12 and clock.elapsed == 0


def test_probes_in_flight_are_bounded() -> None:
    """Never more than ``workers`` probes at once, and that many are used."""
    lock = threading.Lock()
    now = peak = 0

    def counted(endpoint: Endpoint, name: str, timeout: float) -> int:
        nonlocal now, peak
        with lock:
            now += 1
            peak = max(peak, now)
        time.sleep(0.02)
        with lock:
            now -= 1
        return NAMES[name]

    assert check_served(ENDPOINTS, NAMES, probe=counted, workers=8) == []
    assert peak == 8


def scripted(endpoint: Endpoint, name: str, attempt: int) -> int:
    """A deterministic consumer: some pairs right at once, some after a few tries, some always
    serving another serial, some never answering."""
    index = int(name[1:3]) + len(endpoint.service)
    if index % 5 == 0:
        raise ConnectionRefusedError(f"refused on try {attempt}")
    if index % 5 == 1:
        return 7  # an old certificate
    if index % 5 == 2 and attempt < 3:
        return 7 + attempt  # stale for a while, then right
    return NAMES[name]


def run_scripted(workers: int) -> list[Mismatch]:
    tries: dict[tuple[Endpoint, str], int] = {}
    lock = threading.Lock()

    def probe(endpoint: Endpoint, name: str, timeout: float) -> int:
        with lock:
            tries[endpoint, name] = attempt = tries.get((endpoint, name), 0) + 1
        return scripted(endpoint, name, attempt)

    return check_served(ENDPOINTS, NAMES, probe=probe, sleep=lambda pause: None, workers=workers)


def test_concurrent_results_are_the_sequential_ones() -> None:
    """One worker or twelve: the same mismatches, in the order of endpoints then names, each
    with the answer of its last attempt."""
    one, many = run_scripted(1), run_scripted(12)
    assert one == many
    expected = [
        (e, n) for e in ENDPOINTS for n in NAMES if (int(n[1:3]) + len(e.service)) % 5 in (0, 1)
    ]
    assert [(m.endpoint, m.server_name) for m in many] == expected
    refused = [m for m in many if m.served is None]
    assert refused and {m.error for m in refused} == {"ConnectionRefusedError: refused on try 5"}
    assert {m.served for m in many if m.served is not None} == {7}


def test_pauses_grow_per_pair() -> None:
    """A pair that stays wrong waits 0.5, 1, 2, 4 s between its five attempts."""
    pauses: list[float] = []
    result = check_served(
        ENDPOINTS[:1], {"a.test": 1}, probe=lambda e, n, t: 2, sleep=pauses.append
    )
    assert pauses == [0.5, 1.0, 2.0, 4.0] and [m.served for m in result] == [2]


def other_stack(host: str, port: int) -> object:
    if host.startswith("other-"):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return [("addr",)]


def test_unresolved_names_each_host_that_does_not_resolve() -> None:
    """Only the endpoints of another stack's names come back, with the resolver's reason."""
    eps = [*ENDPOINTS, Endpoint("nginx", "https", "other-nginx", 443)]
    missing = unresolved(eps, resolve=other_stack)
    assert missing == {eps[3]: "[Errno -2] Name or service not known"}


def test_a_name_that_appears_on_a_retry_resolves() -> None:
    """A container's name missing for a moment (it is restarting) still counts as resolving."""
    failures = iter([True, False])

    def flaky(host: str, port: int) -> object:
        if next(failures):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return []

    assert unresolved(ENDPOINTS[:1], resolve=flaky) == {}


def test_a_hanging_lookup_ends_at_its_timeout(clock: TestClock, release: threading.Event) -> None:
    """A resolver that never answers for Postfix: the others are looked up meanwhile, the call
    waits on until the clock reaches the 0.5 s timeout, then Postfix counts as not resolving."""
    answered: list[str] = []

    def hangs(host: str, port: int) -> object:
        if host == "postfix":
            release.wait(30)
        answered.append(host)
        return []

    running = in_thread(lambda: unresolved(ENDPOINTS, timeout=0.5, resolve=hangs, clock=clock))
    wait_until(lambda: sorted(answered) == ["dovecot", "nginx"], "the other two answered")
    clock.advance(0.49)
    assert not running.done()
    clock.advance(0.01)
    missing = running.result(timeout=LIMIT)
    assert missing == {ENDPOINTS[0]: "the lookup did not finish within 0.5s"}


def test_deploy_warns_once_for_an_endpoint_that_does_not_resolve(tmp_path: Path) -> None:
    """An endpoint at a name that cannot resolve (RFC 6761 .invalid) after a deploy: one
    warning naming the service and host, no check, no error."""
    policy = DeployPolicy(endpoints=(Endpoint("nginx", "https", "nginx.invalid", 443),))
    services = FakeServices()
    with capture_logs() as logs:
        change = Change(dirs=frozenset({"a.test"}))
        actions, errors = deploy(policy, services, {"a.test": 1}, change=change)
    assert errors == 0 and len(services.calls) == 1 and actions
    skipped = [e for e in logs if e["event"] == "service.verify_skipped"]
    assert len(skipped) == 1 and skipped[0]["log_level"] == "warning"
    assert skipped[0]["service"] == "nginx" and skipped[0]["host"] == "nginx.invalid"
    assert "not checked" in skipped[0]["reason"]
    assert not [e for e in logs if e["event"] in ("service.verified", "service.verify_failed")]
