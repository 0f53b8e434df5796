"""Alerts by default and the deploy hook, through ``python -m acme_sidecar once`` against the
real Pebble, a real SMTP receiver (aiosmtpd with STARTTLS) and a real HTTP listener, reusing
test_ops.py's fixtures."""

from __future__ import annotations

import json
import time
from email.message import EmailMessage
from pathlib import Path

from tests.integration.sidecar import HOST, base_env, leaf, seed, sidecar
from tests.integration.test_ops import (  # noqa: F401 - smtp and webhook are its fixtures
    RECIPIENTS,
    Smtp,
    Webhook,
    smtp,
    webhook,
)
from tests.world import World

ALERT_AFTER = 3.0  # seconds: ACME_ALERT_AFTER of these tests
QUICK_RETRY = {"ACME_RETRY_LADDER": "1s", "ACME_RETRY_INTERVAL": "1", "ACME_MAX_BACKOFF": "1s"}


def test_watchdog_email_gets_one_alert_then_one_resolved(
    world: World,
    volume: Path,
    smtp: Smtp,  # noqa: F811
) -> None:
    """With only mailcow's WATCHDOG_NOTIFY_EMAIL set (mail through the test's SMTP server):
    the CA down gives no mail until the failures have lasted ACME_ALERT_AFTER, then exactly one
    alert naming the certificate and the CA's problem, none while it goes on; with the CA back
    exactly one "resolved", and nothing after that."""
    seed(world, ["one.test"])
    env = base_env(world, volume) | QUICK_RETRY | {
        "WATCHDOG_NOTIFY_EMAIL": RECIPIENTS,
        "ACME_NOTIFY_SMTP": smtp.endpoint,
        "ACME_ALERT_AFTER": f"{ALERT_AFTER:g}s",
    }  # fmt: skip
    world.pebble.stop()
    try:
        first = sidecar(env, "once")
        started = time.monotonic()
        assert first.code == 1 and smtp.inbox.mails == [], first.stderr
        time.sleep(max(0.0, ALERT_AFTER - (time.monotonic() - started)) + 0.5)
        failing = [sidecar(env, "once") for _ in range(2)]
    finally:
        world.pebble.start()
    (channel,) = first.named("notify.channel")
    assert channel["source"].startswith("mailcow.conf: WATCHDOG_NOTIFY_EMAIL")
    assert [len(r.named("notify.sent")) for r in failing] == [1, 0]
    (alert,) = smtp.inbox.mails
    assert alert.tls and alert.sender == f"watchdog@{HOST}"
    assert alert.recipients == RECIPIENTS.split(",")
    assert alert.message["Subject"].startswith("Watchdog ALERT: acme-mailcow: certificate work")
    assert alert.message["X-Priority"] == "1"
    assert isinstance(alert.message, EmailMessage)  # parsed with email.policy.default
    text = alert.message.get_content()
    assert f"certificate {HOST} ({HOST} " in text and "the CA: " in text, text
    assert "failing_since: " in text

    recovered = sidecar(env, "once")
    again = sidecar(env, "once")
    assert recovered.code == 0 and again.code == 0, recovered.stderr
    assert len(smtp.inbox.mails) == 2 and again.named("notify.sent") == []
    resolved = smtp.inbox.mails[1]
    assert resolved.message["Subject"].strip() == (  # a long subject is folded
        "Watchdog ALERT: acme-mailcow: resolved: certificate work succeeds again"
    )
    state = json.loads((volume / "acme" / "notify.json").read_text())
    assert state == {"failing_since": None, "channels": {}}


def test_deploy_hook_gets_each_deploy(
    world: World,
    volume: Path,
    webhook: Webhook,  # noqa: F811
    tmp_path: Path,
) -> None:
    """ACME_DEPLOY_HOOK_URL gets one JSON POST and ACME_DEPLOY_HOOK_COMMAND one run per
    successful deploy (the first issue, then a forced renewal), each with the names and the
    serial served; a cycle that deploys nothing calls neither. The URL's token is never logged."""
    seed(world, ["one.test"])
    runs = tmp_path / "runs"
    runs.mkdir()
    command = f'cat > "{runs}/$(date +%s%N).json"; echo "$ACME_DEPLOY_SERIALS" >> {runs}/serials'
    env = base_env(world, volume) | {
        "ACME_DEPLOY_HOOK_URL": webhook.url,
        "ACME_DEPLOY_HOOK_COMMAND": command,
    }
    first = sidecar(env, "once")
    assert first.code == 0, first.stderr
    serial_1 = f"{leaf(volume / HOST / 'cert.pem').serial_number:x}"
    quiet = sidecar(env, "once")
    (volume / "force_renew").touch()
    renewed = sidecar(env, "once")
    assert quiet.code == 0 and renewed.code == 0, renewed.stderr
    serial_2 = f"{leaf(volume / HOST / 'cert.pem').serial_number:x}"
    assert serial_1 != serial_2

    assert [p["event"] for p in webhook.posts] == ["deployed", "deployed"]
    for post, serial in zip(webhook.posts, (serial_1, serial_2), strict=True):
        (mine,) = [c for c in post["certificates"] if c["certificate"] == HOST]
        assert mine["serial"] == serial and HOST in mine["names"] and post["hostname"] == HOST
    files = sorted(runs.glob("*.json"))
    assert [json.loads(f.read_text()) for f in files] == webhook.posts
    lines = (runs / "serials").read_text().splitlines()
    assert len(lines) == 2 and serial_1 in lines[0].split() and serial_2 in lines[1].split()
    assert [len(r.named("deploy_hook.posted")) for r in (first, quiet, renewed)] == [1, 0, 1]
    assert [len(r.named("deploy_hook.ran")) for r in (first, quiet, renewed)] == [1, 0, 1]
    assert "secret-token" not in first.stderr + renewed.stderr
