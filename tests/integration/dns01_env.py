"""Settings and helpers for running the sidecar over DNS-01 against the DNS-01 world: BIND
(TSIG updates, the resolver), PowerDNS (API) and the Pebble that resolves through BIND."""

from __future__ import annotations

from pathlib import Path

from tests.integration.sidecar import PROJECT
from tests.world.bind import Bind
from tests.world.mariadb import MariaDB
from tests.world.pebble import Pebble
from tests.world.powerdns import PowerDNS

HOST = "mail.example.test"


def dns01_env(
    tmp: Path,
    mariadb: MariaDB,
    pebble: Pebble,
    bind: Bind,
    *,
    conf: str,
    provider: str = "",
    domains: tuple[str, ...] = (),
    mode: int = 0o644,
    **extra: str,
) -> dict[str, str]:
    """The environment of a DNS-01 sidecar: ``conf`` is written as the dns-01.conf, at
    ``mode`` (0644 by default: mailcow creates it so); the database holds ``domains``; nothing
    to restart (no Docker here)."""
    mariadb.reset()
    for domain in domains:
        mariadb.execute("INSERT INTO domain (domain) VALUES (%s)", (domain,))
    conf_file = tmp / "dns-01.conf"
    conf_file.write_text(conf)
    conf_file.chmod(mode)
    cert_dir = tmp / "ssl"
    cert_dir.mkdir(exist_ok=True)
    host, port = bind.server
    env = {
        "MAILCOW_HOSTNAME": HOST,
        "DBNAME": mariadb.dbname,
        "DBUSER": mariadb.user,
        "DBPASS": mariadb.password,
        "DB_SOCKET": str(mariadb.socket),
        "COMPOSE_PROJECT_NAME": PROJECT,
        "ACME_CERT_DIR": str(cert_dir),
        "ACME_WEBROOT": str(tmp / "webroot"),
        "ACME_CA_BUNDLE": str(pebble.ca_bundle),
        "DIRECTORY_URL": pebble.directory_url,
        "ACME_DNS_RESOLVERS": f"{host}:{port}",
        "ACME_DNS_AUTH_PORT": str(port),
        "ACME_DNS_CHALLENGE": "y",
        "ACME_DNS_PROVIDER": provider,
        "ACME_DNS_CONFIG_FILE": str(conf_file),
        "ACME_DNS_PROPAGATION_TIMEOUT": "20s",
        "ACME_RESTART_SERVICES": "",
        "ACME_DOCKER_API": "socket",
        "ACME_IPV4_DETECT_URL": "",
        "ACME_IPV6_DETECT_URL": "",
        "ACME_VERIFY_SMTP": "",
        "ACME_VERIFY_IMAP": "",
        "ACME_VERIFY_HTTPS": "",
        "ACME_ACCOUNT_EMAIL": "admin@example.test",
        "ACME_HEALTH_FILE": str(tmp / "health.json"),
        "ACME_REVALIDATE_AFTER": "0s",
    }
    env.update(extra)
    return env


def nsupdate_lines(bind: Bind, key_file: Path | None = None) -> str:
    """acme.sh's dns_nsupdate variables for the world's BIND."""
    host, port = bind.server
    return (
        f"NSUPDATE_SERVER={host}\n"
        f"NSUPDATE_SERVER_PORT={port}\n"
        f"NSUPDATE_KEY={key_file or bind.key_file}\n"
    )


def pdns_lines(powerdns: PowerDNS, token: str | None = None) -> str:
    """acme.sh's dns_pdns variables for the world's PowerDNS."""
    return (
        f"PDNS_Url={powerdns.api_url}\n"
        f"PDNS_ServerId={powerdns.server_id}\n"
        f"PDNS_Token={token or powerdns.api_key}\n"
        "PDNS_Ttl=1\n"
    )


def challenge_txt(bind: Bind, name: str) -> list[str]:
    """The TXT values at ``_acme-challenge.<name>`` as BIND (resolving every zone) has them."""
    bind.flush()
    return bind.txt(f"_acme-challenge.{name.removeprefix('*.')}")
