"""Issue #14, must-show 4 (review N3): the DNS-01 CNAME rule against real BIND and Pebble. The
default provider (dns_nsupdate, one TSIG key) can write every BIND zone; a tenant's CNAME at
``_acme-challenge.<name>`` into a zone with no ``[zone …]`` section is refused and nothing is
written into that zone, while one into a zone ``ACME_DNS_ALIAS_ZONES`` lists is followed and
the certificate is issued. (A CNAME into a zone with its own section: test_dns01.py's
``test_cname_delegation_from_bind_into_powerdns``.)"""

from __future__ import annotations

from pathlib import Path

from tests.integration.dns01_env import HOST, dns01_env, nsupdate_lines
from tests.integration.sidecar import cert_dirs, sidecar
from tests.world import authdns
from tests.world.bind import Bind
from tests.world.mariadb import MariaDB
from tests.world.pebble import Pebble

TENANT = "bind-other.test"  # the tenant's name: its DNS is the tenant's
ADMIN_ZONE = "bind-zone.test"  # a zone of the admin the default provider's key can write
CHALLENGE = f"_acme-challenge.{TENANT}"


def _serial(bind: Bind, zone: str) -> int:
    """The SOA serial of ``zone`` as BIND has it now (every update raises it)."""
    [soa] = authdns.answer_texts(authdns.query(bind.server, zone, "SOA"), "SOA")
    return int(soa.split()[2])


def _env(
    tmp: Path, mariadb: MariaDB, pebble: Pebble, bind: Bind, aliases: str = ""
) -> dict[str, str]:
    """The default provider alone (nsupdate to BIND: every BIND zone), the tenant's name."""
    return dns01_env(
        tmp,
        mariadb,
        pebble,
        bind,
        provider="dns_nsupdate",
        conf=nsupdate_lines(bind),
        ADDITIONAL_SAN=TENANT,
        AUTODISCOVER_SAN="n",
        ACME_DNS_ALIAS_ZONES=aliases,
    )


def test_a_cname_into_a_zone_without_a_section_is_refused(
    tmp_path: Path, mariadb: MariaDB, dns01_pebble: Pebble, bind_server: Bind
) -> None:
    """Review e8 against BIND: the tenant points its _acme-challenge at the admin's DKIM
    selector. One dns01.cname_refused line names the name, the target and the two ways to
    allow it; the admin's zone gets no update at all (its SOA serial and the DKIM record are
    unchanged); the hostname's certificate is still issued, without the tenant's name."""
    selector = f"sel1._domainkey.{ADMIN_ZONE}"
    dkim = "v=DKIM1; k=rsa; p=MIIBIjANBgkq"
    bind_server.add_txt(selector, dkim)
    bind_server.add_record(CHALLENGE, "CNAME", selector + ".")
    try:
        before = _serial(bind_server, ADMIN_ZONE)
        env = _env(tmp_path, mariadb, dns01_pebble, bind_server)
        run = sidecar(env, "once")
        after = _serial(bind_server, ADMIN_ZONE)
        bind_server.flush()
        dkim_after = bind_server.txt(selector)
    finally:
        bind_server.delete_rrset(CHALLENGE, "CNAME")
        bind_server.delete_rrset(selector, "TXT")
    # refused at validation: one name.skipped line, never ordered, the cycle ends ok
    assert run.code == 0 and run.named("cycle.done"), run.stderr[-3000:]
    assert cert_dirs(Path(env["ACME_CERT_DIR"])) == {HOST: HOST}
    [skipped] = [e for e in run.named("name.skipped") if e["name"] == TENANT]
    assert selector in skipped["reason"] and "[zone …] section" in skipped["reason"]
    assert "ACME_DNS_ALIAS_ZONES" in skipped["reason"]
    assert not run.named("dns01.cname_refused")  # the responder's own guard was not needed
    # the hostname's record only
    published = {e["records"] for e in run.named("dns01.published")}
    assert published == {f"_acme-challenge.{HOST}"}
    assert after == before  # not one update reached the admin's zone
    assert dkim_after == [dkim]
    assert not run.named("name.rejected")  # never reached the CA


def test_a_cname_into_an_alias_zone_is_followed(
    tmp_path: Path, mariadb: MariaDB, dns01_pebble: Pebble, bind_server: Bind
) -> None:
    """ACME_DNS_ALIAS_ZONES=bind-zone.test: the same kind of CNAME, into a zone the admin
    listed, is followed; the default provider writes the TXT record there, Pebble validates
    through the CNAME, the certificate holds the tenant's name, and the record is removed."""
    target = f"delegated-{TENANT}.{ADMIN_ZONE}"
    bind_server.add_record(CHALLENGE, "CNAME", target + ".")
    try:
        before = _serial(bind_server, ADMIN_ZONE)
        env = _env(tmp_path, mariadb, dns01_pebble, bind_server, aliases=f" {ADMIN_ZONE} ")
        run = sidecar(env, "once")
        after = _serial(bind_server, ADMIN_ZONE)
        bind_server.flush()
        left = bind_server.txt(target)
    finally:
        bind_server.delete_rrset(CHALLENGE, "CNAME")
    assert run.code == 0, run.stderr[-3000:]
    assert cert_dirs(Path(env["ACME_CERT_DIR"])) == {HOST: f"{HOST} {TENANT}"}
    assert not run.named("dns01.cname_refused")
    zones = {e["records"]: e["zone"] for e in run.named("dns01.published")}
    assert zones == {f"_acme-challenge.{HOST}": "example.test", target: ADMIN_ZONE}
    assert after > before  # written there (and removed again: two updates)
    assert left == []
    assert [e["zones"] for e in run.named("dns01.alias_zones")] == [ADMIN_ZONE]
