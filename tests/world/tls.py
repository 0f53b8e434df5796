"""Throwaway CA and a ``localhost``/127.0.0.1 server certificate for local HTTPS listeners."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from tests.certs import CA, SERVER_AUTH, cert_pem, key_pem, leaf, new_key, now


@dataclass(frozen=True)
class ServerCert:
    """Paths of the generated PEM files."""

    ca_cert: Path
    cert: Path
    key: Path


def make_server_cert(directory: Path, label: str = "test world") -> ServerCert:
    """Write ``ca.pem``, ``cert.pem`` and ``key.pem`` (leaf for localhost + 127.0.0.1)."""
    start = now() - datetime.timedelta(hours=1)
    end = start + datetime.timedelta(days=7, hours=1)
    ca = CA.new(f"{label} CA", not_before=start, not_after=end)
    key = new_key()
    cert = leaf(
        ["localhost"],
        key=key,
        issuer=ca,
        ips=["127.0.0.1"],
        usages=SERVER_AUTH,
        not_before=start,
        not_after=end,
    )
    out = ServerCert(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    out.ca_cert.write_bytes(ca.pem)
    out.cert.write_bytes(cert_pem(cert))
    out.key.write_bytes(key_pem(key))
    return out
