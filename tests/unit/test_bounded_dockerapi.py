"""The dockerapi calls are bounded: a dockerapi that never answers, drips one byte every 0.1 s
or sends 100 MiB is one ``ServiceError`` naming the URL, at the deadline or the cap; the socket
is closed and no thread is left. Deadlines are shortened to 0.5 s."""

from __future__ import annotations

import pytest

from acme_sidecar.adapters import dockerapi
from acme_sidecar.adapters.dockerapi import DockerapiServices
from acme_sidecar.core.consumers import restart_all
from acme_sidecar.core.errors import ServiceError
from tests.unit.loopback import (
    HUGE,
    Loopback,
    Respond,
    above,
    counts,
    drip_body,
    drip_head,
    hang,
    huge,
    settled,
)

DRIPPED = 50  # bytes a drip sends in 5 s: ten times the deadline, half of its 100-byte body
CASES = {
    "never answers": (hang, "no complete answer within 0.5s"),
    "drips the body": (drip_body, "no complete answer within 0.5s"),
    "drips the headers": (drip_head, "no complete answer within 0.5s"),
    "is huge": (huge(), f"the answer is longer than {dockerapi.CAP} bytes"),
}


@pytest.mark.parametrize(("respond", "error"), CASES.values(), ids=CASES.keys())
def test_a_bad_dockerapi_is_one_service_error(
    monkeypatch: pytest.MonkeyPatch, respond: Respond, error: str
) -> None:
    """The listing call ends at the deadline or the cap as a ``ServiceError`` naming the URL;
    the server saw the connection closed, and no thread or socket is left."""
    monkeypatch.setattr(dockerapi, "DEADLINE", 0.5)
    with Loopback(respond) as server:
        api = DockerapiServices("acmetest", ["postfix-mailcow"], url=server.url)
        before = counts()
        with pytest.raises(ServiceError) as info:
            api.apply(dict(restart_all(["postfix-mailcow"], "a certificate changed")))
        after = settled(before, server.closed)
    assert str(info.value) == f"mailcow dockerapi at {server.url}/containers/json: {error}"
    assert server.sent < (HUGE if respond is CASES["is huge"][0] else DRIPPED)
    assert server.closed.is_set() and not above(after, before)
