"""A throw-away CA (root and intermediate) that signs leaves for CSRs, honestly or not.

``FakeCA`` (``test_acme_adapter``) answers a certificate download with ``Signer.chain``; the
tests of the issued-certificate check replace it by one of the dishonest answers here (other
names, another key, expired, the chain out of order or signed by someone else).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

Key = ec.EllipticCurvePrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca_cert(
    subject: str, key: Key, issuer: str, issuer_key: Key, now: datetime
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=365))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@dataclass
class Signer:
    """A root and an intermediate; ``leaf`` signs one leaf with the intermediate."""

    root_key: Key = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    inter_key: Key = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    root: x509.Certificate = field(init=False)
    inter: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        now = datetime.now(UTC)
        self.root = _ca_cert("Fake Root", self.root_key, "Fake Root", self.root_key, now)
        self.inter = _ca_cert("Fake Issuing CA", self.inter_key, "Fake Root", self.root_key, now)

    def leaf(
        self,
        names: Sequence[str],
        public_key: CertificatePublicKeyTypes,
        not_before: datetime,
        not_after: datetime,
    ) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.inter.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.inter_key.public_key()),
                False,
            )
            .sign(self.inter_key, hashes.SHA256())
        )

    def chain(self, csr: x509.CertificateSigningRequest, now: datetime) -> bytes:
        """The honest answer: the CSR's names and key, 90 days from a minute ago, leaf first."""
        return pem(self.leaf(csr_names(csr), csr.public_key(), *window(now)), self.inter)


# a dishonest answer: (signer, csr, now) -> the PEM chain the CA sends
Dishonest = Callable[[Signer, x509.CertificateSigningRequest, datetime], bytes]


def window(now: datetime, days: int = 90) -> tuple[datetime, datetime]:
    return now - timedelta(minutes=1), now + timedelta(days=days)


def csr_names(csr: x509.CertificateSigningRequest) -> list[str]:
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(n) for n in san.get_values_for_type(x509.DNSName)]


def other_names(*names: str) -> Dishonest:
    """A certificate for ``names`` instead of the ordered ones (the right key)."""

    def answer(s: Signer, csr: x509.CertificateSigningRequest, now: datetime) -> bytes:
        return pem(s.leaf(names, csr.public_key(), *window(now)), s.inter)

    return answer


def another_key(s: Signer, csr: x509.CertificateSigningRequest, now: datetime) -> bytes:
    """The ordered names, but somebody else's public key."""
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return pem(s.leaf(csr_names(csr), key, *window(now)), s.inter)


def expired(s: Signer, csr: x509.CertificateSigningRequest, now: datetime) -> bytes:
    """The ordered names and key, valid for 90 days that ended an hour ago."""
    start = now - timedelta(days=90, hours=1)
    return pem(s.leaf(csr_names(csr), csr.public_key(), start, now - timedelta(hours=1)), s.inter)


def not_yet_valid(s: Signer, csr: x509.CertificateSigningRequest, now: datetime) -> bytes:
    """The ordered names and key, valid from an hour from now."""
    start = now + timedelta(hours=1)
    return pem(s.leaf(csr_names(csr), csr.public_key(), start, start + timedelta(days=90)), s.inter)


def intermediate_first(s: Signer, csr: x509.CertificateSigningRequest, now: datetime) -> bytes:
    """The honest leaf and intermediate, the intermediate sent first."""
    return pem(s.inter, s.leaf(csr_names(csr), csr.public_key(), *window(now)))


def wrong_issuer(s: Signer, csr: x509.CertificateSigningRequest, now: datetime) -> bytes:
    """The honest leaf followed by an intermediate of the same name but another key."""
    other = Signer(root_key=s.root_key)
    return pem(s.leaf(csr_names(csr), csr.public_key(), *window(now)), other.inter)
