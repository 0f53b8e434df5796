"""Hostname rules: IDNA encoding, lower case, the checks that keep a bad value out of paths
and orders, and wildcard coverage. Pure functions, no I/O.

Coverage is decided label by label, case-insensitively (RFC 6125 §6.4.3 as the CA applies it):
``*.example.org`` covers ``mail.example.org`` but neither ``example.org`` nor
``a.mail.example.org``, and never ``mail.badexample.org``. ``covers`` is the one rule; ``holds``
(is a certificate of these names valid for that name) and ``drop_covered`` build on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _ascii(text: str) -> str | None:
    """``text`` IDNA-encoded (UTS #46) when it is not ASCII; ``None`` when it cannot be."""
    if text.isascii():
        return text
    import idna  # here: only an internationalized name needs it (0.45 MB of memory)

    try:
        return idna.encode(text, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return None


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
    encoded = _ascii(text)
    if encoded is None:
        return None
    labels = encoded.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        return None
    if labels[-1].isdigit():
        return None  # an IP address or a numeric TLD is not a hostname
    result = ("*." if wildcard else "") + encoded
    return result if len(result) <= 253 else None


def normalize_prefix(value: str) -> str | None:
    """Return a per-domain prefix (``mail`` of ``mail.*``) in lower-case ASCII, or ``None``."""
    text = value.strip().lower()
    if not text or len(text) > 200:
        return None
    ascii_text = _ascii(text)
    if ascii_text is None:
        return None
    return ascii_text if all(_LABEL.match(label) for label in ascii_text.split(".")) else None


def is_wildcard(name: str) -> bool:
    """Whether ``name`` is a wildcard name (``*.example.org``)."""
    return name.startswith("*.")


def _plain(name: str) -> str:
    return name.lower().rstrip(".")


def covers(wildcard: str, name: str) -> bool:
    """Whether ``wildcard`` (``*.example.org``) covers ``name``: exactly one label in place
    of the ``*``, the rest equal label by label."""
    wildcard, name = _plain(wildcard), _plain(name)
    if not wildcard.startswith("*.") or name.startswith("*."):
        return False
    base = wildcard[2:].split(".")
    labels = name.split(".")
    return len(labels) == len(base) + 1 and labels[1:] == base


def drop_covered(names: Sequence[str]) -> tuple[tuple[str, ...], dict[str, str]]:
    """``names`` without those a wildcard among them covers (the CA refuses an order that
    lists both), and for each dropped name the wildcard that covers it."""
    wildcards = [n for n in names if n.startswith("*.")]
    dropped: dict[str, str] = {}
    kept: list[str] = []
    for name in names:
        by = next((w for w in wildcards if covers(w, name)), None)
        if by is None:
            kept.append(name)
        else:
            dropped[name] = by
    return tuple(kept), dropped


def holds(names: Iterable[str], name: str) -> bool:
    """Whether a certificate of ``names`` is valid for ``name`` (listed, or by a wildcard)."""
    listed = tuple(_plain(n) for n in names)
    return _plain(name) in listed or any(covers(w, name) for w in listed)
