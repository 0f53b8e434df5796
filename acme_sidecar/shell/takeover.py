"""The acme.sh takeover, once per volume: the ledger (``takeover_at``) says it ran.

mailcow's DNS-01 setup leaves its keys in ``acme-sh/``; ``adapters/acmesh.adopt`` takes them
over. Its trigger (acme.sh's key served, ``acme/key.pem`` not) comes back after an
``ACME_KEY_TYPE`` change, until every certificate is on the new key, so it must not run again:
the first start records when it ran and later starts skip it. A volume acme-sidecar used before
the marker existed (no marker, but its ledger or ``backups/acme/``) has its keys in use: there
the takeover only adopts a missing key and moves nothing. A volume without ``acme-sh/`` is not
touched (no lock, no marker): should ``acme-sh/`` appear after the first cycle, that rule keeps
the keys in use.

It runs under the volume lock, so a cycle of another acme-sidecar on the volume never sees the
ledger half-written; when the lock is held, that process has taken over already (it ran this
step before its first cycle). ``check`` does not run it. May touch: what ``adopt`` touches and
``acme/state.json`` and ``acme/lock`` through the store.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import structlog

from acme_sidecar.adapters import acmesh
from acme_sidecar.adapters.volume import CertStore, VolumeBusy
from acme_sidecar.core.errors import StoreError

log = structlog.get_logger(__name__)


def take_over_once(store: CertStore, directory_url: str, now: datetime) -> None:
    """Run the acme.sh takeover unless the ledger says it ran; record ``now`` when it did.

    Never raises: a volume it cannot use is left to the cycle, which says why.
    """
    root = store.root
    home = root / acmesh.HOME
    if not home.is_dir() or home.is_symlink():
        return  # nothing of acme.sh: nothing is written (SKIP_LETS_ENCRYPT=y leaves a volume as is)
    try:
        with store.lock():
            state = store.ledger.load()
            if state.takeover_at is not None:
                return
            used = acmesh.used_before(root)  # read under the lock, before anything is written
            if acmesh.adopt(root, directory_url, replace_keys=used is None):
                store.ledger.save(replace(state, takeover_at=now))
    except VolumeBusy:
        log.info("takeover.skipped", reason="another acme-sidecar holds the volume")
    except (StoreError, OSError) as exc:
        log.warning("takeover.failed", home=str(home), error=str(exc)[:300])
