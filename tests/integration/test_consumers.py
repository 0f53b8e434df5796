"""The TLS consumers behave like mailcow's Postfix, Dovecot and nginx towards certificates.

A reload re-reads the files of the SNI map built at start (no new names, no restart); only
a restart picks up new certificate directories. The served certificate is read back over
SMTP/IMAP STARTTLS and direct HTTPS with SNI.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from docker.models.containers import Container

from tests.certs import write_pair
from tests.world.docker import DockerWorld
from tests.world.proc import free_port
from tests.world.tlsprobe import served_serial

PROJECT = "consumertest"
# service, kind, reload command (what acme-mailcow runs through `docker exec`)
CONSUMERS = (
    ("postfix-mailcow", "smtp", ["postfix", "reload"]),
    ("dovecot-mailcow", "imap", ["doveadm", "reload"]),
    ("nginx-mailcow", "https", ["nginx", "-s", "reload"]),
)


@dataclass
class Consumer:
    """One running consumer container."""

    service: str
    kind: str
    port: int
    reload_cmd: list[str]
    container: Container


@dataclass
class Stack:
    """Three consumers sharing one certificate directory."""

    docker: DockerWorld
    cert_dir: Path
    serials: dict[str, int]
    consumers: list[Consumer]

    def reload_all(self) -> None:
        """Run each container's reload command and wait until it was handled."""
        for consumer in self.consumers:
            before = self.docker.reloads(consumer.container.id)
            code, out = consumer.container.exec_run(consumer.reload_cmd)
            assert code == 0, out
            self.docker.wait_reloads(consumer.container.id, before + 1)

    def served(self, name: str | None) -> set[int]:
        """The serials the three consumers serve for SNI ``name``."""
        return {served_serial(c.kind, c.port, name) for c in self.consumers}


@pytest.fixture
def stack(docker_world: DockerWorld, consumer_image: str, tmp_path: Path) -> Iterator[Stack]:
    """Default pair + ``alpha.test`` and ``beta.test`` directories, three consumers."""
    cert_dir = tmp_path / "ssl"
    serials = {
        "default": write_pair(cert_dir, ["mail.example.test"], domains_file=False),
        "alpha": write_pair(cert_dir / "alpha.test", ["alpha.test", "www.alpha.test"]),
        "beta": write_pair(cert_dir / "beta.test", ["beta.test"]),
    }
    consumers = []
    try:
        for service, kind, reload_cmd in CONSUMERS:
            port = free_port()
            container = docker_world.run_consumer(PROJECT, service, kind, port, cert_dir)
            consumers.append(Consumer(service, kind, port, reload_cmd, container))
        yield Stack(docker_world, cert_dir, serials, consumers)
    finally:
        for consumer in consumers:
            consumer.container.remove(force=True)


def test_labels_and_image(stack: Stack, consumer_image: str) -> None:
    for consumer in stack.consumers:
        consumer.container.reload()
        assert consumer.container.name == f"{PROJECT}-{consumer.service}-1"
        assert consumer.container.labels == {
            "com.docker.compose.project": PROJECT,
            "com.docker.compose.service": consumer.service,
            "com.docker.compose.container-number": "1",
        }
        assert consumer.container.attrs["Config"]["Image"] == consumer_image
        assert consumer.container.status == "running"


def test_sni_map(stack: Stack) -> None:
    for name, key in [
        ("alpha.test", "alpha"),
        ("www.alpha.test", "alpha"),
        ("WWW.Alpha.Test", "alpha"),
        ("beta.test", "beta"),
        ("unknown.test", "default"),
        ("mail.example.test", "default"),
        (None, "default"),
    ]:
        assert stack.served(name) == {stack.serials[key]}, name


def test_reload_serves_new_files_without_restart(stack: Stack) -> None:
    started = {c.service: stack.docker.started_at(c.container.id) for c in stack.consumers}
    new_alpha = write_pair(stack.cert_dir / "alpha.test", ["alpha.test", "www.alpha.test"])
    new_default = write_pair(stack.cert_dir, ["mail.example.test"], domains_file=False)
    # files replaced but no reload yet: the old certificates are still served
    assert stack.served("alpha.test") == {stack.serials["alpha"]}
    assert stack.served(None) == {stack.serials["default"]}

    stack.reload_all()

    assert stack.served("alpha.test") == {new_alpha}
    assert stack.served("www.alpha.test") == {new_alpha}
    assert stack.served(None) == {new_default}
    assert stack.served("beta.test") == {stack.serials["beta"]}
    for consumer in stack.consumers:
        assert stack.docker.started_at(consumer.container.id) == started[consumer.service]
        assert stack.docker.reloads(consumer.container.id) == 1


def test_new_directory_needs_restart(stack: Stack) -> None:
    gamma = write_pair(stack.cert_dir / "gamma.test", ["gamma.test"])
    stack.reload_all()
    assert stack.served("gamma.test") == {stack.serials["default"]}

    for consumer in stack.consumers:
        before = stack.docker.started_at(consumer.container.id)
        consumer.container.restart(timeout=5)
        stack.docker.wait_ready(consumer.container.id)
        assert stack.docker.started_at(consumer.container.id) != before
        assert stack.docker.reloads(consumer.container.id) == 0  # /run is a fresh tmpfs

    assert stack.served("gamma.test") == {gamma}
    assert stack.served("alpha.test") == {stack.serials["alpha"]}


def test_removed_directory_kept_until_restart(stack: Stack) -> None:
    shutil.rmtree(stack.cert_dir / "beta.test")
    stack.reload_all()
    assert stack.served("beta.test") == {stack.serials["beta"]}

    for consumer in stack.consumers:
        consumer.container.restart(timeout=5)
        stack.docker.wait_ready(consumer.container.id)
    assert stack.served("beta.test") == {stack.serials["default"]}


def test_unreadable_pair_keeps_old_context_on_reload(stack: Stack) -> None:
    (stack.cert_dir / "alpha.test" / "key.pem").write_text("not a key\n")
    stack.reload_all()
    assert stack.served("alpha.test") == {stack.serials["alpha"]}


def test_reload_commands_reject_other_arguments(stack: Stack) -> None:
    for consumer in stack.consumers:
        code, _ = consumer.container.exec_run([consumer.reload_cmd[0], "stop"])
        assert code == 1
        assert stack.docker.reloads(consumer.container.id) == 0


def test_every_sighup_is_one_reload(stack: Stack) -> None:
    consumer = stack.consumers[0]
    for _ in range(10):
        consumer.container.kill(signal="SIGHUP")
    stack.docker.wait_reloads(consumer.container.id, 10)
    assert stack.docker.reloads(consumer.container.id) == 10
    assert served_serial(consumer.kind, consumer.port, "beta.test") == stack.serials["beta"]


@pytest.fixture
def postfix(docker_world: DockerWorld, consumer_image: str, tmp_path: Path) -> Iterator[Stack]:
    """A Postfix-like consumer serving SNI names from copies made at start (``postmap -F``)."""
    cert_dir = tmp_path / "ssl"
    serials = {
        "default": write_pair(cert_dir, ["mail.example.test"], domains_file=False),
        "alpha": write_pair(cert_dir / "alpha.test", ["alpha.test"]),
    }
    port = free_port()
    container = docker_world.run_consumer(
        PROJECT, "postfix-mailcow", "smtp", port, cert_dir, sni_snapshot=True
    )
    reload_cmd = ["postfix", "-c", "/opt/postfix/conf", "reload"]
    consumer = Consumer("postfix-mailcow", "smtp", port, reload_cmd, container)
    try:
        yield Stack(docker_world, cert_dir, serials, [consumer])
    finally:
        container.remove(force=True)


def test_postfix_reload_keeps_sni_copies_until_postmap(postfix: Stack) -> None:
    """Like mailcow's Postfix: a reload serves the renewed default pair but the SNI copies made
    at start; ``postmap -F`` then a reload serves the renewed SNI certificate; a name new to
    the directory still gets the default (only a restart rebuilds sni.map)."""
    container = postfix.consumers[0].container
    new_alpha = write_pair(postfix.cert_dir / "alpha.test", ["alpha.test", "new.alpha.test"])
    new_default = write_pair(postfix.cert_dir, ["mail.example.test"], domains_file=False)
    postfix.reload_all()
    assert postfix.served(None) == {new_default}
    assert postfix.served("alpha.test") == {postfix.serials["alpha"]}

    code, out = container.exec_run(["postmap", "-F", "hash:/opt/postfix/conf/sni.map"])
    assert code == 0, out
    postfix.reload_all()
    assert postfix.served("alpha.test") == {new_alpha}
    assert postfix.served("new.alpha.test") == {new_default}
    assert postfix.docker.events(container.id) == {"start": 1, "reload": 2, "postmap": 1}

    container.restart(timeout=5)
    postfix.docker.wait_ready(container.id)
    assert postfix.served("new.alpha.test") == {new_alpha}
    assert postfix.docker.events(container.id) == {"start": 2, "reload": 2, "postmap": 1}


def test_postmap_fails_for_a_removed_directory(postfix: Stack) -> None:
    """A directory gone since start makes ``postmap -F`` fail, as the real one does."""
    container = postfix.consumers[0].container
    shutil.rmtree(postfix.cert_dir / "alpha.test")
    code, out = container.exec_run(["postmap", "-F", "hash:/opt/postfix/conf/sni.map"])
    assert code == 1 and b"postmap: fatal" in out
    code, _ = container.exec_run(["postmap", "hash:/opt/postfix/conf/sni.map"])
    assert code == 1
