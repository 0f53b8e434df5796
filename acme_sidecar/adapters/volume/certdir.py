"""One certificate directory (``domains``, ``cert.pem``, ``key.pem``) parsed into a ``StoredCert``.

Each file is parsed inside the guard of ``pem``: one that does not parse raises ``Unreadable``
naming the file and what is wrong (``CertStore.load`` then sets the directory aside); an I/O
error is not damage and is raised as it is. Reads only the three files it is given.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from acme_sidecar.adapters.volume.files import read_bytes
from acme_sidecar.adapters.volume.pem import Unreadable, guard, key_spki, read_cert
from acme_sidecar.core.model import StoredCert

CERT_FILES = ("domains", "cert.pem", "key.pem")
T = TypeVar("T")


def parsed(path: Path, parse: Callable[[bytes], T]) -> T:
    """``parse`` of file ``path``; ``Unreadable`` (naming the file) when it does not parse."""
    data = read_bytes(path)  # an I/O error is no damage: raised as it is
    try:
        with guard("it does not parse"):
            return parse(data)
    except Unreadable as exc:
        raise Unreadable(str(exc), file=path) from exc


def _domains(data: bytes) -> tuple[str, ...]:
    return tuple(data.decode("utf-8").lower().split())  # acme-mailcow kept the case as set


def identity(directory: Path) -> tuple[int, ...]:
    """Inode, size and modification time (ns) of a directory's three files."""
    out: list[int] = []
    for name in CERT_FILES:
        st = os.lstat(directory / name)
        out += [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
    return tuple(out)


def parse(directory: Path) -> StoredCert:
    """The certificate in ``directory``, read whole (``Unreadable`` when a file is damaged)."""
    domains = parsed(directory / "domains", _domains)
    leaf = parsed(directory / "cert.pem", read_cert)
    key = parsed(directory / "key.pem", key_spki)
    return StoredCert(
        name=directory.name,
        domains=domains,
        not_before=leaf.not_before,
        not_after=leaf.not_after,
        serial=leaf.serial,
        issuer=leaf.issuer,
        key_matches=leaf.spki == key,
        sans=leaf.names,
        cert_id=leaf.cert_id,
        key_type=leaf.key_type,
        client_auth=leaf.client_auth,
    )
