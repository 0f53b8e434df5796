"""The renewal-information setting (ARI, RFC 9773): how often the CA's renewal window is asked.

A base class of ``Settings``: the same environment, validated the same way; ``core.ari`` and
``shell.ari`` use it through ``CyclePolicy.ari_interval`` and ``DaemonPolicy``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, field_validator

from acme_sidecar.config.base import SETTINGS_CONFIG
from acme_sidecar.config.values import parse_duration

ARI_INTERVAL_MAX = 86400  # RFC 9773 §4.3.3: at least once a day


class AriSettings(BaseModel):
    """``ACME_ARI_INTERVAL``: the longest gap between two fetches of a certificate's window."""

    model_config = SETTINGS_CONFIG

    acme_ari_interval: int = 6 * 3600

    @field_validator("acme_ari_interval", mode="before")
    @classmethod
    def _ari_interval(cls, value: Any) -> int:
        seconds = parse_duration(value)
        if not 1 <= seconds <= ARI_INTERVAL_MAX:
            raise ValueError("must be a duration from 1s to 1d, such as 6h (the default)")
        return seconds
