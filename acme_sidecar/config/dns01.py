"""The DNS-01 credentials file (``ACME_DNS_CONFIG_FILE``, mailcow's ``dns-01.conf``): parsed and
mapped to the providers we support (the table is ``dns01_providers``). Pure, except
``read_file`` (the file and its mode).

The file is mailcow's: ``KEY=VALUE`` lines with acme.sh's variable names for the plugin named
by ``ACME_DNS_PROVIDER``. Beyond mailcow, ``[zone example.org]`` starts a section whose lines
(its own ``ACME_DNS_PROVIDER=`` and variables) apply to that zone and the names below it; lines
before the first section are the default for every other name. Values are secrets: only
variable names are ever logged.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from acme_sidecar.core.names import normalize_hostname

DEFAULT_FILE = Path("/etc/acme/dns-01.conf")

DEFAULT_TTL = 60  # acme.sh's for dns_pdns and dns_nsupdate

_SECTION = re.compile(r"^\[\s*zone\s+([^\]\s]+)\s*\]$", re.IGNORECASE)
_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


@dataclass(frozen=True, slots=True)
class Section:
    """The lines of one zone's section (``zone`` empty: the lines before any section)."""

    zone: str
    plugin: str
    values: dict[str, str] = field(default_factory=dict, repr=False)  # secrets: never shown


@dataclass(frozen=True, slots=True)
class NsupdateConf:
    """dns_nsupdate: RFC 2136 updates, TSIG-signed when a key file is given."""

    servers: tuple[str, ...]
    port: int = 53
    key_file: Path | None = None
    zone: str = ""  # NSUPDATE_ZONE: the zone to update (else found by SOA)
    ttl: int = DEFAULT_TTL


@dataclass(frozen=True, slots=True)
class LexiconConf:
    """A provider API through dns-lexicon; ``options`` hold secrets (never logged)."""

    plugin: str
    provider: str
    options: dict[str, str] = field(repr=False)
    ttl: int = DEFAULT_TTL


ProviderConf = NsupdateConf | LexiconConf


@dataclass(frozen=True, slots=True)
class Dns01File:
    """The parsed file: the default section and one per zone, plus lines it could not read."""

    default: Section
    zones: tuple[Section, ...] = ()
    problems: tuple[str, ...] = ()


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def parse_file(text: str, default_plugin: str) -> Dns01File:
    """Read ``KEY=VALUE`` lines and ``[zone NAME]`` sections. ``ACME_DNS_PROVIDER=`` inside a
    section names its plugin (default: ``default_plugin``, the environment's)."""
    problems: list[str] = []
    sections: list[Section] = [Section("", default_plugin.strip())]
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = _SECTION.match(line)
        if header:
            zone = normalize_hostname(header.group(1))
            if zone is None:
                problems.append(f"line {number}: {header.group(1)!r} is not a zone name")
                zone = f"invalid-{number}"
            sections.append(Section(zone, default_plugin.strip()))
            continue
        match = _LINE.match(line)
        if not match:
            problems.append(f"line {number}: not KEY=VALUE nor [zone NAME]")
            continue
        key, value = match.group(1), _unquote(match.group(2))
        if value != value.strip():  # PDNS_Token=" abc": no credential has them (review N8)
            problems.append(
                f"line {number}: the value of {key} starts or ends with spaces; they are removed"
            )
            value = value.strip()
        current = sections[-1]
        if key == "ACME_DNS_PROVIDER":
            sections[-1] = Section(current.zone, value, current.values)
        else:
            current.values[key] = value
    zones: dict[str, Section] = {}
    for section in sections[1:]:
        if section.zone in zones:
            problems.append(f"[zone {section.zone}] appears twice; the last one is used")
        zones[section.zone] = section
    return Dns01File(sections[0], tuple(zones.values()), tuple(problems))


def parse_zone_list(text: str) -> tuple[str, ...]:
    """``ACME_DNS_ALIAS_ZONES``: zone names separated by commas or spaces (empty: none);
    raises ``ValueError`` naming the first entry that is not a zone name."""
    zones: list[str] = []
    for raw in re.split(r"[,\s]+", text.strip()):
        if not raw:
            continue
        zone = normalize_hostname(raw)
        if zone is None:
            raise ValueError(
                f"{raw!r} is not a zone name: give zone names of two labels or more, such as "
                "acme.example.org, separated by commas or spaces (no wildcards, no IP addresses)"
            )
        zones.append(zone)
    return tuple(dict.fromkeys(zones))


def _ttl(section: Section, name: str) -> int | str:
    text = section.values.get(name, "")
    if not text:
        return DEFAULT_TTL
    if not text.isdigit() or not 1 <= int(text) <= 86400:
        return f"{name}={text!r} is not a TTL in seconds (1 to 86400)"
    return int(text)


def provider_conf(section: Section) -> ProviderConf | str:
    """The provider a section configures, or why it configures none (a message naming the
    plugin or variable and what is valid; never a value)."""
    # imported here: a daemon without DNS-01 never loads the provider table
    from acme_sidecar.config.dns01_providers import (
        PLUGINS,
        lexicon_options,
        malformed,
        missing,
        unsupported,
    )

    plugin = PLUGINS.get(section.plugin)
    if plugin is None or plugin.via == "none":
        return unsupported(section.plugin)
    values = section.values
    if plugin.via == "rfc2136":
        servers = tuple(s.strip() for s in values.get("NSUPDATE_SERVER", "").split(",") if s)
        port = values.get("NSUPDATE_SERVER_PORT", "") or "53"
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            return f"NSUPDATE_SERVER_PORT={port!r} is not a port number (1 to 65535)"
        raw_zone = values.get("NSUPDATE_ZONE", "").strip()
        zone = normalize_hostname(raw_zone) if raw_zone else ""
        if zone is None:
            return f"NSUPDATE_ZONE={raw_zone!r} is not a zone name"
        key = values.get("NSUPDATE_KEY", "").strip()
        return NsupdateConf(
            servers=servers or ("localhost",),  # acme.sh's default
            port=int(port),
            key_file=Path(key) if key else None,
            zone=zone,
        )
    lacking = missing(plugin, values)
    if lacking:
        return (
            f"{plugin.name} needs {lacking} (in the DNS-01 file, the container's environment "
            "or acme.sh's account.conf)"
        )
    wrong = malformed(plugin, values)
    if wrong:
        return f"{plugin.name} needs {wrong} (the value set has another form)"
    ttl = _ttl(section, plugin.ttl)
    if isinstance(ttl, str):
        return ttl
    return LexiconConf(plugin.name, plugin.provider, lexicon_options(plugin, values), ttl)


def described(section: Section, sources: Mapping[str, str] | None = None) -> str:
    """The section for a log line: plugin and the variable names set, each with where it was
    read when ``sources`` says (``CF_Token (environment)``); never a value."""
    where = sources or {}
    keys = " ".join(f"{k} ({where[k]})" if k in where else k for k in sorted(section.values))
    return f"{section.plugin or '(no provider)'} with {keys or 'no variables'}"


@dataclass(frozen=True, slots=True)
class FileRead:
    """The file's text (``None`` when absent or unreadable), a warning to log while it is used
    anyway (readable by everyone, with the chmod that fixes it), or why it could not be read."""

    text: str | None
    warning: str | None = None
    problem: str | None = None


def chmod_hint(path: Path) -> str:
    """The command that makes the file private (and the host's, for mailcow's own path)."""
    command = f"chmod 600 {path}"
    if path == DEFAULT_FILE:  # mailcow's mount of data/conf/acme/
        host = "chmod 600 data/conf/acme/dns-01.conf"
        return f"{command} (on the host, in the mailcow directory: {host})"
    return command


def read_file(path: Path) -> FileRead:
    """Read the file; one readable by everyone (mailcow creates it 0644) is used, with a
    warning that gives the chmod."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return FileRead(None)
    except OSError as exc:
        return FileRead(None, problem=f"cannot read {path}: {exc.strerror}")
    warning = None
    if info.st_mode & stat.S_IROTH:
        mode = stat.filemode(info.st_mode)
        warning = (
            f"{path} holds DNS credentials and is readable by everyone ({mode}); it is used "
            f"all the same: run {chmod_hint(path)}"
        )
    try:
        return FileRead(path.read_text(encoding="utf-8"), warning)
    except (OSError, UnicodeDecodeError) as exc:
        return FileRead(None, warning, f"cannot read {path}: {exc}")
