"""Name memory: the pure rules that use what the ledger (``core.ledger``) remembers about
names: grace for failing names, the per-name back-off for names the CA rejected, and reuse of
recent verdicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from acme_sidecar.core.ari import renew_time
from acme_sidecar.core.ledger import Rejection, State
from acme_sidecar.core.model import StoredCert, Verdict

__all__ = [
    "apply_memory",
    "record_issued",
    "record_rejections",
    "record_validated",
    "reusable_verdicts",
]

REJECT_BACKOFF_FIRST = timedelta(hours=1)
REJECT_BACKOFF_MAX = timedelta(days=1)


def _covered(name: str, stored: Mapping[str, StoredCert], now: datetime) -> bool:
    return any(name in c.domains and c.not_after > now for c in stored.values())


def apply_memory(
    verdicts: Mapping[str, Verdict],
    stored: Mapping[str, StoredCert],
    state: State,
    *,
    grace: timedelta,
    now: datetime,
) -> tuple[dict[str, Verdict], State]:
    """Grace for failing names already in a valid certificate; hold back CA-rejected names.

    A name that fails validation but is in a certificate that is still valid stays in until it
    has failed for ``grace``; one flaky lookup never shrinks a certificate. A name the CA
    rejected is not ordered again before its back-off ends.
    """
    out: dict[str, Verdict] = {}
    failing = dict(state.failing_since)
    for name, verdict in verdicts.items():
        if verdict.ok:
            failing.pop(name, None)
            rejection = state.rejected.get(name)
            if rejection and rejection.until > now:
                out[name] = Verdict(
                    name,
                    False,
                    f"the CA rejected it ({rejection.reason}); next try after "
                    f"{rejection.until:%Y-%m-%d %H:%M}Z",
                )
            else:
                out[name] = verdict
            continue
        since = failing.setdefault(name, now)
        if _covered(name, stored, now) and now - since < grace:
            until = since + grace
            out[name] = Verdict(
                name,
                True,
                f"kept in its certificate: failing since {since:%Y-%m-%d %H:%M}Z "
                f"({verdict.reason}); dropped after {until:%Y-%m-%d %H:%M}Z",
            )
        else:
            out[name] = verdict
    failing = {n: t for n, t in failing.items() if n in verdicts}
    return out, replace(state, failing_since=failing)


def record_rejections(state: State, rejected: Mapping[str, str], now: datetime) -> State:
    """Remember names the CA refused; the back-off doubles from 1 h up to 1 day."""
    table = dict(state.rejected)
    for name, reason in rejected.items():
        count = table[name].count + 1 if name in table else 1
        # the exponent is bounded before the power: a thousand rejections must not overflow
        wait = min(REJECT_BACKOFF_FIRST * 2 ** min(count - 1, 16), REJECT_BACKOFF_MAX)
        table[name] = Rejection(reason[:300], count, now + wait)
    return replace(state, rejected=table)


def record_issued(state: State, names: set[str]) -> State:
    """Forget the rejections of names that are now in a certificate."""
    return replace(state, rejected={k: v for k, v in state.rejected.items() if k not in names})


def reusable_verdicts(
    names: Iterable[str],
    stored: Mapping[str, StoredCert],
    state: State,
    *,
    now: datetime,
    revalidate_after: timedelta,
    force: bool,
) -> dict[str, Verdict]:
    """Verdicts that need no fresh DNS/HTTP check this cycle.

    A name qualifies when it passed validation less than ``revalidate_after`` ago and sits in a
    stored certificate that is valid and not due: nothing will be ordered for it, so a fresh
    check could only start its grace period a little earlier. Names of a certificate that is
    due, forced, or new are always checked.
    """
    if force or revalidate_after <= timedelta(0):
        return {}
    settled: set[str] = set()
    for stored_name, cert in stored.items():
        ari = state.cert(stored_name).ari
        due = renew_time(cert.cert_id, cert.not_before, cert.not_after, ari).at
        if cert.key_matches and cert.not_after > now and now < due:
            settled.update(cert.domains)
    out: dict[str, Verdict] = {}
    reasons: dict[datetime, str] = {}  # the names of one cycle share their time: format it once
    for name in names:
        when = state.validated.get(name)
        if name in settled and when is not None and now - when < revalidate_after:
            reason = reasons.get(when)
            if reason is None:
                reason = reasons[when] = (
                    f"validated {when:%Y-%m-%d %H:%M}Z; checked again after "
                    f"{when + revalidate_after:%Y-%m-%d %H:%M}Z or when its certificate is due"
                )
            out[name] = Verdict(name, True, reason)
    return out


def record_validated(state: State, verdicts: Mapping[str, Verdict], now: datetime) -> State:
    """Note when freshly validated names passed; forget names that failed."""
    table = dict(state.validated)
    for name, verdict in verdicts.items():
        if verdict.ok:
            table[name] = now
        else:
            table.pop(name, None)
    return replace(state, validated=table)
