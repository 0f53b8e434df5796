"""The ACME adapter's error translation, with constructed CA responses.

Pebble 2.4 (the test world's CA) enforces no rate limits, so a 429 with Retry-After is built
here by hand, the way Let's Encrypt answers it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import requests
from acme import messages

from acme_sidecar.adapters.acme import _Network, _retry_after_header, _translate


def problem(status: int, body: dict[str, object], headers: dict[str, str]) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    response.headers.update({"Content-Type": "application/problem+json", **headers})
    return response


def test_rate_limit_carries_retry_after() -> None:
    """A 429 rateLimited problem becomes an IssueError with the code and the Retry-After time."""
    response = problem(
        429,
        {"type": "urn:ietf:params:acme:error:rateLimited", "detail": "too many certificates"},
        {"Retry-After": "3600"},
    )
    with pytest.raises(messages.Error) as info:
        _Network._check_response(response)
    before = datetime.now(UTC)
    error = _translate(info.value, "order for mail.example.org failed")
    assert error.code == "rateLimited" and "too many certificates" in str(error)
    assert error.retry_after is not None
    assert before + timedelta(seconds=3590) < error.retry_after < before + timedelta(seconds=3610)


def test_subproblems_name_the_failed_identifiers() -> None:
    """Subproblems of a rejected order name the identifiers and their reasons."""
    response = problem(
        400,
        {
            "type": "urn:ietf:params:acme:error:rejectedIdentifier",
            "detail": "some names were rejected",
            "subproblems": [
                {
                    "type": "urn:ietf:params:acme:error:rejectedIdentifier",
                    "detail": "policy forbids issuing for this name",
                    "identifier": {"type": "dns", "value": "bad.example.org"},
                }
            ],
        },
        {},
    )
    with pytest.raises(messages.Error) as info:
        _Network._check_response(response)
    error = _translate(info.value, "order failed")
    assert error.failed_names == {"bad.example.org": "policy forbids issuing for this name"}
    assert error.retry_after is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("120", 120), ("Wed, 25 Nov 2026 00:00:00 GMT", None), ("", None), ("soon", None)],
)
def test_retry_after_header_forms(value: str, seconds: int | None) -> None:
    """Retry-After is seconds or an HTTP date; anything else is ignored."""
    now = datetime(2026, 11, 24, tzinfo=UTC)
    parsed = _retry_after_header(value, now)
    if seconds is not None:
        assert parsed == now + timedelta(seconds=seconds)
    elif value.startswith("Wed"):
        assert parsed == datetime(2026, 11, 25, tzinfo=UTC)
    else:
        assert parsed is None
