"""The DNS-01 settings: mailcow's ``ACME_DNS_PROVIDER`` and ``ACME_DNS_CONFIG_FILE``, plus the
propagation wait, the port the zones' authoritative servers answer on, and the zones a CNAME at
``_acme-challenge.<name>`` may lead to beyond the file's sections (``ACME_DNS_ALIAS_ZONES``).

A base class of ``Settings``: the same environment, validated the same way. The file itself is
read at start by ``adapters.dns01.setup`` (a bad file is logged, never an exit: DNS-01 names
are then left out, the daemon runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, field_validator

from acme_sidecar.config.base import SETTINGS_CONFIG
from acme_sidecar.config.dns01 import DEFAULT_FILE, parse_zone_list
from acme_sidecar.config.values import parse_duration

PLACEHOLDER = "dns_xxx"  # mailcow's default for ACME_DNS_PROVIDER (no provider chosen)


class Dns01Settings(BaseModel):
    """``ACME_DNS_PROVIDER``, ``ACME_DNS_CONFIG_FILE``, ``ACME_DNS_PROPAGATION_TIMEOUT``,
    ``ACME_DNS_AUTH_PORT``, ``ACME_DNS_ALIAS_ZONES``."""

    model_config = SETTINGS_CONFIG

    acme_dns_provider: str = ""
    acme_dns_config_file: Path = DEFAULT_FILE
    acme_dns_propagation_timeout: int = 300
    acme_dns_auth_port: int = 53
    acme_dns_alias_zones: tuple[str, ...] = ()

    @field_validator("acme_dns_provider")
    @classmethod
    def _provider(cls, value: str) -> str:
        # mailcow's compose passes ${ACME_DNS_PROVIDER:-dns_xxx}: its placeholder means unset
        value = value.strip()
        return "" if value == PLACEHOLDER else value

    @field_validator("acme_dns_propagation_timeout", mode="before")
    @classmethod
    def _propagation(cls, value: Any) -> int:
        seconds = parse_duration(value)
        if not 1 <= seconds <= 3600:
            raise ValueError("must be a duration from 1s to 1h, such as 5m (the default)")
        return seconds

    @field_validator("acme_dns_auth_port")
    @classmethod
    def _auth_port(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise ValueError("must be a port number from 1 to 65535")
        return value

    @field_validator("acme_dns_alias_zones", mode="before")
    @classmethod
    def _alias_zones(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        return parse_zone_list(str(value))
