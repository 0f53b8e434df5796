"""What an order asks for and what it gets back: the CSR, and the check of the issued chain.

``make_csr`` builds the request for an order's names with the certificate key. ``checked``
turns the chain the CA sent into an ``Issued`` only when ``core.issued.problems`` finds nothing
wrong with it; otherwise it is an ``IssueFailure`` of kind OTHER (exponential back-off: the
names are not ordered again every cycle) with one ``cert.rejected`` line, and the chain is
never stored. May touch: nothing (it logs).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from acme_sidecar.adapters.volume.pem import PrivateKey
from acme_sidecar.core.issued import problems, spki
from acme_sidecar.core.model import FailureKind, Issued, IssueFailure

log = structlog.get_logger(__name__)


def make_csr(key: PrivateKey, names: Sequence[str]) -> bytes:
    """A PEM CSR for ``names`` signed by an already loaded key.

    ``acme.crypto_util.make_csr`` takes PEM and re-parses (and for RSA re-validates) the key on
    every call, which costs ~0.5 s per order with a 4096-bit key; cryptography's builder with the
    key object loaded once per batch does the same job.
    """
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def checked(issued: Issued, key: PrivateKey, now: datetime) -> Issued | IssueFailure:
    """``issued`` when its chain answers its order (the names of ``issued.spec``, ``key``,
    valid at ``now``, each certificate signed by the next); else a failure that backs off.

    Names the CA dropped before (``issued.dropped``) stay rejected in the failure, so they keep
    their own back-off."""
    found = problems(issued.fullchain_pem, issued.spec.domains, spki(key.public_key()), now)
    if not found:
        return issued
    reason = "; ".join(found)
    log.error(
        "cert.rejected",
        certificate=issued.spec.name,
        names=" ".join(issued.spec.domains),
        reason=reason,
        action="not stored; the certificate in use stays; the order is tried again after a "
        "back-off",
    )
    return IssueFailure(
        issued.spec,
        f"the CA's certificate was refused: {reason}",
        rejected=dict(issued.dropped),
        kind=FailureKind.OTHER,
        failed_validations=issued.failed_validations,
        orders=issued.orders,
    )
