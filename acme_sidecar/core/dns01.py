"""DNS-01 rules that need no I/O: the challenge record's name, which configured zone (a section
of ``ACME_DNS_CONFIG_FILE``) answers for a name, and whether a CNAME at
``_acme-challenge.<name>`` may be followed (``delegation``). (Wildcard coverage: ``core.names``.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

CHALLENGE_LABEL = "_acme-challenge"
ALIAS_SETTING = "ACME_DNS_ALIAS_ZONES"


def challenge_name(name: str) -> str:
    """The TXT record the CA looks up for ``name`` (a wildcard's base name; RFC 8555 §8.4)."""
    return f"{CHALLENGE_LABEL}.{name.removeprefix('*.')}"


def in_zone(name: str, zone: str) -> bool:
    """Whether ``name`` is ``zone`` or below it (label by label)."""
    name, zone = name.rstrip(".").lower(), zone.rstrip(".").lower()
    return name == zone or name.endswith("." + zone)


def closest_zone(name: str, zones: Iterable[str]) -> str | None:
    """The most specific of ``zones`` that ``name`` is in, or ``None``."""
    found = [z for z in zones if in_zone(name.removeprefix("*."), z)]
    return max(found, key=lambda z: z.count("."), default=None)


@dataclass(frozen=True, slots=True)
class Delegation:
    """Whether the TXT record may be written at ``target``, the end of the CNAME chain from
    ``_acme-challenge.<name>`` (``target`` is the challenge name itself when there is no
    CNAME), and why (a refusal says what would allow it)."""

    allowed: bool
    target: str
    reason: str


def delegation(chain: Sequence[str], sections: Iterable[str], aliases: Iterable[str]) -> Delegation:
    """The CNAME rule: ``chain`` is the challenge name, then each CNAME target in order. The
    record is written only where the chain ends, and only when that name is in a zone with a
    ``[zone …]`` section (``sections``) or in a zone ``ACME_DNS_ALIAS_ZONES`` lists
    (``aliases``).

    The DNS of a name belongs to whoever owns the name (a tenant, in a shared mailcow), and the
    default provider's credentials can often write far more zones than the names' own. So a
    CNAME into a zone the default provider writes is refused unless the admin listed it, and
    so is one that stays inside the name's own zone: "the same zone" would be decided by DNS
    the tenant controls, and in a zone several tenants share (a hoster's zone where each
    customer edits one label) it would aim the admin's credentials at another tenant's names
    or the zone's DKIM selectors. The intermediate names of a longer chain are only read,
    never written: only the end counts.
    """
    start, target = chain[0], chain[-1]
    if len(chain) < 2:
        return Delegation(True, target, "no CNAME")
    section = closest_zone(target, sections)
    if section is not None:
        return Delegation(True, target, f"{target} is in [zone {section}] of the DNS-01 file")
    listed = closest_zone(target, aliases)
    if listed is not None:
        return Delegation(True, target, f"{target} is in {listed} of {ALIAS_SETTING}")
    return Delegation(
        False,
        target,
        f"{start} is a CNAME to {target}, which is in no zone with a [zone …] section of the "
        f"DNS-01 file nor in a zone of {ALIAS_SETTING}; no TXT record is written there. If "
        f"this CNAME is meant (acme-dns style delegation), add a [zone …] section for its "
        f"zone or list the zone in {ALIAS_SETTING}; otherwise remove the CNAME",
    )


@dataclass(frozen=True, slots=True)
class Routes:
    """Which names DNS-01 can answer: per-zone sections and the default provider.

    ``zones`` maps a configured zone to ``None`` (usable) or why its section is unusable;
    ``default`` is ``None`` when the default provider (``ACME_DNS_PROVIDER`` with the file's
    top lines) is usable, else why it is not; ``aliases`` are the zones of
    ``ACME_DNS_ALIAS_ZONES`` (a CNAME may lead there, see ``delegation``); ``credentials``: a
    SHA-256 of the credential values the hosts were built with (never the values), part of the
    back-off's settings fingerprint.
    """

    zones: tuple[tuple[str, str | None], ...] = ()
    default: str | None = "no DNS-01 provider is configured"
    aliases: tuple[str, ...] = ()
    credentials: str = field(default="", repr=False)

    def delegation(self, chain: Sequence[str]) -> Delegation:
        """``delegation`` with this configuration's sections and alias zones."""
        return delegation(chain, (zone for zone, _ in self.zones), self.aliases)

    def refusal(self, name: str) -> str | None:
        """Why DNS-01 cannot answer for ``name`` with this configuration, or ``None``."""
        table = dict(self.zones)
        zone = closest_zone(name, table)
        if zone is not None:
            problem = table[zone]
            return None if problem is None else f"[zone {zone}] of the DNS-01 file: {problem}"
        return self.default
