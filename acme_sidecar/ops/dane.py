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
Touches that file and, through the lookup, DNS.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from acme_sidecar.adapters.volume.files import atomic_write
from acme_sidecar.core.dane import DaneResult, Served, Status, TlsaAnswer, compare
from acme_sidecar.ops.alerts import DANE_MISMATCH, Notice
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
    ) -> None:
        self.hosts = tuple(hosts)
        self.ports = tuple(ports)
        self.interval = interval
        self.cert_file = cert_file
        self.state_path = state
        self.lookup = lookup
        self._state: DaneState | None = None

    def results(self) -> tuple[DaneResult, ...]:
        """The latest results (of this process, or of the one before it)."""
        return self._load().results

    def notices(self) -> list[Notice]:
        """An alert per TLSA RRset that matches no served key."""
        return [mismatch_notice(v) for v in self.results() if v.status is Status.MISMATCH]

    def _load(self) -> DaneState:
        if self._state is None:
            self._state = load_state(self.state_path)
        return self._state

    def after_cycle(self, event: CycleEvent) -> None:
        """Check when the served certificate changed or the interval passed."""
        try:
            chain = self.cert_file.read_bytes()
        except OSError:
            return  # no certificate served yet: nothing to compare
        before = self._load()
        fingerprint = hashlib.sha256(chain).hexdigest()
        now = event.finished
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
        self._state = DaneState(fingerprint, now, found, told)
        try:
            save_state(self.state_path, self._state)
        except OSError as exc:
            log.error("dane.state_failed", path=str(self.state_path), error=str(exc))


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
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return DaneState()


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
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data, indent=1).encode(), 0o644)


def status_rows(path: Path) -> dict[str, Any] | None:
    """What ``status`` shows of the last check (None: never checked)."""
    state = load_state(path)
    if state.checked is None:
        return None
    return {
        "checked": state.checked.isoformat(),
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
