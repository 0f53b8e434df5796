"""Issue #8: the dockerapi adapter against a small fake dockerapi (plain HTTP on loopback)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from structlog.testing import capture_logs

from acme_sidecar.adapters.dockerapi import DockerapiServices
from acme_sidecar.config.settings import load_settings
from acme_sidecar.core.consumers import Act, Reaction, restart_all
from acme_sidecar.core.errors import ConfigError, ServiceError
from tests.world.proc import free_port

SERVICES = ("postfix-mailcow", "dovecot-mailcow", "nginx-mailcow", "sogo-mailcow")
RELOAD = Reaction(Act.RELOAD, "certificate contents changed")


def _restart(*services: str) -> dict[str, Reaction]:
    return dict(restart_all(services, "a certificate directory was added"))


def _doc(cid: str, project: str, service: str, *, running: bool = True) -> dict[str, Any]:
    labels = {"com.docker.compose.project": project, "com.docker.compose.service": service}
    return {
        "Id": cid,
        "Name": f"/{project}-{service}-1",
        "State": {"Running": running},
        "Config": {"Labels": labels},
    }


class FakeDockerapi:
    """Answers like mailcow's dockerapi from a fixed listing; records every call."""

    def __init__(self) -> None:
        self.containers: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, Any]] = []
        self.danger: set[str] = set()  # actions ("exec", "restart") that answer danger
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

            def do_GET(self) -> None:
                owner.calls.append(("GET", self.path, None))
                self._answer(owner.containers)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw) if raw else None
                owner.calls.append(("POST", self.path, body))
                action = self.path.rsplit("/", 1)[-1]
                kind = "danger" if action in owner.danger else "success"
                self._answer({"type": kind, "msg": "fake"})

            def _answer(self, answer: Any) -> None:
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def posts(self) -> list[tuple[str, Any]]:
        """``(path, body)`` of every POST."""
        return [(path, body) for method, path, body in self.calls if method == "POST"]


@pytest.fixture
def fake() -> Iterator[FakeDockerapi]:
    api = FakeDockerapi()
    thread = threading.Thread(target=api.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield api
    api.server.shutdown()
    api.server.server_close()


def test_only_exact_labels_are_touched(fake: FakeDockerapi) -> None:
    """Only running containers whose project and service labels match exactly are restarted;
    another project (``acmetest2``), a longer service name and a stopped one are not."""
    fake.containers = {
        "aaa1": _doc("aaa1", "acmetest", "postfix-mailcow"),
        "bbb2": _doc("bbb2", "acmetest2", "postfix-mailcow"),
        "ccc3": _doc("ccc3", "acmetest", "postfix-mailcow-old"),
        "ddd4": _doc("ddd4", "acmetest", "postfix-mailcow", running=False),
        "eee5": _doc("eee5", "acme", "postfix-mailcow"),
    }
    api = DockerapiServices("AcmeTest", ["postfix-mailcow"], url=fake.url)
    assert api.apply(_restart("postfix-mailcow")) == {"postfix-mailcow": "restarted"}
    assert fake.posts() == [("/containers/aaa1/restart", None)]


def test_reload_uses_the_task_of_the_service(fake: FakeDockerapi) -> None:
    """A reload execs dockerapi's reload task named by the service; a service without one
    (sogo) is restarted."""
    fake.containers = {f"c{i}": _doc(f"c{i}", "acmetest", s) for i, s in enumerate(SERVICES)}
    api = DockerapiServices("acmetest", SERVICES, url=fake.url)
    with capture_logs() as logs:
        done = api.apply(dict.fromkeys(SERVICES, RELOAD))
    assert done == {
        "postfix-mailcow": "reloaded",
        "dovecot-mailcow": "reloaded",
        "nginx-mailcow": "reloaded",
        "sogo-mailcow": "restarted",
    }
    assert fake.posts() == [
        ("/containers/c0/exec", {"cmd": "reload", "task": "postfix"}),
        ("/containers/c1/exec", {"cmd": "reload", "task": "dovecot"}),
        ("/containers/c2/exec", {"cmd": "reload", "task": "nginx"}),
        ("/containers/c3/restart", None),
    ]
    reloaded = [e for e in logs if e["event"] == "service.reloaded"]
    assert [(e["container"], e["action"], e["reason"]) for e in reloaded] == [
        (f"acmetest-{s}-1", "reload", "certificate contents changed") for s in SERVICES[:3]
    ]


def test_actions_per_service(fake: FakeDockerapi) -> None:
    """Each service gets its own action; ``none`` leaves it untouched, and a map rebuild (which
    dockerapi cannot run) is a restart saying why."""
    fake.containers = {f"c{i}": _doc(f"c{i}", "acmetest", s) for i, s in enumerate(SERVICES)}
    api = DockerapiServices("acmetest", SERVICES, url=fake.url)
    assert api.can_rebuild_map is False
    actions = {
        "postfix-mailcow": Reaction(Act.REBUILD, "sni.map holds copies"),
        "dovecot-mailcow": RELOAD,
        "nginx-mailcow": Reaction(Act.NONE, "nothing it serves changed"),
    }
    with capture_logs() as logs:
        done = api.apply(actions)
    assert done == {"postfix-mailcow": "restarted", "dovecot-mailcow": "reloaded"}
    assert fake.posts() == [
        ("/containers/c0/restart", None),
        ("/containers/c1/exec", {"cmd": "reload", "task": "dovecot"}),
    ]
    restarted = [e for e in logs if e["event"] == "service.restarted"]
    assert [e["reason"] for e in restarted] == [
        "sni.map holds copies; dockerapi cannot run postmap"
    ]


def test_danger_reload_falls_back_to_restart(fake: FakeDockerapi) -> None:
    """A reload answered ``danger`` (with HTTP 200) is followed by a restart."""
    fake.containers = {"c1": _doc("c1", "acmetest", "dovecot-mailcow")}
    fake.danger = {"exec"}
    api = DockerapiServices("acmetest", ["dovecot-mailcow"], url=fake.url)
    with capture_logs() as logs:
        assert api.apply({"dovecot-mailcow": RELOAD}) == {"dovecot-mailcow": "restarted"}
    assert [p for p, _ in fake.posts()] == ["/containers/c1/exec", "/containers/c1/restart"]
    assert [e["reason"] for e in logs if e["event"] == "service.restarted"] == [
        "reload did not work"
    ]


def test_danger_restart_is_a_service_error(fake: FakeDockerapi) -> None:
    """A restart answered ``danger`` fails the call, naming the service, after the others."""
    fake.containers = {
        "c1": _doc("c1", "acmetest", "postfix-mailcow"),
        "c2": _doc("c2", "acmetest", "nginx-mailcow"),
    }
    fake.danger = {"restart"}
    api = DockerapiServices("acmetest", ["postfix-mailcow", "nginx-mailcow"], url=fake.url)
    with capture_logs() as logs, pytest.raises(ServiceError, match="postfix-mailcow"):
        api.apply(_restart("postfix-mailcow", "nginx-mailcow"))
    assert len(fake.posts()) == 2
    assert [e["service"] for e in logs if e["event"] == "service.failed"] == [
        "postfix-mailcow",
        "nginx-mailcow",
    ]


def test_missing_service_is_logged_not_failed(fake: FakeDockerapi) -> None:
    """A service without a container is ``service.not_found``, not an error."""
    api = DockerapiServices("acmetest", ["postfix-mailcow"], url=fake.url)
    with capture_logs() as logs:
        assert api.apply(_restart("postfix-mailcow")) == {}
    assert [e["event"] for e in logs] == ["service.not_found"]


def test_connection_refused_is_a_service_error() -> None:
    """Nothing listening is a ``ServiceError`` naming mailcow's dockerapi and the URL."""
    url = f"https://127.0.0.1:{free_port()}"
    api = DockerapiServices("acmetest", ["postfix-mailcow"], url=url)
    with pytest.raises(ServiceError, match=r"mailcow dockerapi at https://127\.0\.0\.1:\d+/"):
        api.apply(_restart("postfix-mailcow"))


def test_not_json_is_a_service_error() -> None:
    """An answer that is not JSON (something else on the port) is a ``ServiceError``."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
                )

        threading.Thread(target=answer, daemon=True).start()
        api = DockerapiServices("acmetest", ["postfix-mailcow"], url=f"http://127.0.0.1:{port}")
        with pytest.raises(ServiceError, match="mailcow dockerapi"):
            api.apply(_restart("postfix-mailcow"))


def test_dockerapi_url_default_and_validation() -> None:
    """The URLs default to dockerapi on the project's network, then its alias ``dockerapi``
    (mailcow#6170); an explicit one is the only one and must be http(s); the start waits
    2 minutes for dockerapi by default."""
    base = {"MAILCOW_HOSTNAME": "mail.example.org", "COMPOSE_PROJECT_NAME": "MyMail"}
    settings = load_settings(base)
    assert settings.acme_docker_api == "auto"
    assert settings.dockerapi_urls == (
        "https://dockerapi.mymail_mailcow-network",
        "https://dockerapi",
    )
    assert settings.acme_dockerapi_wait == 120
    assert load_settings(base | {"ACME_DOCKERAPI_WAIT": "0"}).acme_dockerapi_wait == 0
    custom = load_settings(base | {"ACME_DOCKERAPI_URL": "https://127.0.0.1:8443/"})
    assert custom.dockerapi_urls == ("https://127.0.0.1:8443",)
    with pytest.raises(ConfigError, match="ACME_DOCKERAPI_WAIT"):
        load_settings(base | {"ACME_DOCKERAPI_WAIT": "soon"})
    with pytest.raises(ConfigError, match="ACME_DOCKERAPI_URL"):
        load_settings(base | {"ACME_DOCKERAPI_URL": "dockerapi:443"})
    with pytest.raises(ConfigError, match="ACME_DOCKER_API"):
        load_settings(base | {"ACME_DOCKER_API": "tcp"})
