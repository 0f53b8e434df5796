"""The error tree of acme-sidecar. Every adapter translates its library's errors into these.

SidecarError
├── ConfigError        an environment value is invalid (exit code 2)
├── SourceError        the domain database cannot be read
├── IssueError         an ACME order failed (carries the failed names and Retry-After)
├── StoreError         the certificate volume cannot be read or written
└── ServiceError       the Docker API refused a reload or restart
"""

from __future__ import annotations

from datetime import datetime


class SidecarError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(SidecarError):
    """A setting is invalid; the message names the variable, the value and what is valid."""


class SourceError(SidecarError):
    """The domain source (MariaDB) could not be read."""


class IssueError(SidecarError):
    """An ACME order did not produce a certificate."""

    def __init__(
        self,
        message: str,
        *,
        failed_names: dict[str, str] | None = None,
        retry_after: datetime | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.failed_names: dict[str, str] = dict(failed_names or {})
        self.retry_after = retry_after
        self.code = code


class StoreError(SidecarError):
    """The certificate volume could not be read or written."""


class ServiceError(SidecarError):
    """A consumer container could not be reloaded or restarted."""
