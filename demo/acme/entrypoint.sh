#!/bin/sh
# Demo only: the sidecar reloads the consumers of its own compose project, whatever name that
# project has (the checkout's directory name, -p, COMPOSE_PROJECT_NAME). When
# COMPOSE_PROJECT_NAME is empty, read it from this container's compose label, then start the
# image's normal entry point. (In mailcow, mailcow.conf sets COMPOSE_PROJECT_NAME.)
set -eu

if [ -z "${COMPOSE_PROJECT_NAME:-}" ]; then
    COMPOSE_PROJECT_NAME=$(python3 -c '
import socket
import docker
labels = docker.from_env().containers.get(socket.gethostname()).labels
print(labels["com.docker.compose.project"])
')
    export COMPOSE_PROJECT_NAME
    echo "demo: compose project is $COMPOSE_PROJECT_NAME (from this container's labels)" >&2
fi
exec /usr/local/bin/entrypoint.sh "$@"
