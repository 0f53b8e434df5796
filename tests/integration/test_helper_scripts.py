"""Issue #4: the helper scripts, run for real against the test world."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.integration.sidecar import HOST, leaf, seed, sidecar
from tests.integration.stack import Stack
from tests.world import World
from tests.world.proc import free_port

SCRIPTS = Path(__file__).resolve().parents[2] / "helper-scripts"


def test_generate_caa_record_names_our_account(world: World, tmp_path: Path) -> None:
    """The CAA record carries the accounturi of the account in acme/account.pem."""
    from tests.integration.sidecar import base_env

    seed(world, ["one.test"])
    volume = tmp_path / "ssl"
    run = sidecar(base_env(world, volume), "once")
    assert run.code == 0, run.stderr
    uri = run.named("account.registered")[0]["uri"]
    out = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "generate_caa_record.py"),
            "--account-key",
            str(volume / "acme" / "account.pem"),
            "--directory-url",
            world.pebble.directory_url,
            "--ca-bundle",
            str(world.pebble.ca_bundle),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert f"accounturi={uri}" in out.stdout and out.stdout.count("issue 128") == 1


def test_expiry_dates_per_service_and_name(world: World, stack: Stack) -> None:
    """expiry-dates.sh prints the served not-after for every service and SNI name."""
    seed(world, ["one.test"])
    run = sidecar(stack.env | {"ENABLE_SSL_SNI": "y"}, "once")
    assert run.code == 0, run.stderr
    for container in stack.containers.values():
        world.docker.wait_ready(container.id)
    closed = str(free_port())
    env = {
        "PATH": os.environ["PATH"],
        "CONNECT_TO": "127.0.0.1",
        "SMTP_PORT": str(stack.ports["postfix-mailcow"]),
        "IMAP_PORT": str(stack.ports["dovecot-mailcow"]),
        "HTTPS_PORT": str(stack.ports["nginx-mailcow"]),
        "SUBMISSION_PORT": closed,
        "SMTPS_PORT": closed,
        "IMAPS_PORT": closed,
    }
    out = subprocess.run(
        ["bash", str(SCRIPTS / "expiry-dates.sh"), HOST, str(stack.volume)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
        cwd=stack.volume,
    )
    assert out.returncode == 0, out.stderr
    host_date = leaf(stack.volume / HOST / "cert.pem").not_valid_after_utc.strftime("%b %e")
    domain_date = leaf(stack.volume / "autodiscover.one.test" / "cert.pem")
    lines = out.stdout.splitlines()
    assert "autodiscover.one.test" in lines
    served = [line for line in lines if line.strip().startswith(("Postfix", "Dovecot", "Nginx"))]
    answered = [line for line in served if "no answer" not in line]
    assert len(answered) == 6, out.stdout  # 3 services x 2 names; closed ports: "no answer"
    assert all(host_date.split()[0] in line for line in answered)
    assert domain_date.serial_number != leaf(stack.volume / HOST / "cert.pem").serial_number


def test_build_base_image_needs_an_apt_source(tmp_path: Path) -> None:
    """build-base-image.sh on a machine whose apt has no source for the suite: one line saying
    what to configure, exit 1, and no fallback mirror tried (issue #15)."""
    sources = tmp_path / "sources.list.d"
    sources.mkdir()
    apt_config = tmp_path / "apt.conf"
    apt_config.write_text(
        f'Dir::Etc::sourcelist "/dev/null";\nDir::Etc::sourceparts "{sources}";\n'
    )
    env = {"PATH": os.environ["PATH"], "APT_CONFIG": str(apt_config), "SUITE": "bookworm"}
    out = subprocess.run(
        ["sh", str(SCRIPTS / "build-base-image.sh"), "acme-test-unused:tag"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert out.returncode == 1, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, lines
    assert "no Debian mirror for bookworm in this host's apt sources" in lines[0]
    assert "/etc/apt/sources.list.d/" in lines[0] and "MIRROR=" in lines[0]
