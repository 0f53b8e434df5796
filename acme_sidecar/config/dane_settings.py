"""The DANE settings: whether the TLSA records of the MX names are checked, which, and how.

A base class of ``Settings``: the same environment, validated the same way; ``ops/dane.py`` is
what uses them. ``ACME_DANE`` is ``check`` (the default), ``publish`` (a key rollover's TLSA
records are also added and removed through the DNS-01 provider) or ``off``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, field_validator

from acme_sidecar.config.base import SETTINGS_CONFIG
from acme_sidecar.config.values import comma_list, parse_duration, resolver_list
from acme_sidecar.core.names import normalize_hostname


class DaneSettings(BaseModel):
    """``ACME_DANE`` and what it checks."""

    model_config = SETTINGS_CONFIG

    acme_dane: Literal["off", "check", "publish"] = "check"
    acme_dane_ports: tuple[int, ...] = (25,)
    acme_dane_hosts: tuple[str, ...] = ()  # empty: MAILCOW_HOSTNAME
    acme_dane_resolver: tuple[str, ...] = ()  # empty: the system's resolver
    acme_dane_interval: int = 3600  # looked up again at least this often (and at a new cert)
    acme_dane_state: Path | None = None  # default: next to ACME_HEALTH_FILE

    @field_validator("acme_dane", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> str:
        text = str(value).strip().lower()
        if text not in ("off", "check", "publish"):
            raise ValueError(
                "must be check (read the TLSA records and warn), publish (also add and remove "
                "them through the DNS-01 provider, ACME_DNS_PROVIDER) or off"
            )
        return text

    @field_validator("acme_dane_ports", mode="before")
    @classmethod
    def _ports(cls, value: Any) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        items = comma_list(value)
        if not items or not all(i.isdigit() and 1 <= int(i) <= 65535 for i in items):
            raise ValueError("must be a comma list of ports such as 25 or 25,465,587")
        return tuple(dict.fromkeys(int(i) for i in items))

    @field_validator("acme_dane_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        hosts = []
        for item in comma_list(value):
            name = normalize_hostname(item)
            if name is None:
                raise ValueError(f"{item!r} is not a host name such as mail.example.org")
            hosts.append(name)
        return tuple(dict.fromkeys(hosts))

    @field_validator("acme_dane_resolver", mode="before")
    @classmethod
    def _resolver(cls, value: Any) -> tuple[str, ...]:
        return resolver_list(value)

    @field_validator("acme_dane_interval", mode="before")
    @classmethod
    def _interval(cls, value: Any) -> int:
        return parse_duration(value)
