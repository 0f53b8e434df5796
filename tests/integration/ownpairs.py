"""Own certificates for the tests: a private test CA and server pairs it signs."""

from __future__ import annotations

import datetime
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from acme_sidecar.adapters.volume.pem import PrivateKey
from tests.certs import CA, SERVER_AUTH, cert_pem, key_pem, leaf, name, new_key, now


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
        start = now() - datetime.timedelta(days=400)
        self.ca = CA.new(
            label,
            organization="Example Corp",
            not_before=start,
            not_after=start + datetime.timedelta(days=4050),
        )

    @property
    def name(self) -> x509.Name:
        return self.ca.name

    @property
    def key(self) -> PrivateKey:
        return self.ca.key

    @property
    def cert(self) -> x509.Certificate:
        return self.ca.cert

    def issue(self, names: list[str], *, days_left: float = 60, lifetime: float = 90) -> OwnPair:
        """A pair for ``names`` that expires in ``days_left`` days, ``lifetime`` days long."""
        key = new_key()
        end = now() + datetime.timedelta(days=days_left)
        cert = leaf(
            names,
            key=key,
            issuer=self.ca,
            not_before=end - datetime.timedelta(days=lifetime),
            not_after=end,
            usages=SERVER_AUTH,
        )
        return OwnPair(cert_pem(cert), self.ca.pem, key_pem(key), cert.serial_number)


ECDSA_SPKI_OID = bytes.fromhex("06072a8648ce3d0201")  # id-ecPublicKey, DER
UNKNOWN_SPKI_OID = bytes.fromhex("06072a8648ce3d0209")  # 1.2.840.10045.2.9: no such algorithm
BAD_SAN = b"\x30\x03\x87\x01\x00"  # GeneralNames { iPAddress: 0 bytes }


def damaged(kind: str, names: list[str], *, days_left: float = 60) -> OwnPair:
    """A pair that loads as PEM but cannot be read whole: ``bad_san`` (its subjectAltName
    holds a 0-byte IP address: ``ValueError`` when the extensions are read) or
    ``unknown_spki`` (its key algorithm is an unknown OID: ``UnsupportedAlgorithm`` from
    ``public_key()``). Issued by a fresh ``OwnCA``; the chain holds the leaf and the CA."""
    ca = OwnCA().ca
    key = new_key()
    end = now() + datetime.timedelta(days=days_left)
    start = end - datetime.timedelta(days=90)
    if kind == "bad_san":
        san = x509.UnrecognizedExtension(x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME, BAD_SAN)
        cert = leaf(
            [],
            key=key,
            issuer=ca,
            subject=name(names[0]),
            extra=[san],
            not_before=start,
            not_after=end,
        )
        pem = cert_pem(cert)
    elif kind == "unknown_spki":
        cert = leaf(names, key=key, issuer=ca, not_before=start, not_after=end)
        der = cert.public_bytes(serialization.Encoding.DER)
        assert der.count(ECDSA_SPKI_OID) == 1  # the leaf's key; the signature is ecdsa-with-...
        edited = x509.load_der_x509_certificate(der.replace(ECDSA_SPKI_OID, UNKNOWN_SPKI_OID))
        pem = cert_pem(edited)
    else:
        raise ValueError(f"unknown damage {kind!r}")
    return OwnPair(pem, ca.pem, key_pem(key), cert.serial_number)


SNAKE_OIL_SUBJECT = "/C=DE/ST=NRW/L=Willich/O=mailcow/OU=mailcow/CN={hostname}"


def snake_oil(hostname: str, example: Path, volume: Path) -> None:
    """mailcow's snake-oil pair, made and copied as ``generate_config.sh`` does: ``openssl req
    -x509 -newkey rsa:4096 ... -days 365 -subj ".../CN=<hostname>" -sha256 -nodes`` into
    ``ssl-example/``, then ``cp -n -d ssl-example/*.pem`` into the volume. Self-signed, no
    subjectAltName, no chain."""
    example.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:4096",
            "-keyout", str(example / "key.pem"), "-out", str(example / "cert.pem"),
            "-days", "365", "-subj", SNAKE_OIL_SUBJECT.format(hostname=hostname),
            "-sha256", "-nodes",
        ],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    subprocess.run(
        ["cp", "-n", "-d", str(example / "cert.pem"), str(example / "key.pem"), str(volume)],
        check=True,
        timeout=30,
    )
