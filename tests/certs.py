"""The tests' one certificate factory: keys, a CA, and leaves for names.

``leaf(names)`` is a self-signed ec256 certificate valid from five minutes ago for 90 days;
keyword arguments change the key (or its type), the validity window, the issuer (a ``CA``), the
serial, the subject, the extended key usages, IP addresses and the authority key identifier.
``CA`` is a root that may sign leaves (basic constraints, key usage and key identifiers set, so
strict TLS clients accept the chains). ``make_key``/``make_cert`` give PEM for the volume tests.
Real crypto throughout; nothing here touches the disk except ``write_pair``.
(demo/dockerapi/server.py keeps a builder of its own: the demo mounts that one file alone.)
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from acme_sidecar.adapters.volume import keys
from acme_sidecar.adapters.volume.pem import PrivateKey

SERVER_AUTH = (ExtendedKeyUsageOID.SERVER_AUTH,)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def new_key(kind: str = "ec256") -> PrivateKey:
    """A fresh private key of ``kind`` (``ec256``, ``ec384``, ``rsa2048``... as the product)."""
    return keys.generate(kind)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def name(common_name: str | None, organization: str | None = None) -> x509.Name:
    """``O=organization, CN=common_name`` (either left out when None)."""
    parts = []
    if organization is not None:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if common_name is not None:
        parts.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(parts)


@dataclass(frozen=True, slots=True)
class CA:
    """A self-signed root that signs leaves."""

    key: PrivateKey
    cert: x509.Certificate

    @property
    def name(self) -> x509.Name:
        return self.cert.subject

    @property
    def pem(self) -> bytes:
        return cert_pem(self.cert)

    @classmethod
    def new(
        cls,
        label: str = "Test CA",
        *,
        organization: str | None = None,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        key_type: str = "ec256",
    ) -> CA:
        key = new_key(key_type)
        subject = name(label, organization)
        start = not_before or now() - datetime.timedelta(hours=1)
        usage = x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=True,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(not_after or start + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)


def leaf(
    names: Sequence[str],
    *,
    key: PrivateKey | None = None,
    key_type: str = "ec256",
    issuer: CA | None = None,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    days: float = 90,
    serial: int | None = None,
    subject: x509.Name | None = None,
    usages: Sequence[x509.ObjectIdentifier] | None = None,
    ips: Sequence[str] = (),
    key_id: bytes | None = None,
    extra: Sequence[x509.ExtensionType] = (),
) -> x509.Certificate:
    """A certificate for ``names`` (SANs; the subject is ``CN=names[0]`` unless given).

    ``key`` (else a new ``key_type`` key); signed by ``issuer`` (else by its own key, issuer =
    subject); valid from ``not_before`` (five minutes ago) to ``not_after`` (``days`` later);
    ``usages`` the extended key usages (None: no extension); ``ips`` more SANs;
    ``key_id`` the authority key identifier (else the issuer's, when there is an issuer);
    ``extra`` more extensions, as they are (a damaged one included).
    """
    key = key or new_key(key_type)
    subject = subject if subject is not None else name(names[0] if names else None)
    start = not_before or now() - datetime.timedelta(minutes=5)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.name if issuer else subject)
        .public_key(key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(not_after or start + datetime.timedelta(days=days))
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usages is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    if key_id is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier(key_id, None, None), False)
    elif issuer is not None:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key())
        builder = builder.add_extension(aki, critical=False)
    for extension in extra:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(issuer.key if issuer else key, hashes.SHA256())


def make_key() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A new ec256 key and its PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key, key_pem(key)


def make_cert(key: PrivateKey, names: Sequence[str], days: int = 90) -> bytes:
    """A self-signed PEM certificate for ``names`` on ``key``, valid from a minute ago."""
    start = now() - datetime.timedelta(minutes=1)
    return cert_pem(leaf(names, key=key, not_before=start, days=days))


def write_pair(directory: Path, names: list[str], domains_file: bool = True) -> int:
    """Write a self-signed ``cert.pem``/``key.pem`` for ``names`` (and ``domains``) into
    ``directory``, as an admin or another tool would; return the serial."""
    directory.mkdir(parents=True, exist_ok=True)
    key = new_key()
    cert = leaf(names, key=key, days=1)
    (directory / "key.pem").write_bytes(key_pem(key))
    (directory / "cert.pem").write_bytes(cert_pem(cert))
    if domains_file:
        (directory / "domains").write_text(" ".join(names))
    return cert.serial_number
