"""Validation verdicts from DNS answers and the self-check, with fakes for both."""

from __future__ import annotations

from acme_sidecar.validate import IpPolicy, Lookup, validate_name


class FakeResolver:
    def __init__(self, records: dict[tuple[str, str], Lookup]) -> None:
        self.records = records

    def lookup(self, name: str, rdtype: str) -> Lookup:
        return self.records.get((name, rdtype), Lookup())


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
