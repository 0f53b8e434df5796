"""The ARI parts of the ACME adapter and the setting: the newOrder payload with ``replaces``,
which refusals lead to an order without it, and ``ACME_ARI_INTERVAL``."""

from __future__ import annotations

import json

import pytest
from acme import messages

from acme_sidecar.adapters.acme.ari import ReplacingOrder, replaces_refused
from acme_sidecar.config.settings import load_settings
from acme_sidecar.core.errors import CaUnreachable, ConfigError, IssueError, RateLimited

BASE = {"MAILCOW_HOSTNAME": "mail.example.org"}


def test_the_new_order_names_the_certificate_it_replaces() -> None:
    """The payload holds the identifiers and ``replaces``; without it, no such key."""
    names = [messages.Identifier(typ=messages.IDENTIFIER_FQDN, value="mail.example.org")]
    payload = json.loads(ReplacingOrder(identifiers=names, replaces="a.b").json_dumps())
    assert payload == {
        "identifiers": [{"type": "dns", "value": "mail.example.org"}],
        "replaces": "a.b",
    }
    assert "replaces" not in json.loads(ReplacingOrder(identifiers=names).json_dumps())


@pytest.mark.parametrize(
    ("error", "fallback"),
    [
        (IssueError("the CA answered conflict: already has a replacement", code="conflict"), True),
        (IssueError("the CA answered alreadyReplaced: ...", code="alreadyReplaced"), True),
        (
            IssueError("malformed: bad CertID", code="malformed"),
            True,
        ),
        (
            IssueError("unauthorized: cannot replace it", code="unauthorized"),
            True,
        ),
        (
            CaUnreachable(
                "could not find an order for the given certificate", code="serverInternal"
            ),
            True,
        ),
        (IssueError("the CA answered rejectedIdentifier: no", code="rejectedIdentifier"), False),
        (RateLimited("too many replacement orders", code="rateLimited"), False),
    ],
)
def test_which_refusals_retry_without_replaces(error: IssueError, fallback: bool) -> None:
    """Already replaced, malformed, or any refusal about the replacement: once more without
    ``replaces``; other refusals and rate limits are not retried."""
    assert replaces_refused(error) is fallback


@pytest.mark.parametrize(("value", "seconds"), [("6h", 21600), ("5s", 5), ("86400", 86400)])
def test_ari_interval(value: str, seconds: int) -> None:
    """ACME_ARI_INTERVAL takes a duration up to a day."""
    assert load_settings(BASE | {"ACME_ARI_INTERVAL": value}).acme_ari_interval == seconds
    assert load_settings(BASE).acme_ari_interval == 21600


@pytest.mark.parametrize("value", ["0", "2d", "soon"])
def test_bad_ari_interval_is_one_clear_message(value: str) -> None:
    """A bad ACME_ARI_INTERVAL names the setting and what is valid."""
    with pytest.raises(ConfigError) as info:
        load_settings(BASE | {"ACME_ARI_INTERVAL": value})
    assert "ACME_ARI_INTERVAL" in str(info.value).upper()
