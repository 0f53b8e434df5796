"""DNS adapter for validation: dnspython lookups of A, AAAA and CAA records.

May touch: the network (DNS) only; the decisions that use these answers live in
``core.validate``. The HTTP side (public IP detection, the self-check) is in ``http_probe``.
dnspython is imported at the first lookup: a quiet cycle looks nothing up (the daemon's idle
memory).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from acme_sidecar.core.validate import Caa, CaaLookup, Lookup
from acme_sidecar.core.values import parse_resolver

if TYPE_CHECKING:
    import dns.resolver


def make_resolver(servers: list[tuple[str, int]], timeout: float) -> dns.resolver.Resolver:
    """A dnspython resolver asking ``servers`` ((host, port); none: the system's), every
    lookup bounded by ``timeout`` seconds in all."""
    import dns.resolver

    if not servers:
        res = dns.resolver.Resolver()
    else:
        res = dns.resolver.Resolver(configure=False)
        res.nameservers = [host for host, _ in servers]
        res.port = servers[0][1]
        res.nameserver_ports = dict(servers)
    res.lifetime = timeout
    res.timeout = timeout / 2
    return res


class DnsResolver:
    """dnspython lookups through ``ACME_DNS_RESOLVERS`` or the system resolver."""

    def __init__(self, servers: tuple[str, ...] = (), timeout: float = 3.0) -> None:
        self._servers = [parse_resolver(s) for s in servers]
        self._timeout = timeout

    def _resolver(self) -> dns.resolver.Resolver:
        # One resolver per call: dnspython's Resolver is cheap and not shared across threads.
        return make_resolver(self._servers, self._timeout)

    def lookup(self, name: str, rdtype: str) -> Lookup:
        """Return the addresses; NXDOMAIN and no-answer are empty, other failures an error."""
        import dns.exception
        import dns.rdatatype
        import dns.resolver

        try:
            answer = self._resolver().resolve(name, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return Lookup()
        except dns.exception.DNSException as exc:
            return Lookup(error=f"{type(exc).__name__}: {exc}")
        want = dns.rdatatype.from_text(rdtype)
        return Lookup(tuple(r.to_text() for r in answer if r.rdtype == want))

    def lookup_caa(self, name: str) -> CaaLookup:
        """The CAA records at ``name``; NXDOMAIN and no-answer are empty."""
        import dns.exception
        import dns.rdatatype
        import dns.resolver

        try:
            answer = self._resolver().resolve(name, "CAA", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
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
