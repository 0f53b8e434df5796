#!/bin/sh
# Demo only: the sidecar reloads the consumers of its own compose project, whatever name that
# project has (the checkout's directory name, -p, COMPOSE_PROJECT_NAME). When
# COMPOSE_PROJECT_NAME is empty, read it from this container's compose label, asked of the
# dockerapi service (the sidecar has no Docker socket), then start the image's normal entry
# point. (In mailcow, mailcow.conf sets COMPOSE_PROJECT_NAME.)
set -eu

if [ -z "${COMPOSE_PROJECT_NAME:-}" ]; then
    COMPOSE_PROJECT_NAME=$(python3 -c '
import os, socket
import requests, urllib3
urllib3.disable_warnings()
url = os.environ.get("ACME_DOCKERAPI_URL", "https://dockerapi") + "/containers/json"
me = socket.gethostname()
for cid, doc in requests.get(url, verify=False, timeout=10).json().items():
    if cid.startswith(me):
        print(doc["Config"]["Labels"]["com.docker.compose.project"])
')
    export COMPOSE_PROJECT_NAME
    echo "demo: compose project is $COMPOSE_PROJECT_NAME (from this container's labels)" >&2
fi
exec /usr/local/bin/entrypoint.sh "$@"
