"""Small frozen policies cut from ``Settings`` at the edge.

The cycle gets a ``CyclePolicy`` and the daemon a ``DaemonPolicy``; neither sees ``Settings``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache, lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from acme_sidecar.config.ca_settings import LE_PRODUCTION, LE_STAGING
from acme_sidecar.config.settings import Settings
from acme_sidecar.core.budget import Limits, last_two_labels
from acme_sidecar.core.coalesce import Coalesce
from acme_sidecar.core.consumers import Endpoint, ProbeKind
from acme_sidecar.core.discover import NameRules
from acme_sidecar.core.plan import Shape
from acme_sidecar.core.profiles import max_names
from acme_sidecar.core.settle import RetryPolicy


@dataclass(frozen=True, slots=True)
class ValidationPolicy:
    """How names are validated before an order."""

    skip_ip_check: bool = False
    snat4: bool = False
    snat6: bool = False
    own_addresses: tuple[str, ...] = ()  # this server's (PUBLIC_IPV*, SNAT*)
    skip_http: bool = False
    caa_identities: tuple[str, ...] = ()  # configured; else the CA's directory is asked
    grace: timedelta = timedelta(days=7)
    revalidate_after: timedelta = timedelta(hours=12)
    dns01: bool = False  # ACME_DNS_CHALLENGE=y: DNS-01 for every name (no IP/HTTP check)


@dataclass(frozen=True, slots=True)
class DeployPolicy:
    """Which TLS endpoints are checked after a deploy, how often, and for how long in all."""

    endpoints: tuple[Endpoint, ...] = ()
    attempts: int = 5
    timeout: float = 120.0


@dataclass(frozen=True, slots=True)
class OwnPolicy:
    """The top-level pair: whose it is, and how a changed own pair is checked (core/own.py)."""

    hostname: str = ""
    skip_lets_encrypt: bool = False  # SKIP_LETS_ENCRYPT=y: every top-level pair is own
    ca_organizations: tuple[str, ...] = ()  # issuer O= values of the configured CA
    hold_still: float = 2.0  # a changed pair must stay the same this long (an admin's cp)


@dataclass(frozen=True, slots=True)
class CyclePolicy:
    """Everything one cycle needs to know from the settings."""

    rules: NameRules
    shape: Shape = field(default_factory=Shape)
    validation: ValidationPolicy = field(default_factory=ValidationPolicy)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limits: Limits = field(default_factory=Limits)
    deploy: DeployPolicy = field(default_factory=DeployPolicy)
    own: OwnPolicy = field(default_factory=OwnPolicy)
    ari_interval: timedelta = timedelta(hours=6)  # ACME_ARI_INTERVAL: the CA's window asked
    key_reuse: bool = True  # ACME_KEY_REUSE: one key across renewals (n: a fresh one each)
    coalesce: Coalesce = field(default_factory=Coalesce)  # ACME_COALESCE: renew together


@dataclass(frozen=True, slots=True)
class StartPolicy:
    """What the daemon waits for at start, and how long."""

    hostname: str
    db_wait: float = 600.0
    db_retry: float = 30.0  # ACME_DB_RETRY_INTERVAL: the longest step between two tries (max 30 s)
    dockerapi_wait: float = 120.0  # ACME_DOCKERAPI_WAIT: 0 does not wait
    webroot_wait: float = 120.0
    check_webroot: bool = True
    own_addresses: tuple[str, ...] = ()  # this server's, where the self-check may go
    skip_ip_check: bool = False  # SKIP_IP_CHECK=y: LAN addresses too


@dataclass(frozen=True, slots=True)
class DaemonPolicy:
    """How the daemon paces cycles."""

    check_interval: timedelta = timedelta(days=1)
    idle_interval: timedelta = timedelta(hours=1)
    db_retry_interval: timedelta = timedelta(minutes=1)
    db_poll: float = 300.0
    skip_lets_encrypt: bool = False
    watch_interval: float = 60.0  # ACME_WATCH_INTERVAL: the top-level pair is looked at
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    start: StartPolicy | None = None  # None: start cycling at once (tests, `once`)
    banner: dict[str, str] = field(default_factory=dict)  # logged once at start
    ari: bool = False  # the CA's renewal windows are fetched (their next fetch wakes the daemon)
    coalesce: Coalesce = field(default_factory=Coalesce)  # ACME_COALESCE, as the plan groups


def endpoints(settings: Settings) -> tuple[Endpoint, ...]:
    """The TLS endpoints to check, each tied to the restart service it belongs to."""
    out: list[Endpoint] = []
    specs: list[tuple[ProbeKind, str, str]] = [
        ("smtp", settings.acme_verify_smtp, "postfix"),
        ("imap", settings.acme_verify_imap, "dovecot"),
        ("https", settings.verify_https, "nginx"),
    ]
    for kind, address, word in specs:
        if not address:
            continue
        service = next((s for s in settings.acme_restart_services if word in s), word)
        host, _, port = address.rpartition(":")
        out.append(Endpoint(service, kind, host.strip("[]"), int(port)))
    return tuple(out)


def own_addresses(settings: Settings) -> tuple[str, ...]:
    """This server's configured addresses: the self-check may connect to these even when they
    are private or loopback."""
    found = [settings.public_ipv4, settings.public_ipv6]
    found += [a.strip() for a in (settings.snat_to_source, settings.snat6_to_source)]
    return tuple(a for a in found if a and a != "n")


def retry_policy(settings: Settings, dns01_credentials: str = "") -> RetryPolicy:
    """The retry ladder and back-off of the settings; ``dns01_credentials``: see
    ``order_fingerprint``."""
    return RetryPolicy(
        ladder=tuple(timedelta(seconds=s) for s in settings.acme_retry_ladder),
        interval=timedelta(seconds=settings.acme_retry_interval),
        max_backoff=timedelta(seconds=max(settings.acme_max_backoff, 1)),
        settings=order_fingerprint(settings, dns01_credentials),
    )


def order_fingerprint(settings: Settings, dns01_credentials: str = "") -> str:
    """A hash of the settings an order depends on that an admin fixes after a refusal: EAB,
    profile, contact, challenge type, DNS-01 provider, and ``dns01_credentials`` (the hash of
    the DNS-01 credentials the hosts were built with, ``Routes.credentials``; "" without
    DNS-01). Secrets go into the hash only, never into the ledger."""
    eab = settings.eab
    parts = [
        eab[0] if eab else "",
        eab[1] if eab else "",
        settings.acme_profile,
        settings.acme_account_email,
        "dns-01" if settings.acme_dns_challenge else "http-01",
        settings.acme_dns_provider,
    ]
    if dns01_credentials:  # left out when empty: the fingerprint without DNS-01 is unchanged
        parts.append(dns01_credentials)
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def own_policy(settings: Settings) -> OwnPolicy:
    """How the top-level pair is judged: Let's Encrypt's issuers count as the configured CA's
    only when Let's Encrypt is the configured CA."""
    le = settings.directory in (LE_PRODUCTION, LE_STAGING)
    return OwnPolicy(
        hostname=settings.mailcow_hostname,
        skip_lets_encrypt=settings.skip_lets_encrypt,
        ca_organizations=("Let's Encrypt", "(STAGING) Let's Encrypt") if le else (),
    )


LE_HOSTS = frozenset(urlsplit(url).hostname for url in (LE_PRODUCTION, LE_STAGING))


@cache
def _suffix_list() -> Any:
    """tldextract over its bundled public suffix list: no download, no cache directory.
    Imported here, when the budget first counts per registered domain (not at start)."""
    import tldextract  # lazy: the idle daemon does not need the list in memory

    return tldextract.TLDExtract(
        cache_dir=None, suffix_list_urls=(), include_psl_private_domains=True
    )


@lru_cache(maxsize=4096)
def registered_domain(name: str) -> str:
    """The registered domain Let's Encrypt counts ``name`` under: by the public suffix list
    (its private part too, as the CA's), e.g. ``example.co.uk`` for ``a.example.co.uk``; the
    last two labels for a name under no listed suffix (``mail.example.test``)."""
    found = _suffix_list().extract_str(name.lstrip("*.")).top_domain_under_public_suffix
    return str(found) if found else last_two_labels(name)


def rate_limits(settings: Settings) -> Limits:
    """``ACME_RATE_LIMITS``: Let's Encrypt's limits (``letsencrypt``; ``auto`` only when the
    directory is Let's Encrypt's, production or staging, by host), or none (``off``; ``auto``
    for any other CA)."""
    mode = settings.acme_rate_limits
    if mode == "auto":
        mode = "letsencrypt" if urlsplit(settings.directory).hostname in LE_HOSTS else "off"
    return Limits(domain_of=registered_domain) if mode == "letsencrypt" else Limits.off()


def cycle_policy(settings: Settings, dns01_credentials: str = "") -> CyclePolicy:
    """Cut the cycle's policy from the settings; ``dns01_credentials``: the hash of the DNS-01
    credentials in use (``Routes.credentials``), for the back-off's settings fingerprint."""
    return CyclePolicy(
        rules=NameRules(
            hostname=settings.mailcow_hostname,
            static_sans=settings.static_sans,
            prefixes=settings.prefixes,
            autodiscover=settings.autodiscover_san,
            only_hostname=settings.only_mailcow_hostname,
        ),
        shape=Shape(
            sni=settings.enable_ssl_sni,
            max_names=max_names(settings.acme_profile, settings.acme_max_names),
            profile=settings.acme_profile,
            key_type=settings.acme_key_type,  # "" = the volume's (resolved per cycle)
            directory=settings.directory,
        ),
        validation=ValidationPolicy(
            skip_ip_check=settings.skip_ip_check,
            snat4=settings.snat4,
            snat6=settings.snat6,
            own_addresses=own_addresses(settings),
            skip_http=settings.skip_http_verification,
            caa_identities=settings.acme_caa_identities,
            grace=timedelta(seconds=settings.acme_name_grace),
            revalidate_after=timedelta(seconds=settings.acme_revalidate_after),
            dns01=settings.acme_dns_challenge,
        ),
        retry=retry_policy(settings, dns01_credentials),
        limits=rate_limits(settings),
        deploy=DeployPolicy(
            endpoints=endpoints(settings),
            attempts=settings.acme_verify_attempts,
            timeout=float(settings.acme_verify_timeout),
        ),
        own=own_policy(settings),
        ari_interval=timedelta(seconds=settings.acme_ari_interval),
        key_reuse=settings.acme_key_reuse,
        coalesce=settings.coalesce,
    )


def daemon_policy(settings: Settings, cert_dir: Path | None = None) -> DaemonPolicy:
    """Cut the daemon's policy from the settings."""
    return DaemonPolicy(
        check_interval=timedelta(seconds=settings.acme_check_interval),
        idle_interval=timedelta(seconds=settings.acme_idle_interval),
        db_retry_interval=timedelta(seconds=settings.acme_db_retry_interval),
        db_poll=float(settings.acme_db_poll),
        skip_lets_encrypt=settings.skip_lets_encrypt,
        watch_interval=float(max(settings.acme_watch_interval, 1)),
        retry=retry_policy(settings),
        start=StartPolicy(
            hostname=settings.mailcow_hostname,
            db_wait=float(settings.acme_db_wait),
            db_retry=float(settings.acme_db_retry_interval),
            dockerapi_wait=float(settings.acme_dockerapi_wait),
            webroot_wait=float(settings.acme_webroot_wait),
            check_webroot=settings.acme_webroot_wait > 0
            and not (settings.skip_http_verification or settings.acme_dns_challenge),
            own_addresses=own_addresses(settings),
            skip_ip_check=settings.skip_ip_check,
        ),
        ari=True,
        coalesce=settings.coalesce,
        banner={
            "hostname": settings.mailcow_hostname,
            "directory": settings.directory,
            "cert_dir": str(cert_dir or settings.acme_cert_dir),
            "profile": settings.acme_profile or "the CA's default",
            "key_type": settings.acme_key_type or "the volume's (new: ec256)",
            "key_reuse": "y" if settings.acme_key_reuse else "n",
        }
        | ({"eab_kid": settings.acme_eab_kid} if settings.acme_eab_kid else {}),
    )
