"""``ACME_DANE=check``: after a cycle, are the MX names' TLSA records the served key's?

``DaneCheck`` is a hook. After a cycle, when the volume has a top-level ``cert.pem`` (what
mailcow's Postfix serves on port 25), it looks up ``_<port>._tcp.<host>`` for each of
``ACME_DANE_HOSTS`` (default ``MAILCOW_HOSTNAME``) and ``ACME_DANE_PORTS`` through the
validating resolver (``adapters.tlsa``) and compares them with that chain (``core.dane``). It
looks again when the served certificate changed, else at most every ``ACME_DANE_INTERVAL``: a
quiet cycle looks nothing up (and imports no dnspython).

Each result is logged once, when it changes: no records is one info line; a mismatch, records
without DNSSEC validation, or a match that will not hold across renewals (a ``2 x x`` or
``3 0 x`` record) is one warning saying why and what to publish. The results are kept in
``ACME_DANE_STATE`` (outside the volume, next to the health file) for ``status`` and for the
next process; the metrics (``dane_match``) and the alerts (a mismatch) read them from here.

The same file keeps a key rollover's progress (``core.rollover.Progress``, written by
``shell.rollover`` before the plan); after each cycle this hook follows it (``settled``): one
``dane.switched`` line when the served key became the next key, one ``dane.retire_old`` line
2 x TTL later (``ACME_DANE=publish``: the old key's records are removed through the DNS
provider, ``dane.retired``); while the next key's record is not published, an alert names the
records to add. Touches that file and, through the lookup, DNS (and the DNS provider).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from acme_sidecar.adapters.volume.files import atomic_write
from acme_sidecar.core.dane import DaneResult, Served, Status, TlsaAnswer, compare
from acme_sidecar.core.ports import RecordWriter
from acme_sidecar.core.rollover import Progress, Step, parse_record, settled
from acme_sidecar.ops.alerts import DANE_MISMATCH, DANE_PUBLISH_NEXT, Notice
from acme_sidecar.ops.hooks import CycleEvent

log = structlog.get_logger(__name__)

Lookup = Callable[[str, int], TlsaAnswer]


@dataclass(frozen=True, slots=True)
class DaneState:
    """What the last check found: for which served chain, when, the results, and what was
    logged per TLSA owner (a result is logged again only when it changes)."""

    fingerprint: str = ""
    checked: datetime | None = None
    results: tuple[DaneResult, ...] = ()
    told: dict[str, str] = field(default_factory=dict)
    rollover: Progress = field(default_factory=Progress)


class DaneCheck:
    """The hook (see the module docstring); ``results``/``notices`` are its latest findings."""

    def __init__(
        self,
        *,
        hosts: Sequence[str],
        ports: Sequence[int],
        interval: timedelta,
        cert_file: Path,
        state: Path,
        lookup: Lookup,
        publisher: RecordWriter | None = None,
    ) -> None:
        self.hosts = tuple(hosts)
        self.ports = tuple(ports)
        self.interval = interval
        self.cert_file = cert_file
        self.state_path = state
        self.lookup = lookup
        self.publisher = publisher
        self._state: DaneState | None = None

    def results(self) -> tuple[DaneResult, ...]:
        """The latest results (of this process, or of the one before it)."""
        return self._load().results

    def notices(self) -> list[Notice]:
        """An alert per TLSA RRset that matches no served key, and one while the next key's
        records are not published and the admin was told to add them (a key rollover; not
        while records the sidecar added are on their way)."""
        found = [mismatch_notice(v) for v in self.results() if v.status is Status.MISMATCH]
        progress = load_state(self.state_path).rollover
        if progress.pending and progress.step == Step.PUBLISH.value and progress.told:
            found.append(publish_notice(progress))
        return found

    def _load(self) -> DaneState:
        if self._state is None:
            self._state = load_state(self.state_path)
        return self._state

    def after_cycle(self, event: CycleEvent) -> None:
        """Follow a key rollover; check when the served certificate changed or the interval
        passed."""
        try:
            chain = self.cert_file.read_bytes()
        except OSError:
            return  # no certificate served yet: nothing to compare
        now = event.finished
        self._settle(chain, now)
        before = self._load()
        fingerprint = hashlib.sha256(chain).hexdigest()
        recent = before.checked is not None and now - before.checked < self.interval
        if before.fingerprint == fingerprint and recent:
            return
        try:
            served = Served.from_pem(chain)
        except ValueError as exc:
            log.warning("dane.skipped", file=str(self.cert_file), reason=f"unreadable: {exc}")
            return
        found = tuple(
            compare(host, port, self.lookup(host, port), served)
            for host in self.hosts
            for port in self.ports
        )
        told = {v.owner: t for v in found if (t := before.told.get(v.owner))}
        for result in found:
            said = _signature(result)
            if told.get(result.owner) != said:
                tell(result)
                told[result.owner] = said
        rollover = load_state(self.state_path).rollover  # shell.rollover's, as written
        self._state = DaneState(fingerprint, now, found, told, rollover)
        self._save(self._state)

    def _save(self, state: DaneState) -> None:
        try:
            save_state(self.state_path, state)
        except OSError as exc:
            log.error("dane.state_failed", path=str(self.state_path), error=str(exc))

    def _settle(self, chain: bytes, now: datetime) -> None:
        """A rollover after a cycle: ``dane.switched``, later ``dane.retire_old`` (once)."""
        state = load_state(self.state_path)
        progress = state.rollover
        if not progress.next or progress.retired:
            return
        try:
            served = Served.from_pem(chain).record().data
        except ValueError:
            return
        progress, say = settled(served, progress, now)
        if not say:
            return
        if say == "switched":
            log.info(
                "dane.switched",
                tlsa_3_1_1=progress.next,
                old_tlsa_3_1_1=progress.current,
                retire_after=f"{2 * progress.ttl}s",
                reason="the certificate on the next key is served; its TLSA record was "
                "published first",
            )
        else:
            self._retire(progress)
        self._state = replace(self._load(), rollover=progress)
        self._save(replace(state, rollover=progress))

    def _retire(self, progress: Progress) -> None:
        """2 x TTL after the switch: the old key's records go (``publish``) or may go."""
        records = " | ".join(progress.old_records) or None
        if self.publisher is None or not progress.old_records:
            log.info("dane.retire_old", records=records, reason=progress.reason)
            return
        old: dict[str, tuple[str, ...]] = {}
        for text in progress.old_records:
            owner, value = parse_record(text)
            old[owner] = (*old.get(owner, ()), value)
        problem = self.publisher.remove(old)
        if problem is None:
            log.info(
                "dane.retired",
                records=records,
                reason="2 x TTL has passed since the switch: the old key's records are removed",
            )
        else:
            log.warning(
                "dane.retire_failed",
                records=records,
                error=problem,
                reason="the old key's records stay: remove them by hand (they pin a key no "
                "longer served)",
            )


def _signature(result: DaneResult) -> str:
    """What makes a result worth a new line: its status, reason and advice."""
    return hashlib.sha256(
        f"{result.status.value}\0{result.reason}\0{result.advice}".encode()
    ).hexdigest()[:16]


def tell(result: DaneResult) -> None:
    """One line for one result (see the module docstring)."""
    fields: dict[str, Any] = {"tlsa": result.owner}
    if result.status is Status.MATCH and not result.advice:
        log.info("dane.matched", **fields, records=" | ".join(result.matched))
    elif result.status is Status.MATCH:
        log.warning("dane.fragile", **fields, reason=result.advice)
    elif result.status is Status.MISMATCH:
        log.warning("dane.mismatch", **fields, reason=result.reason, advice=result.advice or None)
    elif result.status is Status.ABSENT:
        log.info(
            "dane.absent",
            **fields,
            reason=result.reason,
            hint=f"to use DANE (needs DNSSEC), publish {result.record}",
        )
    elif result.status is Status.INSECURE:
        log.warning("dane.insecure", **fields, reason=result.reason)
    else:
        log.warning("dane.lookup_failed", **fields, reason=result.reason)


def mismatch_notice(result: DaneResult) -> Notice:
    """The alert for a TLSA RRset that matches no served key."""
    return Notice(
        f"dane:{result.owner}",
        DANE_MISMATCH,
        f"the TLSA records at {result.owner} do not match the served certificate; "
        "DANE senders defer mail",
        {
            "tlsa": result.owner,
            "reason": result.reason,
            "advice": result.advice or None,
            "publish": result.record,
        },
    )


def publish_notice(progress: Progress) -> Notice:
    """The alert while the next key's TLSA records are not published (once per next key)."""
    return Notice(
        f"dane-next:{progress.next[:16]}",
        DANE_PUBLISH_NEXT,
        "a key change waits for the TLSA record of the next key: add it to the zone; the "
        "current key stays in use until it is seen",
        {"add": list(progress.records), "reason": progress.reason},
    )


def load_state(path: Path) -> DaneState:
    """The saved state; empty when the file is missing or damaged."""
    try:
        data = json.loads(path.read_text("utf-8"))
        checked = data.get("checked")
        return DaneState(
            str(data["fingerprint"]),
            datetime.fromisoformat(checked) if checked else None,
            tuple(_result(v) for v in data["results"]),
            {str(k): str(v) for k, v in data.get("told", {}).items()},
            _progress(data.get("rollover") or {}),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return DaneState()


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _progress(data: dict[str, Any]) -> Progress:
    return Progress(
        next=str(data.get("next", "")),
        current=str(data.get("current", "")),
        told=bool(data.get("told")),
        published=_when(data.get("published")),
        seen=_when(data.get("seen")),
        ttl=int(data.get("ttl", 0)),
        switched=_when(data.get("switched")),
        retired=bool(data.get("retired")),
        step=str(data.get("step", "")),
        reason=str(data.get("reason", "")),
        records=tuple(str(r) for r in data.get("records", ())),
        old_records=tuple(str(r) for r in data.get("old_records", ())),
    )


def _progress_data(progress: Progress) -> dict[str, Any] | None:
    if progress == Progress():
        return None
    data = asdict(progress)
    for key in ("published", "seen", "switched"):
        data[key] = data[key].isoformat() if data[key] else None
    return data


def save_rollover(path: Path, progress: Progress) -> None:
    """Replace the rollover's progress in the state file, the rest kept."""
    save_state(path, replace(load_state(path), rollover=progress))


def _result(data: dict[str, Any]) -> DaneResult:
    return DaneResult(
        host=str(data["host"]),
        port=int(data["port"]),
        status=Status(data["status"]),
        reason=str(data["reason"]),
        advice=str(data.get("advice") or ""),
        matched=tuple(str(m) for m in data.get("matched", ())),
        record=str(data.get("record") or ""),
    )


def save_state(path: Path, state: DaneState) -> None:
    """Write the state atomically."""
    data = {
        "fingerprint": state.fingerprint,
        "checked": state.checked.isoformat() if state.checked else None,
        "results": [asdict(v) | {"status": v.status.value} for v in state.results],
        "told": dict(sorted(state.told.items())),
        "rollover": _progress_data(state.rollover),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data, indent=1).encode(), 0o644)


def status_rows(path: Path) -> dict[str, Any] | None:
    """What ``status`` shows of the last check and of a key rollover (None: neither)."""
    state = load_state(path)
    rollover = _rollover_rows(state.rollover)
    if state.checked is None and rollover is None:
        return None
    return {
        "checked": state.checked.isoformat() if state.checked else None,
        "rollover": rollover,
        "results": [
            {
                "tlsa": v.owner,
                "status": v.status.value,
                "reason": v.reason,
                "advice": v.advice or None,
                "publish": v.record,
            }
            for v in state.results
        ],
    }


def _rollover_rows(progress: Progress) -> dict[str, Any] | None:
    """A rollover's step for ``status``: what to add (or when the sidecar added it), since
    when it is seen, what may go."""
    if not progress.next:
        return None
    return {
        "step": progress.step,
        "reason": progress.reason,
        "next_tlsa_3_1_1": progress.next,
        "add": list(progress.records) if progress.pending and not progress.published else [],
        "published": progress.published.isoformat() if progress.published else None,
        "seen": progress.seen.isoformat() if progress.seen else None,
        "ttl": progress.ttl,
        "switched": progress.switched.isoformat() if progress.switched else None,
        "remove": list(progress.old_records) if progress.retired else [],
    }
