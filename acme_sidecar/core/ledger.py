"""The ledger: everything acme-sidecar remembers across cycles and restarts (``acme/state.json``).

Per name: since when it fails validation (grace), the CA's rejections (per-name back-off), when
it last validated, and when the CA's validation of it failed (rate-limit budget). Per
certificate (``CertLedger``): orders placed and certificates issued with their times, failures
in a row and the next attempt, an order in flight, an issued chain not yet stored, and the CA's
renewal window for the stored certificate (``ari``, an optional key), the profile and the
CA (``directory``) it was issued with, and the fingerprint of the settings its last failure
happened under (``settings``, an optional key). For the volume: since when ``force_renew`` is
being honoured, a deploy still owed to the services, and the own top-level pair last accepted
or refused (``OwnPair``, by fingerprint), and when the takeover of mailcow's acme.sh keys was
decided (``takeover_at``: it runs once per volume).

Pure values and their JSON form; the volume adapter reads and writes the file. Version 1 files
(before the ledger) are migrated; times without a zone are read as UTC.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from acme_sidecar.core.ari import AriRecord

VERSION = 2


@dataclass(frozen=True, slots=True)
class Rejection:
    """The CA refused a name: why, how often in a row, and until when we do not ask again."""

    reason: str
    count: int
    until: datetime


@dataclass(frozen=True, slots=True)
class CertLedger:
    """What happened to one certificate (by directory name)."""

    placed: tuple[datetime, ...] = ()  # new orders placed (kept for a week)
    issued: tuple[tuple[datetime, str], ...] = ()  # (when, its names space-separated), a week
    failures: int = 0  # failed attempts in a row
    last_error: str = ""
    next_attempt: datetime | None = None  # no order before this (back-off or the CA's wish)
    attempting: datetime | None = None  # an order was started; its result is not recorded yet
    unstored: str = ""  # an issued full chain (PEM) that could not be stored yet
    unstored_names: tuple[str, ...] = ()
    ari: AriRecord | None = None  # the CA's renewal window for the stored certificate
    profile: str = ""  # the ACME profile the stored certificate was ordered with ("": default)
    directory: str = ""  # the ACME directory (CA) it was issued from ("": unknown, core.ca)
    settings: str = ""  # the fingerprint of the ACME settings the last failure happened under

    @property
    def last_issued(self) -> datetime | None:
        """When a certificate was last issued for this directory (within the kept week)."""
        return max((t for t, _ in self.issued), default=None)


@dataclass(frozen=True, slots=True)
class Deploy:
    """A deploy owed to the services: recorded before the first write of a cycle, cleared
    only after every service was applied (and verified)."""

    since: datetime
    certs: tuple[str, ...] = ()  # certificate directories written since
    dirs_before: tuple[str, ...] = ()  # the certificate directories before the first write
    attempts: int = 0
    sni_before: tuple[str, ...] = ()  # "name directory" of every name before the first write
    default: bool = False  # the top-level cert.pem/key.pem were written since


@dataclass(frozen=True, slots=True)
class OwnPair:
    """The own top-level pair: the fingerprint last accepted (and copied to ``acme/own/``) and
    the one last refused (so a bad pair left in place is refused once, not every wake-up)."""

    good: str = ""
    refused: str = ""


@dataclass(frozen=True, slots=True)
class State:
    """Everything remembered across cycles."""

    failing_since: Mapping[str, datetime] = field(default_factory=dict)
    rejected: Mapping[str, Rejection] = field(default_factory=dict)
    validated: Mapping[str, datetime] = field(default_factory=dict)
    failed_validations: Mapping[str, tuple[datetime, ...]] = field(default_factory=dict)
    certs: Mapping[str, CertLedger] = field(default_factory=dict)
    force_since: datetime | None = None
    deploy: Deploy | None = None
    own: OwnPair | None = None
    takeover_at: datetime | None = None  # the acme.sh takeover ran (once per volume) at

    def cert(self, name: str) -> CertLedger:
        """The ledger of certificate ``name`` (empty when it has none)."""
        return self.certs.get(name) or CertLedger()

    def to_json(self) -> str:
        """Serialise (ISO 8601 times, sorted keys: an unchanged state gives the same bytes)."""
        takeover = {} if self.takeover_at is None else {"takeover_at": _opt(self.takeover_at)}
        return json.dumps(
            takeover
            | {
                "version": VERSION,
                "failing_since": {k: v.isoformat() for k, v in self.failing_since.items()},
                "rejected": {
                    k: {"reason": r.reason, "count": r.count, "until": r.until.isoformat()}
                    for k, r in self.rejected.items()
                },
                "validated": {k: v.isoformat() for k, v in self.validated.items()},
                "failed_validations": {
                    k: [t.isoformat() for t in v] for k, v in self.failed_validations.items() if v
                },
                "certs": {k: _cert_json(v) for k, v in self.certs.items()},
                "force_since": _opt(self.force_since),
                "deploy": None
                if self.deploy is None
                else {
                    "since": self.deploy.since.isoformat(),
                    "certs": list(self.deploy.certs),
                    "dirs_before": list(self.deploy.dirs_before),
                    "attempts": self.deploy.attempts,
                    "sni_before": list(self.deploy.sni_before),
                    "default": self.deploy.default,
                },
                "own": None
                if self.own is None
                else {"good": self.own.good, "refused": self.own.refused},
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> State:
        """Parse (version 1 or 2); raises ``ValueError``/``KeyError``/``TypeError`` on damage."""
        data: dict[str, Any] = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError("state.json does not hold an object")
        version = int(data.get("version", 1))
        if version > VERSION:
            raise ValueError(f"state.json version {version} is newer than this acme-sidecar")
        certs = {str(k): _cert_parse(v) for k, v in data.get("certs", {}).items()}
        for name, when in data.get("cert_retry_after", {}).items():  # version 1
            certs[str(name)] = CertLedger(next_attempt=_time(when))
        deploy = data.get("deploy")
        own = data.get("own")
        return cls(
            failing_since={str(k): _time(v) for k, v in data.get("failing_since", {}).items()},
            rejected={
                str(k): Rejection(str(r["reason"]), int(r["count"]), _time(r["until"]))
                for k, r in data.get("rejected", {}).items()
            },
            validated={str(k): _time(v) for k, v in data.get("validated", {}).items()},
            failed_validations={
                str(k): tuple(_time(t) for t in v)
                for k, v in data.get("failed_validations", {}).items()
            },
            certs=certs,
            force_since=_opt_time(data.get("force_since")),
            deploy=None
            if not deploy
            else Deploy(
                since=_time(deploy["since"]),
                certs=tuple(str(c) for c in deploy.get("certs", ())),
                dirs_before=tuple(str(c) for c in deploy.get("dirs_before", ())),
                attempts=int(deploy.get("attempts", 0)),
                sni_before=tuple(str(c) for c in deploy.get("sni_before", ())),
                default=deploy.get("default") is True,
            ),
            own=None if not own else OwnPair(str(own.get("good", "")), str(own.get("refused", ""))),
            takeover_at=_opt_time(data.get("takeover_at")),  # absent before the marker existed
        )


_YEARS = range(1970, 3000)
"""The years a time in the ledger may fall in: one near the ends of what ``datetime`` holds
(9999) would overflow the arithmetic of later cycles (``since + grace``)."""


def _time(value: Any) -> datetime:
    """An ISO 8601 time; one without a zone (hand-edited, older tools) is taken as UTC.
    ``ValueError`` for a year outside ``_YEARS``: the ledger is damaged."""
    parsed = datetime.fromisoformat(str(value))
    if parsed.year not in _YEARS:
        raise ValueError(f"the time {value} is out of range")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _opt_time(value: Any) -> datetime | None:
    return None if value in (None, "") else _time(value)


def _opt(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _cert_json(c: CertLedger) -> dict[str, Any]:
    return (
        {
            "placed": [t.isoformat() for t in c.placed],
            "issued": [[t.isoformat(), names] for t, names in c.issued],
            "failures": c.failures,
            "last_error": c.last_error,
            "next_attempt": _opt(c.next_attempt),
            "attempting": _opt(c.attempting),
            "unstored": c.unstored,
            "unstored_names": list(c.unstored_names),
        }
        | ({} if c.ari is None else {"ari": _ari_json(c.ari)})
        | ({"profile": c.profile} if c.profile else {})
        | ({"directory": c.directory} if c.directory else {})
        | ({"settings": c.settings} if c.settings else {})
    )


def _cert_parse(v: Mapping[str, Any]) -> CertLedger:
    return CertLedger(
        placed=tuple(_time(t) for t in v.get("placed", ())),
        issued=tuple((_time(t), str(names)) for t, names in v.get("issued", ())),
        failures=int(v.get("failures", 0)),
        last_error=str(v.get("last_error", "")),
        next_attempt=_opt_time(v.get("next_attempt")),
        attempting=_opt_time(v.get("attempting")),
        unstored=str(v.get("unstored", "")),
        unstored_names=tuple(str(n) for n in v.get("unstored_names", ())),
        ari=_ari_parse(v["ari"]) if v.get("ari") else None,
        profile=str(v.get("profile", "")),
        directory=str(v.get("directory", "")),  # absent before the CA was recorded
        settings=str(v.get("settings", "")),
    )


def _ari_json(r: AriRecord) -> dict[str, Any]:
    return {
        "cert_id": r.cert_id,
        "next_poll": r.next_poll.isoformat(),
        "start": _opt(r.start),
        "end": _opt(r.end),
        "renew_at": _opt(r.renew_at),
        "explanation": r.explanation,
        "problem": r.problem,
        "checked": _opt(r.checked),
    }


def _ari_parse(v: Mapping[str, Any]) -> AriRecord:
    return AriRecord(
        cert_id=str(v["cert_id"]),
        next_poll=_time(v["next_poll"]),
        start=_opt_time(v.get("start")),
        end=_opt_time(v.get("end")),
        renew_at=_opt_time(v.get("renew_at")),
        explanation=str(v.get("explanation", "")),
        problem=str(v.get("problem", "")),
        checked=_opt_time(v.get("checked")),
    )
