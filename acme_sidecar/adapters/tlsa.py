"""TLSA lookups for the DANE check: the RRset of ``_<port>._tcp.<host>`` and its AD bit.

One query through ``ACME_DANE_RESOLVER`` (else the system's resolver) with the DO bit set, bounded
by a timeout in all (``adapters.dns.make_resolver``). The answer counts as validated only when
the resolver set the AD bit: the resolver must validate DNSSEC, and be trusted (a local one).
May touch: the network (DNS) only; the verdict is ``core.dane``. dnspython is imported at the
first lookup (the daemon's idle memory).
"""

from __future__ import annotations

from acme_sidecar.adapters.dns import make_resolver
from acme_sidecar.core.dane import Tlsa, TlsaAnswer
from acme_sidecar.core.values import parse_resolver

_EDNS_PAYLOAD = 1232  # the DNS flag day 2020 size: no fragmented UDP


class TlsaResolver:
    """Look up TLSA RRsets through ``servers`` (``ip`` or ``ip:port``; none: the system's)."""

    def __init__(self, servers: tuple[str, ...] = (), timeout: float = 5.0) -> None:
        self._servers = [parse_resolver(s) for s in servers]
        self._timeout = timeout

    def lookup(self, host: str, port: int) -> TlsaAnswer:
        """The TLSA records of ``_<port>._tcp.<host>`` and whether they came validated;
        NXDOMAIN and no answer are no records; any other failure is the error."""
        import dns.exception
        import dns.flags
        import dns.rdatatype
        import dns.resolver

        resolver = make_resolver(self._servers, self._timeout)
        resolver.use_edns(0, dns.flags.DO, _EDNS_PAYLOAD)
        resolver.flags = dns.flags.RD | dns.flags.AD
        try:
            answer = resolver.resolve(f"_{port}._tcp.{host}.", "TLSA", search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return TlsaAnswer()
        except dns.exception.DNSException as exc:
            return TlsaAnswer(error=f"{type(exc).__name__}: {exc}")
        secure = bool(answer.response.flags & dns.flags.AD)
        records = tuple(
            Tlsa(int(r.usage), int(r.selector), int(r.mtype), r.cert.hex())
            for r in answer
            if r.rdtype == dns.rdatatype.TLSA
        )
        ttl = max(
            [answer.rrset.ttl if answer.rrset is not None else 0]
            + [
                int(sig.original_ttl)
                for rrset in answer.response.answer
                if rrset.rdtype == dns.rdatatype.RRSIG and rrset.covers == dns.rdatatype.TLSA
                for sig in rrset
            ]
        )
        return TlsaAnswer(records, secure=secure, ttl=ttl)
