"""ACME Renewal Information (ARI, RFC 9773): when the CA wants a certificate renewed.

Pure: the CertID of a certificate (§4.1), the parsing of a ``renewalInfo`` answer, the renewal
time drawn inside its suggested window (§4.2) and kept per certificate (``AriRecord``, tied to
the CertID it is for), when to ask again (``ACME_ARI_INTERVAL``, the CA's ``Retry-After``), and
the renewal time of a stored certificate: the CA's when it has one, else the lifetime rule
(``lifetime_time``). No I/O: the ACME adapter fetches, the cycle folds the answers in here
(``fold_answer``).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, NoReturn

from cryptography import x509

RETRY_AFTER_MIN = timedelta(minutes=1)  # RFC 9773 §4.3.3: clamp the CA's Retry-After ...
RETRY_AFTER_MAX = timedelta(days=1)  # ... to a sane range
LATEST_LEFT = 10  # never renew later than with a tenth of the lifetime left


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def cert_id(leaf: x509.Certificate) -> str:
    """The ARI CertID: base64url(AKI keyIdentifier) "." base64url(DER serial); "" when the
    certificate has no authority key identifier (no ARI for it)."""
    try:
        aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return ""
    if not aki.key_identifier:
        return ""
    serial = leaf.serial_number
    # the DER INTEGER's content octets: big-endian two's complement, a leading zero octet
    # when the high bit is set
    octets = serial.to_bytes(serial.bit_length() // 8 + 1, "big", signed=True)
    return f"{_b64(aki.key_identifier)}.{_b64(octets)}"


@dataclass(frozen=True, slots=True)
class Window:
    """A suggested renewal window; ``explanation`` is the CA's ``explanationURL`` (or "")."""

    start: datetime
    end: datetime
    explanation: str = ""


def _malformed(message: str) -> NoReturn:
    raise ValueError(message)


def parse_window(data: Any) -> Window:
    """The window of a ``renewalInfo`` answer; ``ValueError`` naming what is wrong when it is
    malformed (not an object, a time missing or unparseable or without a zone, end <= start)."""
    if not isinstance(data, Mapping):
        _malformed("the answer is not a JSON object")
    window = data.get("suggestedWindow")
    if not isinstance(window, Mapping):
        _malformed("suggestedWindow is missing")
    times = []
    for key in ("start", "end"):
        value = window.get(key)
        if not isinstance(value, str):
            _malformed(f"suggestedWindow.{key} is missing")
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"suggestedWindow.{key} is not an RFC 3339 time: {value[:40]}"
            ) from None
        if when.tzinfo is None:
            raise ValueError(f"suggestedWindow.{key} has no time zone: {value[:40]}")
        times.append(when)
    start, end = times
    if end <= start:
        raise ValueError(f"suggestedWindow ends ({end:%Y-%m-%d %H:%M:%S}Z) before it starts")
    explanation = data.get("explanationURL")
    return Window(start, end, explanation if isinstance(explanation, str) else "")


@dataclass(frozen=True, slots=True)
class AriRecord:
    """What the CA said about one certificate (``cert_id``), kept in the ledger.

    ``renew_at`` is the time drawn inside the window (None: no usable window, the lifetime rule
    applies); ``next_poll`` when the window is fetched again; ``problem`` why the last answer was
    not used (unreachable, malformed, no ``renewalInfo``), "" when it was.
    """

    cert_id: str
    next_poll: datetime
    start: datetime | None = None
    end: datetime | None = None
    renew_at: datetime | None = None
    explanation: str = ""
    problem: str = ""
    checked: datetime | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """One fetch of ``renewalInfo`` as the adapter saw it: the JSON (``data``) and its
    ``Retry-After``, or ``error`` (the CA offers no ``renewalInfo``, or the fetch failed)."""

    data: Any = None
    retry_after: datetime | None = None
    error: str = ""


def choose(
    window: Window, not_before: datetime, not_after: datetime, now: datetime, rand: float
) -> datetime | None:
    """The renewal time in ``window`` (``rand`` in [0, 1)): ``now`` when the window is over
    (the CA wants it renewed now) or the drawn time has passed; otherwise a time drawn in the
    part of the window that lies within the certificate's life and before a tenth of it is
    left. None when no part of the window does (a window for another life: not used)."""
    if window.end <= now:
        return now
    lifetime = not_after - not_before
    lo = max(window.start, not_before)
    hi = min(window.end, not_after - lifetime / LATEST_LEFT)
    if hi <= lo:
        return None
    return max(lo + (hi - lo) * rand, now)


def _next_poll(now: datetime, interval: timedelta, retry_after: datetime | None) -> datetime:
    """At the latest after ``interval``; sooner when the CA's Retry-After (clamped to between a
    minute and a day) asks for it."""
    if retry_after is None:
        return now + interval
    asked = min(max(retry_after - now, RETRY_AFTER_MIN), RETRY_AFTER_MAX)
    return now + min(interval, asked)


def fold_answer(
    old: AriRecord | None,
    cid: str,
    answer: Answer,
    *,
    not_before: datetime,
    not_after: datetime,
    now: datetime,
    interval: timedelta,
    rand: float,
) -> AriRecord:
    """Fold one answer for certificate ``cid`` into its record.

    A failed or malformed answer keeps the window already known for this certificate (if any)
    and notes the problem; the next fetch is after ``interval`` (or the CA's Retry-After). A
    window seen before keeps its drawn time; a new one is drawn again.
    """
    prev = old if old is not None and old.cert_id == cid else None
    base = prev or AriRecord(cid, now)
    if answer.error:
        at = (
            now + min(max(answer.retry_after - now, RETRY_AFTER_MIN), RETRY_AFTER_MAX)
            if (answer.retry_after is not None)
            else now + interval
        )
        return replace(base, next_poll=at, problem=answer.error[:300], checked=now)
    nxt = _next_poll(now, interval, answer.retry_after)
    try:
        window = parse_window(answer.data)
    except ValueError as exc:
        return replace(base, next_poll=nxt, problem=f"malformed window: {exc}", checked=now)
    if prev is not None and (prev.start, prev.end) == (window.start, window.end):
        chosen = prev.renew_at
    else:
        chosen = choose(window, not_before, not_after, now, rand)
    problem = "" if chosen is not None else "the window lies outside the certificate's life"
    return AriRecord(
        cid,
        nxt,
        window.start,
        window.end,
        chosen,
        window.explanation,
        problem,
        now,
    )


def lifetime_time(not_before: datetime, not_after: datetime) -> datetime:
    """The lifetime rule: renew with ⅓ of the lifetime left, ½ when it is under 10 days."""
    lifetime = not_after - not_before
    if lifetime < timedelta(days=10):
        return not_before + lifetime / 2
    return not_before + lifetime * 2 / 3


@dataclass(frozen=True, slots=True)
class RenewTime:
    """When a stored certificate is renewed and by which rule (``ari``: the CA's window)."""

    at: datetime
    ari: bool
    why: str


def renew_time(
    cid: str, not_before: datetime, not_after: datetime, record: AriRecord | None
) -> RenewTime:
    """The CA's drawn time when the record is for this certificate and has one, else the
    lifetime rule."""
    if record is not None and cid and record.cert_id == cid and record.renew_at is not None:
        start, end = record.start, record.end
        span = f" {start:%Y-%m-%d %H:%M:%S}Z to {end:%Y-%m-%d %H:%M:%S}Z" if start and end else ""
        return RenewTime(record.renew_at, True, f"ARI window{span}")
    at = lifetime_time(not_before, not_after)
    lifetime = not_after - not_before
    share = "½" if lifetime < timedelta(days=10) else "⅓"
    return RenewTime(at, False, f"{share} of the lifetime left")


def poll_due(
    cid: str,
    not_before: datetime,
    not_after: datetime,
    record: AriRecord | None,
    now: datetime,
) -> datetime | None:
    """When the window of this certificate should be fetched next; None for never (no CertID,
    expired, or already due for renewal: it is renewed anyway). A certificate past its drawn
    time but inside its window may wait for others to be renewed with (``core.coalesce``): its
    window is still fetched until the window ends."""
    if not cid or not_after <= now:
        return None
    rule = renew_time(cid, not_before, not_after, record)
    latest = rule.at
    if rule.ari and record is not None and record.end is not None:
        lifetime = not_after - not_before
        latest = max(latest, min(record.end, not_after - lifetime / LATEST_LEFT))
    if latest <= now:
        return None
    if record is None or record.cert_id != cid:
        return now
    return record.next_poll
