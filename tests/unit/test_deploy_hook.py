"""The deploy hook: called once per confirmed deploy with the certificates put in service, and
its command bounded in time, fed JSON on stdin and the names in its environment."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from structlog.testing import capture_logs

from acme_sidecar.core.report import Deployed, DeployedCert
from acme_sidecar.ops.deploy_hook import DeployHook, run_command
from acme_sidecar.shell.cycle import guarded_cycle
from tests.unit.fakes import World, cycle_policy

DEPLOYED = Deployed(
    (
        DeployedCert("mail.example.org", ("mail.example.org", "autoconfig.example.org"), "1f", "t"),
        DeployedCert("b.test", ("b.test",), "2a", "t"),
    ),
    default=True,
    services=("postfix:reloaded",),
)


def test_each_confirmed_deploy_calls_the_hook_once(tmp_path: Path) -> None:
    """A deploy that failed (Docker down) does not call the hook; the next cycle, which
    finishes it, calls it once with every certificate written, its names and its serial."""
    w = World(tmp_path / "ssl")
    calls: list[Deployed] = []
    deps = replace(w.deps(), deployed=calls.append)
    w.services.error = requests.ConnectionError("docker.sock")
    guarded_cycle(cycle_policy(), deps)
    assert calls == []
    w.services.error = None
    guarded_cycle(cycle_policy(), deps)
    guarded_cycle(cycle_policy(), deps)  # nothing written: no deploy, no call
    (done,) = calls
    stored = w.store.certs.load()
    assert len(done.certificates) == len(stored) == 4 and done.default
    for c in done.certificates:
        assert c.serial == f"{stored[c.certificate].serial:x}"
        assert c.names == stored[c.certificate].domains
    assert set(done.services) == {"postfix:restarted", "dovecot:restarted", "nginx:restarted"}


def test_command_gets_json_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command reads the JSON on stdin and the names and serials from its environment;
    the sidecar's secrets (DBPASS) are not passed on; success is one line."""
    monkeypatch.setenv("DBPASS", "s3cret")
    out = tmp_path / "out"
    command = f'cat > {out}.json; env > {out}.env; echo "token=abc" >/dev/null'
    hook = DeployHook(url="", command=command, hostname="mail.example.org", cert_dir=tmp_path)
    with capture_logs() as logs:
        hook(DEPLOYED)
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["event"] == "deployed" and data["hostname"] == "mail.example.org"
    assert [c["serial"] for c in data["certificates"]] == ["1f", "2a"]
    env = dict(
        line.split("=", 1)
        for line in out.with_suffix(".env").read_text().splitlines()
        if "=" in line
    )
    assert env["ACME_DEPLOY_CERTIFICATES"] == "mail.example.org b.test"
    assert env["ACME_DEPLOY_SERIALS"] == "1f 2a"
    assert env["ACME_DEPLOY_NAMES"] == "mail.example.org autoconfig.example.org b.test"
    assert "DBPASS" not in env
    assert [(e["event"], e["command"]) for e in logs] == [("deploy_hook.ran", "cat")]
    assert "token" not in json.dumps(logs)


def test_failing_and_hanging_commands_are_one_line(tmp_path: Path) -> None:
    """A command that fails is one line with its exit code and last output line; one that
    hangs (with a child holding its output) is killed with its children at its deadline."""
    fail = DeployHook(
        url="", command="echo nope; echo broken >&2; exit 3", hostname="h", cert_dir=tmp_path
    )
    hang = DeployHook(
        url="", command="sleep 30 & sleep 30", hostname="h", cert_dir=tmp_path,
        command_deadline=0.5,
    )  # fmt: skip
    with capture_logs() as logs:
        fail(DEPLOYED)
        hang(DEPLOYED)
    assert [e["event"] for e in logs] == ["deploy_hook.failed", "deploy_hook.failed"]
    assert logs[0]["exit"] == 3 and logs[0]["output"] == "broken"
    assert logs[1]["error"] == "no end within 0.5s: killed" and logs[1]["command"] == "sleep"


def test_unreachable_url_is_one_line_without_the_token(tmp_path: Path) -> None:
    """A URL that cannot be reached is one line showing its scheme and host only."""
    hook = DeployHook(
        url="http://127.0.0.1:9/hooks/t0ken", command="", hostname="h", cert_dir=tmp_path,
        url_deadline=2.0,
    )  # fmt: skip
    with capture_logs() as logs:
        hook(DEPLOYED)
    (line,) = logs
    assert line["event"] == "deploy_hook.failed" and line["url"] == "http://127.0.0.1:9/***"
    assert "t0ken" not in json.dumps(logs) + repr(hook)


def test_the_command_gets_no_credential_of_the_sidecar(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS-provider credentials in the container's environment (CF_Token), the database
    password and the rest of the sidecar's environment stay out of the command's; PATH stays."""
    monkeypatch.setenv("CF_Token", "cf-secret")
    monkeypatch.setenv("DBPASS", "db-secret")
    code, last = run_command("env | grep -c -e cf-secret -e db-secret; exit 0", b"{}", {}, 10)
    assert (code, last) == (0, "0")
    code, last = run_command('test -n "$PATH" && echo has-path', b"{}", {}, 10)
    assert (code, last) == (0, "has-path")


def test_a_loud_command_that_ignores_its_stdin_is_read_as_it_goes() -> None:
    """8 MiB of output is read as it comes (only the tail is kept) and a large stdin the
    command never reads does not block it: its last line is what is logged."""
    big = b"x" * (1024 * 1024)
    code, last = run_command("head -c 8388608 /dev/zero | tr '\\0' a; echo; echo done", big, {}, 30)
    assert (code, last) == (0, "done")


def test_a_command_that_sets_a_variable_is_logged_as_sh() -> None:
    """``TOKEN=... reload-proxy`` is logged as ``sh -c``, never its first word (the token)."""
    hook = DeployHook(
        url="",
        command="TOKEN=s3cret reload-proxy",
        hostname="mail.example.org",
        cert_dir=Path("/x"),
    )
    assert hook.program == "sh -c"
