"""Validation verdicts from DNS answers and the self-check, with fakes for both."""

from __future__ import annotations

from acme_sidecar.core.validate import Caa, CaaLookup, IpPolicy, Lookup, caa_check, validate_name


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
    """SKIP_IP_CHECK and SNAT accept any address of their family."""
    r = FakeResolver({(N, "A"): Lookup(("198.51.100.7",))})
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
