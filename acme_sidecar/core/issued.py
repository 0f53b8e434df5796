"""The check of a certificate chain the CA issued, against the order it answers. Pure: no I/O.

``problems`` returns what is wrong with a chain (empty: it may be stored). The leaf comes
first; it must name exactly the ordered names (DNS names compared without case, as a set; any
other subjectAltName is a name not ordered), carry the public key of our request, and be valid
now: ``notBefore <= now + SKEW`` (a CA's clock a little ahead of ours is tolerated, up to
``SKEW``) and ``now < notAfter``. Each certificate must be signed by the one after it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

SKEW = timedelta(minutes=5)  # how far a notBefore may be ahead of our clock


def spki(public_key: CertificatePublicKeyTypes) -> bytes:
    """A public key as DER SubjectPublicKeyInfo: two keys are the same when these are."""
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _names(leaf: x509.Certificate) -> tuple[set[str], str]:
    """The leaf's subjectAltNames, lower case (non-DNS ones as their text), or why not."""
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), "the CA's certificate has no subjectAltName"
    names = {str(n.value).lower() for n in san}
    return names, ""


def _list(names: set[str]) -> str:
    return ", ".join(sorted(names))


def _who(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string() or "an empty subject"


def _check_leaf(
    leaf: x509.Certificate, names: Sequence[str], key: bytes, now: datetime
) -> list[str]:
    found: list[str] = []
    got, why = _names(leaf)
    want = {n.lower() for n in names}
    if why:
        found.append(why)
    elif got != want:
        other, missing = got - want, want - got
        what = f"is for other names: {_list(other)}" if other else ""
        lacks = f"lacks {_list(missing)}" if missing else ""
        said = f"{what}, and {lacks}" if what and lacks else what or lacks
        found.append(f"the CA's certificate {said} (ordered: {_list(want)})")
    try:
        ours = spki(leaf.public_key()) == key
    except (ValueError, TypeError):  # a key type cryptography does not know
        ours = False
    if not ours:
        found.append("the CA's certificate is for another public key than the one we sent")
    before, after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    if now < before - SKEW:
        ahead = int(SKEW.total_seconds() // 60)
        found.append(
            f"the CA's certificate is not valid before {before:%Y-%m-%d %H:%M:%S}Z "
            f"(more than {ahead} minutes ahead of this server's clock)"
        )
    if now >= after:
        found.append(f"the CA's certificate expired at {after:%Y-%m-%d %H:%M:%S}Z")
    return found


def _check_links(chain: Sequence[x509.Certificate]) -> list[str]:
    found: list[str] = []
    for i, (cert, issuer) in enumerate(itertools.pairwise(chain), start=1):
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            found.append(
                f"certificate {i} of the chain ({_who(cert)}) is not signed by "
                f"certificate {i + 1} ({_who(issuer)})"
            )
    return found


def problems(chain_pem: bytes, names: Sequence[str], key: bytes, now: datetime) -> tuple[str, ...]:
    """What is wrong with ``chain_pem`` (PEM, leaf first) as the answer to an order for
    ``names`` with the public key ``key`` (DER SubjectPublicKeyInfo, see ``spki``) at ``now``
    (aware UTC); empty when nothing is."""
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        return ("the CA's answer is not a PEM certificate chain",)
    try:
        return (*_check_leaf(chain[0], names, key, now), *_check_links(chain))
    except ValueError as exc:  # a malformed extension in the leaf
        return (f"the CA's certificate does not parse: {exc}",)
