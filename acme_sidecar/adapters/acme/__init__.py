"""ACME adapter: obtain certificates from an ACME CA (RFC 8555) with the ``acme`` library.

Modules: ``issuer`` (the batch of parallel orders, the worker boundary), ``orders`` (one order:
place, answer, poll, finalize, drop rejected names), ``certificate`` (the CSR, and the check of
the issued chain against the order before it is returned), ``challenges`` (the
``ChallengeResponder`` seam; HTTP-01 through the webroot), ``session`` (network object,
directory, account, per-thread client), ``translate`` (library exceptions to typed errors) and
``ari`` (an order that replaces a certificate); and, without the ``acme`` library,
``directory`` (the CA's CAA identities), ``windows`` (the CA's renewal windows) and ``wire``
(User-Agent, clock, bounds, the https rule, Retry-After).
May touch: the CA over HTTPS and challenge files in the webroot.

The names below are imported at first use: ``acme``, ``josepy`` and pyOpenSSL cost about 3 MB
of the daemon's memory, and a quiet cycle orders nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from acme_sidecar.adapters.acme.certificate import make_csr
    from acme_sidecar.adapters.acme.challenges import ChallengeResponder, Http01Webroot
    from acme_sidecar.adapters.acme.directory import caa_identities
    from acme_sidecar.adapters.acme.issuer import AcmeIssuer
    from acme_sidecar.adapters.acme.session import AcmeNetwork, NetworkFactory

_WHERE = {
    "AcmeIssuer": "issuer",
    "AcmeNetwork": "session",
    "ChallengeResponder": "challenges",
    "Http01Webroot": "challenges",
    "NetworkFactory": "session",
    "caa_identities": "directory",
    "make_csr": "certificate",
}

__all__ = [
    "AcmeIssuer",
    "AcmeNetwork",
    "ChallengeResponder",
    "Http01Webroot",
    "NetworkFactory",
    "caa_identities",
    "make_csr",
]


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` at its first use."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
