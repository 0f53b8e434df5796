"""Fetch the CA's renewal windows (ARI, RFC 9773) due this cycle and fold them into the ledger.

For each stored certificate whose window is due (``core.ari.poll_due``: never fetched for this
certificate, or its next fetch has come; not when it is expired or due for renewal anyway) the
adapter is asked, bounded by ``BUDGET`` seconds per cycle; each answer is folded into the
ledger the caller saves (``core.ari.fold_answer``). A new window logs ``ari.window`` (with the
CA's ``explanationURL``), a window already over ``ari.renew_now``; an answer not used is one
``ari.unused`` line per problem, naming the certificates, and the lifetime rule applies.
May touch: the CA (through ``windows``).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta

import structlog

from acme_sidecar.adapters.acme.wire import NO_ARI
from acme_sidecar.core.ari import AriRecord, fold_answer, poll_due
from acme_sidecar.core.ledger import State
from acme_sidecar.core.model import StoredCert
from acme_sidecar.core.ports import WindowSource

log = structlog.get_logger(__name__)

BUDGET = 60.0  # seconds of fetching per cycle; the rest is fetched in the next one


def _fmt(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def _log_window(name: str, old: AriRecord | None, new: AriRecord, now: datetime) -> None:
    if new.problem or new.start is None or new.end is None:
        return
    if old is not None and (old.cert_id, old.start, old.end) == (new.cert_id, new.start, new.end):
        return
    fields = {
        "certificate": name,
        "start": _fmt(new.start),
        "end": _fmt(new.end),
        "renew_at": _fmt(new.renew_at),
        "explanation": new.explanation or None,
    }
    if new.end <= now:
        log.warning("ari.renew_now", reason="the CA's renewal window has passed", **fields)
    else:
        log.info("ari.window", **fields)


def refresh_windows(
    windows: Callable[[], WindowSource],
    stop: threading.Event,
    state: State,
    stored: Mapping[str, StoredCert],
    interval: timedelta,
    now: datetime,
) -> State:
    """Fetch the windows due now; return ``state`` with their answers folded in."""
    due = [
        (name, cert)
        for name, cert in sorted(stored.items())
        if (
            at := poll_due(cert.cert_id, cert.not_before, cert.not_after, state.cert(name).ari, now)
        )
        is not None
        and at <= now
    ]
    if not due:
        return state
    source = windows()
    deadline = time.monotonic() + BUDGET
    problems: dict[str, list[str]] = {}
    for name, cert in due:
        if stop.is_set() or time.monotonic() > deadline:
            break
        answer = source.fetch(cert.cert_id)
        old = state.cert(name).ari
        new = fold_answer(
            old,
            cert.cert_id,
            answer,
            not_before=cert.not_before,
            not_after=cert.not_after,
            now=now,
            interval=interval,
            rand=random.random(),  # noqa: S311 - spreads renewals, not a secret
        )
        _log_window(name, old, new, now)
        if new.problem:
            problems.setdefault(new.problem, []).append(name)
        state = replace(state, certs={**state.certs, name: replace(state.cert(name), ari=new)})
    for problem, names in problems.items():
        level = log.info if problem == NO_ARI else log.warning  # a CA without ARI is normal
        level(
            "ari.unused",
            certificates=",".join(names),
            problem=problem,
            action="the lifetime rule applies unless an earlier window is known",
        )
    return state
