"""Where a DNS-01 record lives and whether every authoritative server has it.

``cname_chain`` reads the ``_acme-challenge`` CNAME chain (acme-dns style delegation; whether
its end may be written is ``core.dns01.delegation``'s to say); ``zone_for`` finds a name's zone
by SOA. ``Propagation`` asks every authoritative server of
that zone directly (NS, then their addresses, on ``ACME_DNS_AUTH_PORT``) until each answers
every TXT value; a server counts when any of its addresses (IPv4 or IPv6) does.
``DnsZoneLookups`` is the dnspython side; the logic takes any ``ZoneLookups`` (tests pass
fakes). May touch: DNS (the configured resolvers, the zones' servers).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from acme_sidecar.adapters.dns import make_resolver
from acme_sidecar.core.values import parse_resolver

MAX_CNAMES = 8
TIMEOUT_SETTING = "ACME_DNS_PROPAGATION_TIMEOUT"
_NO_ANSWER = (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer)


class LookupFailed(Exception):
    """A lookup needed for DNS-01 failed (the message says which and why)."""


class ZoneLookups(Protocol):
    """What DNS-01 asks DNS (the interface; ``DnsZoneLookups`` is the real one)."""

    def cname(self, name: str) -> str | None:
        """The CNAME target at exactly ``name``, or ``None``."""

    def zone_for(self, name: str) -> str:
        """The zone holding ``name`` (found by SOA); raises ``LookupFailed``."""

    def servers(self, zone: str) -> tuple[tuple[str, str], ...]:
        """``(NS name, address)`` of every authoritative server of ``zone``."""

    def txt(self, address: str, port: int, name: str, timeout: float | None = None) -> set[str]:
        """The TXT values at ``name``, asked of the server at ``address`` (within ``timeout``
        seconds when given); raises ``LookupFailed``."""


def cname_chain(start: str, lookups: ZoneLookups) -> tuple[str, ...]:
    """``start``, then each CNAME target in order (``(start,)``: no CNAME); the TXT record
    would go at the last name."""
    seen = [start]
    name = start
    for _ in range(MAX_CNAMES):
        target = lookups.cname(name)
        if target is None:
            return tuple(seen)
        target = target.rstrip(".").lower()
        if target in seen:
            raise LookupFailed(f"CNAME loop at {name}: {' -> '.join([*seen, target])}")
        seen.append(target)
        name = target
    raise LookupFailed(f"more than {MAX_CNAMES} CNAMEs from {start}")


@dataclass(frozen=True, slots=True)
class Record:
    """Where one challenge's TXT value goes: ``name`` (after CNAMEs) in ``zone``."""

    name: str
    zone: str
    delegated: bool = False  # ``name`` was reached through a CNAME


def missing(
    wanted: dict[str, set[str]], answers: dict[tuple[str, str], set[str] | str]
) -> dict[str, str]:
    """Per record name, which server still lacks which of its values (or why it could not
    be asked); a record every server answers fully is absent."""
    out: dict[str, str] = {}
    for name, values in wanted.items():
        gaps: list[str] = []
        for (record, server), got in answers.items():
            if record != name:
                continue
            if isinstance(got, str):
                gaps.append(f"{server}: {got}")
            elif not values <= got:
                gaps.append(f"{server} lacks {len(values - got)} of {len(values)} values")
        if gaps:
            out[name] = "; ".join(gaps)
    return out


class Propagation:
    """Wait until every authoritative server answers every value, bounded by ``timeout``."""

    def __init__(
        self,
        lookups: ZoneLookups,
        *,
        timeout: float,
        stop: threading.Event,
        port_of: Callable[[str], int],
        first_pause: float = 0.2,
        max_pause: float = 2.0,
    ) -> None:
        self._lookups = lookups
        self._timeout = timeout
        self._stop = stop
        self._port_of = port_of
        self._first = first_pause
        self._max = max_pause

    def wait(self, records: Iterable[tuple[Record, set[str]]]) -> dict[str, str]:
        """Records (by name) not seen everywhere at the deadline, with what is missing."""
        wanted: dict[str, set[str]] = {}
        zones: dict[str, str] = {}
        for record, values in records:
            wanted.setdefault(record.name, set()).update(values)
            zones[record.name] = record.zone
        servers: dict[str, tuple[tuple[str, str], ...]] = {}
        problems: dict[str, str] = {}
        for zone in zones.values():
            if zone not in servers:
                try:
                    servers[zone] = self._lookups.servers(zone)
                except LookupFailed as exc:
                    servers[zone] = ()
                    problems[zone] = str(exc)
        deadline = time.monotonic() + self._timeout
        pause = self._first
        before: dict[tuple[str, str], set[str] | str] = {}  # the last round's answers
        while True:
            answers: dict[tuple[str, str], set[str] | str] = {}
            for name, zone in zones.items():
                if not servers[zone]:
                    why = problems.get(zone, f"no authoritative server of {zone} found")
                    answers[(name, zone)] = why
                port = self._port_of(zone)
                for ns, addresses in _by_server(servers[zone]).items():
                    label = f"{ns} (port {port})"
                    got = self._ask(addresses, port, name, wanted[name], deadline)
                    if got is None:  # the deadline came first: what it answered last time
                        got = before.get((name, label), f"not asked ({TIMEOUT_SETTING} reached)")
                    answers[(name, label)] = got
            before = answers
            left = missing({n: wanted[n] for n in zones}, answers)
            now = time.monotonic()
            if not left or now >= deadline:
                return left
            zones = {n: z for n, z in zones.items() if n in left}
            if self._stop.wait(min(pause, deadline - now)):
                return {n: "stopped while waiting for DNS propagation" for n in left}
            pause = min(pause * 1.5, self._max)

    def _ask(
        self, addresses: list[str], port: int, name: str, values: set[str], deadline: float
    ) -> set[str] | str | None:
        """What a server answers at any of its addresses: the first full answer, else the
        best partial one, else why none answered (an address family this host cannot reach
        does not count against a server another address of which answers). No query starts
        after ``deadline`` and none runs past it; ``None``: none was asked in time."""
        best: set[str] | None = None
        errors: list[str] = []
        for address in addresses:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                got = self._lookups.txt(address, port, name, timeout=left)
            except LookupFailed as exc:
                errors.append(f"{address}: {exc}")
                continue
            if values <= got:
                return got
            if best is None or len(got & values) > len(best & values):
                best = got
        if best is not None:
            return best
        return "; ".join(errors) if errors else None


def _by_server(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """``(NS name, address)`` pairs grouped by NS name, addresses in order."""
    grouped: dict[str, list[str]] = {}
    for ns, address in pairs:
        grouped.setdefault(ns, []).append(address)
    return grouped


class DnsZoneLookups:
    """dnspython: recursive lookups through ``ACME_DNS_RESOLVERS`` (or the system's), TXT
    asked of the authoritative servers directly."""

    def __init__(self, resolvers: tuple[str, ...] = (), timeout: float = 3.0) -> None:
        self._servers = [parse_resolver(s) for s in resolvers]
        self._timeout = timeout

    def _resolver(self) -> dns.resolver.Resolver:
        return make_resolver(self._servers, self._timeout)

    def cname(self, name: str) -> str | None:
        """The CNAME at ``name`` (NXDOMAIN and no answer: none)."""
        try:
            answer = self._resolver().resolve(name, "CNAME", search=False)
        except _NO_ANSWER:
            return None
        except dns.exception.DNSException as exc:
            raise LookupFailed(f"CNAME lookup of {name} failed: {type(exc).__name__}") from exc
        for rdata in answer:
            return str(rdata.target).rstrip(".")
        return None

    def zone_for(self, name: str) -> str:
        """``dns.resolver.zone_for_name`` through the configured resolvers."""
        try:
            zone = dns.resolver.zone_for_name(name, resolver=self._resolver())
        except dns.exception.DNSException as exc:
            raise LookupFailed(
                f"no zone (SOA) found for {name}: {type(exc).__name__}: {exc}"
            ) from exc
        return zone.to_text(omit_final_dot=True).lower()

    def servers(self, zone: str) -> tuple[tuple[str, str], ...]:
        """NS of ``zone``, each with its IPv4 and IPv6 addresses."""
        res = self._resolver()
        try:
            names = sorted(str(r.target).rstrip(".") for r in res.resolve(zone, "NS", search=False))
        except dns.exception.DNSException as exc:
            raise LookupFailed(f"NS lookup of {zone} failed: {type(exc).__name__}") from exc
        found: list[tuple[str, str]] = []
        for ns in names:
            for rdtype in ("A", "AAAA"):
                try:
                    found += [(ns, r.to_text()) for r in res.resolve(ns, rdtype, search=False)]
                except _NO_ANSWER:
                    continue
                except dns.exception.DNSException as exc:
                    raise LookupFailed(
                        f"{rdtype} lookup of {ns} failed: {type(exc).__name__}"
                    ) from exc
        if not found:
            raise LookupFailed(f"the name servers of {zone} ({', '.join(names)}) have no address")
        return tuple(found)

    def txt(self, address: str, port: int, name: str, timeout: float | None = None) -> set[str]:
        """Ask ``address`` for the TXT values at ``name`` (UDP, TCP when truncated), within
        ``timeout`` seconds when given (else the lookup timeout)."""
        query = dns.message.make_query(name, "TXT")
        query.flags &= ~dns.flags.RD
        limit = self._timeout if timeout is None else min(timeout, self._timeout)
        end = time.monotonic() + limit
        try:
            response = dns.query.udp(query, address, timeout=limit, port=port)
            if response.flags & dns.flags.TC:
                rest = max(end - time.monotonic(), 0.001)
                response = dns.query.tcp(query, address, timeout=rest, port=port)
        except (OSError, dns.exception.DNSException) as exc:
            raise LookupFailed(f"no answer ({type(exc).__name__})") from exc
        rcode = response.rcode()
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise LookupFailed(f"answered {dns.rcode.to_text(rcode)}")
        values: set[str] = set()
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                for rdata in rrset:
                    values.add(b"".join(rdata.strings).decode(errors="replace"))
        return values
