"""The DANE world's DNS: a DNSSEC-signed zone on BIND, and a validating BIND that trusts it.

Two private ``named`` (Debian's bind9), each in the foreground from its own directory:

* ``auth``, authoritative on 127.0.0.1 at a free port for ``SIGNED_ZONE`` (signed by BIND
  itself: ``dnssec-policy`` with one ECDSA P-256 CSK, inline signing, TTLs of a second) and
  ``PLAIN_ZONE`` (never signed), both updatable by RFC 2136 with the instance's TSIG key
  (``key_file`` in ``nsupdate -k`` form; ``nsupdate()`` runs the real command). Each zone has
  SOA, NS, and A 127.0.0.1 for the apex, ``mail.`` and ``*``. No recursion.
* ``resolver``, a validating resolver on 127.0.0.1 port 53 (the sending Postfix finds it
  through a ``resolv.conf``, which knows no port; the port must be free) that forwards every
  query to ``auth`` and trusts the signed zone's key (``trust-anchors { ... static-key ... }``,
  read from ``auth`` once it signed the zone). So answers from ``SIGNED_ZONE`` come back with
  the AD bit and answers from ``PLAIN_ZONE`` without it. It caches nothing for over a second.

Touches only its workdir and loopback sockets.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.DNSKEY

from .authdns import _free_on, answers_soa, fqdn
from .bind import KEY_ALGORITHM, KEY_NAME, _key_clause, _new_secret
from .proc import Child, free_port, require_binary, wait_for

SIGNED_ZONE = "example.test"  # the zone of the tests' MAILCOW_HOSTNAME (mail.example.test)
PLAIN_ZONE = "plain.test"  # an unsigned zone: its answers never carry the AD bit
RESOLVER_HOST = "127.0.0.1"  # port 53: resolv.conf has no port (see postfix.py); BIND listens
# only on an interface's address, and loopback has just this one
TTL = 1
POLICY = f"""dnssec-policy "fast" {{
\tkeys {{ csk lifetime unlimited algorithm ecdsap256sha256; }};
\tdnskey-ttl {TTL};
\tmax-zone-ttl 60;
\tzone-propagation-delay 1;
\tpublish-safety 1;
\tretire-safety 1;
\tparent-ds-ttl {TTL};
\tparent-propagation-delay 1;
}};"""


def _zone_file(zone: str) -> str:
    origin = fqdn(zone)
    return (
        f"$ORIGIN {origin}\n$TTL {TTL}\n"
        f"@ IN SOA ns.{origin} hostmaster.{origin} 1 3600 600 86400 {TTL}\n"
        f"@ IN NS ns.{origin}\nns IN A 127.0.0.1\n"
        "@ IN A 127.0.0.1\nmail IN A 127.0.0.1\n* IN A 127.0.0.1\n"
    )


def _common_options(workdir: Path, listen: str) -> list[str]:
    return [
        f'\tdirectory "{workdir}";',
        "\tpid-file none;\n\tlock-file none;",
        f'\tsession-keyfile "{workdir}/session.key";',
        f'\tmanaged-keys-directory "{workdir}";',
        f"\tlisten-on {listen};",
        "\tlisten-on-v6 { none; };",
        "\tempty-zones-enable no;\n\tnotify no;",
    ]


class DaneDNS:
    """The signed authoritative server and the validating resolver (``start``/``stop``)."""

    zone = SIGNED_ZONE
    plain_zone = PLAIN_ZONE
    resolver_host = RESOLVER_HOST
    resolver_port = 53
    key_algorithm = KEY_ALGORITHM
    key_name = KEY_NAME

    def __init__(self, workdir: Path) -> None:
        binary = require_binary("named", "bind9")
        self._nsupdate = require_binary("nsupdate", "bind9-dnsutils")
        if not _free_on(RESOLVER_HOST, self.resolver_port):
            raise RuntimeError(
                f"test world: {RESOLVER_HOST} port 53 is in use; the DANE world's validating "
                "resolver needs it (Postfix reads its resolver from a resolv.conf: no port)"
            )
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.auth_port = free_port(udp_too=True)
        self.auth = ("127.0.0.1", self.auth_port)
        self.resolver = (RESOLVER_HOST, self.resolver_port)
        self.key_secret = _new_secret()
        self.key_file = workdir / "tsig.key"
        self.key_file.write_text(_key_clause(KEY_NAME, self.key_secret))
        self.key_file.chmod(0o600)
        self.trust_anchor = ""  # "example.test. static-key 257 3 13 <key>", once signed
        auth_dir, resolver_dir = workdir / "auth", workdir / "resolver"
        for directory in (auth_dir, resolver_dir, auth_dir / "keys"):
            directory.mkdir(exist_ok=True)
        self._write_auth(auth_dir)
        self._resolver_dir = resolver_dir
        argv = [binary, "-g", "-4", "-n", "1", "-c"]
        self._auth = Child("named-auth", [*argv, str(auth_dir / "named.conf")], auth_dir / "log")
        self._resolver = Child(
            "named-resolver", [*argv, str(resolver_dir / "named.conf")], resolver_dir / "log"
        )

    def _write_auth(self, directory: Path) -> None:
        blocks = [
            f'include "{self.key_file}";',
            POLICY,
            "options {",
            *_common_options(directory, f"port {self.auth_port} {{ 127.0.0.1; }}"),
            f'\tkey-directory "{directory}/keys";',
            "\trecursion no;\n\tallow-query { any; };",
            "};",
            "controls { };",
        ]
        for zone, signed in ((SIGNED_ZONE, True), (PLAIN_ZONE, False)):
            (directory / f"{zone}.zone").write_text(_zone_file(zone))
            signing = ' dnssec-policy "fast"; inline-signing yes;' if signed else ""
            blocks.append(
                f'zone "{zone}" {{ type primary; file "{zone}.zone";{signing} '
                f'allow-update {{ key "{KEY_NAME}"; }}; }};'
            )
        (directory / "named.conf").write_text("\n".join(blocks) + "\n")

    def _write_resolver(self) -> None:
        directory = self._resolver_dir
        blocks = [
            "options {",
            *_common_options(directory, f"port {self.resolver_port} {{ {RESOLVER_HOST}; }}"),
            "\trecursion yes;\n\tallow-recursion { 127.0.0.0/8; };\n\tallow-query { any; };",
            "\tdnssec-validation yes;",
            f"\tforward only;\n\tforwarders {{ 127.0.0.1 port {self.auth_port}; }};",
            "\tqname-minimization off;",
            "\tmax-cache-ttl 1;\n\tmax-ncache-ttl 0;",
            "\tstale-answer-enable no;\n\tmax-cache-size 8m;",
            "};",
            "controls { };",
            f"trust-anchors {{ {self.trust_anchor}; }};",
        ]
        (directory / "named.conf").write_text("\n".join(blocks) + "\n")

    def _signed_key(self) -> str | None:
        """The zone's key-signing key as a ``static-key`` anchor, once BIND serves it signed."""
        query = dns.message.make_query(fqdn(SIGNED_ZONE), "DNSKEY", want_dnssec=True)
        try:
            response = dns.query.udp(query, "127.0.0.1", port=self.auth_port, timeout=0.5)
        except (OSError, dns.exception.DNSException):
            return None
        keys = response.get_rrset(
            response.answer,
            dns.name.from_text(fqdn(SIGNED_ZONE)),
            dns.rdataclass.IN,
            dns.rdatatype.DNSKEY,
        )
        signed = any(r.rdtype == dns.rdatatype.RRSIG for r in response.answer)
        if keys is None or not signed:
            return None
        for key in keys:
            assert isinstance(key, dns.rdtypes.ANY.DNSKEY.DNSKEY)
            if key.flags & 0x0001:  # SEP: the KSK (here the CSK)
                text = base64.b64encode(key.key).decode()
                return (
                    f'"{fqdn(SIGNED_ZONE)}" static-key {key.flags} {key.protocol} '
                    f'{int(key.algorithm)} "{text}"'
                )
        return None

    def start(self) -> None:
        """Start the authoritative server, wait until it serves the zone signed, then start
        the resolver trusting that zone's key and wait until it answers."""
        self._auth.start()
        wait_for(
            lambda: all(answers_soa(self.auth, z) for z in (SIGNED_ZONE, PLAIN_ZONE)),
            "named (DANE authoritative)",
            self._auth,
        )
        wait_for(lambda: self._signed_key() is not None, "the signed zone", self._auth)
        self.trust_anchor = self._signed_key() or ""
        self._write_resolver()
        self._resolver.start()
        wait_for(
            lambda: self.validated(SIGNED_ZONE, "SOA")[1],
            "the validating resolver",
            self._resolver,
        )

    def stop(self) -> None:
        """Stop both servers."""
        self._resolver.stop()
        self._auth.stop()

    def validated(self, name: str, rdtype: str) -> tuple[list[str], bool]:
        """Ask the validating resolver (DO set): the answer's ``rdtype`` records as text and
        whether the AD bit was set; ``([], False)`` when it does not answer."""
        query = dns.message.make_query(fqdn(name), rdtype, want_dnssec=True)
        try:
            response = dns.query.udp(query, RESOLVER_HOST, port=self.resolver_port, timeout=1)
        except (OSError, dns.exception.DNSException):
            return [], False
        wanted = dns.rdatatype.from_text(rdtype)
        records = sorted(rd.to_text() for rs in response.answer if rs.rdtype == wanted for rd in rs)
        return records, bool(response.flags & dns.flags.AD)

    def nsupdate(self, *commands: str) -> None:
        """Run ``nsupdate -k <key>`` against the authoritative server with ``commands`` (e.g.
        ``"update add _25._tcp.mail.example.test. 1 IN TLSA 3 1 1 ab..."``), then ``send``."""
        host, port = self.auth
        script = "\n".join([f"server {host} {port}", *commands, "send", ""])
        done = subprocess.run(
            [self._nsupdate, "-k", str(self.key_file)],
            input=script,
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"nsupdate failed ({done.returncode}): {done.stdout}{done.stderr}")

    def set_tlsa(self, owner: str, *records: str) -> None:
        """Replace the TLSA RRset of ``owner`` (e.g. ``_25._tcp.mail.example.test``) by
        ``records`` (``"3 1 1 <hex>"``); none: delete it. Through ``nsupdate``."""
        name = fqdn(owner)
        commands = [f"update delete {name} TLSA"]
        commands += [f"update add {name} {TTL} IN TLSA {record}" for record in records]
        self.nsupdate(*commands)

    def wait_tlsa(self, owner: str, records: list[str], timeout: float = 30) -> None:
        """Wait until the resolver returns exactly ``records`` for ``owner`` with the AD bit
        (``[]``: until it returns none)."""
        want = sorted(r.lower() for r in records)

        def seen() -> bool:
            got, ad = self.validated(owner, "TLSA")
            return sorted(r.lower() for r in got) == want and (ad or not want)

        wait_for(seen, f"TLSA {owner} = {want}", self._resolver, timeout=timeout)
