"""The domain source: mailcow's MariaDB schema, read-only (DESIGN.md §5).

``MariaDBSource.read()`` returns raw rows; ``discover.clean_rows`` checks them. Connection
failures are retried a bounded number of times with jitter, then raised as ``SourceError``.
"""

from __future__ import annotations

from pathlib import Path

import pymysql
import structlog
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from acme_sidecar.core.discover import clean_rows
from acme_sidecar.core.errors import SourceError
from acme_sidecar.core.model import DomainRows

log = structlog.get_logger(__name__)

DOMAINS_SQL = "SELECT domain FROM domain WHERE active = 1 AND backupmx = 0 ORDER BY domain"
MTA_STS_SQL = "SELECT domain FROM mta_sts WHERE active = 1"
ALIAS_MTA_STS_SQL = (
    "SELECT ad.alias_domain FROM alias_domain ad INNER JOIN mta_sts m "
    "ON ad.target_domain = m.domain WHERE ad.active = 1 AND m.active = 1 "
    "ORDER BY ad.alias_domain"
)


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    # one db.unreachable line per cycle is the cycle's; these quick retries are details
    log.debug("db.retry", attempt=state.attempt_number, error=str(exc))


class MariaDBSource:
    """Reads mailcow's ``domain``, ``mta_sts`` and ``alias_domain`` tables."""

    def __init__(
        self,
        *,
        database: str,
        user: str,
        password: str,
        socket: Path | None = None,
        host: str = "",
        port: int = 3306,
        attempts: int = 3,
        connect_timeout: float = 5.0,
    ) -> None:
        self._database, self._user, self._password = database, user, password
        self._host, self._port, self._socket = host, port, socket
        self._connect_timeout = connect_timeout
        self._attempts = attempts
        self.where = f"{host}:{port}" if host else str(socket)

    def read(self) -> DomainRows:
        """Read the three queries in one connection; raise ``SourceError`` when it fails."""
        reader = retry(
            retry=retry_if_exception_type(pymysql.err.OperationalError),
            stop=stop_after_attempt(self._attempts) | stop_after_delay(30),
            wait=wait_random_exponential(multiplier=0.5, max=5),
            before_sleep=_log_retry,
            reraise=True,
        )(self._read_once)
        try:
            return reader()
        except pymysql.err.MySQLError as exc:
            raise SourceError(f"cannot read the domain tables at {self.where}: {exc}") from exc

    def _read_once(self) -> DomainRows:
        conn = pymysql.connect(
            database=self._database,
            user=self._user,
            password=self._password,
            host=self._host or None,
            port=self._port,
            unix_socket=None if self._host else str(self._socket),
            # a unix socket is local: no TLS. PyMySQL would otherwise build a TLS context,
            # loading every system CA certificate, for each connection (1.5 MB the daemon kept)
            ssl_disabled=True if not self._host else None,
            connect_timeout=self._connect_timeout,
            read_timeout=30,
            charset="utf8mb4",
        )
        try:
            with conn.cursor() as cur:
                cur.execute(DOMAINS_SQL)
                domains = [str(r[0]) for r in cur.fetchall()]
                mta_sts: list[str] = []
                aliases: list[str] = []
                try:
                    cur.execute(MTA_STS_SQL)
                    mta_sts = [str(r[0]) for r in cur.fetchall()]
                    cur.execute(ALIAS_MTA_STS_SQL)
                    aliases = [str(r[0]) for r in cur.fetchall()]
                except pymysql.err.ProgrammingError as exc:
                    log.warning("db.mta_sts_unreadable", error=str(exc))
        finally:
            conn.close()
        return clean_rows(domains, mta_sts, aliases)
