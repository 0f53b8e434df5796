"""Discover: which names the certificates should cover (DESIGN.md §2.2).

Pure: settings and database rows in, name groups out (``candidate_groups``). Every value from
the database is checked as a hostname here (``clean_rows``); a bad one is kept in
``DomainRows.refused`` for the shell to log and never reaches a path or an order. No logging.
"""

from __future__ import annotations

from dataclasses import dataclass

from acme_sidecar.core.model import DomainRows, NameGroup
from acme_sidecar.core.names import normalize_hostname


@dataclass(frozen=True, slots=True)
class NameRules:
    """The settings that decide which names exist."""

    hostname: str
    static_sans: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ("autodiscover", "autoconfig", "mta-sts")
    autodiscover: bool = True
    only_hostname: bool = False


def clean_rows(domains: list[str], mta_sts: list[str], alias_mta_sts: list[str]) -> DomainRows:
    """Normalise raw database values; every value that is not a hostname goes to ``refused``."""
    refused: list[tuple[str, str]] = []

    def clean(values: list[str], table: str) -> list[str]:
        out: list[str] = []
        for raw in values:
            name = normalize_hostname(str(raw))
            if name is None:
                refused.append((table, str(raw)[:80]))
            elif name not in out:
                out.append(name)
        return out

    return DomainRows(
        domains=tuple(clean(domains, "domain")),
        mta_sts_domains=frozenset(clean(mta_sts, "mta_sts")),
        alias_mta_sts=tuple(clean(alias_mta_sts, "alias_domain")),
        refused=tuple(refused),
    )


def omitted_names(rules: NameRules, rows: DomainRows) -> tuple[str, ...]:
    """The ``mta-sts.`` names not covered because the domain has no active MTA-STS."""
    if rules.only_hostname or not rules.autodiscover or "mta-sts" not in rules.prefixes:
        return ()
    return tuple(f"mta-sts.{d}" for d in rows.domains if d not in rows.mta_sts_domains)


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
                continue  # see omitted_names
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
