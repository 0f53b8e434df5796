"""Issue #2: the first certificate end to end against Pebble, MariaDB, DNS, nginx and Docker."""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.integration.sidecar import HOST, PROJECT, Daemon, Run, base_env, sidecar, snapshot
from tests.world import World

SERVICES = ("postfix-mailcow", "dovecot-mailcow", "nginx-mailcow")
EXPECTED = (
    HOST,
    "autoconfig.alpha.test",
    "autoconfig.beta.test",
    "autodiscover.alpha.test",
    "autodiscover.beta.test",
)


@dataclass
class Scenario:
    """Two ``once`` runs over the same volume, with container start times around them."""

    env: dict[str, str]
    cert_dir: Path
    first: Run
    second: Run
    started: dict[str, str]
    after_first: dict[str, str]
    after_second: dict[str, str]
    files_after_first: dict[str, tuple[int, bytes]]
    files_after_second: dict[str, tuple[int, bytes]]
    containers: dict[str, Any]


@pytest.fixture(scope="module")
def scenario(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """Seed the database and DNS, then run ``once`` twice."""
    db = world.mariadb
    db.reset()
    for domain, active, backupmx in [
        ("alpha.test", 1, 0),
        ("beta.test", 1, 0),
        ("sleepy.test", 0, 0),
        ("backup.test", 1, 1),
        ("elsewhere.test", 1, 0),
    ]:
        db.execute(
            "INSERT INTO domain (domain, active, backupmx) VALUES (%s, %s, %s)",
            (domain, active, backupmx),
        )
    db.execute("INSERT INTO domain (domain) VALUES (%s)", ("bad domain;rm -rf.test",))
    for name in ("autodiscover.elsewhere.test", "autoconfig.elsewhere.test"):
        world.dns.add_a(name, ["198.51.100.7"])
    containers = {s: world.docker.run_service(PROJECT, s) for s in SERVICES}
    containers["other"] = world.docker.run_service("otherproject", "postfix-mailcow")

    def times() -> dict[str, str]:
        return {k: world.docker.started_at(c.id) for k, c in containers.items()}

    cert_dir = tmp_path_factory.mktemp("ssl")
    env = base_env(world, cert_dir)
    started = times()
    time.sleep(1.1)  # StartedAt has sub-second precision, but keep the runs clearly apart
    first = sidecar(env, "once")
    after_first = times()
    files_first = snapshot(cert_dir)
    second = sidecar(env, "once")
    yield Scenario(
        env,
        cert_dir,
        first,
        second,
        started,
        after_first,
        times(),
        files_first,
        snapshot(cert_dir),
        containers,
    )
    for name in ("autodiscover.elsewhere.test", "autoconfig.elsewhere.test"):
        world.dns.clear_a(name)
    for c in containers.values():
        c.remove(force=True)


def test_first_run_issues_one_certificate(scenario: Scenario) -> None:
    """`once` from an empty volume exits 0 with one certificate with exactly the right names."""
    assert scenario.first.code == 0, scenario.first.stderr
    cert_dir = scenario.cert_dir
    assert (cert_dir / HOST / "domains").read_text() == " ".join(EXPECTED)
    leaf = x509.load_pem_x509_certificates((cert_dir / HOST / "cert.pem").read_bytes())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(EXPECTED)
    dirs = sorted(p.name for p in cert_dir.iterdir() if (p / "domains").exists())
    assert dirs == [HOST]


def test_chain_verifies_against_pebble_root(scenario: Scenario, world: World) -> None:
    """The stored full chain verifies up to Pebble's root."""
    chain = x509.load_pem_x509_certificates((scenario.cert_dir / HOST / "cert.pem").read_bytes())
    root = x509.load_pem_x509_certificate(world.pebble.root_pem())
    assert len(chain) >= 2
    for child, parent in zip(chain, [*chain[1:], root], strict=True):
        child.verify_directly_issued_by(parent)


def test_key_matches_and_is_private(scenario: Scenario) -> None:
    """key.pem matches cert.pem, is mode 0600, and the top-level pair is the same pair."""
    d = scenario.cert_dir / HOST
    key = serialization.load_pem_private_key((d / "key.pem").read_bytes(), None)
    leaf = x509.load_pem_x509_certificates((d / "cert.pem").read_bytes())[0]
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert leaf.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)
    assert stat.S_IMODE((d / "key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((scenario.cert_dir / "key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((scenario.cert_dir / "acme" / "account.pem").stat().st_mode) == 0o600
    assert (scenario.cert_dir / "cert.pem").read_bytes() == (d / "cert.pem").read_bytes()
    assert (scenario.cert_dir / "key.pem").read_bytes() == (d / "key.pem").read_bytes()
    assert (scenario.cert_dir / "key.pem").read_bytes() == (
        scenario.cert_dir / "acme" / "key.pem"
    ).read_bytes()


def test_challenge_files_removed(scenario: Scenario, world: World) -> None:
    """No challenge or self-check file is left in the webroot."""
    assert list(world.nginx.webroot.iterdir()) == []


def test_second_run_changes_nothing(scenario: Scenario) -> None:
    """A second `once` orders nothing, writes nothing and restarts nothing."""
    run = scenario.second
    assert run.code == 0, run.stderr
    assert run.named("order.created") == []
    assert run.named("service.restarted") == []
    assert scenario.files_after_second == scenario.files_after_first
    assert scenario.after_second == scenario.after_first
    assert [e["reason"] for e in run.named("cert.keep")]


def test_name_pointing_elsewhere_is_skipped_with_reason(scenario: Scenario) -> None:
    """A name whose A record points elsewhere is left out; the log names answer and expectation."""
    skipped = {e["name"]: e["reason"] for e in scenario.first.named("name.skipped")}
    reason = skipped["autodiscover.elsewhere.test"]
    assert "198.51.100.7" in reason and "127.0.0.1" in reason
    assert "autoconfig.elsewhere.test" in skipped


def test_inactive_backup_and_bad_domains_never_appear(scenario: Scenario) -> None:
    """Inactive and backup-MX domains are never candidates; a bad row is skipped with a line."""
    text = scenario.first.stderr
    assert "sleepy.test" not in text and "backup.test" not in text
    bad = scenario.first.named("domain.skipped")
    assert bad and "bad domain" in bad[0]["value"]


def test_containers_restarted_once_then_not(scenario: Scenario) -> None:
    """The three labelled containers restart once after the first run, not after the second;
    the same service in another compose project is never touched."""
    for service in SERVICES:
        assert scenario.after_first[service] != scenario.started[service], service
        assert scenario.after_second[service] == scenario.after_first[service], service
    assert scenario.after_first["other"] == scenario.started["other"]
    assert scenario.after_second["other"] == scenario.started["other"]
    restarted = [e["service"] for e in scenario.first.named("service.restarted")]
    assert sorted(restarted) == sorted(SERVICES)


def test_status_json_lists_the_certificate(scenario: Scenario) -> None:
    """`status --json` shows the certificate with names, issuer and renewal time."""
    run = sidecar(scenario.env, "status", "--json")
    assert run.code == 0, run.stderr
    import json

    (cert,) = json.loads(run.stdout)["certificates"]
    assert cert["name"] == HOST and cert["domains"] == list(EXPECTED)
    assert "Pebble" in cert["issuer"] and cert["renew_at"] < cert["not_after"]


def test_check_is_a_dry_run(scenario: Scenario) -> None:
    """`check` prints verdicts and the plan and changes nothing."""
    before = snapshot(scenario.cert_dir)
    run = sidecar(scenario.env, "check")
    assert run.code == 0, run.stderr
    assert "autodiscover.elsewhere.test" in run.stdout and "keep" in run.stdout
    assert run.named("order.created") == []
    assert snapshot(scenario.cert_dir) == before


@pytest.mark.parametrize(
    ("variable", "value"),
    [("ACME_HTTP_VERIFY_PORT", "eighty"), ("ACME_MAX_NAMES", "abc"), ("MAILCOW_HOSTNAME", "x")],
)
def test_bad_setting_exits_2(world: World, tmp_path: Path, variable: str, value: str) -> None:
    """A bad setting exits 2 with one message naming the variable, the value and what is valid."""
    env = base_env(world, tmp_path) | {variable: value}
    run = sidecar(env, "once")
    assert run.code == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{variable}={value!r}" in lines[0] and "Traceback" not in run.stderr


def test_database_unreachable_is_a_log_line_and_retry(world: World, tmp_path: Path) -> None:
    """An unreachable database gives one clear log line (after quiet retries), no traceback."""
    env = base_env(world, tmp_path) | {"DB_SOCKET": str(tmp_path / "nowhere.sock")}
    run = sidecar(env, "once")
    assert run.code == 1
    assert "Traceback" not in run.stderr
    [line] = run.named("db.unreachable")
    assert line["level"] == "error" and line["action"] == "keeping current certificates"
    assert not (tmp_path / "cert.pem").exists()


def test_run_stops_on_sigterm(world: World, tmp_path: Path) -> None:
    """`run` sleeps after its cycle and SIGTERM ends it at once with exit 0; so it does while
    it waits for the database at start."""
    env = base_env(world, tmp_path) | {"DB_SOCKET": str(tmp_path / "nowhere.sock")}
    daemon = Daemon(env | {"ACME_DB_WAIT": "1s"})
    daemon.wait_for("cycle.done")
    sent = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - sent < 3
    waiting = Daemon(env)
    waiting.wait_for("start.waiting")
    sent = time.monotonic()
    assert waiting.stop() == 0
    assert time.monotonic() - sent < 3
