"""Redirects of the HTTP self-check: which ones the CA follows, and where the next hop connects.

Let's Encrypt's HTTP-01 validation follows redirects up to 10 deep, only to ``http:`` and
``https:``, only to ports 80 and 443, never to an IP address, and ignores the certificate of an
HTTPS hop. The self-check follows the same ones (``next_hop``), on the ports the CA uses or the
ones configured for the self-check (``HopPorts``), and connects at every hop only where it may
at the first (``hop_address``: ``core.validate.self_check_refusal``). Pure: no I/O, no logging.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

from acme_sidecar.core.names import normalize_hostname
from acme_sidecar.core.validate import IpPolicy, Lookup, self_check_address, self_check_refusal

MAX_REDIRECTS = 10  # Let's Encrypt's limit
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class HopPorts:
    """The ports a redirect may go to, per scheme: the CA's, and the self-check's own
    (``ACME_HTTP_VERIFY_PORT``, ``ACME_HTTPS_VERIFY_PORT``) when they differ."""

    http: frozenset[int] = frozenset({80})
    https: frozenset[int] = frozenset({443})

    @classmethod
    def of(cls, http_port: int = 80, https_port: int = 443) -> HopPorts:
        """The CA's ports and these."""
        return cls(frozenset({80, http_port}), frozenset({443, https_port}))

    def allowed(self, scheme: str) -> frozenset[int]:
        """The ports of ``scheme`` (none for another scheme)."""
        return {"http": self.http, "https": self.https}.get(scheme, frozenset())


@dataclass(frozen=True, slots=True)
class Hop:
    """Where a followed redirect leads: ``url`` as the CA requests it, its scheme, host (a
    lower-case ASCII name) and port."""

    url: str
    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> str:
        """The Host header of this hop: the host, with the port when it is not the default."""
        default = DEFAULT_PORTS[self.scheme] == self.port
        return self.host if default else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Refused:
    """Why the self-check does not follow a redirect, or does not connect to its target."""

    reason: str


def first_hop(name: str, port: int, path: str) -> Hop:
    """The self-check's first request: ``http://name/path`` on ``port`` (the CA's 80)."""
    netloc = name if port == 80 else f"{name}:{port}"
    return Hop(urlunsplit(("http", netloc, path, "", "")), "http", name, port)


def next_hop(current: Hop, location: str, count: int, ports: HopPorts) -> Hop | Refused:
    """The hop that redirect number ``count`` (1 for the first), from ``current`` to
    ``location``, leads to; ``Refused`` when the CA would not follow it."""
    if count > MAX_REDIRECTS:
        return Refused(f"more than {MAX_REDIRECTS} redirects; the CA follows {MAX_REDIRECTS}")
    parts = urlsplit(urljoin(current.url, location.strip()))
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        return Refused(f"the scheme is {scheme or 'missing'}; the CA follows http: and https: only")
    raw = parts.hostname or ""
    if _is_ip(raw):
        return Refused(f"{raw} is an IP address; the CA follows redirects to names only")
    host = normalize_hostname(raw)
    if host is None:
        return Refused(f"{raw or 'the empty host'} is not a host name")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        return Refused("the port is not a number from 1 to 65535")
    allowed = ports.allowed(scheme)
    if port not in allowed:
        shown = " or ".join(str(p) for p in sorted(allowed))
        return Refused(f"port {port}; the CA follows {scheme}: to port {shown} only")
    netloc = host if port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    url = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    return Hop(url, scheme, host, port)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def hop_address(host: str, lookups: Sequence[Lookup], policy: IpPolicy) -> str | Refused:
    """The address a hop to another name, ``host``, connects to: of its ``lookups`` (in the
    order of families the self-check prefers), the one the first hop would pick
    (``core.validate.self_check_address``); ``Refused`` when the lookups failed, found nothing,
    or found only addresses the self-check may not connect to."""
    addresses = [a for found in lookups for a in found.addresses]
    address = self_check_address(addresses, policy)
    if address is not None:
        return address
    if addresses:
        return Refused(f"{host} resolves to {self_check_refusal(addresses[0], policy)}")
    errors = [found.error for found in lookups if found.error]
    if errors:
        return Refused(f"the lookup of {host} failed: {errors[0]}")
    return Refused(f"{host} has no A or AAAA record")
