"""ACME adapter: obtain certificates from an ACME CA (RFC 8555) with the ``acme`` library.

Modules: ``issuer`` (the batch of parallel orders, the worker boundary, CAA identities),
``orders`` (one order: place, answer, poll, finalize, drop rejected names), ``certificate``
(the CSR, and the check of the issued chain against the order before it is returned),
``challenges`` (the ``ChallengeResponder`` seam; HTTP-01 through the webroot), ``session``
(network object, directory, account, per-thread client) and ``translate`` (library exceptions
to typed errors).
May touch: the CA over HTTPS and challenge files in the webroot.
"""

from __future__ import annotations

from acme_sidecar.adapters.acme.certificate import make_csr
from acme_sidecar.adapters.acme.challenges import ChallengeResponder, Http01Webroot
from acme_sidecar.adapters.acme.issuer import AcmeIssuer, caa_identities
from acme_sidecar.adapters.acme.session import AcmeNetwork, NetworkFactory
from acme_sidecar.core.ports import Issuer

__all__ = [
    "AcmeIssuer",
    "AcmeNetwork",
    "ChallengeResponder",
    "Http01Webroot",
    "Issuer",
    "NetworkFactory",
    "caa_identities",
    "make_csr",
]
