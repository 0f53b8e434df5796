"""Recovery: finish (or roll back) a swap of the volume's files that a crash interrupted.

A swap (``files.swap_in``) stages ``key.pem.new``, ``cert.pem.new`` and ``domains.new`` and then
renames them in that order. ``recover_dir`` renames a staged pair that is whole and matches into
place and discards a torn one (empty, unparseable, not matching), so a reader never keeps a
mismatched pair; a ``domains.new`` that does not list the names of the certificate in place is
discarded too. May touch only the ``*.new`` files of the directories it is given (a link where a
file belongs: the staged files are discarded, nothing is renamed over it).
"""

from __future__ import annotations

import os
from pathlib import Path

import structlog

from acme_sidecar.adapters.volume import files
from acme_sidecar.adapters.volume.certdir import CERT_FILES
from acme_sidecar.adapters.volume.files import is_regular, read_bytes
from acme_sidecar.adapters.volume.pem import cert_sans, key_matches, load_chain, load_key
from acme_sidecar.core.errors import StoreError

log = structlog.get_logger(__name__)

PAIR = ("key.pem", "cert.pem")


def _pair_ok(cert_path: Path, key_path: Path) -> bool:
    try:
        return key_matches(load_chain(read_bytes(cert_path))[0], load_key(read_bytes(key_path)))
    except (StoreError, OSError):
        return False


def _domains_ok(domains_path: Path, cert_path: Path) -> bool:
    """Whether a staged ``domains`` file is whole: the names of the certificate in place."""
    try:
        names = read_bytes(domains_path).decode("utf-8").split()
        sans = cert_sans(load_chain(read_bytes(cert_path))[0])
    except (StoreError, OSError, ValueError):
        return False
    return bool(names) and {n.lower() for n in names} == {n.lower() for n in sans}


def recover_acme(acme_dir: Path) -> None:
    """Remove leftover ``acme/*.new`` files (a key or the ledger being written)."""
    if acme_dir.is_dir() and not acme_dir.is_symlink():
        for name in ("account.pem", "key.pem", "key.next.pem", "state.json"):
            files.discard(acme_dir / f"{name}.new")
        files.fsync_dir(acme_dir)


def recover_dir(directory: Path) -> None:
    """Finish or roll back the swap staged in ``directory`` (see the module docstring)."""
    key_new, cert_new, domains_new = (directory / f"{n}.new" for n in (*PAIR, "domains"))
    staged = [p for p in (key_new, cert_new, domains_new) if os.path.lexists(p)]
    if not staged:
        return
    if any((directory / f).is_symlink() for f in CERT_FILES):  # refused: never renamed over
        for leftover in staged:
            files.discard(leftover)
        return
    if cert_new in staged:
        key_file = key_new if is_regular(key_new) else directory / "key.pem"
        if _pair_ok(cert_new, key_file):
            if key_file == key_new:
                key_new.replace(directory / "key.pem")
            cert_new.replace(directory / "cert.pem")
            log.warning("store.recovered", directory=str(directory), action="completed")
        else:
            log.warning("store.recovered", directory=str(directory), action="discarded")
    if domains_new in staged and _domains_ok(domains_new, directory / "cert.pem"):
        domains_new.replace(directory / "domains")
        log.warning("store.recovered", directory=str(directory), file="domains")
    for leftover in (key_new, cert_new, domains_new):
        files.discard(leftover)
    files.fsync_dir(directory)
