"""Issue #3: everything acme-mailcow does, done right, against the real test world."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.integration.sidecar import (
    HOST,
    Daemon,
    base_env,
    cert_dirs,
    leaf,
    seed,
    sidecar,
    snapshot,
)
from tests.world import World


@pytest.fixture
def dns_overrides(world: World) -> Iterator[list[str]]:
    """Names whose A records a test changed; reset to the default afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        world.dns.clear_a(name)
        world.dns.clear_caa(name)


def point(world: World, overrides: list[str], name: str, ip: str) -> None:
    world.dns.clear_a(name)
    world.dns.add_a(name, [ip])
    overrides.append(name)


def test_sni_mode_certificates_and_directories(world: World, volume: Path) -> None:
    """SNI mode with three domains and ADDITIONAL_SAN=mail.*,webmail.example.test."""
    seed(world, ["one.test", "two.test", "three.test"], mta_sts=["two.test"])
    env = base_env(world, volume) | {
        "ENABLE_SSL_SNI": "y",
        "ADDITIONAL_SAN": "mail.*,webmail.example.test",
    }
    run = sidecar(env, "once")
    assert run.code == 0, run.stderr
    assert cert_dirs(volume) == {
        HOST: f"{HOST} webmail.example.test",
        "mail.one.test": "mail.one.test autoconfig.one.test autodiscover.one.test",
        "mail.three.test": "mail.three.test autoconfig.three.test autodiscover.three.test",
        "mail.two.test": "mail.two.test autoconfig.two.test autodiscover.two.test mta-sts.two.test",
    }
    assert (volume / "cert.pem").read_bytes() == (volume / HOST / "cert.pem").read_bytes()


def verdicts(stdout: str) -> dict[str, str]:
    """NAME -> ok/skip from the table `acme-sidecar check` prints."""
    out = {}
    for line in stdout.splitlines()[1:]:
        if not line.strip() or line.startswith("PLAN"):
            break
        name, mark = line.split()[:2]
        out[name] = mark
    return out


ALL = {HOST, "autodiscover.one.test", "autoconfig.one.test", "mta-sts.one.test"}
SETTINGS_CASES = [
    # (settings, names that must be "ok", names that must be "skip"); every other name of the
    # domain must be absent from the table. `check` exits 0 exactly when some name is ok.
    ({}, ALL, set()),
    ({"AUTODISCOVER_SAN": "n"}, {HOST}, set()),
    ({"ONLY_MAILCOW_HOSTNAME": "y", "ADDITIONAL_SAN": "x.example.test"}, {HOST}, set()),
    ({"ADDITIONAL_SAN": "imap.*,x.example.test"}, ALL | {"imap.one.test", "x.example.test"}, set()),
    ({"PUBLIC_IPV4": "127.0.0.2"}, set(), ALL),
    # SKIP_IP_CHECK: no comparison, but the self-check never connects to a loopback or private
    # address that is not this server's (DNS answers 127.0.0.1 here) ...
    ({"PUBLIC_IPV4": "127.0.0.2", "SKIP_IP_CHECK": "y"}, set(), ALL),
    # ... and passes without the self-check, or when the address is this server's SNAT address
    ({"PUBLIC_IPV4": "127.0.0.2", "SKIP_IP_CHECK": "y", "SKIP_HTTP_VERIFICATION": "y"}, ALL, set()),
    ({"PUBLIC_IPV4": "127.0.0.2", "SNAT_TO_SOURCE": "127.0.0.1"}, ALL, set()),
    ({"PUBLIC_IPV4": "127.0.0.2", "SNAT6_TO_SOURCE": "::2"}, set(), ALL),
    ({"ACME_HTTP_VERIFY_PORT": "9"}, set(), ALL),
    ({"ACME_HTTP_VERIFY_PORT": "9", "SKIP_HTTP_VERIFICATION": "y"}, ALL, set()),
]


@pytest.mark.parametrize(("settings", "ok", "skipped"), SETTINGS_CASES)
def test_settings_change_the_names(
    world: World, volume: Path, settings: dict[str, str], ok: set[str], skipped: set[str]
) -> None:
    """Each mailcow setting changes which names are accepted, as documented."""
    seed(world, ["one.test"], mta_sts=["one.test"])
    run = sidecar(base_env(world, volume) | settings, "check")
    assert run.code == (0 if ok else 1), run.stderr
    table = verdicts(run.stdout)
    assert {n for n, v in table.items() if v == "ok"} == ok, run.stdout
    assert {n for n, v in table.items() if v != "ok"} == skipped, run.stdout


def test_skip_lets_encrypt_idles(world: World, volume: Path) -> None:
    """SKIP_LETS_ENCRYPT=y does nothing and says so."""
    run = sidecar(base_env(world, volume) | {"SKIP_LETS_ENCRYPT": "y"}, "once")
    assert run.code == 0 and run.named("daemon.idle")
    assert list(volume.iterdir()) == []


def test_staging_wins_with_a_log_line(world: World, volume: Path) -> None:
    """LE_STAGING=y with DIRECTORY_URL logs that staging wins (checked without ordering)."""
    run = sidecar(base_env(world, volume) | {"LE_STAGING": "y"}, "status")
    assert run.named("config.directory")


def test_bad_account_email_is_skipped(world: World, volume: Path) -> None:
    """ACME_ACCOUNT_EMAIL=admin@ (mailcow's value: lenient) is one config.skipped warning and
    no contact; the cycle runs (checked without ordering)."""
    run = sidecar(base_env(world, volume) | {"ACME_ACCOUNT_EMAIL": "admin@"}, "check")
    assert run.code in (0, 1), run.stderr
    [skipped] = run.named("config.skipped")
    assert skipped["variable"] == "ACME_ACCOUNT_EMAIL" and skipped["value"] == "admin@"


def serials(volume: Path) -> dict[str, int]:
    return {name: leaf(volume / name / "cert.pem").serial_number for name in cert_dirs(volume)}


def test_force_renew(world: World, volume: Path) -> None:
    """force_renew re-issues every certificate and is deleted; with the CA down it stays and
    the old certificates stay; once the CA is back the next try (after the first step of the
    retry ladder) renews them all."""
    seed(world, ["one.test", "two.test"])
    env = base_env(world, volume) | {"ENABLE_SSL_SNI": "y", "ACME_RETRY_LADDER": "4s"}
    assert sidecar(env, "once").code == 0
    before = serials(volume)
    (volume / "force_renew").touch()
    world.pebble.stop()
    try:
        files = snapshot(volume)
        down = sidecar(env, "once")
        failed_by = time.monotonic()  # the failure is in the ledger by now
        assert down.code == 1
        assert down.named("force_renew.kept") and (volume / "force_renew").exists()
        assert serials(volume) == before
        assert {k: v for k, v in snapshot(volume).items() if not k.startswith("acme/")} == {
            k: v for k, v in files.items() if not k.startswith("acme/")
        }
    finally:
        world.pebble.start()
    early = sidecar(env, "once")  # right after the outage: the ledger says wait
    assert early.code == 1 and early.named("order.created") == [], early.stderr
    assert {e["certificate"] for e in early.named("cert.wait")} == set(before)
    # the ladder's first step (4 s) plus its jitter (10 %), counted from the failure
    time.sleep(max(0.0, failed_by + 4.4 - time.monotonic()))
    up = sidecar(env, "once")
    assert up.code == 0, up.stderr
    after = serials(volume)
    assert after.keys() == before.keys()
    assert all(after[k] != before[k] for k in before)
    assert not (volume / "force_renew").exists()


def test_removed_domain_san_reissues_sni_archives(world: World, volume: Path) -> None:
    """A removed domain leaves the SAN certificate; in SNI mode its directory is archived."""
    seed(world, ["one.test", "two.test"])
    san = base_env(world, volume)
    assert sidecar(san, "once").code == 0
    seed(world, ["one.test"])
    assert sidecar(san, "once").code == 0
    assert "two.test" not in (volume / HOST / "domains").read_text()
    assert list((volume / "backups" / HOST).iterdir())

    sni_volume = volume.parent / "sni"
    sni_volume.mkdir()
    sni = base_env(world, sni_volume) | {"ENABLE_SSL_SNI": "y"}
    seed(world, ["one.test", "two.test"])
    assert sidecar(sni, "once").code == 0
    assert "autodiscover.two.test" in cert_dirs(sni_volume)
    world.mariadb.execute("UPDATE domain SET backupmx = 1 WHERE domain = 'two.test'")
    run = sidecar(sni, "once")
    assert run.code == 0, run.stderr
    assert "autodiscover.two.test" not in cert_dirs(sni_volume)
    archived = list((sni_volume / "backups" / "autodiscover.two.test").iterdir())
    assert len(archived) == 1 and (archived[0] / "cert.pem").is_file()
    assert run.named("cert.archived")


def test_flaky_lookup_changes_nothing_until_grace_ends(
    world: World, volume: Path, dns_overrides: list[str]
) -> None:
    """One failed lookup of a certified name changes nothing; after the grace it is dropped."""
    seed(world, ["one.test"])
    env = base_env(world, volume)
    assert sidecar(env, "once").code == 0
    point(world, dns_overrides, "autoconfig.one.test", "198.51.100.9")
    files = snapshot(volume)
    run = sidecar(env, "once")
    assert run.code == 0, run.stderr
    assert run.named("order.created") == [] and run.named("service.restarted") == []
    assert {k: v for k, v in snapshot(volume).items() if k != "acme/state.json"} == {
        k: v for k, v in files.items() if k != "acme/state.json"
    }
    assert "autoconfig.one.test" in (volume / HOST / "domains").read_text()
    late = sidecar(env | {"ACME_NAME_GRACE": "0s"}, "once")
    assert late.code == 0, late.stderr
    assert "autoconfig.one.test" not in (volume / HOST / "domains").read_text()


def test_name_the_ca_cannot_validate_is_dropped(
    world: World, volume: Path, dns_overrides: list[str]
) -> None:
    """A name Pebble cannot validate is dropped from the order; the rest is issued at once,
    and the name is not ordered again on the next cycle."""
    seed(world, ["one.test", "two.test"])
    point(world, dns_overrides, "autoconfig.two.test", "127.0.0.2")  # nothing listens there
    env = base_env(world, volume) | {"SKIP_IP_CHECK": "y", "SKIP_HTTP_VERIFICATION": "y"}
    run = sidecar(env, "once")
    assert run.code == 1  # a wanted name is missing
    rejected = run.named("name.rejected")
    assert [r["name"] for r in rejected] == ["autoconfig.two.test"]
    assert "127.0.0.2" in rejected[0]["reason"] or "connect" in rejected[0]["reason"].lower()
    domains = (volume / HOST / "domains").read_text().split()
    assert "autoconfig.two.test" not in domains and "autodiscover.two.test" in domains
    again = sidecar(env, "once")
    assert again.code == 0, again.stderr
    assert again.named("order.created") == []


def test_150_names_make_two_certificates(world: World, volume: Path) -> None:
    """150 names in SAN mode produce two certificates, each within the 100-name limit."""
    domains = [f"d{i:02}.test" for i in range(50)]
    seed(world, domains, mta_sts=domains)
    run = sidecar(base_env(world, volume), "once", timeout=300)
    assert run.code == 0, run.stderr[-3000:]
    dirs = cert_dirs(volume)
    sizes = sorted(len(d.split()) for d in dirs.values())
    assert sizes == [51, 100] and sum(sizes) == 151
    assert dirs[HOST].split()[0] == HOST


def test_caa_forbidding_the_ca_skips_the_name(
    world: World, volume: Path, dns_overrides: list[str]
) -> None:
    """A CAA record that does not name the CA skips the name, with the record in the log."""
    seed(world, ["one.test", "two.test"])
    world.dns.add_caa("two.test", [{"tag": "issue", "value": "otherca.example"}])
    dns_overrides.append("two.test")
    env = base_env(world, volume) | {"ACME_CAA_IDENTITIES": "pebble.example"}
    world.dns.add_caa("one.test", [{"tag": "issue", "value": "pebble.example"}])
    dns_overrides.append("one.test")
    run = sidecar(env, "check")
    skipped = {e["name"]: e["reason"] for e in run.named("name.skipped")}
    assert "otherca.example" in skipped["autodiscover.two.test"]
    assert "autodiscover.one.test" not in skipped


def mailcow_volume(root: Path) -> tuple[bytes, bytes]:
    """A volume laid out by acme-mailcow: RSA account and domain keys, one SAN cert dir."""

    def rsa_pem() -> bytes:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )

    (root / "acme").mkdir()
    account, key = rsa_pem(), rsa_pem()
    (root / "acme" / "account.pem").write_bytes(account)
    (root / "acme" / "key.pem").write_bytes(key)
    return account, key


def test_acme_mailcow_volume_is_adopted(world: World, volume: Path) -> None:
    """A volume written by acme-mailcow keeps its account and key and is not re-ordered."""
    seed(world, ["one.test"])
    account, key = mailcow_volume(volume)
    env = base_env(world, volume)
    first = sidecar(env, "once")  # a certificate issued with acme-mailcow's RSA keys
    assert first.code == 0, first.stderr
    # make it look exactly like acme-mailcow left it: an acme.csr, no state file, old backups
    (volume / HOST / "acme.csr").write_text("-----BEGIN CERTIFICATE REQUEST-----\n")
    (volume / "acme" / "state.json").unlink(missing_ok=True)
    (volume / "dhparams.pem").write_text("dh")
    files = snapshot(volume)
    second = sidecar(env, "once")
    assert second.code == 0, second.stderr
    assert second.named("order.created") == []
    assert (volume / "acme" / "account.pem").read_bytes() == account
    assert (volume / "acme" / "key.pem").read_bytes() == key
    assert {k: v for k, v in snapshot(volume).items() if k != "acme/state.json"} == {
        k: v for k, v in files.items() if k != "acme/state.json"
    }
    pub = serialization.load_pem_private_key(key, None).public_key()
    der, spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert leaf(volume / HOST / "cert.pem").public_key().public_bytes(der, spki) == (
        pub.public_bytes(der, spki)
    )


def test_new_domain_and_sighup_start_a_cycle(world: World, volume: Path) -> None:
    """The daemon notices a new domain by polling the database, and SIGHUP starts a cycle."""
    seed(world, ["one.test"])
    env = base_env(world, volume) | {"ACME_DB_POLL": "1"}
    daemon = Daemon(env)
    try:
        daemon.wait_for("cycle.done")
        world.mariadb.execute("INSERT INTO domain (domain) VALUES ('two.test')")
        daemon.wait_for("domains.changed")
        daemon.wait_for("cycle.done")
        assert "autodiscover.two.test" in (volume / HOST / "domains").read_text()
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for("daemon.woken")
        daemon.wait_for("cycle.done")
    finally:
        stopped = daemon.stop()
    assert stopped == 0


def test_failing_hostname_never_loses_the_default_certificate(
    world: World, volume: Path, dns_overrides: list[str]
) -> None:
    """Past its grace period a failing hostname does not make another name the default
    certificate's first name: the server certificate is kept as it is, and the log says why."""
    seed(world, ["one.test"])
    env = base_env(world, volume)
    assert sidecar(env, "once").code == 0
    files = snapshot(volume)
    point(world, dns_overrides, HOST, "198.51.100.9")
    run = sidecar(env | {"ACME_NAME_GRACE": "0s"}, "once")
    assert run.named("order.created") == [] and run.named("cert.archived") == []
    assert any(HOST in n["note"] for n in run.named("plan.note"))
    assert {k: v for k, v in snapshot(volume).items() if not k.startswith("acme/")} == {
        k: v for k, v in files.items() if not k.startswith("acme/")
    }
    assert cert_dirs(volume)[HOST].split()[0] == HOST


def test_quiet_cycle_reuses_recent_verdicts(
    world: World, volume: Path, dns_overrides: list[str]
) -> None:
    """By default a name validated recently, in a certificate that is not due, is not checked
    again (the quiet cycle does no DNS, HTTP or ACME work for it); a new name always is."""
    seed(world, ["one.test"])
    env = base_env(world, volume) | {"ACME_REVALIDATE_AFTER": "12h"}
    assert sidecar(env, "once").code == 0
    point(world, dns_overrides, "autoconfig.one.test", "198.51.100.9")
    quiet = sidecar(env, "once")
    assert quiet.code == 0, quiet.stderr
    assert quiet.named("name.accepted") == [] and quiet.named("name.skipped") == []
    assert quiet.named("names.reused")[0]["names"] == 3
    dns_overrides.remove("autoconfig.one.test")
    world.dns.clear_a("autoconfig.one.test")
    world.mariadb.execute("INSERT INTO domain (domain) VALUES ('two.test')")
    grown = sidecar(env, "once")
    checked = {e["name"] for e in grown.named("name.accepted") + grown.named("name.skipped")}
    # the certificate must change (new names), so all its names are checked afresh
    assert {"autodiscover.two.test", "autoconfig.two.test", "autoconfig.one.test"} <= checked
    assert "autodiscover.two.test" in (volume / HOST / "domains").read_text()
