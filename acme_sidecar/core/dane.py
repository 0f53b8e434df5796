"""DANE for SMTP (RFC 7672): do the TLSA records of an MX name hold the key the server serves?

``compare`` compares one TLSA RRset (``_<port>._tcp.<host>``, as the validating resolver gave
it: its records and whether it came with the AD bit) with the certificate chain the mail server
serves (``Served``: the volume's top-level ``cert.pem``, which mailcow's Postfix presents). Only
the usages SMTP senders use count (RFC 7672 section 3.1.3): ``3`` (DANE-EE) against the leaf
and ``2`` (DANE-TA) against a CA certificate of the served chain. It also says when a match
cannot hold across renewals: a ``2 x x`` record pins one intermediate, and Let's Encrypt picks
one of several at random for each certificate (``core.dane_le``); a ``3 0 x`` record pins the
whole certificate, new at each renewal. The record it recommends is ``3 1 1`` of the served
key, which stays valid while the key is reused (``ACME_KEY_REUSE=y``).

Pure: no I/O, no logging; the lookup is ``adapters.tlsa``, the hook ``ops.dane``.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from acme_sidecar.core import dane_le

EE, TA = 3, 2  # DANE-EE, DANE-TA: the usages SMTP senders use
_DIGESTS = {1: hashlib.sha256, 2: hashlib.sha512}


@dataclass(frozen=True, slots=True)
class Tlsa:
    """One TLSA record: usage, selector, matching type and the association data (hex)."""

    usage: int
    selector: int
    mtype: int
    data: str

    def __str__(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data}"

    @property
    def usable(self) -> bool:
        """A record an SMTP sender can match: usage 2 or 3, selector 0 or 1, type 0 to 2."""
        return self.usage in (EE, TA) and self.selector in (0, 1) and self.mtype in (0, 1, 2)


@dataclass(frozen=True, slots=True)
class TlsaAnswer:
    """What the resolver said: the records (none: no RRset), whether the answer was
    DNSSEC-validated (the AD bit), or why the lookup failed; ``ttl``: the RRset's TTL in
    seconds (its signature's original TTL when that is larger: a cache counts it down)."""

    records: tuple[Tlsa, ...] = ()
    secure: bool = False
    error: str = ""
    ttl: int = 0


@dataclass(frozen=True, slots=True)
class _Cert:
    der: bytes
    spki: bytes
    name: str  # the subject's CN (or the whole subject)


@dataclass(frozen=True, slots=True)
class Served:
    """The chain a mail server serves: the leaf, then the CA certificates sent with it."""

    leaf: _Cert
    cas: tuple[_Cert, ...]
    key: str  # rsa | ec | "" (the leaf's key type, as Let's Encrypt picks its intermediates)

    @classmethod
    def from_pem(cls, chain: bytes) -> Served:
        """Read a PEM chain (leaf first); ``ValueError`` when it holds no certificate."""
        certs = x509.load_pem_x509_certificates(chain)
        parsed = [_cert(c) for c in certs]
        public = certs[0].public_key()
        kind = "rsa" if isinstance(public, rsa.RSAPublicKey) else ""
        kind = "ec" if isinstance(public, ec.EllipticCurvePublicKey) else kind
        return cls(parsed[0], tuple(parsed[1:]), kind)

    def record(self) -> Tlsa:
        """The record to publish: ``3 1 1``, SHA-256 of the served key."""
        return Tlsa(EE, 1, 1, hashlib.sha256(self.leaf.spki).hexdigest())


def _cert(cert: x509.Certificate) -> _Cert:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    name = str(names[0].value) if names else cert.subject.rfc4514_string()
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return _Cert(cert.public_bytes(Encoding.DER), spki, name)


def association(cert: _Cert, selector: int, mtype: int) -> str:
    """The association data of ``cert`` for this selector and matching type (hex)."""
    content = cert.der if selector == 0 else cert.spki
    digest = _DIGESTS.get(mtype)
    return digest(content).hexdigest() if digest else content.hex()


def matches(record: Tlsa, cert: _Cert) -> bool:
    """Whether ``record`` (usable) holds ``cert``."""
    return record.usable and association(cert, record.selector, record.mtype) == record.data


class Status(enum.Enum):
    """What the TLSA RRset of one MX name and port says about the served key."""

    MATCH = "match"  # validated, and a usable record matches the served chain
    MISMATCH = "mismatch"  # validated, and no record matches: DANE senders defer mail
    ABSENT = "absent"  # no TLSA records: DANE is not in use for this name
    INSECURE = "insecure"  # records without the AD bit: senders ignore them
    UNKNOWN = "unknown"  # the lookup failed


@dataclass(frozen=True, slots=True)
class DaneResult:
    """The result for ``_<port>._tcp.<host>``: the status, one line saying why, advice when a
    match will not hold across renewals (else ""), the records that matched, and the record to
    publish for the served key."""

    host: str
    port: int
    status: Status
    reason: str
    advice: str = ""
    matched: tuple[str, ...] = ()
    record: str = ""

    @property
    def owner(self) -> str:
        """The TLSA owner name, ``_25._tcp.mail.example.org``."""
        return f"_{self.port}._tcp.{self.host}"


def compare(host: str, port: int, answer: TlsaAnswer, served: Served) -> DaneResult:
    """Compare the TLSA RRset of ``_<port>._tcp.<host>`` with the served chain."""
    owner = f"_{port}._tcp.{host}"
    publish = f"{owner}. IN TLSA {served.record()}"

    def result(
        status: Status, reason: str, advice: str = "", matched: tuple[str, ...] = ()
    ) -> DaneResult:
        return DaneResult(host, port, status, reason, advice, matched, publish)

    if answer.error:
        return result(Status.UNKNOWN, f"the TLSA lookup of {owner} failed: {answer.error}")
    if not answer.records:
        return result(Status.ABSENT, f"no TLSA records at {owner}: DANE is not in use for it")
    if not answer.secure:
        return result(
            Status.INSECURE,
            f"the TLSA records at {owner} came without DNSSEC validation (no AD bit): senders "
            "ignore them. DANE needs the zone signed with DNSSEC and a validating resolver "
            "(ACME_DANE_RESOLVER)",
        )
    ee = [r for r in answer.records if r.usage == EE and matches(r, served.leaf)]
    ta = [r for r in answer.records if r.usage == TA and any(matches(r, c) for c in served.cas)]
    matched = tuple(str(r) for r in (*ee, *ta))
    advice = _advice(answer.records, ee, served, publish)
    if not matched:
        unusable = sum(1 for r in answer.records if not r.usable)
        note = f" ({unusable} of them of a kind SMTP senders do not use)" if unusable else ""
        return result(
            Status.MISMATCH,
            f"none of the {len(answer.records)} TLSA record(s) at {owner}{note} matches the "
            f"served certificate: senders that use DANE defer mail to it. Publish {publish}",
            advice,
        )
    return result(
        Status.MATCH,
        f"the TLSA records at {owner} match the served certificate ({matched[0]})",
        advice,
        matched,
    )


def _advice(records: tuple[Tlsa, ...], ee: list[Tlsa], served: Served, publish: str) -> str:
    """Why the RRset will not hold across renewals, or "": it holds when a ``3 1 x`` record
    matches the served key (kept with key reuse), or when its ``2 1 x`` records cover every
    intermediate the CA may issue the next certificate from."""
    if any(r.selector == 1 for r in ee):
        return ""
    pins = [r for r in records if r.usage == TA and r.usable]
    whole = [r for r in ee if r.selector == 0]
    if pins:
        return _issuer_advice(pins, served, publish)
    if whole:
        return (
            f"{whole[0]} pins the whole certificate, which is new at every renewal: the "
            f"record breaks at the next one. Publish {publish} (the key, kept across renewals "
            "with ACME_KEY_REUSE=y) instead"
        )
    return ""


def _issuer_advice(pins: list[Tlsa], served: Served, publish: str) -> str:
    """The advice for ``2 x x`` records: which intermediates the next certificate may come
    from and whether the records cover them all."""
    issuer = next(
        (le for c in served.cas if (le := dane_le.by_key(hashlib.sha256(c.spki).hexdigest()))),
        None,
    )
    if issuer is not None:
        pool = dane_le.issuing(served.key or issuer.key)
        covered = {
            i.name
            for i in pool
            for r in pins
            if r.selector == 1 and r.data in (i.spki_sha256, i.spki_sha512)
        }
        if {i.name for i in pool} <= covered:
            return ""
        active = ", ".join(i.name for i in pool if i.state == "active")
        backup = ", ".join(i.name for i in pool if i.state == "backup")
        why = (
            f"{pins[0]} pins the issuing CA's key (now {issuer.name}); since 2025-11 Let's "
            f"Encrypt issues each certificate from one of {active} at random"
            + (f" (and may move to {backup} without warning)" if backup else "")
        )
    else:
        name = served.cas[0].name if served.cas else "the issuer"
        why = (
            f"{pins[0]} pins the issuing CA's key (now {name}), which the CA may change at any "
            "renewal (Let's Encrypt picks one of several intermediates at random since 2025-11)"
        )
    return (
        f"{why}, so the record breaks at a random renewal. Publish {publish} (the key, kept "
        "across renewals with ACME_KEY_REUSE=y) instead"
    )
