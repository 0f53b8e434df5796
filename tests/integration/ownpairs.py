"""Own certificates for the tests: a private test CA and server pairs it signs."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from tests.certs import CA, SERVER_AUTH, cert_pem, key_pem, leaf, new_key, now


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
