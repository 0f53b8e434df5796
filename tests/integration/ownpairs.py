"""Own certificates for the tests: a private test CA and server pairs it signs."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PEM = serialization.Encoding.PEM


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@dataclass(frozen=True)
class OwnPair:
    """A leaf with its chain (leaf, then the CA) and its key, as PEM."""

    leaf: bytes
    ca: bytes
    key: bytes
    serial: int

    @property
    def chain(self) -> bytes:
        """``cert.pem`` as mailcow wants it: the certificate, then its issuer."""
        return self.leaf + self.ca

    def write(self, directory: Path) -> None:
        """Put it in place as an admin does: ``cp`` the certificate, then the key."""
        (directory / "cert.pem").write_bytes(self.chain)
        (directory / "key.pem").write_bytes(self.key)


class OwnCA:
    """A self-signed root ("Own Test CA", O=Example Corp) that signs server certificates."""

    def __init__(self, label: str = "Own Test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Corp"),
                x509.NameAttribute(NameOID.COMMON_NAME, label),
            ]
        )
        now = datetime.datetime.now(datetime.UTC)
        self.name = name
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=400))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def issue(self, names: list[str], *, days_left: float = 60, lifetime: float = 90) -> OwnPair:
        """A pair for ``names`` that expires in ``days_left`` days, ``lifetime`` days long."""
        key = ec.generate_private_key(ec.SECP256R1())
        end = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=days_left)
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(end - datetime.timedelta(days=lifetime))
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .sign(self.key, hashes.SHA256())
        )
        return OwnPair(
            leaf.public_bytes(PEM), self.cert.public_bytes(PEM), _key_pem(key), leaf.serial_number
        )


ECDSA_SPKI_OID = bytes.fromhex("06072a8648ce3d0201")  # id-ecPublicKey, DER
UNKNOWN_SPKI_OID = bytes.fromhex("06072a8648ce3d0209")  # 1.2.840.10045.2.9: no such algorithm
BAD_SAN = b"\x30\x03\x87\x01\x00"  # GeneralNames { iPAddress: 0 bytes }


def damaged(kind: str, names: list[str], *, days_left: float = 60) -> OwnPair:
    """A pair that loads as PEM but cannot be read whole: ``bad_san`` (its subjectAltName
    holds a 0-byte IP address: ``ValueError`` when the extensions are read) or
    ``unknown_spki`` (its key algorithm is an unknown OID: ``UnsupportedAlgorithm`` from
    ``public_key()``). Issued by a fresh ``OwnCA``; the chain holds the leaf and the CA."""
    ca = OwnCA()
    key = ec.generate_private_key(ec.SECP256R1())
    end = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=days_left)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(end - datetime.timedelta(days=90))
        .not_valid_after(end)
    )
    if kind == "bad_san":
        san = x509.UnrecognizedExtension(x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME, BAD_SAN)
        leaf = builder.add_extension(san, False).sign(ca.key, hashes.SHA256())
        pem = leaf.public_bytes(PEM)
    elif kind == "unknown_spki":
        names_ext = x509.SubjectAlternativeName([x509.DNSName(n) for n in names])
        leaf = builder.add_extension(names_ext, False).sign(ca.key, hashes.SHA256())
        der = leaf.public_bytes(serialization.Encoding.DER)
        assert der.count(ECDSA_SPKI_OID) == 1  # the leaf's key; the signature is ecdsa-with-...
        edited = x509.load_der_x509_certificate(der.replace(ECDSA_SPKI_OID, UNKNOWN_SPKI_OID))
        pem = edited.public_bytes(PEM)
    else:
        raise ValueError(f"unknown damage {kind!r}")
    return OwnPair(pem, ca.cert.public_bytes(PEM), _key_pem(key), leaf.serial_number)
