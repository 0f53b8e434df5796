"""DNS and HTTP adapters for validation: dnspython lookups, public IP detection, the self-check.

Everything here touches the network; the decisions that use these answers live in ``validate``.
"""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path
from types import TracebackType

import dns.exception
import dns.rdatatype
import dns.resolver
import requests
import structlog

from acme_sidecar.config.settings import parse_resolver
from acme_sidecar.core.validate import Caa, CaaLookup, Lookup

log = structlog.get_logger(__name__)

_NO_ANSWER = (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer)


class DnsResolver:
    """dnspython lookups through ``ACME_DNS_RESOLVERS`` or the system resolver."""

    def __init__(self, servers: tuple[str, ...] = (), timeout: float = 3.0) -> None:
        self._servers = [parse_resolver(s) for s in servers]
        self._timeout = timeout

    def _resolver(self) -> dns.resolver.Resolver:
        # One resolver per call: dnspython's Resolver is cheap and not shared across threads.
        if not self._servers:
            res = dns.resolver.Resolver()
        else:
            res = dns.resolver.Resolver(configure=False)
            res.nameservers = [host for host, _ in self._servers]
            res.port = self._servers[0][1]
            res.nameserver_ports = {host: port for host, port in self._servers}
        res.lifetime = self._timeout
        res.timeout = self._timeout / 2
        return res

    def lookup(self, name: str, rdtype: str) -> Lookup:
        """Return the addresses; NXDOMAIN and no-answer are empty, other failures an error."""
        try:
            answer = self._resolver().resolve(name, rdtype, search=False)
        except _NO_ANSWER:
            return Lookup()
        except dns.exception.DNSException as exc:
            return Lookup(error=f"{type(exc).__name__}: {exc}")
        want = dns.rdatatype.from_text(rdtype)
        return Lookup(tuple(r.to_text() for r in answer if r.rdtype == want))

    def lookup_caa(self, name: str) -> CaaLookup:
        """The CAA records at ``name``; NXDOMAIN and no-answer are empty."""
        try:
            answer = self._resolver().resolve(name, "CAA", search=False)
        except _NO_ANSWER:
            return CaaLookup()
        except dns.exception.DNSException as exc:
            return CaaLookup(error=f"{type(exc).__name__}: {exc}")
        records = tuple(
            Caa(
                int(r.flags),
                r.tag.decode(errors="replace").lower(),
                r.value.decode(errors="replace"),
            )
            for r in answer
            if r.rdtype == dns.rdatatype.CAA
        )
        return CaaLookup(records)


def detect_public_ip(url: str, version: int, timeout: float = 5.0) -> str | None:
    """Ask ``url`` for this server's public address; return it only when it parses as IPv4/6."""
    try:
        response = requests.get(url, timeout=timeout)
        text = response.text.strip()
        addr = ipaddress.ip_address(text)
    except (requests.RequestException, ValueError) as exc:
        log.warning("ip.detect_failed", url=url, version=version, error=str(exc)[:200])
        return None
    if addr.version != version:
        log.warning("ip.detect_failed", url=url, version=version, error=f"got {text[:60]!r}")
        return None
    return str(addr)


class WebrootSelfCheck:
    """Writes one random token into the webroot and fetches it back through each name.

    The request goes to the validated address itself (not a fresh lookup), on
    ``ACME_HTTP_VERIFY_PORT``, with the name in the Host header: what the CA will do.
    Use as a context manager so the token file is always removed.
    """

    def __init__(self, webroot: Path, port: int, timeout: float = 5.0) -> None:
        self._webroot = webroot
        self._port = port
        self._timeout = timeout
        self._token = secrets.token_urlsafe(24)
        self._session = requests.Session()

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
        self._session.close()

    def check(self, name: str, address: str) -> str | None:
        """Return ``None`` when ``http://name/.well-known/acme-challenge/TOKEN`` answered right."""
        host = f"[{address}]" if ":" in address else address
        url = f"http://{host}:{self._port}/.well-known/acme-challenge/{self._token}"
        try:
            response = self._session.get(
                url, headers={"Host": name}, timeout=self._timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            return f"http://{name}:{self._port} via {address} not reachable ({type(exc).__name__})"
        if response.status_code != 200 or response.text.strip() != self._token:
            return (
                f"http://{name}:{self._port}/.well-known/acme-challenge/ via {address} answered "
                f"{response.status_code} without the token (is the webroot served there?)"
            )
        return None
