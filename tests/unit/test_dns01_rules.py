"""DNS-01's pure parts: wildcard coverage (label by label), routes, the dns-01.conf file and
its acme.sh variables, validation and planning with wildcards."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from acme_sidecar.config.dns01 import (
    DEFAULT_FILE,
    FileRead,
    LexiconConf,
    NsupdateConf,
    Section,
    chmod_hint,
    described,
    parse_file,
    provider_conf,
    read_file,
)
from acme_sidecar.config.settings import load_settings
from acme_sidecar.core.dns01 import Routes, challenge_name
from acme_sidecar.core.model import NameGroup, Verdict
from acme_sidecar.core.names import covers, drop_covered, holds
from acme_sidecar.core.plan import Shape, make_plan, wanted_specs
from acme_sidecar.core.validate import Caa, CaaLookup, IpPolicy, Lookup
from acme_sidecar.shell.lookups import validate_name
from tests.unit.fakes import FakeHttp, FakeResolver

NOW = datetime(2026, 11, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("wildcard", "name", "expected"),
    [
        ("*.example.org", "mail.example.org", True),
        ("*.example.org", "example.org", False),
        ("*.example.org", "a.mail.example.org", False),
        ("*.example.org", "mail.badexample.org", False),
        ("*.example.org", "mailexample.org", False),
        ("*.mail.example.org", "x.mail.example.org", True),
        ("*.example.org", "*.example.org", False),
        ("example.org", "mail.example.org", False),
    ],
)
def test_coverage_is_label_by_label(wildcard: str, name: str, expected: bool) -> None:
    """A wildcard covers exactly one label in place of its star, never by substring."""
    assert covers(wildcard, name) is expected


labels = st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True)
names = st.lists(labels, min_size=2, max_size=4).map(".".join)


@given(st.lists(st.one_of(names, names.map(lambda n: "*." + n)), max_size=12))
def test_drop_covered_leaves_no_covered_pair(listed: list[str]) -> None:
    """After dropping, no kept name is covered by a kept wildcard; each dropped one is."""
    kept, dropped = drop_covered(listed)
    assert not any(covers(w, n) for w in kept for n in kept)
    assert all(covers(by, n) and by in kept for n, by in dropped.items())
    assert all(holds(kept, n) for n in listed)


def test_challenge_name_of_a_wildcard_is_its_base() -> None:
    """RFC 8555 §8.4: *.example.org is validated at _acme-challenge.example.org."""
    assert challenge_name("*.example.org") == "_acme-challenge.example.org"
    assert challenge_name("mail.example.org") == "_acme-challenge.mail.example.org"


def test_routes_pick_the_closest_zone_label_by_label() -> None:
    """A section covers its zone and below; badexample.org is not in example.org."""
    routes = Routes(
        zones=(("example.org", None), ("sub.example.org", "no key"), ("other.net", None)),
        default="ACME_DNS_PROVIDER is not set",
    )
    assert routes.refusal("mail.example.org") is None
    assert routes.refusal("*.example.org") is None
    assert (
        routes.refusal("a.sub.example.org") == "[zone sub.example.org] of the DNS-01 file: no key"
    )
    assert routes.refusal("mail.badexample.org") == "ACME_DNS_PROVIDER is not set"


MAILCOW_FILE = """\
# mailcow: data/conf/acme/dns-01.conf
export PDNS_Url="http://127.0.0.1:8081"
PDNS_ServerId=localhost
PDNS_Token='secret-token'
PDNS_Ttl=60

[zone other.example]
ACME_DNS_PROVIDER=dns_nsupdate
NSUPDATE_SERVER=ns1.other.example,ns2.other.example
NSUPDATE_SERVER_PORT=5353
NSUPDATE_KEY=/etc/acme/other.key
NSUPDATE_ZONE=other.example.

[zone CF.Example]
ACME_DNS_PROVIDER=dns_cf
CF_Token=cf-secret
CF_Zone_ID=abc123
this line is wrong
"""


def test_mailcow_file_with_sections_maps_acme_sh_variables() -> None:
    """Top lines for ACME_DNS_PROVIDER, sections with their own plugin; quotes and export
    as a shell would read them; a bad line is reported by number, never by value."""
    parsed = parse_file(MAILCOW_FILE, "dns_pdns")
    assert parsed.problems == ("line 18: not KEY=VALUE nor [zone NAME]",)
    assert provider_conf(parsed.default) == LexiconConf(
        "dns_pdns",
        "powerdns",
        {"pdns_server": "http://127.0.0.1:8081", "pdns_server_id": "localhost",
         "auth_token": "secret-token"},
        ttl=60,
    )  # fmt: skip
    other, cf = parsed.zones
    assert other.zone == "other.example" and cf.zone == "cf.example"
    assert provider_conf(other) == NsupdateConf(
        servers=("ns1.other.example", "ns2.other.example"),
        port=5353,
        key_file=Path("/etc/acme/other.key"),
        zone="other.example",
    )
    assert provider_conf(cf) == LexiconConf(
        "dns_cf", "cloudflare", {"auth_token": "cf-secret", "zone_id": "abc123"}
    )
    assert "cf-secret" not in described(cf) and "CF_Token" in described(cf)
    assert "cf-secret" not in repr(provider_conf(cf))


@pytest.mark.parametrize(
    ("plugin", "values", "problem"),
    [
        ("dns_unknown", {}, "ACME_DNS_PROVIDER dns_unknown is not supported; nearest supported: "
         "dns_nsone, dns_duckdns, dns_pdns (68 in all, listed in the README's DNS-01 provider "
         "table)"),
        ("", {}, "ACME_DNS_PROVIDER (empty) is not supported"),
        ("dns_pdns", {"PDNS_Url": "http://x"}, "dns_pdns needs PDNS_Token (in the DNS-01 file, "
         "the container's environment or acme.sh's account.conf)"),
        ("dns_cf", {}, "dns_cf needs CF_Token or CF_Key"),
        ("dns_nsupdate", {"NSUPDATE_SERVER_PORT": "99999"}, "NSUPDATE_SERVER_PORT='99999'"),
        ("dns_pdns", {"PDNS_Url": "u", "PDNS_Token": "t", "PDNS_Ttl": "x"}, "PDNS_Ttl='x'"),
    ],
)  # fmt: skip
def test_unusable_sections_say_why(plugin: str, values: dict[str, str], problem: str) -> None:
    """Each refusal names the plugin or variable and what is valid."""
    result = provider_conf(Section("", plugin, values))
    assert isinstance(result, str) and result.startswith(problem)


def test_nsupdate_defaults_are_acme_sh_s() -> None:
    """dns_nsupdate without variables: localhost:53, no key, zone found by SOA."""
    assert provider_conf(Section("", "dns_nsupdate")) == NsupdateConf(("localhost",))


def test_world_readable_file_is_used_with_the_chmod_to_run(tmp_path: Path) -> None:
    """mailcow creates the file 0644: it is used, with a warning that gives the exact chmod;
    0640 has no warning; absent is no error."""
    path = tmp_path / "dns-01.conf"
    assert read_file(path) == FileRead(None)
    path.write_text("CF_Token=x\n")
    path.chmod(0o644)
    read = read_file(path)
    assert read.text == "CF_Token=x\n" and read.problem is None
    assert read.warning is not None and read.warning.endswith(f"run chmod 600 {path}")
    assert "-rw-r--r--" in read.warning
    path.chmod(0o640)
    assert read_file(path) == FileRead("CF_Token=x\n")


def test_mailcow_s_own_path_gets_the_host_command_too() -> None:
    """For /etc/acme/dns-01.conf the warning also names the file as the host has it."""
    assert chmod_hint(DEFAULT_FILE) == (
        "chmod 600 /etc/acme/dns-01.conf (on the host, in the mailcow directory: "
        "chmod 600 data/conf/acme/dns-01.conf)"
    )


def test_dns_challenge_is_a_setting_not_an_exit() -> None:
    """ACME_DNS_CHALLENGE=y loads (it exited 2 before), with mailcow's file path default."""
    settings = load_settings(
        {"MAILCOW_HOSTNAME": "mail.example.org", "ACME_DNS_CHALLENGE": "y",
         "ACME_DNS_PROVIDER": "dns_unknown", "ACME_DNS_PROPAGATION_TIMEOUT": "2m"}
    )  # fmt: skip
    assert settings.acme_dns_challenge
    assert str(settings.acme_dns_config_file) == "/etc/acme/dns-01.conf"
    assert settings.acme_dns_propagation_timeout == 120
    assert settings.acme_dns_auth_port == 53


def test_mailcow_s_dns_xxx_placeholder_is_no_provider() -> None:
    """Review #9: mailcow's compose defaults ACME_DNS_PROVIDER to dns_xxx: that means unset."""
    settings = load_settings(
        {"MAILCOW_HOSTNAME": "mail.example.org", "ACME_DNS_PROVIDER": " dns_xxx "}
    )
    assert settings.acme_dns_provider == ""


class CnameResolver(FakeResolver):
    """A resolver where one challenge name is a CNAME and CAA forbids nothing."""

    def lookup(self, name: str, rdtype: str) -> Lookup:
        if rdtype == "CNAME" and name == "_acme-challenge.mail.nocreds.test":
            return Lookup(("mail.acme.delegated.test.",))
        if rdtype == "CNAME":
            return Lookup()
        return Lookup(("203.0.113.9",))  # not this server: DNS-01 does not care


ROUTES = Routes(zones=(("delegated.test", None), ("example.org", None)), default="no default")


def test_dns01_skips_ip_and_http_checks() -> None:
    """Under DNS-01 the IP comparison and HTTP self-check do not run; a routed name passes."""
    policy = IpPolicy(ipv4="192.0.2.1", ipv6=None, dns01=ROUTES)
    verdict = validate_name("mail.example.org", CnameResolver(), policy, FakeHttp())
    assert verdict.ok and "DNS-01" in verdict.reason


def test_dns01_still_checks_caa() -> None:
    """CAA applies under DNS-01 too."""

    class Forbidding(CnameResolver):
        def lookup_caa(self, name: str) -> CaaLookup:
            return CaaLookup((Caa(0, "issue", "other.ca"),))

    policy = IpPolicy(ipv4=None, ipv6=None, dns01=ROUTES, ca_identities=("pebble.test",))
    verdict = validate_name("mail.example.org", Forbidding(), policy, None)
    assert not verdict.ok and "CAA" in verdict.reason


def test_dns01_follows_a_delegation_to_a_configured_zone() -> None:
    """A name with no section of its own passes when its _acme-challenge CNAME points into one."""
    policy = IpPolicy(ipv4=None, ipv6=None, dns01=ROUTES)
    assert validate_name("mail.nocreds.test", CnameResolver(), policy, None).ok
    refused = validate_name("www.nocreds.test", CnameResolver(), policy, None)
    assert not refused.ok and refused.reason == "DNS-01 cannot answer for it: no default"


def test_wildcard_without_dns01_is_refused_clearly() -> None:
    """HTTP-01 cannot validate a wildcard: the verdict says to turn on DNS-01."""
    verdict = validate_name("*.example.org", FakeResolver(), IpPolicy("192.0.2.1", None), None)
    assert not verdict.ok and "ACME_DNS_CHALLENGE=y" in verdict.reason


def _ok(*names: str) -> dict[str, Verdict]:
    return {n: Verdict(n, True, "ok") for n in names}


def test_plan_drops_names_the_wildcard_covers_and_keeps_the_directory() -> None:
    """mailcow's documented example: the hostname under *.example.org is not listed again
    (the CA would refuse the order), but the server certificate keeps its directory."""
    groups = (
        NameGroup("mail.example.org", ("mail.example.org", "*.example.org", "example.org"), True),
        NameGroup("example.org", ("autodiscover.example.org", "autoconfig.example.org")),
        NameGroup("other.test", ("autodiscover.other.test",)),
    )
    verdicts = _ok(*(n for g in groups for n in g.names))
    [spec] = wanted_specs(groups, verdicts, Shape())
    assert spec.name == "mail.example.org"
    assert spec.domains == ("*.example.org", "autodiscover.other.test", "example.org")
    plan = make_plan(groups, verdicts, {}, shape=Shape(), force=False, now=NOW)
    assert plan.default_name == "mail.example.org" and not plan.notes


def test_sni_certificates_keep_their_own_names() -> None:
    """In SNI mode a domain's certificate is another certificate: its names stay listed."""
    groups = (
        NameGroup("mail.example.org", ("mail.example.org", "*.example.org"), True),
        NameGroup("example.org", ("autodiscover.example.org",)),
    )
    specs = wanted_specs(groups, _ok(*(n for g in groups for n in g.names)), Shape(sni=True))
    assert [s.domains for s in specs] == [("*.example.org",), ("autodiscover.example.org",)]


def test_secrets_never_appear_in_a_repr() -> None:
    """Review #8: a Section (and what is built from it) printed never shows PDNS_Token."""
    parsed = parse_file(
        "PDNS_Url=http://ns:8081\nPDNS_ServerId=localhost\nPDNS_Token=s3cr3t\n", "dns_pdns"
    )
    assert "s3cr3t" not in repr(parsed) and "s3cr3t" not in repr(parsed.default)
    assert "s3cr3t" not in repr(provider_conf(parsed.default))


def test_dns01_refuses_a_cname_into_a_zone_without_a_section_at_validation() -> None:
    """A tenant's CNAME into a zone the default provider writes (no section, not an alias
    zone) fails validation: the name is skipped before any order, with the rule's reason."""

    class Tenant(CnameResolver):
        def lookup(self, name: str, rdtype: str) -> Lookup:
            if rdtype == "CNAME" and name == "_acme-challenge.autodiscover.tenant.test":
                return Lookup(("sel1._domainkey.admin.test.",))
            return super().lookup(name, rdtype)

    routes = Routes(zones=(("delegated.test", None),), default=None)
    policy = IpPolicy(ipv4=None, ipv6=None, dns01=routes)
    refused = validate_name("autodiscover.tenant.test", Tenant(), policy, None)
    assert not refused.ok and "ACME_DNS_ALIAS_ZONES" in refused.reason
    allowed = IpPolicy(None, None, dns01=Routes(routes.zones, None, aliases=("admin.test",)))
    assert validate_name("autodiscover.tenant.test", Tenant(), allowed, None).ok
