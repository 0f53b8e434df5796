"""What the CA's directory says about CAA, read without the ``acme`` library.

``caa_identities`` GETs the directory once per cycle that validates names (bounded like every
request to the CA) and returns its ``meta.caaIdentities``, or the known identity of Let's
Encrypt's directories when the CA names none or cannot be reached (one ``ca.unreachable`` line).
May touch: the CA over HTTPS.
"""

from __future__ import annotations

from pathlib import Path

import requests
import structlog

from acme_sidecar.adapters.acme.wire import JSON_CAP
from acme_sidecar.adapters.bounded import OutOfBounds, send, watched_session

log = structlog.get_logger(__name__)

CAA_DEADLINE = 15.0  # seconds for the directory request of ``caa_identities``, all of it
KNOWN_CA_IDENTITIES = {
    "acme-v02.api.letsencrypt.org": "letsencrypt.org",
    "acme-staging-v02.api.letsencrypt.org": "letsencrypt.org",
}


def caa_identities(directory_url: str, ca_bundle: Path | None) -> tuple[str, ...]:
    """The CA's CAA identities: ``meta.caaIdentities`` of its directory, else a known one."""
    host = directory_url.split("/")[2].split(":")[0] if "//" in directory_url else ""
    fallback = (KNOWN_CA_IDENTITIES[host],) if host in KNOWN_CA_IDENTITIES else ()
    try:
        with watched_session() as session:
            response = send(
                session,
                "GET",
                directory_url,
                deadline=CAA_DEADLINE,
                cap=JSON_CAP,
                verify=str(ca_bundle) if ca_bundle else True,
            )
        meta = response.json().get("meta", {})
        found = meta.get("caaIdentities") or []
    except (requests.RequestException, OutOfBounds, ValueError, AttributeError) as exc:
        log.warning("ca.unreachable", directory=directory_url, error=str(exc)[:200])
        return fallback
    identities = tuple(str(i).lower() for i in found if isinstance(i, str) and i)
    return identities or fallback
