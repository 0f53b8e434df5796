"""The error tree of acme-sidecar. Every adapter translates its library's errors into these.

SidecarError
├── ConfigError        an environment value is invalid (exit code 2)
├── SourceError        the domain database cannot be read
├── IssueError         an ACME order failed (carries the failed names and Retry-After)
│   ├── CaUnreachable      no answer, a connection error or a 5xx from the CA (systemic)
│   ├── RateLimited        the CA's rateLimited answer, with its Retry-After
│   ├── AccountUnknown     the CA does not know the account (register the same key again)
│   └── NamesRejected      authorizations went invalid: per name, the CA's own reason or a
│                          transient cause on the CA's side (DNS, connection)
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


class CaUnreachable(IssueError):
    """The CA could not be reached, timed out, or answered with a server error (5xx)."""


class RateLimited(IssueError):
    """The CA refused with ``rateLimited``; ``retry_after`` is when it allows the next try."""


class AccountUnknown(IssueError):
    """The CA does not know the account (``accountDoesNotExist``)."""


class NamesRejected(IssueError):
    """Authorizations failed. ``failed_names`` are refused for the CA's own reason
    (unauthorized, incorrectResponse, caa, rejectedIdentifier); ``transient_names`` failed for
    a cause on the CA's side that may pass on the next try (dns, connection, timeout)."""

    def __init__(
        self,
        message: str,
        *,
        failed_names: dict[str, str] | None = None,
        transient_names: dict[str, str] | None = None,
        retry_after: datetime | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, failed_names=failed_names, retry_after=retry_after, code=code)
        self.transient_names: dict[str, str] = dict(transient_names or {})


class StoreError(SidecarError):
    """The certificate volume could not be read or written."""


class ServiceError(SidecarError):
    """A consumer container could not be reloaded or restarted."""
