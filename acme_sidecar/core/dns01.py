"""DNS-01 rules that need no I/O: wildcard coverage, the challenge record's name, and which
configured zone (a section of ``ACME_DNS_CONFIG_FILE``) answers for a name.

Coverage is decided label by label (RFC 6125 §6.4.3 as the CA applies it): ``*.example.org``
covers ``mail.example.org`` but neither ``example.org`` nor ``a.mail.example.org``, and never
``mail.badexample.org``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CHALLENGE_LABEL = "_acme-challenge"


def covers(wildcard: str, name: str) -> bool:
    """Whether ``wildcard`` (``*.example.org``) covers ``name``: exactly one label in place
    of the ``*``, the rest equal label by label."""
    if not wildcard.startswith("*.") or name.startswith("*."):
        return False
    base = wildcard[2:].split(".")
    labels = name.split(".")
    return len(labels) == len(base) + 1 and labels[1:] == base


def drop_covered(names: Sequence[str]) -> tuple[tuple[str, ...], dict[str, str]]:
    """``names`` without those a wildcard among them covers (the CA refuses an order that
    lists both), and for each dropped name the wildcard that covers it."""
    wildcards = [n for n in names if n.startswith("*.")]
    dropped: dict[str, str] = {}
    kept: list[str] = []
    for name in names:
        by = next((w for w in wildcards if covers(w, name)), None)
        if by is None:
            kept.append(name)
        else:
            dropped[name] = by
    return tuple(kept), dropped


def holds(names: Iterable[str], name: str) -> bool:
    """Whether a certificate of ``names`` is valid for ``name`` (listed, or by a wildcard)."""
    listed = tuple(names)
    return name in listed or any(covers(w, name) for w in listed)


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
