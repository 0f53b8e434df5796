"""Issue #8: mailcow's defaults work against the real Pebble (and the rest of the test world).

mailcow's own flags keep mailcow's truthiness (an unclear value is no, with one warning line),
its default ``ACME_ACCOUNT_EMAIL=me@example.com`` is not sent to the CA, a bad ``ADDITIONAL_SAN``
entry or contact is skipped with one warning while the daemon runs (issue #15 item 6), and an
order the CA refuses logs the CA's problem type and detail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.x509 import DNSName
from cryptography.x509 import SubjectAlternativeName as SAN

from tests.integration.sidecar import HOST, Daemon, base_env, cert_dirs, leaf, seed, sidecar
from tests.world import World


@pytest.fixture
def unreachable(world: World) -> Iterator[list[str]]:
    """Names pointed at 127.0.0.2 (nothing listens there); reset to the default afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        world.dns.clear_a(name)


def test_mailcow_default_account_email_gives_certificates(world: World, volume: Path) -> None:
    """ACME_ACCOUNT_EMAIL=me@example.com (mailcow's default) registers without a contact."""
    seed(world, ["one.test"])
    run = sidecar(base_env(world, volume) | {"ACME_ACCOUNT_EMAIL": "me@example.com"}, "once")
    assert run.code == 0, run.stderr
    assert HOST in cert_dirs(volume)
    assert leaf(volume / HOST / "cert.pem") is not None
    skipped = run.named("account.contact_skipped")
    assert len(skipped) == 1 and skipped[0]["email"] == "me@example.com" and skipped[0]["reason"]
    [registered] = run.named("account.registered")
    assert registered["email"] is None


@pytest.mark.parametrize("value", ["true", "maybe"])
def test_unclear_sni_flag_is_san_mode_with_a_warning(
    world: World, volume: Path, value: str
) -> None:
    """ENABLE_SSL_SNI=true or =maybe is read as no (SAN mode), with one config.lenient line."""
    seed(world, ["one.test", "two.test"])
    run = sidecar(base_env(world, volume) | {"ENABLE_SSL_SNI": value}, "once")
    assert run.code == 0, run.stderr
    assert list(cert_dirs(volume)) == [HOST]  # SAN mode: one certificate for every name
    assert "autodiscover.two.test" in (volume / HOST / "domains").read_text().split()
    lenient = run.named("config.lenient")
    assert len(lenient) == 1
    assert lenient[0]["variable"] == "ENABLE_SSL_SNI" and lenient[0]["value"] == value
    assert lenient[0]["reading"] == "no"


def test_bad_mailcow_values_are_skipped_and_the_daemon_runs(world: World, volume: Path) -> None:
    """ADDITIONAL_SAN=1.2.3.4,a.*.b,mail.example.org and ACME_ACCOUNT_EMAIL=root@localhost
    (mailcow accepts both): `run` starts, logs one config.skipped warning per bad value naming
    it and what is valid, registers the account without a contact, and Pebble issues the
    hostname's certificate with the good names."""
    seed(world, ["one.test"])
    env = base_env(world, volume) | {
        "ADDITIONAL_SAN": "1.2.3.4,a.*.b,mail.example.org",
        "ACME_ACCOUNT_EMAIL": "root@localhost",
    }
    daemon = Daemon(env)
    try:
        stored = daemon.wait_for("cert.stored", timeout=120)
        daemon.wait_for("cycle.done")
    finally:
        code = daemon.stop()
    assert code == 0
    events = [json.loads(line) for line in daemon.seen if line.startswith("{")]
    skipped = [e for e in events if e["event"] == "config.skipped"]
    assert [(e["variable"], e["value"]) for e in skipped] == [
        ("ADDITIONAL_SAN", "1.2.3.4"),
        ("ADDITIONAL_SAN", "a.*.b"),
        ("ACME_ACCOUNT_EMAIL", "root@localhost"),
    ]
    assert all(e["level"] == "warning" for e in skipped)
    assert "host name (mail.example.org)" in skipped[0]["valid"]
    assert "e-mail address" in skipped[2]["valid"] and "no contact" in skipped[2]["action"]
    [registered] = [e for e in events if e["event"] == "account.registered"]
    assert registered["email"] is None
    assert stored["certificate"] == HOST
    names = (volume / HOST / "domains").read_text().split()
    assert "mail.example.org" in names and names[0] == HOST
    assert not {"1.2.3.4", "a.*.b"} & set(names)
    sans = leaf(volume / HOST / "cert.pem").extensions.get_extension_for_class(SAN).value
    assert "mail.example.org" in sans.get_values_for_type(DNSName)


def test_invalid_acme_setting_still_exits_2(world: World, volume: Path) -> None:
    """An ACME_* setting stays strict: ACME_MAX_NAMES=abc stops with exit 2 and its message."""
    run = sidecar(base_env(world, volume) | {"ACME_MAX_NAMES": "abc"}, "once")
    assert run.code == 2 and "ACME_MAX_NAMES='abc' is not valid" in run.stderr


def test_refused_order_logs_the_cas_problem_and_detail(
    world: World, volume: Path, unreachable: list[str]
) -> None:
    """Names Pebble cannot validate (nothing listens at their address) are refused by Pebble;
    the name.rejected lines and the order.failed line carry Pebble's problem type and its own
    detail text, not only our summary. (Pebble 2.4 does not check CAA, so a CAA record cannot
    make it refuse a name.)"""
    seed(world, ["one.test", "two.test"])
    for name in ("autoconfig.two.test", "autodiscover.two.test"):
        world.dns.clear_a(name)
        world.dns.add_a(name, ["127.0.0.2"])
        unreachable.append(name)
    env = base_env(world, volume) | {
        "ENABLE_SSL_SNI": "y",  # two.test's names make a certificate of their own
        "SKIP_IP_CHECK": "y",  # our own checks would skip these names before ordering
        "SKIP_HTTP_VERIFICATION": "y",
    }
    run = sidecar(env, "once")
    assert run.code == 1, run.stderr  # two.test's certificate is missing
    unvalidated = run.named("name.unvalidated") + run.named("name.rejected")
    assert {e["name"] for e in unvalidated} == set(unreachable), run.stderr
    for line in unvalidated:
        assert line["problem"] == "connection", line
        assert line["detail"] and "127.0.0.2" in line["detail"], line
    [failed] = run.named("order.failed")
    assert failed["problem"] == "connection", failed
    assert all(f"{name}: " in failed["detail"] for name in unreachable), failed
    assert "127.0.0.2" in failed["detail"]
    assert HOST in cert_dirs(volume)
