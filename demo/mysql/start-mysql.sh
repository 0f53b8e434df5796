#!/bin/sh
# Demo database: initialises the data directory on the first start, then runs MariaDB in the
# foreground. The socket directory is the mysql-socket volume, shared with the sidecar like
# mailcow's mysql-socket-vol-1. The init file (database.sql, schema.sql and seed.sql, joined by
# the Dockerfile) runs at every start; all of it is idempotent.
set -eu

mkdir -p /run/mysqld
chown mysql:mysql /run/mysqld /var/lib/mysql
if [ ! -d /var/lib/mysql/mysql ]; then
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db \
        --auth-root-authentication-method=socket >/dev/null
    echo "start-mysql: new data directory"
fi
exec mariadbd --user=mysql --datadir=/var/lib/mysql --socket=/run/mysqld/mysqld.sock \
    --skip-networking --skip-name-resolve --init-file=/etc/mysql/demo-seed.sql
