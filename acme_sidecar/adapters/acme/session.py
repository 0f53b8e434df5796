"""The ACME session: the network object, the directory, the account and the per-thread client.

``AcmeNetwork`` is the ``acme`` library's ``ClientNetwork`` with four changes: a problem
answer becomes a typed error at once (with the answer's HTTP status and ``Retry-After``; of the
409 answers, which the library makes ``ConflictError``, ``alreadyReplaced`` too), the
fresh nonce of an error answer is kept, ``badNonce`` is retried up to ``BAD_NONCE_RETRIES``
times instead of once (RFC 8555 §6.5), and every request is bounded (``adapters.bounded``): it
ends within ``DEADLINE`` seconds in all (connect, TLS, headers and body) and reads at most
``JSON_CAP`` bytes of a JSON answer or ``CHAIN_CAP`` of a certificate chain. Either bound
exceeded is ``CaUnreachable`` naming the URL, so the order backs off like any CA fault. It is
built by a ``NetworkFactory`` so tests can answer with constructed ACME JSON.

``Session`` fetches the directory and registers (or finds) the account once, hands every
worker thread its own ``ClientV2``, and registers again when the CA forgot the account. A
contact at a reserved domain (``me@example.com``, mailcow's default) is not sent: the account is
registered without one. The directory's ``meta`` is checked first: the profile asked for must
be one it lists, and External Account Binding (EAB: key identifier and HMAC key, never logged)
is sent when configured and required when it says
``externalAccountRequired``. Only https is spoken with a CA whose directory is https: an
endpoint the directory lists, or any other URL (order, authorization, certificate), in plain
http is refused as a downgrade (``refuse_downgrade``); an http directory (a test CA, allowed by
``ACME_ALLOW_HTTP_CA=y``) allows http. May touch: the CA over HTTPS.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

import requests
import structlog
from acme import client, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.errors import DeserializationError
from josepy.interfaces import JSONDeSerializable
from josepy.jwa import ES256, ES384, ES512, RS256, JWASignature
from josepy.jwk import JWK, JWKEC, JWKRSA

from acme_sidecar.adapters.acme.translate import LIBRARY_ERRORS, bad_answer, error_type, problem
from acme_sidecar.adapters.acme.translate import translate as translate_error
from acme_sidecar.adapters.acme.wire import (
    DEADLINE,
    USER_AGENT,
    answer_cap,
    http_allowed,
    refuse_downgrade,
    retry_after,
    utcnow,
)
from acme_sidecar.adapters.bounded import OutOfBounds, send, watch_session
from acme_sidecar.core.errors import CaUnreachable, IssueError, RateLimited
from acme_sidecar.core.profiles import profile_problem
from acme_sidecar.core.values import reserved_contact

log = structlog.get_logger(__name__)

BAD_NONCE_RETRIES = 10  # after the first attempt; each retry uses the nonce of the error answer

Clock = Callable[[], datetime]


class AcmeNetwork(client.ClientNetwork):
    """``ClientNetwork`` raising typed errors, retrying ``badNonce`` with fresh nonces, and
    bounding every request in time and size."""

    def __init__(
        self,
        key: JWK,
        *,
        alg: JWASignature = RS256,
        account: messages.RegistrationResource | None = None,
        verify: bool | str = True,
        deadline: float = DEADLINE,
        clock: Clock = utcnow,
        bad_nonce_retries: int = BAD_NONCE_RETRIES,
        allow_http: bool = False,
    ) -> None:
        super().__init__(
            key,
            account=account,
            alg=alg,
            verify_ssl=verify,  # type: ignore[arg-type]  # requests accepts a CA bundle path
            user_agent=USER_AGENT,
            timeout=math.ceil(deadline),  # unused: _send_request bounds each request itself
        )
        watch_session(self.session)
        self._deadline = deadline
        self._clock = clock
        self._bad_nonce_retries = max(0, bad_nonce_retries)
        self._allow_http = allow_http  # an http directory (a test CA); else https only

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        """One request, ended within the deadline, its body (within the cap) read."""
        if args:
            raise TypeError("AcmeNetwork requests take keyword arguments only")
        kwargs["verify"] = self.verify_ssl
        headers = kwargs.setdefault("headers", {})
        headers.setdefault("User-Agent", self.user_agent)
        try:
            response = send(
                self.session, method, url, deadline=self._deadline, cap=answer_cap, **kwargs
            )
        except OutOfBounds as exc:
            raise CaUnreachable(f"the CA at {url}: {exc}") from exc
        if "Accept" not in headers:
            response.encoding = "utf-8"  # as the library does: .text is UTF-8, not guessed
        return response

    def _checked(self, response: requests.Response, content_type: str | None) -> requests.Response:
        try:
            return self._check_response(response, content_type=content_type)
        except errors.ConflictError as conflict:
            # the library turns every 409 into ConflictError, problem document and all: "the
            # account exists" (ClientV2.new_account's answer, handled by Session) stays one;
            # RFC 9773's alreadyReplaced (a 409 too) is typed from its body
            error = _conflict_problem(response)
            if error is None:
                raise
            at = retry_after(response.headers.get("Retry-After"), self._clock())
            raise problem(error, status=response.status_code, retry_at=at) from conflict
        except messages.Error as error:
            at = retry_after(response.headers.get("Retry-After"), self._clock())
            raise problem(error, status=response.status_code, retry_at=at) from error
        except errors.ClientError as error:
            raise bad_answer(response) from error

    def get(
        self, url: str, content_type: str = client.ClientNetwork.JSON_CONTENT_TYPE, **kwargs: Any
    ) -> requests.Response:
        """GET ``url``; a problem answer raises a typed error."""
        refuse_downgrade(url, allow_http=self._allow_http)
        return self._checked(self._send_request("GET", url, **kwargs), content_type)

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:
        """POST a JWS; ``badNonce`` is retried with a fresh nonce, a bounded number of times."""
        for attempt in range(self._bad_nonce_retries + 1):
            try:
                return self._post_once(*args, **kwargs)
            except IssueError as exc:
                if exc.code != "badNonce":
                    raise
                log.debug("acme.bad_nonce", attempt=attempt + 1)
        raise CaUnreachable(
            f"the CA rejected {self._bad_nonce_retries + 1} nonces in a row (badNonce)",
            code="badNonce",
        )

    def head(self, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        """HEAD ``url`` (a new nonce)."""
        refuse_downgrade(url, allow_http=self._allow_http)
        return super().head(url, *args, **kwargs)

    def _get_nonce(self, url: str, new_nonce_url: str | None) -> str:
        if not self._nonces:
            if new_nonce_url is None:
                response = self.head(url)
            else:
                response = self._checked(self.head(new_nonce_url), None)
            self._add_nonce(response)
        return self._nonces.pop()

    def _post_once(
        self,
        url: str,
        obj: JSONDeSerializable,
        content_type: str = client.ClientNetwork.JOSE_CONTENT_TYPE,
        **kwargs: Any,
    ) -> requests.Response:
        new_nonce_url = kwargs.pop("new_nonce_url", None)
        refuse_downgrade(url, allow_http=self._allow_http)
        data = self._wrap_in_jws(obj, self._get_nonce(url, new_nonce_url), url)
        kwargs.setdefault("headers", {"Content-Type": content_type})
        response = self._send_request("POST", url, data=data, **kwargs)
        if not response.ok:
            # an error answer carries a fresh nonce too (RFC 8555 §6.5): the retry uses it
            # instead of asking newNonce; a missing or garbled one is not an error here
            with contextlib.suppress(errors.NonceError):
                self._add_nonce(response)
        response = self._checked(response, content_type)
        self._add_nonce(response)
        return response


def _conflict_problem(response: requests.Response) -> messages.Error | None:
    """The ``alreadyReplaced`` problem document of a 409 answer; ``None`` for any other."""
    try:
        error = messages.Error.from_json(response.json())
    except (ValueError, TypeError, DeserializationError):  # not JSON, or not a problem
        return None
    return error if error_type(error.typ) == "alreadyReplaced" else None


NetworkFactory = Callable[[JWK, JWASignature, messages.RegistrationResource | None], AcmeNetwork]


def requests_network(
    verify: bool | str,
    clock: Clock = utcnow,
    *,
    bad_nonce_retries: int = BAD_NONCE_RETRIES,
    deadline: float = DEADLINE,
    allow_http: bool = False,
) -> NetworkFactory:
    """The default network factory: real HTTPS with ``verify`` (True or a CA bundle path),
    each request ended within ``deadline`` seconds; ``allow_http`` for a test CA whose
    directory is http."""

    def build(
        key: JWK, alg: JWASignature, account: messages.RegistrationResource | None
    ) -> AcmeNetwork:
        return AcmeNetwork(
            key,
            alg=alg,
            account=account,
            verify=verify,
            clock=clock,
            bad_nonce_retries=bad_nonce_retries,
            deadline=deadline,
            allow_http=allow_http,
        )

    return build


def account_key(account_pem: bytes) -> tuple[JWK, JWASignature]:
    """The account key as a JWK and the JWS algorithm that goes with it.

    ``account_pem`` is the volume's (``Keys.account_key``), which checked the key in full when it
    read or made it; so it is loaded here without the RSA consistency check again (0.3 s of
    CPU for acme-mailcow's 4096-bit key)."""
    try:
        private = serialization.load_pem_private_key(
            account_pem, password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError) as exc:
        raise IssueError(f"the account key cannot be read: {exc}") from None
    if isinstance(private, rsa.RSAPrivateKey):
        return JWKRSA(key=private), RS256
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise IssueError(f"unsupported account key type {type(private).__name__}")
    alg = {"secp256r1": ES256, "secp384r1": ES384, "secp521r1": ES512}
    if private.curve.name not in alg:
        raise IssueError(f"unsupported account key curve {private.curve.name}")
    return JWKEC(key=private), alg[private.curve.name]


class Session:
    """The directory and the account of one issuer, shared by its worker threads."""

    def __init__(
        self,
        directory_url: str,
        account_pem: bytes,
        network: NetworkFactory,
        email: str = "",
        *,
        profile: str = "",
        eab: tuple[str, str] | None = None,
    ) -> None:
        self._url = directory_url
        self.key, self._alg = account_key(account_pem)
        self._network = network
        self._email = email
        self._profile = profile
        self._eab = eab  # (kid, base64url HMAC key): the key is a secret, never logged
        self._directory: messages.Directory | None = None
        self._account: messages.RegistrationResource | None = None
        self._lock = threading.Lock()
        self._generation = 0
        self._local = threading.local()

    def connect(self) -> messages.Directory:
        """Fetch the directory and register (or find) the account; once per session."""
        return self._current()[0]

    def _current(self) -> tuple[messages.Directory, messages.RegistrationResource, int]:
        """Directory, account and their generation, read together under the lock."""
        with self._lock:
            if self._directory is not None and self._account is not None:
                return self._directory, self._account, self._generation
            try:
                directory, account = self._register()
            except LIBRARY_ERRORS as exc:
                error = translate_error(exc, "cannot reach the ACME directory " + self._url)
                raise error from exc
            self._directory, self._account = directory, account
            return directory, account, self._generation

    def _register(self) -> tuple[messages.Directory, messages.RegistrationResource]:
        net = self._network(self.key, self._alg, None)
        directory = client.ClientV2.get_directory(self._url, net)
        for name, url in directory.to_partial_json().items():
            if name != "meta" and isinstance(url, str):
                refuse_downgrade(url, allow_http=http_allowed(self._url), what=name)
        meta = directory.meta
        wrong_profile = profile_problem(self._profile, meta.profiles if meta else None)
        if wrong_profile:
            raise IssueError(wrong_profile, code="profile")
        acme = client.ClientV2(directory, net)
        binding = self._binding(directory, bool(meta and meta.external_account_required))
        email = self._email or None
        if email is not None and reserved_contact(email):
            # mailcow's default ACME_ACCOUNT_EMAIL=me@example.com: a CA refuses it
            # (invalidContact), so the account is registered without a contact
            log.warning(
                "account.contact_skipped",
                email=email,
                reason="a reserved domain (RFC 2606/6761) that the CA refuses as a contact",
            )
            email = None
        registration = messages.NewRegistration.from_data(
            email=email, terms_of_service_agreed=True, external_account_binding=binding
        )
        try:
            account = acme.new_account(registration)
            log.info("account.registered", uri=account.uri, email=email, eab_kid=self._kid)
        except errors.ConflictError as exc:
            account = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
            log.info("account.found", uri=account.uri)
        except IssueError as exc:
            if binding is None or isinstance(exc, CaUnreachable | RateLimited):
                raise
            raise IssueError(
                f"the CA refused the account with External Account Binding ACME_EAB_KID="
                f"{self._kid}: {exc}; check ACME_EAB_KID and ACME_EAB_HMAC_KEY",
                code=exc.code,
                retry_after=exc.retry_after,
            ) from exc
        return directory, account

    @property
    def _kid(self) -> str | None:
        return self._eab[0] if self._eab else None

    def _binding(self, directory: messages.Directory, required: bool) -> dict[str, Any] | None:
        """The EAB object of the new-account request; None without EAB (an error when the CA
        requires it)."""
        if self._eab is None:
            if required:
                raise IssueError(
                    "the CA requires External Account Binding (its directory says "
                    "externalAccountRequired): set ACME_EAB_KID and ACME_EAB_HMAC_KEY to the "
                    "key identifier and HMAC key of your account at the CA",
                    code="externalAccountRequired",
                )
            return None
        kid, hmac_key = self._eab
        binding: dict[str, Any] = messages.ExternalAccountBinding.from_data(
            account_public_key=self.key.public_key(),
            kid=kid,
            hmac_key=hmac_key,
            directory=directory,
        )
        return binding

    def client(self) -> client.ClientV2:
        """This thread's ACME client, rebuilt when the account was registered again."""
        acme: client.ClientV2 | None = getattr(self._local, "client", None)
        used: int | None = getattr(self._local, "generation", None)
        if acme is None or used != self._generation:
            directory, account, generation = self._current()
            acme = client.ClientV2(directory, self._network(self.key, self._alg, account))
            self._local.client, self._local.generation = acme, generation
        return acme

    def forget_account(self, exc: IssueError) -> None:
        """Drop the cached account so the next client registers it again.

        Only the first thread that saw the account fail does this; threads whose client was
        built from an older generation just rebuild their client from the new account.
        """
        used = getattr(self._local, "generation", None)
        with self._lock:
            if used != self._generation:
                return  # someone registered again already
            if self._account is not None:
                log.warning("account.unknown", uri=self._account.uri, error=str(exc)[:200])
            self._directory = None
            self._account = None
            self._generation += 1
