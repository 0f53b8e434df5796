"""The key rollover under DANE (issue #17, check mode): the pure step (core.rollover) as a table,
what follows a cycle (settled), and the glue (shell.rollover) on a real volume with a fake TLSA
lookup: the next key is made first, told once, held until seen for 2 x TTL, then used."""

from __future__ import annotations

import stat
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from acme_sidecar.adapters.volume import CertStore
from acme_sidecar.adapters.volume.keys import generate, tlsa_311, to_pem
from acme_sidecar.adapters.volume.pem import load_key
from acme_sidecar.core.dane import Tlsa, TlsaAnswer
from acme_sidecar.core.ports import RecordWriter
from acme_sidecar.core.report import Outcome, Report
from acme_sidecar.core.rollover import (
    Progress,
    Rollover,
    Step,
    record,
    rollover,
    settled,
    wake_at,
)
from acme_sidecar.core.wake import Pacing, next_wake
from acme_sidecar.ops.alerts import DANE_PUBLISH_NEXT
from acme_sidecar.ops.dane import DaneCheck, load_state, save_rollover, status_rows
from acme_sidecar.ops.hooks import CycleEvent
from acme_sidecar.shell.rollover import KeyRoll, order_keys
from tests.certs import cert_pem, leaf

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)
OWNER = "_25._tcp.mail.example.org"
CUR, NXT, OTHER = "aa" * 32, "bb" * 32, "cc" * 32


def answer(*data: str, secure: bool = True, ttl: int = 300, error: str = "") -> TlsaAnswer:
    """A TLSA answer holding ``3 1 1`` records of ``data``."""
    return TlsaAnswer(tuple(Tlsa(3, 1, 1, d) for d in data), secure=secure, error=error, ttl=ttl)


SEEN = Progress(next=NXT, current=CUR, told=True, seen=NOW, ttl=300)


@pytest.mark.parametrize(
    ("next_", "found", "progress", "at", "step", "tell"),
    [
        (NXT, answer(), Progress(), 0, Step.FREE, False),  # no RRset: free
        (NXT, answer(CUR, secure=False), Progress(), 0, Step.FREE, False),  # unsigned: free
        ("", answer(CUR), Progress(), 0, Step.PREPARE, False),  # pinned, no next key yet
        (NXT, answer(CUR), Progress(), 0, Step.PUBLISH, True),  # told the first time
        (NXT, answer(CUR), replace(SEEN, seen=None), 0, Step.PUBLISH, False),  # not again
        (NXT, answer(CUR, NXT), Progress(next=NXT, told=True), 0, Step.WAIT, False),  # seen now
        (NXT, answer(CUR, NXT), SEEN, 599, Step.WAIT, False),  # 2 x TTL not passed
        (NXT, answer(CUR, NXT), SEEN, 600, Step.SWITCH, False),  # 2 x TTL passed
        (NXT, answer(NXT), SEEN, 600, Step.SWITCH, False),  # the current one already gone
        (NXT, answer(CUR, error="Timeout"), SEEN, 900, Step.WAIT, False),  # unknown: hold
        (NXT, answer(CUR), SEEN, 900, Step.PUBLISH, False),  # the record went away again
        (OTHER, answer(CUR, NXT), SEEN, 900, Step.PUBLISH, True),  # another next key: anew
    ],
)
def test_rollover_step_table(
    next_: str, found: TlsaAnswer, progress: Progress, at: int, step: Step, tell: bool
) -> None:
    """Each case gives its step, and the records are told once per next key."""
    roll = rollover(CUR, next_, {OWNER: found}, progress, NOW + timedelta(seconds=at))
    assert (roll.step, roll.tell) == (step, tell)
    assert roll.held == (step in (Step.PREPARE, Step.PUBLISH, Step.WAIT))


def test_a_failed_lookup_holds_the_key_only_where_records_were_seen() -> None:
    """A lookup that fails holds a key change when validated records were seen before (the
    DANE check's results, or a rollover under way); with none ever seen (a new install leaving
    mailcow's snake-oil pair behind a failing resolver) the key changes, and the line says so."""
    failed = {OWNER: answer(error="Timeout")}
    free = rollover(CUR, NXT, failed, Progress(), NOW)
    assert free.step is Step.FREE and "no TLSA record was seen before" in free.reason
    assert rollover(CUR, "", failed, Progress(), NOW, known=True).step is Step.PREPARE
    assert rollover(CUR, NXT, failed, Progress(), NOW, known=True).step is Step.WAIT
    assert rollover(CUR, NXT, failed, replace(SEEN, seen=None), NOW).step is Step.WAIT


def test_rollover_publish_names_the_record_to_add() -> None:
    """The reason and the progress hold the exact ``3 1 1`` record of the next key."""
    roll = rollover(CUR, NXT, {OWNER: answer(CUR)}, Progress(), NOW)
    assert roll.progress.records == (f"{OWNER}. IN TLSA 3 1 1 {NXT}",)
    assert roll.progress.records[0] in roll.reason
    assert roll.progress.old_records == (record(OWNER, CUR),)


def test_rollover_waits_for_every_owner() -> None:
    """With two ports pinned, the next record must be in both RRsets."""
    port465 = "_465._tcp.mail.example.org"
    answers = {OWNER: answer(CUR, NXT), port465: answer(CUR)}
    roll = rollover(CUR, NXT, answers, Progress(), NOW)
    assert roll.step is Step.PUBLISH and port465 in roll.reason and OWNER not in roll.reason


def test_rollover_first_seen_is_kept_and_ttl_is_the_largest() -> None:
    """The first time the record is seen counts, and the largest TTL seen."""
    first = rollover(CUR, NXT, {OWNER: answer(CUR, NXT, ttl=30)}, Progress(), NOW)
    later = NOW + timedelta(seconds=50)
    second = rollover(CUR, NXT, {OWNER: answer(CUR, NXT, ttl=10)}, first.progress, later)
    assert (second.progress.seen, second.progress.ttl, second.step) == (NOW, 30, Step.WAIT)
    third = rollover(CUR, NXT, {OWNER: answer(CUR, NXT, ttl=10)}, second.progress, NOW + (
        timedelta(seconds=60)))  # fmt: skip
    assert third.step is Step.SWITCH


def test_settled_says_switched_then_retire_once() -> None:
    """The served key became the next one: ``switched``; 2 x TTL later ``retire_old``, once."""
    progress = replace(SEEN, old_records=(record(OWNER, CUR),))
    assert settled(CUR, progress, NOW) == (progress, "")
    switched, say = settled(NXT, progress, NOW)
    assert say == "switched" and switched.switched == NOW
    assert settled(NXT, switched, NOW + timedelta(seconds=599))[1] == ""
    retired, say = settled(NXT, switched, NOW + timedelta(seconds=600))
    assert say == "retire_old" and record(OWNER, CUR) in retired.reason
    assert settled(NXT, retired, NOW + timedelta(days=1)) == (retired, "")


# --- the glue: shell.rollover on a real volume ------------------------------------------------


class FakeDns:
    """TLSA answers by owner; counts the lookups."""

    def __init__(self) -> None:
        self.records: list[str] = []
        self.lookups = 0

    def lookup(self, host: str, port: int) -> TlsaAnswer:
        """The ``3 1 1`` records set, validated, TTL 1 s."""
        self.lookups += 1
        return answer(*self.records, ttl=1)


def at(when: datetime) -> CycleEvent:
    """A finished quiet cycle at ``when``."""
    return CycleEvent(Report(Outcome.OK), {}, when)


def served_volume(root: Path, kind: str = "rsa2048") -> tuple[CertStore, str]:
    """A volume whose served pair and ``acme/key.pem`` are on one key of ``kind``."""
    key = generate(kind)
    pem = to_pem(key)
    (root / "acme").mkdir(parents=True, mode=0o700)
    (root / "acme" / "key.pem").write_bytes(pem)
    (root / "key.pem").write_bytes(pem)
    (root / "cert.pem").write_bytes(cert_pem(leaf(["mail.example.org"], key=key)))
    return CertStore(root), tlsa_311(key)


def roll_of(tmp_path: Path, dns: FakeDns) -> KeyRoll:
    """The glue for one owner, state in ``tmp_path``."""
    return KeyRoll(("mail.example.org",), (25,), dns.lookup, tmp_path / "dane.json")


def hook(tmp_path: Path, dns: FakeDns, publisher: RecordWriter | None = None) -> DaneCheck:
    """``ops.dane`` for one owner (``publisher``: ``ACME_DANE=publish``), state in
    ``tmp_path``."""
    return DaneCheck(
        hosts=("mail.example.org",),
        ports=(25,),
        interval=timedelta(hours=1),
        cert_file=tmp_path / "ssl" / "cert.pem",
        state=tmp_path / "dane.json",
        lookup=dns.lookup,
        publisher=publisher,
    )


def test_glue_no_key_change_looks_nothing_up(tmp_path: Path) -> None:
    """Key reuse with the configured type: no lookup, nothing made, no state."""
    store, _ = served_volume(tmp_path / "ssl")
    dns = FakeDns()
    assert roll_of(tmp_path, dns).before_plan(store, "rsa2048", reuse=True, now=NOW) is None
    assert dns.lookups == 0 and not (tmp_path / "ssl" / "acme" / "key.next.pem").exists()
    assert not (tmp_path / "dane.json").exists()


def test_glue_type_change_prepares_tells_holds_then_switches(tmp_path: Path) -> None:
    """rsa2048 -> ec256 with the current key pinned: the next key is made (0600) and told
    once; held (the plan keeps rsa2048, orders keep the served key) until its record has been
    seen for 2 x TTL; then it is ordered with and becomes ``acme/key.pem``."""
    store, current = served_volume(tmp_path / "ssl")
    dns = FakeDns()
    dns.records = [current]
    roll = roll_of(tmp_path, dns)
    with structlog.testing.capture_logs() as logs:
        first = roll.before_plan(store, "ec256", reuse=True, now=NOW)
        again = roll.before_plan(store, "ec256", reuse=True, now=NOW + timedelta(seconds=5))
    assert first is not None and again is not None
    assert (first.step, first.kind, again.step) == (Step.PUBLISH, "rsa2048", Step.PUBLISH)
    next_path = tmp_path / "ssl" / "acme" / "key.next.pem"
    assert stat.S_IMODE(next_path.stat().st_mode) == 0o600
    nxt = tlsa_311(load_key(next_path.read_bytes()))
    told = [e for e in logs if e["event"] == "dane.publish_next"]
    assert [t["add"] for t in told] == [f"{OWNER}. IN TLSA 3 1 1 {nxt}"]
    assert [e["event"] for e in logs].count("dane.held") == 2
    keys = order_keys(store, first, "ec256", ["mail"], reuse=True, server="mail")
    assert keys == {"mail": (tmp_path / "ssl" / "key.pem").read_bytes()}
    dns.records = [current, nxt]
    seen = roll.before_plan(store, "ec256", reuse=True, now=NOW + timedelta(seconds=10))
    assert seen is not None and seen.step is Step.WAIT
    go = roll.before_plan(store, "ec256", reuse=True, now=NOW + timedelta(seconds=12))
    assert go is not None and (go.step, go.kind) == (Step.SWITCH, "ec256")
    keys = order_keys(store, go, "ec256", ["mail"], reuse=True, server="mail")
    assert isinstance(keys, bytes) and tlsa_311(load_key(keys)) == nxt
    assert not next_path.exists()
    assert tlsa_311(load_key((tmp_path / "ssl" / "acme" / "key.pem").read_bytes())) == nxt
    assert list((tmp_path / "ssl" / "backups" / "acme").iterdir())  # the old key kept


def test_glue_stale_next_key_of_another_type_is_replaced(tmp_path: Path) -> None:
    """A ``key.next.pem`` of another type than the one wanted is made anew."""
    store, current = served_volume(tmp_path / "ssl")
    stale = to_pem(generate("ec384"))
    (tmp_path / "ssl" / "acme" / "key.next.pem").write_bytes(stale)
    dns = FakeDns()
    dns.records = [current]
    roll = roll_of(tmp_path, dns).before_plan(store, "ec256", reuse=True, now=NOW)
    assert roll is not None and roll.step is Step.PUBLISH
    made = (tmp_path / "ssl" / "acme" / "key.next.pem").read_bytes()
    assert made != stale and tlsa_311(load_key(made)) == roll.progress.next


def test_glue_no_tlsa_changes_the_key_freely(tmp_path: Path) -> None:
    """No TLSA RRset: the step is free and no next key is made (the key changes as before)."""
    store, _ = served_volume(tmp_path / "ssl")
    roll = roll_of(tmp_path, FakeDns()).before_plan(store, "ec256", reuse=True, now=NOW)
    assert roll is not None and (roll.step, roll.held) == (Step.FREE, False)
    assert not (tmp_path / "ssl" / "acme" / "key.next.pem").exists()


def test_hook_says_switched_retire_and_alerts_while_unpublished(tmp_path: Path) -> None:
    """``ops.dane`` after a cycle: an alert while the next record is unpublished; once the
    served key is the next one, ``dane.switched``; 2 x TTL later ``dane.retire_old``, and
    ``status`` says what may go."""
    store, current = served_volume(tmp_path / "ssl")
    dns = FakeDns()
    dns.records = [current]
    roll_of(tmp_path, dns).before_plan(store, "ec256", reuse=True, now=NOW)
    check = hook(tmp_path, dns)
    (notice,) = [n for n in check.notices() if n.event == DANE_PUBLISH_NEXT]
    progress = load_state(tmp_path / "dane.json").rollover
    assert notice.details["add"] == list(progress.records)
    key = load_key((tmp_path / "ssl" / "acme" / "key.next.pem").read_bytes())
    (tmp_path / "ssl" / "cert.pem").write_bytes(cert_pem(leaf(["mail.example.org"], key=key)))
    dns.records = [current, progress.next]
    state = load_state(tmp_path / "dane.json")
    seen = replace(state.rollover, seen=NOW, ttl=1, step="switch")
    save_rollover(tmp_path / "dane.json", seen)
    with structlog.testing.capture_logs() as logs:
        check.after_cycle(at(NOW + timedelta(seconds=3)))
        check.after_cycle(at(NOW + timedelta(seconds=4)))
        check.after_cycle(at(NOW + timedelta(seconds=5)))
        check.after_cycle(at(NOW + timedelta(seconds=6)))
    said = [e["event"] for e in logs if e["event"] in ("dane.switched", "dane.retire_old")]
    assert said == ["dane.switched", "dane.retire_old"]
    rows = status_rows(tmp_path / "dane.json")
    assert rows is not None and rows["rollover"]["remove"] == [record(OWNER, current)]
    assert [n for n in check.notices() if n.event == DANE_PUBLISH_NEXT] == []


@pytest.mark.parametrize(
    ("step", "progress", "wake"),
    [
        (Step.FREE, Progress(), None),
        (Step.PUBLISH, replace(SEEN, seen=None), NOW + timedelta(hours=1)),  # look again
        (Step.WAIT, replace(SEEN, seen=None), NOW + timedelta(hours=1)),  # lookup failed
        (Step.WAIT, SEEN, NOW + timedelta(seconds=600)),  # the switch
        (Step.SWITCH, SEEN, NOW + timedelta(seconds=600)),  # the retirement
        (Step.FREE, replace(SEEN, switched=NOW), NOW + timedelta(seconds=600)),
        (Step.FREE, replace(SEEN, switched=NOW, retired=True), None),
    ],
)
def test_wake_at_each_step(step: Step, progress: Progress, wake: datetime | None) -> None:
    """The daemon wakes for the rollover's next step, and not when none is due."""
    roll = Rollover(step, progress, "")
    assert wake_at(roll, NOW, timedelta(hours=1)) == wake


def test_wake_takes_the_rollover_step_when_earlier() -> None:
    """``core.wake`` picks the rollover's time when it comes before the regular check."""
    pacing = Pacing(
        check_interval=timedelta(days=1),
        db_retry_interval=timedelta(minutes=1),
        idle_interval=timedelta(hours=1),
        ladder=(timedelta(minutes=5),),
        retry_interval=timedelta(minutes=5),
    )
    at = NOW + timedelta(seconds=600)
    wake = next_wake(Report(Outcome.OK, rollover_at=at), pacing, NOW)
    assert (wake.seconds, wake.reason) == (600, "key rollover (DANE): its next step")


def test_glue_fresh_keys_hold_the_server_certificate_on_the_served_key(tmp_path: Path) -> None:
    """``ACME_KEY_REUSE=n`` with the served key pinned: while held, the server certificate is
    ordered on the served key (others get fresh keys); at the switch on the next key, which
    stays in ``acme/key.next.pem`` (a used one is made anew only after the retirement)."""
    store, current = served_volume(tmp_path / "ssl", "ec256")
    dns = FakeDns()
    dns.records = [current]
    roll = roll_of(tmp_path, dns)
    held = roll.before_plan(store, "", reuse=False, now=NOW)
    assert held is not None and (held.step, held.kind) == (Step.PUBLISH, "ec256")
    served_pem = (tmp_path / "ssl" / "key.pem").read_bytes()
    keys = order_keys(store, held, "", ["mail", "other"], reuse=False, server="mail")
    assert isinstance(keys, dict) and keys["mail"] == served_pem and keys["other"] != served_pem
    dns.records = [current, held.progress.next]
    roll.before_plan(store, "", reuse=False, now=NOW)
    go = roll.before_plan(store, "", reuse=False, now=NOW + timedelta(seconds=3))
    assert go is not None and go.step is Step.SWITCH
    keys = order_keys(store, go, "", ["mail"], reuse=False, server="mail")
    assert isinstance(keys, dict) and tlsa_311(load_key(keys["mail"])) == go.progress.next
    next_pem = keys["mail"]
    (tmp_path / "ssl" / "key.pem").write_bytes(next_pem)  # what the store and deploy do
    key = load_key(next_pem)
    (tmp_path / "ssl" / "cert.pem").write_bytes(cert_pem(leaf(["mail.example.org"], key=key)))
    save_rollover(tmp_path / "dane.json", replace(go.progress, switched=NOW + timedelta(seconds=4)))
    retiring = roll.before_plan(store, "", reuse=False, now=NOW + timedelta(seconds=5))
    assert retiring is not None and retiring.held  # on the served (next) key until retired
    assert (tmp_path / "ssl" / "acme" / "key.next.pem").read_bytes() == next_pem


def test_glue_read_only_makes_nothing_and_saves_nothing(tmp_path: Path) -> None:
    """``acme-sidecar check`` (read-only): a pending change shows as held, but no next key is
    made, nothing is told once and no state is written."""
    store, current = served_volume(tmp_path / "ssl")
    dns = FakeDns()
    dns.records = [current]
    roll = replace(roll_of(tmp_path, dns), read_only=True)
    with structlog.testing.capture_logs() as logs:
        found = roll.before_plan(store, "ec256", reuse=True, now=NOW)
    assert found is not None and (found.step, found.kind) == (Step.PREPARE, "rsa2048")
    assert not (tmp_path / "ssl" / "acme" / "key.next.pem").exists()
    assert not (tmp_path / "dane.json").exists()
    assert [e["event"] for e in logs] == ["dane.held"]
