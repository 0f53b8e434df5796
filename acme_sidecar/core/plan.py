"""Plan: which certificates should exist and what to do with each (DESIGN.md §2.4).

A pure function of the settings that shape certificates, the name groups, the verdicts, the
stored certificates, the CA's renewal windows (``core.ari``) and the clock. No I/O, no logging:
the cycle logs the plan it gets. A renewal the CA's window asked for names the certificate it
replaces (``CertPlan.replaces``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from acme_sidecar.core.ari import AriRecord, renew_time
from acme_sidecar.core.budget import Hold, HoldRules, clearance, urgent_at
from acme_sidecar.core.coalesce import DEFAULT, Coalesce, renewal_groups
from acme_sidecar.core.model import (
    Action,
    CertPlan,
    CertSpec,
    NameGroup,
    Plan,
    RenewalGroup,
    StoredCert,
    Verdict,
)
from acme_sidecar.core.names import drop_covered, holds
from acme_sidecar.core.profiles import profile_change


@dataclass(frozen=True, slots=True)
class Shape:
    """The settings that decide how names are grouped into certificates and what they are
    ordered as (a stored certificate of another profile, key type or CA is ordered again)."""

    sni: bool = False
    max_names: int = 100  # already lowered to the profile's limit (core.profiles.max_names)
    profile: str = ""  # ACME_PROFILE; "" = the CA's default
    key_type: str = ""  # the certificate key's type (rsa2048 ... ec384); "" = not checked
    directory: str = ""  # the ACME directory URL ordered from (DIRECTORY_URL, LE_STAGING)


def _chunks(first: str | None, rest: Sequence[str], size: int) -> list[tuple[str, ...]]:
    names = ([first] if first else []) + list(rest)
    return [tuple(names[i : i + size]) for i in range(0, len(names), size)]


def wanted_specs(
    groups: Sequence[NameGroup], verdicts: Mapping[str, Verdict], shape: Shape
) -> list[CertSpec]:
    """The certificates that should exist, server certificate first; never over ``max_names``.

    A name a wildcard of the same certificate covers is left out (the CA refuses an order
    that lists both); when that is the hostname, the server certificate keeps its directory
    name and lists the wildcard first.

    The server certificate always starts with the hostname: when the hostname does not
    validate, no server certificate is planned at all (the stored one is kept), instead of one
    named after some other name (acme-mailcow's #3289).
    """

    def valid(names: Sequence[str]) -> list[str]:
        return [n for n in names if n in verdicts and verdicts[n].ok]

    server = next((g for g in groups if g.server), None)
    others = [g for g in groups if not g.server]
    server_valid = valid(server.names) if server else []
    hostname = server.names[0] if server and server_valid[:1] == [server.names[0]] else None
    specs: list[CertSpec] = []
    if hostname is not None:
        server_rest = [n for n in server_valid if n != hostname]
        if not shape.sni:
            server_rest += [n for g in others for n in valid(g.names)]
        names, covered = drop_covered([hostname, *sorted(set(server_rest))])
        if hostname in covered:  # the wildcard that covers it comes first
            names = (covered[hostname], *(n for n in names if n != covered[hostname]))
        chunks = _chunks(None, names, shape.max_names)
        specs = [
            CertSpec(name=hostname if i == 0 else c[0], domains=c) for i, c in enumerate(chunks)
        ]
    if shape.sni:
        taken = {n for s in specs for n in s.domains}
        for group in others:
            names = tuple(n for n in valid(group.names) if n not in taken)
            if not names:
                continue
            names = drop_covered([names[0], *sorted(set(names[1:]))])[0]
            specs += [CertSpec(name=c[0], domains=c) for c in _chunks(None, names, shape.max_names)]
    return specs


def _decide(spec: CertSpec, fresh: CertPlan, hold: Hold | None, past: str = "") -> CertPlan:
    if fresh.action is not Action.KEEP and hold is not None:
        until = f"{hold.until:%Y-%m-%d %H:%M}Z"
        return CertPlan(
            spec, Action.WAIT, f"{fresh.reason}; {hold.reason}; next try {until}", hold.until
        )
    return replace(fresh, past_budget=past) if past else fresh


def _decide_fresh(
    spec: CertSpec,
    stored: StoredCert | None,
    force: bool,
    now: datetime,
    ari: AriRecord | None = None,
    shape: Shape = Shape(),
    profile: str = "",
    other_ca: str = "",
    group: RenewalGroup | None = None,
) -> CertPlan:
    if stored is None:
        return CertPlan(spec, Action.ISSUE, "no certificate yet")
    if stored.domains != spec.domains:
        added = sorted(set(spec.domains) - set(stored.domains))
        removed = sorted(set(stored.domains) - set(spec.domains))
        parts = ([f"adds {' '.join(added)}"] if added else []) + (
            [f"drops {' '.join(removed)}"] if removed else []
        )
        return CertPlan(spec, Action.ISSUE, "names changed: " + ("; ".join(parts) or "order"))
    if not stored.key_matches:
        return CertPlan(spec, Action.ISSUE, "key.pem does not match cert.pem")
    if stored.sans and set(stored.sans) != set(spec.domains):
        return CertPlan(spec, Action.ISSUE, "cert.pem does not cover the names in domains")
    if shape.key_type and stored.key_type and stored.key_type != shape.key_type:
        why = f"key type changed: its key is {stored.key_type}, the key type is {shape.key_type}"
        return CertPlan(spec, Action.ISSUE, why)
    changed = profile_change(profile, shape.profile)
    if changed:
        return CertPlan(spec, Action.ISSUE, changed)
    if other_ca:  # never ``replaces``: the new CA does not know the old certificate
        return CertPlan(spec, Action.RENEW, f"due: {other_ca}")
    rule = renew_time(stored.cert_id, stored.not_before, stored.not_after, ari)
    due, replaces = rule.at, stored.cert_id if rule.ari else ""
    expires = f"{stored.not_after:%Y-%m-%d %H:%M:%S}Z"
    together = ""
    if group is not None and len(group.names) > 1:  # core.coalesce: inside its own span
        due = group.at
        together = f"; together with {group.named(but=spec.name)}"
    if force:
        return CertPlan(spec, Action.RENEW, "force_renew is set", due, replaces)
    if now >= due:
        why = f"the CA asks for it ({rule.why})" if rule.ari else f"expires {expires}"
        return CertPlan(spec, Action.RENEW, f"due: {why}{together}", due, replaces)
    when = f"{due:%Y-%m-%d %H:%M:%S}Z"
    why = f"renews {when} ({rule.why}){together}"
    return CertPlan(spec, Action.KEEP, f"valid until {expires}; {why}", due)


def make_plan(
    groups: Sequence[NameGroup],
    verdicts: Mapping[str, Verdict],
    stored: Mapping[str, StoredCert],
    *,
    shape: Shape,
    force: bool,
    now: datetime,
    force_done: Collection[str] = (),
    hold_rules: HoldRules | None = None,
    own_default: str | None = None,
    ari: Mapping[str, AriRecord] | None = None,
    profiles: Mapping[str, str] | None = None,
    other_ca: Mapping[str, str] | None = None,
    coalesce: Coalesce = DEFAULT,
) -> Plan:
    """Decide keep/issue/renew/wait per wanted certificate and which stored ones to archive.

    ``own_default`` (why the top-level pair is an own certificate) steps aside for it: the
    certificate holding the hostname is neither ordered nor made the default, and a stored one
    holding the hostname is archived (consumers would serve it for the hostname by SNI).

    ``force`` (the admin's ``force_renew``) renews every certificate not in ``force_done``
    (those re-issued since the flag appeared). ``hold_rules`` say why a certificate that needs an
    order must wait (``budget.hold``: back-off, the CA's Retry-After, the rate-limit budget, a
    refused directory), counting the orders already planned before it in this plan; an ARI
    renewal (``replaces``) or an urgent one (``budget.urgent_at``) goes past the CA's limits,
    never past a back-off (``CertPlan.past_budget`` says why). ``ari`` holds
    the CA's renewal windows by certificate (used when they are for the stored certificate).

    ``profiles`` names the profile each stored certificate was ordered with (the ledger's; a
    certificate not named there counts as ordered with the CA's default): one that differs
    from ``shape.profile`` is ordered again, so is one whose key type is not ``shape.key_type``.
    ``other_ca`` names the stored certificates issued from another CA than ``shape.directory``,
    with why (``core.ca``): each is renewed, within the budget like any order.

    ``coalesce`` (``ACME_COALESCE``) groups the stored certificates that fall due together
    (``core.coalesce``): each group is renewed at one time inside every member's span, its
    ARI members with ``replaces``; ``Plan.groups`` lists the groups of two or more.
    """
    specs = wanted_specs(groups, verdicts, shape)
    server = next((g for g in groups if g.server), None)
    hostname = server.names[0] if server else None
    notes: list[str] = []
    stepped_aside = own_default is not None and any(
        holds(s.domains, hostname) for s in specs if hostname
    )
    if own_default is not None and hostname is not None:  # the own.kept line says why
        specs = [s for s in specs if not holds(s.domains, hostname)]
    ari_of = ari or {}
    grouped = renewal_groups(
        {s.name: stored[s.name] for s in specs if s.name in stored}, ari_of, coalesce
    )
    certs_list: list[CertPlan] = []
    planned = 0
    for spec in specs:
        fresh = _decide_fresh(
            spec,
            stored.get(spec.name),
            force and spec.name not in force_done,
            now,
            ari_of.get(spec.name),
            shape,
            (profiles or {}).get(spec.name, ""),
            (other_ca or {}).get(spec.name, ""),
            grouped.get(spec.name),
        )
        waits, past = None, ""
        if fresh.action is not Action.KEEP and hold_rules is not None:
            had = stored.get(spec.name)  # urgent: it would be served expired otherwise
            urgent = urgent_at(had.not_before, had.not_after) if had else None
            waits, past = clearance(
                spec, hold_rules, now, planned, replaces=fresh.replaces, urgent_since=urgent
            )
        cert = _decide(spec, fresh, waits, past)
        planned += cert.action in (Action.ISSUE, Action.RENEW)
        certs_list.append(cert)
    certs = tuple(certs_list)
    wanted = {s.name for s in specs}
    blocked = (
        own_default is None and hostname is not None and not (specs and specs[0].name == hostname)
    )
    if blocked:
        notes.append(
            f"{hostname} does not validate: the server certificate is kept as it is and not "
            "re-issued until the hostname validates again"
        )
    archive = tuple(
        sorted(
            n
            for n, cert in stored.items()
            if n not in wanted and not (blocked and hostname in cert.domains)
        )
    )
    skipped = tuple(v for v in verdicts.values() if not v.ok)
    return Plan(
        certs=certs,
        default_name=specs[0].name if specs and not blocked and own_default is None else None,
        archive=archive if specs or stepped_aside else (),
        skipped=skipped,
        notes=tuple(notes),
        # by identity: hashing a group hashes all its names, once per member
        groups=tuple(
            sorted({id(g): g for g in grouped.values() if g.why}.values(), key=lambda g: g.at)
        ),
        decided=now,
    )
