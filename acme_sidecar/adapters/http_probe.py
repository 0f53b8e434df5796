"""HTTP adapters: public IP detection, the webroot self-check, and ``fetch``, one bounded request.

Every request here has an overall deadline and a body cap: ``fetch`` arms a watchdog of
``adapters.bounded`` that shuts the request's sockets down when the deadline passes (whatever
phase it is in; one deadline for all redirects), and reads the body in chunks, never more than
the cap. The webhook of ``ops.notify`` uses ``fetch`` too.

May touch: the network (HTTP to the detection URL, to this server's addresses, to the webhook)
and the webroot (one token file while the self-check runs).
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urljoin

import requests
import structlog

from acme_sidecar.adapters.bounded import OutOfBounds, read_capped, watched_session, watching
from acme_sidecar.core.values import mask_url

log = structlog.get_logger(__name__)

SELF_CHECK_DEADLINE = 10.0  # seconds per name and address
SELF_CHECK_CAP = 4096  # the token is 32 characters
DETECT_DEADLINE = 10.0
DETECT_CAP = 256  # an address is at most 45 characters


class FetchFailed(Exception):
    """A bounded request did not complete; the message says why and never holds the URL."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """The answer of a bounded request: at most ``cap`` bytes of the body."""

    status: int
    reason: str
    body: bytes = b""


def fetch(
    method: str,
    url: str,
    *,
    deadline: float,
    cap: int,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    max_redirects: int = 0,
    trust_env: bool = True,
    clock: Callable[[], float] = time.monotonic,
) -> Fetched:
    """One request that ends within ``deadline`` seconds and reads at most ``cap`` body bytes.

    Raises ``FetchFailed`` when it could not connect, ran out of time, or the body is longer
    than ``cap`` (``cap=0``: the body is not read at all). Only GET follows redirects. The time
    left is read from ``clock``; the watchdog that cuts a stalled read off runs on real time.
    """
    session = watched_session(trust_env=trust_env)
    sent = {"Accept-Encoding": "identity", **(headers or {})}
    with watching(deadline, clock) as watchdog, session:
        for _ in range(max_redirects + 1):
            left = watchdog.left()
            if left <= 0:
                break
            try:
                response = session.request(
                    method,
                    url,
                    headers=sent,
                    json=json,
                    timeout=(left, left),
                    allow_redirects=False,
                    stream=True,
                )
            except requests.RequestException as exc:
                if watchdog.fired:
                    break
                raise FetchFailed(f"not reachable ({type(exc).__name__})") from exc
            with response:
                if watchdog.fired:  # cut off in the headers: http.client took EOF as their end
                    break
                location = response.headers.get("Location")
                if method == "GET" and response.is_redirect and location:
                    url = urljoin(url, location)
                    continue
                try:
                    body = read_capped(response, cap, watchdog)
                except (OutOfBounds, requests.ConnectionError) as exc:
                    raise FetchFailed(str(exc)) from exc
                return Fetched(response.status_code, str(response.reason or ""), body)
        if watchdog.over:
            raise FetchFailed(str(watchdog.late()))
        raise FetchFailed(f"more than {max_redirects} redirects")


def detect_public_ip(
    url: str, version: int, deadline: float = DETECT_DEADLINE, *, cap: int = DETECT_CAP
) -> str | None:
    """Ask ``url`` for this server's public address; return it only when it parses as IPv4/6."""
    addr, error = ask_public_ip(url, version, deadline, cap=cap)
    if addr is None:
        log.warning("ip.detect_failed", url=mask_url(url), version=version, error=error[:200])
    return addr


def ask_public_ip(
    url: str, version: int, deadline: float = DETECT_DEADLINE, *, cap: int = DETECT_CAP
) -> tuple[str | None, str]:
    """``detect_public_ip`` without the log line: (the address or None, why not)."""
    try:
        answer = fetch("GET", url, deadline=deadline, cap=cap, max_redirects=3)
    except FetchFailed as exc:
        return None, str(exc)
    text = answer.body.decode("ascii", errors="replace").strip()
    error = f"HTTP {answer.status} {answer.reason}" if answer.status != 200 else ""
    addr = _parse_ip(text) if not error else None
    if addr is not None and addr.version == version:
        return str(addr), ""
    return None, error or f"got {text[:60]!r}"


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class WebrootSelfCheck:
    """Writes one random token into the webroot and fetches it back through each name.

    The request goes to the validated address itself (not a fresh lookup), on
    ``ACME_HTTP_VERIFY_PORT``, with the name in the Host header: what the CA will do. Which
    addresses it may go to is decided before, in ``core.validate`` (this server's own only,
    unless public). Each check ends within ``deadline`` seconds and reads at most ``cap`` bytes.
    Use as a context manager so the token file is always removed.
    """

    def __init__(
        self,
        webroot: Path,
        port: int,
        deadline: float = SELF_CHECK_DEADLINE,
        *,
        cap: int = SELF_CHECK_CAP,
    ) -> None:
        self._webroot = webroot
        self._port = port
        self._deadline = deadline
        self._cap = cap
        self._token = secrets.token_urlsafe(24)

    def __enter__(self) -> WebrootSelfCheck:
        self._webroot.mkdir(parents=True, exist_ok=True)
        (self._webroot / self._token).write_text(self._token)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        (self._webroot / self._token).unlink(missing_ok=True)

    def check(self, name: str, address: str) -> str | None:
        """Return ``None`` when ``http://name/.well-known/acme-challenge/TOKEN`` answered right."""
        host = f"[{address}]" if ":" in address else address
        url = f"http://{host}:{self._port}/.well-known/acme-challenge/{self._token}"
        where = f"http://{name}:{self._port}/.well-known/acme-challenge/ via {address}"
        try:
            # no proxy from the environment: the request must reach this very address
            answer = fetch(
                "GET",
                url,
                deadline=self._deadline,
                cap=self._cap,
                headers={"Host": name},
                trust_env=False,
            )
        except FetchFailed as exc:
            return f"{where}: {exc}"
        if answer.status != 200 or answer.body.strip() != self._token.encode():
            return (
                f"{where} answered {answer.status} without the token (is the webroot served there?)"
            )
        return None
