"""``acme-sidecar status``: the certificates in the volume and what the ledger holds for them.

Read-only: a damaged ``acme/state.json`` or certificate file is reported, never moved (the
daemon does that), and nothing in the volume is written (``CertStore(set_aside=False)``).
For each certificate: names, issuer, expiry, renewal time, and when an order is held back
(its back-off after failures, the CA's Retry-After, or the rate-limit budget), until when and
why; the CA's renewal window (ARI) with the time drawn in it, or the lifetime rule, and what the
renewal waits for; an expiry warning (``core.expiry``); its key type and whether it allows TLS
client authentication (clientAuth: Postfix presents it as its SMTP client certificate); the
rate-limit budget (``core.budget.usage``): each limit kept with what is used and left, and
whether the next order would be exempt (an ARI renewal, ``replaces``), urgent (ordered past the
budget) or counted. The
top-level pair is shown as ``(default)`` when it is not a copy of a certificate directory, with
whose it is (an own certificate or not) and why. Also a deploy the services are still owed, a
``force_renew`` in progress, and when the daemon wakes up next for these certificates
(``core.wake``) when its pacing is given. With ``ACME_DANE=check``: the last DANE check, each
TLSA RRset's result and why (``ops.dane``'s state file, outside the volume).
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from acme_sidecar.adapters.volume import CertStore, toppair
from acme_sidecar.config.policies import OwnPolicy
from acme_sidecar.core.ari import AriRecord, renew_time
from acme_sidecar.core.budget import Limits, hold_for, urgent_at, usage
from acme_sidecar.core.coalesce import DEFAULT, renewal_groups
from acme_sidecar.core.errors import StoreError
from acme_sidecar.core.expiry import expiry_warning
from acme_sidecar.core.ledger import CertLedger, State
from acme_sidecar.core.model import CertSpec, StoredCert
from acme_sidecar.core.own import OWN_MARK
from acme_sidecar.core.report import Outcome, Report
from acme_sidecar.core.settle import force_done
from acme_sidecar.core.wake import Pacing, candidates
from acme_sidecar.ops.dane import status_rows
from acme_sidecar.ops.terminal import Out


def _ledger(store: CertStore) -> tuple[State, str | None]:
    try:
        state, damage = store.ledger.read()
    except (StoreError, OSError) as exc:
        return State(), f"{store.layout.state_path} cannot be read ({exc})"
    return state, f"{store.layout.state_path} is unreadable ({damage})" if damage else None


def _top(store: CertStore, own: OwnPolicy, stored: dict[str, StoredCert]) -> dict[str, Any]:
    """Whose the top-level pair is (``own``, ``own_reason``; ``unreadable`` when it does not
    parse: the file and why); empty when there is none."""
    try:
        pair = toppair.read_top(store)
    except (StoreError, OSError):
        return {}
    if pair is None:
        return {}
    facts = toppair.inspect_pair(*pair)
    bad = {}
    if facts.unreadable:
        file, why = toppair.unreadable_file(store, facts)
        bad = {"unreadable": {"file": str(file), "error": why}}
    if own.skip_lets_encrypt:
        return {"own": True, "own_reason": "SKIP_LETS_ENCRYPT=y"} | bad
    who = toppair.ownership(store, facts, lambda: stored, own.ca_organizations)
    return {"own": who.own, "own_reason": who.reason} | bad


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def _ari(record: AriRecord | None, cert: StoredCert) -> dict[str, Any] | None:
    """The CA's window for ``cert`` as ``status`` shows it; None when none was asked for it."""
    if record is None or not cert.cert_id or record.cert_id != cert.cert_id:
        return None
    return {
        "cert_id": record.cert_id,
        "window_start": _iso(record.start),
        "window_end": _iso(record.end),
        "chosen": _iso(record.renew_at),
        "next_fetch": _iso(record.next_poll),
        "explanation": record.explanation or None,
        "problem": record.problem or None,
    }


def _waiting(row: dict[str, Any], now: datetime) -> str:
    """Why the renewal of a stored certificate waits (or that it does not)."""
    if row["held_until"]:
        return f"held until {row['held_until']}: {row['held_because']}"
    at = datetime.fromisoformat(row["renew_at"])
    if at <= now:
        return f"due since {row['renew_at']}: renewed at the next cycle"
    return f"until {row['renew_at']} ({row['renew_rule']})"


def _budget(
    spec: CertSpec,
    cert: StoredCert | None,
    ledger: CertLedger,
    state: State,
    now: datetime,
    limits: Limits,
) -> tuple[dict[str, Any], bool]:
    """The budget of one certificate as ``status`` shows it, and whether its next order goes
    past the CA's limits (exempt or urgent)."""
    exempt = bool(
        cert and renew_time(cert.cert_id, cert.not_before, cert.not_after, ledger.ari).ari
    )
    urgent = urgent_at(cert.not_before, cert.not_after) if cert else None
    if not limits.on:
        next_order = "no limits"
    elif exempt:
        next_order = "exempt"
    elif urgent is not None and urgent <= now:
        next_order = "urgent"
    else:
        next_order = "counted"
    uses = [
        {"limit": u.what, "used": u.used, "left": u.left, "allowed": u.allowed, "ca": u.limit}
        for u in usage(spec, state, now, limits)
    ]
    data = {"limits": uses, "next_order": next_order, "urgent_at": _iso(urgent)}
    return data, next_order in ("exempt", "urgent")


def collect(
    store: CertStore,
    now: datetime,
    *,
    own: OwnPolicy | None = None,
    days: int = 14,
    pacing: Pacing | None = None,
    limits: Limits | None = None,
    dane: Path | None = None,
) -> dict[str, Any]:
    """Everything ``status`` shows, as plain data (the ``--json`` form); ``limits``: the
    CA's limits kept (``ACME_RATE_LIMITS``; Let's Encrypt's when not given); ``dane``: the DANE
    check's state file (None: ``ACME_DANE=off``)."""
    limits = limits if limits is not None else Limits()
    state, problem = _ledger(store)
    managed = store.certs.load()
    stored = toppair.with_top(store, managed)
    top = _top(store, own or OwnPolicy(), managed)
    rows = []
    names = sorted(set(stored) | {n for n, c in state.certs.items() if c.failures})
    done = force_done(state)
    coalesce = pacing.coalesce if pacing is not None else DEFAULT
    groups = renewal_groups(managed, {n: state.cert(n).ari for n in managed}, coalesce)
    for name in names:
        cert = stored.get(name)
        ledger = state.cert(name)
        domains = cert.domains if cert else ledger.unstored_names or (name,)
        spec = CertSpec(name, domains)
        budget, past = _budget(spec, cert, ledger, state, now, limits)
        hold = (
            None
            if name == OWN_MARK
            else hold_for(spec, state, now, limits=limits, past_limits=past)
        )
        row: dict[str, Any] = {"name": name, "domains": list(domains), "stored": bool(cert)}
        if cert:
            rule = renew_time(cert.cert_id, cert.not_before, cert.not_after, ledger.ari)
            group = groups.get(name)
            if group is not None and group.why:  # renewed with others (core.coalesce)
                with_ = group.named(but=name, most=10)
                rule = replace(rule, at=group.at, why=f"{rule.why}; together with {with_}")
            row |= {
                "issuer": cert.issuer,
                "serial": f"{cert.serial:x}",
                "not_before": cert.not_before.isoformat(),
                "not_after": cert.not_after.isoformat(),
                "renew_at": rule.at.isoformat(),
                "renew_rule": rule.why,
                "ari": _ari(ledger.ari, cert),
                "expired": cert.not_after <= now,
                "key_matches": cert.key_matches,
                "key_type": cert.key_type or None,
                "client_auth": cert.client_auth,
            }
            warning = expiry_warning(cert.not_before, cert.not_after, now, days)
            row["expiry_warning"] = warning.summary(name, cert.not_after) if warning else None
            row["expiry_level"] = warning.level if warning else None
        if name == OWN_MARK:
            row |= top
            row["renew_at"] = None if top.get("own") else row.get("renew_at")
        row |= {
            "failures": ledger.failures,
            "last_error": ledger.last_error or None,
            "held_until": hold.until.isoformat() if hold else None,
            "held_because": hold.reason if hold else None,
            "issued_not_stored": bool(ledger.unstored),
            "force_done": name in done if state.force_since else None,
            "budget": None if name == OWN_MARK else budget,
        }
        if cert and row["renew_at"]:
            row["waiting"] = _waiting(row, now)
        rows.append(row)
    owed = state.deploy
    wake = None
    if pacing is not None:
        report = Report(Outcome.OK, state=state, stored=managed)
        when, why = min(candidates(report, pacing, now), key=lambda c: c[0])
        wake = {"at": max(when, now).isoformat(), "reason": why}
    return {
        "certificates": rows,
        "deploy_owed": None
        if owed is None
        else {"since": owed.since.isoformat(), "certificates": list(owed.certs)},
        "force_renew_since": state.force_since.isoformat() if state.force_since else None,
        "top_level": top or None,
        "refused_links": store.certs.refused(),
        "unreadable": _unreadable(store, top),
        "problem": problem,
        "next_wake": wake,
        "dane": status_rows(dane) if dane is not None else None,
    }


def _unreadable(store: CertStore, top: dict[str, Any]) -> list[dict[str, str]]:
    """The files that do not parse: certificate files, and the top-level pair's."""
    found = [
        {"file": file, "error": error}
        for file, error in sorted(store.unreadable().items())
        if file != str(store.layout.state_path)  # shown as the problem
    ]
    return found + ([top["unreadable"]] if "unreadable" in top else [])


def _client_auth(allowed: bool) -> str:
    if allowed:
        return "yes (usable as Postfix's SMTP client certificate)"
    return (
        "no: Postfix still presents it as its SMTP client certificate; receivers that "
        "require clientAuth refuse or downgrade it (see the README, Outbound SMTP)"
    )


NEXT_ORDER = {
    "exempt": "exempt from the CA's limits (an ARI renewal: replaces)",
    "urgent": "urgent since {urgent_at}: ordered past the CA's limits",
    "counted": "counted against the CA's limits (urgent from {urgent_at})",
    "no limits": "no rate limits kept for this CA (ACME_RATE_LIMITS)",
}


def _render_budget(budget: dict[str, Any], out: Out) -> None:
    """The budget lines of one certificate."""
    for use in budget["limits"]:
        print(
            f"  budget:    {use['limit']}: {use['used']} used, {use['left']} left "
            f"(of {use['allowed']}; the CA allows {use['ca']})",
            file=out,
        )
    said = NEXT_ORDER[budget["next_order"]].format(urgent_at=budget["urgent_at"])
    if not budget["urgent_at"]:  # not in the volume: nothing to be urgent about
        said = said.partition(" (urgent from")[0]
    print(f"  next order: {said}", file=out)


def render(data: dict[str, Any], out: Out = sys.stdout, *, as_json: bool = False) -> None:
    """Print ``data`` as a readable list, or as JSON."""
    if as_json:
        print(json.dumps(data, indent=2), file=out)
        return
    if data["problem"]:
        print(f"warning: {data['problem']}", file=out)
    for bad in data.get("unreadable") or ():
        print(f"unreadable: {bad['file']}: {bad['error']} (the daemon sets it aside)", file=out)
    if not data["certificates"]:
        print("no certificates yet", file=out)
    for row in data["certificates"]:
        print(row["name"], file=out)
        print(f"  names:     {' '.join(row['domains'])}", file=out)
        if row["stored"]:
            print(f"  issuer:    {row['issuer']}", file=out)
            print(f"  not after: {row['not_after']}", file=out)
            if row["renew_at"]:
                print(f"  renews at: {row['renew_at']} ({row['renew_rule']})", file=out)
            ari = row.get("ari")
            if ari and ari["window_start"]:
                print(
                    f"  ARI:       window {ari['window_start']} to {ari['window_end']}, "
                    f"chosen {ari['chosen'] or '-'}; asked again {ari['next_fetch']}",
                    file=out,
                )
            if ari and ari["problem"]:
                print(f"  ARI:       not used: {ari['problem']}", file=out)
            if ari and ari["explanation"]:
                print(f"  ARI:       the CA explains: {ari['explanation']}", file=out)
            if row.get("waiting"):
                print(f"  waiting:   {row['waiting']}", file=out)
            if row.get("key_type"):
                print(f"  key:       {row['key_type']}", file=out)
            if row.get("client_auth") is not None:
                print(f"  clientAuth: {_client_auth(row['client_auth'])}", file=out)
            if row.get("expiry_warning"):
                print(f"  {row['expiry_level'].upper()}: {row['expiry_warning']}", file=out)
        else:
            print("  not in the volume yet", file=out)
        if row["failures"]:
            print(f"  failures:  {row['failures']} in a row; last: {row['last_error']}", file=out)
        if row["held_until"]:
            print(f"  no order before {row['held_until']}: {row['held_because']}", file=out)
        if row.get("budget"):
            _render_budget(row["budget"], out)
        if "own" in row:
            kind = "own certificate" if row["own"] else "replaced by acme-sidecar"
            print(f"  top level: {kind}: {row['own_reason']}", file=out)
        if row["issued_not_stored"]:
            print("  issued, waiting to be stored (the next cycle stores it)", file=out)
    top = data.get("top_level")
    if top and not any(r["name"] == OWN_MARK for r in data["certificates"]):
        kind = "own certificate" if top["own"] else "replaced by acme-sidecar"
        print(f"top-level cert.pem/key.pem: {kind}: {top['own_reason']}", file=out)
    if data["force_renew_since"]:
        print(f"force_renew: honoured since {data['force_renew_since']}", file=out)
    if data["deploy_owed"]:
        owed = data["deploy_owed"]
        print(f"deploy owed since {owed['since']}: {', '.join(owed['certificates'])}", file=out)
    if data.get("next_wake"):
        wake = data["next_wake"]
        print(f"next wake-up: {wake['at']} for the {wake['reason']}", file=out)
    for name in data["refused_links"]:
        print(f"refused: {name} is a symbolic link; acme-sidecar does not use it", file=out)
    _render_dane(data.get("dane"), out)


def _render_dane(dane: dict[str, Any] | None, out: Out) -> None:
    """The DANE check's results: one line per TLSA RRset, the reason and advice below."""
    if not dane:
        return
    print(f"DANE (checked {dane['checked'] or 'not yet'}):", file=out)
    rollover = dane.get("rollover")
    if rollover:
        print(f"  key rollover: {rollover['step']}: {rollover['reason']}", file=out)
        for line in rollover["add"]:
            print(f"    add: {line}", file=out)
        if rollover.get("published"):
            print(f"    published by the sidecar: {rollover['published']}", file=out)
        for line in rollover["remove"]:
            print(f"    may go: {line}", file=out)
    for row in dane["results"]:
        print(f"  {row['tlsa']}: {row['status']}", file=out)
        print(f"    {row['reason']}", file=out)
        if row["advice"]:
            print(f"    advice: {row['advice']}", file=out)
