"""The CA's renewal windows (ARI, RFC 9773 §4) over HTTPS, without the ``acme`` library.

``RenewalInfo`` reads the directory once (its ``renewalInfo`` URL) and GETs
``<renewalInfo>/<CertID>`` per certificate, each request ended within ``timeout`` seconds in all
(``adapters.bounded``: connect, TLS, headers and body) and read up to ``JSON_CAP`` bytes; every
outcome is an ``ari.Answer`` (a failure is its ``error``, naming the URL), never an exception.
A quiet cycle fetches windows without importing ``acme``, ``josepy`` or pyOpenSSL (the daemon's
idle memory). May touch: the CA over HTTPS.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import requests

from acme_sidecar.adapters.acme.wire import (
    JSON_CAP,
    NO_ARI,
    USER_AGENT,
    http_allowed,
    retry_after,
    scheme_ok,
    utcnow,
)
from acme_sidecar.adapters.bounded import OutOfBounds, send, watched_session
from acme_sidecar.core.ari import Answer

TIMEOUT = 10.0  # seconds for one renewalInfo or directory request, all of it


class RenewalInfo:
    """The ``renewalInfo`` resource of one directory; the directory is read at the first fetch."""

    def __init__(
        self,
        directory_url: str,
        verify: bool | str = True,
        *,
        timeout: float = TIMEOUT,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._directory_url = directory_url
        self._verify = verify
        self._timeout = timeout
        self._clock = clock
        self._http = watched_session()
        self._http.headers["User-Agent"] = USER_AGENT
        self._base: str | None = None
        self._problem = ""

    def _get(self, url: str) -> requests.Response:
        return send(
            self._http, "GET", url, deadline=self._timeout, cap=JSON_CAP, verify=self._verify
        )

    def _resource(self) -> str:
        """The ``renewalInfo`` URL ("" with ``_problem`` set when there is none)."""
        if self._base is None and not self._problem:
            try:
                response = self._get(self._directory_url)
                response.raise_for_status()
                found = response.json().get("renewalInfo")
            except OutOfBounds as exc:
                self._problem = f"cannot read the ACME directory {self._directory_url}: {exc}"
                return ""
            except (requests.RequestException, ValueError, AttributeError) as exc:
                self._problem = f"cannot read the ACME directory: {type(exc).__name__}"
                return ""
            if not isinstance(found, str) or not scheme_ok(
                found, allow_http=http_allowed(self._directory_url)
            ):
                self._problem = NO_ARI
                return ""
            self._base = found.rstrip("/")
        return self._base or ""

    def fetch(self, cid: str) -> Answer:
        """GET the window of ``cid``: its JSON and Retry-After, or the error."""
        base = self._resource()
        if not base:
            return Answer(error=self._problem)
        url = f"{base}/{cid}"
        try:
            response = self._get(url)
        except OutOfBounds as exc:
            return Answer(error=f"renewalInfo {url}: {exc}")
        except requests.RequestException as exc:
            return Answer(error=f"renewalInfo unreachable: {type(exc).__name__}")
        at = retry_after(response.headers.get("Retry-After"), self._clock())
        if not response.ok:
            return Answer(retry_after=at, error=f"renewalInfo answered HTTP {response.status_code}")
        try:
            data: Any = response.json()
        except ValueError:
            return Answer(retry_after=at, error="renewalInfo answered with no JSON")
        return Answer(data=data, retry_after=at)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()
