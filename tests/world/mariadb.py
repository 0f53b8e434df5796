"""MariaDB server on a private datadir, reachable via a unix socket and 127.0.0.1 TCP."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pymysql

from .proc import Child, free_port, require_binary, wait_for

# mailcow's tables: the one definition the demo database is built from too
SCHEMA_SQL = Path(__file__).resolve().parents[2] / "demo" / "mysql" / "schema.sql"
TABLES = ("domain", "alias_domain", "mta_sts")
FAST_FLAGS = ("--innodb-log-file-size=8M", "--innodb-buffer-pool-size=32M")


def schema_statements(path: Path = SCHEMA_SQL) -> list[str]:
    """The CREATE TABLE statements of ``schema.sql``: comment lines dropped, split at ``;``."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


class MariaDB:
    """``mariadbd`` with database ``mailcow`` and user ``mailcow``/``mailcowpass``."""

    host = "127.0.0.1"
    dbname = "mailcow"
    user = "mailcow"
    password = "mailcowpass"

    def __init__(self, workdir: Path) -> None:
        self._install_db = require_binary("mariadb-install-db", "mariadb-server")
        server = require_binary("mariadbd", "mariadb-server")
        self.workdir = workdir
        self.datadir = workdir / "data"
        self.socket = workdir / "mysqld.sock"
        self.port = free_port()
        (workdir / "tmp").mkdir(parents=True, exist_ok=True)
        argv = [
            server, "--no-defaults", f"--datadir={self.datadir}", f"--socket={self.socket}",
            f"--port={self.port}", f"--bind-address={self.host}", "--user=root",
            f"--pid-file={workdir / 'mysqld.pid'}", f"--log-error={workdir / 'error.log'}",
            f"--tmpdir={workdir / 'tmp'}", "--skip-name-resolve", "--skip-log-bin",
            "--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0", *FAST_FLAGS,
        ]  # fmt: skip
        self._child = Child("mariadbd", argv, workdir / "mariadbd.out")

    def _initialise(self) -> None:
        argv = [
            self._install_db, "--no-defaults", f"--datadir={self.datadir}", "--user=root",
            "--auth-root-authentication-method=normal", "--skip-test-db",
            "--skip-name-resolve", *FAST_FLAGS,
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed:\n{done.stdout}\n{done.stderr}")

    def _root(self) -> pymysql.connections.Connection[Any]:
        return pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True)

    def _ready(self) -> bool:
        try:
            self._root().close()
        except pymysql.err.OperationalError:
            return False
        return True

    def start(self) -> None:
        """Start the server (initialising datadir, database, users and schema the first time)."""
        first = not self.datadir.exists()
        if first:
            self._initialise()
        self._child.start()
        wait_for(self._ready, "mariadbd", self._child)
        if first:
            self._create_schema()

    def _create_schema(self) -> None:
        conn = self._root()
        with conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {self.dbname} CHARACTER SET utf8mb4")
            for host in ("localhost", "127.0.0.1", "%"):
                cur.execute("CREATE USER %s@%s IDENTIFIED BY %s", (self.user, host, self.password))
                cur.execute(f"GRANT ALL PRIVILEGES ON {self.dbname}.* TO %s@%s", (self.user, host))
            cur.execute(f"USE {self.dbname}")
            for statement in schema_statements():
                cur.execute(statement)

    def stop(self) -> None:
        """Stop the server (simulates the DB being down); start() brings it back."""
        self._child.stop(timeout=30)

    def running(self) -> bool:
        """Return True while the server process is alive."""
        return self._child.running()

    def connect(self, tcp: bool = False) -> pymysql.connections.Connection[Any]:
        """Open an autocommit connection as the mailcow user (socket, or TCP if ``tcp``)."""
        where: dict[str, Any] = (
            {"host": self.host, "port": self.port} if tcp else {"unix_socket": str(self.socket)}
        )
        return pymysql.connect(
            user=self.user, password=self.password, database=self.dbname, autocommit=True, **where
        )

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        """Run one statement as the mailcow user over the socket (autocommit)."""
        conn = self.connect()
        with conn, conn.cursor() as cur:
            cur.execute(sql, args)

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a query as the mailcow user and return all rows."""
        conn = self.connect()
        with conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    def reset(self) -> None:
        """Delete all rows of the mailcow tables."""
        conn = self.connect()
        with conn, conn.cursor() as cur:
            for table in TABLES:
                cur.execute(f"DELETE FROM {table}")  # noqa: S608 (fixed names)
