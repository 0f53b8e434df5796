"""Expiry warnings: when a certificate, issued or own, is close enough to expiry to tell the admin.

Two levels, relative to the lifetime for short certificates: a *warning* with
``min(days, lifetime / 3)`` left (``days`` is ``ACME_NOTIFY_EXPIRY_DAYS``, 14 by default) and an
*urgent* one with ``min(days / 2, lifetime / 6)`` left (7 days by default); *expired* after
``not_after``. A 90-day certificate warns at 14 and 7 days, a 6-day one at 2 days and 1 day.
Pure: the clock is a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

WARNING = "warning"
URGENT = "urgent"
EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class ExpiryWarning:
    """A certificate close to expiry: how close, and the level."""

    level: str  # warning | urgent | expired
    days_left: float
    threshold_days: float  # the level's threshold

    def summary(self, name: str, not_after: datetime) -> str:
        """``certificate NAME expires in N days (...)`` or ``... expired at ...``."""
        if self.level == EXPIRED:
            return f"certificate {name} expired at {not_after.isoformat()}"
        return f"certificate {name} expires in {self.days_left:.1f} days ({not_after.isoformat()})"


def thresholds(not_before: datetime, not_after: datetime, days: int = 14) -> tuple[timedelta, ...]:
    """The warning and the urgent threshold (time left) of a certificate."""
    lifetime = max(not_after - not_before, timedelta(0))
    first = min(timedelta(days=days), lifetime / 3)
    return first, min(timedelta(days=days) / 2, lifetime / 6)


def expiry_warning(
    not_before: datetime, not_after: datetime, now: datetime, days: int = 14
) -> ExpiryWarning | None:
    """The warning a certificate deserves at ``now``, or None when it is far from expiry."""
    first, second = thresholds(not_before, not_after, days)
    left = not_after - now
    if left > first:
        return None
    days_left = left.total_seconds() / 86400
    if left <= timedelta(0):
        return ExpiryWarning(EXPIRED, days_left, 0.0)
    if left <= second:
        return ExpiryWarning(URGENT, days_left, second.total_seconds() / 86400)
    return ExpiryWarning(WARNING, days_left, first.total_seconds() / 86400)
