"""Settings of metrics, notifications and the mailcow UI: defaults and clear refusals."""

from __future__ import annotations

import ipaddress

import pytest

from acme_sidecar.config.settings import load_settings
from acme_sidecar.core.errors import ConfigError

BASE = {"MAILCOW_HOSTNAME": "mail.example.org"}


def test_defaults_turn_everything_off() -> None:
    """No metrics port, no recipients, no webhook, no Redis; mailcow's empty values accepted."""
    s = load_settings(BASE | {"ACME_METRICS_PORT": "", "REDIS_SLAVEOF_PORT": "", "REDISPASS": ""})
    assert s.acme_metrics_port is None
    assert ipaddress.ip_address(s.acme_metrics_address) == ipaddress.IPv4Address(0)  # all
    assert s.acme_notify_email == () and s.acme_notify_webhook.get_secret_value() == ""
    assert s.acme_notify_smtp == "postfix:25" and s.acme_notify_expiry_days == 14
    assert s.redis_slaveof_port is None and s.acme_redis_port == 6379


def test_values_are_parsed() -> None:
    """Comma lists are split and de-duplicated; ports become numbers; [v6]:port works."""
    s = load_settings(
        BASE
        | {
            "ACME_METRICS_PORT": "9464",
            "ACME_METRICS_ADDRESS": "::",
            "ACME_NOTIFY_EMAIL": "a@example.org, b@example.org,a@example.org",
            "ACME_NOTIFY_SMTP": "[2001:db8::25]:587",
            "REDIS_SLAVEOF_IP": "192.0.2.7",
            "REDIS_SLAVEOF_PORT": "16379",
        }
    )
    assert s.acme_metrics_port == 9464 and s.acme_metrics_address == "::"
    assert s.acme_notify_email == ("a@example.org", "b@example.org")
    assert s.acme_notify_smtp == "[2001:db8::25]:587" and s.redis_slaveof_port == 16379


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"ACME_METRICS_PORT": "metrics"}, "ACME_METRICS_PORT='metrics' is not valid"),
        ({"ACME_METRICS_PORT": "70000"}, "ACME_METRICS_PORT='70000' is not valid: must be a port"),
        ({"ACME_METRICS_ADDRESS": "localhost"}, "ACME_METRICS_ADDRESS='localhost'"),
        ({"ACME_NOTIFY_EMAIL": "a@example.org,admin"}, "'admin' is not an e-mail address"),
        ({"ACME_NOTIFY_EMAIL": "root@localhost"}, "ACME_NOTIFY_EMAIL='root@localhost'"),
        ({"ACME_NOTIFY_FROM": "acme"}, "ACME_NOTIFY_FROM='acme' is not valid"),
        ({"ACME_NOTIFY_SMTP": "postfix"}, "ACME_NOTIFY_SMTP='postfix' is not valid: must be host"),
        ({"ACME_NOTIFY_SMTP": "postfix:smtp"}, "ACME_NOTIFY_SMTP='postfix:smtp'"),
        ({"ACME_NOTIFY_SMTP": "[mail]:25"}, "ACME_NOTIFY_SMTP='[mail]:25'"),
        ({"ACME_NOTIFY_WEBHOOK": "hooks.example.org/x"}, "ACME_NOTIFY_WEBHOOK='***'"),
        ({"ACME_NOTIFY_EXPIRY_DAYS": "0"}, "ACME_NOTIFY_EXPIRY_DAYS='0' is not valid"),
        ({"REDIS_SLAVEOF_IP": "192.0.2.7:6379"}, "REDIS_SLAVEOF_IP='192.0.2.7:6379'"),
        ({"REDIS_SLAVEOF_PORT": "x"}, "REDIS_SLAVEOF_PORT='x' is not valid"),
        ({"ACME_REDIS_PORT": "0"}, "ACME_REDIS_PORT='0' is not valid"),
    ],
)
def test_bad_values_are_refused_by_name(env: dict[str, str], needle: str) -> None:
    """Each bad value stops the start with the variable, the value and what is valid."""
    with pytest.raises(ConfigError) as caught:
        load_settings(BASE | env)
    assert needle in str(caught.value)


def test_the_redis_password_is_never_in_a_message() -> None:
    """A refusal elsewhere does not print REDISPASS."""
    with pytest.raises(ConfigError) as caught:
        load_settings(BASE | {"REDISPASS": "s3cret", "ACME_REDIS_PORT": "0"})
    assert "s3cret" not in str(caught.value)


def test_the_webhook_url_is_secret_and_masked_when_refused() -> None:
    """The webhook URL stays out of repr(); a refused one is echoed as scheme and host only."""
    url = "https://bot:t0ps3cret@hooks.example.org/x"
    s = load_settings(BASE | {"ACME_NOTIFY_WEBHOOK": url})
    assert s.acme_notify_webhook.get_secret_value() == url and "t0ps3cret" not in repr(s)
    with pytest.raises(ConfigError) as caught:
        load_settings(BASE | {"ACME_NOTIFY_WEBHOOK": "ftp://bot:t0ps3cret@hooks.example.org/x"})
    message = str(caught.value)
    assert "ACME_NOTIFY_WEBHOOK='ftp://hooks.example.org/***'" in message
    assert "t0ps3cret" not in message


def test_the_redis_password_is_secret() -> None:
    """REDISPASS is usable but never shown by repr() or str() of the settings."""
    s = load_settings(BASE | {"REDISPASS": "s3cret"})
    assert s.redispass.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s) and "s3cret" not in str(s)
