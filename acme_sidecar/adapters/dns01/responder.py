"""DNS-01 through the challenge-responder seam: publish all TXT records of an order, wait once
for propagation, then let the order answer; remove them afterwards (after a failure too).

``Dns01Router`` holds the configured DNS hosts (the default and one per ``[zone ...]``
section) and picks one for a record; ``Dns01Responder`` serves one order. A CNAME at
``_acme-challenge.<name>`` is followed only where ``core.dns01.delegation`` allows (a zone
with a section, or one of ``ACME_DNS_ALIAS_ZONES``); else nothing is written for the name and
it fails (``dns01.cname_refused``). May touch: the DNS providers (through ``DnsProvider``) and
DNS (through ``ZoneLookups``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import structlog
from acme import challenges, messages
from josepy.jwk import JWK

from acme_sidecar.adapters.acme.challenges import Answer
from acme_sidecar.adapters.dns01.base import DnsProvider, DnsUpdateError
from acme_sidecar.adapters.dns01.zones import (
    LookupFailed,
    Propagation,
    Record,
    ZoneLookups,
    cname_chain,
)
from acme_sidecar.core.dns01 import ALIAS_SETTING, Routes, challenge_name, closest_zone
from acme_sidecar.core.errors import NamesRejected

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Target:
    """One configured DNS host: its provider, or why it is unusable; the port its zones'
    authoritative servers answer on; a fixed zone to update (``NSUPDATE_ZONE``)."""

    provider: DnsProvider | None
    problem: str | None = None
    auth_port: int = 53
    zone: str = ""


class Dns01Router:
    """The default DNS host and one per configured zone; ``aliases``: the zones of
    ``ACME_DNS_ALIAS_ZONES``; ``credentials``: the hash of the values the hosts were built
    with (``Routes.credentials``)."""

    def __init__(
        self,
        default: Target,
        zones: Mapping[str, Target],
        aliases: tuple[str, ...] = (),
        *,
        credentials: str = "",
    ) -> None:
        self._default = default
        self._zones = dict(zones)
        self._routes = Routes(
            zones=tuple((z, t.problem) for z, t in self._zones.items()),
            default=default.problem,
            aliases=aliases,
            credentials=credentials,
        )

    def routes(self) -> Routes:
        """Which names can be answered and where a CNAME may lead (for validation too)."""
        return self._routes

    def target(self, record_name: str) -> tuple[str, Target]:
        """The section (``""``: the default) whose host writes ``record_name``."""
        zone = closest_zone(record_name, self._zones)
        if zone is None:
            return "", self._default
        return zone, self._zones[zone]

    def auth_port(self, zone: str) -> int:
        """The port of ``zone``'s authoritative servers."""
        return self.target(zone)[1].auth_port


@dataclass(frozen=True, slots=True)
class _Pending:
    name: str  # as in the order: ``*.example.org`` for a wildcard authorization
    value: str


class _Unrouted(Exception):
    """No usable provider for a record."""


class Dns01Responder:
    """Answers the authorizations of one order with DNS-01."""

    def __init__(
        self,
        router: Dns01Router,
        lookups: ZoneLookups,
        *,
        propagation_timeout: float,
        stop: threading.Event,
    ) -> None:
        self._router = router
        self._lookups = lookups
        self._timeout = propagation_timeout
        self._stop = stop
        self._pending: list[_Pending] = []
        self._published: list[tuple[DnsProvider, str, dict[str, tuple[str, ...]]]] = []

    def prepare(self, authz: messages.AuthorizationResource, account_key: JWK) -> Answer:
        """Pick the dns-01 challenge and note its TXT value; ``ready`` publishes it."""
        body = authz.body
        name = ("*." if body.wildcard else "") + body.identifier.value
        for challb in body.challenges:
            if isinstance(challb.chall, challenges.DNS01):
                response, value = challb.response_and_validation(account_key)
                self._pending.append(_Pending(name, value))
                return Answer(challb, response)
        raise NamesRejected(
            f"the CA offered no dns-01 challenge for {name}",
            failed_names={name: "no dns-01 challenge offered"},
        )

    def ready(self) -> None:
        """Publish every noted value, wait until every authoritative server has them; raise
        ``NamesRejected`` for the names that could not be published or did not propagate."""
        failed: dict[str, str] = {}
        transient: dict[str, str] = {}
        # one update per DNS host and zone, holding every record of the order there
        groups: dict[tuple[int, str], tuple[DnsProvider, str, list[tuple[Record, _Pending]]]] = {}
        for item in self._pending:
            try:
                provider, record = self._locate(item.name)
            except (LookupFailed, _Unrouted) as exc:
                (transient if isinstance(exc, LookupFailed) else failed)[item.name] = str(exc)
                continue
            key = (id(provider), record.zone)
            groups.setdefault(key, (provider, record.zone, []))[2].append((record, item))
        started = time.monotonic()
        live: list[tuple[Record, _Pending]] = []
        for provider, zone, entries in groups.values():
            records: dict[str, tuple[str, ...]] = {}
            for record, item in entries:
                records[record.name] = (*records.get(record.name, ()), item.value)
            try:
                provider.add_txt(zone, records)
            except DnsUpdateError as exc:
                log.error(
                    "dns01.update_failed",
                    provider=provider.label,
                    zone=zone,
                    records=" ".join(records),
                    error=str(exc),
                )
                # part of it may have been written (a second server, a second value refused):
                # take it away again whatever the error (removal is idempotent)
                self._published.append((provider, zone, records))
                bucket = transient if exc.transient else failed
                bucket.update({i.name: f"DNS-01 update failed: {exc}" for _, i in entries})
                continue
            self._published.append((provider, zone, records))
            log.info(
                "dns01.published",
                provider=provider.label,
                zone=zone,
                records=" ".join(records),
                values=len(entries),
            )
            live += entries
        if live:
            self._wait(live, transient, started)
        if failed or transient:
            detail = "; ".join(f"{n}: {r}" for n, r in {**failed, **transient}.items())
            raise NamesRejected(
                f"DNS-01 could not be prepared: {detail}",
                failed_names=failed,
                transient_names=transient,
            )

    def _locate(self, name: str) -> tuple[DnsProvider, Record]:
        challenge = challenge_name(name)
        chain = cname_chain(challenge, self._lookups)
        rule = self._router.routes().delegation(chain)
        if not rule.allowed:
            log.warning(
                "dns01.cname_refused",
                name=name,
                cname=challenge,
                target=rule.target,
                chain=" -> ".join(chain),
                reason=rule.reason,
            )
            raise _Unrouted(
                f"the CNAME {challenge} -> {rule.target} is not followed into a zone without a "
                f"[zone …] section nor in {ALIAS_SETTING} (dns01.cname_refused)"
            )
        # the record goes where the chain ends, written by the host of that name's zone
        section, target = self._router.target(rule.target)
        record = Record(
            rule.target,
            target.zone or self._lookups.zone_for(rule.target),
            delegated=len(chain) > 1,
        )
        if target.provider is None:
            where = f"[zone {section}]" if section else "the default provider"
            why = f"no usable DNS-01 provider for {record.name}: {where}: {target.problem}"
            raise _Unrouted(why)
        return target.provider, record

    def _wait(
        self, live: list[tuple[Record, _Pending]], transient: dict[str, str], started: float
    ) -> None:
        propagation = Propagation(
            self._lookups, timeout=self._timeout, stop=self._stop, port_of=self._router.auth_port
        )
        left = propagation.wait([(record, {item.value}) for record, item in live])
        seconds = round(time.monotonic() - started, 2)
        for record, item in live:
            if record.name in left:
                transient[item.name] = (
                    f"the TXT record {record.name} did not reach every authoritative server "
                    f"within {self._timeout:g}s (ACME_DNS_PROPAGATION_TIMEOUT): "
                    f"{left[record.name]}"
                )
        if left:
            log.error(
                "dns01.not_propagated",
                records=" ".join(sorted(left)),
                seconds=seconds,
                detail="; ".join(f"{n}: {w}" for n, w in sorted(left.items()))[:600],
            )
        else:
            log.info("dns01.propagated", records=len(live), seconds=seconds)

    def cleanup(self) -> None:
        """Remove every value this responder published; log (never raise) a failure."""
        for provider, zone, records in self._published:
            try:
                provider.remove_txt(zone, records)
            except DnsUpdateError as exc:
                log.warning(
                    "dns01.cleanup_failed",
                    provider=provider.label,
                    zone=zone,
                    records=" ".join(records),
                    error=str(exc),
                )
            else:
                log.info("dns01.removed", zone=zone, records=" ".join(records))
        self._published.clear()
        self._pending.clear()
