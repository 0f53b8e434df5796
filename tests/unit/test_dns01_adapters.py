"""DNS-01 adapters with fakes: TSIG key files as acme.sh hands them to nsupdate, the CNAME and
zone logic, the propagation wait, and the responder (publish all, wait once, clean up)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from unittest.mock import ANY

import dns.update
import pytest
from acme import challenges, messages
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwk import JWKEC

from acme_sidecar.adapters.acmesh import ca_dir
from acme_sidecar.adapters.dns01.base import DnsUpdateError
from acme_sidecar.adapters.dns01.nsupdate import TsigKey, load_key, parse_key_file
from acme_sidecar.adapters.dns01.responder import Dns01Responder, Dns01Router, Target
from acme_sidecar.adapters.dns01.zones import (
    LookupFailed,
    Propagation,
    Record,
    cname_chain,
    missing,
)
from acme_sidecar.core.errors import NamesRejected

SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQ="


def test_key_statement_as_tsig_keygen_writes_it() -> None:
    """BIND's key statement (tsig-keygen, ddns-confgen): name, algorithm, secret."""
    text = f'key "acme-update." {{\n\talgorithm hmac-sha512;\n\tsecret "{SECRET}";\n}};\n'
    key = parse_key_file(text)
    assert isinstance(key, TsigKey)
    assert (key.name, key.algorithm, key.secret) == ("acme-update", "hmac-sha512", SECRET)
    assert SECRET not in repr(key)


def test_legacy_private_key_file() -> None:
    """dnssec-keygen's K<name>.+165+<id>.private (HMAC-SHA512) as older how-tos make it."""
    text = f"Private-key-format: v1.3\nAlgorithm: 165 (HMAC_SHA512)\nKey: {SECRET}\nBits: AAA=\n"
    key = parse_key_file(text, "Kupdate.example.+165+12345.private")
    assert isinstance(key, TsigKey)
    assert (key.name, key.algorithm, key.secret) == ("update.example", "hmac-sha512", SECRET)


def test_unreadable_or_open_or_garbage_key_files(tmp_path: Path) -> None:
    """Each refusal names NSUPDATE_KEY and the path, never the secret."""
    path = tmp_path / "update.key"
    assert "cannot be read" in str(load_key(path))
    path.write_text(f'key "k" {{ algorithm hmac-sha256; secret "{SECRET}"; }};')
    path.chmod(0o644)
    assert "readable by everyone" in str(load_key(path))
    path.chmod(0o600)
    assert isinstance(load_key(path), TsigKey)
    path.write_text("nonsense")
    problem = load_key(path)
    assert isinstance(problem, str) and problem.startswith(f"NSUPDATE_KEY {path}: it holds")


def test_bad_secret_md5_and_unknown_algorithm_are_messages(tmp_path: Path) -> None:
    """Review #3: a non-base64 secret or an unknown algorithm is one message (not a raise);
    hmac-md5 (statement and legacy 157 file) builds a usable key and update message."""
    path = tmp_path / "update.key"
    path.write_text('key "k" { algorithm hmac-sha256; secret "not*base64!"; };')
    path.chmod(0o600)
    problem = load_key(path)
    assert isinstance(problem, str) and "not base64" in problem and "not*base64" not in problem
    path.write_text(f'key "k" {{ algorithm hmac-sha999; secret "{SECRET}"; }};')
    problem = load_key(path)
    assert isinstance(problem, str) and "hmac-sha999" in problem and "hmac-sha256" in problem
    path.write_text(f'key "k" {{ algorithm hmac-md5; secret "{SECRET}"; }};')
    legacy = tmp_path / "Kk.+157+00001.private"
    legacy.write_text(f"Private-key-format: v1.3\nAlgorithm: 157 (HMAC_MD5)\nKey: {SECRET}\n")
    legacy.chmod(0o600)
    for key_path in (path, legacy):
        key = load_key(key_path)
        assert isinstance(key, TsigKey)
        tsig = key.tsig()
        assert not isinstance(tsig, str)
        dns.update.UpdateMessage("example.org", keyring=tsig).to_wire()


@dataclass
class FakeLookups:
    """DNS as a table: CNAMEs, zones by suffix, servers per zone, TXT per (address, name)."""

    cnames: dict[str, str] = field(default_factory=dict)
    zones: tuple[str, ...] = ("example.org", "acme.net")
    ns: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    records: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    lag: dict[str, int] = field(default_factory=dict)  # address -> queries before it sees data
    asked: list[tuple[str, int, str]] = field(default_factory=list)
    unreachable: set[str] = field(default_factory=set)  # addresses whose family has no route
    slow: dict[str, float] = field(default_factory=dict)  # address -> seconds a query hangs

    def cname(self, name: str) -> str | None:
        return self.cnames.get(name)

    def zone_for(self, name: str) -> str:
        for zone in sorted(self.zones, key=len, reverse=True):
            if name == zone or name.endswith("." + zone):
                return zone
        raise LookupFailed(f"no zone (SOA) found for {name}")

    def servers(self, zone: str) -> tuple[tuple[str, str], ...]:
        return self.ns.get(zone, (("ns1." + zone, "192.0.2.1"), ("ns2." + zone, "192.0.2.2")))

    def txt(self, address: str, port: int, name: str, timeout: float | None = None) -> set[str]:
        self.asked.append((address, port, name))
        if address in self.slow:  # a server that never answers: the query takes its timeout
            time.sleep(min(self.slow[address], timeout if timeout is not None else 1e9))
            raise LookupFailed("no answer (Timeout)")
        if address in self.unreachable:
            raise LookupFailed("no answer (OSError)")
        if self.lag.get(address, 0) > 0:
            self.lag[address] -= 1
            return set()
        return set(self.records.get(("*", name), set()))


def test_cname_chain_is_read_in_order_and_loops_refused() -> None:
    """acme-dns style delegation: the chain is every name in order (the record would go at
    its end); no CNAME is a chain of one; a loop is an error."""
    lookups = FakeLookups(
        cnames={
            "_acme-challenge.mail.example.org": "X1.acme.net.",
            "x1.acme.net": "x2.acme.net",
        }
    )
    chain = cname_chain("_acme-challenge.mail.example.org", lookups)
    assert chain == ("_acme-challenge.mail.example.org", "x1.acme.net", "x2.acme.net")
    assert cname_chain("_acme-challenge.www.example.org", lookups) == (
        "_acme-challenge.www.example.org",
    )
    loop = FakeLookups(cnames={"a.example.org": "b.example.org", "b.example.org": "a.example.org"})
    with pytest.raises(LookupFailed, match="CNAME loop"):
        cname_chain("a.example.org", loop)


def test_missing_names_the_server_and_the_gap() -> None:
    """Per record: which server lacks values, or could not be asked."""
    wanted = {"r.example.org": {"a", "b"}}
    answers: dict[tuple[str, str], set[str] | str] = {
        ("r.example.org", "ns1"): {"a", "b", "old"},
        ("r.example.org", "ns2"): {"a"},
        ("r.example.org", "ns3"): "no answer (Timeout)",
    }
    assert missing(wanted, answers) == {
        "r.example.org": "ns2 lacks 1 of 2 values; ns3: no answer (Timeout)"
    }
    assert missing(wanted, {("r.example.org", "ns1"): {"a", "b"}}) == {}


def test_propagation_waits_for_every_server_on_the_auth_port() -> None:
    """A lagging server is asked again until it answers; every query goes to the zone's port."""
    lookups = FakeLookups(records={("*", "r.example.org"): {"v"}}, lag={"192.0.2.2": 3})
    wait = Propagation(
        lookups, timeout=5, stop=threading.Event(), port_of=lambda z: 5300, first_pause=0.001
    )
    assert wait.wait([(Record("r.example.org", "example.org"), {"v"})]) == {}
    assert {p for _, p, _ in lookups.asked} == {5300}
    assert sum(1 for a, _, _ in lookups.asked if a == "192.0.2.2") == 4


def test_propagation_that_never_completes_is_bounded() -> None:
    """A server that never sees the value: the wait ends at the timeout and says which."""
    lookups = FakeLookups(records={("*", "r.example.org"): {"v"}}, lag={"192.0.2.2": 10**6})
    wait = Propagation(
        lookups, timeout=0.2, stop=threading.Event(), port_of=lambda z: 53, first_pause=0.01
    )
    left = wait.wait([(Record("r.example.org", "example.org"), {"v"})])
    assert left == {"r.example.org": "ns2.example.org (port 53) lacks 1 of 1 values"}


def test_the_propagation_wait_ends_at_its_deadline() -> None:
    """Review #6: servers that never answer (each query up to 3 s): the wait ends at the
    timeout, not after a full round of queries; the queries are cut to the time left."""
    slow = {"192.0.2.1": 3.0, "192.0.2.2": 3.0, "192.0.2.3": 3.0}
    lookups = FakeLookups(
        records={("*", "r.example.org"): {"v"}},
        ns={"example.org": tuple((f"ns{i}.example.org", a) for i, a in enumerate(slow))},
        slow=slow,
    )
    wait = Propagation(
        lookups, timeout=0.3, stop=threading.Event(), port_of=lambda z: 53, first_pause=0.01
    )
    started = time.monotonic()
    left = wait.wait([(Record("r.example.org", "example.org"), {"v"})])
    assert time.monotonic() - started < 2.0  # a full round of queries would take 3 s or more
    assert "ns0.example.org (port 53): 192.0.2.1: no answer (Timeout)" in left["r.example.org"]
    assert "not asked (ACME_DNS_PROPAGATION_TIMEOUT reached)" in left["r.example.org"]


def test_a_server_counts_when_any_of_its_addresses_answers() -> None:
    """Review #2: a host without IPv6: ns1's AAAA address is unreachable but its A answers, so
    ns1 counts; ns2, reachable only over IPv6, is named with every address's reason."""
    v6 = {"2001:db8::1", "2001:db8::2"}
    servers = (
        ("ns1.example.org", "192.0.2.1"),
        ("ns1.example.org", "2001:db8::1"),
        ("ns2.example.org", "2001:db8::2"),
    )
    lookups = FakeLookups(
        records={("*", "r.example.org"): {"v"}},
        ns={"example.org": servers[:2]},
        unreachable=v6,
    )
    wait = Propagation(
        lookups, timeout=1, stop=threading.Event(), port_of=lambda z: 53, first_pause=0.01
    )
    assert wait.wait([(Record("r.example.org", "example.org"), {"v"})]) == {}
    lookups.ns["example.org"] = servers
    wait = Propagation(
        lookups, timeout=0.05, stop=threading.Event(), port_of=lambda z: 53, first_pause=0.01
    )
    left = wait.wait([(Record("r.example.org", "example.org"), {"v"})])
    assert left == {"r.example.org": "ns2.example.org (port 53): 2001:db8::2: no answer (OSError)"}


@dataclass
class FakeProvider:
    """Records what was added and removed; can refuse."""

    lookups: FakeLookups
    error: DnsUpdateError | None = None
    calls: list[tuple[str, str, dict[str, tuple[str, ...]]]] = field(default_factory=list)
    label: str = "fake"

    def add_txt(self, zone: str, records: Mapping[str, tuple[str, ...]]) -> None:
        self.calls.append(("add", zone, dict(records)))
        if self.error is not None:
            raise self.error
        for name, values in records.items():
            self.lookups.records.setdefault(("*", name), set()).update(values)

    def remove_txt(self, zone: str, records: Mapping[str, tuple[str, ...]]) -> None:
        self.calls.append(("remove", zone, dict(records)))
        for name, values in records.items():
            self.lookups.records.get(("*", name), set()).difference_update(values)

    def add_records(
        self, zone: str, rtype: str, records: Mapping[str, tuple[str, ...]], ttl: int
    ) -> None:
        self.calls.append((f"add {rtype} {ttl}", zone, dict(records)))
        if self.error is not None:
            raise self.error

    def remove_records(self, zone: str, rtype: str, records: Mapping[str, tuple[str, ...]]) -> None:
        self.calls.append((f"remove {rtype}", zone, dict(records)))
        if self.error is not None:
            raise self.error


KEY = JWKEC(key=ec.generate_private_key(ec.SECP256R1()))


def authz(name: str, token: bytes) -> messages.AuthorizationResource:
    """An authorization of ``name`` (``*.`` for a wildcard) offering http-01 and dns-01."""
    wildcard = name.startswith("*.")
    body = messages.Authorization(
        identifier=messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=name.removeprefix("*.")),
        challenges=[
            messages.ChallengeBody(chall=challenges.HTTP01(token=token), uri="https://ca/h"),
            messages.ChallengeBody(chall=challenges.DNS01(token=token), uri="https://ca/d"),
        ],
        wildcard=wildcard or None,
    )
    return messages.AuthorizationResource(body=body, uri=f"https://ca/authz/{name}")


def responder(
    lookups: FakeLookups, default: Target, zones: dict[str, Target] | None = None
) -> Dns01Responder:
    router = Dns01Router(default, zones or {})
    return Dns01Responder(router, lookups, propagation_timeout=0.3, stop=threading.Event())


def test_publishes_every_value_then_waits_once_then_cleans_up() -> None:
    """*.example.org and example.org share one record: one update with both values, one
    propagation wait, and the values are removed afterwards."""
    lookups = FakeLookups()
    provider = FakeProvider(lookups)
    dns01 = responder(lookups, Target(provider))
    answers = [
        dns01.prepare(authz("*.example.org", b"a" * 32), KEY),
        dns01.prepare(authz("example.org", b"b" * 32), KEY),
    ]
    assert all(isinstance(a.challenge.chall, challenges.DNS01) for a in answers)
    assert provider.calls == []  # nothing is published before ready()
    dns01.ready()
    [(action, zone, records)] = provider.calls
    name = "_acme-challenge.example.org"
    assert (action, zone, list(records), len(records[name])) == ("add", "example.org", [name], 2)
    dns01.cleanup()
    assert provider.calls[-1] == ("remove", zone, records)
    assert lookups.records[("*", name)] == set()


def test_records_of_one_zone_go_in_one_update() -> None:
    """Three names of one zone: one update (one message to the DNS host), one removal."""
    lookups = FakeLookups()
    provider = FakeProvider(lookups)
    dns01 = responder(lookups, Target(provider))
    for i, name in enumerate(("a.example.org", "b.example.org", "c.example.org")):
        dns01.prepare(authz(name, bytes([65 + i]) * 32), KEY)
    dns01.ready()
    dns01.cleanup()
    assert [(c[0], len(c[2])) for c in provider.calls] == [("add", 3), ("remove", 3)]


def test_failures_name_each_name_and_still_clean_up() -> None:
    """A refused update (config) and a zone without a provider: NamesRejected names both; a
    timeout (transient) is transient; what either may have written is removed (review #4:
    NSUPDATE_SERVER=a,b with b refusing, or lexicon's second value refused, left a's record)."""
    lookups = FakeLookups(zones=("example.org", "acme.net", "nocreds.test"))
    refusing = FakeProvider(lookups, DnsUpdateError("answered 401 Unauthorized"))
    flaky = FakeProvider(lookups, DnsUpdateError("cannot be reached", transient=True))
    dns01 = responder(
        lookups,
        Target(None, "ACME_DNS_PROVIDER is not set"),
        {"example.org": Target(refusing), "acme.net": Target(flaky)},
    )
    for name in ("mail.example.org", "mail.nocreds.test", "x.acme.net"):
        dns01.prepare(authz(name, b"c" * 32), KEY)
    with pytest.raises(NamesRejected) as caught:
        dns01.ready()
    assert set(caught.value.failed_names) == {"mail.example.org", "mail.nocreds.test"}
    assert "401" in caught.value.failed_names["mail.example.org"]
    assert "ACME_DNS_PROVIDER is not set" in caught.value.failed_names["mail.nocreds.test"]
    assert set(caught.value.transient_names) == {"x.acme.net"}
    dns01.cleanup()
    assert [c[0] for c in refusing.calls] == ["add", "remove"]
    assert [c[0] for c in flaky.calls] == ["add", "remove"]


def test_a_partial_write_then_refusal_is_removed() -> None:
    """Review #4: the first server (or value) is written, the next refuses (not transient):
    cleanup removes what was written."""
    lookups = FakeLookups()

    @dataclass
    class HalfProvider(FakeProvider):
        def add_txt(self, zone: str, records: Mapping[str, tuple[str, ...]]) -> None:
            self.calls.append(("add", zone, dict(records)))
            for name, values in records.items():
                self.lookups.records.setdefault(("*", name), set()).update(values)
            raise DnsUpdateError("b:53 answered REFUSED to the update of example.org")

    half = HalfProvider(lookups)
    dns01 = responder(lookups, Target(half))
    dns01.prepare(authz("mail.example.org", b"h" * 32), KEY)
    with pytest.raises(NamesRejected) as caught:
        dns01.ready()
    assert "REFUSED" in caught.value.failed_names["mail.example.org"]
    dns01.cleanup()
    assert [c[0] for c in half.calls] == ["add", "remove"]
    assert lookups.records[("*", "_acme-challenge.mail.example.org")] == set()


def test_a_delegated_record_is_written_by_its_own_zone_s_host() -> None:
    """_acme-challenge.mail.example.org CNAME x.acme.net: the acme.net section writes it."""
    lookups = FakeLookups(cnames={"_acme-challenge.mail.example.org": "x.acme.net"})
    main, delegated = FakeProvider(lookups), FakeProvider(lookups)
    dns01 = responder(lookups, Target(main), {"acme.net": Target(delegated)})
    dns01.prepare(authz("mail.example.org", b"d" * 32), KEY)
    dns01.ready()
    assert main.calls == [] and delegated.calls[0][1:] == ("acme.net", {"x.acme.net": ANY})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://acme-v02.api.letsencrypt.org/directory",
         "ca/acme-v02.api.letsencrypt.org/directory"),
        ("https://127.0.0.1:14000/dir", "ca/127.0.0.1/dir"),
        ("https://acme.zerossl.com/v2/DV90", "ca/acme.zerossl.com/v2/DV90"),
    ],
)  # fmt: skip
def test_acme_sh_ca_dir_as_its_initpath_cuts_it(url: str, expected: str) -> None:
    """acme.sh's CA_DIR: the host without its port, then the directory's path."""
    assert ca_dir(Path("/v/acme-sh"), url) == Path("/v/acme-sh") / expected
