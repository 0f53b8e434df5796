"""The settings of the served-certificate check after a deploy (``ACME_VERIFY_*``), and the two
mailcow variables that decide where nginx listens: ``HTTPS_PORT`` and ``NGINX_USE_PROXY_PROTOCOL``.

A base class of ``Settings``: the same environment, validated the same way. ``verify_https`` is
the effective HTTPS endpoint; ``policies.endpoints`` reads it. Touches nothing outside itself.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, field_validator

from acme_sidecar.config.base import SETTINGS_CONFIG
from acme_sidecar.config.values import mailcow_flag, parse_duration

_NGINX = "nginx"  # mailcow's nginx-mailcow alias on the mailcow network
_HOST_ONLY = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")


class VerifySettings(BaseModel):
    """Where and how long the served certificates are checked after a deploy."""

    model_config = SETTINGS_CONFIG

    acme_verify_smtp: str = "postfix:25"
    acme_verify_imap: str = "dovecot:143"
    # unset: nginx:<HTTPS_PORT>; a host alone: host:<HTTPS_PORT>; empty: off
    acme_verify_https: str | None = None
    acme_verify_attempts: int = 5
    acme_verify_timeout: int = 120
    https_port: int = 443  # mailcow: nginx listens on it in its container
    nginx_use_proxy_protocol: bool = False  # mailcow flag (lenient)

    @field_validator("acme_verify_smtp", "acme_verify_imap", "acme_verify_https")
    @classmethod
    def _endpoint(cls, value: str | None, info: Any) -> str | None:
        text = value.strip() if value is not None else None
        if not text:
            return text
        if info.field_name == "acme_verify_https" and _HOST_ONLY.fullmatch(text):
            return text
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            https = info.field_name == "acme_verify_https"
            also = ", a host alone (port HTTPS_PORT)" if https else ""
            raise ValueError(f"must be host:port (for example postfix:25){also}, or empty to skip")
        return text

    @field_validator("https_port", mode="before")
    @classmethod
    def _https_port(cls, value: Any) -> int:
        text = str(value).strip()
        if not text:
            return 443  # mailcow's compose file: ${HTTPS_PORT:-443}
        if not text.isdigit() or not 1 <= int(text) <= 65535:
            raise ValueError("must be a port number from 1 to 65535 (mailcow's default: 443)")
        return int(text)

    @field_validator("nginx_use_proxy_protocol", mode="before")
    @classmethod
    def _proxy_flag(cls, value: Any) -> bool:
        return mailcow_flag(value)[0]

    @field_validator("acme_verify_attempts")
    @classmethod
    def _attempts(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be a whole number of 1 or more")
        return value

    @field_validator("acme_verify_timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> int:
        return parse_duration(value)

    @property
    def verify_https(self) -> str:
        """``host:port`` of the HTTPS check, or empty when it is off: ACME_VERIFY_HTTPS as
        given; unset, nginx on HTTPS_PORT; a host alone gets HTTPS_PORT. Under PROXY protocol
        only an explicit ``host:port`` is checked (nginx itself expects a PROXY header)."""
        value = _NGINX if self.acme_verify_https is None else self.acme_verify_https
        if not value or not _HOST_ONLY.fullmatch(value):
            return value
        return "" if self.nginx_use_proxy_protocol else f"{value}:{self.https_port}"

    @property
    def verify_https_note(self) -> str:
        """Why the HTTPS check is off or is not nginx itself under PROXY protocol (logged once
        at start), or empty."""
        if not self.nginx_use_proxy_protocol or self.acme_verify_https == "":
            return ""  # no PROXY protocol, or the check is off anyway
        if not self.verify_https:
            return (
                "NGINX_USE_PROXY_PROTOCOL=y: nginx expects a PROXY header, so the HTTPS check "
                "is off; set ACME_VERIFY_HTTPS=host:port to check through your proxy"
            )
        return (
            f"NGINX_USE_PROXY_PROTOCOL=y: checking ACME_VERIFY_HTTPS={self.verify_https} "
            "with plain TLS, as set"
        )
