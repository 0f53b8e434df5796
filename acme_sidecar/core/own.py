"""Own certificates: whose is the top-level pair, and is a pair good enough to be served.

Pure rules over facts the volume adapter read (``adapters/toppair.py`` parses the PEM files):

- ``classify``: the top-level ``cert.pem``/``key.pem`` is *ours* (the sidecar may replace it)
  when it is a copy of one of our certificate directories, when its key is the volume's reused
  key (``acme/key.pem``: acme-mailcow's pairs carry it too), when its issuer issued one of our
  certificate directories, when it comes from Let's Encrypt and Let's Encrypt is the configured
  CA, or when it is self-signed (mailcow's snake-oil placeholder). Anything else is an *own*
  certificate: never overwritten, never ordered for.
- ``pair_problems``: what keeps a pair from being served: the key does not match, the chain is
  incomplete or out of order (each certificate must be signed by the next), its names do not
  cover ``MAILCOW_HOSTNAME``, it is expired or not yet valid. A self-signed pair stands alone
  and, without a subjectAltName, is named by its subject's CN (``pair_names``: mailcow's
  snake-oil, ``openssl req -x509 ... -subj "/.../O=mailcow/OU=mailcow/CN=<hostname>"``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from acme_sidecar.core.names import holds

OWN_MARK = "(default)"
"""The top-level pair in a deploy owed (``Deploy.certs``) and among the certificates hooks see;
not a host name, so it can never be a certificate directory."""


@dataclass(frozen=True, slots=True)
class Link:
    """One certificate of a chain: its subject and issuer (RFC 4514) and whether the next
    certificate of the chain signed it (None for the last one)."""

    subject: str
    issuer: str
    signed_by_next: bool | None = None


@dataclass(frozen=True, slots=True)
class PairFacts:
    """What a certificate/key pair holds, read by the volume adapter."""

    fingerprint: str  # SHA-256 of cert.pem and key.pem bytes: "the same pair"
    chain: tuple[Link, ...] = ()
    issuer_org: str = ""  # the O= of the leaf's issuer
    names: tuple[str, ...] = ()  # DNS names of the leaf (subjectAltName)
    not_before: datetime | None = None
    not_after: datetime | None = None
    serial: int = 0
    key_matches: bool = False
    self_signed: bool = False  # the leaf is signed by its own key
    unreadable: str = ""  # why cert.pem or key.pem could not be parsed
    common_name: str = ""  # the CN of the leaf's subject

    @property
    def subject(self) -> str:
        """The leaf's subject ("" when unreadable)."""
        return self.chain[0].subject if self.chain else ""

    @property
    def issuer(self) -> str:
        """The leaf's issuer ("" when unreadable)."""
        return self.chain[0].issuer if self.chain else ""


@dataclass(frozen=True, slots=True)
class Ownership:
    """Whose the top-level pair is and why."""

    own: bool
    reason: str


def classify(
    facts: PairFacts,
    *,
    copy_of_managed: bool,
    key_is_ours: bool,
    managed_issuers: Collection[str],
    ca_organizations: Collection[str],
) -> Ownership:
    """Whether the top-level pair is an own certificate (see the module docstring)."""
    if facts.unreadable:
        return Ownership(False, f"it cannot be read ({facts.unreadable}); it is replaced")
    if copy_of_managed:
        return Ownership(False, "it is a copy of a certificate acme-sidecar manages")
    if key_is_ours:
        return Ownership(False, "its key is the volume's reused key acme/key.pem")
    if facts.issuer in managed_issuers:
        return Ownership(False, "its issuer also issued the certificates acme-sidecar manages")
    if facts.issuer_org and facts.issuer_org in ca_organizations:
        return Ownership(False, f"it was issued by {facts.issuer_org}, the configured CA")
    if facts.self_signed:
        return Ownership(False, "it is self-signed (mailcow's snake-oil placeholder)")
    return Ownership(
        True,
        "it was not issued by the configured CA and is not a self-signed placeholder: "
        "an own certificate, never overwritten",
    )


def pair_names(facts: PairFacts) -> tuple[str, ...]:
    """The names a pair answers for: the DNS names of its subjectAltName; a self-signed leaf
    without any (mailcow's snake-oil) is named by its subject's CN."""
    if facts.names or not facts.self_signed or not facts.common_name:
        return facts.names
    return (facts.common_name.strip().lower(),)


def pair_problems(facts: PairFacts, hostname: str, now: datetime) -> list[str]:
    """Why this pair must not be served (empty: it is good)."""
    if facts.unreadable:
        return [facts.unreadable]
    out: list[str] = []
    if not facts.key_matches:
        out.append("key.pem is not the key of the certificate in cert.pem")
    chain = facts.chain
    for i, link in enumerate(chain[:-1]):
        if not link.signed_by_next:
            out.append(
                f"the chain is out of order: certificate {i + 1} ({link.subject}) is not "
                f"signed by certificate {i + 2} ({chain[i + 1].subject})"
            )
            break
    if len(chain) == 1 and not facts.self_signed:
        out.append(
            f"the chain is incomplete: cert.pem holds only the certificate, not its issuer "
            f"({facts.issuer}); append the intermediate certificate(s)"
        )
    names = pair_names(facts)
    if not holds(names, hostname):
        shown = " ".join(names) or "none"
        out.append(f"its names ({shown}) do not cover MAILCOW_HOSTNAME {hostname}")
    if facts.not_after is not None and facts.not_after <= now:
        out.append(f"it expired at {facts.not_after:%Y-%m-%d %H:%M}Z")
    if facts.not_before is not None and facts.not_before > now:
        out.append(f"it is not valid before {facts.not_before:%Y-%m-%d %H:%M}Z")
    return out
