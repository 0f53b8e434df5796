"""Coalescing: certificates that fall due together are renewed in one cycle, with one deploy.

Pure. Each stored certificate has a **span**: the times it may be renewed at.

- Under the CA's window (ARI, ``core.ari``): the part of the window that lies within its life
  and before a tenth of it is left (``ari.LATEST_LEFT``), as ``ari.choose`` draws in. RFC 9773
  asks for a renewal inside the window: never earlier than its start, never later than its end.
- Under the lifetime rule (``ari.lifetime_time``): from ``ACME_COALESCE`` before its renewal
  time up to that time. Joining others renews it early, never late.

Spans that share a time form a **renewal group** (``RenewalGroup``). The groups are cut greedily
by the earliest end (the fewest groups: each one holds every span that has begun by the end of
the first span left), so every group has a common part, from the latest start of its members to
the earliest end. A group of one keeps the certificate's own time (its ARI draw or the lifetime
rule). A larger group renews at one time inside its common part: with an ARI window among its
members, a time drawn from the members' CertIDs (the same on every cycle, different from one
server to the next, as RFC 9773 wants of a draw); of lifetime-rule certificates only, the
earliest member's own time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from acme_sidecar.core.ari import LATEST_LEFT, AriRecord, renew_time
from acme_sidecar.core.model import RenewalGroup, StoredCert

DAY = timedelta(days=1)
FIXED_SHARE = 4  # a fixed ACME_COALESCE is used up to a quarter of the lifetime


@dataclass(frozen=True, slots=True)
class Coalesce:
    """``ACME_COALESCE``: how early a lifetime-rule certificate may be renewed to join others.

    A ``share`` of its lifetime up to ``cap`` (the default: 10 %, at most a day), or a ``fixed``
    duration (used up to a quarter of the lifetime). ``off`` (0): every certificate at its own
    time, and no ARI windows joined either.
    """

    share: float = 0.10
    cap: timedelta = DAY
    fixed: timedelta | None = None

    @property
    def off(self) -> bool:
        """No coalescing at all."""
        if self.fixed is not None:
            return self.fixed <= timedelta(0)
        return self.share <= 0

    def slack(self, lifetime: timedelta) -> timedelta:
        """How early a certificate of ``lifetime`` may be renewed under the lifetime rule."""
        if self.fixed is not None:
            return max(min(self.fixed, lifetime / FIXED_SHARE), timedelta(0))
        return max(min(lifetime * self.share, self.cap), timedelta(0))

    def describe(self) -> str:
        """The setting as the admin writes it (``10%``, ``6h``)."""
        if self.fixed is not None:
            return _duration(self.fixed)
        return f"{self.share * 100:g}%"


DEFAULT = Coalesce()  # 10 % of the lifetime, at most a day
OFF = Coalesce(share=0.0)


@dataclass(frozen=True, slots=True)
class Span:
    """When one certificate may be renewed: from ``start`` to ``end``; ``own`` is its own
    renewal time (``ari.renew_time``), ``ari`` whether that is the CA's window."""

    name: str
    start: datetime
    end: datetime
    own: datetime
    ari: bool
    cert_id: str = ""


def span_of(
    name: str, cert: StoredCert, record: AriRecord | None, rules: Coalesce = DEFAULT
) -> Span:
    """The span of a stored certificate (see the module docstring)."""
    rule = renew_time(cert.cert_id, cert.not_before, cert.not_after, record)
    lifetime = cert.not_after - cert.not_before
    if rule.ari and record is not None and record.start is not None and record.end is not None:
        start = max(record.start, cert.not_before)
        end = min(record.end, cert.not_after - lifetime / LATEST_LEFT)
    else:
        start, end = rule.at - rules.slack(lifetime), rule.at
    # a window already over was drawn "now" when it was seen: the span reaches that time
    return Span(name, min(start, rule.at), max(end, rule.at), rule.at, rule.ari, cert.cert_id)


def _draw(members: list[Span]) -> float:
    """A number in [0, 1) from the members' CertIDs (their names when they have none)."""
    seed = "\n".join(sorted(s.cert_id or s.name for s in members)).encode()
    return int.from_bytes(hashlib.sha256(seed).digest()[:8], "big") / 2**64


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _fmt(when: datetime) -> str:
    return f"{when:%Y-%m-%d %H:%M:%S}Z"


def _group(members: list[Span], rules: Coalesce) -> RenewalGroup:
    names = tuple(s.name for s in sorted(members, key=lambda s: s.name))
    start = max(s.start for s in members)
    end = min(s.end for s in members)
    if len(members) == 1:
        return RenewalGroup(names, members[0].own, start, end, "")
    windows = sum(s.ari for s in members)
    common = f"{_fmt(start)} to {_fmt(end)}"
    if windows == len(members):
        why = f"their ARI windows overlap from {common}"
    elif windows:
        why = f"ARI windows and renewal times within ACME_COALESCE share {common}"
    else:
        why = f"their renewal times lie within ACME_COALESCE ({rules.describe()}) of {_fmt(end)}"
    at = start + (end - start) * _draw(members) if windows else end
    return RenewalGroup(names, at, start, end, why)


def group_spans(spans: list[Span], rules: Coalesce = DEFAULT) -> tuple[RenewalGroup, ...]:
    """Every span in exactly one group (see the module docstring), earliest group first."""
    if rules.off:
        return tuple(_group([s], rules) for s in sorted(spans, key=lambda s: (s.own, s.name)))
    left = sorted(spans, key=lambda s: (s.end, s.name))
    groups: list[RenewalGroup] = []
    while left:
        first = left[0]
        groups.append(_group([s for s in left if s.start <= first.end], rules))
        left = [s for s in left if s.start > first.end]
    return tuple(sorted(groups, key=lambda g: (g.at, g.names)))


def renewal_groups(
    stored: Mapping[str, StoredCert],
    ari: Mapping[str, AriRecord | None],
    rules: Coalesce = DEFAULT,
) -> dict[str, RenewalGroup]:
    """The renewal group of each stored certificate, by name: ``stored`` are the wanted
    certificates (by directory name), ``ari`` the CA's windows kept for them."""
    spans = [span_of(name, cert, ari.get(name), rules) for name, cert in stored.items()]
    return {name: group for group in group_spans(spans, rules) for name in group.names}
