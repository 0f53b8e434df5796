"""Issue #17 items 1 and 2, ``ACME_DANE=publish``: the daemon changes ``ACME_KEY_TYPE`` rsa2048 ->
ec256 on its own, adding the next key's TLSA record through RFC 2136 (``dns_nsupdate`` with the
DANE world's TSIG key, as mailcow's DNS-01 settings give it) and removing the old key's after
the switch, while DANE senders never find a key without its record.

The world: the signed ``example.test`` on BIND (TTLs of 1 s), the validating BIND on port 53,
Pebble, and a STARTTLS receiver serving the sidecar's top-level pair (what mailcow's Postfix
serves on port 25; here on its own port, which is the TLSA owner's: ``_<port>._tcp.<host>``).
Across the whole rollover:

- a probe, every 0.5 s, resolves the TLSA RRset through the validating resolver (AD bit
  required), takes the key served by STARTTLS and records a mismatch when its ``3 1 1`` record
  is not in the set: 0 mismatches, and the probes saw both keys served;
- the sending Postfix (``smtp_tls_security_level = dane``) gets one message every 2 s: every
  one is delivered over a verified TLS connection, none deferred;
- the log says ``dane.published``, ``dane.seen``, ``dane.switched``, ``dane.retired`` in that
  order, and the RRset ends as the new key's record alone.
"""

from __future__ import annotations

import hashlib
import json
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.integration.sidecar import HOST, Daemon
from tests.integration.test_dane_rollover import dane_env, pinned_start, served
from tests.integration.test_dane_world import dane_sender
from tests.world import World
from tests.world.dane import DaneDNS
from tests.world.smtp_receiver import SmtpReceiver

STEPS = ("dane.published", "dane.seen", "dane.switched", "dane.retired")
PROBE_EVERY = 0.5  # seconds
MAIL_EVERY = 2.0  # seconds


@dataclass(frozen=True)
class Probe:
    """One look as a DANE sender takes it: the validated RRset, then the served key."""

    at: float
    records: tuple[str, ...]
    secure: bool
    served: str  # the served key's 3 1 1 data; "" when the connection failed

    @property
    def matches(self) -> bool:
        return self.secure and f"3 1 1 {self.served}" in self.records


def served_key(host: str, port: int) -> str:
    """The ``3 1 1`` data of the key served after STARTTLS (not verified: only looked at)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(host, port, timeout=5) as smtp:
        smtp.starttls(context=context)
        assert isinstance(smtp.sock, ssl.SSLSocket)
        der = smtp.sock.getpeercert(binary_form=True)
    assert der is not None
    public = x509.load_der_x509_certificate(der).public_key()
    spki = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


class Looking(threading.Thread):
    """Runs ``step`` every ``every`` seconds until ``halt``."""

    def __init__(self, every: float, step: object) -> None:
        super().__init__(daemon=True)
        self.every = every
        self.step = step
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            started = time.monotonic()
            self.step()  # type: ignore[operator]
            self.halt.wait(max(0.0, self.every - (time.monotonic() - started)))


@dataclass
class Watched:
    """A key change watched from outside: the probes, the messages' first outcomes, the
    sender's log, the daemon's log lines, and the seconds from its start to its last step."""

    probes: list[Probe]
    outcomes: dict[str, str]
    maillog: str
    logged: list[dict[str, Any]]
    took: float

    @property
    def mismatched(self) -> list[Probe]:
        return [p for p in self.probes if not p.matches]


def publish_env(
    world: World, dane_dns: DaneDNS, volume: Path, tmp_path: Path, port: int
) -> dict[str, str]:
    """``ACME_DANE=publish`` through RFC 2136 with the world's TSIG key, for ``_<port>._tcp``."""
    return dane_env(world, dane_dns, volume, tmp_path) | {
        "ACME_DANE": "publish",
        "ACME_DANE_PORTS": str(port),
        "ACME_DANE_INTERVAL": "1m",
        "ACME_KEY_TYPE": "rsa2048",
        "ACME_DNS_PROVIDER": "dns_nsupdate",
        "NSUPDATE_SERVER": dane_dns.auth[0],
        "NSUPDATE_SERVER_PORT": str(dane_dns.auth[1]),
        "NSUPDATE_KEY": str(dane_dns.key_file),
        "ACME_DNS_CONFIG_FILE": str(tmp_path / "dns-01.conf"),  # none: the environment's
    }


def watch_key_change(
    env: dict[str, str],
    dane_dns: DaneDNS,
    receiver: SmtpReceiver,
    tmp_path: Path,
    until: tuple[str, ...],
) -> Watched:
    """With the current key served and its record published: probes and a DANE sender
    running, start the daemon with ``ACME_KEY_TYPE=ec256`` and wait for the lines ``until``
    (in that order), then 4 s more."""
    owner = f"_{receiver.port}._tcp.{HOST}"
    receiver.start()
    sender = dane_sender(tmp_path / "postfix", dane_dns, receiver)
    sender.start()
    probes: list[Probe] = []
    queued: list[str] = []

    def probe() -> None:
        records, secure = dane_dns.validated(owner, "TLSA")
        try:
            key = served_key(receiver.host, receiver.port)
        except (OSError, ssl.SSLError, smtplib.SMTPException):
            key = ""
        probes.append(Probe(time.time(), tuple(r.lower() for r in records), secure, key))

    def mail() -> None:
        queued.append(sender.send(f"rollover {len(queued)}"))

    looks = [Looking(PROBE_EVERY, probe), Looking(MAIL_EVERY, mail)]
    daemon = None
    try:
        for look in looks:
            look.start()
        time.sleep(4)  # before: the current key, its record
        started = time.monotonic()
        daemon = Daemon(env | {"ACME_KEY_TYPE": "ec256"})
        for line in until:
            daemon.wait_for(line, timeout=90)
        took = time.monotonic() - started
        time.sleep(4)  # after
    finally:
        for look in looks:
            look.halt.set()
            look.join()
        code = daemon.stop() if daemon is not None else 0
    try:
        outcomes = {q: sender.outcome(q) for q in queued}
        maillog = sender.log()
    finally:
        sender.stop()
        receiver.stop()
    assert code == 0
    logged = [json.loads(line) for line in daemon.seen if line.startswith("{")]
    return Watched(probes, outcomes, maillog, logged, took)


def test_dane_publish_rollover_never_serves_a_key_without_its_record(
    world: World, dane_dns: DaneDNS, volume: Path, tmp_path: Path
) -> None:
    """rsa2048 -> ec256 with ``ACME_DANE=publish``: published, seen, switched, retired in that
    order; 0 mismatches in probes every 0.5 s; every message of a DANE Postfix (one every 2 s)
    delivered over verified TLS, none deferred; the old record removed by the sidecar."""
    receiver = SmtpReceiver(volume)
    owner = f"_{receiver.port}._tcp.{HOST}"
    env = publish_env(world, dane_dns, volume, tmp_path, receiver.port)
    current, kind, _ = pinned_start(world, dane_dns, volume, env, owner)
    assert kind == "rsa"
    watched = watch_key_change(env, dane_dns, receiver, tmp_path, STEPS)
    events = {e["event"]: e for e in watched.logged if e.get("event") in STEPS}
    order = [e["event"] for e in watched.logged if e.get("event") in STEPS]
    nxt, kind, _ = served(volume)
    probes, outcomes, queued = watched.probes, watched.outcomes, list(watched.outcomes)
    print(
        f"\npublish rollover: published->retired {watched.took:.1f}s; {len(probes)} probes, "
        f"{len(watched.mismatched)} mismatched; {len(queued)} messages, "
        f"{sum(o == 'sent' for o in outcomes.values())} sent"
    )
    assert order == list(STEPS), order
    assert events["dane.published"]["tlsa_3_1_1"] == events["dane.switched"]["tlsa_3_1_1"] == nxt
    assert kind == "ec" and nxt != current
    assert f"3 1 1 {current}" in events["dane.retired"]["records"]
    # 1. the probes: none found a key without its record, and they saw the switch
    assert watched.mismatched == [], watched.mismatched[:5]
    assert {p.served for p in probes} == {current, nxt}
    assert len(probes) >= 0.6 * (watched.took + 8) / PROBE_EVERY, len(probes)
    # 2. the DANE sender: every message delivered over verified TLS, none deferred
    assert len(queued) >= 0.6 * (watched.took + 8) / MAIL_EVERY, len(queued)
    assert set(outcomes.values()) == {"sent"}, outcomes
    assert "status=deferred" not in watched.maillog
    verified = [ln for ln in watched.maillog.splitlines() if "Verified TLS connection" in ln]
    assert len(verified) >= len(queued)
    # the old record was removed by the sidecar: the RRset is the next key's alone
    dane_dns.wait_tlsa(owner, [f"3 1 1 {nxt}"], timeout=10)


def test_dane_publish_control_without_the_rollover_the_probes_and_postfix_see_it(
    world: World, dane_dns: DaneDNS, volume: Path, tmp_path: Path
) -> None:
    """The control: the same key change with ``ACME_DANE=off`` switches at once, and the same
    probe and DANE sender catch it (mismatches, deferred messages): what the test above
    counts would show a broken rollover."""
    receiver = SmtpReceiver(volume)
    owner = f"_{receiver.port}._tcp.{HOST}"
    env = publish_env(world, dane_dns, volume, tmp_path, receiver.port)
    assert pinned_start(world, dane_dns, volume, env, owner)[1] == "rsa"
    watched = watch_key_change(
        env | {"ACME_DANE": "off"}, dane_dns, receiver, tmp_path, ("cycle.done",)
    )
    assert served(volume)[1] == "ec"
    assert len(watched.mismatched) >= 3, watched.probes
    assert "deferred" in watched.outcomes.values(), watched.outcomes
