"""Issue #15 item 6: mailcow's values are lenient, the sidecar's own strict. A bad
``ADDITIONAL_SAN`` entry or ``ACME_ACCOUNT_EMAIL`` is left out and named once (variable, value,
what is valid), as acme-mailcow skips it; an invalid ``ACME_*`` value of the sidecar's own still
stops the start (``ConfigError``: exit 2)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acme_sidecar.config.settings import load_settings
from acme_sidecar.config.values import (
    CONTACT_VALID,
    SAN_VALID,
    contact,
    san_entries,
    skipped_values,
)
from acme_sidecar.core.errors import ConfigError

BASE = {"MAILCOW_HOSTNAME": "mail.example.org"}


@pytest.mark.parametrize(
    ("value", "good", "bad"),
    [
        ("", (), ()),
        ("mail.example.org", ("mail.example.org",), ()),
        (
            " Mail.Example.org , mail.* ,*.example.net",
            ("mail.example.org", "mail.*", "*.example.net"),
            (),
        ),
        ("1.2.3.4,a.*.b,mail.example.org", ("mail.example.org",), ("1.2.3.4", "a.*.b")),
        ("mail*,-bad-.*,x", (), ("mail*", "-bad-.*", "x")),
        ("2001:db8::1,bücher.example", ("xn--bcher-kva.example",), ("2001:db8::1",)),
        ("a.example.org,A.example.org,,1.2.3.4,1.2.3.4", ("a.example.org",), ("1.2.3.4",)),
        ("*.*.example.org,*", (), ("*.*.example.org", "*")),
    ],
)
def test_san_entries(value: str, good: tuple[str, ...], bad: tuple[str, ...]) -> None:
    """Host names, wildcards and prefix.* entries are kept (normalized, once each); IP
    addresses, a.*.b, mail* and single labels are set apart, once each, as written."""
    assert san_entries(value) == (good, bad)


@given(st.lists(st.text(alphabet="ab.*-1:", min_size=1, max_size=8), max_size=6))
def test_every_san_entry_is_kept_or_skipped(entries: list[str]) -> None:
    """No entry is lost and none raises: each non-empty one is kept or named as skipped."""
    good, bad = san_entries(",".join(entries))
    written = [e.strip() for e in entries if e.strip() and "," not in e]
    assert len(good) + len(bad) <= len(written)
    assert set(bad) <= set(written)
    assert all(e in bad or san_entries(e)[0] for e in written)


@pytest.mark.parametrize(
    ("value", "read", "usable"),
    [
        ("", "", True),
        ("  admin@example.org ", "admin@example.org", True),
        ("me@example.com", "me@example.com", True),  # reserved: skipped later, at the CA
        ("root@localhost", "", False),
        ("admin@", "", False),
        ("nobody", "", False),
        ("a@b@example.org", "", False),
    ],
)
def test_contact(value: str, read: str, usable: bool) -> None:
    """An e-mail address with a dotted domain is kept; anything else is read as empty."""
    assert contact(value) == (read, usable)


def test_skipped_values_name_variable_value_and_rule() -> None:
    """One entry per bad value: the variable, the value as written, what is valid."""
    raw = {
        "additional_san": "1.2.3.4,a.*.b,mail.example.org",
        "acme_account_email": "root@localhost",
    }
    assert skipped_values(raw) == (
        ("ADDITIONAL_SAN", "1.2.3.4", SAN_VALID),
        ("ADDITIONAL_SAN", "a.*.b", SAN_VALID),
        ("ACME_ACCOUNT_EMAIL", "root@localhost", CONTACT_VALID),
    )
    assert skipped_values({"additional_san": "mail.*", "acme_account_email": ""}) == ()


def test_settings_keep_the_good_and_name_the_bad() -> None:
    """The settings load: the good names are used, no contact, and each bad value is named."""
    s = load_settings(
        BASE
        | {
            "ADDITIONAL_SAN": "1.2.3.4,a.*.b,webmail.example.org,imap.*",
            "ACME_ACCOUNT_EMAIL": "root@localhost",
        }
    )
    assert s.static_sans == ("webmail.example.org",)
    assert s.prefixes[0] == "imap" and s.acme_account_email == ""
    assert [(v, value) for v, value, _ in s.skipped_values] == [
        ("ADDITIONAL_SAN", "1.2.3.4"),
        ("ADDITIONAL_SAN", "a.*.b"),
        ("ACME_ACCOUNT_EMAIL", "root@localhost"),
    ]
    assert load_settings(BASE | {"ADDITIONAL_SAN": "mail.*"}).skipped_values == ()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ACME_KEY_TYPE", "rsa1024"),
        ("ACME_NOTIFY_EMAIL", "root@localhost"),
        ("ACME_CAA_IDENTITIES", "1.2.3.4"),
        ("ACME_DNS_RESOLVERS", "dns.google"),
        ("ACME_WATCH_INTERVAL", "soon"),
    ],
)
def test_own_acme_values_stay_strict(variable: str, value: str) -> None:
    """The sidecar's own ACME_* settings still stop the start, naming variable and value."""
    with pytest.raises(ConfigError) as info:
        load_settings(BASE | {variable: value})
    assert f"{variable}={value!r} is not valid" in str(info.value)
