"""Taking over a volume that mailcow's DNS-01 setup (acme.sh) left: its keys are kept.

acme.sh keeps its home in ``acme-sh/`` of the certificate volume (``--config-home``). Its
layout, from acme.sh's ``_initpath``: the account key at
``ca/<directory host>/<directory path>/account.key`` (older: ``ca/<host>/account.key``), and
per certificate ``<domain>_ecc/`` (ECDSA; ``<domain>/`` for RSA) holding ``<domain>.key``,
``<domain>.cer``, ``fullchain.cer`` and ``ca.cer``; mailcow installs the certificate and its
key as the volume's ``cert.pem``/``key.pem``.

``adopt`` runs once per volume (``shell/takeover.py`` records it in the ledger), at start,
before any key is made. mailcow's own loop always creates ``acme/key.pem`` (RSA) and
``acme/account.pem``, so their presence proves nothing: when the served certificate
(``cert.pem``, top-level or in a certificate directory) is on a key under ``acme-sh/`` and not
on ``acme/key.pem``, the existing ``acme/key.pem`` and ``acme/account.pem`` are moved to
``backups/acme/<UTC timestamp>/`` and acme.sh's keys are adopted: its certificate key becomes
``acme/key.pem`` (TLSA 3 1 1 pins stay right) and its account key for the configured CA
becomes ``acme/account.pem`` (a CAA ``accounturi`` stays right). Keys are moved only on a volume
acme-sidecar never used (``used_before``): once it has, ``acme/`` holds its own keys, in use
(after an ``ACME_KEY_TYPE`` change the old certificates on acme.sh's key are still served for a
while), and only a missing key is adopted. When ``acme/key.pem`` is missing, the served
certificate's key (also the top-level ``key.pem``) is adopted the same way. Nothing in
``acme-sh/`` is changed. May touch: ``acme-sh/`` and the volume's ``cert.pem``/``key.pem``
files (read), ``acme/account.pem`` and ``acme/key.pem`` (created; replaced only as said),
``backups/acme/``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from acme_sidecar.adapters.volume import backups, files
from acme_sidecar.adapters.volume.files import read_bytes
from acme_sidecar.adapters.volume.keys import tlsa_311, to_pem
from acme_sidecar.adapters.volume.pem import PARSE_ERRORS, PrivateKey, load_key
from acme_sidecar.core.errors import StoreError

log = structlog.get_logger(__name__)

HOME = "acme-sh"


def ca_dir(home: Path, directory_url: str) -> Path:
    """acme.sh's ``CA_DIR`` for ``directory_url``: host without the port, then the path."""
    rest = directory_url.split(":", 1)[1] if ":" in directory_url else directory_url
    parts = [p for p in rest.split("/") if p]
    host = parts[0].split(":")[0] if parts else ""
    return home / "ca" / host / "/".join(parts[1:])


def _key(path: Path) -> PrivateKey | None:
    try:
        return load_key(read_bytes(path, private=True))
    except (OSError, StoreError):
        return None


def _spki(key: PrivateKey | x509.Certificate) -> str:
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


_SKIPPED: tuple[type[Exception], ...] = (OSError, StoreError, *PARSE_ERRORS)


def _served(root: Path) -> set[str]:
    """The SPKI hashes of the certificates the volume serves: ``cert.pem`` at the top and in
    each certificate directory (mailcow writes both), where readable."""
    found: set[str] = set()
    paths = [root / "cert.pem"]
    paths += sorted(
        p / "cert.pem"
        for p in root.iterdir()
        if p.is_dir() and not p.is_symlink() and p.name not in (HOME, "acme", "backups")
    )
    for path in paths:
        try:
            if path.is_file() and not path.is_symlink():
                found.add(_spki(x509.load_pem_x509_certificates(read_bytes(path))[0]))
        except _SKIPPED:  # unreadable: it serves no key we know
            continue
    return found


def _cert_keys(home: Path) -> list[Path]:
    """acme.sh's certificate keys: ``<domain>[_ecc]/<domain>.key``."""
    found: list[Path] = []
    for directory in sorted(p for p in home.iterdir() if p.is_dir() and p.name != "ca"):
        domain = directory.name.removesuffix("_ecc")
        key = directory / f"{domain}.key"
        if key.is_file() and not key.is_symlink():
            found.append(key)
    return found


def _install(path: Path, key: PrivateKey, root: Path, source: Path, event: str) -> None:
    files.ensure_dir(path.parent, 0o700, "the acme directory")
    files.create_new(path, to_pem(key), 0o600, check=load_key)
    log.info(
        event,
        path=str(path.relative_to(root)),
        source=str(source.relative_to(root)),
        tlsa_3_1_1=tlsa_311(key.public_key()),
    )


def used_before(root: Path) -> str | None:
    """What shows that acme-sidecar has used this volume (its keys may be in use), or None:
    ``acme/state.json`` (also one kept aside as damaged) or ``backups/acme/``, which only
    acme-sidecar writes (mailcow's loop writes neither)."""
    acme = root / "acme"
    found = [acme / "state.json", root / "backups" / "acme"]
    if acme.is_dir() and not acme.is_symlink():
        found += sorted(acme.glob("state.json.damaged-*"))
    return next((str(p.relative_to(root)) for p in found if os.path.lexists(p)), None)


def adopt(root: Path, directory_url: str, *, replace_keys: bool = True) -> bool:
    """Adopt acme.sh's account key and the served certificate's key where ours are missing,
    or (``replace_keys``: a volume acme-sidecar never used) where ours are mailcow's, never
    served. Never raises: False when it failed (a volume it cannot read is left to the
    cycle, which says why)."""
    home = root / HOME
    if not home.is_dir() or home.is_symlink():
        return True
    try:
        _adopt(root, home, directory_url, replace_keys)
    except (OSError, StoreError) as exc:
        log.warning("takeover.failed", home=str(home), error=str(exc)[:300])
        return False
    return True


def _adopt(root: Path, home: Path, directory_url: str, replace_keys: bool) -> None:
    account = root / "acme" / "account.pem"
    domain_key = root / "acme" / "key.pem"
    served = _served(root)
    theirs = [(p, k) for p in _cert_keys(home) if (k := _key(p)) is not None]
    match = next(((p, k) for p, k in theirs if _spki(k) in served), None)
    if domain_key.exists():
        ours = _key(domain_key)
        if match is None or (ours is not None and _spki(ours) in served):
            return  # nothing of acme.sh is served, or ours is: taken over already or never
        if not replace_keys:
            log.info(
                "takeover.kept",
                path=str(domain_key.relative_to(root)),
                reason="acme-sidecar has used this volume: acme/key.pem and acme/account.pem "
                "are its own, in use, and stay",
            )
            return
        _back_up(root, (domain_key, account))  # mailcow's own RSA key, never served
    if not account.exists():
        _adopt_account(root, home, directory_url, account)
    if match is None:
        top = root / "key.pem"
        key = _key(top) if top.is_file() and not top.is_symlink() else None
        if key is not None and _spki(key) in served:
            match = (top, key)
    if match is not None:
        _install(domain_key, match[1], root, match[0], "takeover.certificate_key")
        return
    log.warning(
        "takeover.no_certificate_key",
        reason="no key under acme-sh/ or key.pem matches the served cert.pem: a new key is "
        "made (TLSA 3 1 1 records must change)",
    )


def _back_up(root: Path, paths: tuple[Path, ...]) -> None:
    """Move ``paths`` (those present) into ``backups/acme/<UTC timestamp>/``."""
    target = backups.stamp_dir(root, "acme")
    files.ensure_dir(target, 0o700, "the backup of acme/")
    for path in paths:
        if path.exists() or path.is_symlink():
            path.replace(target / path.name)
            log.info(
                "takeover.backed_up",
                path=str(path.relative_to(root)),
                to=str(target.relative_to(root)),
            )
    for directory in (path.parent, target):
        files.fsync_dir(directory)


def _adopt_account(root: Path, home: Path, directory_url: str, account: Path) -> None:
    ca = ca_dir(home, directory_url)
    old = home / "ca" / ca.relative_to(home / "ca").parts[0]  # acme.sh before 3.0
    for source in (ca / "account.key", old / "account.key"):
        key = _key(source) if source.is_file() else None
        if key is not None:
            _install(account, key, root, source, "takeover.account_key")
            return
    log.info(
        "takeover.no_account_key",
        looked_in=str(ca.relative_to(root)),
        reason="acme.sh has no account key for this CA: a new account is made",
    )
