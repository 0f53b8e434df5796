"""The lookups behind validation: ask ``core.validate`` what it needs, fetch it, ask again.

``validate_name`` answers each ``Need`` of the pure verdict from the ``Resolver`` (A, AAAA,
CNAME, CAA) and the ``HttpCheck`` (the self-check through the webroot) until the verdict is
reached; ``validate_names`` does that for many names concurrently and logs one line per name
(``name.accepted``/``name.skipped``). May touch: DNS and the webroot self-check, through the
ports it is given.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import structlog

from acme_sidecar.core.model import Verdict
from acme_sidecar.core.ports import HttpCheck, Resolver
from acme_sidecar.core.validate import Answer, IpPolicy, Need, caa_verdict, verdict

log = structlog.get_logger(__name__)

MAX_STEPS = 64  # a verdict needs a handful of answers (CAA climb, AAAA, A, two self-checks)


def fetch(need: Need, resolver: Resolver, http: HttpCheck) -> Answer:
    """The answer to one ``Need``, from the port that has it."""
    if need.kind == "CAA":
        return resolver.lookup_caa(need.target)
    if need.kind == "HTTP":
        return http.check(need.name, need.target)
    return resolver.lookup(need.target, need.kind)


def validate_name(
    name: str, resolver: Resolver, policy: IpPolicy, http: HttpCheck | None
) -> Verdict:
    """The verdict on ``name``, each lookup it needs done once, in the order it needs them;
    ``http`` None: no self-check (as ``ACME_SKIP_HTTP_VERIFICATION=y``)."""
    if http is None:
        policy = replace(policy, skip_http=True)
        http = _NoCheck()
    answers: dict[Need, Answer] = {}
    for _ in range(MAX_STEPS):
        out = verdict(name, answers, policy)
        if isinstance(out, Verdict):
            return out
        answers[out] = fetch(out, resolver, http)
    return Verdict(name, False, "validation needed more lookups than allowed")


def caa_check(name: str, resolver: Resolver, identities: tuple[str, ...]) -> str | None:
    """The CAA part of a verdict alone (``acme-sidecar check``): None when the CA may issue."""
    answers: dict[Need, Answer] = {}
    for _ in range(MAX_STEPS):
        out = caa_verdict(name, answers, identities)
        if not isinstance(out, Need):
            return out
        answers[out] = fetch(out, resolver, _NoCheck())
    return "CAA lookups needed more steps than allowed"


class _NoCheck:
    def check(self, name: str, address: str) -> str | None:
        return None


def validate_names(
    names: Iterable[str],
    resolver: Resolver,
    policy: IpPolicy,
    http: HttpCheck | None,
    *,
    workers: int = 32,
) -> dict[str, Verdict]:
    """Validate every name concurrently; log one line per name."""
    unique = list(dict.fromkeys(names))
    if not unique:
        return {}
    with ThreadPoolExecutor(max_workers=min(workers, len(unique))) as pool:
        verdicts = list(pool.map(lambda n: validate_name(n, resolver, policy, http), unique))
    for v in verdicts:
        if v.ok:
            log.info("name.accepted", name=v.name, reason=v.reason)
        else:
            log.warning("name.skipped", name=v.name, reason=v.reason)
    return {v.name: v for v in verdicts}
