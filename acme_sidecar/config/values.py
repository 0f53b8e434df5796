"""Parsers of setting values (pure): durations, flags, lists, and the messages of invalid
settings. Parsers of values that are not settings (addresses, e-mail, masked URLs, ``scrub``)
are in ``core/values.py``.

mailcow's values are read as mailcow reads them: a flag that is not yes is no (``mailcow_flag``),
and a bad ``ADDITIONAL_SAN`` entry or ``ACME_ACCOUNT_EMAIL`` is left out (``san_entries``,
``contact``, ``skipped_values``) where acme-mailcow skips it too; the caller logs one warning
for each. The sidecar's own settings stay strict.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from pydantic import ValidationError

from acme_sidecar.core.names import normalize_hostname, normalize_prefix
from acme_sidecar.core.values import (
    is_email,
    mask_url,
    parse_resolver,
    url_origin,
)

_YES = {"y", "yes"}
_NO = {"n", "no", ""}


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


SAN_VALID = (
    "each entry must be a host name (mail.example.org), a wildcard (*.example.org, DNS-01 "
    "only) or a per-domain prefix (mail.*)"
)
CONTACT_VALID = "must be an e-mail address with a domain, such as admin@example.org, or empty"


def _san_entry(entry: str) -> str | None:
    """One ``ADDITIONAL_SAN`` entry normalized, or None when it is none of ``SAN_VALID``."""
    if entry.endswith(".*"):
        prefix = normalize_prefix(entry[:-2])
        return None if prefix is None else prefix + ".*"
    return normalize_hostname(entry, allow_wildcard=True)


def san_entries(value: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``ADDITIONAL_SAN`` as mailcow reads it: the usable entries (lower case, IDNA,
    duplicates dropped) and, apart, those that are none of ``SAN_VALID`` (an IP address,
    ``a.*.b``, ``mail*``): left out, as acme-mailcow leaves out a name it cannot check."""
    good: list[str] = []
    bad: list[str] = []
    for entry in comma_list(value):
        name = _san_entry(entry)
        if name is None:
            bad.append(entry)
        else:
            good.append(name)
    return tuple(dict.fromkeys(good)), tuple(dict.fromkeys(bad))


def contact(value: Any) -> tuple[str, bool]:
    """``ACME_ACCOUNT_EMAIL`` as mailcow reads it: the address, and whether it was usable. A
    value that is not an e-mail address with a domain (``root@localhost``, which mailcow
    accepts) is read as empty: no contact is sent."""
    text = str(value).strip()
    if not text or is_email(text):
        return text, True
    return "", False


def skipped_values(raw: Mapping[str, Any]) -> tuple[tuple[str, str, str], ...]:
    """``(VARIABLE, value, what is valid)`` for each mailcow value left out of ``raw`` (the
    settings as given, keys lower-cased): bad ``ADDITIONAL_SAN`` entries, a bad contact."""
    out: list[tuple[str, str, str]] = []
    san = raw.get("additional_san")
    if isinstance(san, str):
        out += [("ADDITIONAL_SAN", entry, SAN_VALID) for entry in san_entries(san)[1]]
    email = raw.get("acme_account_email")
    if isinstance(email, str) and not contact(email)[1]:
        out.append(("ACME_ACCOUNT_EMAIL", email.strip(), CONTACT_VALID))
    return tuple(out)


def comma_list(value: Any) -> tuple[str, ...]:
    """The non-empty, stripped items of a comma-separated setting."""
    return tuple(item.strip() for item in str(value).split(",") if item.strip())


def resolver_list(value: Any) -> tuple[str, ...]:
    """A comma-separated list of DNS resolvers (``ip`` or ``ip:port``), each checked
    (``core.values.parse_resolver`` raises ``ValueError`` naming a bad one)."""
    if isinstance(value, tuple):
        return value
    items = comma_list(value)
    for item in items:
        parse_resolver(item)
    return items


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
