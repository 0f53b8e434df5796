"""PEM parsing: every certificate and key read from the volume is parsed here, inside one guard.

cryptography parses lazily: a certificate that loads can still raise when its extensions are
read (a subjectAltName holding a 0-byte IP address: ``ValueError``; a duplicate extension) or
its public key (an unknown SPKI algorithm: ``UnsupportedAlgorithm``). ``read_cert`` therefore
reads everything the sidecar needs of a certificate at once, inside ``guard``: a damaged file is
one ``Unreadable`` (a ``StoreError``) that says what is wrong, never an exception later in a
cycle. The loaders are also the checks a certificate or key passes before it is renamed into
place (``files.write_new``). Touches no file: it parses the bytes it is given.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from acme_sidecar.core.ari import cert_id
from acme_sidecar.core.errors import StoreError
from acme_sidecar.core.own import Link
from acme_sidecar.core.profiles import KEY_TYPES

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
_PRIVATE = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)
PARSE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,  # UnicodeError too
    TypeError,
    OverflowError,
    UnsupportedAlgorithm,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
    x509.InvalidVersion,
)
"""What cryptography raises on bytes that are not a well-formed certificate or key."""
_NOT_SIGNED: tuple[type[Exception], ...] = (*PARSE_ERRORS, InvalidSignature)


class Unreadable(StoreError):
    """A file of the volume that does not parse; the message says what is wrong with it,
    ``file`` which file it is (when the caller knows)."""

    def __init__(self, message: str, *, file: Path | None = None) -> None:
        super().__init__(message)
        self.file = file


@contextlib.contextmanager
def guard(what: str) -> Iterator[None]:
    """Turn every parse error raised inside into one ``Unreadable``: "``what``: the error"."""
    try:
        yield
    except Unreadable:
        raise
    except StoreError as exc:
        raise Unreadable(f"{what}: {exc}") from exc
    except PARSE_ERRORS as exc:
        raise Unreadable(f"{what} ({type(exc).__name__}: {str(exc)[:200]})") from exc


# --- what a PEM file must hold -----------------------------------------------------------


def load_chain(data: bytes) -> list[x509.Certificate]:
    """Parse a PEM chain, leaf first; raise ``StoreError`` when it holds no certificate."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except PARSE_ERRORS as exc:
        raise Unreadable(f"not a PEM certificate chain: {str(exc)[:200]}") from exc
    return certs


def load_key(data: bytes, *, check: bool = False) -> PrivateKey:
    """Parse a PEM private key (RSA or EC); raise ``StoreError`` otherwise.

    The RSA consistency check costs about half a second for a 4096-bit key, so it runs only
    with ``check`` (for a key about to sign); comparing public keys does not need it.
    """
    try:
        key = serialization.load_pem_private_key(
            data, password=None, unsafe_skip_rsa_key_validation=not check
        )
    except PARSE_ERRORS as exc:
        raise Unreadable("not a PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise Unreadable(f"unsupported key type {type(key).__name__}")
    return key


def spki(of: PrivateKey | x509.Certificate) -> bytes:
    """The DER SubjectPublicKeyInfo of a private key or a certificate."""
    return of.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_matches(cert: x509.Certificate, key: PrivateKey) -> bool:
    """Whether ``cert`` was issued for ``key`` (a public key that cannot be read is not)."""
    try:
        return spki(cert) == spki(key)
    except PARSE_ERRORS:
        return False


def cert_sans(cert: x509.Certificate) -> tuple[str, ...]:
    """The DNS names of ``cert``'s subjectAltName extension (``Unreadable`` when malformed)."""
    with guard("its extensions are malformed"):
        try:
            ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        except x509.ExtensionNotFound:
            return ()
        value = ext.value
        if not isinstance(value, x509.SubjectAlternativeName):
            return ()
        return tuple(value.get_values_for_type(x509.DNSName))


def kind_of(key: object) -> str:
    """The key type of a private or public key (``rsa4096``, ``ec256``...); "" for another
    kind (an RSA size or a curve not in ``KEY_TYPES``, Ed25519...)."""
    public = key.public_key() if isinstance(key, _PRIVATE) else key
    if isinstance(public, rsa.RSAPublicKey):
        kind = f"rsa{public.key_size}"
    elif isinstance(public, ec.EllipticCurvePublicKey):
        kind = {"secp256r1": "ec256", "secp384r1": "ec384"}.get(public.curve.name, "")
    else:
        return ""
    return kind if kind in KEY_TYPES else ""


def client_auth(cert: x509.Certificate) -> bool:
    """Whether ``cert`` may be used for TLS client authentication: its extended key usage
    lists clientAuth (or it has no extended key usage at all, which allows any use)."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return ExtendedKeyUsageOID.CLIENT_AUTH in usage


# --- a certificate, read whole ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CertFacts:
    """Everything the sidecar reads from a PEM certificate chain (its leaf, and with
    ``read_cert(links=True)`` who signed each certificate of the chain)."""

    subject: str
    issuer: str
    issuer_org: str  # the O= of the leaf's issuer
    names: tuple[str, ...]  # DNS names of the subjectAltName
    not_before: datetime
    not_after: datetime
    serial: int
    cert_id: str  # ARI CertID; "" without an authority key identifier
    key_type: str  # "" for a key type not in KEY_TYPES
    client_auth: bool
    spki: bytes  # DER SubjectPublicKeyInfo of the leaf
    links: tuple[Link, ...] = ()
    self_signed: bool = False
    common_name: str = ""  # the subject's CN (read with ``links``: for the top-level pair)


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except _NOT_SIGNED:
        return False
    return True


def _org(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(values[0].value) if values else ""


def _cn(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def read_cert(data: bytes, *, links: bool = False) -> CertFacts:
    """Parse the PEM chain ``data`` whole; ``Unreadable`` says what is wrong with it.

    ``links``: also check each certificate's signature by the next one (for the top-level
    pair; a certificate directory does not need it, and it costs a signature check each)."""
    chain = load_chain(data)
    leaf = chain[0]
    with guard("its extensions are malformed"):
        leaf.extensions  # noqa: B018 - parsed here, once, so that a bad one is named here
    with guard("its public key cannot be read"):
        public = spki(leaf)
        key_type = kind_of(leaf.public_key())
    with guard("its fields are malformed"):
        subject, issuer = leaf.subject.rfc4514_string(), leaf.issuer.rfc4514_string()
        facts = CertFacts(
            subject=subject,
            issuer=issuer,
            issuer_org=_org(leaf.issuer),
            names=cert_sans(leaf),
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
            serial=leaf.serial_number,
            cert_id=cert_id(leaf),
            key_type=key_type,
            client_auth=client_auth(leaf),
            spki=public,
        )
        if not links:
            return facts
        chained = tuple(
            Link(
                c.subject.rfc4514_string(),
                c.issuer.rfc4514_string(),
                _signed_by(c, chain[i + 1]) if i + 1 < len(chain) else None,
            )
            for i, c in enumerate(chain)
        )
        self_signed = leaf.issuer == leaf.subject and _signed_by(leaf, leaf)
        common_name = _cn(leaf.subject)
    return replace(facts, links=chained, self_signed=self_signed, common_name=common_name)


def key_spki(data: bytes) -> bytes:
    """The SubjectPublicKeyInfo of PEM private key ``data`` (``Unreadable`` otherwise)."""
    with guard("not a usable private key"):
        return spki(load_key(data))
