"""Settings: mailcow names, defaults and truthiness; one clear message per bad value."""

from __future__ import annotations

import pytest

from acme_sidecar.config.ca_settings import LE_PRODUCTION, LE_STAGING
from acme_sidecar.config.settings import (
    MAILCOW_FLAGS,
    load_settings,
)
from acme_sidecar.core.errors import ConfigError
from acme_sidecar.core.values import mask_url, reserved_contact

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
    ("value", "expected", "warned"),
    [
        ("true", False, True),
        ("1", False, True),
        ("maybe", False, True),
        ("TRUE", False, True),
        ("Yes", True, False),
        ("y", True, False),
        ("n", False, False),
        ("", False, False),
        ("no", False, False),
        (" NO ", False, False),
    ],
)
def test_mailcow_flags_keep_mailcow_truthiness(value: str, expected: bool, warned: bool) -> None:
    """A mailcow flag is yes only for y/yes; an unclear value is no, with a warning entry."""
    s = load_settings(BASE | {"ENABLE_SSL_SNI": value})
    assert s.enable_ssl_sni is expected
    assert s.lenient_flags == ((("ENABLE_SSL_SNI", value),) if warned else ())


@pytest.mark.parametrize("var", list(MAILCOW_FLAGS))
def test_every_mailcow_flag_is_lenient(var: str) -> None:
    """No mailcow flag refuses a value: each reads "true" as no and notes it."""
    s = load_settings(BASE | {var.upper(): "true"})
    assert getattr(s, var) is False
    assert s.lenient_flags == ((var.upper(), "true"),)


def test_one_warning_per_unclear_flag() -> None:
    """Each unclear flag gives one entry; clear ones give none."""
    env = BASE | {"ENABLE_SSL_SNI": "true", "SKIP_IP_CHECK": "y", "LE_STAGING": "maybe"}
    assert load_settings(env).lenient_flags == (
        ("ENABLE_SSL_SNI", "true"),
        ("LE_STAGING", "maybe"),
    )


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
        (BASE | {"ACME_MAX_NAMES": "abc"}, "ACME_MAX_NAMES='abc' is not valid"),
        (BASE | {"ACME_LOG_FORMAT": "yes"}, "ACME_LOG_FORMAT='yes' is not valid"),
        (BASE | {"ACME_HTTP_VERIFY_PORT": "99999"}, "ACME_HTTP_VERIFY_PORT='99999'"),
        (
            BASE | {"ACME_HTTPS_VERIFY_PORT": "0"},
            "ACME_HTTPS_VERIFY_PORT='0' is not valid: must be a",
        ),
        (BASE | {"PUBLIC_IPV4": "::1"}, "PUBLIC_IPV4='::1' is not valid: must be an IPv4"),
        (BASE | {"ACME_DNS_RESOLVERS": "dns.google"}, "ACME_DNS_RESOLVERS='dns.google'"),
        (BASE | {"ACME_KEY_TYPE": "rsa1024"}, "ACME_KEY_TYPE='rsa1024' is not valid"),
        (BASE | {"ACME_NOTIFY_EMAIL": "nobody"}, "ACME_NOTIFY_EMAIL='nobody'"),
        (BASE | {"DIRECTORY_URL": "ftp://x"}, "DIRECTORY_URL='ftp://x'"),
    ],
)
def test_bad_values_name_variable_and_value(env: dict[str, str], needle: str) -> None:
    """Every invalid value raises one message naming the variable and the value."""
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert needle in str(info.value)


def test_the_db_password_is_not_shown() -> None:
    """DBPASS is usable but repr() and str() of the settings do not show it."""
    s = load_settings(BASE | {"DBPASS": "hunter2"})
    assert s.dbpass.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(s) and "hunter2" not in str(s)


@pytest.mark.parametrize("var", ["ACME_IPV4_DETECT_URL", "ACME_IPV6_DETECT_URL", "DIRECTORY_URL"])
def test_a_refused_url_is_echoed_with_its_password_masked(var: str) -> None:
    """An invalid URL setting is named and shown, but its password is not."""
    with pytest.raises(ConfigError) as info:
        load_settings(BASE | {var: "http://admin:hunter2@ip.example.org/ bad"})
    assert f"{var}='http://admin:***@ip.example.org/ bad'" in str(info.value)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pw@host/p?q=1", "https://user:***@host/p?***"),
        ("https://host/p?token=s3cret#f", "https://host/p?***"),
        ("https://token@host:8443/p", "https://***@host:8443/p"),
        ("https://user:p@ss@host/", "https://user:***@host/"),
        ("https://host/p@q", "https://host/p@q"),
        ("https://host", "https://host"),
        ("not a url", "not a url"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    """The userinfo and the query are masked; an @ in the path is not userinfo."""
    assert mask_url(url) == shown


@pytest.mark.parametrize(
    ("email", "reserved"),
    [
        ("me@example.com", True),
        ("a@sub.example.org", True),
        ("x@example.net", True),
        ("x@mail.test", True),
        ("x@foo.example", True),
        ("x@host.localhost", True),
        ("x@nowhere.invalid", True),
        ("ME@EXAMPLE.COM", True),
        ("x@localhost-ish.org", False),
        ("x@notexample.com", False),
        ("x@example.com.au", False),
        ("real@mailcow.email", False),
    ],
)
def test_reserved_contact(email: str, reserved: bool) -> None:
    """Addresses at RFC 2606/6761 reserved domains are recognised; look-alikes are not."""
    assert reserved_contact(email) is reserved


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, True),  # auto, Let's Encrypt production (the default directory)
        ({"LE_STAGING": "y"}, True),  # auto, Let's Encrypt staging
        ({"DIRECTORY_URL": "https://acme-v02.api.letsencrypt.org/directory"}, True),
        ({"DIRECTORY_URL": "https://ca.internal.example:9000/acme/acme/directory"}, False),
        ({"DIRECTORY_URL": "https://letsencrypt.org.ca.example/directory"}, False),  # by host
        (
            {"DIRECTORY_URL": "https://ca.example/dir", "ACME_RATE_LIMITS": "letsencrypt"},
            True,
        ),
        ({"ACME_RATE_LIMITS": "off"}, False),
        ({"ACME_RATE_LIMITS": "letsencrypt"}, True),
    ],
)
def test_rate_limits_setting(env: dict[str, str], on: bool) -> None:
    """ACME_RATE_LIMITS=auto (the default) keeps Let's Encrypt's limits for Let's Encrypt's
    directories only (by host); letsencrypt forces them, off drops them."""
    from acme_sidecar.config.policies import cycle_policy, registered_domain
    from acme_sidecar.core.budget import Limits

    base = {"MAILCOW_HOSTNAME": "mail.example.org"}
    limits = cycle_policy(load_settings(base | env)).limits
    assert limits == (Limits(domain_of=registered_domain) if on else Limits.off())


def test_rate_limits_setting_refuses_other_values() -> None:
    """ACME_RATE_LIMITS=zerossl exits 2 with a line naming the setting."""
    with pytest.raises(ConfigError, match="ACME_RATE_LIMITS"):
        load_settings({"MAILCOW_HOSTNAME": "mail.example.org", "ACME_RATE_LIMITS": "zerossl"})


def test_the_self_check_settings_reach_the_start_policy() -> None:
    """SKIP_IP_CHECK reaches the webroot wait at start; ACME_HTTPS_VERIFY_PORT defaults to 443."""
    from acme_sidecar.config.policies import daemon_policy

    assert load_settings(BASE).acme_https_verify_port == 443
    default, skip = (
        daemon_policy(load_settings(BASE | e)).start for e in ({}, {"SKIP_IP_CHECK": "y"})
    )
    assert default is not None and not default.skip_ip_check
    assert skip is not None and skip.skip_ip_check


@pytest.mark.parametrize(
    ("env", "https", "note"),
    [
        ({}, "nginx:443", ""),
        ({"HTTPS_PORT": "8443"}, "nginx:8443", ""),
        ({"HTTPS_PORT": ""}, "nginx:443", ""),
        ({"HTTPS_PORT": "8443", "ACME_VERIFY_HTTPS": "127.0.0.1"}, "127.0.0.1:8443", ""),
        ({"HTTPS_PORT": "8443", "ACME_VERIFY_HTTPS": "nginx:443"}, "nginx:443", ""),
        ({"ACME_VERIFY_HTTPS": ""}, "", ""),
        ({"NGINX_USE_PROXY_PROTOCOL": "y"}, "", "the HTTPS check is off"),
        ({"NGINX_USE_PROXY_PROTOCOL": "true"}, "nginx:443", ""),  # mailcow: not y/yes is no
        (
            {"NGINX_USE_PROXY_PROTOCOL": "yes", "ACME_VERIFY_HTTPS": "proxy:443"},
            "proxy:443",
            "as set",
        ),
    ],
)
def test_verify_https_follows_mailcows_nginx(env: dict[str, str], https: str, note: str) -> None:
    """ACME_VERIFY_HTTPS: unset is nginx on HTTPS_PORT, a host alone gets HTTPS_PORT, an explicit
    host:port stays; PROXY protocol turns the nginx check off, with a note for the start."""
    s = load_settings(BASE | env)
    assert s.verify_https == https
    assert (note in s.verify_https_note) if note else s.verify_https_note == ""


def test_proxy_protocol_flag_is_lenient() -> None:
    """NGINX_USE_PROXY_PROTOCOL=1 is read as no, with one config.lenient entry."""
    s = load_settings(BASE | {"NGINX_USE_PROXY_PROTOCOL": "1"})
    assert not s.nginx_use_proxy_protocol
    assert s.lenient_flags == (("NGINX_USE_PROXY_PROTOCOL", "1"),)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"HTTPS_PORT": "http"}, "HTTPS_PORT='http' is not valid: must be a port number"),
        ({"ACME_VERIFY_HTTPS": "nginx:x"}, "a host alone (port HTTPS_PORT)"),
    ],
)
def test_bad_https_settings(env: dict[str, str], needle: str) -> None:
    """A bad HTTPS_PORT or ACME_VERIFY_HTTPS stops with a message naming it."""
    with pytest.raises(ConfigError) as caught:
        load_settings(BASE | env)
    assert needle in str(caught.value)


def test_the_docker_timeout_is_a_duration_of_a_second_or_more() -> None:
    """ACME_DOCKER_TIMEOUT takes a duration (default 60 s); 0 is refused, naming the setting."""
    base = {"MAILCOW_HOSTNAME": "mail.example.org"}
    assert load_settings(base).acme_docker_timeout == 60
    assert load_settings(base | {"ACME_DOCKER_TIMEOUT": "2m"}).acme_docker_timeout == 120
    with pytest.raises(ConfigError, match="ACME_DOCKER_TIMEOUT"):
        load_settings(base | {"ACME_DOCKER_TIMEOUT": "0"})
