"""Orders: place one order, answer its authorizations, poll it, finalize it, fetch the chain.

``OrderFlow.issue_one`` places the order for a spec; names the CA rejects for its own reason
are dropped and the order placed again without them; a name whose validation failed on the
CA's side (its DNS lookup or connection) stops the spec for this cycle without banning the
name. Polling starts at ``FIRST_POLL`` and grows by half up to ``MAX_POLL``; a ``Retry-After``
from the CA wins. An order names the configured profile (none: the CA's default) and is given up
at its own ``expires`` when that comes before the order timeout (short profiles' orders live
briefly). May touch: the CA over HTTPS (through ``Session``) and, through the
challenge responder, the webroot.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import requests
import structlog
from acme import client, messages

from acme_sidecar.adapters.acme.ari import new_order, offers_ari, replaces_refused
from acme_sidecar.adapters.acme.certificate import checked, make_csr
from acme_sidecar.adapters.acme.challenges import ChallengeResponder
from acme_sidecar.adapters.acme.session import Session
from acme_sidecar.adapters.acme.translate import (
    LIBRARY_ERRORS,
    authz_failures,
    ca_problem,
    error_type,
    kind_of,
    reason_parts,
    retry_after,
    translate,
)
from acme_sidecar.adapters.volume.pem import PrivateKey
from acme_sidecar.core.errors import AccountUnknown, IssueError, NamesRejected
from acme_sidecar.core.model import CertSpec, FailureKind, Issued, IssueFailure

log = structlog.get_logger(__name__)

FIRST_POLL = 0.05
MAX_POLL = 2.0

T = TypeVar("T")


def _order_status(order: messages.Order) -> str:
    return str(order.status.name)


def _authz_status(authz: messages.AuthorizationResource) -> str:
    return str(authz.body.status.name)


@dataclass(slots=True)
class Tally:
    """What happened across the orders of one spec: new orders placed, failed validations."""

    orders: int = 0
    failed_validations: list[str] = field(default_factory=list)

    def failed(self, names: Sequence[str]) -> None:
        """Note names whose authorization went invalid (each once)."""
        self.failed_validations.extend(n for n in names if n not in self.failed_validations)


class _NotPrepared(NamesRejected):
    """The responder could not put the answers in place (DNS-01: a missing provider, a refused
    update, no propagation): the CA never judged these names."""

    def __init__(self, exc: NamesRejected) -> None:
        super().__init__(
            str(exc),
            failed_names=exc.failed_names,
            transient_names=exc.transient_names,
            retry_after=exc.retry_after,
            code=exc.code,
        )


class OrderFlow:
    """Places and completes the orders of one issuer; safe to use from many threads."""

    def __init__(
        self,
        session: Session,
        responders: Callable[[], ChallengeResponder],
        *,
        order_timeout: float,
        stop: threading.Event,
        clock: Callable[[], datetime],
        profile: str = "",
    ) -> None:
        self._profile = profile
        self._session = session
        self._responders = responders
        self._timeout = order_timeout
        self._stop = stop
        self._clock = clock

    def issue_one(
        self, spec: CertSpec, key: PrivateKey, replaces: str = ""
    ) -> tuple[Issued | IssueFailure, IssueError | None]:
        """Order one certificate (naming the certificate it ``replaces``, an ARI CertID, when
        given); the result, and the error that ended it (if any)."""
        names = list(spec.domains)
        dropped: dict[str, str] = {}
        local: set[str] = set()  # names dropped before the CA saw them (DNS-01 not prepared)
        tally = Tally()
        registered_again = False
        while names:
            # the directory keeps the spec's name while its first name is in the order (a
            # server certificate whose hostname a wildcard covers starts with the wildcard)
            first = spec.name if names[0] == spec.domains[0] else names[0]
            current = CertSpec(name=first, domains=tuple(names))
            try:
                chain = self.place(current, key, tally, replaces)
            except AccountUnknown as exc:
                if registered_again:
                    return self._failure(spec, exc, dropped, tally), exc
                # the CA forgot the account (a reset test CA, a deactivated account):
                # register the same key again and retry this order once
                registered_again = True
                self._session.forget_account(exc)
                continue
            except NamesRejected as exc:
                if isinstance(exc, _NotPrepared):
                    local.update(exc.failed_names, exc.transient_names)
                for name, reason in exc.failed_names.items():
                    _rejected(spec, name, reason)
                own = {n: r for n, r in exc.failed_names.items() if n in names}
                transient = {n: r for n, r in exc.transient_names.items() if n in names}
                if transient and set(names) <= set(own) | set(transient):
                    # every name failed, for a cause that should pass (an outage at the CA,
                    # DNS there, or DNS-01 records not yet propagated): systemic; no name is
                    # banned for it
                    for name, reason in transient.items():
                        _rejected(spec, name, reason, "name.unvalidated")
                    dropped.update(own)
                    detail = "; ".join(f"{n}: {r}" for n, r in transient.items())
                    error = NamesRejected(
                        f"no name could be validated, for a cause that should pass (the CA's "
                        f"side, DNS or propagation): {detail}",
                        failed_names=dropped,
                        transient_names=transient,
                        code=exc.code,
                    )
                    return self._failure(spec, error, dropped, tally), error
                # some names passed: the ones that failed, for whatever cause, are left out
                # (each with its own back-off) and the order is placed again without them
                failed = own | transient
                for name, reason in transient.items():
                    _rejected(spec, name, reason)
                if not failed:
                    return self._failure(spec, exc, dropped, tally), exc
                dropped.update(failed)
                names = [n for n in names if n not in failed]
                continue
            except IssueError as exc:
                return self._failure(spec, exc, dropped, tally), exc
            validations = tuple(tally.failed_validations)
            issued = Issued(current, chain, dropped, validations, tally.orders, self._profile)
            return checked(issued, key, self._clock()), None
        reasons = "; ".join(f"{n}: {r}" for n, r in dropped.items())
        # a local DNS-01 fault (no provider, a refused update) is not the CA's rejection
        prefix = (
            "DNS-01 could not be prepared for any name: "
            if set(dropped) <= local
            else "the CA rejected every name: "
        )
        failure = IssueFailure(
            spec,
            prefix + reasons,
            rejected=dropped,
            kind=FailureKind.REJECTED,
            failed_validations=tuple(tally.failed_validations),
            orders=tally.orders,
        )
        log.error(
            "order.failed",
            certificate=spec.name,
            kind=failure.kind.value,
            error=reasons,
            **ca_problem(NamesRejected(reasons, failed_names=dropped)),
        )
        return failure, None

    def _failure(
        self, spec: CertSpec, exc: IssueError, dropped: dict[str, str], tally: Tally
    ) -> IssueFailure:
        kind = kind_of(exc)
        log.error(
            "order.failed",
            certificate=spec.name,
            kind=kind.value,
            error=str(exc),
            retry_after=exc.retry_after.isoformat() if exc.retry_after else None,
            **ca_problem(exc),
        )
        return IssueFailure(
            spec,
            str(exc),
            exc.retry_after,
            dict(dropped),
            kind,
            tuple(tally.failed_validations),
            tally.orders,
        )

    def place(self, spec: CertSpec, key: PrivateKey, tally: Tally, replaces: str = "") -> bytes:
        """One order for exactly ``spec.domains``: the PEM chain, or a typed error."""
        acme = self._session.client()
        deadline = time.monotonic() + self._timeout
        csr = make_csr(key, spec.domains)
        responder = self._responders()
        try:
            tally.orders += 1
            order = self._new_order(acme, spec, csr, replaces, self._profile)
            log.info("order.created", certificate=spec.name, names=len(spec.domains))
            deadline = self._order_deadline(order.body, deadline)
            answers = [
                responder.prepare(authz, self._session.key)
                for authz in order.authorizations
                if authz.body.status != messages.STATUS_VALID
            ]
            try:
                responder.ready()  # every answer in place (DNS-01: published and propagated)
            except NamesRejected as exc:
                raise _NotPrepared(exc) from exc
            # the order's own time starts now: a DNS-01 propagation wait does not eat it
            deadline = self._order_deadline(order.body, time.monotonic() + self._timeout)
            for answer in answers:
                acme.answer_challenge(answer.challenge, answer.response)
            fetch = functools.partial(self._fetch_order, acme, order.uri)
            what = f"order {order.uri}"
            body = self._poll(fetch, _order_status, {"ready", "valid", "invalid"}, deadline, what)
            if body.status == messages.STATUS_INVALID:
                # the order's own problem document is the cause: its type and detail are logged
                raise self._authz_failure(acme, order, body, deadline, tally) from body.error
            if body.status == messages.STATUS_READY:
                order = acme.begin_finalization(order)
                body = order.body
            if body.status != messages.STATUS_VALID or body.certificate is None:
                body = self._poll(fetch, _order_status, {"valid", "invalid"}, deadline, what)
            if body.status != messages.STATUS_VALID or body.certificate is None:
                detail = body.error.detail if body.error else "no reason given"
                code = error_type(body.error.typ) if body.error else None
                raise IssueError(
                    f"the CA did not issue the certificate: {detail}", code=code
                ) from body.error
            return acme._post_as_get(body.certificate).text.encode()
        except LIBRARY_ERRORS as exc:
            raise translate(exc, f"order for {spec.name} failed") from exc
        finally:
            responder.cleanup()

    def _order_deadline(self, body: messages.Order, deadline: float) -> float:
        """The polling deadline: the order timeout, or the order's ``expires`` if sooner."""
        if body.expires is None:
            return deadline
        left = (body.expires - self._clock()).total_seconds()
        return min(deadline, time.monotonic() + max(left, 0.0))

    @staticmethod
    def _new_order(
        acme: client.ClientV2, spec: CertSpec, csr: bytes, replaces: str, profile: str
    ) -> messages.OrderResource:
        """The new order (with ``profile`` when set), with ``replaces`` when the CA offers
        ARI; when the CA refuses it for that (already replaced, malformed), once more without
        it."""
        if replaces and not offers_ari(acme):
            log.warning(
                "order.replaces_dropped",
                certificate=spec.name,
                reason="the CA offers no renewalInfo",
                action="ordering without replaces",
            )
            replaces = ""
        try:
            order = new_order(acme, csr, spec.domains, replaces=replaces, profile=profile)
        except IssueError as exc:
            if not replaces or not replaces_refused(exc):
                raise
            log.warning(
                "order.replaces_refused",
                certificate=spec.name,
                replaces=replaces,
                problem=exc.code,
                detail=str(exc)[:300],
                action="ordering again without replaces",
            )
            return new_order(acme, csr, spec.domains, profile=profile)
        if replaces:
            log.info("order.replaces", certificate=spec.name, replaces=replaces)
        return order

    @staticmethod
    def _fetch_order(acme: client.ClientV2, url: str) -> tuple[messages.Order, requests.Response]:
        # POST-as-GET of the order: the library has no public call for this (its own
        # ``poll_finalization`` uses the same private helper, with a fixed 1 s sleep)
        response = acme._post_as_get(url)
        return messages.Order.from_json(response.json()), response

    def _poll(
        self,
        fetch: Callable[[], tuple[T, requests.Response]],
        status_of: Callable[[T], str],
        want: set[str],
        deadline: float,
        what: str,
        *,
        give_up: bool = False,
    ) -> T:
        """Fetch until the status is in ``want``: 50 ms first, growing by half each time,
        ``Retry-After`` wins. At the deadline: raise, or with ``give_up`` return the last."""
        delay = FIRST_POLL
        while True:
            value, response = fetch()
            name = status_of(value)
            if name in want:
                return value
            pause = delay
            now = self._clock()
            at = retry_after(response.headers.get("Retry-After"), now)
            if at is not None:
                pause = max(0.0, (at - now).total_seconds())
            delay = min(delay * 1.5, MAX_POLL)
            if time.monotonic() + pause > deadline:
                if give_up:
                    return value
                raise IssueError(f"{what} still {name} at the deadline")
            if self._stop.wait(pause):
                raise IssueError("stopped while waiting for the CA")

    def _authz_failure(
        self,
        acme: client.ClientV2,
        order: messages.OrderResource,
        body: messages.Order,
        deadline: float,
        tally: Tally,
    ) -> IssueError:
        """Why an order went invalid: each authorization polled until it is final, and the
        invalid ones sorted into rejected (the CA's own reason) and transient names."""
        final = {"valid", "invalid", "deactivated", "expired", "revoked"}
        authzs: list[messages.Authorization] = []
        for authz in order.authorizations:
            fetch = functools.partial(acme.poll, authz)
            what = f"authorization {authz.uri}"
            updated = self._poll(fetch, _authz_status, final, deadline, what, give_up=True)
            authzs.append(updated.body)
        detail = body.error.detail if body.error and body.error.detail else "authorization failed"
        failure = authz_failures(authzs, detail)
        tally.failed([*failure.failed_names, *failure.transient_names])
        code = error_type(body.error.typ) if body.error else None
        if not failure.failed_names and not failure.transient_names:
            return IssueError(f"order invalid: {detail}", code=code)
        failure.code = code
        return failure


def _rejected(spec: CertSpec, name: str, reason: str, event: str = "name.rejected") -> None:
    """Log a name the CA refused (or, ``name.unvalidated``, could not validate on its side),
    with its problem type and the CA's detail."""
    problem, detail = reason_parts(reason)
    log.warning(
        event,
        certificate=spec.name,
        name=name,
        reason=reason,
        problem=problem,
        detail=detail,
    )
