"""What the authoritative DNS servers of the DNS-01 world share: addresses, port, queries.

The world's real DNS servers (``bind.Bind``, ``powerdns.PowerDNS``) listen on the SAME port, BIND
on 127.0.0.1 and PowerDNS on 127.0.0.2 (all of 127/8 is loopback on Linux). Every test zone has
one NS, ``ns.<zone>``, whose A record is its server's address; so "query every authoritative
server of the zone" works on loopback once the checker sends its queries to those addresses at
the world's port (``Bind.port == PowerDNS.port``) instead of 53. This module touches nothing
but loopback sockets.
"""

from __future__ import annotations

import socket

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype

from .proc import free_port

BIND_HOST = "127.0.0.1"
PDNS_HOST = "127.0.0.2"
WEB_HOST = "127.0.0.1"  # the A record of every test zone's apex and ``*`` (nginx's address)
TTL = 1  # every record of the world: a cache never hides a change for long
# the session's zones (see launcher): hosted on BIND, and on PowerDNS (BIND forwards these)
BIND_ZONES = ("bind-zone.test", "example.test", "bind-other.test")
PDNS_ZONES = ("pdns-zone.test", "pdns-other.test")
# hosted on BIND (TSIG updates) and listed with a second NS on PowerDNS, whose copy of the zone
# never changes: a record added through BIND never reaches every authoritative server
STALE_ZONE = "stale-ns.test"
STALE_NAMESERVERS = {"ns": BIND_HOST, "ns2": PDNS_HOST}


def fqdn(name: str) -> str:
    """``name`` with its trailing dot."""
    return name if name.endswith(".") else name + "."


def _free_on(host: str, port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def shared_port(hosts: tuple[str, ...] = (BIND_HOST, PDNS_HOST)) -> int:
    """A port free for TCP and UDP on every one of ``hosts`` (never handed out twice)."""
    for _ in range(100):
        port = free_port(udp_too=True)
        if all(_free_on(host, port) for host in hosts):
            return port
    raise RuntimeError(f"test world: no port free on all of {', '.join(hosts)}")


def query(
    server: tuple[str, int],
    name: str,
    rdtype: str,
    *,
    tcp: bool = False,
    recurse: bool = False,
    timeout: float = 2.0,
) -> dns.message.Message:
    """One direct query of ``name``/``rdtype`` to ``server`` (no cache, no retries)."""
    message = dns.message.make_query(fqdn(name), rdtype)
    if not recurse:
        message.flags &= ~dns.flags.RD
    host, port = server
    if tcp:
        return dns.query.tcp(message, host, port=port, timeout=timeout)
    return dns.query.udp(message, host, port=port, timeout=timeout)


def answer_texts(response: dns.message.Message, rdtype: str) -> list[str]:
    """The answer section's ``rdtype`` records as presentation text, sorted."""
    wanted = dns.rdatatype.from_text(rdtype)
    return sorted(
        rd.to_text() for rrset in response.answer if rrset.rdtype == wanted for rd in rrset
    )


def txt_values(server: tuple[str, int], name: str, *, recurse: bool = False) -> list[str]:
    """The TXT strings of ``name`` as ``server`` answers them now (each record's strings joined),
    sorted; ``[]`` when it has none (NXDOMAIN or no TXT)."""
    response = query(server, name, "TXT", recurse=recurse)
    rcode = response.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise RuntimeError(f"{server} answered {dns.rcode.to_text(rcode)} for {name} TXT")
    return sorted(
        b"".join(rd.strings).decode()
        for rrset in response.answer
        if rrset.rdtype == dns.rdatatype.TXT
        for rd in rrset
    )


def ns_names(server: tuple[str, int], zone: str) -> list[str]:
    """The NS names (with trailing dot) ``server`` gives for ``zone``, sorted."""
    return answer_texts(query(server, zone, "NS"), "NS")


def answers_soa(server: tuple[str, int], zone: str) -> bool:
    """True when ``server`` answers the SOA of ``zone`` authoritatively (a readiness probe)."""
    try:
        response = query(server, zone, "SOA", timeout=0.25)
    except (OSError, dns.exception.DNSException):
        return False
    return response.rcode() == dns.rcode.NOERROR and bool(response.flags & dns.flags.AA)
