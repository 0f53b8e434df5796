"""Where a DNS plugin's variables come from besides ``dns-01.conf``: the container's environment
(mailcow's generate_config.sh tells admins to pass them there) and acme.sh's saved
``account.conf`` (``acme-sh/account.conf`` of the certificate volume, written by mailcow's
acme.sh at its first DNS-01 order). Pure: the caller reads the file and hands in the
environment.

Precedence, per variable: ``dns-01.conf``, then the environment, then ``account.conf``. This is
acme-mailcow's: it exports the file's lines over the environment, and acme.sh's plugins read a
saved value only for a variable the environment leaves empty. Only the file's default section
(the lines before any ``[zone …]``, mailcow's form) is filled this way; a ``[zone …]`` section
holds its own credentials. Values are secrets: only names and sources are ever shown.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from acme_sidecar.config.dns01 import Section
from acme_sidecar.config.dns01_providers import PLUGINS

FILE = "dns-01.conf"
ENVIRONMENT = "environment"
ACCOUNT_CONF = "account.conf"

# acme.sh's marks around a value it saved base64-encoded (``_save_conf`` with base64encode)
_B64_START, _B64_END = "__ACME_BASE64__START_", "__ACME_BASE64__END_"
_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


@dataclass(frozen=True, slots=True)
class Saved:
    """acme.sh's account.conf: each variable's value (``SAVED_X`` before a plain ``X``), and
    the numbers of the lines that could not be read."""

    values: Mapping[str, str]
    unreadable: tuple[int, ...] = ()

    def __repr__(self) -> str:  # values are secrets
        return f"Saved(names={sorted(self.values)}, unreadable={self.unreadable})"


def _decoded(value: str) -> str | None:
    if not (value.startswith(_B64_START) and value.endswith(_B64_END)):
        return value
    inner = value[len(_B64_START) : len(value) - len(_B64_END)]
    try:
        return base64.b64decode(inner, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def parse_account_conf(text: str) -> Saved:
    """acme.sh's ``KEY='value'`` lines (shell quoting), ``SAVED_KEY`` for the plugins' saved
    variables (``_saveaccountconf_mutable``), plain ``KEY`` for older plugins."""
    plain: dict[str, str] = {}
    saved: dict[str, str] = {}
    unreadable: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = _ASSIGNMENT.match(line)
        if not match:
            continue
        key, raw = match.groups()
        try:
            words = shlex.split(raw, comments=True)
        except ValueError:  # unbalanced quotes: acme.sh does not escape a ' in a value
            unreadable.append(number)
            continue
        value = _decoded(" ".join(words))
        if value is None:
            unreadable.append(number)
            continue
        if key.startswith("SAVED_"):
            saved[key.removeprefix("SAVED_")] = value
        else:
            plain[key] = value
    return Saved({**plain, **saved}, tuple(unreadable))


def fill(
    section: Section, environ: Mapping[str, str], saved: Mapping[str, str]
) -> tuple[Section, dict[str, str]]:
    """The default section with each variable of its plugin that the file leaves unset taken
    from ``environ``, else from ``saved``; and where each set variable was read. A ``[zone …]``
    section, or an unknown plugin, is returned as it is (its values from the file)."""
    sources = {name: FILE for name, value in section.values.items() if value}
    plugin = PLUGINS.get(section.plugin)
    if section.zone or plugin is None:
        return section, sources
    values = dict(section.values)
    for name in plugin.variables:
        if values.get(name):
            continue
        for source, found in ((ENVIRONMENT, environ), (ACCOUNT_CONF, saved)):
            value = found.get(name, "")
            if value:
                values[name] = value
                sources[name] = source
                break
    return Section(section.zone, section.plugin, values), sources


def fingerprint(sections: Iterable[Section]) -> str:
    """A SHA-256 of the sections' values as used (the default section after ``fill``): a fixed
    token changes it, the same ones give the same. Never the values themselves."""
    parts = []
    for section in sorted(sections, key=lambda s: s.zone):
        parts.append(f"[{section.zone}]{section.plugin}")
        parts.extend(f"{name}={value}" for name, value in sorted(section.values.items()))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()
