"""Rollover: when the certificate key may change while DANE TLSA records pin it.

A key change (a new ``ACME_KEY_TYPE``, ``ACME_KEY_REUSE=n``, a volume key that is not the
served one) breaks a ``3 1 1`` record of the served key unless the new key's record is
published first and has reached every cache: the way DNSSEC keys are rolled (RFC 7671 section
8.1, RFC 7672). ``rollover`` decides the step, from the ``3 1 1`` data of the served key
(``current``) and of the next key (``next_``; "" when none is made yet), the TLSA RRsets of the
MX names as the validating resolver gave them, what an earlier cycle saw (``Progress``) and the
clock:

- ``FREE``: no validated TLSA RRset pins the key, so it changes freely;
- ``PREPARE``: the next key must be made first (the shell makes it and asks again);
- ``PUBLISH``: its ``3 1 1`` record is not in every RRset yet: the current key stays; the
  admin is told the records to add (``Rollover.tell``: once per next key), or, with
  ``publish`` (``ACME_DANE=publish``), the shell adds them itself (``Rollover.add``: the next
  key's record, and the current key's where an RRset lacks it too);
- ``WAIT``: the record was seen; the current key stays until 2 x the RRset's TTL has passed
  since (or a lookup failed: nothing is known, so nothing changes);
- ``SWITCH``: order and deploy with the next key.

``settled`` follows it after a cycle: the served key became the next one (``switched``), and
2 x TTL later the old key's record may go (``retire_old``, said once). ``wake_at`` says when
the daemon should look again (``core.wake``). Only ``3 1 1`` records count here: it is the
record the sidecar tells to publish. Pure: no I/O, no logging.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from acme_sidecar.core.dane import EE, TlsaAnswer


class Step(enum.Enum):
    """What a key change may do now (see the module docstring)."""

    FREE = "free"
    PREPARE = "prepare"
    PUBLISH = "publish"
    WAIT = "wait"
    SWITCH = "switch"

    @property
    def held(self) -> bool:
        """Whether the current key stays in use."""
        return self in (Step.PREPARE, Step.PUBLISH, Step.WAIT)


@dataclass(frozen=True, slots=True)
class Progress:
    """What the rollover to one next key has seen so far (kept in ``ACME_DANE_STATE``).

    ``next``/``current``: the ``3 1 1`` data of the next key and of the key served when the
    rollover began; ``told``: the records to add were told; ``published``: when the sidecar
    last added them itself (``publish``); ``seen``: when the next key's record
    was first seen in every RRset; ``ttl``: the largest TTL of those RRsets (seconds);
    ``switched``: when the served key became the next one; ``retired``: the old record was said
    to go. ``step``, ``reason``, ``records`` and ``old_records``: the last decision, for
    ``status``."""

    next: str = ""
    current: str = ""
    told: bool = False
    published: datetime | None = None
    seen: datetime | None = None
    ttl: int = 0
    switched: datetime | None = None
    retired: bool = False
    step: str = ""
    reason: str = ""
    records: tuple[str, ...] = ()
    old_records: tuple[str, ...] = ()

    @property
    def pending(self) -> bool:
        """A rollover that began and has not switched yet."""
        return bool(self.next) and self.switched is None


@dataclass(frozen=True, slots=True)
class Rollover:
    """The step, the progress to keep, one line saying why, and whether to tell the admin the
    records to add now (``tell``: the first time for this next key); ``add``: with
    ``publish``, the records the shell adds (owner -> ``3 1 1 <hex>`` values). ``kind``: the key
    type the plan orders with (the shell's: held, the current key's); ``wake``: when the daemon
    should look again (the shell's, ``wake_at``)."""

    step: Step
    progress: Progress
    reason: str
    tell: bool = False
    kind: str = ""
    wake: datetime | None = None
    add: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def held(self) -> bool:
        """Whether the current key stays in use."""
        return self.step.held


def record(owner: str, data: str) -> str:
    """The ``3 1 1`` record of a key at ``owner`` (``_25._tcp.mail.example.org``), in zone
    file form."""
    return f"{owner}. IN TLSA {EE} 1 1 {data}"


def value(data: str) -> str:
    """The ``3 1 1`` record's value in presentation form, as a DNS host takes it."""
    return f"{EE} 1 1 {data}"


def parse_record(text: str) -> tuple[str, str]:
    """(owner, value) of a ``record`` line."""
    owner, _, rest = text.partition(" IN TLSA ")
    return owner.rstrip("."), rest.strip()


def _holds(answer: TlsaAnswer, data: str) -> bool:
    return any((r.usage, r.selector, r.mtype, r.data) == (EE, 1, 1, data) for r in answer.records)


def rollover(
    current: str,
    next_: str,
    answers: Mapping[str, TlsaAnswer],
    progress: Progress,
    now: datetime,
    *,
    known: bool = False,
    publish: bool = False,
) -> Rollover:
    """The step of a key change from the served key ``current`` to ``next_`` (see the module
    docstring); ``answers``: the TLSA RRset of each owner (``_25._tcp.<host>``); ``known``:
    validated TLSA records were seen for these owners before (the DANE check's last results,
    or a rollover under way). A lookup that fails holds the key only then: with no record ever
    seen, a failing resolver must not keep a new install on mailcow's snake-oil pair.
    ``publish``: the shell adds the missing records itself (``Rollover.add``), nothing is
    told."""
    failed = [f"{o}: {a.error}" for o, a in answers.items() if a.error]
    pinned = {o: a for o, a in answers.items() if a.secure and a.records and not a.error}
    if not pinned and (not failed or not (known or progress.pending)):
        why = "no validated TLSA records pin the key"
        if failed:
            why = f"the TLSA lookup failed ({'; '.join(failed)}) and no TLSA record was seen before"
        return Rollover(Step.FREE, Progress(), why)
    if not next_:
        why = "the next key is made first; its TLSA record must be published before it is used"
        return Rollover(Step.PREPARE, progress, why)
    if progress.next != next_:
        progress = Progress(next=next_, current=current)
    records = tuple(record(o, next_) for o in answers)
    old = tuple(record(o, current) for o in pinned if _holds(pinned[o], current))
    progress = replace(progress, records=records, old_records=old or progress.old_records)
    ttl = max([progress.ttl, *(a.ttl for a in pinned.values())])
    if failed:
        why = f"the TLSA lookup failed ({'; '.join(failed)}); the current key stays"
        return _step(Step.WAIT, progress, why)
    missing = [o for o, a in pinned.items() if not _holds(a, next_)]
    if missing and publish:
        add = {
            o: tuple(value(d) for d in (current, next_) if not _holds(pinned[o], d))
            for o in missing
        }
        why = (
            f"the TLSA record of the next key is not seen at {', '.join(missing)} yet: it is "
            "added through the DNS provider; the current key stays until it is seen"
        )
        held = _step(Step.PUBLISH, replace(progress, seen=None, ttl=ttl), why)
        return replace(held, add=add)
    if missing:
        tell = not progress.told
        add_text = " and ".join(record(o, next_) for o in missing)
        why = (
            f"the TLSA record of the next key is not published at {', '.join(missing)}: the "
            f"current key stays until it is; add {add_text}"
        )
        return _step(Step.PUBLISH, replace(progress, told=True, seen=None), why, tell=tell)
    seen = progress.seen or now
    due = seen + timedelta(seconds=2 * ttl)
    progress = replace(progress, seen=seen, ttl=ttl)
    if now < due:
        why = (
            f"the TLSA record of the next key was seen at {seen:%Y-%m-%d %H:%M:%S}Z; the "
            f"current key stays until {due:%Y-%m-%d %H:%M:%S}Z (2 x TTL {ttl}s)"
        )
        return _step(Step.WAIT, progress, why)
    why = f"the TLSA record of the next key has been published for 2 x TTL ({2 * ttl}s)"
    return _step(Step.SWITCH, progress, why)


def _step(step: Step, progress: Progress, reason: str, *, tell: bool = False) -> Rollover:
    return Rollover(step, replace(progress, step=step.value, reason=reason), reason, tell)


def settled(served: str, progress: Progress, now: datetime) -> tuple[Progress, str]:
    """After a cycle: the progress and what to say, ``switched`` (the served key is the next
    one now), ``retire_old`` (2 x TTL after that: the old key's record may go; once) or ""."""
    if progress.pending and served == progress.next:
        why = "the served key is the next key now"
        return replace(progress, switched=now, step="switched", reason=why), "switched"
    if progress.switched is None or progress.retired:
        return progress, ""
    if now < progress.switched + timedelta(seconds=2 * progress.ttl):
        return progress, ""
    why = f"2 x TTL has passed since the switch: remove {' and '.join(progress.old_records)}"
    if not progress.old_records:
        why = "2 x TTL has passed since the switch: the old key's TLSA record may go"
    return replace(progress, retired=True, step="retired", reason=why), "retire_old"


def wake_at(roll: Rollover, now: datetime, recheck: timedelta) -> datetime | None:
    """When the next cycle should run for the rollover: the switch (2 x TTL after the record
    was seen), the old record's retirement (2 x TTL after a switch), records just added
    (``publish``: seen once the resolver's cached RRset expired, 2 x TTL and 5 s at least) or,
    while the records are not published (or could not be read), ``recheck`` from ``now``;
    None when free."""
    progress, ttl = roll.progress, timedelta(seconds=2 * roll.progress.ttl)
    if roll.add:
        return now + min(recheck, max(ttl, timedelta(seconds=5)))
    if progress.switched is not None:
        return None if progress.retired else progress.switched + ttl
    if roll.step is Step.SWITCH:
        return now + ttl
    if roll.step is Step.WAIT and progress.seen is not None:
        return progress.seen + ttl
    return now + recheck if roll.held else None
