"""Discover: which names the certificates should cover (DESIGN.md §2.2).

``candidate_groups`` is pure: settings and database rows in, name groups out. Every value from the
database is checked as a hostname here; a bad one is logged and never reaches a path or an order.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from acme_sidecar.core.model import DomainRows, NameGroup
from acme_sidecar.core.names import normalize_hostname

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class NameRules:
    """The settings that decide which names exist."""

    hostname: str
    static_sans: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ("autodiscover", "autoconfig", "mta-sts")
    autodiscover: bool = True
    only_hostname: bool = False


def clean_rows(domains: list[str], mta_sts: list[str], alias_mta_sts: list[str]) -> DomainRows:
    """Normalise raw database values; skip (and log) every value that is not a hostname."""

    def clean(values: list[str], table: str) -> list[str]:
        out: list[str] = []
        for raw in values:
            name = normalize_hostname(str(raw))
            if name is None:
                log.warning(
                    "domain.skipped",
                    table=table,
                    value=str(raw)[:80],
                    reason="not a valid host name after IDNA encoding",
                )
            elif name not in out:
                out.append(name)
        return out

    return DomainRows(
        domains=tuple(clean(domains, "domain")),
        mta_sts_domains=frozenset(clean(mta_sts, "mta_sts")),
        alias_mta_sts=tuple(clean(alias_mta_sts, "alias_domain")),
    )


def candidate_groups(rules: NameRules, rows: DomainRows) -> tuple[NameGroup, ...]:
    """The server group (hostname + static names) and one group per mail domain.

    Per-domain names follow mailcow: user prefixes first, then autodiscover and autoconfig, then
    mta-sts only for domains with active MTA-STS; alias domains get only ``mta-sts.<alias>`` and
    only when their target has active MTA-STS. Names equal to the hostname are not repeated.
    """
    statics = () if rules.only_hostname else rules.static_sans
    server = NameGroup(
        key=rules.hostname,
        names=(rules.hostname, *(n for n in statics if n != rules.hostname)),
        server=True,
    )
    if rules.only_hostname:
        return (server,)
    groups = [server]
    seen = set(server.names)
    for domain in rows.domains:
        names: list[str] = []
        for prefix in rules.prefixes:
            if prefix == "mta-sts" and (
                not rules.autodiscover or domain not in rows.mta_sts_domains
            ):
                if rules.autodiscover:
                    log.info("name.omitted", name=f"mta-sts.{domain}", reason="MTA-STS not active")
                continue
            name = normalize_hostname(f"{prefix}.{domain}")
            if name is None or name in seen:
                continue
            seen.add(name)
            names.append(name)
        if names:
            groups.append(NameGroup(key=domain, names=tuple(names)))
    if rules.autodiscover:
        for alias in rows.alias_mta_sts:
            name = normalize_hostname(f"mta-sts.{alias}")
            if name is None or name in seen:
                continue
            seen.add(name)
            groups.append(NameGroup(key=alias, names=(name,)))
    return tuple(groups)
