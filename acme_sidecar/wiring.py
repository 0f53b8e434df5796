"""Wiring: the real adapters and the hooks built from the settings, for the CLI.

``build_deps`` gives one cycle's adapters (``shell.gather.Deps``), ``build_hooks`` what runs
after every cycle. Both import at first use what a quiet cycle of ``run`` does not need
(requests, urllib3, dnspython, the acme library, prometheus_client, redis, smtplib), so it stays
out of the daemon's memory. With ``cli``, the only
module that names the adapters.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from acme_sidecar.adapters.dns import DnsResolver
from acme_sidecar.adapters.docker_way import ChosenWay
from acme_sidecar.adapters.mariadb import MariaDBSource
from acme_sidecar.adapters.volume import CertStore
from acme_sidecar.config.settings import Settings
from acme_sidecar.core.ports import Issuer, RecordWriter
from acme_sidecar.core.report import Deployed
from acme_sidecar.core.validate import IpPolicy
from acme_sidecar.ops.hooks import HealthFile, Hook
from acme_sidecar.shell.cycle import Deps

if TYPE_CHECKING:  # imported at first use (see above)
    from acme_sidecar.adapters.acme import ChallengeResponder
    from acme_sidecar.adapters.acme.windows import RenewalInfo
    from acme_sidecar.adapters.dns01.responder import Dns01Router
    from acme_sidecar.adapters.http_probe import WebrootSelfCheck
    from acme_sidecar.ops.dane import DaneCheck

log = structlog.get_logger("acme_sidecar")

NO_ALERTS = (
    "no alert channel: set WATCHDOG_NOTIFY_EMAIL in mailcow.conf "
    "(or ACME_NOTIFY_EMAIL / ACME_NOTIFY_WEBHOOK)"
)


def build_deps(settings: Settings, stop: threading.Event, *, read_only: bool = False) -> Deps:
    """Wire the real adapters from the settings; ``read_only`` (``check``): the volume is only
    read, a damaged file is reported and left where it is."""
    s = settings
    router = None
    responders: Callable[[], ChallengeResponder] | None = None
    if s.acme_dns_challenge:
        from acme_sidecar.adapters.dns01 import setup as dns01

        router = dns_router(s)
        dns01_router = router

        def responders() -> ChallengeResponder:
            return dns01.responders(
                dns01_router,
                s.acme_dns_resolvers,
                propagation_timeout=s.acme_dns_propagation_timeout,
                stop=stop,
            )

    @cache
    def issuer(account_pem: bytes) -> Issuer:
        from acme_sidecar.adapters.acme import AcmeIssuer

        return AcmeIssuer(
            responders=responders,
            directory_url=s.directory,
            account_pem=account_pem,
            webroot=s.acme_webroot,
            ca_bundle=s.acme_ca_bundle,
            email=s.acme_account_email,
            parallel=s.acme_parallel_orders,
            order_timeout=s.acme_order_timeout,
            stop=stop,
            profile=s.acme_profile,
            eab=s.eab,
        )

    # requests, urllib3 and the acme library are imported at their first use, below: a quiet
    # cycle (nothing to validate, no renewal window due, nothing to order) needs none of them
    def public_ips() -> tuple[str | None, str | None]:
        from acme_sidecar.adapters.public_ip import detect, sources

        v4 = s.public_ipv4 or detect(sources(s.acme_ipv4_detect_url, 4), 4, sleep=stop.wait)
        v6 = s.public_ipv6 or detect(sources(s.acme_ipv6_detect_url, 6), 6, sleep=stop.wait)
        return v4, v6

    way = ChosenWay(
        s.acme_docker_api,
        urls=s.dockerapi_urls,
        project=s.compose_project_name,
        services=s.acme_restart_services,
        docker_host=s.docker_host,
        docker_timeout=s.acme_docker_timeout,
    )

    resolver = DnsResolver(s.acme_dns_resolvers)

    def http_check(policy: IpPolicy) -> WebrootSelfCheck:
        from acme_sidecar.adapters.http_probe import WebrootSelfCheck

        return WebrootSelfCheck(
            s.acme_webroot,
            s.acme_http_verify_port,
            https_port=s.acme_https_verify_port,
            policy=policy,
            resolver=resolver,
        )

    rollover = None
    if s.acme_dane != "off":  # a key change waits for its TLSA record (shell.rollover)
        from acme_sidecar.adapters.tlsa import TlsaResolver
        from acme_sidecar.shell.rollover import KeyRoll

        rollover = KeyRoll(
            s.dane_hosts,
            s.acme_dane_ports,
            TlsaResolver(s.acme_dane_resolver).lookup,
            s.dane_state,
            recheck=timedelta(seconds=s.acme_dane_interval),
            read_only=read_only,
            publisher=tlsa_publisher(s),
        )

    return Deps(
        source=MariaDBSource(
            database=s.dbname,
            user=s.dbuser,
            password=s.dbpass.get_secret_value(),
            socket=s.db_socket,
            host=s.db_host,
            port=s.db_port,
        ),
        resolver=resolver,
        store=CertStore(s.acme_cert_dir, backup_keep=s.acme_backup_keep, set_aside=not read_only),
        issuer=issuer,
        http_check=http_check,
        public_ips=public_ips,
        ca_identities=lambda: _caa_identities(s),
        windows=lambda: _renewal_info(s),
        services=way,
        services_ready=way.waiting_for,
        stop=stop,
        dns01=router.routes() if router is not None else None,
        deployed=None if read_only else deploy_hook(s),
        rollover=rollover,
    )


def deploy_hook(settings: Settings) -> Callable[[Deployed], None] | None:
    """``ACME_DEPLOY_HOOK_URL`` and/or ``ACME_DEPLOY_HOOK_COMMAND``, or None when neither is set."""
    url = settings.acme_deploy_hook_url.get_secret_value()
    if not url and not settings.acme_deploy_hook_command.strip():
        return None
    from acme_sidecar.ops.deploy_hook import DeployHook

    return DeployHook(
        url=url,
        command=settings.acme_deploy_hook_command,
        hostname=settings.mailcow_hostname,
        cert_dir=settings.acme_cert_dir,
    )


def _caa_identities(settings: Settings) -> tuple[str, ...]:
    from acme_sidecar.adapters.acme.directory import caa_identities

    return caa_identities(settings.directory, settings.acme_ca_bundle)


def _renewal_info(settings: Settings) -> RenewalInfo:
    from acme_sidecar.adapters.acme.windows import RenewalInfo

    bundle = settings.acme_ca_bundle
    return RenewalInfo(settings.directory, str(bundle) if bundle else True)


def dns_router(settings: Settings) -> Dns01Router:
    """The DNS hosts of ``ACME_DNS_PROVIDER`` and ``ACME_DNS_CONFIG_FILE`` (DNS-01, and the
    TLSA records of ``ACME_DANE=publish``), built and logged once per process."""
    from acme_sidecar.adapters.acmesh import HOME as ACMESH_HOME

    s = settings
    return _router(
        s.acme_dns_provider,
        s.acme_dns_config_file,
        s.acme_dns_auth_port,
        s.acme_dns_alias_zones,
        s.acme_cert_dir / ACMESH_HOME / "account.conf",
    )


@cache
def _router(
    plugin: str, path: Path, auth_port: int, aliases: tuple[str, ...], account_conf: Path
) -> Dns01Router:
    from acme_sidecar.adapters.dns01 import setup as dns01

    return dns01.build_router(
        plugin, path, auth_port, aliases, environ=os.environ, account_conf=account_conf
    )


def tlsa_publisher(settings: Settings) -> RecordWriter | None:
    """``ACME_DANE=publish``: the TLSA records of a key rollover are added and removed through
    the DNS hosts of DNS-01 (None in the other modes)."""
    if settings.acme_dane != "publish":
        return None
    from acme_sidecar.adapters.dns01.publish import RecordPublisher
    from acme_sidecar.adapters.dns01.zones import DnsZoneLookups

    resolvers = settings.acme_dane_resolver or settings.acme_dns_resolvers
    return RecordPublisher(dns_router(settings), DnsZoneLookups(resolvers))


def dane_check(settings: Settings) -> DaneCheck | None:
    """``ACME_DANE=check``: the hook comparing the MX names' TLSA records with the served
    certificate (None with ``off``)."""
    if settings.acme_dane == "off":
        return None
    from acme_sidecar.adapters.tlsa import TlsaResolver
    from acme_sidecar.ops.dane import DaneCheck

    return DaneCheck(
        hosts=settings.dane_hosts,
        ports=settings.acme_dane_ports,
        interval=timedelta(seconds=settings.acme_dane_interval),
        cert_file=settings.acme_cert_dir / "cert.pem",
        state=settings.dane_state,
        lookup=TlsaResolver(settings.acme_dane_resolver).lookup,
        publisher=tlsa_publisher(settings),
    )


def build_hooks(settings: Settings, *, daemon: bool = False) -> list[Hook]:
    """What runs after every cycle: the health file (always), then what the settings enable:
    the DANE check (``ACME_DANE``), Prometheus metrics (``daemon`` only: their HTTP endpoint
    starts here), alerts (from
    ``ACME_NOTIFY_*``, else mailcow's ``WATCHDOG_NOTIFY_*``; one line says which) and the
    mailcow UI (Redis; from here on every log line also goes to the UI's ACME log).

    Call it before the first cycle, so the cycle's log lines reach the mailcow UI.
    """
    # imported only when enabled: each pulls in a library (prometheus_client, redis, smtplib)
    # that costs start-up time and memory, and `health` runs every minute
    from acme_sidecar.ops.expiry import ExpiryLog

    days = settings.acme_notify_expiry_days
    hooks: list[Hook] = [HealthFile(settings.acme_health_file, expiry_days=days)]
    dane = dane_check(settings)
    if dane is not None:  # before the metrics and the alerts, which read its results
        hooks.append(dane)
    if daemon and settings.acme_metrics_port is not None:
        from acme_sidecar.ops.metrics import Metrics

        metrics = Metrics(dane=dane.results if dane is not None else None)
        metrics.serve(settings.acme_metrics_address, settings.acme_metrics_port)
        hooks.append(metrics)
    if settings.redispass or settings.acme_redis_host:
        from acme_sidecar.ops import mailcow_ui

        ui = mailcow_ui.from_settings(settings)
        if ui is not None:
            hooks.append(ui)
    if any(
        v.strip()
        for v in (
            ",".join(settings.acme_notify_email),
            settings.acme_notify_webhook.get_secret_value(),
            settings.watchdog_notify_email,
            settings.watchdog_notify_webhook.get_secret_value(),
        )
    ):
        from acme_sidecar.ops import notify  # logs which alert channel is used

        notifier = notify.from_settings(settings, dane.notices if dane is not None else None)
        if notifier is not None:
            hooks.append(notifier)
    else:
        log.info("notify.off", reason=NO_ALERTS)
    hooks.append(ExpiryLog(settings.acme_cert_dir / "acme" / "expiry.json", days=days))
    return hooks
