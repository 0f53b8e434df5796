"""Validation verdicts from DNS answers and the self-check, with fakes for both."""

from __future__ import annotations

import pytest

from acme_sidecar.core.validate import (
    Answer,
    Caa,
    CaaLookup,
    IpPolicy,
    Lookup,
    Need,
    self_check_refusal,
    verdict,
)
from acme_sidecar.shell.lookups import caa_check, validate_name, validate_names


class FakeResolver:
    def __init__(
        self,
        records: dict[tuple[str, str], Lookup],
        caa: dict[str, CaaLookup] | None = None,
    ) -> None:
        self.records = records
        self.caa = caa or {}
        self.caa_asked: list[str] = []

    def lookup(self, name: str, rdtype: str) -> Lookup:
        return self.records.get((name, rdtype), Lookup())

    def lookup_caa(self, name: str) -> CaaLookup:
        self.caa_asked.append(name)
        return self.caa.get(name, CaaLookup())


class FakeHttp:
    def __init__(self, bad: set[str] | None = None) -> None:
        self.bad = bad or set()
        self.calls: list[tuple[str, str]] = []

    def check(self, name: str, address: str) -> str | None:
        self.calls.append((name, address))
        return "timeout" if address in self.bad else None


POLICY = IpPolicy(ipv4="192.0.2.1", ipv6="2001:db8::1")
N = "mail.example.org"


def test_a_record_matches() -> None:
    """An A record equal to the public IPv4 is accepted."""
    r = FakeResolver({(N, "A"): Lookup(("192.0.2.1",))})
    assert validate_name(N, r, POLICY, FakeHttp()).ok


def test_a_record_elsewhere_names_answer_and_expected() -> None:
    """A wrong A record is refused and the reason names the answer and the expected IP."""
    r = FakeResolver({(N, "A"): Lookup(("198.51.100.7",))})
    v = validate_name(N, r, POLICY, FakeHttp())
    assert not v.ok
    assert "198.51.100.7" in v.reason and "192.0.2.1" in v.reason


def test_wrong_aaaa_falls_back_to_a() -> None:
    """A wrong AAAA does not sink the name when A matches (mailcow's bug)."""
    r = FakeResolver({(N, "AAAA"): Lookup(("2001:db8::99",)), (N, "A"): Lookup(("192.0.2.1",))})
    assert validate_name(N, r, POLICY, FakeHttp()).ok


def test_aaaa_http_failure_falls_back_to_a() -> None:
    """A matching AAAA whose self-check fails is retried over A."""
    r = FakeResolver({(N, "AAAA"): Lookup(("2001:db8::1",)), (N, "A"): Lookup(("192.0.2.1",))})
    http = FakeHttp(bad={"2001:db8::1"})
    assert validate_name(N, r, POLICY, http).ok
    assert http.calls == [(N, "2001:db8::1"), (N, "192.0.2.1")]


def test_ipv6_written_differently_still_matches() -> None:
    """Addresses are compared as addresses, not strings."""
    r = FakeResolver({(N, "AAAA"): Lookup(("2001:0db8:0000::0001",))})
    assert validate_name(N, r, POLICY, FakeHttp()).ok


def test_no_record() -> None:
    """No record is a verdict with a reason, not an exception."""
    v = validate_name(N, FakeResolver({}), POLICY, FakeHttp())
    assert not v.ok and "no A or AAAA record" in v.reason


def test_lookup_error_reported() -> None:
    """A lookup that failed says so."""
    r = FakeResolver({(N, "A"): Lookup(error="Timeout")})
    v = validate_name(N, r, POLICY, FakeHttp())
    assert not v.ok and "Timeout" in v.reason


def test_skip_ip_check_and_snat() -> None:
    """SKIP_IP_CHECK and SNAT accept any public address of their family."""
    r = FakeResolver({(N, "A"): Lookup(("9.9.9.9",))})
    assert validate_name(N, r, IpPolicy(None, None, skip_ip_check=True), FakeHttp()).ok
    assert validate_name(N, r, IpPolicy("192.0.2.1", None, snat4=True), FakeHttp()).ok
    assert not validate_name(N, r, IpPolicy("192.0.2.1", None, snat6=True), FakeHttp()).ok


def test_http_failure_refuses_and_skip_http_skips() -> None:
    """A failed self-check refuses the name unless SKIP_HTTP_VERIFICATION is set."""
    r = FakeResolver({(N, "A"): Lookup(("192.0.2.1",))})
    bad = FakeHttp(bad={"192.0.2.1"})
    assert not validate_name(N, r, POLICY, bad).ok
    skip = IpPolicy("192.0.2.1", None, skip_http=True)
    assert validate_name(N, r, skip, bad).ok


def issue(value: str, tag: str = "issue", flags: int = 0) -> CaaLookup:
    return CaaLookup((Caa(flags, tag, value),))


LE = ("letsencrypt.org",)


def test_caa_climbs_to_the_first_node_with_records() -> None:
    """The relevant CAA set is the closest one up the tree (RFC 8659)."""
    r = FakeResolver({}, {"example.org": issue("otherca.example")})
    reason = caa_check("a.b.example.org", r, LE)
    assert reason is not None and "otherca.example" in reason and "example.org" in reason
    assert r.caa_asked == ["a.b.example.org", "b.example.org", "example.org"]


def test_caa_closest_node_wins() -> None:
    """A permissive record below a restrictive one allows issuance."""
    r = FakeResolver(
        {},
        {
            "b.example.org": issue("letsencrypt.org; accounturi=x"),
            "example.org": issue("otherca.example"),
        },
    )
    assert caa_check("a.b.example.org", r, LE) is None


def test_caa_issuewild_for_wildcards_only() -> None:
    """issuewild governs wildcard names; issue governs the rest."""
    r = FakeResolver(
        {},
        {"example.org": CaaLookup((Caa(0, "issue", "letsencrypt.org"), Caa(0, "issuewild", ";")))},
    )
    assert caa_check("mail.example.org", r, LE) is None
    assert caa_check("*.example.org", r, LE) is not None


def test_caa_no_records_or_only_iodef_allows() -> None:
    """No CAA anywhere, or only iodef, lets any CA issue; an empty issue value forbids all."""
    assert caa_check("mail.example.org", FakeResolver({}), LE) is None
    iodef = FakeResolver({}, {"example.org": issue("mailto:x@example.org", tag="iodef")})
    assert caa_check("mail.example.org", iodef, LE) is None
    none = FakeResolver({}, {"example.org": issue(";")})
    assert caa_check("mail.example.org", none, LE) is not None


def test_caa_unknown_critical_tag_forbids() -> None:
    """An unknown tag with the critical flag forbids issuance."""
    r = FakeResolver({}, {"example.org": issue("x", tag="future", flags=128)})
    assert caa_check("mail.example.org", r, LE) is not None


def test_caa_denial_makes_the_verdict() -> None:
    """A CAA denial refuses the name before any HTTP check."""
    http = FakeHttp()
    r = FakeResolver({(N, "A"): Lookup(("192.0.2.1",))}, {"example.org": issue("otherca.test")})
    policy = IpPolicy("192.0.2.1", None, ca_identities=LE)
    v = validate_name(N, r, policy, http)
    assert not v.ok and "CAA" in v.reason and http.calls == []


OWN = IpPolicy("192.0.2.1", "2001:db8::1", own_addresses=("10.9.9.9",))


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("9.9.9.9", None),
        ("2a00:1450:4001::200e", None),
        ("192.0.2.1", None),  # PUBLIC_IPV4, though in a documentation range
        ("2001:db8::1", None),  # PUBLIC_IPV6
        ("10.9.9.9", None),  # SNAT_TO_SOURCE
        ("10.1.2.3", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address under test, not a listener
        ("::", "unspecified"),
        ("100.64.0.1", "non-public"),
        ("::ffff:10.1.2.3", "private"),
        ("::ffff:9.9.9.9", None),
    ],
)
def test_self_check_address_rule(address: str, kind: str | None) -> None:
    """Public addresses and this server's own may be checked; any other address may not."""
    reason = self_check_refusal(address, OWN)
    if kind is None:
        assert reason is None
    else:
        assert reason == (
            f"{address}, a {kind} address that is not this server's; "
            "the self-check does not connect there"
        )


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("10.1.2.3", None),
        ("192.168.1.1", None),
        ("fd00::1", None),
        ("100.64.0.1", None),  # carrier NAT
        ("::ffff:10.1.2.3", None),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("0.0.0.0", "unspecified"),  # noqa: S104 - an address under test, not a listener
    ],
)
def test_skip_ip_check_allows_lan_addresses_only(address: str, kind: str | None) -> None:
    """Under SKIP_IP_CHECK a LAN answer (private, carrier NAT) may be checked, as acme-mailcow's
    curl does; loopback, link-local and the other kinds still may not."""
    reason = self_check_refusal(address, IpPolicy(None, None, skip_ip_check=True))
    if kind is None:
        assert reason is None
    else:
        assert reason is not None and reason.startswith(f"{address}, a {kind} address")


def test_self_check_refuses_what_is_not_an_address() -> None:
    """An answer that is no IP address is never connected to."""
    assert self_check_refusal("mail.example.org", OWN) is not None


def test_loopback_that_is_this_server_is_checked() -> None:
    """PUBLIC_IPV4=127.0.0.1 (the integration world) keeps the self-check on loopback."""
    r = FakeResolver({(N, "A"): Lookup(("127.0.0.1",))})
    http = FakeHttp()
    assert validate_name(N, r, IpPolicy("127.0.0.1", None), http).ok
    assert http.calls == [(N, "127.0.0.1")]


def test_skip_ip_check_does_not_connect_to_a_link_local_answer() -> None:
    """Under SKIP_IP_CHECK a tenant's name on 169.254.169.254 (a cloud's metadata service) is
    refused without any connection."""
    r = FakeResolver({(N, "A"): Lookup(("169.254.169.254",))})
    http = FakeHttp()
    verdicts = validate_names([N], r, IpPolicy(None, None, skip_ip_check=True), http)
    assert not verdicts[N].ok and http.calls == []
    assert f"{N} resolves to 169.254.169.254, a link-local address that is not this server's" in (
        verdicts[N].reason
    )


def test_skip_ip_check_checks_a_split_horizon_answer() -> None:
    """Under SKIP_IP_CHECK a name that resolves to a LAN address (split-horizon DNS) is checked
    there, as acme-mailcow's check does; without SKIP_IP_CHECK it is not."""
    r = FakeResolver({(N, "A"): Lookup(("192.168.1.10",))})
    http = FakeHttp()
    assert validate_name(N, r, IpPolicy(None, None, skip_ip_check=True), http).ok
    assert http.calls == [(N, "192.168.1.10")]
    strict = FakeHttp()  # SNAT also skips the comparison, but keeps the address rule
    assert not validate_name(N, r, IpPolicy("203.0.113.5", None, snat4=True), strict).ok
    assert strict.calls == []


def test_skip_ip_check_checks_the_first_address_it_may() -> None:
    """With a private and a public address in the answer, the public one is checked."""
    r = FakeResolver({(N, "A"): Lookup(("10.0.0.5", "9.9.9.9"))})
    http = FakeHttp()
    assert validate_name(N, r, IpPolicy(None, None, skip_ip_check=True), http).ok
    assert http.calls == [(N, "9.9.9.9")]


def test_snat_source_is_this_servers_own() -> None:
    """A private answer equal to an address in ``own`` (SNAT_TO_SOURCE) is checked."""
    r = FakeResolver({(N, "A"): Lookup(("10.0.0.5",))})
    http = FakeHttp()
    policy = IpPolicy("192.0.2.1", None, snat4=True, own_addresses=("10.0.0.5",))
    assert validate_name(N, r, policy, http).ok and http.calls == [(N, "10.0.0.5")]


def test_skip_http_needs_no_address_rule() -> None:
    """Without a self-check nothing is connected to, so a private answer is accepted."""
    r = FakeResolver({(N, "A"): Lookup(("10.0.0.5",))})
    policy = IpPolicy(None, None, skip_ip_check=True, skip_http=True)
    assert validate_name(N, r, policy, FakeHttp()).ok


def test_the_verdict_asks_for_one_answer_at_a_time_aaaa_first() -> None:
    """The pure verdict names the next answer it needs: AAAA, then its self-check, then done."""
    policy = IpPolicy(ipv4="192.0.2.1", ipv6="2001:db8::1")
    answers: dict[Need, Answer] = {}
    assert verdict(N, {}, policy) == Need("AAAA", N)
    answers[Need("AAAA", N)] = Lookup(("2001:db8::1",))
    assert verdict(N, answers, policy) == Need("HTTP", "2001:db8::1", N)
    answers[Need("HTTP", "2001:db8::1", N)] = None
    done = verdict(N, answers, policy)
    assert not isinstance(done, Need) and done.ok and "AAAA 2001:db8::1" in done.reason


def test_a_failed_self_check_on_aaaa_falls_back_to_a_from_answers_alone() -> None:
    """Answers only, no adapter: AAAA's self-check failed, A matches and its check passes."""
    policy = IpPolicy(ipv4="192.0.2.1", ipv6="2001:db8::1")
    answers: dict[Need, Answer] = {
        Need("AAAA", N): Lookup(("2001:db8::1",)),
        Need("HTTP", "2001:db8::1", N): "connection refused",
        Need("A", N): Lookup(("192.0.2.1",)),
        Need("HTTP", "192.0.2.1", N): None,
    }
    done = verdict(N, answers, policy)
    assert not isinstance(done, Need) and done.ok and done.reason.startswith("A 192.0.2.1")
