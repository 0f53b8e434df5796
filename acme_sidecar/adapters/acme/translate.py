"""The one place where the ``acme``, ``requests`` and ``josepy`` libraries' exceptions become
the typed errors of ``core.errors``, and where an error becomes a ``FailureKind``.

Also gives the CA's problem type and detail behind a typed error (for the log lines of a
failure), parses ``Retry-After`` and classifies a failed authorization as transient (the CA's own
lookup or connection failed) or rejected (the CA refused the name for its own reason).
Pure functions; touches nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import josepy
import requests
from acme import errors, messages

from acme_sidecar.adapters.acme.wire import MAX_RETRY_AFTER as MAX_RETRY_AFTER
from acme_sidecar.adapters.acme.wire import retry_after as retry_after
from acme_sidecar.core.errors import (
    AccountUnknown,
    CaUnreachable,
    IssueError,
    NamesRejected,
    RateLimited,
)
from acme_sidecar.core.model import FailureKind

ERROR_PREFIX = "urn:ietf:params:acme:error:"
# challenge error types that say the CA's own lookup or connection failed: the name may pass
# on the next try, so it is not banned (RFC 8555 §6.7 and Let's Encrypt's ``timeout``)
TRANSIENT_TYPES = frozenset({"dns", "connection", "timeout", "serverInternal"})

# what the libraries raise on a bad network or a bad answer; anything else is our own bug
LIBRARY_ERRORS: tuple[type[Exception], ...] = (
    requests.RequestException,
    errors.Error,
    messages.Error,
    josepy.errors.Error,
    ValueError,
    KeyError,
    TypeError,
    OverflowError,
)


def error_type(typ: str | None) -> str:
    """The short ACME error type (``dns``, ``rateLimited``) of a problem's ``type`` URN."""
    text = str(typ or "")
    return text.removeprefix(ERROR_PREFIX) if text.startswith(ERROR_PREFIX) else text


def problem(
    error: messages.Error, *, status: int | None = None, retry_at: datetime | None = None
) -> IssueError:
    """A problem document of the CA (RFC 7807) as a typed error."""
    code = error_type(error.typ)
    message = f"the CA answered {code or 'an error'}: {error.detail or error.title or ''}".strip()
    if code == "rateLimited":
        return RateLimited(message, retry_after=retry_at, code=code)
    if code == "accountDoesNotExist":
        return AccountUnknown(message, retry_after=retry_at, code=code)
    if code == "serverInternal" or (status is not None and status >= 500):
        return CaUnreachable(message, retry_after=retry_at, code=code)
    failed: dict[str, str] = {}
    transient: dict[str, str] = {}
    for sub in error.subproblems or ():
        if sub.identifier is not None:
            sub_code = error_type(sub.typ)
            target = transient if sub_code in TRANSIENT_TYPES else failed
            target[sub.identifier.value] = f"{sub_code}: {sub.detail or ''}".strip()
    if failed or transient:
        return NamesRejected(
            message,
            failed_names=failed,
            transient_names=transient,
            retry_after=retry_at,
            code=code,
        )
    return IssueError(message, retry_after=retry_at, code=code)


def reason_parts(reason: str) -> tuple[str | None, str]:
    """The problem type and the detail of a per-name reason (``caa: CAA record ...``), as
    ``problem`` and ``authz_reason`` write it; a reason without a type gives ``None``."""
    code, sep, detail = reason.partition(": ")
    if sep and code and code.isalnum():
        return code, detail
    return None, reason


def ca_problem(exc: IssueError) -> dict[str, str | None]:
    """``problem`` (the CA's short error type) and ``detail`` (the CA's own text) behind a
    failure, for its log line: per name for rejected names, else the CA's problem document
    that caused it; ``None`` where the CA gave none (it could not be reached, say)."""
    if isinstance(exc, NamesRejected) and (exc.failed_names or exc.transient_names):
        reasons = exc.failed_names | exc.transient_names
        parts = {name: reason_parts(reason) for name, reason in reasons.items()}
        codes = dict.fromkeys(code for code, _ in parts.values() if code)
        return {
            "problem": ",".join(codes) or exc.code,
            "detail": "; ".join(f"{name}: {detail}" for name, (_, detail) in parts.items()),
        }
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, messages.Error):
            return {
                "problem": error_type(cause.typ) or exc.code,
                "detail": cause.detail or cause.title,
            }
        seen.add(id(cause))
        if cause.__cause__ is not None or cause.__suppress_context__:
            cause = cause.__cause__
        else:
            cause = cause.__context__
    return {"problem": exc.code, "detail": None}


def bad_answer(response: requests.Response) -> IssueError:
    """An answer that is not a problem document: a 5xx means the CA is down, else malformed."""
    if response.status_code >= 500:
        return CaUnreachable(f"the CA answered HTTP {response.status_code}")
    return IssueError(
        f"the CA sent a malformed answer: HTTP {response.status_code} "
        f"{response.headers.get('Content-Type', 'without a content type')}"
    )


def _describe(exc: BaseException) -> str:
    """``str(exc)``, which for some library errors can itself fail on an odd answer."""
    try:
        return str(exc)
    except Exception:  # noqa: BLE001  # a broken __str__ must not hide the real failure
        return type(exc).__name__


def translate(exc: BaseException, context: str) -> IssueError:
    """Any exception of the ``acme``/``requests``/``josepy`` libraries as a typed error."""
    if isinstance(exc, IssueError):
        return exc
    if isinstance(exc, messages.Error):
        return problem(exc)
    if isinstance(exc, requests.JSONDecodeError):  # a RequestException, but the CA did answer
        return IssueError(f"{context}: the CA sent a malformed answer: {_describe(exc)}")
    if isinstance(exc, requests.RequestException):
        return CaUnreachable(f"{context}: the CA is unreachable ({type(exc).__name__})")
    if isinstance(exc, errors.ClientError) and not isinstance(exc, errors.NonceError) and exc.args:
        response = exc.args[0][0] if isinstance(exc.args[0], tuple) else exc.args[0]
        if isinstance(response, requests.Response):
            return bad_answer(response)
    if isinstance(exc, josepy.errors.DeserializationError | ValueError | KeyError | TypeError):
        return IssueError(f"{context}: the CA sent a malformed answer: {_describe(exc)}")
    return IssueError(f"{context}: {type(exc).__name__}: {_describe(exc)}")


def kind_of(exc: IssueError) -> FailureKind:
    """Which retry ladder a failed order goes on (``core.settle``)."""
    if isinstance(exc, CaUnreachable):
        return FailureKind.SYSTEMIC
    if isinstance(exc, RateLimited):
        return FailureKind.RATE_LIMITED
    if isinstance(exc, NamesRejected) and exc.transient_names:
        return FailureKind.SYSTEMIC
    return FailureKind.OTHER


def authz_reason(authz: messages.Authorization) -> tuple[str, bool]:
    """Why an invalid authorization failed, and whether that cause is transient."""
    errors_seen = [c.error for c in authz.challenges if c.error is not None]
    if not errors_seen:
        return f"authorization {authz.status.name if authz.status else 'invalid'}", False
    error = errors_seen[0]
    code = error_type(error.typ)
    return f"{code}: {error.detail or error.title or ''}".strip(), code in TRANSIENT_TYPES


def authz_failures(authzs: Iterable[messages.Authorization], detail: str) -> NamesRejected:
    """The invalid authorizations of an order: per name, rejected or transient."""
    failed: dict[str, str] = {}
    transient: dict[str, str] = {}
    for authz in authzs:
        if authz.status != messages.STATUS_INVALID:
            continue
        reason, is_transient = authz_reason(authz)
        (transient if is_transient else failed)[authz.identifier.value] = reason
    return NamesRejected(f"order invalid: {detail}", failed_names=failed, transient_names=transient)
