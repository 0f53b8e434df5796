"""Issue #14 (review N3): a CNAME at ``_acme-challenge.<name>`` is followed only into a zone
with a ``[zone …]`` section or one of ``ACME_DNS_ALIAS_ZONES``; the rule as a table, the
setting, and the responder writing nothing for a refused CNAME (one ``dns01.cname_refused``)."""

from __future__ import annotations

import threading
from unittest.mock import ANY

import pytest
from structlog.testing import capture_logs

from acme_sidecar.adapters.dns01.responder import Dns01Responder, Dns01Router, Target
from acme_sidecar.config.dns01 import parse_zone_list
from acme_sidecar.config.settings import load_settings
from acme_sidecar.core.dns01 import Routes, delegation
from acme_sidecar.core.errors import ConfigError, NamesRejected
from tests.unit.test_dns01_adapters import KEY, FakeLookups, FakeProvider, authz, responder

CH = "_acme-challenge.autodiscover.tenant.example"


@pytest.mark.parametrize(
    ("chain", "sections", "aliases", "allowed", "target"),
    [
        # no CNAME: nothing to decide
        ((CH,), (), (), True, CH),
        # review e8: into the default provider's zone (a DKIM selector): refused
        ((CH, "sel1._domainkey.admin.example"), (), (), False, "sel1._domainkey.admin.example"),
        # into a zone with its own section: followed
        ((CH, "x.acme.net"), ("acme.net",), (), True, "x.acme.net"),
        # below a section's zone counts; a look-alike suffix does not
        ((CH, "a.b.acme.net"), ("acme.net",), (), True, "a.b.acme.net"),
        ((CH, "x.badacme.net"), ("acme.net",), (), False, "x.badacme.net"),
        # a section for a sub-zone does not cover its parent
        ((CH, "x.acme.net"), ("sub.acme.net",), (), False, "x.acme.net"),
        # listed in ACME_DNS_ALIAS_ZONES: followed; the zone apex itself too
        ((CH, "x.acme.net"), (), ("acme.net",), True, "x.acme.net"),
        ((CH, "acme.net"), (), ("acme.net",), True, "acme.net"),
        # case and a final dot do not matter
        ((CH, "X.Acme.Net."), (), ("acme.net",), True, "X.Acme.Net."),
        # inside the name's own zone, that zone neither a section nor listed: refused
        ((CH, "_acme-challenge.tenant.example"), (), (), False, "_acme-challenge.tenant.example"),
        # ... allowed when it is one or the other
        ((CH, "_acme-challenge.tenant.example"), ("tenant.example",), (), True, None),
        ((CH, "_acme-challenge.tenant.example"), (), ("tenant.example",), True, None),
        # only the end of a chain is written, so only the end counts
        ((CH, "x.acme.net", "y.admin.example"), ("acme.net",), (), False, "y.admin.example"),
        ((CH, "y.admin.example", "x.acme.net"), (), ("acme.net",), True, "x.acme.net"),
    ],
)
def test_cname_rule_table(
    chain: tuple[str, ...],
    sections: tuple[str, ...],
    aliases: tuple[str, ...],
    allowed: bool,
    target: str | None,
) -> None:
    """The end of the chain is allowed exactly when a section or an alias zone holds it."""
    rule = delegation(chain, sections, aliases)
    assert rule.allowed is allowed
    assert rule.target == (target or chain[-1])


def test_a_refusal_names_the_cname_its_target_and_the_two_ways_to_allow_it() -> None:
    """The reason says where the CNAME leads and what would make it allowed."""
    rule = delegation((CH, "sel1._domainkey.admin.example"), ("other.example",), ())
    assert not rule.allowed
    assert f"{CH} is a CNAME to sel1._domainkey.admin.example" in rule.reason
    assert "[zone …] section" in rule.reason and "ACME_DNS_ALIAS_ZONES" in rule.reason


def test_routes_count_an_unusable_section_as_a_section() -> None:
    """A section that cannot work still marks its zone as the admin's choice (the write then
    fails with that section's own problem); the default provider is never a section."""
    routes = Routes(zones=(("acme.net", "no key"),), default=None, aliases=("alias.example",))
    assert routes.delegation((CH, "x.acme.net")).allowed
    assert routes.delegation((CH, "x.alias.example")).allowed
    assert not routes.delegation((CH, "x.admin.example")).allowed


@pytest.mark.parametrize(
    ("text", "zones"),
    [
        ("", ()),
        ("acme.example.net", ("acme.example.net",)),
        (
            " Acme.Example.NET., b.example.org  c.example.com\tb.example.org",
            ("acme.example.net", "b.example.org", "c.example.com"),
        ),
        ("bücher.example", ("xn--bcher-kva.example",)),
    ],
)
def test_alias_zones_accept_commas_and_spaces(text: str, zones: tuple[str, ...]) -> None:
    """Zone names separated by commas or spaces, lower-cased, IDNA, duplicates once."""
    assert parse_zone_list(text) == zones


@pytest.mark.parametrize("bad", ["*.example.org", "net", "192.0.2.1", "a_b.example", "ex..ample"])
def test_a_bad_alias_zone_is_one_error_naming_the_setting(bad: str) -> None:
    """A value that is not a zone name stops the start with one message naming the setting,
    the entry and what is valid."""
    value = f"acme.example.net,{bad}"
    with pytest.raises(ConfigError) as caught:
        load_settings({"MAILCOW_HOSTNAME": "mail.example.org", "ACME_DNS_ALIAS_ZONES": value})
    message = str(caught.value)
    assert message.startswith("ACME_DNS_ALIAS_ZONES=")
    assert repr(bad) in message
    assert "is not a zone name" in message and "such as acme.example.org" in message


def _lookups() -> FakeLookups:
    return FakeLookups(
        zones=("tenant.example", "admin.example", "acme.net", "mail.example"),
        cnames={CH: "sel1._domainkey.admin.example"},
    )


def test_e8_a_cname_into_the_default_provider_s_zone_writes_nothing() -> None:
    """Review e8: the default provider can write admin.example, the tenant's CNAME points at
    its DKIM selector: no update at all for that name, one dns01.cname_refused line, the name
    fails (not transient: it is dropped and backed off); the other name is still published."""
    lookups = _lookups()
    provider = FakeProvider(lookups)
    dns01 = responder(lookups, Target(provider))
    dns01.prepare(authz("autodiscover.tenant.example", b"t" * 32), KEY)
    dns01.prepare(authz("mail.example", b"m" * 32), KEY)
    with capture_logs() as logs, pytest.raises(NamesRejected) as caught:
        dns01.ready()
    dns01.cleanup()
    written = [name for _, _, records in provider.calls for name in records]
    assert "sel1._domainkey.admin.example" not in written
    assert written == ["_acme-challenge.mail.example"] * 2  # added, then removed
    refused = [e for e in logs if e["event"] == "dns01.cname_refused"]
    assert len(refused) == 1
    line = refused[0]
    assert line["name"] == "autodiscover.tenant.example"
    assert (line["cname"], line["target"]) == (CH, "sel1._domainkey.admin.example")
    assert "ACME_DNS_ALIAS_ZONES" in line["reason"] and "[zone …]" in line["reason"]
    assert set(caught.value.failed_names) == {"autodiscover.tenant.example"}
    assert not caught.value.transient_names


def test_an_alias_zone_is_written_by_the_default_provider() -> None:
    """ACME_DNS_ALIAS_ZONES=acme.net: the CNAME into acme.net is followed and the default
    provider writes the record there, in acme.net."""
    lookups = _lookups()
    lookups.cnames[CH] = "d1.acme.net"
    provider = FakeProvider(lookups)
    router = Dns01Router(Target(provider), {}, aliases=("acme.net",))
    dns01 = Dns01Responder(router, lookups, propagation_timeout=0.3, stop=threading.Event())
    dns01.prepare(authz("autodiscover.tenant.example", b"t" * 32), KEY)
    dns01.ready()
    dns01.cleanup()
    assert provider.calls[0][:2] == ("add", "acme.net")
    assert list(provider.calls[0][2]) == ["d1.acme.net"]


def test_a_cname_inside_the_name_s_own_zone_needs_a_section_or_the_list() -> None:
    """_acme-challenge.autodiscover.tenant.example CNAME _acme-challenge.tenant.example:
    refused under the default provider alone; followed when tenant.example has a section."""
    lookups = _lookups()
    lookups.cnames[CH] = "_acme-challenge.tenant.example"
    default = FakeProvider(lookups)
    refused = responder(lookups, Target(default))
    refused.prepare(authz("autodiscover.tenant.example", b"t" * 32), KEY)
    with pytest.raises(NamesRejected):
        refused.ready()
    assert default.calls == []
    section = FakeProvider(lookups)
    allowed = responder(lookups, Target(default), {"tenant.example": Target(section)})
    allowed.prepare(authz("autodiscover.tenant.example", b"t" * 32), KEY)
    allowed.ready()
    assert default.calls == []
    assert section.calls[0][1:] == ("tenant.example", {"_acme-challenge.tenant.example": ANY})
