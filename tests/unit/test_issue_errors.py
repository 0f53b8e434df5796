"""The ACME adapter's error translation, with constructed CA answers and library exceptions.

Pebble 2.4 (the test world's CA) enforces no rate limits, so a 429 with Retry-After is built
here by hand, the way Let's Encrypt answers it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import josepy
import pytest
import requests
from acme import errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from acme_sidecar.adapters.acme.session import AcmeNetwork, account_key
from acme_sidecar.adapters.acme.translate import (
    authz_failures,
    authz_reason,
    ca_problem,
    kind_of,
    problem,
    reason_parts,
    retry_after,
    translate,
)
from acme_sidecar.core.errors import (
    AccountUnknown,
    CaUnreachable,
    IssueError,
    NamesRejected,
    RateLimited,
)
from acme_sidecar.core.model import FailureKind

NOW = datetime(2026, 11, 24, tzinfo=UTC)
PREFIX = "urn:ietf:params:acme:error:"


def answer(status: int, body: object, headers: dict[str, str] | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode() if not isinstance(body, bytes) else body
    response.headers.update({"Content-Type": "application/problem+json", **(headers or {})})
    return response


def network() -> AcmeNetwork:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key, alg = account_key(pem)
    return AcmeNetwork(key, alg=alg, clock=lambda: NOW)


def checked(response: requests.Response) -> IssueError:
    with pytest.raises(IssueError) as info:
        network()._checked(response, None)
    return info.value


def test_rate_limit_carries_retry_after() -> None:
    """A 429 rateLimited problem becomes RateLimited with the code and the Retry-After time."""
    error = checked(
        answer(
            429,
            {"type": PREFIX + "rateLimited", "detail": "too many certificates"},
            {"Retry-After": "3600"},
        )
    )
    assert isinstance(error, RateLimited) and kind_of(error) is FailureKind.RATE_LIMITED
    assert error.code == "rateLimited" and "too many certificates" in str(error)
    assert error.retry_after == NOW + timedelta(seconds=3600)


def test_subproblems_name_the_failed_identifiers() -> None:
    """Subproblems of a rejected order name the identifiers and their reasons."""
    error = checked(
        answer(
            400,
            {
                "type": PREFIX + "rejectedIdentifier",
                "detail": "some names were rejected",
                "subproblems": [
                    {
                        "type": PREFIX + "rejectedIdentifier",
                        "detail": "policy forbids issuing for this name",
                        "identifier": {"type": "dns", "value": "bad.example.org"},
                    }
                ],
            },
        )
    )
    assert isinstance(error, NamesRejected)
    assert error.failed_names == {
        "bad.example.org": "rejectedIdentifier: policy forbids issuing for this name"
    }
    assert error.transient_names == {} and error.retry_after is None


def test_5xx_without_a_problem_document_is_unreachable() -> None:
    """An HTML 502 from a proxy in front of the CA means the CA is down, not a bad request."""
    error = checked(answer(502, b"<html>bad gateway</html>", {"Content-Type": "text/html"}))
    assert isinstance(error, CaUnreachable) and kind_of(error) is FailureKind.SYSTEMIC


def problem_of(code: str) -> messages.Error:
    error: messages.Error = messages.Error.from_json(
        {"type": PREFIX + code, "detail": f"{code} detail"}
    )
    return error


@pytest.mark.parametrize(
    ("error", "status", "expected", "kind"),
    [
        (problem_of("rateLimited"), 429, RateLimited, FailureKind.RATE_LIMITED),
        (problem_of("accountDoesNotExist"), 400, AccountUnknown, FailureKind.OTHER),
        (problem_of("serverInternal"), 500, CaUnreachable, FailureKind.SYSTEMIC),
        (problem_of("serverInternal"), None, CaUnreachable, FailureKind.SYSTEMIC),
        (problem_of("malformed"), 503, CaUnreachable, FailureKind.SYSTEMIC),
        (problem_of("unauthorized"), 403, IssueError, FailureKind.OTHER),
        (problem_of("badCSR"), 400, IssueError, FailureKind.OTHER),
        (problem_of("badNonce"), 400, IssueError, FailureKind.OTHER),
    ],
)
def test_problem_table(
    error: messages.Error, status: int | None, expected: type[IssueError], kind: FailureKind
) -> None:
    """Each ACME problem type becomes its typed error and failure kind."""
    typed = problem(error, status=status)
    assert type(typed) is expected and kind_of(typed) is kind
    assert typed.code == error.typ.removeprefix(PREFIX)


def client_error(status: int) -> errors.ClientError:
    return errors.ClientError(answer(status, b"", {"Content-Type": "text/plain"}))


@pytest.mark.parametrize(
    ("exc", "expected", "kind", "words"),
    [
        (requests.ConnectionError("refused"), CaUnreachable, FailureKind.SYSTEMIC, "unreachable"),
        (requests.Timeout("slow"), CaUnreachable, FailureKind.SYSTEMIC, "unreachable"),
        (requests.ReadTimeout("slow"), CaUnreachable, FailureKind.SYSTEMIC, "unreachable"),
        (requests.RequestException("x"), CaUnreachable, FailureKind.SYSTEMIC, "unreachable"),
        (requests.JSONDecodeError("x", "doc", 0), IssueError, FailureKind.OTHER, "malformed"),
        (josepy.errors.DeserializationError("x"), IssueError, FailureKind.OTHER, "malformed"),
        (ValueError("x"), IssueError, FailureKind.OTHER, "malformed"),
        (KeyError("status"), IssueError, FailureKind.OTHER, "malformed"),
        (TypeError("x"), IssueError, FailureKind.OTHER, "malformed"),
        (problem_of("serverInternal"), CaUnreachable, FailureKind.SYSTEMIC, "serverInternal"),
        (problem_of("rateLimited"), RateLimited, FailureKind.RATE_LIMITED, "rateLimited"),
        (client_error(500), CaUnreachable, FailureKind.SYSTEMIC, "HTTP 500"),
        (client_error(404), IssueError, FailureKind.OTHER, "malformed"),
        (errors.MissingNonce(answer(200, {})), IssueError, FailureKind.OTHER, "order"),
        (errors.UnexpectedUpdate("x"), IssueError, FailureKind.OTHER, "order"),
    ],
)
def test_translation_table(
    exc: Exception, expected: type[IssueError], kind: FailureKind, words: str
) -> None:
    """Library exceptions become one typed error each, never escaping as themselves."""
    typed = translate(exc, "order for mail.example.org failed")
    assert type(typed) is expected and kind_of(typed) is kind
    assert words in str(typed)


def test_an_issue_error_passes_through_translation() -> None:
    """An error that is already typed is returned unchanged."""
    error = RateLimited("slow down", code="rateLimited")
    assert translate(error, "context") is error


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", NOW + timedelta(seconds=120)),
        ("1", NOW + timedelta(seconds=1)),
        (str(10 * 365 * 86400), NOW + timedelta(days=7)),  # ten years: capped
        ("9" * 40, NOW + timedelta(days=7)),  # would overflow timedelta: capped
        (format_datetime(NOW + timedelta(hours=1), usegmt=True), NOW + timedelta(hours=1)),
        (format_datetime(NOW + timedelta(days=3650), usegmt=True), NOW + timedelta(days=7)),
        ("Fri, 31 Dec 9999 23:59:59 GMT", NOW + timedelta(days=7)),
        ("0", None),
        ("-30", None),
        (format_datetime(NOW - timedelta(minutes=1), usegmt=True), None),
        (format_datetime(NOW, usegmt=True), None),
        ("", None),
        (None, None),
        ("soon", None),
        ("1.5", None),
        ("Wed, 99 Foo 2026 00:00:00 GMT", None),
    ],
)
def test_retry_after_forms(value: str | None, expected: datetime | None) -> None:
    """Retry-After is seconds or an HTTP date, capped at 7 days; 0, past or garbage is None."""
    assert retry_after(value, NOW) == expected


def authz(name: str, status: str, code: str | None) -> messages.Authorization:
    challenge: dict[str, Any] = {
        "type": "http-01",
        "url": f"https://ca.test/chall/{name}",
        "token": "a" * 43,
        "status": status,
    }
    if code is not None:
        challenge["error"] = {"type": PREFIX + code, "detail": f"{code} for {name}"}
    body: messages.Authorization = messages.Authorization.from_json(
        {"identifier": {"type": "dns", "value": name}, "status": status, "challenges": [challenge]}
    )
    return body


@pytest.mark.parametrize(
    ("code", "transient"),
    [
        ("dns", True),
        ("connection", True),
        ("timeout", True),
        ("serverInternal", True),
        ("unauthorized", False),
        ("incorrectResponse", False),
        ("caa", False),
        ("rejectedIdentifier", False),
        ("malformed", False),
        ("tls", False),
        ("somethingNew", False),
        (None, False),
    ],
)
def test_authz_classification(code: str | None, transient: bool) -> None:
    """An invalid authorization is transient only when the CA's own lookup/connect failed."""
    reason, is_transient = authz_reason(authz("a.test", "invalid", code))
    assert is_transient is transient
    assert (code or "authorization invalid") in reason


def test_only_invalid_authorizations_count() -> None:
    """Valid, pending and deactivated authorizations are not failures; invalid ones are sorted."""
    failure = authz_failures(
        [
            authz("ok.test", "valid", None),
            authz("wait.test", "pending", None),
            authz("gone.test", "deactivated", None),
            authz("bad.test", "invalid", "unauthorized"),
            authz("dns.test", "invalid", "dns"),
        ],
        "authorization failed",
    )
    assert set(failure.failed_names) == {"bad.test"}
    assert set(failure.transient_names) == {"dns.test"}
    assert kind_of(failure) is FailureKind.SYSTEMIC


def test_a_problem_answer_keeps_the_cas_type_and_detail() -> None:
    """A problem answer's type and detail are found behind the typed error it became."""
    body = {"type": PREFIX + "invalidContact", "detail": "contact domain is forbidden"}
    error = checked(answer(400, body))
    assert ca_problem(error) == {
        "problem": "invalidContact",
        "detail": "contact domain is forbidden",
    }


def test_a_translated_problem_keeps_the_cas_type_and_detail() -> None:
    """A library problem raised through ``translate`` keeps its type and detail as the cause."""
    original = problem_of("badCSR")
    with pytest.raises(IssueError) as info:
        try:
            raise original
        except messages.Error as exc:
            raise translate(exc, "order failed") from exc
    assert ca_problem(info.value) == {"problem": "badCSR", "detail": "badCSR detail"}


def test_rejected_names_give_their_types_and_details() -> None:
    """For rejected names, problem is their types and detail their texts, name by name."""
    error = NamesRejected(
        "order invalid",
        failed_names={"a.test": "caa: CAA forbids"},
        transient_names={"b.test": "dns: SERVFAIL"},
    )
    assert ca_problem(error) == {
        "problem": "caa,dns",
        "detail": "a.test: CAA forbids; b.test: SERVFAIL",
    }


def test_no_problem_document_gives_none() -> None:
    """A failure the CA did not describe (it was unreachable) has no problem or detail."""
    assert ca_problem(CaUnreachable("the CA is unreachable")) == {"problem": None, "detail": None}


@pytest.mark.parametrize(
    ("reason", "parts"),
    [
        (
            "caa: CAA record for x.test prevents issuance",
            ("caa", "CAA record for x.test prevents issuance"),
        ),
        ("incorrectResponse: ", ("incorrectResponse", "")),
        ("authorization invalid", (None, "authorization invalid")),
        ("the CA said: no", (None, "the CA said: no")),
    ],
)
def test_reason_parts(reason: str, parts: tuple[str | None, str]) -> None:
    """A per-name reason splits into the CA's problem type and its detail."""
    assert reason_parts(reason) == parts


def test_already_replaced_409_is_typed_from_its_problem_document() -> None:
    """A 409 alreadyReplaced (RFC 9773, Pebble 2.10) is an IssueError with that code and the
    CA's detail, not the library's bare ConflictError."""
    error = checked(
        answer(
            409,
            {
                "type": PREFIX + "alreadyReplaced",
                "detail": "certificate with serial 0a1b already has a replacement order",
            },
        )
    )
    assert type(error) is IssueError and error.code == "alreadyReplaced"
    assert "0a1b already has a replacement order" in str(error)
    assert ca_problem(error)["problem"] == "alreadyReplaced"


@pytest.mark.parametrize(
    "body",
    [
        {"type": PREFIX + "conflict", "detail": "already has a replacement order"},  # Pebble 2.6
        b"",  # newAccount's "the account exists" (Location only)
    ],
)
def test_other_409_answers_stay_the_librarys_conflict_error(body: object) -> None:
    """Any other 409 stays ConflictError (the account exists; Pebble 2.6's conflict)."""
    with pytest.raises(errors.ConflictError):
        network()._checked(answer(409, body, {"Location": "https://ca.test/acct/1"}), None)
