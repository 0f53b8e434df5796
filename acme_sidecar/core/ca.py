"""Which CA a certificate came from: a change of CA (``DIRECTORY_URL`` or ``LE_STAGING``)
re-issues every certificate of the old one, once. Pure; touches nothing.

The ledger records the ACME directory each certificate was issued from (``CertLedger.directory``,
set when its order is settled). A certificate with no record (issued before the record existed,
by acme-mailcow, or taken over) counts as the configured CA's unless its issuer clearly cannot
be: a Let's Encrypt staging issuer ("(STAGING)" in its name) while the configured CA is not
Let's Encrypt's staging. Such a certificate is then recorded as the configured CA's
(``adopt_directory``), so that a later change of CA is seen.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from urllib.parse import urlsplit

from acme_sidecar.core.ledger import State
from acme_sidecar.core.model import StoredCert

STAGING_MARK = "(STAGING)"  # in the names of Let's Encrypt's staging roots and intermediates
LE_STAGING_HOST = "acme-staging-v02.api.letsencrypt.org"


def same_directory(a: str, b: str) -> bool:
    """The two directory URLs name the same CA (scheme and host compared without case, a
    trailing slash ignored)."""

    def norm(url: str) -> tuple[str, str, str, str]:
        parts = urlsplit(url.strip())
        return parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query

    return norm(a) == norm(b)


def directory_change(recorded: str, issuer: str, directory: str) -> str | None:
    """Why a stored certificate, recorded as issued from ``recorded`` ("" = unknown) by the
    issuer ``issuer`` (its DN), must be issued again from ``directory``; ``None`` when it need
    not (the same CA, or nothing says otherwise)."""
    if not directory:
        return None
    if recorded:
        if same_directory(recorded, directory):
            return None
        return f"issued by another CA ({recorded} -> {directory})"
    if STAGING_MARK in issuer and urlsplit(directory).hostname != LE_STAGING_HOST:
        return f"issued by another CA (Let's Encrypt staging, {issuer} -> {directory})"
    return None


def directory_changes(
    stored: Mapping[str, StoredCert], state: State, directory: str
) -> dict[str, str]:
    """The stored certificates issued from another CA than ``directory``, with why."""
    out: dict[str, str] = {}
    for name, cert in stored.items():
        why = directory_change(state.cert(name).directory, cert.issuer, directory)
        if why:
            out[name] = why
    return out


def adopt_directory(
    state: State, stored: Collection[str], directory: str, moved: Collection[str]
) -> State:
    """``state`` with ``directory`` recorded for every stored certificate that has no record
    and is not in ``moved`` (those issued from another CA): an unknown one counts as the
    configured CA's, and a later change of CA must be seen."""
    if not directory:
        return state
    todo = [n for n in stored if n not in moved and not state.cert(n).directory]
    if not todo:
        return state
    certs = dict(state.certs)
    for name in todo:
        certs[name] = replace(state.cert(name), directory=directory)
    return replace(state, certs=certs)
