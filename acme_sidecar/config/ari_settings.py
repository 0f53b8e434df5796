"""The renewal-timing settings: how often the CA's renewal window is asked (ARI, RFC 9773), and
how far renewals are pulled together (``ACME_COALESCE``).

A base class of ``Settings``: the same environment, validated the same way; ``core.ari``,
``shell.ari`` and ``core.coalesce`` use them through ``CyclePolicy`` and ``DaemonPolicy``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, field_validator

from acme_sidecar.config.base import SETTINGS_CONFIG
from acme_sidecar.config.values import parse_duration
from acme_sidecar.core.coalesce import Coalesce

ARI_INTERVAL_MAX = 86400  # RFC 9773 §4.3.3: at least once a day
COALESCE_SHARE_MAX = 50  # percent of the lifetime
COALESCE_MAX = 7 * 86400  # seconds
COALESCE_HELP = (
    "must be a share of the lifetime from 0% to 50% (at most a day; 10% is the default), "
    "a duration from 0 to 7d such as 6h, or 0 (each certificate at its own time)"
)


def parse_coalesce(value: Any) -> Coalesce:
    """``ACME_COALESCE``: ``N%`` of each certificate's lifetime (at most a day), a duration
    (``6h``), or ``0`` (off); ``ValueError`` naming what is valid otherwise."""
    text = str(value).strip().lower()
    if text.endswith("%"):
        try:
            share = float(text[:-1])
        except ValueError:
            raise ValueError(COALESCE_HELP) from None
        if not 0 <= share <= COALESCE_SHARE_MAX:
            raise ValueError(COALESCE_HELP)
        return Coalesce(share=share / 100)
    try:
        seconds = parse_duration(text)
    except ValueError:
        raise ValueError(COALESCE_HELP) from None
    if not 0 <= seconds <= COALESCE_MAX:
        raise ValueError(COALESCE_HELP)
    return Coalesce(fixed=timedelta(seconds=seconds))


class AriSettings(BaseModel):
    """``ACME_ARI_INTERVAL``: the longest gap between two fetches of a certificate's window."""

    model_config = SETTINGS_CONFIG

    acme_ari_interval: int = 6 * 3600
    acme_coalesce: str = "10%"

    @field_validator("acme_ari_interval", mode="before")
    @classmethod
    def _ari_interval(cls, value: Any) -> int:
        seconds = parse_duration(value)
        if not 1 <= seconds <= ARI_INTERVAL_MAX:
            raise ValueError("must be a duration from 1s to 1d, such as 6h (the default)")
        return seconds

    @field_validator("acme_coalesce", mode="before")
    @classmethod
    def _coalesce(cls, value: Any) -> str:
        parse_coalesce(value)
        return str(value).strip().lower()

    @property
    def coalesce(self) -> Coalesce:
        """``ACME_COALESCE`` as ``core.coalesce`` reads it."""
        return parse_coalesce(self.acme_coalesce)
