"""``acme-sidecar import --cert FILE --key FILE [--chain FILE]``: install an own certificate.

The files are checked like a changed top-level pair (``core.own.pair_problems``: the key
matches, the chain is complete and in order, the names cover ``MAILCOW_HOSTNAME``, it is valid
now); a good pair is installed as the top-level pair under the volume's lock (waiting up to
``LOCK_WAIT`` seconds for a running cycle), the old pair backed up to ``backups/default/``.
The running daemon then sees the change at its next look (``ACME_WATCH_INTERVAL``) and deploys
it. Prints one line: what was installed, or why not. May touch: the files given (read) and
the volume (``adapters/volume/toppair``).
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import structlog

from acme_sidecar.adapters.volume import CertStore, VolumeBusy, toppair
from acme_sidecar.config.policies import OwnPolicy
from acme_sidecar.core.errors import StoreError
from acme_sidecar.core.own import pair_problems
from acme_sidecar.ops.terminal import Out
from acme_sidecar.shell.own import ownership_of

log = structlog.get_logger(__name__)

LOCK_WAIT = 60.0
MAX_FILE = 1 << 20  # a certificate chain or key is a few kilobytes


def _read(path: Path) -> bytes:
    with path.open("rb") as f:
        data = f.read(MAX_FILE + 1)
    if len(data) > MAX_FILE:
        raise OSError(f"{path} is larger than {MAX_FILE} bytes: not a PEM file")
    return data


def _joined(cert: bytes, chain: bytes) -> bytes:
    parts = [p.strip() for p in (cert, chain) if p.strip()]
    return b"\n".join(parts) + b"\n"


def import_pair(
    policy: OwnPolicy,
    store: CertStore,
    cert: Path,
    key: Path,
    chain: Path | None = None,
    *,
    out: Out = sys.stdout,
    lock_wait: float = LOCK_WAIT,
) -> int:
    """Check and install; 0 when installed, 1 when refused or the volume could not take it."""

    def fail(message: str) -> int:
        log.error("own.import_refused", reason=message)
        print(f"acme-sidecar import: not installed: {message}", file=out)
        return 1

    try:
        cert_pem, key_pem = _read(cert), _read(key)
        chain_pem = _read(chain) if chain else b""
    except OSError as exc:
        return fail(f"cannot read {exc.filename or ''} ({exc.strerror or exc})".replace(" ()", ""))
    full = _joined(cert_pem, chain_pem)
    facts = toppair.inspect_pair(full, key_pem)
    problems = pair_problems(facts, policy.hostname, datetime.now(UTC))
    if problems:
        return fail("; ".join(problems))
    deadline = time.monotonic() + lock_wait
    while True:
        try:
            store.prepare()
            with store.lock():
                saved = toppair.install_top(store, full, key_pem)
                who = ownership_of(policy, store, facts)
            break
        except VolumeBusy:
            if time.monotonic() >= deadline:
                return fail(f"another acme-sidecar held the volume's lock for {lock_wait:.0f}s")
            time.sleep(0.5)
        except StoreError as exc:
            return fail(str(exc)[:300])
    backup = str(saved.relative_to(store.root)) if saved else None
    log.info(
        "own.imported",
        subject=facts.subject,
        issuer=facts.issuer,
        serial=f"{facts.serial:x}",
        not_after=facts.not_after.isoformat() if facts.not_after else None,
        backup=backup,
    )
    print(
        f"acme-sidecar import: installed {facts.subject} (issuer {facts.issuer}, serial "
        f"{facts.serial:x}, valid until {facts.not_after:%Y-%m-%d %H:%M}Z) as cert.pem/key.pem"
        + (f"; the old pair is in {backup}" if backup else "")
        + "; the running acme-sidecar deploys it within ACME_WATCH_INTERVAL",
        file=out,
    )
    if not policy.skip_lets_encrypt and not who.own:
        print(
            f"acme-sidecar import: note: acme-sidecar counts it as its own to renew "
            f"({who.reason}); set SKIP_LETS_ENCRYPT=y to keep it",
            file=out,
        )
    return 0
