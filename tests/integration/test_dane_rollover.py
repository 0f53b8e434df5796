"""Issue #17 items 3 and 5, ``ACME_DANE=check`` (no DNS credentials), against the signed BIND,
the validating BIND and Pebble, through ``python -m acme_sidecar once``/``status``:

- item 3: ``ACME_KEY_TYPE`` rsa2048 -> ec256 with ``3 1 1`` of the current key published: the
  next key is made and the record to add printed once; nothing switches (several cycles, a
  renewal on the current key among them); once the test adds the printed record with
  ``nsupdate`` and 2 x TTL has passed, the certificate is ordered on the next key; 2 x TTL later
  the old record may go. The lines come in that order.
- item 5: 10 renewals with key reuse: the served key and the TLSA RRset stay as they are and no
  rollover line is logged.
- the daemon (``run``) follows a rollover on its own: it wakes for each step, and idles no
  larger than without a key change.
"""

from __future__ import annotations

import hashlib
import json
import stat
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.integration.sidecar import HOST, Daemon, Run, base_env, seed, sidecar
from tests.world import World
from tests.world.dane import TTL, DaneDNS

OWNER = f"_25._tcp.{HOST}"
ROLLOVER = (
    "dane.publish_next",
    "dane.held",
    "dane.seen",
    "dane.switching",
    "dane.switched",
    "dane.retire_old",
)


def served(volume: Path) -> tuple[str, str, int]:
    """The top-level ``cert.pem`` (what Postfix serves): its key's ``3 1 1`` data, its key
    type (rsa or ec) and its serial."""
    leaf = x509.load_pem_x509_certificates((volume / "cert.pem").read_bytes())[0]
    public = leaf.public_key()
    der = public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    kind = type(public).__name__.lower()
    return hashlib.sha256(der).hexdigest(), "rsa" if "rsa" in kind else "ec", leaf.serial_number


def once(env: dict[str, str]) -> Run:
    """One cycle; it must succeed."""
    run = sidecar(env, "once")
    assert run.code == 0, run.stderr[-3000:]
    return run


def rollover_lines(runs: list[Run]) -> list[str]:
    """The rollover's lines of ``runs``, in order."""
    return [e["event"] for r in runs for e in r.events if e.get("event") in ROLLOVER]


def status(env: dict[str, str]) -> dict[str, Any]:
    """``status --json``'s DANE part."""
    run = sidecar(env, "status", "--json")
    assert run.code == 0, run.stderr[-3000:]
    dane: dict[str, Any] = json.loads(run.stdout)["dane"]
    return dane


def dane_env(world: World, dane_dns: DaneDNS, volume: Path, tmp_path: Path) -> dict[str, str]:
    """The sidecar's settings with the validating resolver and a DANE state file of its own."""
    return base_env(world, volume) | {
        "ACME_DANE_RESOLVER": f"{dane_dns.resolver_host}:{dane_dns.resolver_port}",
        "ACME_DANE_STATE": str(tmp_path / "dane.json"),
    }


def pinned_start(
    world: World, dane_dns: DaneDNS, volume: Path, env: dict[str, str], owner: str = OWNER
) -> tuple[str, str, int]:
    """The first certificate (no domain rows), and the admin's ``3 1 1`` record of its key at
    ``owner``, seen validated; the served key's data, its type and the serial (``served``)."""
    seed(world, [])
    once(env)
    first = served(volume)
    dane_dns.set_tlsa(owner, f"3 1 1 {first[0]}")
    dane_dns.wait_tlsa(owner, [f"3 1 1 {first[0]}"])
    return first


def test_dane_rollover_check_mode_waits_for_the_printed_record(
    world: World, dane_dns: DaneDNS, volume: Path, tmp_path: Path
) -> None:
    """rsa2048 -> ec256 with the current key pinned: prepared and told once, held (the served
    key unchanged, a forced renewal stays on it), switched 2 x TTL after the test published the
    printed record, then the retire line."""
    seed(world, [])
    env = dane_env(world, dane_dns, volume, tmp_path) | {"ACME_KEY_TYPE": "rsa2048"}
    dane_dns.set_tlsa(OWNER)
    dane_dns.wait_tlsa(OWNER, [])
    once(env)
    current, kind, serial = served(volume)
    assert kind == "rsa"
    dane_dns.set_tlsa(OWNER, f"3 1 1 {current}")
    dane_dns.wait_tlsa(OWNER, [f"3 1 1 {current}"])

    env["ACME_KEY_TYPE"] = "ec256"
    held = [once(env) for _ in range(3)]
    (told,) = [e for r in held for e in r.named("dane.publish_next")]
    assert held[0].named("dane.publish_next") == [told]
    assert [len(r.named("dane.held")) for r in held] == [1, 1, 1]
    assert "not published" in held[0].named("dane.held")[0]["reason"]
    add = told["add"]
    nxt = told["tlsa_3_1_1"]
    assert add == f"{OWNER}. IN TLSA 3 1 1 {nxt}" and nxt != current
    next_file = volume / "acme" / "key.next.pem"
    assert stat.S_IMODE(next_file.stat().st_mode) == 0o600
    assert served(volume) == (current, "rsa", serial)  # nothing switched, nothing ordered
    assert all(not r.named("cert.stored") for r in held)
    shown = status(env)["rollover"]
    assert (shown["step"], shown["add"]) == ("publish", [add])

    (volume / "force_renew").touch()  # a renewal due while held: on the current key
    renewed = once(env)
    assert len(renewed.named("cert.stored")) == 1 and renewed.named("dane.held")
    key, kind, new_serial = served(volume)
    assert (key, kind) == (current, "rsa") and new_serial != serial
    assert not renewed.named("dane.publish_next")

    record = add.split(" IN TLSA ", 1)[1]
    dane_dns.set_tlsa(OWNER, f"3 1 1 {current}", record)  # what the admin does
    dane_dns.wait_tlsa(OWNER, [f"3 1 1 {current}", record])
    seen = once(env)  # first seen now: held for 2 x TTL from here
    assert seen.named("dane.seen") and seen.named("dane.held")
    assert served(volume)[:2] == (current, "rsa") and not seen.named("cert.stored")
    time.sleep(2 * TTL + 0.5)
    switched = once(env)
    assert switched.named("dane.switching") and len(switched.named("cert.stored")) == 1
    key, kind, _ = served(volume)
    assert (key, kind) == (nxt, "ec")
    assert switched.named("dane.switched")[0]["tlsa_3_1_1"] == nxt
    assert not next_file.exists()
    assert [e["tlsa"] for e in switched.named("dane.matched")] == [OWNER]
    time.sleep(2 * TTL + 0.5)
    retired = once(env)
    (line,) = retired.named("dane.retire_old")
    assert f"3 1 1 {current}" in line["records"]
    assert status(env)["rollover"]["remove"] == [f"{OWNER}. IN TLSA 3 1 1 {current}"]

    lines = rollover_lines([*held, renewed, seen, switched, retired])
    order = [e for i, e in enumerate(lines) if e != "dane.held" or lines[i - 1] != e]
    assert order == [
        "dane.publish_next",
        "dane.held",
        "dane.seen",
        "dane.held",
        "dane.switching",
        "dane.switched",
        "dane.retire_old",
    ]
    assert once(env).named("dane.retire_old") == []  # said once


def test_dane_rollover_key_reuse_renewals_never_touch_tlsa(
    world: World, dane_dns: DaneDNS, volume: Path, tmp_path: Path
) -> None:
    """10 forced renewals with ``ACME_KEY_REUSE=y`` and ``3 1 1`` of the key published: every
    one is a new certificate on the same key, the TLSA RRset is unchanged, no rollover line
    and no next key."""
    env = dane_env(world, dane_dns, volume, tmp_path) | {"ACME_KEY_REUSE": "y"}
    key, _, serial = pinned_start(world, dane_dns, volume, env)
    before = dane_dns.validated(OWNER, "TLSA")
    assert before == ([f"3 1 1 {key}"], True)
    runs, serials = [], {serial}
    for _ in range(10):
        (volume / "force_renew").touch()
        run = once(env)
        assert len(run.named("cert.stored")) == 1
        runs.append(run)
        now_key, _, now_serial = served(volume)
        assert now_key == key
        serials.add(now_serial)
    assert len(serials) == 11
    assert dane_dns.validated(OWNER, "TLSA") == before
    assert rollover_lines(runs) == []
    assert not (volume / "acme" / "key.next.pem").exists()
    assert status(env)["rollover"] is None


def rss_mb(pid: int) -> float:
    """The resident memory of process ``pid`` in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_dane_rollover_daemon_follows_on_its_own(
    world: World, dane_dns: DaneDNS, volume: Path, tmp_path: Path
) -> None:
    """``run`` with a key type change held: it wakes for the rollover (ACME_DANE_INTERVAL while
    the record is missing, then 2 x TTL for the switch and the retirement), switches on its own
    after the test published the record, and idles no larger than a daemon with no key change
    (the same cycle, settings and world)."""
    env = dane_env(world, dane_dns, volume, tmp_path) | {"ACME_KEY_TYPE": "rsa2048"}
    current, _, _ = pinned_start(world, dane_dns, volume, env)
    plain = Daemon(env)
    try:
        plain.wait_for("cycle.done")
        time.sleep(3)
        plain_rss = rss_mb(plain.proc.pid)
    finally:
        plain_stopped = plain.stop()
    assert plain_stopped == 0
    env |= {"ACME_KEY_TYPE": "ec256", "ACME_DANE_INTERVAL": "1m"}
    daemon = Daemon(env)
    try:
        told = daemon.wait_for("dane.publish_next")
        idle = daemon.wait_for("cycle.done")
        time.sleep(3)  # idle, held
        held_rss = rss_mb(daemon.proc.pid)
        record = told["add"].split(" IN TLSA ", 1)[1]
        dane_dns.set_tlsa(OWNER, f"3 1 1 {current}", record)
        dane_dns.wait_tlsa(OWNER, [f"3 1 1 {current}", record])
        published = time.monotonic()
        seen = daemon.wait_for("dane.seen", timeout=90)
        switched = daemon.wait_for("dane.switched", timeout=60)
        retired = daemon.wait_for("dane.retire_old", timeout=60)
        took = time.monotonic() - published
    finally:
        stopped = daemon.stop()
    assert stopped == 0
    assert idle["next_reason"] == "key rollover (DANE): its next step"
    assert int(idle["next_check_in"].rstrip("s")) <= 60
    assert seen["tlsa_3_1_1"] == switched["tlsa_3_1_1"] == told["tlsa_3_1_1"]
    assert served(volume)[:2] == (told["tlsa_3_1_1"], "ec")
    assert f"3 1 1 {current}" in retired["records"]
    assert took < 75
    assert held_rss <= plain_rss + 3, (held_rss, plain_rss)
    print(
        f"daemon rollover: published->retired {took:.1f}s; idle RSS held {held_rss:.1f} MB, "
        f"without a key change {plain_rss:.1f} MB"
    )
