"""Test only: compose service names resolve through the test world's DNS server.

Inside a container, Docker's embedded DNS answers the names of the services on the network
(mailcow's ``dockerapi`` and ``dockerapi.<project>_mailcow-network``) only while they run; the
sidecar asks for them with ``socket.getaddrinfo`` (its own lookups and ``requests``'). A test
sidecar runs on the host, so with this directory on ``PYTHONPATH`` Python loads this module at
start and the names in ``TEST_CONTAINER_NAMES`` (comma list) are asked of the real DNS server at
``TEST_CONTAINER_DNS`` (``host:port``), as the embedded DNS would be: NXDOMAIN or SERVFAIL there
is a name that does not resolve. Every other name goes to the system's resolver unchanged.
"""

from __future__ import annotations

import os
import socket
from typing import Any

_SERVER = os.environ.get("TEST_CONTAINER_DNS", "")
_NAMES = {
    n.strip().lower().rstrip(".")
    for n in os.environ.get("TEST_CONTAINER_NAMES", "").split(",")
    if n.strip()
}
_system = socket.getaddrinfo


def _addresses(name: str) -> list[str]:
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdatatype

    host, _, port = _SERVER.rpartition(":")
    query = dns.message.make_query(name.rstrip(".") + ".", "A")
    try:
        answer = dns.query.udp(query, host, port=int(port), timeout=2)
    except (OSError, dns.exception.DNSException) as exc:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution") from exc
    if answer.rcode() == dns.rcode.NXDOMAIN:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    if answer.rcode() != dns.rcode.NOERROR:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    found = [r.address for s in answer.answer if s.rdtype == dns.rdatatype.A for r in s]
    if not found:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return found


def getaddrinfo(
    host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
) -> Any:
    """``socket.getaddrinfo``, with the container names answered by the test's DNS server."""
    name = host.decode() if isinstance(host, bytes) else host
    if not isinstance(name, str) or name.lower().rstrip(".") not in _NAMES:
        return _system(host, port, family, type, proto, flags)
    flags |= socket.AI_NUMERICHOST
    return [r for a in _addresses(name) for r in _system(a, port, family, type, proto, flags)]


if _SERVER and _NAMES:
    socket.getaddrinfo = getaddrinfo
