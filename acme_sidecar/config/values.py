"""Parsers of setting values (pure): durations, flags, lists, host:port, e-mail, masked URLs,
whether an e-mail address is at a reserved domain (one a CA refuses as a contact), and
``scrub``, which takes secrets out of a text before it is logged.

Shared by the settings classes and by the adapters that take a value from them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Set
from typing import Any
from urllib.parse import quote, quote_plus

from pydantic import ValidationError

from acme_sidecar.core.names import normalize_hostname

_YES = {"y", "yes"}
_NO = {"n", "no", ""}
# RFC 2606 and RFC 6761: names no one can receive mail at; a CA refuses them as a contact
_RESERVED_DOMAINS = ("example.com", "example.net", "example.org")
_RESERVED_TLDS = ("example", "test", "invalid", "localhost")
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@([^@\s]+)$")


def parse_duration(value: Any) -> int:
    """Seconds from ``7d``, ``12h``, ``30m``, ``45s`` or a plain number of seconds."""
    if isinstance(value, int):
        return value
    text = str(value).strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    if not number.isdigit():
        raise ValueError("must be a duration such as 7d, 12h, 30m or seconds (604800)")
    return int(number) * units[unit]


def yes_no(value: Any) -> Any:
    """A strict flag: y/yes is True, n/no/empty is False, anything else a ``ValueError``."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _YES:
        return True
    if text in _NO:
        return False
    raise ValueError("use y or n (y/yes in any case mean yes; n/no or empty mean no)")


def mailcow_flag(value: Any) -> tuple[bool, bool]:
    """A flag read as mailcow reads it: y/yes in any case is yes, anything else is no.

    Returns the value and whether it was clear (yes, or n/no/empty); an unclear value such as
    ``true`` or ``1`` is read as no, as mailcow's own scripts do, and deserves a warning.
    """
    if isinstance(value, bool):
        return value, True
    text = str(value).strip().lower()
    return text in _YES, text in _YES or text in _NO


def comma_list(value: Any) -> tuple[str, ...]:
    """The non-empty, stripped items of a comma-separated setting."""
    return tuple(item.strip() for item in str(value).split(",") if item.strip())


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


def describe_errors(
    exc: ValidationError,
    values: Mapping[str, str],
    *,
    hidden: Set[str],
    origin_only: Set[str] = frozenset(),
) -> str:
    """One message for every invalid setting: the variable, its value (``hidden`` ones as
    ``***``, ``origin_only`` ones as scheme and host only, other URLs with their password and
    query masked) and what would be valid. pydantic's own text (``input_value``) is never
    used: only the message of each error."""
    lines = []
    for err in exc.errors():
        loc = str(err["loc"][0]) if err["loc"] else ""
        message = str(err["msg"]).removeprefix("Value error, ")
        if not loc:
            lines.append(message)
        elif err["type"] == "missing":
            lines.append(f"{loc.upper()} is not set: it is required")
        else:
            value = str(values.get(loc, ""))
            if loc in hidden:
                shown = "***"
            elif loc in origin_only:
                shown = url_origin(value)
            else:
                shown = mask_url(value)
            lines.append(f"{loc.upper()}={shown!r} is not valid: {message}")
    return "; ".join(lines)
