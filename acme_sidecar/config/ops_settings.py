"""The operations settings (metrics, alerts, the deploy hook, the mailcow UI over Redis).

A base class of ``Settings``: the same environment, validated the same way; see
``ops/metrics.py``, ``ops/notify.py``, ``ops/deploy_hook.py`` and ``ops/mailcow_ui.py`` for how
derived defaults are filled in. mailcow's watchdog settings (``WATCHDOG_*``) are kept as given
and read leniently where they are used (``ops/notify.py``): a bad one is a warning, never exit 2.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, field_validator

from acme_sidecar.config.base import SETTINGS_CONFIG
from acme_sidecar.config.values import comma_list, parse_duration
from acme_sidecar.core.values import is_email, parse_host_port


class OpsSettings(BaseModel):
    """Metrics, notifications and mailcow UI settings."""

    model_config = SETTINGS_CONFIG

    acme_metrics_port: int | None = None
    acme_metrics_address: str = "0.0.0.0"  # noqa: S104 - a container listens on all interfaces
    acme_notify_email: tuple[str, ...] = ()
    acme_notify_smtp: str = "postfix:25"
    acme_notify_from: str = ""
    acme_notify_webhook: SecretStr = SecretStr("")  # its path or userinfo often holds a token
    acme_notify_expiry_days: int = 14
    acme_notify_state: Path | None = None
    acme_alert_after: int = 86400  # seconds of failing certificate work before the alert
    # mailcow.conf's watchdog settings: the alert channel when no ACME_NOTIFY_* is set
    watchdog_notify_email: str = ""
    watchdog_notify_webhook: SecretStr = SecretStr("")
    watchdog_notify_webhook_body: str = ""
    watchdog_subject: str = "Watchdog ALERT"
    acme_deploy_hook_url: SecretStr = SecretStr("")  # its path or userinfo may hold a token
    acme_deploy_hook_command: str = ""
    redispass: SecretStr = SecretStr("")
    redis_slaveof_ip: str = ""
    redis_slaveof_port: int | None = None
    acme_redis_host: str = ""
    acme_redis_port: int = 6379

    @field_validator("acme_metrics_port", "redis_slaveof_port", mode="before")
    @classmethod
    def _optional_port(cls, value: Any) -> int | None:
        text = str(value).strip() if value is not None else ""
        if not text:
            return None
        if not text.isdigit() or not 1 <= int(text) <= 65535:
            raise ValueError("must be a port number from 1 to 65535, or empty")
        return int(text)

    @field_validator("acme_redis_port")
    @classmethod
    def _redis_port(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise ValueError("must be a port number from 1 to 65535")
        return value

    @field_validator("acme_metrics_address")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value.strip()))
        except ValueError:
            raise ValueError("must be an IP address to listen on, such as 0.0.0.0 or ::") from None

    @field_validator("acme_notify_email", mode="before")
    @classmethod
    def _recipients(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        items = comma_list(value)
        for item in items:
            if not is_email(item):
                raise ValueError(f"{item!r} is not an e-mail address such as admin@example.org")
        return tuple(dict.fromkeys(items))

    @field_validator("acme_notify_from")
    @classmethod
    def _sender(cls, value: str) -> str:
        text = value.strip()
        if text and not is_email(text):
            raise ValueError("must be an e-mail address such as acme@example.org, or empty")
        return text

    @field_validator("acme_notify_smtp")
    @classmethod
    def _smtp(cls, value: str) -> str:
        text = value.strip()
        if parse_host_port(text) is None:
            raise ValueError("must be host:port of an SMTP server (for example postfix:25)")
        return text

    @field_validator("acme_alert_after", mode="before")
    @classmethod
    def _alert_after(cls, value: Any) -> int:
        return parse_duration(value)

    @field_validator("acme_notify_webhook", "acme_deploy_hook_url", mode="before")
    @classmethod
    def _webhook(cls, value: Any) -> str:
        text = (value.get_secret_value() if isinstance(value, SecretStr) else str(value)).strip()
        if text and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", text):
            raise ValueError("must be an http:// or https:// URL, or empty")
        return text

    @field_validator("acme_notify_expiry_days")
    @classmethod
    def _expiry_days(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be a whole number of days, 1 or more")
        return value

    @field_validator("redis_slaveof_ip", "acme_redis_host")
    @classmethod
    def _redis_host(cls, value: str) -> str:
        text = value.strip()
        if text and parse_host_port(f"{text}:1") is None:
            raise ValueError("must be a host name or IP address (without a port), or empty")
        return text
