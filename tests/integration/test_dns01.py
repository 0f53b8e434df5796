"""Issue #10: DNS-01 against the real DNS-01 world: Pebble validating through BIND, updates to
BIND (RFC 2136, TSIG) and to PowerDNS (API through dns-lexicon), faults each with one clear
message while the other certificates are still issued, an unknown plugin that runs on, and a
volume of mailcow's acme.sh DNS-01 setup taken over with its keys."""

from __future__ import annotations

import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    load_pem_private_key,
)

from tests.integration.acmesh_volume import mailcow_dns01_volume
from tests.integration.acmesh_volume import spki as _spki
from tests.integration.dns01_env import (
    HOST,
    challenge_txt,
    dns01_env,
    nsupdate_lines,
    pdns_lines,
)
from tests.integration.sidecar import Daemon, cert_dirs, sidecar
from tests.world.bind import Bind
from tests.world.mariadb import MariaDB
from tests.world.pebble import Pebble
from tests.world.powerdns import PowerDNS


def _sans(path: Path) -> list[str]:
    leaf = x509.load_pem_x509_certificates(path.read_bytes())[0]
    ext = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return sorted(ext.value.get_values_for_type(x509.DNSName))


def test_wildcard_over_bind_with_tsig(
    tmp_path: Path, mariadb: MariaDB, dns01_pebble: Pebble, bind_server: Bind
) -> None:
    """*.example.test and example.test issued through TSIG-signed updates to BIND, with the
    dns-01.conf at 0644 as mailcow creates it (used, one warning giving the chmod); the TXT
    records are gone afterwards; names the wildcard covers (the hostname, www) not listed."""
    env = dns01_env(
        tmp_path,
        mariadb,
        dns01_pebble,
        bind_server,
        provider="dns_nsupdate",
        conf=nsupdate_lines(bind_server),
        ADDITIONAL_SAN="*.example.test,example.test,www.example.test",
        AUTODISCOVER_SAN="n",
    )
    began = time.monotonic()
    run = sidecar(env, "once")
    took = time.monotonic() - began
    assert run.code == 0, run.stderr[-3000:]
    conf = Path(env["ACME_DNS_CONFIG_FILE"])
    assert conf.stat().st_mode & 0o777 == 0o644  # left as it is
    [readable] = run.named("dns01.config_readable")
    assert readable["problem"].endswith(f"it is used all the same: run chmod 600 {conf}")
    assert not run.named("dns01.config_refused")
    cert_dir = Path(env["ACME_CERT_DIR"])
    assert cert_dirs(cert_dir) == {HOST: "*.example.test example.test"}
    assert _sans(cert_dir / HOST / "cert.pem") == ["*.example.test", "example.test"]
    covered = {e["name"] for e in run.named("name.covered")}
    assert covered == {HOST, "www.example.test"}
    assert len(run.named("dns01.published")) == 1  # one record (two values), one update
    assert run.named("dns01.propagated")
    assert run.named("dns01.removed")
    assert challenge_txt(bind_server, "example.test") == []
    assert "secret" not in run.stderr.lower() or bind_server.key_secret not in run.stderr
    print(f"\nDNS-01 over BIND: {took:.1f}s for one order of 2 names (wildcard)")


def test_wildcard_over_powerdns_api(
    tmp_path: Path,
    mariadb: MariaDB,
    dns01_pebble: Pebble,
    bind_server: Bind,
    powerdns: PowerDNS,
) -> None:
    """The same through PowerDNS's API (dns-lexicon's powerdns provider)."""
    env = dns01_env(
        tmp_path,
        mariadb,
        dns01_pebble,
        bind_server,
        provider="dns_pdns",
        conf=pdns_lines(powerdns),
        MAILCOW_HOSTNAME="mail.pdns-zone.test",
        ADDITIONAL_SAN="*.pdns-zone.test,pdns-zone.test",
        AUTODISCOVER_SAN="n",
    )
    run = sidecar(env, "once")
    assert run.code == 0, run.stderr[-3000:]
    cert_dir = Path(env["ACME_CERT_DIR"])
    assert cert_dirs(cert_dir) == {"mail.pdns-zone.test": "*.pdns-zone.test pdns-zone.test"}
    assert {e["name"] for e in run.named("name.covered")} == {"mail.pdns-zone.test"}
    assert powerdns.txt("_acme-challenge.pdns-zone.test") == []
    assert powerdns.api_key not in run.stderr


def test_credentials_from_the_environment_and_acme_sh_account_conf(
    tmp_path: Path,
    mariadb: MariaDB,
    dns01_pebble: Pebble,
    bind_server: Bind,
    powerdns: PowerDNS,
) -> None:
    """As mailcow may leave them: PDNS_Token in the container's environment, PDNS_Url and
    PDNS_ServerId saved by acme.sh in acme-sh/account.conf, a stale token there and only
    PDNS_Ttl in dns-01.conf: the environment's token wins, the certificate is issued through
    PowerDNS, and the start names each variable's source, never a value."""
    env = dns01_env(
        tmp_path,
        mariadb,
        dns01_pebble,
        bind_server,
        provider="dns_pdns",
        conf="PDNS_Ttl=1\n",
        MAILCOW_HOSTNAME="mail.pdns-zone.test",
        ADDITIONAL_SAN="",
        AUTODISCOVER_SAN="n",
        PDNS_Token=powerdns.api_key,
    )
    home = Path(env["ACME_CERT_DIR"]) / "acme-sh"
    home.mkdir()
    (home / "account.conf").write_text(
        f"LOG_FILE='{home}/acme.sh.log'\n"
        f"SAVED_PDNS_Url='{powerdns.api_url}'\n"
        f"SAVED_PDNS_ServerId='{powerdns.server_id}'\n"
        "SAVED_PDNS_Token='stale-token'\n"
    )
    run = sidecar(env, "once")
    assert run.code == 0, run.stderr[-3000:]
    assert cert_dirs(Path(env["ACME_CERT_DIR"])) == {"mail.pdns-zone.test": "mail.pdns-zone.test"}
    [line] = run.named("dns01.provider")
    assert line["config"] == (
        "dns_pdns with PDNS_ServerId (account.conf) PDNS_Token (environment) PDNS_Ttl "
        "(dns-01.conf) PDNS_Url (account.conf)"
    )
    assert powerdns.txt("_acme-challenge.mail.pdns-zone.test") == []
    assert powerdns.api_key not in run.stderr and "stale-token" not in run.stderr


def test_two_zones_two_providers_one_cycle(
    tmp_path: Path,
    mariadb: MariaDB,
    dns01_pebble: Pebble,
    bind_server: Bind,
    powerdns: PowerDNS,
) -> None:
    """mailcow's dns-01.conf (dns_nsupdate for every zone) plus a [zone pdns-other.test]
    section on PowerDNS: one certificate over both zones, in one cycle."""
    conf = (
        "# mailcow's form: acme.sh's variables for ACME_DNS_PROVIDER\n"
        + nsupdate_lines(bind_server)
        + "\n[zone pdns-other.test]\nACME_DNS_PROVIDER=dns_pdns\n"
        + pdns_lines(powerdns)
    )
    env = dns01_env(
        tmp_path,
        mariadb,
        dns01_pebble,
        bind_server,
        provider="dns_nsupdate",
        conf=conf,
        domains=("bind-other.test", "pdns-other.test"),
        ADDITIONAL_SAN="",
    )
    run = sidecar(env, "once")
    assert run.code == 0, run.stderr[-3000:]
    names = cert_dirs(Path(env["ACME_CERT_DIR"]))[HOST].split()
    assert set(names) == {
        HOST,
        "autoconfig.bind-other.test",
        "autodiscover.bind-other.test",
        "autoconfig.pdns-other.test",
        "autodiscover.pdns-other.test",
    }
    providers = {e["provider"].split()[0] for e in run.named("dns01.published")}
    assert providers == {"dns_nsupdate", "dns_pdns"}
    for name in names:
        assert challenge_txt(bind_server, name) == [], name


def test_cname_delegation_from_bind_into_powerdns(
    tmp_path: Path,
    mariadb: MariaDB,
    dns01_pebble: Pebble,
    bind_server: Bind,
    powerdns: PowerDNS,
) -> None:
    """Review #10, acme-dns style: BIND's _acme-challenge.bind-other.test is a CNAME into
    PowerDNS's pdns-other.test; the record is written there by the [zone pdns-other.test]
    host (not by BIND's nsupdate), Pebble follows the CNAME, and it is removed afterwards."""
    target = "delegated-bind-other.pdns-other.test"
    challenge = "_acme-challenge.bind-other.test"
    bind_server.add_record(challenge, "CNAME", target + ".")
    try:
        conf = (
            nsupdate_lines(bind_server)
            + "\n[zone pdns-other.test]\nACME_DNS_PROVIDER=dns_pdns\n"
            + pdns_lines(powerdns)
        )
        env = dns01_env(
            tmp_path,
            mariadb,
            dns01_pebble,
            bind_server,
            provider="dns_nsupdate",
            conf=conf,
            ADDITIONAL_SAN="bind-other.test",
            AUTODISCOVER_SAN="n",
        )
        run = sidecar(env, "once")
        assert run.code == 0, run.stderr[-3000:]
        assert cert_dirs(Path(env["ACME_CERT_DIR"])) == {HOST: f"{HOST} bind-other.test"}
        published = {e["records"]: e["provider"].split()[0] for e in run.named("dns01.published")}
        assert published == {f"_acme-challenge.{HOST}": "dns_nsupdate", target: "dns_pdns"}
        assert powerdns.txt(target) == []  # removed from PowerDNS afterwards
        bind_server.flush()
        assert bind_server.txt(challenge) == []  # nothing was written beside the CNAME
    finally:
        bind_server.delete_rrset(challenge, "CNAME")


def test_faults_each_one_message_others_issued(
    tmp_path: Path,
    mariadb: MariaDB,
    dns01_pebble: Pebble,
    bind_server: Bind,
    powerdns: PowerDNS,
) -> None:
    """SNI mode, one certificate per zone: a zone without credentials, a wrong TSIG key, an
    API answering 401, a propagation that never completes: each named in one clear line, and
    the hostname's certificate is issued all the same."""
    wrong_key = tmp_path / "wrong.key"
    wrong_key.write_text(
        'key "acme-test-key." {\n\talgorithm hmac-sha256;\n\tsecret "d3JvbmcgYnV0IHZhbGlk";\n};\n'
    )
    wrong_key.chmod(0o600)
    conf = (
        "[zone example.test]\nACME_DNS_PROVIDER=dns_nsupdate\n"
        + nsupdate_lines(bind_server)
        + "[zone stale-ns.test]\nACME_DNS_PROVIDER=dns_nsupdate\n"
        + nsupdate_lines(bind_server)
        + "[zone bind-other.test]\nACME_DNS_PROVIDER=dns_nsupdate\n"
        + nsupdate_lines(bind_server, wrong_key)
        + "[zone pdns-zone.test]\nACME_DNS_PROVIDER=dns_pdns\n"
        + pdns_lines(powerdns, token="not-the-key")
    )
    env = dns01_env(
        tmp_path,
        mariadb,
        dns01_pebble,
        bind_server,
        conf=conf,
        domains=("stale-ns.test", "bind-other.test", "pdns-zone.test", "pdns-other.test"),
        ENABLE_SSL_SNI="y",
        ACME_DNS_PROPAGATION_TIMEOUT="4s",
    )
    began = time.monotonic()
    run = sidecar(env, "once", timeout=300)
    took = time.monotonic() - began
    assert run.code == 1  # not every certificate is valid
    dirs = cert_dirs(Path(env["ACME_CERT_DIR"]))
    assert dirs == {HOST: HOST}, run.stderr[-3000:]
    skipped = {e["name"]: e["reason"] for e in run.named("name.skipped")}
    assert set(skipped) == {"autoconfig.pdns-other.test", "autodiscover.pdns-other.test"}
    assert all("ACME_DNS_PROVIDER is not set" in r for r in skipped.values())
    failed = {e["certificate"]: e["error"] for e in run.named("order.failed")}
    assert set(failed) == {
        "autodiscover.stale-ns.test",
        "autodiscover.bind-other.test",
        "autodiscover.pdns-zone.test",
    }, failed
    assert "did not reach every authoritative server" in failed["autodiscover.stale-ns.test"]
    assert "ns2.stale-ns.test" in failed["autodiscover.stale-ns.test"]
    assert "refused the TSIG key acme-test-key" in failed["autodiscover.bind-other.test"]
    assert "401" in failed["autodiscover.pdns-zone.test"]
    assert "PDNS_Token" in failed["autodiscover.pdns-zone.test"]
    updates = {e["zone"]: e["error"] for e in run.named("dns01.update_failed")}
    assert set(updates) == {"bind-other.test", "pdns-zone.test"}
    assert "not-the-key" not in run.stderr and bind_server.key_secret not in run.stderr
    assert challenge_txt(bind_server, "autoconfig.stale-ns.test") == []  # removed after failure
    print(f"\nfour faults + one issued certificate in one cycle: {took:.1f}s")


def test_unknown_plugin_runs_and_issues_nothing(
    tmp_path: Path, mariadb: MariaDB, dns01_pebble: Pebble, bind_server: Bind
) -> None:
    """ACME_DNS_PROVIDER=dns_unknown: the daemon starts, says once what is supported, orders
    nothing and keeps running (no exit, so no crash loop under restart: always)."""
    env = dns01_env(
        tmp_path,
        mariadb,
        dns01_pebble,
        bind_server,
        provider="dns_unknown",
        conf="SOME_Token=abc\n",
        ACME_CHECK_INTERVAL="3600",
    )
    daemon = Daemon(env)
    try:
        daemon.wait_for("cycle.nothing_valid", timeout=60)
        daemon.wait_for("cycle.done", timeout=30)  # the cycle ended; it sleeps until the next
        assert daemon.proc.poll() is None, "the daemon exited"
    finally:
        code = daemon.stop()
    seen = "".join(daemon.seen) + "".join(iter_queue(daemon))
    unusable = [line for line in seen.splitlines() if '"dns01.unusable"' in line]
    assert len(unusable) == 1, seen[-2000:]
    assert (
        "dns_unknown is not supported; nearest supported: dns_nsone, dns_duckdns, dns_pdns"
        in unusable[0]
    )
    assert '"order.created"' not in seen
    assert not cert_dirs(Path(env["ACME_CERT_DIR"]))
    assert code == 0


def iter_queue(daemon: Daemon) -> list[str]:
    """The lines the daemon wrote that were not awaited yet."""
    out: list[str] = []
    while not daemon.lines.empty():
        out.append(daemon.lines.get_nowait())
    return out


def test_mailcow_dns01_volume_keeps_its_keys(
    tmp_path: Path, mariadb: MariaDB, dns01_pebble: Pebble, bind_server: Bind
) -> None:
    """After the switch from mailcow's acme.sh DNS-01 the served certificate is new (from the
    CA) but on the same key (same SPKI: TLSA 3 1 1 pins hold), and acme.sh's account key is
    the account key (a CAA accounturi stays right)."""
    env = dns01_env(
        tmp_path,
        mariadb,
        dns01_pebble,
        bind_server,
        provider="dns_nsupdate",
        conf=nsupdate_lines(bind_server),
        ADDITIONAL_SAN="",
        AUTODISCOVER_SAN="n",
    )
    cert_dir = Path(env["ACME_CERT_DIR"])
    account_key, cert_key = mailcow_dns01_volume(cert_dir, dns01_pebble.directory_url)
    before = (cert_dir / "cert.pem").read_bytes()
    mailcow_keys = {n: (cert_dir / "acme" / n).read_bytes() for n in ("account.pem", "key.pem")}
    run = sidecar(env, "once")
    assert run.code == 0, run.stderr[-3000:]
    served = (cert_dir / "cert.pem").read_bytes()
    assert served != before
    leaf = x509.load_pem_x509_certificates(served)[0]
    old_key = load_pem_private_key(cert_key.read_bytes(), None)
    assert _spki(leaf) == _spki(old_key)
    assert _spki(leaf) == _spki(x509.load_pem_x509_certificates(before)[0])
    assert "old CA" not in leaf.issuer.rfc4514_string()
    ours = load_pem_private_key((cert_dir / "acme" / "account.pem").read_bytes(), None)
    assert _spki(ours) == _spki(load_pem_private_key(account_key.read_bytes(), None))
    assert [e["source"] for e in run.named("takeover.account_key")] == [
        str(account_key.relative_to(cert_dir))
    ]
    assert run.named("takeover.certificate_key")
    assert (cert_key.parent / f"{HOST}.key").read_bytes() == cert_key.read_bytes()  # untouched
    # mailcow's own (never served) RSA keys are kept in backups/acme/<stamp>/
    [backup] = (cert_dir / "backups" / "acme").iterdir()
    assert {n: (backup / n).read_bytes() for n in mailcow_keys} == mailcow_keys
    assert [e["path"] for e in run.named("takeover.backed_up")] == [
        "acme/key.pem",
        "acme/account.pem",
    ]
    again = sidecar(env, "once")  # taken over once: a second start changes nothing
    assert again.code == 0 and not again.named("takeover.backed_up")
    adopted = load_pem_private_key((cert_dir / "acme" / "key.pem").read_bytes(), None)
    assert _spki(adopted) == _spki(old_key)
