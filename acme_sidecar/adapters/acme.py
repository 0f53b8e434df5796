"""Issue: obtain certificates over ACME (RFC 8555) with the ``acme`` library, HTTP-01 only.

``AcmeIssuer.issue_all`` takes a batch of certificate specs and runs the orders in parallel, one
ACME client per worker thread (they share the account). Polling starts at 50 ms and grows, and a
``Retry-After`` from the CA wins. A name whose authorization fails is dropped and the order placed
again without it. May touch: the CA over HTTPS and challenge files in ``ACME_WEBROOT``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import requests
import structlog
from acme import challenges, client, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256, ES384, ES512, RS256, JWASignature
from josepy.jwk import JWK, JWKEC

from acme_sidecar.adapters.volume import PrivateKey, load_key
from acme_sidecar import __version__
from acme_sidecar.core.errors import IssueError
from acme_sidecar.core.model import CertSpec, Issued, IssueFailure

log = structlog.get_logger(__name__)

FIRST_POLL = 0.05
CA_DOWN_AFTER = 3  # orders in a row that could not reach the CA: give up the rest
MAX_POLL = 2.0
USER_AGENT = f"acme-sidecar/{__version__} (+acme-python)"

_local = threading.local()


class Issuer(Protocol):
    """Obtains certificates for a batch of specs."""

    def issue_all(
        self, specs: Sequence[CertSpec], key_pem: bytes
    ) -> Iterator[Issued | IssueFailure]:
        """Order every spec (in parallel); yield each result as it completes; never raises
        for one failed order."""


class _Network(client.ClientNetwork):
    """ClientNetwork that remembers the ``Retry-After`` of the last error response.

    The ``acme`` library drops the HTTP response when it raises a problem document, so the
    header of a 429/503 is kept here, per thread, for the failure it causes.
    """

    @classmethod
    def _check_response(
        cls, response: requests.Response, content_type: str | None = None
    ) -> requests.Response:
        try:
            return super()._check_response(response, content_type=content_type)
        except messages.Error:
            _local.retry_after = response.headers.get("Retry-After")
            raise


def _retry_after_header(value: str | None, now: datetime) -> datetime | None:
    if not value:
        return None
    if value.strip().isdigit():
        return now + timedelta(seconds=int(value.strip()))
    with contextlib.suppress(TypeError, ValueError):
        from email.utils import parsedate_to_datetime

        parsed = parsedate_to_datetime(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def make_csr(key: PrivateKey, names: Sequence[str]) -> bytes:
    """A PEM CSR for ``names`` signed by an already loaded key.

    ``acme.crypto_util.make_csr`` takes PEM and re-parses (and for RSA re-validates) the key on
    every call, which costs ~0.5 s per order with a 4096-bit key; cryptography's builder with the
    key object loaded once per batch does the same job.
    """
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def _jwk(account_pem: bytes) -> tuple[JWK, JWASignature]:
    key = JWK.load(account_pem)
    if isinstance(key, JWKEC):
        curve = key.key.curve
        alg = {"secp256r1": ES256, "secp384r1": ES384, "secp521r1": ES512}
        if not isinstance(curve, ec.EllipticCurve) or curve.name not in alg:
            raise IssueError(f"unsupported account key curve {getattr(curve, 'name', curve)}")
        return key, alg[curve.name]
    return key, RS256


class AcmeIssuer:
    """An ACME account at one directory, answering HTTP-01 through the shared webroot."""

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
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._url = directory_url
        self._key, self._alg = _jwk(account_pem)
        self._webroot = webroot
        self._verify: bool | str = str(ca_bundle) if ca_bundle else True
        self._email = email
        self._parallel = max(1, parallel)
        self._timeout = order_timeout
        self._stop = stop or threading.Event()
        self._clock = clock
        self._directory: messages.Directory | None = None
        self._account: messages.RegistrationResource | None = None
        self._lock = threading.Lock()
        self._unreachable = 0
        self._generation = 0

    # --- account ----------------------------------------------------------------------

    def _network(self, account: messages.RegistrationResource | None) -> _Network:
        return _Network(
            self._key,
            account=account,
            alg=self._alg,
            verify_ssl=self._verify,  # type: ignore[arg-type]  # requests accepts a CA path
            user_agent=USER_AGENT,
            timeout=30,
        )

    def connect(self) -> messages.Directory:
        """Fetch the directory and register (or find) the account; once per issuer."""
        return self._session()[0]

    def _session(self) -> tuple[messages.Directory, messages.RegistrationResource, int]:
        """Directory, account and their generation, read together under the lock."""
        with self._lock:
            if self._directory is not None and self._account is not None:
                return self._directory, self._account, self._generation
            net = self._network(None)
            try:
                directory = client.ClientV2.get_directory(self._url, net)
                acme = client.ClientV2(directory, net)
                registration = messages.NewRegistration.from_data(
                    email=self._email or None, terms_of_service_agreed=True
                )
                try:
                    account = acme.new_account(registration)
                    log.info("account.registered", uri=account.uri, email=self._email or None)
                except errors.ConflictError as exc:
                    account = messages.RegistrationResource(
                        uri=exc.location, body=messages.Registration()
                    )
                    log.info("account.found", uri=account.uri)
            except (requests.RequestException, errors.Error, messages.Error, ValueError) as exc:
                raise _translate(exc, "cannot reach the ACME directory " + self._url) from exc
            self._directory, self._account = directory, account
            return directory, account, self._generation

    def _client(self) -> client.ClientV2:
        acme: client.ClientV2 | None = getattr(_local, "client", None)
        owner = getattr(_local, "owner", None)
        if acme is None or owner is None or owner[0] is not self or owner[1] != self._generation:
            directory, account, generation = self._session()
            acme = client.ClientV2(directory, self._network(account))
            _local.client, _local.owner = acme, (self, generation)
        return acme

    def _forget_account(self, exc: IssueError) -> None:
        """Drop the cached account so the next client registers it again.

        Only the first thread that saw the account fail does this; threads whose client was
        built from an older generation just rebuild their client from the new account.
        """
        owner = getattr(_local, "owner", None)
        used = owner[1] if owner is not None and owner[0] is self else None
        with self._lock:
            if used != self._generation:
                return  # someone registered again already
            if self._account is not None:
                log.warning("account.unknown", uri=self._account.uri, error=str(exc)[:200])
            self._directory = None
            self._account = None
            self._generation += 1

    # --- orders -----------------------------------------------------------------------

    def issue_all(
        self, specs: Sequence[CertSpec], key_pem: bytes
    ) -> Iterator[Issued | IssueFailure]:
        """Order every spec, up to ``parallel`` at once; yield results as they complete, so
        the caller stores each certificate at once.

        When the CA stops answering (``CA_DOWN_AFTER`` orders in a row could not reach it),
        the orders not yet started are given up with one reason instead of each waiting for
        its own timeout.
        """
        if not specs:
            return
        try:
            self.connect()
        except IssueError as exc:
            for spec in specs:
                yield IssueFailure(spec, str(exc), exc.retry_after)
            return
        key = load_key(key_pem)
        self._unreachable = 0
        workers = min(self._parallel, len(specs))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="order") as pool:
            futures = [pool.submit(self._issue_guarded, s, key) for s in specs]
            for future in as_completed(futures):
                yield future.result()

    def _issue_guarded(self, spec: CertSpec, key: PrivateKey) -> Issued | IssueFailure:
        if self._unreachable >= CA_DOWN_AFTER:
            return IssueFailure(spec, "not ordered: the CA stopped answering in this cycle")
        result = self.issue_one(spec, key)
        with self._lock:
            down = isinstance(result, IssueFailure) and "unreachable" in result.reason
            self._unreachable = self._unreachable + 1 if down else 0
        return result

    def issue_one(self, spec: CertSpec, key: PrivateKey) -> Issued | IssueFailure:
        """Order one certificate; drop names whose authorization fails and order again."""
        names = list(spec.domains)
        dropped: dict[str, str] = {}
        registered_again = False
        while names:
            current = CertSpec(name=names[0], domains=tuple(names))
            try:
                chain = self._order(current, key)
            except IssueError as exc:
                if exc.code == "accountDoesNotExist" and not registered_again:
                    # the CA forgot the account (a reset test CA, a deactivated account):
                    # register the same key again and retry this order once
                    registered_again = True
                    self._forget_account(exc)
                    continue
                if not exc.failed_names or not set(exc.failed_names) & set(names):
                    log.error(
                        "order.failed",
                        certificate=spec.name,
                        error=str(exc),
                        retry_after=exc.retry_after.isoformat() if exc.retry_after else None,
                    )
                    return IssueFailure(spec, str(exc), exc.retry_after, dropped)
                for name, reason in exc.failed_names.items():
                    log.warning("name.rejected", certificate=spec.name, name=name, reason=reason)
                dropped.update(exc.failed_names)
                names = [n for n in names if n not in exc.failed_names]
                continue
            return Issued(current, chain, dropped)
        return IssueFailure(
            spec,
            "the CA rejected every name: " + "; ".join(f"{n}: {r}" for n, r in dropped.items()),
            rejected=dropped,
        )

    def _order(self, spec: CertSpec, key: PrivateKey) -> bytes:
        acme = self._client()
        deadline = time.monotonic() + self._timeout
        csr = make_csr(key, spec.domains)
        written: list[Path] = []
        try:
            order = acme.new_order(csr)
            log.info("order.created", certificate=spec.name, names=len(spec.domains))
            for authz in order.authorizations:
                if authz.body.status == messages.STATUS_VALID:
                    continue
                written.append(self._answer(acme, authz))
            body = self._wait(acme, order.uri, {"ready", "valid", "invalid"}, deadline)
            if body.status == messages.STATUS_INVALID:
                raise self._authz_failure(acme, order, body)
            if body.status == messages.STATUS_READY:
                order = acme.begin_finalization(order)
                body = order.body
            if body.status != messages.STATUS_VALID or body.certificate is None:
                body = self._wait(acme, order.uri, {"valid", "invalid"}, deadline)
            if body.status != messages.STATUS_VALID or body.certificate is None:
                detail = body.error.detail if body.error else "no reason given"
                raise IssueError(f"the CA did not issue the certificate: {detail}")
            return acme._post_as_get(body.certificate).text.encode()
        except (requests.RequestException, errors.Error, messages.Error, ValueError) as exc:
            raise _translate(exc, f"order for {spec.name} failed") from exc
        finally:
            for path in written:
                path.unlink(missing_ok=True)

    def _answer(self, acme: client.ClientV2, authz: messages.AuthorizationResource) -> Path:
        name = authz.body.identifier.value
        for challb in authz.body.challenges:
            if isinstance(challb.chall, challenges.HTTP01):
                response, validation = challb.response_and_validation(acme.net.key)
                token = str(challb.chall.encode("token"))
                if not token or "/" in token or token.startswith("."):
                    raise IssueError(f"the CA sent an unusable http-01 token for {name}")
                path = self._webroot / token
                self._webroot.mkdir(parents=True, exist_ok=True)
                path.write_text(validation)
                path.chmod(0o644)
                acme.answer_challenge(challb, response)
                return path
        raise IssueError(
            f"the CA offered no http-01 challenge for {name}",
            failed_names={name: "no http-01 challenge offered"},
        )

    def _wait(
        self, acme: client.ClientV2, url: str, want: set[str], deadline: float
    ) -> messages.Order:
        """Poll the order: 50 ms first, growing by half each time, ``Retry-After`` wins."""
        delay = FIRST_POLL
        while True:
            # POST-as-GET of the order: the library has no public call for this (its own
            # ``poll_finalization`` uses the same private helper, with a fixed 1 s sleep).
            response = acme._post_as_get(url)
            body: messages.Order = messages.Order.from_json(response.json())
            if body.status.name in want:
                return body
            pause = delay
            header = _retry_after_header(response.headers.get("Retry-After"), self._clock())
            if header is not None:
                pause = max(0.0, (header - self._clock()).total_seconds())
            delay = min(delay * 1.5, MAX_POLL)
            if time.monotonic() + pause > deadline:
                raise IssueError(f"order {url} still {body.status.name} at the deadline")
            if self._stop.wait(pause):
                raise IssueError("stopped while waiting for the CA")

    def _authz_failure(
        self, acme: client.ClientV2, order: messages.OrderResource, body: messages.Order
    ) -> IssueError:
        failed: dict[str, str] = {}
        for authz in order.authorizations:
            updated, _ = acme.poll(authz)
            if updated.body.status == messages.STATUS_VALID:
                continue
            reason = "authorization " + updated.body.status.name
            for challb in updated.body.challenges:
                if challb.error is not None:
                    reason = challb.error.detail or str(challb.error.typ)
            failed[updated.body.identifier.value] = reason
        detail = body.error.detail if body.error else "authorization failed"
        return IssueError(f"order invalid: {detail}", failed_names=failed)


KNOWN_CA_IDENTITIES = {
    "acme-v02.api.letsencrypt.org": "letsencrypt.org",
    "acme-staging-v02.api.letsencrypt.org": "letsencrypt.org",
}


def caa_identities(directory_url: str, ca_bundle: Path | None) -> tuple[str, ...]:
    """The CA's CAA identities: ``meta.caaIdentities`` of its directory, else a known one."""
    host = directory_url.split("/")[2].split(":")[0] if "//" in directory_url else ""
    fallback = (KNOWN_CA_IDENTITIES[host],) if host in KNOWN_CA_IDENTITIES else ()
    try:
        response = requests.get(
            directory_url, timeout=15, verify=str(ca_bundle) if ca_bundle else True
        )
        meta = response.json().get("meta", {})
        found = meta.get("caaIdentities") or []
    except (requests.RequestException, ValueError, AttributeError) as exc:
        log.warning("ca.unreachable", directory=directory_url, error=str(exc)[:200])
        return fallback
    identities = tuple(str(i).lower() for i in found if isinstance(i, str) and i)
    return identities or fallback


def _translate(exc: Exception, context: str) -> IssueError:
    """One place where the ``acme`` library's and requests' errors become ``IssueError``."""
    if isinstance(exc, IssueError):
        return exc
    retry_after = None
    code = None
    if isinstance(exc, messages.Error):
        code = exc.code
        retry_after = _retry_after_header(getattr(_local, "retry_after", None), datetime.now(UTC))
        _local.retry_after = None
        failed: dict[str, str] = {}
        for sub in exc.subproblems or ():
            ident: Any = getattr(sub, "identifier", None)
            if ident is not None:
                failed[ident.value] = sub.detail or str(sub.typ)
        return IssueError(
            f"{context}: {exc.code or exc.typ}: {exc.detail}",
            failed_names=failed,
            retry_after=retry_after,
            code=code,
        )
    if isinstance(exc, requests.RequestException):
        return IssueError(f"{context}: the CA is unreachable ({type(exc).__name__})")
    return IssueError(f"{context}: {exc}")
