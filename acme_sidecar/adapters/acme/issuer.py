"""The issuer: obtain certificates over ACME (RFC 8555) for a batch of specs, in parallel.

``AcmeIssuer.issue_all`` runs the orders of a batch on worker threads, one ACME client per
thread (they share the account, see ``session``), and yields each result as it completes so
the caller stores it at once. It yields exactly one ``Issued`` or ``IssueFailure`` per spec
whatever happens: no exception of the ``acme``/``requests``/``josepy`` libraries, nor a
worker's own bug, escapes. ``caa_identities`` reads the CA's CAA identities from its
directory. May touch: the CA over HTTPS and challenge files in the webroot.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime
from pathlib import Path

import structlog

from acme_sidecar.adapters.acme.challenges import ChallengeResponder, Http01Webroot
from acme_sidecar.adapters.acme.orders import OrderFlow
from acme_sidecar.adapters.acme.session import NetworkFactory, Session, requests_network
from acme_sidecar.adapters.acme.translate import LIBRARY_ERRORS, ca_problem, kind_of, translate
from acme_sidecar.adapters.acme.wire import http_allowed, utcnow
from acme_sidecar.adapters.volume.pem import PrivateKey, load_key
from acme_sidecar.core.errors import CaUnreachable, SidecarError
from acme_sidecar.core.model import CertSpec, FailureKind, Issued, IssueFailure

log = structlog.get_logger(__name__)

CA_DOWN_AFTER = 3  # orders in a row that could not reach the CA: give up the rest
_START_ERRORS: tuple[type[Exception], ...] = (SidecarError, *LIBRARY_ERRORS)


class AcmeIssuer:
    """An ACME account at one directory, answering challenges through a responder (HTTP-01
    in the shared webroot unless ``responders`` says otherwise)."""

    def __init__(
        self,
        *,
        directory_url: str,
        account_pem: bytes,
        webroot: Path,
        ca_bundle: Path | None = None,
        email: str = "",
        parallel: int = 8,
        order_timeout: float = 300,
        stop: threading.Event | None = None,
        clock: Callable[[], datetime] = utcnow,
        network_factory: NetworkFactory | None = None,
        responders: Callable[[], ChallengeResponder] | None = None,
        profile: str = "",
        eab: tuple[str, str] | None = None,
    ) -> None:
        network = network_factory or requests_network(
            str(ca_bundle) if ca_bundle else True, clock, allow_http=http_allowed(directory_url)
        )
        self._session = Session(
            directory_url, account_pem, network, email, profile=profile, eab=eab
        )
        self._flow = OrderFlow(
            self._session,
            responders or (lambda: Http01Webroot(webroot)),
            order_timeout=order_timeout,
            stop=stop or threading.Event(),
            clock=clock,
            profile=profile,
        )
        self._parallel = max(1, parallel)
        self._lock = threading.Lock()
        self._unreachable = 0

    def connect(self) -> None:
        """Fetch the directory and register (or find) the account; once per issuer."""
        self._session.connect()

    def issue_all(
        self,
        specs: Sequence[CertSpec],
        key_pem: bytes | Mapping[str, bytes],
        *,
        replaces: Mapping[str, str] | None = None,
    ) -> Iterator[Issued | IssueFailure]:
        """Order every spec, up to ``parallel`` at once, with ``key_pem`` (one key, or one per
        certificate name: ``ACME_KEY_REUSE=n``); yield results as they complete. An order
        names the certificate it replaces when ``replaces`` has its spec's name.

        When the CA stops answering (``CA_DOWN_AFTER`` orders in a row could not reach it),
        the orders not yet started are given up (kind SYSTEMIC) instead of each waiting for
        its own timeout.
        """
        if not specs:
            return
        try:
            self.connect()
            if isinstance(key_pem, bytes):
                one = load_key(key_pem)
                keys = {s.name: one for s in specs}
            else:
                keys = {s.name: load_key(key_pem[s.name]) for s in specs}
        except _START_ERRORS as exc:
            error = translate(exc, "cannot start the orders")
            log.error(
                "orders.not_started",
                error=str(error),
                kind=kind_of(error).value,
                **ca_problem(error),
            )
            for spec in specs:
                yield IssueFailure(spec, str(error), error.retry_after, kind=kind_of(error))
            return
        self._unreachable = 0
        workers = min(self._parallel, len(specs))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="order") as pool:
            old = replaces or {}
            futures = [
                pool.submit(self._issue_guarded, s, keys[s.name], old.get(s.name, ""))
                for s in specs
            ]
            for future in as_completed(futures):
                yield future.result()

    def _issue_guarded(
        self, spec: CertSpec, key: PrivateKey, replaces: str = ""
    ) -> Issued | IssueFailure:
        """The worker boundary: one result per spec, whatever the order does."""
        if self._unreachable >= CA_DOWN_AFTER:
            return IssueFailure(
                spec,
                "not ordered: the CA stopped answering in this cycle",
                kind=FailureKind.SYSTEMIC,
            )
        try:
            result, error = self._flow.issue_one(spec, key, replaces)
        except Exception as exc:  # noqa: BLE001  # a bug must cost one order, not the batch
            log.error("order.crashed", certificate=spec.name, error_type=type(exc).__name__)
            return IssueFailure(spec, f"the order crashed: {type(exc).__name__}: {exc}")
        with self._lock:
            down = isinstance(error, CaUnreachable)
            self._unreachable = self._unreachable + 1 if down else 0
        return result

    def issue_one(self, spec: CertSpec, key: PrivateKey) -> Issued | IssueFailure:
        """Order one certificate; drop names the CA rejects and order again."""
        return self._flow.issue_one(spec, key)[0]
