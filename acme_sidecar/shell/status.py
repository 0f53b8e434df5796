"""``acme-sidecar status``: the certificates in the volume and what the ledger holds for them.

Read-only: a damaged ``acme/state.json`` is reported, never moved (the daemon does that).
For each certificate: names, issuer, expiry, renewal time, and when an order is held back
(its back-off after failures, the CA's Retry-After, or the rate-limit budget), until when and
why. Also a deploy the services are still owed and a ``force_renew`` in progress.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any, TextIO

from acme_sidecar.adapters.volume import CertStore
from acme_sidecar.core.budget import hold_for
from acme_sidecar.core.ledger import State
from acme_sidecar.core.model import CertSpec
from acme_sidecar.core.plan import renewal_time
from acme_sidecar.core.settle import force_done


def _ledger(store: CertStore) -> tuple[State, str | None]:
    try:
        return State.from_json(store.state_path.read_text("utf-8")), None
    except FileNotFoundError:
        return State(), None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return State(), f"{store.state_path} is unreadable ({type(exc).__name__}: {exc})"


def collect(store: CertStore, now: datetime) -> dict[str, Any]:
    """Everything ``status`` shows, as plain data (the ``--json`` form)."""
    state, problem = _ledger(store)
    stored = store.load()
    rows = []
    names = sorted(set(stored) | {n for n, c in state.certs.items() if c.failures})
    done = force_done(state)
    for name in names:
        cert = stored.get(name)
        ledger = state.cert(name)
        domains = cert.domains if cert else ledger.unstored_names or (name,)
        hold = hold_for(CertSpec(name, domains), state, now)
        row: dict[str, Any] = {"name": name, "domains": list(domains), "stored": bool(cert)}
        if cert:
            row |= {
                "issuer": cert.issuer,
                "serial": f"{cert.serial:x}",
                "not_before": cert.not_before.isoformat(),
                "not_after": cert.not_after.isoformat(),
                "renew_at": renewal_time(cert.not_before, cert.not_after).isoformat(),
                "expired": cert.not_after <= now,
                "key_matches": cert.key_matches,
            }
        row |= {
            "failures": ledger.failures,
            "last_error": ledger.last_error or None,
            "held_until": hold.until.isoformat() if hold else None,
            "held_because": hold.reason if hold else None,
            "issued_not_stored": bool(ledger.unstored),
            "force_done": name in done if state.force_since else None,
        }
        rows.append(row)
    owed = state.deploy
    return {
        "certificates": rows,
        "deploy_owed": None
        if owed is None
        else {"since": owed.since.isoformat(), "certificates": list(owed.certs)},
        "force_renew_since": state.force_since.isoformat() if state.force_since else None,
        "refused_links": store.refused(),
        "problem": problem,
    }


def render(data: dict[str, Any], out: TextIO = sys.stdout, *, as_json: bool = False) -> None:
    """Print ``data`` as a readable list, or as JSON."""
    if as_json:
        json.dump(data, out, indent=2)
        print(file=out)
        return
    if data["problem"]:
        print(f"warning: {data['problem']}", file=out)
    if not data["certificates"]:
        print("no certificates yet", file=out)
    for row in data["certificates"]:
        print(row["name"], file=out)
        print(f"  names:     {' '.join(row['domains'])}", file=out)
        if row["stored"]:
            print(f"  issuer:    {row['issuer']}", file=out)
            print(f"  not after: {row['not_after']}", file=out)
            print(f"  renews at: {row['renew_at']}", file=out)
        else:
            print("  not in the volume yet", file=out)
        if row["failures"]:
            print(f"  failures:  {row['failures']} in a row; last: {row['last_error']}", file=out)
        if row["held_until"]:
            print(f"  no order before {row['held_until']}: {row['held_because']}", file=out)
        if row["issued_not_stored"]:
            print("  issued, waiting to be stored (the next cycle stores it)", file=out)
    if data["force_renew_since"]:
        print(f"force_renew: honoured since {data['force_renew_since']}", file=out)
    if data["deploy_owed"]:
        owed = data["deploy_owed"]
        print(f"deploy owed since {owed['since']}: {', '.join(owed['certificates'])}", file=out)
    for name in data["refused_links"]:
        print(f"refused: {name} is a symbolic link; acme-sidecar does not use it", file=out)
