"""Parsers of values from outside (pure): resolver and host:port addresses, e-mail addresses
and whether one is at a reserved domain (one a CA refuses as a contact), URLs shown without
their secrets (``mask_url``, ``url_origin``), and ``scrub``, which takes secrets out of a text
before it is logged. Used by the settings (``config/``) and by the adapters alike.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

from acme_sidecar.core.names import normalize_hostname

# RFC 2606 and RFC 6761: names no one can receive mail at; a CA refuses them as a contact
_RESERVED_DOMAINS = ("example.com", "example.net", "example.org")
_RESERVED_TLDS = ("example", "test", "invalid", "localhost")
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@([^@\s]+)$")


def parse_resolver(item: str) -> tuple[str, int]:
    """Parse ``ip`` or ``ip:port`` (``[v6]:port`` for IPv6 with a port) of ACME_DNS_RESOLVERS."""
    host, port = item, 53
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        if rest:
            port = int(rest.removeprefix(":")) if rest.removeprefix(":").isdigit() else -1
    elif item.count(":") == 1:
        host, _, text = item.partition(":")
        port = int(text) if text.isdigit() else -1
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{item!r} is not an IP address or ip:port") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{item!r} has no valid port (1-65535)")
    return host, port


def is_email(text: str) -> bool:
    """Whether ``text`` looks like an e-mail address with a valid domain."""
    match = _EMAIL.match(text)
    return match is not None and normalize_hostname(match.group(1)) is not None


def reserved_contact(email: str) -> bool:
    """Whether ``email`` is at a reserved domain (RFC 2606/6761): ``example.com``,
    ``example.net``, ``example.org`` and their subdomains, or under ``.example``, ``.test``,
    ``.invalid`` or ``.localhost``. A CA refuses such a contact (``invalidContact``)."""
    domain = email.rpartition("@")[2].strip().rstrip(".").lower()
    if not domain:
        return False
    labels = domain.split(".")
    if labels[-1] in _RESERVED_TLDS:
        return True
    return any(domain == d or domain.endswith("." + d) for d in _RESERVED_DOMAINS)


def parse_host_port(text: str) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port`` for IPv6) as a pair, or None when it is not one."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
    elif not re.fullmatch(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9])?", host):
        return None
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    return host, int(port)


def mask_url(text: str) -> str:
    """``text`` with the password of a ``scheme://user:password@host`` URL shown as ``***``
    (a user name alone, often a token, is masked too) and its query, which often holds a
    token, as ``?***``; anything else is returned unchanged."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    rest, question, _ = rest.partition("?")
    query = "?***" if question else ""
    end = min((i for i in (rest.find(c) for c in "/#") if i >= 0), default=len(rest))
    userinfo, at, hostport = rest[:end].rpartition("@")
    if not at:
        return f"{scheme}://{rest}{query}"
    user, colon, _ = userinfo.partition(":")
    masked = f"{user}:***" if colon else "***"
    return f"{scheme}://{masked}@{hostport}{rest[end:]}{query}"


def url_origin(text: str) -> str:
    """Only the scheme and host (with port) of a URL, the rest as ``/***``: for a URL whose
    path holds a token (Slack, Teams, Discord, ntfy webhooks); ``***`` when it is no URL."""
    scheme, sep, rest = text.strip().partition("://")
    host = re.split(r"[/?#\s]", rest, maxsplit=1)[0].rpartition("@")[2]
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]{0,15}", scheme) or not host:
        return "***"
    return f"{scheme}://{host}" + ("/***" if len(rest) > len(host) or "@" in rest else "")


def scrub(text: str, secrets: Iterable[str], *, shortest: int = 4) -> str:
    """``text`` with every secret replaced by ``***``: as written, without surrounding
    whitespace, URL-quoted and escaped (as ``repr`` shows it). Values shorter than
    ``shortest`` characters, or only digits (ports, TTLs), are left alone."""
    forms: set[str] = set()
    for secret in secrets:
        for value in (secret, secret.strip()):
            if len(value) < shortest or value.isdigit():
                continue
            quoted = {quote(value), quote(value, safe=""), quote_plus(value, safe="/")}
            forms |= {value, quote_plus(value), repr(value)[1:-1], *quoted}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")
    return text
