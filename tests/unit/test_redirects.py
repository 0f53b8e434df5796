"""The self-check follows redirects as Let's Encrypt does: the pure hop rules of
``core.redirects``, then ``WebrootSelfCheck`` against loopback servers (HTTP, and HTTPS with an
untrusted self-signed certificate) with a resolver fake for the names redirects lead to."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from acme_sidecar.adapters.http_probe import WebrootSelfCheck
from acme_sidecar.core.redirects import (
    MAX_REDIRECTS,
    Hop,
    HopPorts,
    Refused,
    first_hop,
    hop_address,
    next_hop,
)
from acme_sidecar.core.validate import CaaLookup, IpPolicy, Lookup
from tests.unit.loopback import Loopback, request_of, tls_server
from tests.unit.timing import TestClock

NAME = "mail.example.org"
PATH = "/.well-known/acme-challenge/tok"
START = first_hop(NAME, 80, PATH)
CA_PORTS = HopPorts()
LOCAL = IpPolicy(None, None, own_addresses=("127.0.0.1",))  # the loopback servers are "ours"


# --- the pure rules ----------------------------------------------------------------------


def test_http_to_https_on_443_is_followed() -> None:
    """The reverse proxy's ``return 301 https://$host$request_uri`` is followed, to 443."""
    hop = next_hop(START, f"https://{NAME}{PATH}", 1, CA_PORTS)
    assert hop == Hop(f"https://{NAME}{PATH}", "https", NAME, 443)
    assert hop.host_header == NAME


def test_a_relative_location_stays_on_the_name_and_port() -> None:
    """A relative Location is resolved against the hop it came from."""
    start = first_hop(NAME, 8080, PATH)
    hop = next_hop(start, "/elsewhere/tok?x=1", 1, HopPorts.of(8080))
    assert hop == Hop(f"http://{NAME}:8080/elsewhere/tok?x=1", "http", NAME, 8080)
    assert isinstance(hop, Hop) and hop.host_header == f"{NAME}:8080"


def test_another_name_is_followed_in_lower_case() -> None:
    """A redirect to another name is followed (the CA does), its name lower-cased."""
    hop = next_hop(START, "HTTPS://Proxy.Example.NET./x", 1, CA_PORTS)
    assert hop == Hop("https://proxy.example.net/x", "https", "proxy.example.net", 443)


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("ftp://mail.example.org/tok", "the scheme is ftp; the CA follows http: and https: only"),
        ("https://mail.example.org:8443/tok", "port 8443; the CA follows https: to port 443 only"),
        ("http://mail.example.org:443/tok", "port 443; the CA follows http: to port 80 only"),
        ("https://192.0.2.7/tok", "192.0.2.7 is an IP address; the CA follows redirects to names"),
        ("http://[2001:db8::7]/tok", "2001:db8::7 is an IP address"),
        ("http://localhost/tok", "localhost is not a host name"),
        ("http://mail.example.org:99999/tok", "the port is not a number from 1 to 65535"),
    ],
)
def test_redirects_the_ca_does_not_follow_are_refused(location: str, reason: str) -> None:
    """Only http/https, only to the CA's ports, never to an IP address, never to a non-name."""
    refused = next_hop(START, location, 1, CA_PORTS)
    assert isinstance(refused, Refused) and reason in refused.reason


def test_the_configured_ports_are_allowed_as_well_as_the_cas() -> None:
    """ACME_HTTP_VERIFY_PORT and ACME_HTTPS_VERIFY_PORT are followed, and 80/443 still are."""
    ports = HopPorts.of(5002, 5001)
    for location, port in (
        (f"https://{NAME}:5001/t", 5001),
        (f"https://{NAME}/t", 443),
        (f"http://{NAME}:5002/t", 5002),
        (f"http://{NAME}/t", 80),
    ):
        hop = next_hop(START, location, 1, ports)
        assert isinstance(hop, Hop) and hop.port == port
    assert isinstance(next_hop(START, f"https://{NAME}:5002/t", 1, ports), Refused)


def test_ten_redirects_are_followed_the_eleventh_is_not() -> None:
    """The CA's limit: the 10th redirect is followed, the 11th refused."""
    assert isinstance(next_hop(START, PATH, MAX_REDIRECTS, CA_PORTS), Hop)
    refused = next_hop(START, PATH, MAX_REDIRECTS + 1, CA_PORTS)
    assert refused == Refused("more than 10 redirects; the CA follows 10")


def test_a_later_hop_to_a_private_address_is_refused() -> None:
    """The address rule of the first hop holds at every hop: a private answer is refused."""
    found = hop_address("inner.example.org", [Lookup(), Lookup(("10.0.0.5",))], LOCAL)
    assert found == Refused(
        "inner.example.org resolves to 10.0.0.5, a private address that is not this server's; "
        "the self-check does not connect there"
    )


def test_a_later_hop_under_skip_ip_check_goes_to_a_lan_address_public_first() -> None:
    """Under SKIP_IP_CHECK a LAN answer is used, but a public one is preferred; loopback or
    link-local answers are still refused."""
    lan = IpPolicy(None, None, skip_ip_check=True)
    assert hop_address("in.example.org", [Lookup(("192.168.1.5",))], lan) == "192.168.1.5"
    both = [Lookup(("fd00::5",)), Lookup(("192.168.1.5", "9.9.9.9"))]
    assert hop_address("in.example.org", both, lan) == "9.9.9.9"
    assert isinstance(hop_address("in.example.org", [Lookup(("169.254.169.254",))], lan), Refused)


def test_a_later_hop_without_an_address_is_refused_with_the_lookup_error() -> None:
    """No record, or a failed lookup, is a reason, not an exception."""
    assert hop_address("x.example.org", [Lookup(), Lookup()], LOCAL) == Refused(
        "x.example.org has no A or AAAA record"
    )
    assert hop_address("x.example.org", [Lookup(error="SERVFAIL")], LOCAL) == Refused(
        "the lookup of x.example.org failed: SERVFAIL"
    )


# --- the self-check against loopback servers ---------------------------------------------


class Names:
    """A resolver fake: each name's A records; asked names are recorded."""

    def __init__(self, a: dict[str, tuple[str, ...]]) -> None:
        self.a = a
        self.asked: list[tuple[str, str]] = []

    def lookup(self, name: str, rdtype: str) -> Lookup:
        self.asked.append((name, rdtype))
        return Lookup(self.a.get(name, ()) if rdtype == "A" else ())

    def lookup_caa(self, name: str) -> CaaLookup:
        return CaaLookup()


class Site:
    """What a loopback server answers: the first ``redirects`` requests get a 301 to
    ``location(path)`` (each after ``pause`` seconds of ``clock``), later ones the token of
    their path. The request heads are kept."""

    def __init__(
        self,
        location: Callable[[str], str],
        redirects: int = 1,
        *,
        clock: TestClock | None = None,
        pause: float = 0.0,
    ) -> None:
        self.location = location
        self.redirects = redirects
        self.clock = clock
        self.pause = pause
        self.heads: list[bytes] = []

    def __call__(self, server: Loopback, conn: socket.socket) -> None:
        head = request_of(conn)
        self.heads.append(head)
        path = head.split(b" ", 2)[1].decode()
        if len(self.heads) <= self.redirects:
            if self.clock is not None:
                self.clock.advance(self.pause)
            status, body, extra = "301 Moved", b"", f"Location: {self.location(path)}\r\n"
        else:
            status, body, extra = "200 OK", path.rsplit("/", 1)[1].encode(), ""
        head_out = f"HTTP/1.1 {status}\r\n{extra}Content-Length: {len(body)}\r\n"
        conn.sendall(f"{head_out}Connection: close\r\n\r\n".encode() + body)

    def host(self, n: int) -> str:
        """The Host header of request ``n``."""
        for line in self.heads[n].split(b"\r\n"):
            if line.lower().startswith(b"host:"):
                return line.split(b":", 1)[1].strip().decode()
        return ""


def test_http_to_https_with_an_untrusted_certificate_passes(tmp_path: Path) -> None:
    """Port 80 redirects to HTTPS on the HTTPS port, whose certificate is self-signed and for
    another name: the hop is followed (not verified), with the name in SNI and Host."""
    context, _ = tls_server(tmp_path)
    sni: list[str | None] = []

    def seen(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        sni.append(name)

    context.sni_callback = seen
    tls_site = Site(str, redirects=0)
    with Loopback(tls_site, tls=context) as https:
        front = Site(lambda path: f"https://{NAME}:{https.port}{path}")
        with (
            Loopback(front) as http,
            WebrootSelfCheck(
                tmp_path / "web", http.port, 5.0, https_port=https.port, policy=LOCAL
            ) as check,
        ):
            assert check.check(NAME, "127.0.0.1") is None
    assert sni == [NAME]
    assert (front.host(0), tls_site.host(0)) == (f"{NAME}:{http.port}", f"{NAME}:{https.port}")


def test_a_redirect_to_a_port_not_allowed_is_one_log_line(tmp_path: Path) -> None:
    """HTTPS on a port that is neither 443 nor ACME_HTTPS_VERIFY_PORT: not followed, and one
    ``redirect.refused`` line names the hop, where it led and why."""
    front = Site(lambda path: f"https://{NAME}:8443{path}")
    with (
        Loopback(front) as http,
        WebrootSelfCheck(tmp_path / "web", http.port, 5.0, policy=LOCAL) as check,
        capture_logs() as logs,
    ):
        reason = check.check(NAME, "127.0.0.1")
    assert reason is not None
    assert "redirect 1 to https://mail.example.org:8443/.well-known/acme-challenge/" in reason
    assert reason.endswith("not followed: port 8443; the CA follows https: to port 443 only")
    [line] = [e for e in logs if e["event"] == "redirect.refused"]
    assert line["hop"] == 1 and line["name"] == NAME and line["address"] == "127.0.0.1"
    assert line["reason"] == "port 8443; the CA follows https: to port 443 only"
    assert line["log_level"] == "warning"


def test_a_later_hop_to_a_name_on_a_private_address_is_not_connected_to(tmp_path: Path) -> None:
    """Hop 1 stays on the name; hop 2 leads to another name that resolves to 10.0.0.5: it is
    refused before any connection, with the address rule's reason."""
    names = Names({"inner.example.org": ("10.0.0.5",)})
    front = Site(
        lambda path: f"http://{'inner.example.org' if front.heads[1:] else NAME}:{port}{path}",
        redirects=2,
    )
    with (
        Loopback(front) as http,
        WebrootSelfCheck(tmp_path / "web", http.port, 5.0, policy=LOCAL, resolver=names) as check,
        capture_logs() as logs,
    ):
        port = http.port
        reason = check.check(NAME, "127.0.0.1")
    assert len(front.heads) == 2
    assert names.asked == [("inner.example.org", "A"), ("inner.example.org", "AAAA")]
    assert reason is not None and reason.endswith(
        "not followed: inner.example.org resolves to 10.0.0.5, a private address that is not "
        "this server's; the self-check does not connect there"
    )
    assert [e["hop"] for e in logs if e["event"] == "redirect.refused"] == [2]


def test_a_redirect_to_another_name_goes_to_its_address(tmp_path: Path) -> None:
    """Another name that resolves to an address the check may use is followed there, with
    that name in the Host header."""
    names = Names({"proxy.example.net": ("127.0.0.1",)})
    front = Site(lambda path: f"http://proxy.example.net:{port}{path}")
    with (
        Loopback(front) as http,
        WebrootSelfCheck(tmp_path / "web", http.port, 5.0, policy=LOCAL, resolver=names) as check,
    ):
        port = http.port
        assert check.check(NAME, "127.0.0.1") is None
    assert front.host(1) == f"proxy.example.net:{port}"


def test_the_eleventh_redirect_is_not_followed(tmp_path: Path) -> None:
    """A server that always redirects to itself gets 11 requests (10 redirects followed)."""
    front = Site(lambda path: path, redirects=1000)
    with (
        Loopback(front) as http,
        WebrootSelfCheck(tmp_path / "web", http.port, 10.0, policy=LOCAL) as check,
    ):
        reason = check.check(NAME, "127.0.0.1")
    assert len(front.heads) == MAX_REDIRECTS + 1
    assert reason is not None
    assert "redirect 11 to" in reason and reason.endswith(
        "more than 10 redirects; the CA follows 10"
    )


def test_all_hops_share_one_deadline(tmp_path: Path) -> None:
    """Each redirect takes 0.4 s on the test clock: ten would take 4 s, but the check's 1.5 s
    deadline covers all hops together, so no 5th request is sent and the error names the hop
    it was at."""
    clock = TestClock()
    front = Site(lambda path: path, redirects=1000, clock=clock, pause=0.4)
    with (
        Loopback(front) as http,
        WebrootSelfCheck(tmp_path / "web", http.port, 1.5, policy=LOCAL, clock=clock) as check,
    ):
        reason = check.check(NAME, "127.0.0.1")
    assert len(front.heads) == 4
    assert reason is not None and reason.endswith("no complete answer within 1.5s")
    assert "after 4 redirects, http://mail.example.org:" in reason


def test_the_token_missing_after_a_redirect_names_where(tmp_path: Path) -> None:
    """A wrong answer at the end of the redirects says at which URL, after how many."""
    front = Site(lambda path: f"/moved{path}", redirects=1)

    def no_token(server: Loopback, conn: socket.socket) -> None:
        if len(front.heads) == 0:
            front(server, conn)
            return
        request_of(conn)
        conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    with (
        Loopback(no_token) as http,
        WebrootSelfCheck(tmp_path / "web", http.port, 5.0, policy=LOCAL) as check,
    ):
        reason = check.check(NAME, "127.0.0.1")
    assert reason is not None and "answered 404 without the token at http://" in reason
    assert "/moved/.well-known/acme-challenge/" in reason and "after 1 redirect " in reason
