"""A private PowerDNS Authoritative (Debian's ``pdns_server``), gsqlite3 backend, HTTP API on.

``pdns_server`` runs in the foreground from its own directory (its own ``pdns.conf``, SQLite
database and control socket; no system config, no security poll, no caches) and answers on
``server`` = (127.0.0.2, ``port``), UDP and TCP: the port is shared with ``bind.Bind`` (see
``authdns``). The API and webserver listen on ``api_url`` (127.0.0.1, a free port) with a key
generated per instance (``X-API-Key``); ``server_id`` is ``localhost``.

Each zone in ``zones`` is created through the API on first start (Native; SOA and NS
``ns.<zone>``; ``ns.<zone>`` with A 127.0.0.2, the apex and ``*.<zone>`` with A 127.0.0.1 (where
the world's nginx answers HTTP-01); TTL 1). Touches only its workdir and loopback sockets.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dns.name
import requests

from . import authdns
from .authdns import PDNS_HOST, TTL, WEB_HOST, fqdn
from .proc import Child, free_port, require_binary, wait_for

SCHEMAS = (
    Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql"),
    Path("/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql"),
)


def _schema() -> str:
    for path in SCHEMAS:
        if path.is_file():
            return path.read_text()
    raise RuntimeError(
        "test world: PowerDNS's SQLite schema not found; install it with "
        "`apt-get install pdns-backend-sqlite3`"
    )


class PowerDNS:
    """``pdns_server`` with the gsqlite3 backend and the API; ports stay across stop()/start()."""

    host = PDNS_HOST
    api_host = "127.0.0.1"
    server_id = "localhost"

    def __init__(
        self,
        workdir: Path,
        zones: Sequence[str],
        port: int | None = None,
        nameservers: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """``zones`` hosted here; ``port``: given when BIND must share it, else a free one;
        ``nameservers``: zone -> {label: address} for the NS of a zone other than the default
        ``{"ns": "127.0.0.2"}`` (e.g. a copy of a BIND zone, listed as its second NS)."""
        binary = require_binary("pdns_server", "pdns-server")
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.zones = tuple(z.rstrip(".") for z in zones)
        self._nameservers = {z.rstrip("."): dict(ns) for z, ns in (nameservers or {}).items()}
        self.port = port if port is not None else authdns.shared_port((self.host,))
        self.server = (self.host, self.port)
        self.api_port = free_port()
        self.api_url = f"http://{self.api_host}:{self.api_port}"
        self.api_key = secrets.token_hex(16)
        self.database = workdir / "pdns.sqlite3"
        (workdir / "pdns.conf").write_text(self._config())
        argv = [binary, f"--config-dir={workdir}"]
        self._child = Child("pdns_server", argv, workdir / "pdns.log", cwd=workdir)
        self._session = requests.Session()
        self._session.headers["X-API-Key"] = self.api_key

    def _config(self) -> str:
        settings = {
            "launch": "gsqlite3",
            "gsqlite3-database": str(self.database),
            "local-address": self.host,
            "local-port": str(self.port),
            "socket-dir": str(self.workdir),
            "daemon": "no",
            "guardian": "no",
            "write-pid": "no",
            "disable-syslog": "yes",
            "loglevel": "4",
            "security-poll-suffix": "",
            "api": "yes",
            "api-key": self.api_key,
            "webserver": "yes",
            "webserver-address": self.api_host,
            "webserver-port": str(self.api_port),
            "webserver-allow-from": "127.0.0.0/8",
            "cache-ttl": "0",
            "query-cache-ttl": "0",
            "negquery-cache-ttl": "0",
            "zone-cache-refresh-interval": "0",
            "distributor-threads": "1",
            "receiver-threads": "1",
            "default-ttl": str(TTL),
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    # -- lifecycle -----------------------------------------------------------------------

    def _api_ready(self) -> bool:
        try:
            return self._session.get(self._server_url(), timeout=1).ok
        except requests.RequestException:
            return False

    def start(self) -> None:
        """Start the server (creating the database and zones the first time) and wait until the
        API answers and every zone's SOA is served."""
        first = not self.database.exists()
        if first:
            with sqlite3.connect(self.database) as db:
                db.executescript(_schema())
            db.close()
        self._child.start()
        wait_for(self._api_ready, "pdns_server API", self._child)
        if first:
            for zone in self.zones:
                self.create_zone(zone, self._nameservers.get(zone))
        wait_for(
            lambda: all(authdns.answers_soa(self.server, zone) for zone in self.zones),
            "pdns_server zones",
            self._child,
        )

    def stop(self) -> None:
        """Stop the server; start() brings it back with its database."""
        self._child.stop()

    def running(self) -> bool:
        """Return True while ``pdns_server`` is alive."""
        return self._child.running()

    # -- API -----------------------------------------------------------------------------

    def _server_url(self) -> str:
        return f"{self.api_url}/api/v1/servers/{self.server_id}"

    def zone_url(self, zone: str) -> str:
        """The API URL of ``zone``."""
        return f"{self._server_url()}/zones/{fqdn(zone)}"

    def create_zone(self, zone: str, nameservers: Mapping[str, str] | None = None) -> None:
        """Create ``zone`` (Native) with its SOA, NS (``nameservers`` label -> address, by
        default ``ns`` -> 127.0.0.2) and A records (see module)."""
        origin = fqdn(zone)
        nameservers = nameservers or {"ns": self.host}
        soa = f"ns.{origin} hostmaster.{origin} 1 3600 600 86400 {TTL}"
        body = {
            "name": origin,
            "kind": "Native",
            "nameservers": [],
            "rrsets": [
                _rrset(origin, "SOA", [soa]),
                _rrset(origin, "NS", [f"{label}.{origin}" for label in sorted(nameservers)]),
                *(_rrset(f"{label}.{origin}", "A", [ip]) for label, ip in nameservers.items()),
                *(_rrset(name, "A", [WEB_HOST]) for name in (origin, f"*.{origin}")),
            ],
        }
        resp = self._session.post(f"{self._server_url()}/zones", json=body, timeout=5)
        if resp.status_code != 201:
            raise RuntimeError(
                f"pdns_server: creating {zone} answered {resp.status_code}: {resp.text}"
            )
        if zone.rstrip(".") not in self.zones:
            self.zones = (*self.zones, zone.rstrip("."))

    def zone_of(self, name: str) -> str:
        """The hosted zone ``name`` falls in (label-wise); raises when none does."""
        candidate = dns.name.from_text(fqdn(name))
        for zone in sorted(self.zones, key=len, reverse=True):
            if candidate.is_subdomain(dns.name.from_text(fqdn(zone))):
                return zone
        raise ValueError(f"{name} is in no zone of this PowerDNS ({', '.join(self.zones)})")

    def patch(
        self, zone: str, rrsets: Sequence[Mapping[str, Any]], api_key: str | None = None
    ) -> requests.Response:
        """PATCH ``rrsets`` into ``zone`` (with ``api_key`` instead of the right one if given);
        returns the response as it is (204 on success)."""
        headers = {"X-API-Key": api_key} if api_key is not None else {}
        return self._session.patch(
            self.zone_url(zone), json={"rrsets": list(rrsets)}, headers=headers, timeout=5
        )

    def records(self, name: str, rdtype: str) -> list[str]:
        """The record contents of ``name``/``rdtype`` as the API lists them."""
        resp = self._session.get(self.zone_url(self.zone_of(name)), timeout=5)
        resp.raise_for_status()
        for rrset in resp.json()["rrsets"]:
            if rrset["name"] == fqdn(name).lower() and rrset["type"] == rdtype:
                return [record["content"] for record in rrset["records"]]
        return []

    def set_rrset(self, name: str, rdtype: str, contents: Sequence[str]) -> None:
        """Replace the ``rdtype`` rrset of ``name`` by ``contents`` (none: delete it)."""
        rrset = _rrset(fqdn(name), rdtype, contents) if contents else {
            "name": fqdn(name), "type": rdtype, "changetype": "DELETE"
        }  # fmt: skip
        resp = self.patch(self.zone_of(name), [rrset])
        if resp.status_code != 204:
            raise RuntimeError(
                f"pdns_server: {name} {rdtype} answered {resp.status_code}: {resp.text}"
            )

    def add_record(self, name: str, rdtype: str, content: str) -> None:
        """Add one record (content in zone-file form) to the rrset of ``name``/``rdtype``."""
        self.set_rrset(name, rdtype, [*self.records(name, rdtype), content])

    def add_a(self, name: str, ip: str) -> None:
        """Add an A record for ``name`` (names without one get the zone's ``*`` A 127.0.0.1)."""
        self.add_record(name, "A", ip)

    def add_txt(self, name: str, value: str) -> None:
        """Add a TXT record (one string) for ``name``."""
        self.add_record(name, "TXT", f'"{value}"')

    def delete_rrset(self, name: str, rdtype: str) -> None:
        """Delete every ``rdtype`` record of ``name``."""
        self.set_rrset(name, rdtype, [])

    # -- direct queries ------------------------------------------------------------------

    def txt(self, name: str) -> list[str]:
        """The TXT values of ``name`` as this server answers now (sorted; [] if none)."""
        return authdns.txt_values(self.server, name)

    def ns(self, zone: str) -> list[str]:
        """The NS names of ``zone`` as this server answers (``["ns.<zone>."]``)."""
        return authdns.ns_names(self.server, zone)


def _rrset(name: str, rdtype: str, contents: Sequence[str]) -> dict[str, Any]:
    return {
        "name": name,
        "type": rdtype,
        "ttl": TTL,
        "changetype": "REPLACE",
        "records": [{"content": content, "disabled": False} for content in contents],
    }
