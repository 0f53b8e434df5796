"""The domain source against the real MariaDB: over mailcow's unix socket without TLS, over TCP
as PyMySQL prefers (TLS when the server offers it)."""

from __future__ import annotations

from typing import Any

import pymysql.connections
import pytest

from acme_sidecar.adapters.mariadb import MariaDBSource
from tests.world.mariadb import MariaDB


def source(mariadb: MariaDB, *, tcp: bool) -> MariaDBSource:
    return MariaDBSource(
        database=mariadb.dbname,
        user=mariadb.user,
        password=mariadb.password,
        socket=mariadb.socket,
        host=mariadb.host if tcp else "",
        port=mariadb.port,
    )


def test_the_socket_read_builds_no_tls_context(
    mariadb: MariaDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over the unix socket the domains are read with no TLS context built (PyMySQL's default
    builds one, with every system CA certificate, per connection: 1.5 MB the daemon kept);
    over TCP PyMySQL's own default stays."""
    mariadb.reset()
    mariadb.execute("INSERT INTO domain (domain) VALUES (%s)", ("a.test",))
    built: list[Any] = []
    original = pymysql.connections.Connection._create_ssl_ctx  # type: ignore[attr-defined]

    def counted(self: Any, sslp: Any) -> Any:
        built.append(sslp)
        return original(self, sslp)

    monkeypatch.setattr(pymysql.connections.Connection, "_create_ssl_ctx", counted)
    assert source(mariadb, tcp=False).read().domains == ("a.test",)
    assert built == []
    assert source(mariadb, tcp=True).read().domains == ("a.test",)
    assert len(built) == 1
