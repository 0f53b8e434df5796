"""dns_nsupdate: RFC 2136 dynamic updates, TSIG-signed, through dnspython.

``NSUPDATE_KEY`` names a key file as acme.sh hands it to ``nsupdate -k``: BIND's ``key``
statement (what ``tsig-keygen`` and ``ddns-confgen`` print) or the legacy
``K<name>.+<alg>+<id>.private`` file of ``dnssec-keygen``. May touch: the key file (when the
provider is built) and the DNS servers named by ``NSUPDATE_SERVER`` over TCP.
"""

from __future__ import annotations

import binascii
import re
import socket
import stat
from collections.abc import Mapping
from pathlib import Path

import dns.exception
import dns.name
import dns.query
import dns.rcode
import dns.tsig
import dns.update

from acme_sidecar.adapters.dns01.base import DnsUpdateError
from acme_sidecar.config.dns01 import NsupdateConf

_KEY_CLAUSE = re.compile(r'key\s+"?([^"\s{]+)"?\s*\{(.*?)\}\s*;', re.IGNORECASE | re.DOTALL)
_ALGORITHM = re.compile(r"algorithm\s+\"?([A-Za-z0-9-]+)\"?\s*;", re.IGNORECASE)
_SECRET = re.compile(r'secret\s+"([^"]+)"\s*;', re.IGNORECASE)
# dnssec-keygen's numbers for HMAC keys (the legacy .private format)
_LEGACY_ALGORITHMS = {
    "157": "hmac-md5",
    "161": "hmac-sha1",
    "162": "hmac-sha224",
    "163": "hmac-sha256",
    "164": "hmac-sha384",
    "165": "hmac-sha512",
}
# the names key files write for HMAC-MD5; dnspython knows it as HMAC-MD5.SIG-ALG.REG.INT
_MD5_NAMES = ("hmac-md5", "hmac-md5.sig-alg.reg.int", "157")
_HMACS = tuple(str(a).rstrip(".") for a in dns.tsig.mac_sizes if a != dns.tsig.GSS_TSIG)


class TsigKey:
    """A TSIG key: name, algorithm, secret (base64). ``repr`` hides the secret."""

    __slots__ = ("algorithm", "name", "secret")

    def __init__(self, name: str, algorithm: str, secret: str) -> None:
        self.name = name
        self.algorithm = algorithm.lower()
        self.secret = secret

    def tsig(self) -> dns.tsig.Key | str:
        """The dnspython key, or why this one cannot be used (never holding the secret)."""
        try:
            if self.algorithm in _MD5_NAMES:
                algorithm = dns.tsig.HMAC_MD5
            else:
                algorithm = dns.name.from_text(self.algorithm)
            if algorithm not in dns.tsig.mac_sizes or algorithm == dns.tsig.GSS_TSIG:
                valid = ", ".join(a for a in _HMACS if not a.startswith("HMAC-MD5"))
                return f"algorithm {self.algorithm!r} is not supported (valid: hmac-md5, {valid})"
            return dns.tsig.Key(self.name, self.secret, algorithm)
        except (binascii.Error, ValueError, dns.exception.DNSException) as exc:
            return f"key {self.name!r}: the secret is not base64 ({type(exc).__name__})"


def parse_key_file(text: str, filename: str = "") -> TsigKey | str:
    """The key in ``text`` (BIND ``key`` statement or a legacy ``.private`` file), or why none
    is there. The message never holds the secret."""
    clause = _KEY_CLAUSE.search(text)
    if clause:
        body = clause.group(2)
        algorithm = _ALGORITHM.search(body)
        secret = _SECRET.search(body)
        if not algorithm or not secret:
            return "its key statement lacks an algorithm or a secret"
        return TsigKey(clause.group(1).rstrip("."), algorithm.group(1), secret.group(1))
    fields = dict(
        (k.strip().lower(), v.strip())
        for k, _, v in (line.partition(":") for line in text.splitlines())
        if v
    )
    legacy = re.fullmatch(r"K(.+)\.\+(\d{3})\+\d+\.private", Path(filename).name)
    if "key" in fields and legacy and legacy.group(2) in _LEGACY_ALGORITHMS:
        return TsigKey(
            legacy.group(1).rstrip("."), _LEGACY_ALGORITHMS[legacy.group(2)], fields["key"]
        )
    return (
        'it holds neither a key statement (key "name" { algorithm hmac-sha256; secret "..."; };) '
        "nor a dnssec-keygen K<name>.+<alg>+<id>.private file"
    )


def load_key(path: Path) -> TsigKey | str:
    """Read and parse ``NSUPDATE_KEY``; a message naming the path when that fails."""
    try:
        if path.stat().st_mode & stat.S_IROTH:
            return (
                f"NSUPDATE_KEY {path} is readable by everyone: run chmod 600 on it "
                "(it is not used until then)"
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return f"NSUPDATE_KEY {path} cannot be read: {getattr(exc, 'strerror', None) or exc}"
    parsed = parse_key_file(text, path.name)
    if isinstance(parsed, str):
        return f"NSUPDATE_KEY {path}: {parsed}"
    built = parsed.tsig()  # the keyring is built here so that a bad key is a message, not a crash
    if isinstance(built, str):
        return f"NSUPDATE_KEY {path}: {built}"
    return parsed


class NsupdateProvider:
    """RFC 2136 updates to every server of ``NSUPDATE_SERVER`` (as acme.sh sends them)."""

    def __init__(self, conf: NsupdateConf, key: TsigKey | None, timeout: float = 10.0) -> None:
        self._conf = conf
        self._key = key
        self._timeout = timeout
        self._tsig: dns.tsig.Key | None = None
        if key is not None:
            built = key.tsig()
            if isinstance(built, str):  # load_key refuses such keys already
                raise ValueError(built)
            self._tsig = built

    @property
    def label(self) -> str:
        """``dns_nsupdate server:port`` (and the key's name)."""
        servers = ",".join(self._conf.servers)
        key = f" key {self._key.name}" if self._key else " without TSIG"
        return f"dns_nsupdate {servers}:{self._conf.port}{key}"

    def add_txt(self, zone: str, records: Mapping[str, tuple[str, ...]]) -> None:
        """``update add NAME TTL TXT VALUE`` for each value, in one update message."""
        self._send(zone, "TXT", records, add=True, ttl=self._conf.ttl)

    def remove_txt(self, zone: str, records: Mapping[str, tuple[str, ...]]) -> None:
        """``update delete NAME TXT VALUE`` for each value, in one update message."""
        self._send(zone, "TXT", records, add=False)

    def add_records(
        self, zone: str, rtype: str, records: Mapping[str, tuple[str, ...]], ttl: int
    ) -> None:
        """``update add NAME TTL TYPE VALUE`` for each value, in one update message."""
        self._send(zone, rtype, records, add=True, ttl=ttl)

    def remove_records(self, zone: str, rtype: str, records: Mapping[str, tuple[str, ...]]) -> None:
        """``update delete NAME TYPE VALUE`` for each value, in one update message."""
        self._send(zone, rtype, records, add=False)

    def _send(
        self,
        zone: str,
        rtype: str,
        records: Mapping[str, tuple[str, ...]],
        *,
        add: bool,
        ttl: int = 0,
    ) -> None:
        update = dns.update.UpdateMessage(
            self._conf.zone or zone,
            keyring=self._tsig,
        )
        for name, values in records.items():
            owner = dns.name.from_text(name)
            for value in values:
                text = f'"{value}"' if rtype == "TXT" else value
                try:
                    if add:
                        update.add(owner, ttl, rtype, text)
                    else:
                        update.delete(owner, rtype, text)
                except (dns.exception.DNSException, ValueError) as exc:
                    raise DnsUpdateError(
                        f"{rtype} {value!r} at {name} is not a record: {exc}"
                    ) from exc
        for server in self._conf.servers:
            self._send_to(server, update, zone)

    def _send_to(self, server: str, update: dns.update.UpdateMessage, zone: str) -> None:
        where = f"{server}:{self._conf.port}"
        try:
            address = socket.getaddrinfo(server, self._conf.port, type=socket.SOCK_STREAM)[0][4][0]
        except OSError as exc:
            raise DnsUpdateError(
                f"NSUPDATE_SERVER {server} does not resolve: {exc.strerror}", transient=True
            ) from exc
        try:
            response = dns.query.tcp(
                update, str(address), timeout=self._timeout, port=self._conf.port
            )
        except (dns.tsig.PeerBadKey, dns.tsig.PeerBadSignature, dns.tsig.PeerBadTime) as exc:
            key = self._key.name if self._key else "(none)"
            raise DnsUpdateError(
                f"{where} refused the TSIG key {key} ({type(exc).__name__}): "
                "check NSUPDATE_KEY against the server's key"
            ) from exc
        except dns.tsig.BadSignature as exc:
            raise DnsUpdateError(
                f"{where} answered with a TSIG signature that does not verify: check NSUPDATE_KEY"
            ) from exc
        except (OSError, dns.exception.DNSException) as exc:
            raise DnsUpdateError(
                f"update to {where} failed: {type(exc).__name__}: {exc}", transient=True
            ) from exc
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            text = dns.rcode.to_text(rcode)
            hint = {
                "REFUSED": "the server does not allow updates with this key to this zone",
                "NOTAUTH": f"the server is not authoritative for {zone} or refused the key",
                "NOTZONE": f"the name is not in zone {zone} (NSUPDATE_ZONE?)",
                "SERVFAIL": "the server failed",
            }.get(text, "see the server's log")
            raise DnsUpdateError(f"{where} answered {text} to the update of {zone}: {hint}")
