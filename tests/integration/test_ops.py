"""Operations against real receivers: notifications (a real SMTP server with STARTTLS and a real
HTTP webhook listener), the mailcow UI (a real ``redis-server`` with a password) and the
Prometheus endpoint of the running daemon, all driven through ``python -m acme_sidecar``.
"""

from __future__ import annotations

import email
import email.policy
import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.sidecar import HOST, Daemon, base_env, leaf, seed, sidecar
from tests.world import World
from tests.world.proc import free_port
from tests.world.redis import RedisServer
from tests.world.tls import make_server_cert

RECIPIENTS = "postmaster@example.test,admin@example.test"


@dataclass
class Mail:
    """One message the SMTP server accepted."""

    sender: str
    recipients: list[str]
    message: Message
    tls: bool


@dataclass
class Inbox:
    """aiosmtpd handler keeping every message."""

    mails: list[Mail] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        raw = content if isinstance(content, bytes) else str(content).encode()
        self.mails.append(
            Mail(
                str(envelope.mail_from),
                list(envelope.rcpt_tos),
                email.message_from_bytes(raw, policy=email.policy.default),
                session.ssl is not None,
            )
        )
        return "250 OK"


@dataclass
class Smtp:
    """The running SMTP server: where it listens and what it received."""

    endpoint: str
    inbox: Inbox


@dataclass
class Webhook:
    """The running webhook listener: its URL and the JSON bodies POSTed to it."""

    url: str
    posts: list[dict[str, Any]]


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[Smtp]:
    """aiosmtpd on a free loopback port, offering STARTTLS with a throwaway certificate."""
    (tmp_path / "smtp-tls").mkdir()
    tls = make_server_cert(tmp_path / "smtp-tls", "smtp")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert, tls.key)
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=False
    )
    controller.start()
    try:
        yield Smtp(f"127.0.0.1:{port}", inbox)
    finally:
        controller.stop()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """http.server on a free loopback port, answering 204 to every POST and keeping its body."""
    posts: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            posts.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Webhook(f"http://127.0.0.1:{server.server_address[1]}/hooks/secret-token", posts)
    finally:
        server.shutdown()
        server.server_close()


def notify_env(world: World, volume: Path, smtp: Smtp, webhook: Webhook) -> dict[str, str]:
    return base_env(world, volume) | {
        "ACME_NOTIFY_EMAIL": RECIPIENTS,
        "ACME_NOTIFY_SMTP": smtp.endpoint,
        "ACME_NOTIFY_WEBHOOK": webhook.url,
    }


def redis_env(world: World, volume: Path, redis_server: RedisServer) -> dict[str, str]:
    return base_env(world, volume) | {
        "REDISPASS": redis_server.password,
        "ACME_REDIS_HOST": redis_server.host,
        "ACME_REDIS_PORT": str(redis_server.port),
    }


def test_failed_cycle_is_alerted_once(
    world: World, volume: Path, smtp: Smtp, webhook: Webhook
) -> None:
    """With the CA down and ACME_ALERT_AFTER=0s the cycle's failure is an alert at once: one
    mail (over STARTTLS) and one webhook POST naming the cause; the next failing cycle sends
    nothing more (acme/notify.json remembers)."""
    seed(world, ["one.test"])
    env = notify_env(world, volume, smtp, webhook) | {"ACME_ALERT_AFTER": "0s"}
    world.pebble.stop()
    try:
        first = sidecar(env, "once")
        second = sidecar(env, "once")
    finally:
        world.pebble.start()
    assert first.code == 1 and second.code == 1, first.stderr
    assert [n["channel"] for n in first.named("notify.sent")] == ["email", "webhook"]
    assert second.named("notify.sent") == []
    (mail,) = smtp.inbox.mails
    assert mail.tls and mail.sender == f"acme-sidecar@{HOST}"
    assert mail.recipients == RECIPIENTS.split(",")
    assert mail.message["Subject"].startswith(f"[acme-sidecar] {HOST}: certificate work is")
    (post,) = webhook.posts
    assert post["event"] == "cycle_failed" and post["hostname"] == HOST
    assert post["status"] == "alert" and post["details"]["outcome"] == "failed"
    assert f"certificate {HOST} (" in post["details"]["causes"][0]
    state = json.loads((volume / "acme" / "notify.json").read_text())
    assert {c: set(a) for c, a in state["channels"].items()} == {
        "email": {"cycle_failed"},
        "webhook": {"cycle_failed"},
    }
    assert "secret-token" not in first.stderr + second.stderr


def test_issued_certificate_warned_relative_to_its_lifetime(
    world: World, volume: Path, smtp: Smtp, webhook: Webhook
) -> None:
    """Pebble issues 5-year certificates: even with ACME_NOTIFY_EXPIRY_DAYS=3650 a fresh one
    is not close to expiry, because the warning comes at most at ⅓ of the lifetime (see
    core/expiry.py). The warning itself, through these channels and the mailcow UI, is shown
    for a certificate 10 days from expiry in test_own.py."""
    seed(world, ["one.test"])
    env = notify_env(world, volume, smtp, webhook) | {"ACME_NOTIFY_EXPIRY_DAYS": "3650"}
    run = sidecar(env, "once")
    assert run.code == 0, run.stderr
    assert leaf(volume / HOST / "cert.pem").serial_number
    assert run.named("notify.sent") == [] and run.named("cert.expiring") == []
    assert webhook.posts == [] and smtp.inbox.mails == []


def ui_log(redis_server: RedisServer) -> list[dict[str, str]]:
    """ACME_LOG, newest first, parsed."""
    return [json.loads(e) for e in redis_server.client().lrange("ACME_LOG", 0, -1)]


def test_mailcow_ui_log_and_fail_time(
    world: World, volume: Path, redis_server: RedisServer
) -> None:
    """`once` puts every log line into ACME_LOG in mailcow's format and leaves ACME_FAIL_TIME
    alone; a failed cycle sets ACME_FAIL_TIME. `check` writes nothing to Redis."""
    redis_server.reset()
    seed(world, ["one.test"])
    env = redis_env(world, volume, redis_server)
    assert sidecar(env, "check").code == 0
    assert redis_server.client().llen("ACME_LOG") == 0
    run = sidecar(env, "once")
    assert run.code == 0, run.stderr
    entries = ui_log(redis_server)
    assert all(set(e) == {"time", "message"} and e["time"].isdigit() for e in entries)
    assert all(e["message"].startswith(f"{HOST} - ") for e in entries)
    assert abs(int(entries[0]["time"]) - time.time()) < 300
    messages = [e["message"].removeprefix(f"{HOST} - ") for e in reversed(entries)]
    in_ui = [m.split()[1] if m.split()[0].endswith(":") else m.split()[0] for m in messages]
    assert in_ui == [e["event"] for e in run.events][-len(in_ui) :]  # every line, in order
    assert "names.discovered" in in_ui
    assert any(m.startswith(f"cert.issue certificate={HOST} ") for m in messages)
    assert any(m.startswith("cycle.done outcome=ok ") for m in messages)
    assert redis_server.password not in "".join(messages)
    assert redis_server.client().get("ACME_FAIL_TIME") is None

    failing = volume.parent / "failing"
    failing.mkdir()
    world.pebble.stop()
    try:
        down = sidecar(redis_env(world, failing, redis_server), "once")
    finally:
        world.pebble.start()
    assert down.code == 1
    fail_time = redis_server.client().get("ACME_FAIL_TIME")
    assert fail_time is not None and abs(int(fail_time) - time.time()) < 300
    assert ui_log(redis_server)[0]["message"].startswith(f"{HOST} - ")


def test_redis_master_and_redis_down(world: World, volume: Path, redis_server: RedisServer) -> None:
    """With REDIS_SLAVEOF_IP the lines go to that master; with Redis down `once` still works,
    says so once and does not wait on it."""
    redis_server.reset()
    seed(world, ["one.test"])
    closed = str(free_port())  # nothing listens there
    env = redis_env(world, volume, redis_server) | {"ACME_REDIS_PORT": closed}
    master = env | {"REDIS_SLAVEOF_IP": "127.0.0.1", "REDIS_SLAVEOF_PORT": str(redis_server.port)}
    run = sidecar(master, "once")
    assert run.code == 0, run.stderr
    assert any("cycle.done" in e["message"] for e in ui_log(redis_server))
    redis_server.reset()
    began = time.monotonic()
    down = sidecar(env, "once")
    took = time.monotonic() - began
    assert down.code == 0, down.stderr
    (warning,) = down.named("mailcow.redis_down")
    assert warning["redis"] == f"127.0.0.1:{closed}"
    assert redis_server.password not in down.stderr
    assert took < 20
    assert redis_server.client().llen("ACME_LOG") == 0


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the endpoint: (name, sorted labels) -> value."""
    text = requests.get(url, timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_endpoint_of_the_daemon(world: World, volume: Path) -> None:
    """`run` with ACME_METRICS_PORT serves /metrics: the certificate's expiry and renewal time,
    the last success, and the failure counters (zero)."""
    seed(world, ["one.test"])
    port = free_port()
    env = base_env(world, volume) | {
        "ACME_METRICS_PORT": str(port),
        "ACME_METRICS_ADDRESS": "127.0.0.1",
    }
    daemon = Daemon(env)
    try:
        daemon.wait_for("metrics.listening")
        daemon.wait_for("cycle.done")
        url = f"http://127.0.0.1:{port}/metrics"
        key = ("acme_sidecar_certificate_expiration_timestamp_seconds", (("name", HOST),))
        deadline = time.monotonic() + 10
        samples = scrape(url)
        while key not in samples and time.monotonic() < deadline:
            time.sleep(0.1)
            samples = scrape(url)
    finally:
        stopped = daemon.stop()
    assert stopped == 0
    cert = leaf(volume / HOST / "cert.pem")
    assert samples[key] == cert.not_valid_after_utc.timestamp()
    renewal = samples[("acme_sidecar_certificate_renewal_timestamp_seconds", (("name", HOST),))]
    assert cert.not_valid_before_utc.timestamp() < renewal < samples[key]
    assert abs(samples[("acme_sidecar_last_success_timestamp_seconds", ())] - time.time()) < 300
    assert samples[("acme_sidecar_cycle_failures_total", (("reason", "failed"),))] == 0
    assert samples[("acme_sidecar_names_skipped", ())] == 0


def test_once_starts_no_metrics_endpoint(world: World, volume: Path) -> None:
    """`once` with ACME_METRICS_PORT set runs its cycle without listening (the daemon may hold
    the port)."""
    seed(world, ["one.test"])
    run = sidecar(base_env(world, volume) | {"ACME_METRICS_PORT": str(free_port())}, "once")
    assert run.code == 0, run.stderr
    assert run.named("metrics.listening") == [] and run.named("metrics.failed") == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ACME_NOTIFY_EMAIL", "admin"),
        ("ACME_NOTIFY_SMTP", "postfix"),
        ("ACME_NOTIFY_WEBHOOK", "hooks.example.org"),
        ("ACME_METRICS_PORT", "http"),
    ],
)
def test_bad_setting_stops_with_exit_2(name: str, value: str) -> None:
    """A bad value stops `once` at start with exit 2, naming the variable and the value (a
    webhook URL, a secret, only by its scheme and host: none here)."""
    run = sidecar({"MAILCOW_HOSTNAME": HOST, name: value}, "once")
    shown = "***" if name == "ACME_NOTIFY_WEBHOOK" else value
    assert run.code == 2 and f"{name}={shown!r} is not valid" in run.stderr
    assert name != "ACME_NOTIFY_WEBHOOK" or value not in run.stderr
