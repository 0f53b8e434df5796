"""Settings from the environment (mailcow.conf names), validated once at start.

An invalid value raises ``ConfigError`` naming the variable, the value and what is valid; the CLI
turns that into exit code 2. No other module reads the environment (except the Docker SDK, which
reads ``DOCKER_HOST`` itself).
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from acme_sidecar.core.errors import ConfigError
from acme_sidecar.core.names import normalize_hostname, normalize_prefix

LE_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
LE_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"

_YES = {"y", "yes"}
_NO = {"n", "no", ""}
_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@([^@\s]+)$")

YesNo = Annotated[bool, NoDecode]


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


def _yes_no(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _YES:
        return True
    if text in _NO:
        return False
    raise ValueError("use y or n (y/yes in any case mean yes; n/no or empty mean no)")


class Settings(BaseSettings):
    """Every setting of DESIGN.md §3; field names are the environment variables, lower-cased."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    mailcow_hostname: str
    additional_san: Annotated[tuple[str, ...], NoDecode] = ()
    autodiscover_san: YesNo = True
    enable_ssl_sni: YesNo = False
    skip_lets_encrypt: YesNo = False
    skip_ip_check: YesNo = False
    skip_http_verification: YesNo = False
    only_mailcow_hostname: YesNo = False
    le_staging: YesNo = False
    directory_url: str = ""
    snat_to_source: str = "n"
    snat6_to_source: str = "n"
    acme_account_email: str = ""
    acme_dns_challenge: YesNo = False
    dbname: str = "mailcow"
    dbuser: str = "mailcow"
    dbpass: SecretStr = SecretStr("")
    db_socket: Path = Path("/var/run/mysqld/mysqld.sock")
    db_host: str = ""
    db_port: int = 3306
    compose_project_name: str = "mailcow-dockerized"
    tz: str = ""
    acme_cert_dir: Path = Path("/var/lib/acme")
    acme_webroot: Path = Path("/var/www/acme")
    acme_ca_bundle: Path | None = None
    acme_dns_resolvers: Annotated[tuple[str, ...], NoDecode] = ()
    acme_http_verify_port: int = 80
    public_ipv4: str = ""
    public_ipv6: str = ""
    acme_ipv4_detect_url: str = "http://ip4.mailcow.email"
    acme_ipv6_detect_url: str = "http://ip6.mailcow.email"
    acme_restart_services: Annotated[tuple[str, ...], NoDecode] = (
        "postfix-mailcow",
        "dovecot-mailcow",
        "nginx-mailcow",
    )
    acme_log_format: Literal["auto", "console", "json"] = "auto"
    acme_check_interval: int = 86400
    acme_retry_interval: int = 1800
    acme_idle_interval: int = 3600
    acme_db_retry_interval: int = 60
    acme_parallel_orders: int = 8
    acme_backup_keep: int = 10
    acme_order_timeout: int = 300
    acme_name_grace: Annotated[int, NoDecode] = 7 * 86400
    acme_revalidate_after: Annotated[int, NoDecode] = 12 * 3600
    acme_db_poll: int = 300
    # retries: systemic failures climb this ladder, then ACME_RETRY_INTERVAL; other failures
    # back off exponentially from ACME_RETRY_INTERVAL up to ACME_MAX_BACKOFF (see core/settle.py)
    acme_retry_ladder: Annotated[tuple[int, ...], NoDecode] = (60, 120, 300, 600, 1800)
    acme_max_backoff: Annotated[int, NoDecode] = 86400
    acme_verify_timeout: Annotated[int, NoDecode] = 120
    acme_caa_identities: Annotated[tuple[str, ...], NoDecode] = ()
    acme_max_names: int = 100
    acme_verify_smtp: str = "postfix:25"
    acme_verify_imap: str = "dovecot:143"
    acme_verify_https: str = "nginx:443"
    acme_verify_attempts: int = 5
    acme_health_fail_after: Annotated[int, NoDecode] = 2 * 3600
    acme_health_file: Path = Path("/run/acme-sidecar/health.json")
    # operations: metrics, notifications, mailcow UI (Redis); see metrics.py, notify.py,
    # mailcow_ui.py for how the derived defaults are filled in
    acme_metrics_port: Annotated[int | None, NoDecode] = None
    acme_metrics_address: str = "0.0.0.0"  # noqa: S104 - a container listens on all interfaces
    acme_notify_email: Annotated[tuple[str, ...], NoDecode] = ()
    acme_notify_smtp: str = "postfix:25"
    acme_notify_from: str = ""
    acme_notify_webhook: SecretStr = SecretStr("")  # its path or userinfo often holds a token
    acme_notify_expiry_days: int = 14
    acme_notify_state: Path | None = None
    redispass: SecretStr = SecretStr("")
    redis_slaveof_ip: str = ""
    redis_slaveof_port: Annotated[int | None, NoDecode] = None
    acme_redis_host: str = ""
    acme_redis_port: int = 6379

    # --- validators: each error message says what would be valid -------------------------

    @field_validator(
        "autodiscover_san",
        "enable_ssl_sni",
        "skip_lets_encrypt",
        "skip_ip_check",
        "skip_http_verification",
        "only_mailcow_hostname",
        "le_staging",
        "acme_dns_challenge",
        mode="before",
    )
    @classmethod
    def _flag(cls, value: Any) -> Any:
        return _yes_no(value)

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
        entries: list[str] = []
        for raw in str(value).split(","):
            entry = raw.strip()
            if not entry:
                continue
            if entry.endswith(".*"):
                prefix = normalize_prefix(entry[:-2])
                if prefix is None:
                    raise ValueError(f"entry {entry!r} is not a valid prefix.* entry")
                entries.append(prefix + ".*")
                continue
            name = normalize_hostname(entry, allow_wildcard=True)
            if name is None:
                raise ValueError(
                    f"entry {entry!r} is neither a host name (mail.example.org), "
                    "a wildcard (*.example.org) nor a per-domain prefix (mail.*)"
                )
            entries.append(name)
        return tuple(dict.fromkeys(entries))

    @field_validator("acme_restart_services", mode="before")
    @classmethod
    def _services(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        items = _comma_list(value)
        for item in items:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", item):
                raise ValueError(f"{item!r} is not a compose service name")
        return items

    @field_validator("acme_dns_resolvers", mode="before")
    @classmethod
    def _resolvers(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        items = _comma_list(value)
        for item in items:
            parse_resolver(item)
        return items

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

    @field_validator("directory_url", "acme_ipv4_detect_url", "acme_ipv6_detect_url")
    @classmethod
    def _url(cls, value: str) -> str:
        text = value.strip()
        if text and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", text):
            raise ValueError("must be an http:// or https:// URL")
        return text

    @field_validator("acme_account_email")
    @classmethod
    def _email(cls, value: str) -> str:
        text = value.strip()
        if not text:
            return ""
        match = _EMAIL.match(text)
        if match is None or normalize_hostname(match.group(1)) is None:
            raise ValueError("must be an e-mail address such as admin@example.org, or empty")
        return text

    @field_validator("acme_http_verify_port", "db_port")
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
        "acme_verify_attempts",
    )
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be a whole number of 1 or more")
        return value

    @field_validator(
        "acme_name_grace",
        "acme_health_fail_after",
        "acme_revalidate_after",
        "acme_max_backoff",
        "acme_verify_timeout",
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

    @field_validator("acme_verify_smtp", "acme_verify_imap", "acme_verify_https")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        text = value.strip()
        if not text:
            return ""
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError("must be host:port (for example postfix:25), or empty to skip")
        return text

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

    @field_validator("compose_project_name")
    @classmethod
    def _project(cls, value: str) -> str:
        text = value.strip()
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", text):
            raise ValueError("must be a compose project name (letters, digits, _ . -)")
        return text

    @field_validator("acme_metrics_port", "redis_slaveof_port", mode="before")
    @classmethod
    def _optional_port(cls, value: Any) -> int | None:
        text = str(value).strip() if value is not None else ""
        if not text:
            return None
        if not text.isdigit() or not 1 <= int(text) <= 65535:
            raise ValueError("must be a port number from 1 to 65535, or empty")
        return int(text)

    @field_validator("acme_redis_port")
    @classmethod
    def _redis_port(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise ValueError("must be a port number from 1 to 65535")
        return value

    @field_validator("acme_metrics_address")
    @classmethod
    def _listen_address(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value.strip()))
        except ValueError:
            raise ValueError("must be an IP address to listen on, such as 0.0.0.0 or ::") from None

    @field_validator("acme_notify_email", mode="before")
    @classmethod
    def _recipients(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        items = _comma_list(value)
        for item in items:
            if not is_email(item):
                raise ValueError(f"{item!r} is not an e-mail address such as admin@example.org")
        return tuple(dict.fromkeys(items))

    @field_validator("acme_notify_from")
    @classmethod
    def _sender(cls, value: str) -> str:
        text = value.strip()
        if text and not is_email(text):
            raise ValueError("must be an e-mail address such as acme@example.org, or empty")
        return text

    @field_validator("acme_notify_smtp")
    @classmethod
    def _smtp(cls, value: str) -> str:
        text = value.strip()
        if parse_host_port(text) is None:
            raise ValueError("must be host:port of an SMTP server (for example postfix:25)")
        return text

    @field_validator("acme_notify_webhook", mode="before")
    @classmethod
    def _webhook(cls, value: Any) -> str:
        text = (value.get_secret_value() if isinstance(value, SecretStr) else str(value)).strip()
        if text and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", text):
            raise ValueError("must be an http:// or https:// URL, or empty")
        return text

    @field_validator("acme_notify_expiry_days")
    @classmethod
    def _expiry_days(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be a whole number of days, 1 or more")
        return value

    @field_validator("redis_slaveof_ip", "acme_redis_host")
    @classmethod
    def _redis_host(cls, value: str) -> str:
        text = value.strip()
        if text and parse_host_port(f"{text}:1") is None:
            raise ValueError("must be a host name or IP address (without a port), or empty")
        return text

    @model_validator(mode="after")
    def _dns_challenge(self) -> Settings:
        if self.acme_dns_challenge:
            raise ValueError(
                "ACME_DNS_CHALLENGE=y is not supported yet by acme-sidecar; set it to n "
                "(HTTP-01 through the webroot)"
            )
        return self

    # --- derived values -------------------------------------------------------------------

    @property
    def snat4(self) -> bool:
        """SNAT_TO_SOURCE counts as set for any value other than ``n`` (mailcow's rule)."""
        return self.snat_to_source.strip() != "n"

    @property
    def snat6(self) -> bool:
        """SNAT6_TO_SOURCE counts as set for any value other than ``n`` (mailcow's rule)."""
        return self.snat6_to_source.strip() != "n"

    @property
    def directory(self) -> str:
        """The ACME directory URL: LE staging wins over DIRECTORY_URL, then LE production."""
        if self.le_staging:
            return LE_STAGING
        return self.directory_url or LE_PRODUCTION

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


def _comma_list(value: Any) -> tuple[str, ...]:
    """The non-empty, stripped items of a comma-separated setting."""
    return tuple(item.strip() for item in str(value).split(",") if item.strip())


def parse_resolver(item: str) -> tuple[str, int]:
    """Parse ``ip`` or ``ip:port`` (``[v6]:port`` for IPv6 with a port) of ACME_DNS_RESOLVERS."""
    host, port = item, 53
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        if rest:
            port = int(rest.removeprefix(":")) if rest.removeprefix(":").isdigit() else -1
    elif item.count(":") == 1:
        host, _, text = item.partition(":")
        port = int(text) if text.isdigit() else -1
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{item!r} is not an IP address or ip:port") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{item!r} has no valid port (1-65535)")
    return host, port


def is_email(text: str) -> bool:
    """Whether ``text`` looks like an e-mail address with a valid domain."""
    match = _EMAIL.match(text)
    return match is not None and normalize_hostname(match.group(1)) is not None


def parse_host_port(text: str) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port`` for IPv6) as a pair, or None when it is not one."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
    elif not re.fullmatch(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9])?", host):
        return None
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    return host, int(port)


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read the settings from ``environ`` (default: the process environment)."""
    env = dict(os.environ if environ is None else environ)
    fields = Settings.model_fields
    values = {k.lower(): v for k, v in env.items() if k.lower() in fields}
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, values)) from None


def _describe(exc: ValidationError, values: dict[str, str]) -> str:
    lines = []
    for err in exc.errors():
        loc = str(err["loc"][0]) if err["loc"] else ""
        message = str(err["msg"]).removeprefix("Value error, ")
        if not loc:
            lines.append(message)
        elif err["type"] == "missing":
            lines.append(f"{loc.upper()} is not set: it is required")
        else:
            shown = "***" if loc in _HIDDEN else mask_url(str(values.get(loc, "")))
            lines.append(f"{loc.upper()}={shown!r} is not valid: {message}")
    return "; ".join(lines)


_HIDDEN = {"dbpass", "redispass"}  # never echoed; URLs are echoed with their password masked


def mask_url(text: str) -> str:
    """``text`` with the password of a ``scheme://user:password@host`` URL shown as ``***``
    (a user name alone, often a token, is masked too); anything else is returned unchanged."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    userinfo, at, hostport = rest[:end].rpartition("@")
    if not at:
        return text
    user, colon, _ = userinfo.partition(":")
    masked = f"{user}:***" if colon else "***"
    return f"{scheme}://{masked}@{hostport}{rest[end:]}"
