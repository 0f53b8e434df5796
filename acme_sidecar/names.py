"""Hostname rules: IDNA encoding, lower case, and the checks that keep a bad value out of paths
and orders. Pure functions, no I/O."""

from __future__ import annotations

import re

import idna

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalize_hostname(value: str, *, allow_wildcard: bool = False) -> str | None:
    """Return ``value`` as a lower-case ASCII (IDNA) hostname, or ``None`` when it is not one.

    A hostname needs at least two labels; each label is 1-63 letters, digits or hyphens and does
    not start or end with a hyphen. ``*.`` in front is accepted only with ``allow_wildcard``.
    """
    text = value.strip().rstrip(".").lower()
    wildcard = False
    if text.startswith("*."):
        if not allow_wildcard:
            return None
        wildcard, text = True, text[2:]
    if not text or len(text) > 253:
        return None
    if not text.isascii():
        try:
            text = idna.encode(text, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            return None
    labels = text.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        return None
    if labels[-1].isdigit():
        return None  # an IP address or a numeric TLD is not a hostname
    result = ("*." if wildcard else "") + text
    return result if len(result) <= 253 else None


def normalize_prefix(value: str) -> str | None:
    """Return a per-domain prefix (``mail`` of ``mail.*``) in lower-case ASCII, or ``None``."""
    text = value.strip().lower()
    if not text or len(text) > 200:
        return None
    if not text.isascii():
        try:
            text = idna.encode(text, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            return None
    return text if all(_LABEL.match(label) for label in text.split(".")) else None


def is_wildcard(name: str) -> bool:
    """Whether ``name`` is a wildcard name (``*.example.org``)."""
    return name.startswith("*.")
