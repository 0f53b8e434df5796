"""Fetch the CA's renewal windows (ARI, RFC 9773) due this cycle and fold them into the ledger.

For each stored certificate whose window is due (``core.ari.poll_due``: never fetched for this
certificate, or its next fetch has come; not when it is expired or due for renewal anyway) the
adapter is asked, bounded by ``BUDGET`` seconds per cycle; the answers are settled by
``core.ari.settle`` and saved with the ledger. A new window logs ``ari.window`` (with the CA's
``explanationURL``), a window already over ``ari.renew_now``; an answer not used is one
``ari.unused`` line per problem, naming the certificates, and the lifetime rule applies.
May touch: the CA (through ``deps.windows``) and the ledger.
"""

from __future__ import annotations

import random
import time
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from acme_sidecar.adapters.acme.ari import NO_ARI
from acme_sidecar.core.ari import AriRecord, poll_due, settle
from acme_sidecar.core.ledger import State
from acme_sidecar.core.model import StoredCert
from acme_sidecar.shell.gather import Deps

log = structlog.get_logger(__name__)

BUDGET = 60.0  # seconds of fetching per cycle; the rest is fetched in the next one


class Ledger(Protocol):
    """The cycle's ledger (``shell.cycle.Book``)."""

    state: State

    def update(self, state: State) -> None:
        """Take ``state`` and save it."""


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
    deps: Deps,
    book: Ledger,
    stored: dict[str, StoredCert],
    interval: timedelta,
    now: datetime,
) -> int:
    """Fetch the windows due now; return how many were fetched."""
    if deps.windows is None:
        return 0
    due = [
        (name, cert)
        for name, cert in sorted(stored.items())
        if (
            at := poll_due(
                cert.cert_id, cert.not_before, cert.not_after, book.state.cert(name).ari, now
            )
        )
        is not None
        and at <= now
    ]
    if not due:
        return 0
    source = deps.windows()
    deadline = time.monotonic() + BUDGET
    problems: dict[str, list[str]] = {}
    state = book.state
    fetched = 0
    for name, cert in due:
        if deps.stop.is_set() or time.monotonic() > deadline:
            break
        answer = source.fetch(cert.cert_id)
        fetched += 1
        old = state.cert(name).ari
        new = settle(
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
    book.update(state)
    return fetched
