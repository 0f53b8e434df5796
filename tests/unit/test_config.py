"""Settings: mailcow names, defaults and truthiness; one clear message per bad value."""

from __future__ import annotations

import pytest

from acme_sidecar.config.settings import LE_PRODUCTION, LE_STAGING, load_settings
from acme_sidecar.core.errors import ConfigError

BASE = {"MAILCOW_HOSTNAME": "mail.example.org"}


def test_defaults_match_mailcow() -> None:
    """Unset flags take mailcow's defaults."""
    s = load_settings(BASE)
    assert s.autodiscover_san and not s.enable_ssl_sni and not s.skip_ip_check
    assert not s.snat4 and not s.snat6
    assert s.directory == LE_PRODUCTION
    assert s.acme_restart_services == ("postfix-mailcow", "dovecot-mailcow", "nginx-mailcow")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("y", True), ("YES", True), ("Yes", True), ("n", False), ("no", False), ("", False)],
)
def test_truthiness(value: str, expected: bool) -> None:
    """y/yes in any case are true; n/no/empty false."""
    assert load_settings(BASE | {"SKIP_IP_CHECK": value}).skip_ip_check is expected


@pytest.mark.parametrize(
    ("value", "active"), [("n", False), ("", True), ("1.2.3.4", True), ("y", True)]
)
def test_snat_is_set_for_anything_but_n(value: str, active: bool) -> None:
    """SNAT_TO_SOURCE counts as set for any value other than n."""
    assert load_settings(BASE | {"SNAT_TO_SOURCE": value}).snat4 is active


def test_staging_wins_over_directory_url() -> None:
    """LE_STAGING wins over DIRECTORY_URL."""
    s = load_settings(BASE | {"LE_STAGING": "y", "DIRECTORY_URL": "https://ca.test/dir"})
    assert s.directory == LE_STAGING


def test_additional_san_split() -> None:
    """prefix.* entries and static names are told apart; spaces are tolerated."""
    s = load_settings(BASE | {"ADDITIONAL_SAN": "mail.*, webmail.example.org,*.example.net"})
    assert s.prefixes == ("mail", "autodiscover", "autoconfig", "mta-sts")
    assert s.static_sans == ("webmail.example.org", "*.example.net")


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({}, "MAILCOW_HOSTNAME is not set"),
        ({"MAILCOW_HOSTNAME": "not a host"}, "MAILCOW_HOSTNAME='not a host'"),
        (BASE | {"SKIP_IP_CHECK": "true"}, "SKIP_IP_CHECK='true' is not valid: use y or n"),
        (BASE | {"ACME_HTTP_VERIFY_PORT": "99999"}, "ACME_HTTP_VERIFY_PORT='99999'"),
        (BASE | {"PUBLIC_IPV4": "::1"}, "PUBLIC_IPV4='::1' is not valid: must be an IPv4"),
        (BASE | {"ACME_DNS_RESOLVERS": "dns.google"}, "ACME_DNS_RESOLVERS='dns.google'"),
        (BASE | {"ADDITIONAL_SAN": "bad name"}, "ADDITIONAL_SAN='bad name'"),
        (BASE | {"ACME_ACCOUNT_EMAIL": "nobody"}, "ACME_ACCOUNT_EMAIL='nobody'"),
        (BASE | {"DIRECTORY_URL": "ftp://x"}, "DIRECTORY_URL='ftp://x'"),
    ],
)
def test_bad_values_name_variable_and_value(env: dict[str, str], needle: str) -> None:
    """Every invalid value raises one message naming the variable and the value."""
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert needle in str(info.value)
