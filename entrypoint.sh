#!/bin/sh
# Container entry point: check what acme-sidecar needs, say plainly what is missing,
# then exec acme-sidecar so that signals (docker stop = SIGTERM) reach it directly.
set -eu

problem=0
say() { echo "entrypoint: $*" >&2; }

cert_dir=${ACME_CERT_DIR:-/var/lib/acme}
webroot=${ACME_WEBROOT:-/var/www/acme}

if [ "${1:-run}" = "run" ] || [ "${1:-run}" = "once" ]; then
    if [ -z "${MAILCOW_HOSTNAME:-}" ]; then
        say "MAILCOW_HOSTNAME is not set: set it to this server's name (mailcow.conf)"
        problem=1
    fi
    if ! mkdir -p "$cert_dir" 2>/dev/null || ! [ -w "$cert_dir" ]; then
        say "the certificate volume $cert_dir is not writable: mount data/assets/ssl there read-write"
        problem=1
    fi
    if ! mkdir -p "$webroot" 2>/dev/null || ! [ -w "$webroot" ]; then
        say "the webroot $webroot is not writable: mount the directory nginx serves at /.well-known/acme-challenge/ there"
        problem=1
    fi
    if [ -z "${DB_HOST:-}" ] && [ ! -S "${DB_SOCKET:-/var/run/mysqld/mysqld.sock}" ]; then
        say "no MariaDB socket at ${DB_SOCKET:-/var/run/mysqld/mysqld.sock} yet (mount mysql-socket-vol-1 there, or set DB_HOST); the sidecar will retry"
    fi
    if [ "${ACME_DOCKER_API:-auto}" = "socket" ] && [ -n "${ACME_RESTART_SERVICES-x}" ] && [ -z "${DOCKER_HOST:-}" ] && [ ! -S /var/run/docker.sock ]; then
        say "ACME_DOCKER_API=socket but no Docker API (DOCKER_HOST unset and /var/run/docker.sock missing): certificates will be written but Postfix, Dovecot and nginx cannot be reloaded"
    fi
fi
if [ "$problem" -ne 0 ]; then
    say "not starting; fix the lines above"
    exit 2
fi
mkdir -p /run/acme-sidecar 2>/dev/null || true
exec acme-sidecar "$@"
