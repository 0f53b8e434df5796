"""The key rollover's glue: before the plan, a key change that DANE pins waits its turn.

``KeyRoll.before_plan`` runs in gather (``ACME_DANE`` not ``off``). When the next order would
use a key other than the served one (a new ``ACME_KEY_TYPE``, ``ACME_KEY_REUSE=n``, a volume key
that is not the served key), it looks up the TLSA RRsets of the MX names through the
validating resolver and asks ``core.rollover`` what may happen: the next key is made first
(``acme/key.next.pem``), the admin is told the records to add (``dane.publish_next``, once per
next key), and until they have been seen for 2 x TTL the plan keeps the current key's type
(one ``dane.held`` line per cycle; renewals that are due still happen, with the current key).
With ``ACME_DANE=publish`` the records are added through the DNS provider instead
(``dane.published``; a failure is one ``dane.publish_failed`` line and the admin is told as
in ``check``), and looked for again once the resolver's cached RRset has expired.
Then the next key is ordered with (``order_keys``: it becomes ``acme/key.pem``). After the cycle
``ops.dane`` says ``dane.switched`` and, 2 x TTL later, ``dane.retire_old``. A cycle that
changes no key looks nothing up (no dnspython). The progress is kept in ``ACME_DANE_STATE``.
May touch: DNS (the lookup), the DNS provider (``publish``), the DANE state file,
``acme/key.next.pem`` and ``acme/key.pem``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import structlog

from acme_sidecar.adapters.volume import CertStore
from acme_sidecar.adapters.volume.files import read_bytes
from acme_sidecar.adapters.volume.keys import tlsa_311
from acme_sidecar.adapters.volume.pem import PARSE_ERRORS, kind_of, load_chain, load_key
from acme_sidecar.core.dane import Status, TlsaAnswer
from acme_sidecar.core.errors import StoreError
from acme_sidecar.core.ports import RecordWriter
from acme_sidecar.core.profiles import NEW_KEY_TYPE
from acme_sidecar.core.rollover import Progress, Rollover, Step, rollover, wake_at
from acme_sidecar.ops.dane import load_state, save_rollover

log = structlog.get_logger(__name__)

Lookup = Callable[[str, int], TlsaAnswer]


def _key_of(data: bytes, *, cert: bool) -> tuple[str, str]:
    """(``3 1 1`` data, key type) of a certificate chain's leaf or of a private key."""
    key = load_chain(data)[0].public_key() if cert else load_key(data)
    return tlsa_311(key), kind_of(key)  # type: ignore[arg-type]


def _read(path: Path, *, cert: bool) -> tuple[str, str] | None:
    """The key of ``path``; None when it is missing or cannot be read (``pem.PARSE_ERRORS``:
    a certificate whose key type cryptography does not know is read as no key)."""
    try:
        return _key_of(read_bytes(path, private=not cert), cert=cert)
    except (OSError, StoreError):
        return None
    except PARSE_ERRORS:
        return None


@dataclass(frozen=True, slots=True)
class KeyRoll:
    """The MX names' TLSA owners, their lookup and the state file (see the module docstring);
    ``recheck``: how soon the records are read again while unpublished (``ACME_DANE_INTERVAL``,
    a minute at least); ``read_only`` (``check``): nothing is made, said once or saved;
    ``publisher`` (``ACME_DANE=publish``): adds the next key's records itself."""

    hosts: tuple[str, ...]
    ports: tuple[int, ...]
    lookup: Lookup
    state: Path
    recheck: timedelta = timedelta(hours=1)
    read_only: bool = False
    publisher: RecordWriter | None = None

    def before_plan(
        self, store: CertStore, configured: str, *, reuse: bool, now: datetime
    ) -> Rollover | None:
        """The rollover step of this cycle; None when no key changes (nothing looked up)."""
        served = _read(store.root / "cert.pem", cert=True)
        if served is None:
            return None  # nothing served: no key to keep
        current, current_kind = served
        volume = _read(store.keys.layout.domain_key_path, cert=False)
        wanted = configured or (volume[1] if volume else "") or NEW_KEY_TYPE
        fresh = not reuse or volume is None or volume[1] != wanted
        saved = load_state(self.state)
        progress = saved.rollover
        known = any(r.status in (Status.MATCH, Status.MISMATCH) for r in saved.results)
        if not fresh and volume is not None and volume[0] == current:
            if progress.pending and not self.read_only:  # the change was taken back
                log.info("dane.rollover_dropped", reason="the key no longer changes")
                save_rollover(self.state, Progress())
            if progress.switched is None or progress.retired:
                return None
            retiring = Rollover(Step.FREE, progress, "the old key's record is retired next")
            return replace(retiring, wake=wake_at(retiring, now, self.recheck))
        if progress.switched is not None and not progress.retired:
            why = "the last key change is not retired yet (2 x TTL after its switch)"
            held = Rollover(Step.WAIT, progress, why, kind=current_kind)
            return replace(held, wake=wake_at(held, now, self.recheck))
        answers = {f"_{p}._tcp.{h}": self.lookup(h, p) for h in self.hosts for p in self.ports}
        nxt = volume[0] if not fresh and volume is not None else self._next(store, wanted, current)
        publish = self.publisher is not None and not self.read_only
        roll = rollover(current, nxt, answers, progress, now, known=known, publish=publish)
        if roll.step is Step.PREPARE and not self.read_only:
            nxt = _key_of(store.keys.make_next(wanted), cert=False)[0]
            roll = rollover(current, nxt, answers, progress, now, known=known, publish=publish)
        if roll.add and self.publisher is not None:
            roll = _publish(self.publisher, roll, now)
        roll = replace(roll, kind=current_kind if roll.held else wanted)
        roll = replace(roll, wake=wake_at(roll, now, max(self.recheck, timedelta(minutes=1))))
        _tell(roll, progress, wanted)
        if not self.read_only and roll.progress != progress:
            save_rollover(self.state, roll.progress)
        return roll

    @staticmethod
    def _next(store: CertStore, wanted: str, current: str) -> str:
        """The ``3 1 1`` data of ``acme/key.next.pem``; "" when there is none, or it is of
        another type or already served (a new one is made)."""
        data = store.keys.next_key()
        if data is None:
            return ""
        pin, kind = _key_of(data, cert=False)
        return pin if kind == wanted and pin != current else ""


def _publish(publisher: RecordWriter, roll: Rollover, now: datetime) -> Rollover:
    """Add the records the rollover asks for (``dane.published``); when the DNS host refuses,
    one ``dane.publish_failed`` line and the admin is told the records instead, and they are
    tried again at the next look (``ACME_DANE_INTERVAL``), not at once."""
    progress = roll.progress
    added = " | ".join(f"{o}. IN TLSA {v}" for o, values in roll.add.items() for v in values)
    problem = publisher.add(roll.add, progress.ttl)
    if problem is None:
        log.info("dane.published", records=added, ttl=progress.ttl, tlsa_3_1_1=progress.next)
        return replace(roll, progress=replace(progress, published=now))
    log.error(
        "dane.publish_failed",
        records=added,
        error=problem,
        reason="the current key stays until the records are seen; add them by hand, or fix "
        "the DNS provider (tried again at the next look)",
    )
    told = replace(progress, told=True)
    return replace(roll, progress=told, add={}, tell=not progress.told)


def _tell(roll: Rollover, before: Progress, wanted: str) -> None:
    """The lines of a step: the records to add (once), the hold, the record seen, the switch."""
    progress = roll.progress
    if roll.tell:
        log.warning(
            "dane.publish_next",
            add=" | ".join(progress.records),
            key_type=wanted,
            tlsa_3_1_1=progress.next,
            reason="the key changes; DANE senders must find the next key's TLSA record "
            "before it is served: add it next to the current one",
        )
    if roll.step is Step.WAIT and progress.seen is not None and before.seen is None:
        log.info("dane.seen", tlsa_3_1_1=progress.next, ttl=progress.ttl)
    if roll.held:
        log.info("dane.held", key_type=roll.kind, wanted=wanted, reason=roll.reason)
    elif roll.step is Step.SWITCH:
        log.info("dane.switching", key_type=wanted, tlsa_3_1_1=progress.next, reason=roll.reason)


def order_keys(
    store: CertStore,
    roll: Rollover | None,
    configured: str,
    names: Sequence[str],
    *,
    reuse: bool,
    server: str | None,
) -> bytes | dict[str, bytes]:
    """The keys of this cycle's orders (``Keys.order_keys``), as the rollover allows: held,
    the server certificate (``server``, the top-level pair's) keeps the served key and no key
    type changes; at the switch the next key is used (it becomes ``acme/key.pem``)."""
    if roll is None or roll.step is Step.FREE:
        return store.keys.order_keys(configured, names, reuse=reuse)
    pinned: bytes | None = None
    if roll.held:
        kind, pinned = "", store.keys.served_key()
    else:
        kind, data = roll.kind or configured, store.keys.next_key()
        is_next = data is not None and _key_of(data, cert=False)[0] == roll.progress.next
        if is_next and reuse:
            store.keys.promote_next()
        elif is_next:
            pinned = data
    keys = store.keys.order_keys(kind, names, reuse=reuse)
    if pinned is None or server is None or server not in names:
        return keys
    per = dict.fromkeys(names, keys) if isinstance(keys, bytes) else dict(keys)
    return {**per, server: pinned}
