"""What the ACME adapter says and reads over HTTP, without the ``acme`` library.

The User-Agent, the clock, the bounds of one request to the CA (deadline and body caps), the
https rule (``refuse_downgrade``) and ``Retry-After``: shared by the session (``session``), the
error translation (``translate``) and the renewal windows (``windows``), which a quiet cycle
fetches without importing ``acme``, ``josepy`` or pyOpenSSL. Pure; touches nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from acme_sidecar import __version__
from acme_sidecar.core.errors import CaUnreachable

USER_AGENT = f"acme-sidecar/{__version__} (+acme-python)"
DEADLINE = 30.0  # seconds for one request to the CA, all of it: connect, TLS, headers, body
JSON_CAP = 1024 * 1024  # bytes of a JSON answer (an order of 100 names is about 20 KiB)
CHAIN_CAP = 4 * 1024 * 1024  # bytes of a certificate chain (a chain is a few KiB)
PEM_CHAIN = "application/pem-certificate-chain"
MAX_RETRY_AFTER = timedelta(days=7)
NO_ARI = "the CA offers no renewalInfo"


def http_allowed(directory_url: str) -> bool:
    """Whether the CA may be reached over plain http: only when its directory is http (a test
    CA, which the settings allow only with ``ACME_ALLOW_HTTP_CA=y``)."""
    return directory_url.lower().startswith("http://")


def scheme_ok(url: str, *, allow_http: bool) -> bool:
    """Whether ``url`` is https, or http where http is allowed."""
    scheme = url.partition("://")[0].lower()
    return scheme == "https" or (allow_http and scheme == "http")


def refuse_downgrade(url: str, *, allow_http: bool, what: str = "") -> None:
    """Raise ``CaUnreachable`` when ``url`` is not https and http is not allowed."""
    if scheme_ok(url, allow_http=allow_http):
        return
    shown = url.split("?", 1)[0][:200]
    raise CaUnreachable(
        f"the CA sent {what or 'a URL'} that is not https ({shown}) although its directory "
        "is https: refused as a downgrade (plain http can be changed on the way)",
        code="insecure",
    )


def utcnow() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(UTC)


def answer_cap(headers: Mapping[str, str]) -> int:
    """The body cap of an ACME answer by its Content-Type: a certificate chain or JSON."""
    kind = headers.get("Content-Type", "").split(";")[0].strip().lower()
    return CHAIN_CAP if kind == PEM_CHAIN else JSON_CAP


def retry_after(value: str | None, now: datetime) -> datetime | None:
    """When a ``Retry-After`` value (seconds or an HTTP date) allows the next try.

    Capped at ``MAX_RETRY_AFTER`` from ``now``; zero, negative, past or unparseable means None
    (the caller falls back to its own delay).
    """
    text = (value or "").strip()
    if not text:
        return None
    if text.isdigit():
        seconds = int(text)
        if seconds <= 0:
            return None
        return now + min(timedelta(seconds=min(seconds, 10**9)), MAX_RETRY_AFTER)
    when: datetime | None = None
    with contextlib.suppress(TypeError, ValueError, OverflowError, IndexError):
        when = parsedate_to_datetime(text)
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when <= now:
        return None
    return min(when, now + MAX_RETRY_AFTER)
