"""Issue #7: SIGKILL at any moment of an SNI cycle leaves a volume every reader can use, and
the next run finishes the job: every consumer serves what is stored, nothing stored is ordered
again.

Random kills draw their moment over the span of one measured cycle from a seeded
``random.Random`` (``ACME_KILL_SEED`` picks the seed; it is printed and in every assertion;
``ACME_KILLS`` the count). Every ``SETTLE_EVERY`` kills a full run is checked and the volume
starts over with a fresh ledger (keys kept): the sidecar rightly refuses a fifth certificate
for the same names in a week, so each segment forces at most two renewals.
The write-point kills strike when a given log line arrives, when a staged ``*.new`` file
appears in the volume, or right after one rename of a swap (``killing.SHIM``).
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from tests.certs import write_pair
from tests.integration import killing
from tests.integration.conftest import consumer_stack
from tests.integration.killing import Trigger
from tests.integration.sidecar import HOST, seed
from tests.integration.stack import Stack
from tests.world import World

pytestmark = pytest.mark.slow  # minutes: left out by -m "not slow" (README, Run the tests)

KILLS = int(os.environ.get("ACME_KILLS", "50"))
SETTLE_EVERY = 10  # kills between two full runs that are checked end to end
LADDER = "1s"
PAST_LADDER = 1.2  # seconds: an order cut off by a kill may be placed again after this


Totals = Callable[[str, dict[str, int]], None]  # the `totals` fixture (tests/conftest.py)


def sni_env(stack: Stack) -> dict[str, str]:
    return stack.env | {"ENABLE_SSL_SNI": "y", "ACME_RETRY_LADDER": LADDER}


@dataclass
class Tally:
    """What the kills found, counted the way the summary line reports it."""

    kills: int = 0
    inconsistent_volumes: int = 0
    undeployed_certificates: int = 0
    reorders: int = 0
    failed_runs: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "kills": self.kills,
            "inconsistent_volumes": self.inconsistent_volumes,
            "undeployed_certificates": self.undeployed_certificates,
            "reorders": self.reorders,
        }

    def line(self) -> str:
        return (
            f"kills={self.kills} inconsistent_volumes={self.inconsistent_volumes} "
            f"undeployed_certificates={self.undeployed_certificates}"
        )


class Forced:
    """The certificates ``force_renew`` still covers: all stored ones when it is touched,
    minus each one stored anew since (the same rule the admin would apply)."""

    def __init__(self, volume: Path) -> None:
        self.volume = volume
        self.names: set[str] = set()

    def touch(self) -> None:
        (self.volume / "force_renew").touch()
        self.names = set(killing.cert_dir_names(self.volume))

    def update(self, before: killing.Stored, after: killing.Stored) -> None:
        if not (self.volume / "force_renew").exists():
            self.names = set()
        self.names -= {n for n in after if n in before and after[n][0] != before[n][0]}


def full_run(
    stack: Stack, env: dict[str, str], forced: Forced, tally: Tally, findings: list[str], why: str
) -> killing.Outcome:
    """Run ``once`` to the end and check volume, served serials and orders; count findings."""
    time.sleep(PAST_LADDER)
    before = killing.stored(stack.volume)
    done = killing.run(env, volume=stack.volume)
    after = killing.stored(stack.volume)
    if done.code != 0:
        tally.failed_runs += 1
        findings.append(f"{why}: the full run exited {done.code}:\n{done.tail()}")
    problems = killing.volume_problems(stack.volume, staged_allowed=False)
    if problems:
        tally.inconsistent_volumes += 1
        findings.append(f"{why}: after the full run: {problems}")
    ordered = [e["certificate"] for e in done.named("order.created")]
    wrong = killing.unwanted_orders(before, after, ordered, forced.names)
    tally.reorders += len(wrong)
    findings += [f"{why}: {w}" for w in wrong]
    forced.update(before, after)
    served = killing.served_problems(stack)
    if served:
        tally.undeployed_certificates += len({p.split(":")[0].split(" ", 1)[1] for p in served})
        findings.append(f"{why}: not served after the full run: {served}")
    return done


def fresh_volume(volume: Path) -> None:
    """Empty the volume in place (the consumers keep their mount) but for the account and
    certificate keys, and put back the snake-oil default pair: a new ledger, so the CA's
    weekly budget starts over, and no key to generate."""
    for entry in volume.iterdir():
        if entry.name == "acme":
            for item in entry.iterdir():
                if item.name not in ("account.pem", "key.pem"):
                    item.unlink()
        elif entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    write_pair(volume, [HOST], domains_file=False)


@dataclass
class Schedule:
    """The seeded plan of work between kills, kept inside the CA's budget for identical
    names (4 a week are used): per segment (a fresh volume) at most ``FORCES`` forced
    renewals, and only domains not used before in the segment are added."""

    FORCES: ClassVar[int] = 2

    rng: random.Random
    segment: int
    active: list[str]
    added: int = 6
    forces: int = 0

    @classmethod
    def start(cls, rng: random.Random, segment: int) -> Schedule:
        return cls(rng, segment, [f"s{segment}d{i}.test" for i in range(1, 7)])

    def work(self, world: World, forced: Forced, idle: bool) -> str:
        """Make something to do (always when ``idle``); say what."""
        roll = self.rng.random()
        if ((idle and roll < 0.5) or roll < 0.1) and self.forces < self.FORCES:
            self.forces += 1
            forced.touch()
            return "force_renew"
        if not idle and roll < 0.8:
            return "-"
        if len(self.active) > 3 and (len(self.active) >= 8 or self.rng.random() < 0.4):
            gone = self.rng.choice(self.active)
            self.active.remove(gone)
            seed(world, self.active)
            return f"-{gone}"
        self.added += 1
        new = f"s{self.segment}d{self.added}.test"
        self.active.append(new)
        seed(world, self.active)
        return f"+{new}"


def test_random_kills_leave_a_usable_volume_and_the_next_run_deploys(
    world: World, stack: Stack, totals: Totals
) -> None:
    """>= 50 SIGKILLs at random moments of SNI cycles (orders, writes, archives, deploys): the
    volume stays consistent after each, and a full run then serves every stored certificate
    without ordering again what is stored."""
    kill_seed = int(os.environ.get("ACME_KILL_SEED") or secrets.randbits(32))
    print(f"ACME_KILL_SEED={kill_seed}")
    rng = random.Random(kill_seed)  # noqa: S311 - a reproducible schedule, not a secret
    env, volume = sni_env(stack), stack.volume
    plan = Schedule.start(rng, 0)
    seed(world, plan.active)
    keys = killing.run(env, volume=volume)  # makes the key, which later cycles reuse
    assert keys.code == 0, keys.tail()
    fresh_volume(volume)
    first = killing.run(env, volume=volume)
    assert first.code == 0, first.tail()
    span = first.elapsed  # the busiest cycle: 7 new certificates, 3 restarts
    startup = first.first_line or 0.0  # the interpreter and imports: no cycle yet
    print(f"one cycle: {span:.1f}s, of which {startup:.1f}s start-up")

    tally, findings = Tally(), list[str]()
    rounds, segment, idle = 0, 0, True
    forced = Forced(volume)
    while tally.kills < KILLS and rounds < 6 * KILLS:
        if tally.kills // SETTLE_EVERY != segment:  # a new segment: a new volume and ledger
            segment = tally.kills // SETTLE_EVERY
            fresh_volume(volume)
            plan, forced, idle = Schedule.start(rng, segment), Forced(volume), False
            seed(world, plan.active)
        rounds += 1
        did = plan.work(world, forced, idle)
        delay = rng.uniform(startup, span)
        before = killing.stored(volume)
        out = killing.run(env, Trigger(delay=delay), volume=volume)
        forced.update(before, killing.stored(volume))
        idle = not out.killed
        if idle:  # the run ended before the kill: draw the next moment within this machine's
            # pace (a loaded machine and a quiet one take very different times for a cycle)
            span = max(startup + 0.2, (span + out.elapsed) / 2)
        last = out.events[-1]["event"] if out.events else "-"
        print(f"round {rounds}: {did}, kill at {delay:.2f}s: killed={out.killed}, last={last}")
        if idle:
            continue
        tally.kills += 1
        why = f"seed {kill_seed} kill {tally.kills} (round {rounds}, {did}, {delay:.2f}s)"
        problems = killing.volume_problems(volume, staged_allowed=True)
        if problems:
            tally.inconsistent_volumes += 1
            findings.append(f"{why}, last event {last}: {problems}\n{out.tail(8)}")
        if tally.kills % SETTLE_EVERY == 0:
            full_run(stack, env, forced, tally, findings, f"{why}, settle")

    print("\n".join(findings))
    print(tally.line())
    totals("fault injection (random SIGKILLs)", tally.counts())
    print(f"reorders={tally.reorders} failed_full_runs={tally.failed_runs} rounds={rounds}")
    summary = f"{tally.line()} reorders={tally.reorders} seed={kill_seed}"
    assert tally.kills >= KILLS, summary
    assert tally.inconsistent_volumes == 0, f"{summary}\n" + "\n".join(findings)
    assert tally.undeployed_certificates == 0, f"{summary}\n" + "\n".join(findings)
    assert tally.reorders == 0 and tally.failed_runs == 0, f"{summary}\n" + "\n".join(findings)


# --- one kill at each write point of a renewal -------------------------------------------

BASE = ("w1.test", "w2.test", "w3.test")
ADDED = (*BASE, "w4.test")
W4 = "autodiscover.w4.test"


@dataclass(frozen=True)
class Point:
    """A kill point: the domains before (None: a fresh volume, the killed run issues the
    first certificates) and during the killed run, force_renew, the trigger, and the
    domains with MTA-STS during the run (their certificate gains a name)."""

    start: tuple[str, ...] | None
    during: tuple[str, ...]
    force: bool
    trigger: Trigger
    mta_sts: tuple[str, ...] = ()


def dirs(domains: tuple[str, ...]) -> set[str]:
    """The certificate directories SNI mode makes for ``domains``: the host's and one each."""
    return {HOST, *(f"autodiscover.{d}" for d in domains)}


def _cert_files(domains: tuple[str, ...]) -> tuple[str, ...]:
    files = ("key.pem", "cert.pem", "domains")
    return tuple(f"{n}/{f}.new" for n in sorted(dirs(domains)) for f in files)


W1 = "autodiscover.w1.test"
POINTS = {
    "order.created": Point(BASE, BASE, True, Trigger(event="order.created")),
    "cert.stored-1": Point(BASE, BASE, True, Trigger(event="cert.stored")),
    "cert.stored-2": Point(BASE, BASE, True, Trigger(event="cert.stored", nth=2)),
    "cert.stored-4": Point(BASE, BASE, True, Trigger(event="cert.stored", nth=4)),
    "cert.default": Point(BASE, BASE, True, Trigger(event="cert.default")),
    "service.reloaded": Point(BASE, BASE, True, Trigger(event="service.reloaded")),
    "service.verified": Point(BASE, BASE, True, Trigger(event="service.verified")),
    "new-in-cert-dir": Point(BASE, BASE, True, Trigger(new_file=True, staged=_cert_files(BASE))),
    "new-top-level": Point(
        BASE, BASE, True, Trigger(new_file=True, staged=("cert.pem.new", "key.pem.new"))
    ),
    "new-dir-key": Point(BASE, ADDED, False, Trigger(new_file=True, staged=(f"{W4}/key.pem.new",))),
    "service.restarted": Point(BASE, ADDED, False, Trigger(event="service.restarted")),
    "cert.archived": Point(ADDED, BASE, False, Trigger(event="cert.archived")),
    # exactly between two renames of one swap
    "first-dir-key-renamed": Point(None, BASE, False, Trigger(renamed=f"{W1}/key.pem")),
    "first-dir-cert-renamed": Point(None, BASE, False, Trigger(renamed=f"{W1}/cert.pem")),
    "first-default-key-renamed": Point(None, BASE, False, Trigger(renamed="key.pem")),
    "names-changed-cert-renamed": Point(
        BASE, BASE, False, Trigger(renamed=f"{W1}/cert.pem"), mta_sts=("w1.test",)
    ),
}


@pytest.fixture(scope="module")
def kill_stack(
    world: World, consumer_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One volume with the snake-oil pair and three consumers, shared by the write points."""
    with consumer_stack(world, tmp_path_factory.mktemp("kills") / "ssl") as built:
        yield built


def arrange(world: World, stack: Stack, domains: tuple[str, ...] | None) -> None:
    """A fresh ledger (the CA's weekly budget starts over) and, unless ``domains`` is None,
    certificates for exactly ``domains`` (plus the host), deployed."""
    fresh_volume(stack.volume)
    if domains is None:
        return
    seed(world, domains)
    done = killing.run(sni_env(stack), volume=stack.volume)
    assert done.code == 0, done.tail()
    assert set(killing.cert_dir_names(stack.volume)) == dirs(domains)


@pytest.mark.parametrize("point", POINTS.values(), ids=POINTS.keys())
def test_kill_at_write_point(world: World, kill_stack: Stack, point: Point, totals: Totals) -> None:
    """Killed at one write point of a first issue, renewal, creation or archive, the volume is
    consistent at once; the next full run serves the stored serials, orders nothing stored."""
    stack, env = kill_stack, sni_env(kill_stack)
    arrange(world, stack, point.start)
    forced = Forced(stack.volume)
    if point.force:
        forced.touch()
    seed(world, point.during, point.mta_sts)
    before = killing.stored(stack.volume)
    out = killing.run(env, point.trigger, volume=stack.volume)
    assert out.killed, f"never reached the kill point:\n{out.tail()}"
    forced.update(before, killing.stored(stack.volume))
    problems = killing.volume_problems(stack.volume, staged_allowed=True)
    findings = [f"right after the kill at {out.killed_at}: {problems}"] if problems else []

    tally = Tally(kills=1)
    done = full_run(stack, env, forced, tally, findings, f"killed at {out.killed_at}")
    tally.inconsistent_volumes += bool(problems)
    totals("fault injection (a kill at each write point)", tally.counts())
    assert findings == [], "\n".join(findings)
    assert set(killing.cert_dir_names(stack.volume)) == dirs(point.during)
    assert not (stack.volume / "force_renew").exists(), done.tail()
