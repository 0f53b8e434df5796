"""ARI over the wire (RFC 9773): fetch a certificate's renewal window, and place a new order
that names the certificate it replaces.

``RenewalInfo`` reads the directory once (its ``renewalInfo`` URL) and GETs
``<renewalInfo>/<CertID>`` per certificate, each request ended within ``timeout`` seconds in all
(``adapters.bounded``: connect, TLS, headers and body) and read up to ``JSON_CAP`` bytes; every
outcome is an ``ari.Answer`` (a failure is its ``error``, naming the URL), never an exception.
``new_order`` is ``ClientV2.new_order`` with a ``replaces`` field (the library has no such
parameter); a CA without ``renewalInfo`` gets the order without it. May touch: the CA over HTTPS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import requests
import structlog
from acme import client, errors, messages
from josepy.json_util import field

from acme_sidecar.adapters.acme.session import (
    JSON_CAP,
    USER_AGENT,
    http_allowed,
    scheme_ok,
    utcnow,
)
from acme_sidecar.adapters.acme.translate import problem, retry_after
from acme_sidecar.adapters.bounded import OutOfBounds, send, watched_session
from acme_sidecar.core.ari import Answer
from acme_sidecar.core.errors import IssueError

log = structlog.get_logger(__name__)

TIMEOUT = 10.0  # seconds for one renewalInfo or directory request, all of it
NO_ARI = "the CA offers no renewalInfo"


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


class ReplacingOrder(messages.NewOrder):
    """A new order naming the certificate it replaces (RFC 9773 §5)."""

    replaces: str = field("replaces", omitempty=True)


def offers_ari(acme: client.ClientV2) -> bool:
    """Whether the CA's directory has ``renewalInfo``."""
    try:
        acme.directory["renewalInfo"]
    except KeyError:
        return False
    return True


def new_order(
    acme: client.ClientV2,
    csr_pem: bytes,
    names: Sequence[str],
    *,
    replaces: str = "",
    profile: str = "",
) -> messages.OrderResource:
    """``acme.new_order(csr_pem, profile=)``, with ``replaces`` when given; a refusal of the CA
    is a typed error (a 409 becomes ``IssueError`` with code ``conflict``)."""
    if not replaces:
        return acme.new_order(csr_pem, profile=profile or None)
    identifiers = [messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=n) for n in names]
    order = ReplacingOrder(identifiers=identifiers, replaces=replaces, profile=profile or None)
    try:
        response = acme.net.post(
            acme.directory["newOrder"], order, new_nonce_url=acme.directory["newNonce"]
        )
    except errors.ConflictError as exc:
        raise IssueError(
            "the CA answered conflict: the certificate already has a replacement order",
            code="conflict",
        ) from exc
    except messages.Error as exc:  # typed here, so that the caller can judge it
        raise problem(exc) from exc
    body = messages.Order.from_json(response.json())
    authorizations = [
        messages.AuthorizationResource(
            body=messages.Authorization.from_json(acme._post_as_get(url).json()), uri=url
        )
        for url in body.authorizations
    ]
    return messages.OrderResource(
        body=body,
        uri=response.headers.get("Location"),
        authorizations=authorizations,
        csr_pem=csr_pem,
    )


def replaces_refused(exc: IssueError) -> bool:
    """Whether the CA refused the order because of its ``replaces``: already replaced (a
    conflict), malformed (a CertID of another CA), or an internal error about the replaced
    certificate (Pebble 2.6 answers ``serverInternal`` "could not find an order for the given
    certificate" when it cannot look the certificate up, e.g. for a serial whose hex form has
    an odd number of digits)."""
    if exc.code in {"alreadyReplaced", "conflict", "malformed", "serverInternal"}:
        return True
    return exc.code != "rateLimited" and "replace" in str(exc).lower()
