"""Validate: may a name be ordered? (DESIGN.md §2.3) Pure: answers in, a verdict out.

``verdict(name, answers, policy)`` decides from the DNS answers and self-check results known so
far; when it needs one more it returns that ``Need`` instead (the next CAA node, AAAA before A,
the self-check of the address it picked). The shell (``shell.lookups``) fetches each need
from the ``Resolver`` and ``HttpCheck`` ports (``core.ports``) and asks again, so the lookups
are the same ones, in the same order, as a decision that did them itself, and every rule is
testable from answers alone. A missing record is a verdict, not an exception. The self-check
connects only to public addresses and this server's own, and to LAN addresses under
SKIP_IP_CHECK (``self_check_refusal``); which redirects it follows is ``core.redirects``.
No I/O, no logging.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from acme_sidecar.core.dns01 import Routes, challenge_name
from acme_sidecar.core.model import Verdict


@dataclass(frozen=True, slots=True)
class Lookup:
    """The addresses of one name and type; ``error`` is set when the lookup itself failed."""

    addresses: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Caa:
    """One CAA record (RFC 8659)."""

    flags: int
    tag: str
    value: str


@dataclass(frozen=True, slots=True)
class CaaLookup:
    """The CAA records at one node; ``error`` is set when the lookup itself failed."""

    records: tuple[Caa, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Need:
    """One answer a verdict waits for: a DNS lookup (``kind`` ``A``, ``AAAA``, ``CNAME`` or
    ``CAA`` of ``target``) or the self-check of ``name`` through ``target`` (``kind`` ``HTTP``)."""

    kind: str
    target: str
    name: str = ""


SelfCheck: TypeAlias = str | None  # None: the token came back; else the reason it did not
Answer: TypeAlias = Lookup | CaaLookup | SelfCheck
Answers: TypeAlias = Mapping[Need, Answer]


class _Unknown(Exception):
    def __init__(self, need: Need) -> None:
        self.need = need


def _asker(answers: Answers) -> Callable[[Need], Answer]:
    def ask(need: Need) -> Answer:
        if need not in answers:
            raise _Unknown(need)
        return answers[need]

    return ask


def _dns(ask: Callable[[Need], Answer], rdtype: str, name: str) -> Lookup:
    answer = ask(Need(rdtype, name))
    return answer if isinstance(answer, Lookup) else Lookup(error="no answer")


@dataclass(frozen=True, slots=True)
class IpPolicy:
    """What the DNS answers are compared with.

    ``own_addresses`` lists this server's further addresses (SNAT_TO_SOURCE, SNAT6_TO_SOURCE, and
    PUBLIC_IPV4/6 when the comparison is skipped): with ``ipv4`` and ``ipv6`` they are the only
    non-public addresses the self-check may connect to, but for LAN addresses under
    ``skip_ip_check`` (see ``self_check_refusal``).
    """

    ipv4: str | None
    ipv6: str | None
    skip_ip_check: bool = False
    snat4: bool = False
    snat6: bool = False
    skip_http: bool = False
    ca_identities: tuple[str, ...] = ()
    own_addresses: tuple[str, ...] = ()
    dns01: Routes | None = None  # ACME_DNS_CHALLENGE=y: no IP or HTTP check, CAA still applies


WILDCARD_NEEDS_DNS01 = (
    "a wildcard name can only be validated over DNS-01: set ACME_DNS_CHALLENGE=y with a DNS "
    "provider (ACME_DNS_PROVIDER, ACME_DNS_CONFIG_FILE), or list the names instead"
)

MAX_CNAMES = 8  # the CNAME chain from _acme-challenge.<name> is followed this far

KNOWN_CAA_TAGS = {"issue", "issuewild", "iodef", "contactemail", "contactphone", "issuemail"}


def _caa(name: str, ask: Callable[[Need], Answer], identities: tuple[str, ...]) -> str | None:
    """RFC 8659: find the relevant CAA set by climbing from ``name`` towards the root; return
    ``None`` when the CA (one of ``identities``) may issue, else the reason it may not."""
    if not identities:
        return None  # the CA's identity is unknown: the CA checks CAA itself; save the lookups
    wildcard = name.startswith("*.")
    labels = name.removeprefix("*.").split(".")
    for i in range(len(labels) - 1):
        node = ".".join(labels[i:])
        answer = ask(Need("CAA", node))
        found = answer if isinstance(answer, CaaLookup) else CaaLookup(error="no answer")
        if found.error:
            return f"CAA lookup for {node} failed: {found.error}"
        if not found.records:
            continue
        shown = "; ".join(f'{r.flags} {r.tag} "{r.value}"' for r in found.records)
        critical = [r for r in found.records if r.flags & 128 and r.tag not in KNOWN_CAA_TAGS]
        if critical:
            return f"CAA at {node} has a critical tag this CA cannot honour: {shown}"
        issue = [r for r in found.records if r.tag == "issue"]
        wild = [r for r in found.records if r.tag == "issuewild"]
        relevant = wild if wildcard and wild else issue
        if not relevant:
            return None  # only iodef & co: any CA may issue
        allowed = {r.value.split(";", 1)[0].strip().lower() for r in relevant}
        if allowed & set(identities):
            return None
        return f"CAA at {node} does not allow {', '.join(identities)}: {shown}"
    return None


def _same(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


def _non_public_kind(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """What kind of non-public address ``addr`` is, or None when it is globally reachable."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # ::ffff:10.0.0.1 reaches 10.0.0.1
    for kind in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
        if getattr(addr, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if addr.is_global else "non-public"  # e.g. 100.64.0.0/10 (carrier NAT)


LAN_KINDS = ("private", "non-public")  # RFC 1918, ULA, carrier NAT: split-horizon answers


def self_check_refusal(address: str, policy: IpPolicy) -> str | None:
    """Whether the self-check may connect to ``address``: a public address, one of this
    server's own (``policy.ipv4``, ``ipv6``, ``own``), or under ``skip_ip_check`` a LAN address
    (private or carrier NAT: a split-horizon answer, which acme-mailcow's check follows too).
    Returns None when it may, else the reason it may not (DNS of a tenant's name must not point
    the self-check at this host's loopback or link-local services, e.g. a cloud's metadata)."""
    try:
        addr = ipaddress.ip_address(address)
    except ValueError:
        return f"{address!r}, which is not an IP address; the self-check does not connect there"
    kind = _non_public_kind(addr)
    if kind is None or (policy.skip_ip_check and kind in LAN_KINDS):
        return None
    own = (policy.ipv4, policy.ipv6, *policy.own_addresses)
    if any(mine and _same(address, mine) for mine in own):
        return None
    return (
        f"{address}, a {kind} address that is not this server's; "
        "the self-check does not connect there"
    )


def self_check_address(addresses: Sequence[str], policy: IpPolicy) -> str | None:
    """The address of ``addresses`` the self-check goes to: the first public one, else the
    first other one it may connect to (``self_check_refusal``); None when there is none."""
    allowed = [a for a in addresses if self_check_refusal(a, policy) is None]
    public = [a for a in allowed if _non_public_kind(ipaddress.ip_address(a)) is None]
    chosen = public or allowed
    return chosen[0] if chosen else None


def _family(
    name: str,
    rdtype: str,
    answer: Lookup,
    policy: IpPolicy,
    bypass: bool,
    ask: Callable[[Need], Answer],
) -> tuple[bool, str]:
    """Check one address family; return (ok, reason)."""
    shown = ", ".join(answer.addresses)
    if bypass:
        address = self_check_address(answer.addresses, policy) or answer.addresses[0]
        why = f"{rdtype} {shown} (IP comparison skipped)"
    else:
        expected = policy.ipv4 if rdtype == "A" else policy.ipv6
        match = next((a for a in answer.addresses if expected and _same(a, expected)), None)
        if match is None:
            return False, f"DNS {rdtype} returned {shown}, expected {expected or 'an address'}"
        address = match
        why = f"{rdtype} {address} matches this server"
    if not policy.skip_http:
        refusal = self_check_refusal(address, policy)
        if refusal is not None:
            return False, f"{why}, but {name} resolves to {refusal}"
        failure = ask(Need("HTTP", address, name))
        if failure is not None:
            return False, f"{why}, but the HTTP self-check failed: {failure}"
        why += "; HTTP self-check passed"
    return True, why


def verdict(name: str, answers: Answers, policy: IpPolicy) -> Verdict | Need:
    """The verdict on ``name`` from ``answers``, or the one answer it still needs."""
    try:
        return _verdict(name, _asker(answers), policy)
    except _Unknown as unknown:
        return unknown.need


def caa_verdict(name: str, answers: Answers, identities: tuple[str, ...]) -> str | Need | None:
    """The CAA part alone: ``None`` (the CA may issue), the reason it may not, or a ``Need``."""
    try:
        return _caa(name, _asker(answers), identities)
    except _Unknown as unknown:
        return unknown.need


def _verdict(name: str, ask: Callable[[Need], Answer], policy: IpPolicy) -> Verdict:
    """AAAA first; when it is missing or does not match (or its self-check fails), try A."""
    if policy.dns01 is None and name.startswith("*."):
        return Verdict(name, False, WILDCARD_NEEDS_DNS01)
    caa = _caa(name, ask, policy.ca_identities)
    if caa is not None:
        return Verdict(name, False, caa)
    if policy.dns01 is not None:
        return _dns01_verdict(name, ask, policy.dns01)
    reasons: list[str] = []
    aaaa = _dns(ask, "AAAA", name)
    if aaaa.error:
        reasons.append(f"AAAA lookup failed: {aaaa.error}")
    elif aaaa.addresses:
        ok, why = _family(name, "AAAA", aaaa, policy, policy.skip_ip_check or policy.snat6, ask)
        if ok:
            return Verdict(name, True, why)
        reasons.append(why)
    a = _dns(ask, "A", name)
    if a.error:
        reasons.append(f"A lookup failed: {a.error}")
    elif a.addresses:
        ok, why = _family(name, "A", a, policy, policy.skip_ip_check or policy.snat4, ask)
        if ok:
            return Verdict(name, True, why)
        reasons.append(why)
    if not aaaa.addresses and not a.addresses and not (aaaa.error or a.error):
        reasons.append("no A or AAAA record")
    return Verdict(name, False, "; ".join(reasons))


def _dns01_verdict(name: str, ask: Callable[[Need], Answer], routes: Routes) -> Verdict:
    """DNS-01: the name is answered when a configured provider may write its challenge record:
    at ``_acme-challenge.<name>`` in its own zone, or at the end of the CNAME chain from there
    when ``Routes.delegation`` allows that target (a ``[zone …]`` section or an alias zone)."""
    chain = [challenge_name(name)]
    for _ in range(MAX_CNAMES):
        hop = _dns(ask, "CNAME", chain[-1])
        if hop.error:
            return Verdict(name, False, f"DNS-01: CNAME lookup of {chain[-1]} failed: {hop.error}")
        if not hop.addresses:
            break
        target = hop.addresses[0].rstrip(".").lower()
        if target in chain:
            return Verdict(name, False, f"DNS-01: CNAME loop: {' -> '.join([*chain, target])}")
        chain.append(target)
    else:
        return Verdict(name, False, f"DNS-01: more than {MAX_CNAMES} CNAMEs from {chain[0]}")
    rule = routes.delegation(chain)
    if not rule.allowed:
        return Verdict(name, False, f"DNS-01: {rule.reason}")
    delegated = len(chain) > 1
    refusal = routes.refusal(rule.target if delegated else name)
    if refusal is not None:
        return Verdict(name, False, f"DNS-01 cannot answer for it: {refusal}")
    via = f" through the CNAME to {rule.target}" if delegated else ""
    return Verdict(name, True, f"DNS-01{via}; IP and HTTP checks do not apply; CAA allows")
