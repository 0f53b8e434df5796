"""What the CLI prints to a terminal: every character that is not printable is escaped.

``check`` prints DNS answers (a tenant's CAA values) and ``status`` prints what certificates
say (subjects, issuers): text that others control. An ESC, BEL, CR or a bidi override in it
could rewrite the admin's screen or clipboard (OSC 52), so it is shown as ``\\x1b``,
``\\r``, ``\\u202e``. Touches nothing but the stream it wraps.
"""

from __future__ import annotations

from typing import Protocol


class Out(Protocol):
    """Where the CLI prints to (``print(file=...)``)."""

    def write(self, text: str, /) -> int:
        """Write ``text``."""
        ...


def printable(text: str, *, keep: str = "") -> str:
    """``text`` with every non-printable character (but those in ``keep``) escaped."""
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() or ch in keep else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


class Printable:
    """A text stream that escapes what is written to it (newlines pass): ``print(file=...)``."""

    def __init__(self, out: Out) -> None:
        self._out = out

    def write(self, text: str) -> int:
        """Write ``text`` escaped; returns the length of ``text``."""
        self._out.write(printable(text, keep="\n"))
        return len(text)
