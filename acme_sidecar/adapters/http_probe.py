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
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
import structlog
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InsecureRequestWarning

from acme_sidecar.adapters.bounded import (
    OutOfBounds,
    Watchdog,
    read_capped,
    watched_session,
    watching,
)
from acme_sidecar.core.ports import Resolver
from acme_sidecar.core.redirects import (
    Hop,
    HopPorts,
    Refused,
    first_hop,
    hop_address,
    next_hop,
)
from acme_sidecar.core.validate import IpPolicy
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
            with _send(session, method, url, watchdog, headers=sent, json=json) as response:
                location = response.headers.get("Location")
                if method == "GET" and response.is_redirect and location:
                    url = urljoin(url, location)
                    continue
                return _fetched(response, cap, watchdog)
        raise FetchFailed(f"more than {max_redirects} redirects")


def _send(
    session: requests.Session, method: str, url: str, watchdog: Watchdog, **kwargs: Any
) -> requests.Response:
    """One request of a bounded exchange, redirects not followed, its body not read yet."""
    left = watchdog.left()
    if left <= 0:
        raise FetchFailed(str(watchdog.late()))
    try:
        response = session.request(
            method, url, timeout=(left, left), allow_redirects=False, stream=True, **kwargs
        )
    except requests.RequestException as exc:
        if watchdog.fired:
            raise FetchFailed(str(watchdog.late())) from exc
        raise FetchFailed(f"not reachable ({type(exc).__name__})") from exc
    if watchdog.fired:  # cut off in the headers: http.client took EOF as their end
        response.close()
        raise FetchFailed(str(watchdog.late()))
    return response


def _fetched(response: requests.Response, cap: int, watchdog: Watchdog) -> Fetched:
    try:
        body = read_capped(response, cap, watchdog)
    except (OutOfBounds, requests.ConnectionError) as exc:
        raise FetchFailed(str(exc)) from exc
    return Fetched(response.status_code, str(response.reason or ""), body)


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
    unless public). It follows the redirects the CA follows (``core.redirects``: to http or
    https, on ports 80/443 or this check's own, 10 at most; an HTTPS certificate is not
    verified). A hop to a name already seen goes to the same address; a hop to another name
    goes to its first address (``resolver``; the validated address's family first) that
    ``policy`` lets the self-check connect to. Each check, all its hops and lookups together,
    ends within ``deadline`` seconds (a lookup under way ends at the resolver's own timeout) and
    reads at most ``cap`` bytes of each answer. Use as a context manager so the token file is
    always removed.
    """

    def __init__(
        self,
        webroot: Path,
        port: int,
        deadline: float = SELF_CHECK_DEADLINE,
        *,
        cap: int = SELF_CHECK_CAP,
        https_port: int = 443,
        policy: IpPolicy | None = None,
        resolver: Resolver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._webroot = webroot
        self._port = port
        self._deadline = deadline
        self._cap = cap
        self._ports = HopPorts.of(port, https_port)
        self._policy = policy or IpPolicy(ipv4=None, ipv6=None)
        self._resolver = resolver
        self._clock = clock  # the time left is read from it (the watchdog runs on real time)
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
        hop = first_hop(name, self._port, f"/.well-known/acme-challenge/{self._token}")
        where = f"http://{name}:{self._port}/.well-known/acme-challenge/ via {address}"
        try:
            answer, last, count = self._walk(hop, address)
        except FetchFailed as exc:
            return f"{where}: {exc}"
        except _NotFollowed as refused:
            location = mask_url(refused.location)[:200]
            log.warning(
                "redirect.refused",
                name=name,
                address=address,
                hop=refused.count,
                location=location,
                reason=refused.reason,
            )
            return f"{where}: redirect {refused.count} to {location} not followed: {refused.reason}"
        if answer.status != 200 or answer.body.strip() != self._token.encode():
            at = f" at {last.url} after {_redirects(count)}" if count else ""
            return (
                f"{where} answered {answer.status} without the token{at} "
                "(is the webroot served there?)"
            )
        return None

    def _walk(self, hop: Hop, address: str) -> tuple[Fetched, Hop, int]:
        """The answer at the end of the redirects from ``hop``, that hop, and how many
        redirects led there; raises ``FetchFailed`` or ``_NotFollowed``."""
        addresses = {hop.host: address}
        # no proxy from the environment: the request must reach this very address
        session = watched_session(trust_env=False)
        with watching(self._deadline, self._clock) as watchdog, session, warnings.catch_warnings():
            # an HTTPS hop is not verified, as the CA does not (mailcow's curl --insecure)
            warnings.simplefilter("ignore", InsecureRequestWarning)
            count = 0  # redirects followed
            while True:
                try:
                    with _send_hop(session, hop, addresses[hop.host], watchdog) as response:
                        location = response.headers.get("Location")
                        if not (response.is_redirect and location):
                            return _fetched(response, self._cap, watchdog), hop, count
                except FetchFailed as exc:
                    if not count:
                        raise
                    raise FetchFailed(f"after {_redirects(count)}, {hop.url}: {exc}") from exc
                count += 1
                hop = self._follow(hop, location, count, addresses, watchdog)

    def _follow(
        self, hop: Hop, location: str, count: int, addresses: dict[str, str], watchdog: Watchdog
    ) -> Hop:
        """The next hop, its address in ``addresses``; raises ``_NotFollowed``."""
        follow = next_hop(hop, location, count, self._ports)
        if isinstance(follow, Refused):
            raise _NotFollowed(count, location, follow.reason)
        if follow.host in addresses:
            return follow
        if self._resolver is None:
            raise _NotFollowed(count, location, f"no resolver to look {follow.host} up")
        families = ("AAAA", "A") if ":" in addresses[hop.host] else ("A", "AAAA")
        lookups = [self._resolver.lookup(follow.host, rdtype) for rdtype in families]
        if watchdog.over:
            raise FetchFailed(str(watchdog.late()))
        found = hop_address(follow.host, lookups, self._policy)
        if isinstance(found, Refused):
            raise _NotFollowed(count, location, found.reason)
        addresses[follow.host] = found
        return follow


class _NotFollowed(Exception):
    def __init__(self, count: int, location: str, reason: str) -> None:
        super().__init__(reason)
        self.count = count
        self.location = location
        self.reason = reason


def _redirects(count: int) -> str:
    return f"{count} redirect{'s' if count > 1 else ''}"


def _send_hop(
    session: requests.Session, hop: Hop, address: str, watchdog: Watchdog
) -> requests.Response:
    """GET ``hop`` from ``address`` (the name in the Host header and, over TLS, in SNI),
    its certificate not verified."""
    host = f"[{address}]" if ":" in address else address
    parts = urlsplit(hop.url)
    url = urlunsplit((hop.scheme, f"{host}:{hop.port}", parts.path, parts.query, ""))
    adapter = session.get_adapter(url)
    if hop.scheme == "https" and isinstance(adapter, HTTPAdapter):
        # this session's own pools: the name goes into the TLS hello (SNI)
        adapter.poolmanager.connection_pool_kw["server_hostname"] = hop.host
    headers = {"Accept-Encoding": "identity", "Host": hop.host_header}
    return _send(session, "GET", url, watchdog, headers=headers, verify=False)
