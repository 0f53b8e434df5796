"""mailcow's DNS-01 volume as its acme.sh setup leaves it (the fixture of the takeover tests):
acme.sh's home in ``acme-sh/``, mailcow's own RSA keys in ``acme/``, the certificate installed
at the top and in the hostname's directory."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)

from tests.certs import CA, leaf
from tests.integration.dns01_env import HOST


def _openssl_ec_key(path: Path) -> None:
    """An ECDSA P-256 key as acme.sh makes it (openssl ecparam -genkey, EC PARAMETERS first)."""
    pem = subprocess.run(
        ["openssl", "ecparam", "-name", "prime256v1", "-genkey"],
        capture_output=True,
        check=True,
    ).stdout
    path.write_bytes(pem)
    path.chmod(0o600)


def spki(key_or_cert: Any) -> bytes:
    """The DER SubjectPublicKeyInfo of a key or certificate (equal: the same key)."""
    return bytes(
        key_or_cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )


def _self_issued(key_path: Path, name: str) -> bytes:
    """A certificate for ``name`` on the key at ``key_path``, from a throwaway CA (the one
    mailcow's acme.sh got from its CA is not reproducible here; only its key matters)."""
    key = load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    start = datetime.now(UTC) - timedelta(days=30)
    cert = leaf([name], key=key, issuer=CA.new("old CA"), not_before=start, days=90)
    return cert.public_bytes(Encoding.PEM)


def mailcow_dns01_volume(cert_dir: Path, directory_url: str) -> tuple[Path, Path]:
    """The volume as mailcow's DNS-01 setup leaves it: acme.sh's home in ``acme-sh/`` (its
    ``_initpath`` layout: ``ca/<host>/<path>/account.key``, ``<domain>_ecc/<domain>.key``,
    ``.cer``, ``fullchain.cer``, ``ca.cer``) and the certificate installed as cert.pem/key.pem.
    Returns acme.sh's account key and certificate key."""
    home = cert_dir / "acme-sh"
    url = urlsplit(directory_url)
    ca = home / "ca" / str(url.hostname) / url.path.strip("/")
    ca.mkdir(parents=True)
    account_key = ca / "account.key"
    _openssl_ec_key(account_key)
    (ca / "account.json").write_text('{"contact": ["mailto:admin@example.test"]}')
    (home / "account.conf").write_text(f"DEFAULT_ACME_SERVER='{directory_url}'\n")
    domain = home / f"{HOST}_ecc"
    domain.mkdir()
    cert_key = domain / f"{HOST}.key"
    _openssl_ec_key(cert_key)
    cert = _self_issued(cert_key, HOST)
    (domain / f"{HOST}.cer").write_bytes(cert)
    (domain / "fullchain.cer").write_bytes(cert)
    (domain / "ca.cer").write_bytes(b"")
    (domain / f"{HOST}.conf").write_text(f"Le_Domain='{HOST}'\nLe_Keylength='ec-256'\n")
    # mailcow's main loop (data/Dockerfiles/acme/acme.sh) always makes its own RSA account and
    # certificate keys, even with DNS-01 (obtain-certificate-dns.sh needs the shared key)
    acme = cert_dir / "acme"
    acme.mkdir()
    for name in ("account.pem", "key.pem"):
        pem = subprocess.run(["openssl", "genrsa", "2048"], capture_output=True, check=True)
        (acme / name).write_bytes(pem.stdout)
        (acme / name).chmod(0o600)
    # and installs the certificate in the hostname's directory and at the top
    for target in (cert_dir / HOST, cert_dir):
        target.mkdir(exist_ok=True)
        (target / "cert.pem").write_bytes(cert)
        (target / "key.pem").write_bytes(cert_key.read_bytes())
        (target / "key.pem").chmod(0o600)
    return account_key, cert_key
