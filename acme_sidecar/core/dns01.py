"""DNS-01 rules that need no I/O: the challenge record's name, and which configured zone (a
section of ``ACME_DNS_CONFIG_FILE``) answers for a name. (Wildcard coverage: ``core.names``.)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

CHALLENGE_LABEL = "_acme-challenge"


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
class Routes:
    """Which names DNS-01 can answer: per-zone sections and the default provider.

    ``zones`` maps a configured zone to ``None`` (usable) or why its section is unusable;
    ``default`` is ``None`` when the default provider (``ACME_DNS_PROVIDER`` with the file's
    top lines) is usable, else why it is not.
    """

    zones: tuple[tuple[str, str | None], ...] = ()
    default: str | None = "no DNS-01 provider is configured"

    def refusal(self, name: str) -> str | None:
        """Why DNS-01 cannot answer for ``name`` with this configuration, or ``None``."""
        table = dict(self.zones)
        zone = closest_zone(name, table)
        if zone is not None:
            problem = table[zone]
            return None if problem is None else f"[zone {zone}] of the DNS-01 file: {problem}"
        return self.default
