"""ARI orders (RFC 9773 §5): a new order that names the certificate it replaces.

``new_order`` is ``ClientV2.new_order`` with a ``replaces`` field (the library has no such
parameter); a CA without ``renewalInfo`` gets the order without it. The renewal windows
themselves are fetched by ``windows`` (no ``acme`` library). May touch: the CA over HTTPS.
"""

from __future__ import annotations

from collections.abc import Sequence

from acme import client, errors, messages
from josepy.json_util import field

from acme_sidecar.adapters.acme.translate import problem
from acme_sidecar.core.errors import IssueError


class ReplacingOrder(messages.NewOrder):
    """A new order naming the certificate it replaces (RFC 9773 §5)."""

    replaces: str = field("replaces", omitempty=True)


def offers_ari(acme: client.ClientV2) -> bool:
    """Whether the CA's directory has ``renewalInfo``."""
    try:
        acme.directory["renewalInfo"]
    except KeyError:
        return False
    return True


def new_order(
    acme: client.ClientV2,
    csr_pem: bytes,
    names: Sequence[str],
    *,
    replaces: str = "",
    profile: str = "",
) -> messages.OrderResource:
    """``acme.new_order(csr_pem, profile=)``, with ``replaces`` when given; a refusal of the CA
    is a typed error (a 409 becomes ``IssueError`` with code ``conflict``)."""
    if not replaces:
        return acme.new_order(csr_pem, profile=profile or None)
    identifiers = [messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=n) for n in names]
    order = ReplacingOrder(identifiers=identifiers, replaces=replaces, profile=profile or None)
    try:
        response = acme.net.post(
            acme.directory["newOrder"], order, new_nonce_url=acme.directory["newNonce"]
        )
    except errors.ConflictError as exc:
        raise IssueError(
            "the CA answered conflict: the certificate already has a replacement order",
            code="conflict",
        ) from exc
    except messages.Error as exc:  # typed here, so that the caller can judge it
        raise problem(exc) from exc
    body = messages.Order.from_json(response.json())
    authorizations = [
        messages.AuthorizationResource(
            body=messages.Authorization.from_json(acme._post_as_get(url).json()), uri=url
        )
        for url in body.authorizations
    ]
    return messages.OrderResource(
        body=body,
        uri=response.headers.get("Location"),
        authorizations=authorizations,
        csr_pem=csr_pem,
    )


def replaces_refused(exc: IssueError) -> bool:
    """Whether the CA refused the order because of its ``replaces``: already replaced
    (``alreadyReplaced`` as RFC 9773 and Pebble 2.10 say it, a bare 409 ``conflict`` from Pebble
    2.6), malformed (a CertID of another CA), or an internal error about the replaced
    certificate (Pebble 2.6 answers ``serverInternal`` "could not find an order for the given
    certificate" when it cannot look the certificate up, e.g. for a serial whose hex form has
    an odd number of digits)."""
    if exc.code in {"alreadyReplaced", "conflict", "malformed", "serverInternal"}:
        return True
    return exc.code != "rateLimited" and "replace" in str(exc).lower()
