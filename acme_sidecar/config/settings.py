"""Settings from the environment (mailcow.conf names), validated once at start.

An invalid value raises ``ConfigError`` naming the variable, the value and what is valid; the CLI
turns that into exit code 2. mailcow's own values are the exception, read as mailcow reads them:
its yes/no flags (y/yes is yes, anything else no; an unclear value is kept in
``Settings.lenient_flags``), and a bad ``ADDITIONAL_SAN`` entry or ``ACME_ACCOUNT_EMAIL``, left
out (kept in ``Settings.skipped_values``); the CLI logs one warning for each once logging is set
up. No other module reads the environment (except the Docker SDK, which reads ``DOCKER_HOST``
itself).
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from acme_sidecar.config.ari_settings import AriSettings
from acme_sidecar.config.base import SETTINGS_CONFIG
from acme_sidecar.config.ca_settings import CaSettings
from acme_sidecar.config.dane_settings import DaneSettings
from acme_sidecar.config.dns01_settings import Dns01Settings
from acme_sidecar.config.docker_settings import DockerSettings
from acme_sidecar.config.ops_settings import OpsSettings
from acme_sidecar.config.values import (
    contact,
    describe_errors,
    mailcow_flag,
    parse_duration,
    resolver_list,
    san_entries,
    skipped_values,
)
from acme_sidecar.config.verify_settings import VerifySettings
from acme_sidecar.core.errors import ConfigError
from acme_sidecar.core.names import normalize_hostname

__all__ = ["Settings", "load_settings"]


# mailcow's own yes/no variables (mailcow.conf): read leniently, as mailcow's scripts read them
MAILCOW_FLAGS = (
    "autodiscover_san",
    "enable_ssl_sni",
    "skip_lets_encrypt",
    "skip_ip_check",
    "skip_http_verification",
    "only_mailcow_hostname",
    "le_staging",
    "acme_dns_challenge",
    "nginx_use_proxy_protocol",
)


class Settings(
    VerifySettings,
    OpsSettings,
    AriSettings,
    CaSettings,
    Dns01Settings,
    DockerSettings,
    DaneSettings,
):
    """Every setting of DESIGN.md §3; field names are the environment variables, lower-cased."""

    model_config = SETTINGS_CONFIG

    mailcow_hostname: str
    additional_san: tuple[str, ...] = ()
    autodiscover_san: bool = True
    enable_ssl_sni: bool = False
    skip_lets_encrypt: bool = False
    skip_ip_check: bool = False
    skip_http_verification: bool = False
    only_mailcow_hostname: bool = False
    snat_to_source: str = "n"
    snat6_to_source: str = "n"
    acme_account_email: str = ""
    acme_dns_challenge: bool = False
    dbname: str = "mailcow"
    dbuser: str = "mailcow"
    dbpass: SecretStr = SecretStr("")
    db_socket: Path = Path("/var/run/mysqld/mysqld.sock")
    db_host: str = ""
    db_port: int = 3306
    tz: str = ""
    acme_cert_dir: Path = Path("/var/lib/acme")
    acme_webroot: Path = Path("/var/www/acme")
    acme_ca_bundle: Path | None = None
    acme_dns_resolvers: tuple[str, ...] = ()
    acme_http_verify_port: int = 80
    acme_https_verify_port: int = 443  # where a redirect of the self-check may go over HTTPS
    public_ipv4: str = ""
    public_ipv6: str = ""
    acme_ipv4_detect_url: str = "http://ip4.mailcow.email"
    acme_ipv6_detect_url: str = "http://ip6.mailcow.email"
    acme_log_format: Literal["auto", "console", "json"] = "auto"
    acme_check_interval: int = 86400
    acme_retry_interval: int = 1800
    acme_idle_interval: int = 3600
    acme_db_retry_interval: int = 60
    acme_parallel_orders: int = 8
    acme_backup_keep: int = 10
    acme_order_timeout: int = 300
    acme_name_grace: int = 7 * 86400
    acme_revalidate_after: int = 12 * 3600
    acme_db_poll: int = 300
    # retries: systemic failures climb this ladder, then ACME_RETRY_INTERVAL; other failures
    # back off exponentially from ACME_RETRY_INTERVAL up to ACME_MAX_BACKOFF (see core/settle.py)
    acme_retry_ladder: tuple[int, ...] = (60, 120, 300, 600, 1800)
    acme_max_backoff: int = 86400
    acme_db_wait: int = 600
    acme_webroot_wait: int = 120  # at start, for the webroot through the hostname; 0: no wait
    acme_caa_identities: tuple[str, ...] = ()
    acme_max_names: int = 100
    acme_rate_limits: Literal["auto", "letsencrypt", "off"] = "auto"
    acme_health_fail_after: int = 2 * 3600
    acme_health_file: Path = Path("/run/acme-sidecar/health.json")
    acme_watch_interval: int = 60  # the top-level pair is looked at

    # --- validators: each error message says what would be valid -------------------------

    # (variable, value) of each mailcow flag whose value was neither yes nor a clear no
    _lenient: tuple[tuple[str, str], ...] = PrivateAttr(default=())
    _hostname_given: str = PrivateAttr(default="")  # MAILCOW_HOSTNAME as set, when it changed

    @field_validator(*MAILCOW_FLAGS, mode="before")
    @classmethod
    def _flag(cls, value: Any) -> bool:
        return mailcow_flag(value)[0]

    @model_validator(mode="wrap")
    @classmethod
    def _unclear_flags(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        settings = handler(data)
        if isinstance(data, dict) and isinstance(settings, Settings):
            settings._lenient = tuple(
                (name.upper(), str(data[name]))
                for name in MAILCOW_FLAGS
                if name in data and not mailcow_flag(data[name])[1]
            )
            given = str(data.get("mailcow_hostname", "")).strip().rstrip(".")
            settings._hostname_given = "" if given == settings.mailcow_hostname else given
        return settings

    # (variable, value, what is valid) of each mailcow value left out (see ``skipped_values``)
    _skipped: tuple[tuple[str, str, str], ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _skipped_mailcow_values(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        settings = handler(data)
        if isinstance(data, dict) and isinstance(settings, Settings):
            settings._skipped = skipped_values(data)
        return settings

    @field_validator("mailcow_hostname", mode="before")
    @classmethod
    def _hostname(cls, value: Any) -> str:
        name = normalize_hostname(str(value))
        if name is None:
            raise ValueError("must be a fully qualified host name such as mail.example.org")
        return name

    @field_validator("additional_san", mode="before")
    @classmethod
    def _additional_san(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        return san_entries(value)[0]  # a bad entry is left out (mailcow's value: lenient)

    @field_validator("acme_dns_resolvers", mode="before")
    @classmethod
    def _resolvers(cls, value: Any) -> tuple[str, ...]:
        return resolver_list(value)

    @field_validator("public_ipv4", "public_ipv6", mode="before")
    @classmethod
    def _ip(cls, value: Any, info: Any) -> str:
        text = str(value).strip()
        if not text:
            return ""
        want = 4 if info.field_name == "public_ipv4" else 6
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            addr = None
        if addr is None or addr.version != want:
            raise ValueError(f"must be an IPv{want} address")
        return str(addr)

    @field_validator("acme_ipv4_detect_url", "acme_ipv6_detect_url")
    @classmethod
    def _url(cls, value: str) -> str:
        text = value.strip()
        if text and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", text):
            raise ValueError("must be an http:// or https:// URL")
        return text

    @field_validator("acme_account_email")
    @classmethod
    def _email(cls, value: str) -> str:
        return contact(value)[0]  # a bad address is read as none (mailcow's value: lenient)

    @field_validator("acme_http_verify_port", "acme_https_verify_port", "db_port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise ValueError("must be a port number from 1 to 65535")
        return value

    @field_validator(
        "acme_check_interval",
        "acme_retry_interval",
        "acme_idle_interval",
        "acme_db_retry_interval",
        "acme_parallel_orders",
        "acme_order_timeout",
        "acme_db_poll",
        "acme_docker_timeout",
    )
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be a whole number of 1 or more")
        return value

    @field_validator(
        "acme_name_grace",
        "acme_health_fail_after",
        "acme_watch_interval",
        "acme_revalidate_after",
        "acme_max_backoff",
        "acme_db_wait",
        "acme_webroot_wait",
        "acme_docker_timeout",
        "acme_dockerapi_wait",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: Any) -> int:
        return parse_duration(value)

    @field_validator("acme_retry_ladder", mode="before")
    @classmethod
    def _ladder(cls, value: Any) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        steps = tuple(parse_duration(v) for v in str(value).split(",") if v.strip())
        if not steps or min(steps) < 1:
            raise ValueError("must be a comma list of durations of 1s or more, e.g. 1m,2m,5m")
        return steps

    @field_validator("acme_caa_identities", mode="before")
    @classmethod
    def _identities(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        items = []
        for raw in str(value).split(","):
            if not raw.strip():
                continue
            name = normalize_hostname(raw)
            if name is None:
                raise ValueError(f"{raw.strip()!r} is not a CA domain such as letsencrypt.org")
            items.append(name)
        return tuple(items)

    @field_validator("acme_max_names")
    @classmethod
    def _max_names(cls, value: int) -> int:
        if not 1 <= value <= 100:
            raise ValueError("must be from 1 to 100 (Let's Encrypt allows 100; 25 for short-lived)")
        return value

    @field_validator("acme_backup_keep")
    @classmethod
    def _keep(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must be 0 (keep no backups) or more")
        return value

    @field_validator("acme_ca_bundle")
    @classmethod
    def _bundle(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("must name a readable PEM file of CA certificates")
        return value

    # --- derived values -------------------------------------------------------------------

    @property
    def lenient_flags(self) -> tuple[tuple[str, str], ...]:
        """``(VARIABLE, value)`` of each mailcow flag set to neither yes (y/yes) nor a clear
        no (n/no/empty): it was read as no, and the CLI logs a warning for it."""
        return self._lenient

    @property
    def skipped_values(self) -> tuple[tuple[str, str, str], ...]:
        """``(VARIABLE, value, what is valid)`` of each mailcow value left out: a bad
        ``ADDITIONAL_SAN`` entry, a bad ``ACME_ACCOUNT_EMAIL``; the CLI logs a warning for it."""
        return self._skipped

    @property
    def hostname_given(self) -> str:
        """MAILCOW_HOSTNAME as set when it is not the name used (mixed case, or not IDNA):
        the CLI logs one line; "" when it was used as set."""
        return self._hostname_given

    @property
    def dane_hosts(self) -> tuple[str, ...]:
        """The MX names whose TLSA records are checked: ``ACME_DANE_HOSTS``, else
        ``MAILCOW_HOSTNAME``."""
        return self.acme_dane_hosts or (self.mailcow_hostname,)

    @property
    def dane_state(self) -> Path:
        """``ACME_DANE_STATE``, default ``<ACME_HEALTH_FILE without .json>-dane.json``: outside
        the volume, like the health file (a check writes nothing into the volume)."""
        health = self.acme_health_file
        return self.acme_dane_state or health.with_name(f"{health.stem}-dane.json")

    @property
    def snat4(self) -> bool:
        """SNAT_TO_SOURCE counts as set for any value other than ``n`` (mailcow's rule)."""
        return self.snat_to_source.strip() != "n"

    @property
    def snat6(self) -> bool:
        """SNAT6_TO_SOURCE counts as set for any value other than ``n`` (mailcow's rule)."""
        return self.snat6_to_source.strip() != "n"

    @property
    def static_sans(self) -> tuple[str, ...]:
        """``ADDITIONAL_SAN`` entries that are names, not ``prefix.*`` entries."""
        return tuple(e for e in self.additional_san if not e.endswith(".*"))

    @property
    def prefixes(self) -> tuple[str, ...]:
        """Per-domain prefixes: the ``prefix.*`` entries, then autodiscover names if enabled."""
        own = [e[:-2] for e in self.additional_san if e.endswith(".*")]
        if self.autodiscover_san:
            own += ["autodiscover", "autoconfig", "mta-sts"]
        return tuple(dict.fromkeys(own))


# secrets: never echoed in an error; a webhook URL (a token in its path or query) is shown as
# scheme and host only; other URLs with their password and query masked
HIDDEN = frozenset({"dbpass", "redispass", "acme_eab_hmac_key"})
ORIGIN_ONLY = frozenset({"acme_notify_webhook", "acme_deploy_hook_url"})


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read the settings from ``environ`` (default: the process environment)."""
    env = dict(os.environ if environ is None else environ)
    fields = Settings.model_fields
    values = {k.lower(): v for k, v in env.items() if k.lower() in fields}
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(
            describe_errors(exc, values, hidden=HIDDEN, origin_only=ORIGIN_ONLY)
        ) from None
