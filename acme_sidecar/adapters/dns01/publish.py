"""Records other than DNS-01's, through the same hosts: the TLSA records of ACME_DANE=publish.

``RecordPublisher`` writes each owner's records with the host that writes that name
(``Dns01Router.target``: the ``[zone …]`` section whose zone holds it, else the default
provider of ``ACME_DNS_PROVIDER``), in the zone the section fixes (``NSUPDATE_ZONE``) or the
one DNS names by SOA; one update per host and zone. No CNAME is followed: the record goes
at the owner itself. Whether the record reached the validating resolver is not this module's
to wait for (``core.rollover`` reads it back). Every failure comes back as one line naming the
provider, the zone and the cause, never raised and never a credential. May touch: the DNS
providers and DNS (the SOA lookups).
"""

from __future__ import annotations

from collections.abc import Mapping

from acme_sidecar.adapters.dns01.base import DnsProvider, DnsUpdateError
from acme_sidecar.adapters.dns01.responder import Dns01Router
from acme_sidecar.adapters.dns01.zones import LookupFailed, ZoneLookups

Records = Mapping[str, tuple[str, ...]]  # owner name -> values in presentation form


class RecordPublisher:
    """Adds and removes records of one type (``TLSA``) through the configured DNS hosts."""

    def __init__(self, router: Dns01Router, lookups: ZoneLookups, rtype: str = "TLSA") -> None:
        self._router = router
        self._lookups = lookups
        self._rtype = rtype

    def add(self, records: Records, ttl: int) -> str | None:
        """Add every value at its owner with ``ttl``; None when every host took it, else one
        line saying which did not and why."""
        return self._each(records, ttl)

    def remove(self, records: Records) -> str | None:
        """Remove exactly these values; None when every host took it, else why not."""
        return self._each(records, None)

    def _each(self, records: Records, ttl: int | None) -> str | None:
        groups: dict[tuple[int, str], tuple[DnsProvider, str, dict[str, tuple[str, ...]]]] = {}
        problems: list[str] = []
        for owner, values in records.items():
            section, target = self._router.target(owner)
            if target.provider is None:
                where = f"[zone {section}]" if section else "the default provider"
                problems.append(f"no usable DNS provider for {owner}: {where}: {target.problem}")
                continue
            try:
                zone = target.zone or self._lookups.zone_for(owner)
            except LookupFailed as exc:
                problems.append(f"the zone of {owner} is not known: {exc}")
                continue
            group = groups.setdefault((id(target.provider), zone), (target.provider, zone, {}))
            group[2][owner] = (*group[2].get(owner, ()), *values)
        for provider, zone, batch in groups.values():
            try:
                if ttl is None:
                    provider.remove_records(zone, self._rtype, batch)
                else:
                    provider.add_records(zone, self._rtype, batch, max(1, ttl))
            except DnsUpdateError as exc:
                problems.append(f"{provider.label} in zone {zone}: {exc}")
        return "; ".join(problems) or None
