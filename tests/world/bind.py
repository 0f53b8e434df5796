"""A private BIND 9 (Debian's ``named``): authoritative for test zones, TSIG updates, resolver.

``named -g`` runs in the foreground on 127.0.0.1 at ``port`` (UDP and TCP) from its own
directory, with the lock file and the system's config off and rndc on a private control port
and key (``rndc()``, ``flush()``). It is:

* authoritative for ``zones`` (each: SOA, NS ``ns.<zone>`` with A 127.0.0.1 or the given
  ``nameservers``, the apex and ``*.<zone>`` with A 127.0.0.1, TTL 1), updatable by RFC 2136
  when signed with the run's TSIG key (``key_name``, hmac-sha256, ``key_secret`` generated per
  instance; ``key_file`` holds it in ``nsupdate -k`` / acme.sh ``NSUPDATE_KEY`` form);
* the resolver of the DNS-01 world (Pebble's ``-dnsserver``): it forwards each of ``forwards``
  (zone -> (host, port), e.g. PowerDNS's zones) and is authoritative for the root zone, which
  delegates every test zone and answers NXDOMAIN for everything else (never the Internet).
  Its cache keeps no TTL, but an answer it forwarded is still served from the cache until the
  next whole second; the zones' ``*`` A record keeps every name existing, so a negative answer
  cached for one type (say the CNAME check before the update) never hides another (the TXT).

The NS of a zone here resolves to 127.0.0.1 (and, for a zone given ``nameservers``, to their
addresses): a propagation check must query them at ``port``, not 53. Touches only its workdir
and loopback sockets.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import dns.name
import dns.query
import dns.rcode
import dns.tsig
import dns.tsigkeyring
import dns.update

from . import authdns
from .authdns import BIND_HOST, TTL, WEB_HOST, fqdn
from .proc import Child, free_port, require_binary, wait_for

KEY_ALGORITHM = "hmac-sha256"
KEY_NAME = "acme-test-key."


def _new_secret() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _key_clause(name: str, secret: str) -> str:
    """A ``key`` statement as ``tsig-keygen`` writes it (named.conf, ``nsupdate -k``, rndc)."""
    return f'key "{name}" {{\n\talgorithm {KEY_ALGORITHM};\n\tsecret "{secret}";\n}};\n'


def _zone_file(zone: str, nameservers: Mapping[str, str]) -> str:
    origin = fqdn(zone)
    lines = [
        f"$ORIGIN {origin}\n$TTL {TTL}",
        f"@ IN SOA ns.{origin} hostmaster.{origin} 1 3600 600 86400 {TTL}",
        *(f"@ IN NS {label}.{origin}" for label in sorted(nameservers)),
        *(f"{label} IN A {address}" for label, address in sorted(nameservers.items())),
        f"@ IN A {WEB_HOST}\n* IN A {WEB_HOST}",
    ]
    return "\n".join(lines) + "\n"


def _root_zone(delegations: Mapping[str, Mapping[str, str]]) -> str:
    """The root zone: SOA, its own NS, and NS + glue for each delegated zone."""
    lines = [
        f"$ORIGIN .\n$TTL {TTL}",
        f". IN SOA ns.root.test. hostmaster.root.test. 1 3600 600 86400 {TTL}",
        ". IN NS ns.root.test.",
        f"ns.root.test. IN A {BIND_HOST}",
    ]
    for zone, nameservers in sorted(delegations.items()):
        for label, address in sorted(nameservers.items()):
            ns = f"{label}.{fqdn(zone)}"
            lines += [f"{fqdn(zone)} IN NS {ns}", f"{ns} IN A {address}"]
    return "\n".join(lines) + "\n"


class Bind:
    """``named`` on ``(host, port)``; the port stays the same across stop()/start()."""

    host = BIND_HOST
    key_algorithm = KEY_ALGORITHM
    key_name = KEY_NAME

    def __init__(
        self,
        workdir: Path,
        zones: Sequence[str],
        forwards: Mapping[str, tuple[str, int]] | None = None,
        port: int | None = None,
        nameservers: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """``zones`` hosted here; ``forwards`` zone -> (host, port) answered by another server;
        ``port``: given when another server must share it (see ``authdns``), else a free one;
        ``nameservers``: zone -> {label: address} for the NS of a hosted zone other than the
        default ``{"ns": "127.0.0.1"}`` (e.g. a second NS on PowerDNS that never updates)."""
        binary = require_binary("named", "bind9")
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.zones = tuple(z.rstrip(".") for z in zones)
        self.forwards = {z.rstrip("."): where for z, where in (forwards or {}).items()}
        given = {z.rstrip("."): dict(ns) for z, ns in (nameservers or {}).items()}
        self.nameservers = {z: given.get(z, {"ns": self.host}) for z in self.zones}
        self.port = port if port is not None else authdns.shared_port((self.host,))
        self.server = (self.host, self.port)
        self.key_secret = _new_secret()
        self.key_file = workdir / "tsig.key"
        self.key_file.write_text(_key_clause(KEY_NAME, self.key_secret))
        self.key_file.chmod(0o600)
        self.control_port = free_port()
        self._rndc = require_binary("rndc", "bind9-utils")
        self._rndc_key = workdir / "rndc.key"
        self._rndc_key.write_text(_key_clause("rndc-key", _new_secret()))
        self._write_config()
        argv = [binary, "-g", "-4", "-n", "1", "-c", str(workdir / "named.conf")]
        self._child = Child("named", argv, workdir / "named.log", cwd=workdir)

    def _write_config(self) -> None:
        delegations = {z: {"ns": host} for z, (host, _) in self.forwards.items()}
        delegations |= self.nameservers
        (self.workdir / "root.zone").write_text(_root_zone(delegations))
        blocks = [
            f'include "{self.key_file}";\ninclude "{self._rndc_key}";',
            "options {",
            f'\tdirectory "{self.workdir}";',
            "\tpid-file none;\n\tlock-file none;",
            f'\tsession-keyfile "{self.workdir}/session.key";',
            f'\tmanaged-keys-directory "{self.workdir}";',
            f"\tlisten-on port {self.port} {{ {self.host}; }};",
            "\tlisten-on-v6 { none; };",
            "\trecursion yes;\n\tallow-recursion { 127.0.0.0/8; };\n\tallow-query { any; };",
            "\tstale-cache-enable no;\n\tstale-answer-enable no;",
            "\tdnssec-validation no;\n\tempty-zones-enable no;\n\tnotify no;",
            "\tmax-cache-ttl 0;\n\tmax-ncache-ttl 0;\n\tmax-cache-size 8m;",
            "};",
            f"controls {{ inet {self.host} port {self.control_port} allow {{ {self.host}; }} "
            'keys { "rndc-key"; }; };',
            'zone "." { type primary; file "root.zone"; };',
        ]
        for zone in self.zones:
            (self.workdir / f"{zone}.zone").write_text(_zone_file(zone, self.nameservers[zone]))
            blocks.append(
                f'zone "{zone}" {{ type primary; file "{zone}.zone"; '
                f'allow-update {{ key "{KEY_NAME}"; }}; }};'
            )
        for zone, (host, port) in sorted(self.forwards.items()):
            blocks.append(
                f'zone "{zone}" {{ type forward; forward only; '
                f"forwarders {{ {host} port {port}; }}; }};"
            )
        (self.workdir / "named.conf").write_text("\n".join(blocks) + "\n")

    def start(self) -> None:
        """Start ``named`` and wait until it answers the SOA of the root and every hosted zone."""
        self._child.start()
        wait_for(
            lambda: all(authdns.answers_soa(self.server, zone) for zone in (".", *self.zones)),
            "named",
            self._child,
        )

    def stop(self) -> None:
        """Stop ``named``; start() brings it back with the updates made so far (journal)."""
        self._child.stop()

    def running(self) -> bool:
        """Return True while ``named`` is alive."""
        return self._child.running()

    def rndc(self, *command: str) -> str:
        """Run one ``rndc`` command against this server (e.g. ``"flush"``); returns its output."""
        argv = [
            self._rndc,
            "-s",
            self.host,
            "-p",
            str(self.control_port),
            "-k",
            str(self._rndc_key),
        ]
        done = subprocess.run([*argv, *command], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"rndc {' '.join(command)} failed: {done.stdout}{done.stderr}")
        return done.stdout

    def flush(self) -> None:
        """Empty the resolver cache (forwarded answers live until the next whole second)."""
        self.rndc("flush")

    # -- TSIG-signed updates -------------------------------------------------------------

    def keyring(self, secret: str | None = None) -> dict[dns.name.Name, dns.tsig.Key]:
        """dnspython keyring of the run's key (or of ``secret`` under its name, to test refusal)."""
        key = dns.tsig.Key(KEY_NAME, secret or self.key_secret, KEY_ALGORITHM)
        return {key.name: key}

    def zone_of(self, name: str) -> str:
        """The hosted zone ``name`` falls in (label-wise); raises when none does."""
        candidate = dns.name.from_text(fqdn(name))
        for zone in sorted(self.zones, key=len, reverse=True):
            if candidate.is_subdomain(dns.name.from_text(fqdn(zone))):
                return zone
        raise ValueError(f"{name} is in no zone of this BIND ({', '.join(self.zones)})")

    def update(
        self,
        zone: str,
        *,
        add: Iterable[tuple[str, str, str]] = (),
        delete: Iterable[tuple[str, str]] = (),
        secret: str | None = None,
    ) -> dns.rcode.Rcode:
        """Send one TSIG-signed update to ``zone``: ``delete`` (name, rdtype) rrsets, then
        ``add`` (name, rdtype, value) records with TTL 1. Returns the rcode; dnspython raises
        ``dns.tsig.PeerBadSignature``/``PeerBadKey`` when the server refuses the signature."""
        message = dns.update.UpdateMessage(fqdn(zone), keyring=self.keyring(secret))
        for name, rdtype in delete:
            message.delete(fqdn(name), rdtype)
        for name, rdtype, value in add:
            message.add(fqdn(name), TTL, rdtype, value)
        response = dns.query.tcp(message, self.host, port=self.port, timeout=5)
        return response.rcode()

    def _must_update(
        self,
        name: str,
        add: Iterable[tuple[str, str, str]] = (),
        delete: Iterable[tuple[str, str]] = (),
    ) -> None:
        rcode = self.update(self.zone_of(name), add=add, delete=delete)
        if rcode != dns.rcode.NOERROR:
            raise RuntimeError(f"named refused the update of {name}: {dns.rcode.to_text(rcode)}")

    def add_record(self, name: str, rdtype: str, value: str) -> None:
        """Add one record (appends to the rrset); e.g. ``("_acme-challenge.x", "CNAME", ...)``."""
        self._must_update(name, add=[(name, rdtype, value)])

    def add_a(self, name: str, ip: str) -> None:
        """Add an A record for ``name`` (names without one get the zone's ``*`` A 127.0.0.1)."""
        self.add_record(name, "A", ip)

    def add_txt(self, name: str, value: str) -> None:
        """Add a TXT record (one string) for ``name``."""
        self.add_record(name, "TXT", f'"{value}"')

    def delete_rrset(self, name: str, rdtype: str) -> None:
        """Delete every ``rdtype`` record of ``name``."""
        self._must_update(name, delete=[(name, rdtype)])

    # -- direct queries ------------------------------------------------------------------

    def txt(self, name: str) -> list[str]:
        """The TXT values of ``name`` as this server answers now (sorted; [] if none)."""
        return authdns.txt_values(self.server, name, recurse=True)

    def ns(self, zone: str) -> list[str]:
        """The NS names of ``zone`` as this server answers (``["ns.<zone>."]`` for hosted ones)."""
        return authdns.ns_names(self.server, zone)
