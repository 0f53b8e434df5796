"""Build the DNS-01 hosts from mailcow's settings and file, once at start.

Every problem is one log line naming the file, section, plugin or variable and what is valid;
none stops the daemon: a name no usable host answers for is left out at validation. Values
are never logged, only variable names and where each was read (the file, the environment or
acme.sh's account.conf). May touch: the DNS-01 file, acme.sh's ``account.conf`` and the TSIG
key files the file names.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Mapping
from pathlib import Path

import structlog

from acme_sidecar.adapters.dns01.base import DnsProvider
from acme_sidecar.adapters.dns01.lexicon_api import LexiconProvider
from acme_sidecar.adapters.dns01.nsupdate import NsupdateProvider, load_key
from acme_sidecar.adapters.dns01.responder import Dns01Responder, Dns01Router, Target
from acme_sidecar.adapters.dns01.zones import DnsZoneLookups
from acme_sidecar.config.dns01 import (
    NsupdateConf,
    Section,
    described,
    parse_file,
    provider_conf,
    read_file,
)
from acme_sidecar.config.dns01_credentials import Saved, fill, fingerprint, parse_account_conf
from acme_sidecar.config.dns01_providers import PLUGINS, SUPPORTED

log = structlog.get_logger(__name__)

AUTH_PORT = "ACME_DNS_AUTH_PORT"  # a section's own port of its authoritative servers


def _target(section: Section, auth_port: int) -> Target:
    port_text = section.values.get(AUTH_PORT, "")
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            return Target(None, f"{AUTH_PORT}={port_text!r} is not a port (1 to 65535)")
        auth_port = int(port_text)
    conf = provider_conf(section)
    if isinstance(conf, str):
        return Target(None, conf, auth_port)
    provider: DnsProvider
    if isinstance(conf, NsupdateConf):
        key = None
        if conf.key_file is not None:
            loaded = load_key(conf.key_file)
            if isinstance(loaded, str):
                return Target(None, loaded, auth_port)
            key = loaded
        provider = NsupdateProvider(conf, key)
        return Target(provider, None, auth_port, conf.zone)
    package = PLUGINS[conf.plugin].package
    if package and importlib.util.find_spec(package) is None:
        return Target(
            None,
            f"{conf.plugin}: lexicon's {conf.provider} provider needs the Python package "
            f"{package}, which this image does not have",
            auth_port,
        )
    try:
        provider = LexiconProvider(conf)
    except ImportError as exc:  # a provider needing an extra package lexicon lacks here
        return Target(None, f"{conf.plugin}: lexicon cannot load {conf.provider}: {exc}")
    return Target(provider, None, auth_port)


def read_account_conf(path: Path | None) -> Saved:
    """acme.sh's saved variables (none when there is no such file); a file that cannot be read
    is one warning."""
    if path is None:
        return Saved({})
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Saved({})
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("dns01.account_conf_unreadable", file=str(path), reason=str(exc))
        return Saved({})
    saved = parse_account_conf(text)
    if saved.unreadable:
        lines = ", ".join(map(str, saved.unreadable))
        log.warning(
            "dns01.account_conf_line",
            file=str(path),
            problem=f"lines {lines}: not a KEY='value' acme.sh writes; skipped",
        )
    return saved


def build_router(
    plugin: str,
    path: Path,
    auth_port: int,
    aliases: tuple[str, ...] = (),
    *,
    environ: Mapping[str, str] | None = None,
    account_conf: Path | None = None,
) -> Dns01Router:
    """The DNS hosts of ``ACME_DNS_PROVIDER`` and ``ACME_DNS_CONFIG_FILE`` (its default section
    completed from ``environ`` and acme.sh's ``account_conf``), with the zones of
    ``ACME_DNS_ALIAS_ZONES`` a CNAME may lead to; logs what it found and every problem
    (once). Its routes carry a hash of the values used (``credentials``), never logged."""
    if aliases:
        log.info("dns01.alias_zones", zones=" ".join(aliases))
    read = read_file(path)
    if read.warning:
        log.warning("dns01.config_readable", file=str(path), problem=read.warning)
    if read.problem:
        log.error("dns01.config_refused", file=str(path), reason=read.problem)
        return Dns01Router(Target(None, read.problem), {}, aliases)
    if read.text is None:
        log.warning(
            "dns01.config_missing",
            file=str(path),
            reason="no such file: the provider's variables come from the environment "
            "and acme.sh's account.conf only",
        )
    parsed = parse_file(read.text or "", plugin)
    for problem in parsed.problems:
        log.warning("dns01.config_line", file=str(path), problem=problem)
    zones = {s.zone: _target(s, auth_port) for s in parsed.zones}
    default, sources = fill(parsed.default, environ or {}, read_account_conf(account_conf).values)
    if not default.plugin and not default.values:
        why = (
            "ACME_DNS_PROVIDER is not set: only the names of the zones with a section in "
            f"{path} are answered"
            if zones
            else f"ACME_DNS_PROVIDER is not set: name one of the {len(SUPPORTED)} plugins of "
            "the README's DNS-01 provider table, such as dns_cf or dns_nsupdate"
        )
        default_target = Target(None, why, auth_port)
        (log.info if zones else log.error)("dns01.no_default", reason=why)
    else:
        default_target = _target(default, auth_port)
        _log_target("", default, default_target, sources)
    for section in parsed.zones:
        _log_target(section.zone, section, zones[section.zone], fill(section, {}, {})[1])
    credentials = fingerprint([default, *parsed.zones])
    return Dns01Router(default_target, zones, aliases, credentials=credentials)


def _log_target(zone: str, section: Section, target: Target, sources: Mapping[str, str]) -> None:
    where = zone or "default"
    config = described(section, sources)
    if target.provider is None:
        log.error(
            "dns01.unusable",
            zone=where,
            plugin=section.plugin,
            reason=target.problem,
            config=config,
        )
    else:
        log.info(
            "dns01.provider",
            zone=where,
            provider=target.provider.label,
            config=config,
            auth_port=target.auth_port,
        )


def responders(
    router: Dns01Router,
    resolvers: tuple[str, ...],
    *,
    propagation_timeout: float,
    stop: threading.Event,
) -> Dns01Responder:
    """A responder for one order (the issuer's ``responders`` factory calls this)."""
    return Dns01Responder(
        router,
        DnsZoneLookups(resolvers),
        propagation_timeout=propagation_timeout,
        stop=stop,
    )
