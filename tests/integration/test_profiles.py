"""Issue #16 must-show 4: real ACME profiles and ``alreadyReplaced`` against Pebble 2.10.

One Pebble 2.10 (Debian unstable's, unpacked by tests/run; ``ProfilesPebble``) offers two
profiles with lifetimes of their own: ``default`` (90 days) and ``shortlived`` (2 hours). Each
test runs ``acme-sidecar once`` against it (every order names its profile: Pebble 2.10 gives an
order that names none a random one):

1. ``ACME_PROFILE=shortlived`` gets a 2-hour certificate, recorded with its profile; a second run
   keeps it; switching to ``default`` orders it again, now for 90 days.
2. An unknown profile is refused before any order, with one line naming the setting and the
   CA's list.
3. The name limit per profile: Pebble 2.10 has none (its profile is a description, a lifetime
   and a common-name flag), so what is shown is the sidecar keeping its own: 27 names are split
   into orders of at most 25 under ``shortlived`` and ordered in one under ``default``.
4. ``alreadyReplaced``: a certificate replaced once (an ARI order with ``replaces``) is put back
   into the volume and is due again; Pebble answers the second replacement with
   ``alreadyReplaced``, and the order is placed once more without ``replaces`` and issued.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from acme_sidecar.core.ari import cert_id
from tests.integration.sidecar import HOST, Run, base_env, cert_dirs, leaf, seed, sidecar
from tests.world import World
from tests.world.pebble import ProfilesPebble

DAY = 86400
PROFILES = {"default": 90 * DAY, "shortlived": 7200}


@pytest.fixture(scope="module")
def pebble210(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProfilesPebble]:
    """A Pebble 2.10 with the ``default`` and ``shortlived`` profiles."""
    ca = ProfilesPebble(
        tmp_path_factory.mktemp("pebble-2.10"), world.dns.port, world.nginx.port, PROFILES
    )
    ca.start()
    try:
        yield ca
    finally:
        ca.stop()


def env_for(world: World, ca: ProfilesPebble, volume: Path, profile: str) -> dict[str, str]:
    """The test world's settings, against Pebble 2.10 with ``ACME_PROFILE=profile``."""
    return base_env(world, volume) | {
        "DIRECTORY_URL": ca.directory_url,
        "ACME_CA_BUNDLE": str(ca.ca_bundle),
        "ACME_PROFILE": profile,
    }


def ok(run: Run) -> None:
    assert run.code == 0, run.stderr[-3000:]
    assert [e for e in run.events if e.get("level") in ("error", "critical")] == []


def lifetime(path: Path) -> float:
    """Seconds from notBefore to notAfter of the leaf in ``path``."""
    cert = leaf(path)
    return float((cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds())


def sans(path: Path) -> list[str]:
    """The DNS names of the leaf in ``path``."""
    from cryptography import x509

    ext = leaf(path).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return [str(n) for n in ext.value.get_values_for_type(x509.DNSName)]


def lines_with(run: Run, text: str) -> list[dict[str, Any]]:
    """The log lines with ``text`` in any of their values."""
    return [e for e in run.events if any(text in str(v) for v in e.values())]


def test_shortlived_profile_gets_short_certificates(
    world: World, pebble210: ProfilesPebble, volume: Path
) -> None:
    """``shortlived`` gives a certificate of the profile's 2 hours; a second run keeps it; the
    switch to ``default`` orders it again, for 90 days."""
    seed(world, [])
    cert = volume / HOST / "cert.pem"
    short = sidecar(env_for(world, pebble210, volume, "shortlived"), "once")
    ok(short)
    assert len(short.named("order.created")) == 1
    # Pebble's notAfter is notBefore + validityPeriod - 1 s
    assert lifetime(cert) == PROFILES["shortlived"] - 1

    again = sidecar(env_for(world, pebble210, volume, "shortlived"), "once")
    ok(again)
    assert again.named("order.created") == [] and again.named("cert.stored") == []

    switched = sidecar(env_for(world, pebble210, volume, "default"), "once")
    ok(switched)
    [renew] = switched.named("cert.issue")
    assert "profile changed: ordered with shortlived, ACME_PROFILE asks for default" in str(
        renew["reason"]
    )
    assert lifetime(cert) == PROFILES["default"] - 1
    print(
        f"\nshortlived: {PROFILES['shortlived'] - 1} s certificate; default: "
        f"{PROFILES['default'] - 1} s after the switch"
    )


def test_unknown_profile_is_refused_with_the_cas_list(
    world: World, pebble210: ProfilesPebble, volume: Path
) -> None:
    """``ACME_PROFILE=tlserver`` (a typo) places no order; one line names the setting and
    the profiles Pebble lists."""
    seed(world, [])
    run = sidecar(env_for(world, pebble210, volume, "tlserver"), "once")
    assert run.named("order.created") == [] and run.named("cert.stored") == []
    assert not (volume / HOST / "cert.pem").exists()
    listed = "default (default: 7776000 s); shortlived (shortlived: 7200 s)"
    expected = f"ACME_PROFILE=tlserver is not offered by the CA; it offers: {listed}"
    said = lines_with(run, "ACME_PROFILE=tlserver")
    # one error line; the cycle's summary names it again as the reason of its next attempt
    [line] = [e for e in said if e["level"] != "info"]
    assert (line["event"], line["level"]) == ("orders.not_started", "error")
    assert line["error"] == expected
    assert [e["event"] for e in said if e["level"] == "info"] == ["cycle.done"]
    print(f"\nexit {run.code}; the line: {line}")


def test_name_limit_per_profile(world: World, pebble210: ProfilesPebble, volume: Path) -> None:
    """27 names: two orders of at most 25 under ``shortlived``, one under ``default``."""
    domains = [f"d{i:02}.test" for i in range(13)]  # autoconfig + autodiscover each, + HOST
    seed(world, domains)
    short = sidecar(env_for(world, pebble210, volume, "shortlived"), "once", timeout=240)
    ok(short)
    orders = short.named("order.created")
    sizes = sorted((e["names"] for e in orders), reverse=True)
    assert sizes == [25, 2], orders
    split = {name: sans(volume / name / "cert.pem") for name in cert_dirs(volume)}
    assert sorted(len(s) for s in split.values()) == [2, 25]
    assert len({n for s in split.values() for n in s}) == 27
    assert all(lifetime(volume / name / "cert.pem") == 7199 for name in split)

    whole = sidecar(env_for(world, pebble210, volume, "default"), "once", timeout=240)
    ok(whole)
    assert [e["names"] for e in whole.named("order.created")] == [27]
    assert len(sans(volume / HOST / "cert.pem")) == 27
    print(f"\nshortlived: orders of {sizes} names; default: one order of 27")


def test_already_replaced_falls_back_without_replaces(
    world: World, pebble210: ProfilesPebble, volume: Path
) -> None:
    """A second replacement of the same certificate is answered ``alreadyReplaced``; the order
    goes out once more without ``replaces`` (one line) and is issued."""
    seed(world, [])
    env = env_for(world, pebble210, volume, "default") | {"ACME_ARI_INTERVAL": "1s"}
    cert = volume / HOST / "cert.pem"
    ok(sidecar(env, "once"))
    first_pem = cert.read_bytes()
    first = leaf(cert)
    now = datetime.now(UTC)
    # the CA asks for the first certificate's renewal now (a window already over)
    pebble210.set_renewal_info(first_pem, now - timedelta(hours=2), now - timedelta(hours=1))

    time.sleep(1.5)  # the window is asked again once ACME_ARI_INTERVAL (1 s) has passed
    renewed = sidecar(env, "once")
    [now_line] = renewed.named("ari.renew_now")
    assert now_line["certificate"] == HOST
    ok(renewed)
    assert [e["replaces"] for e in renewed.named("order.replaces")] == [cert_id(first)]
    assert renewed.named("order.replaces_refused") == []
    second = leaf(cert)
    assert second.serial_number != first.serial_number

    cert.write_bytes(first_pem)  # the first certificate back: due again (the same window)
    again = sidecar(env, "once")
    ok(again)
    [refused] = again.named("order.replaces_refused")
    assert refused["problem"] == "alreadyReplaced", refused
    assert refused["replaces"] == cert_id(first)
    assert again.named("order.replaces") == []
    assert len(again.named("order.created")) == 1 and len(again.named("cert.stored")) == 1
    third = leaf(cert)
    assert third.serial_number not in {first.serial_number, second.serial_number}
    print(f"\nrefused: {refused}")
