"""The own top-level pair in a cycle: step aside for it, check it when it changed, deploy it.

``check_own`` classifies the top-level ``cert.pem``/``key.pem`` (``core/own.py``); for an own
pair (or any pair under ``SKIP_LETS_ENCRYPT=y``) whose fingerprint differs from the ones the
ledger accepted or refused, it waits until the files hold still (an admin's ``cp`` of cert then
key), then judges the pair, once: a good one is deployed (a deploy is owed; the cycle finishes
it: reload, verification), one ``own.accepted`` line; a bad one is not, one ``own.refused``
line says why. An own pair the sidecar manages around is copied to ``acme/own/`` when good;
when bad it is backed up to ``backups/default/`` and the last good one is put back atomically.
Under ``SKIP_LETS_ENCRYPT=y`` the sidecar is hands off: it writes no certificate file (no copy,
no backup, no put back, no mode change; only its ledger) and a bad pair is a warning, not a
failure. ``watch_cycle`` is the cycle of ``SKIP_LETS_ENCRYPT=y``: the owed deploy and this
check, nothing else.
May touch: the volume (through ``adapters/volume/toppair``) and, through the deploy, the services.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import structlog

from acme_sidecar.adapters.volume import CertStore, toppair
from acme_sidecar.config.policies import OwnPolicy
from acme_sidecar.core.errors import StoreError
from acme_sidecar.core.ledger import Deploy, OwnPair, State
from acme_sidecar.core.model import StoredCert
from acme_sidecar.core.own import OWN_MARK, Ownership, PairFacts, pair_names, pair_problems
from acme_sidecar.core.settle import deploy_begin, deploy_wrote, deploy_wrote_default, sni_map
from acme_sidecar.shell.boundary import Book

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class OwnView:
    """What the cycle needs to know about the top-level pair."""

    own: bool = False
    reason: str = ""
    facts: PairFacts | None = None
    refused: bool = False


def _when(t: datetime | None) -> str | None:
    return t.isoformat() if t else None


def _ownership(policy: OwnPolicy, store: CertStore, facts: PairFacts, state: State) -> Ownership:
    if policy.skip_lets_encrypt:
        return Ownership(True, "SKIP_LETS_ENCRYPT=y: acme-sidecar orders nothing and serves this")
    seen = state.own
    if facts.unreadable and seen is not None and seen.good:
        return Ownership(True, "an own certificate was accepted before; this one is unreadable")
    return ownership_of(policy, store, facts)


def ownership_of(policy: OwnPolicy, store: CertStore, facts: PairFacts) -> Ownership:
    """Classify ``facts`` (the top-level pair) against the volume."""
    return toppair.ownership(store, facts, store.certs.load, policy.ca_organizations)


def check_own(
    policy: OwnPolicy,
    store: CertStore,
    book: Book,
    now: datetime,
    stop: threading.Event,
    *,
    quiet: bool = False,
) -> OwnView:
    """Classify the top-level pair; check, accept or refuse it when it changed (see above)."""
    hands_off = policy.skip_lets_encrypt
    pair = toppair.read_top(store, tighten=not hands_off)
    if pair is None:
        return OwnView()
    facts = toppair.inspect_pair(*pair)
    who = _ownership(policy, store, facts, book.state)
    view = OwnView(who.own, who.reason, facts)
    seen = book.state.own or OwnPair()
    if facts.unreadable and not (who.own and facts.fingerprint in (seen.good, seen.refused)):
        _unreadable(store, facts, who.own)
    if not who.own:
        return view
    if facts.fingerprint in (seen.good, seen.refused):
        if not quiet:
            _log_kept(facts, who.reason, policy)
        return replace(view, refused=facts.fingerprint == seen.refused)
    if policy.hold_still > 0:
        if stop.wait(policy.hold_still):
            return view
        again = toppair.read_top(store, tighten=not hands_off)
        if again is None or toppair.fingerprint(*again) != facts.fingerprint:
            log.info("own.changing", reason="the top-level pair is still being written",
                     action="checked again at the next look")  # fmt: skip
            return view
    problems = pair_problems(facts, policy.hostname, now)
    if problems:
        _refuse(store, book, facts, problems, hands_off=hands_off)
        return replace(view, refused=True)
    if not hands_off:
        toppair.save_own_copy(store, *pair)
    state = book.state
    if state.deploy is None:
        domains = {n: c.domains for n, c in store.certs.load().items()}
        state = deploy_begin(state, store.certs.names(), now, sni_map(domains))
    state = deploy_wrote_default(deploy_wrote(state, OWN_MARK))  # the consumers reload it
    book.update(replace(state, own=OwnPair(good=facts.fingerprint)))
    log.info(
        "own.accepted",
        subject=facts.subject,
        issuer=facts.issuer,
        serial=f"{facts.serial:x}",
        names=" ".join(pair_names(facts)),
        not_after=_when(facts.not_after),
        reason=who.reason,
        self_signed=facts.self_signed or None,
        note=SELF_SIGNED if facts.self_signed else None,
        action="deploying it to the services"
        + ("" if hands_off else "; a copy is kept in acme/own/"),
    )
    return view


SELF_SIGNED = (
    "it is self-signed, like mailcow's snake-oil placeholder: served as it is, but mail clients "
    "and browsers do not trust it"
)


def _unreadable(store: CertStore, facts: PairFacts, own: bool) -> None:
    """One ``store.unreadable`` line for a top-level pair that does not parse. An own pair is
    refused as such (``_refuse``; under SKIP_LETS_ENCRYPT=y nothing is touched); any other is copied
    to ``backups/default/unreadable-<time>/`` and replaced by the hostname's certificate."""
    path, why = toppair.unreadable_file(store, facts)
    file = str(path)
    if own:
        log.warning("store.unreadable", file=file, error=why,
                    action="refused as an own pair (see own.refused)")  # fmt: skip
        return
    try:
        kept = toppair.keep_unreadable_top(store)
    except (StoreError, OSError) as exc:
        log.warning("store.unreadable", file=file, error=why,
                    action=f"it could not be set aside ({exc}); it is left as it is")  # fmt: skip
        return
    log.warning(
        "store.unreadable",
        file=file,
        error=why,
        kept=str(kept.relative_to(store.root)) if kept else None,
        action="a copy is set aside; the pair is replaced by the certificate for the hostname",
    )


def _log_kept(facts: PairFacts, reason: str, policy: OwnPolicy) -> None:
    log.info(
        "own.kept",
        subject=facts.subject,
        issuer=facts.issuer,
        not_after=_when(facts.not_after),
        reason=reason,
        action="not overwritten; nothing is ordered for "
        + (policy.hostname or "the hostname")
        + ("" if policy.skip_lets_encrypt else " (its certificate directory is archived)"),
    )


def _refuse(
    store: CertStore, book: Book, facts: PairFacts, problems: list[str], *, hands_off: bool
) -> None:
    """One ``own.refused`` line; the pair is remembered as refused (never judged again).
    ``hands_off`` (SKIP_LETS_ENCRYPT=y): a warning, and no file is touched; otherwise an error,
    the pair is backed up and the last good own pair put back."""
    seen = book.state.own or OwnPair()
    refused = replace(book.state, own=replace(seen, refused=facts.fingerprint))
    if hands_off:
        book.update(refused)
        _refused_line(
            log.warning,
            facts,
            problems,
            action="not deployed: the services keep serving what they loaded; the files are left "
            "as they are (SKIP_LETS_ENCRYPT=y); a corrected pair is deployed at the next look",
        )
        return
    saved = toppair.backup_top(store)
    good = toppair.read_own_copy(store)
    if good is not None and toppair.fingerprint(*good) != facts.fingerprint:
        toppair.install_top(store, *good, backup=False)
        kept = toppair.inspect_pair(*good)
        action = (
            f"the last good pair ({kept.subject}, serial {kept.serial:x}) was put back and "
            "stays served"
        )
    else:
        action = "no earlier good own pair to put back; the files are left as they are"
    book.update(refused)
    refused_files = str(saved.relative_to(store.root)) if saved else None
    _refused_line(log.error, facts, problems, action=action, refused_files=refused_files)


def _refused_line(
    say: Callable[..., object], facts: PairFacts, problems: Sequence[str], **fields: object
) -> None:
    say(
        "own.refused",
        subject=facts.subject or None,
        issuer=facts.issuer or None,
        not_after=_when(facts.not_after),
        problems="; ".join(problems),
        **fields,
    )


def own_written(
    policy: OwnPolicy, store: CertStore, owed: Deploy, certs: Mapping[str, StoredCert]
) -> dict[str, int]:
    """The SNI name to verify for the top-level pair of an owed deploy: the hostname, unless
    a certificate directory also holds it (its consumers then answer with that one)."""
    if OWN_MARK not in owed.certs or not policy.hostname:
        return {}
    pair = toppair.read_top(store, tighten=not policy.skip_lets_encrypt)
    if pair is None:
        return {}
    facts = toppair.inspect_pair(*pair)
    shadow = sorted(n for n, c in certs.items() if policy.hostname in c.domains)
    if shadow:
        log.warning(
            "own.shadowed",
            hostname=policy.hostname,
            directories=",".join(shadow),
            reason="clients that ask for the hostname by name get that directory's certificate",
            hint="move the directory away if the top-level pair should be served for it",
        )
        return {}
    return {policy.hostname: facts.serial} if not facts.unreadable else {}
