"""The DNS-01 test world works with real tools: BIND takes TSIG-signed updates and refuses a wrong
key, PowerDNS's API takes rrsets and refuses a wrong API key, BIND resolves both servers' zones,
and the DNS-01 Pebble validates names of both zones through it."""

from __future__ import annotations

import datetime
import secrets
import subprocess

import dns.query
import dns.rcode
import dns.tsig
import dns.update
import pytest
import requests
from acme import challenges, client, crypto_util, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from tests.world import authdns
from tests.world.authdns import BIND_ZONES, PDNS_ZONES, STALE_ZONE
from tests.world.bind import Bind
from tests.world.pebble import Pebble
from tests.world.powerdns import PowerDNS


def _label() -> str:
    return f"t{secrets.token_hex(4)}"


def test_servers_share_port_and_name_themselves(bind_server: Bind, powerdns: PowerDNS) -> None:
    assert bind_server.port == powerdns.port
    assert bind_server.server == ("127.0.0.1", bind_server.port)
    assert powerdns.server == ("127.0.0.2", powerdns.port)
    for zone in BIND_ZONES:
        assert bind_server.ns(zone) == [f"ns.{zone}."]
        ns_a = authdns.query(bind_server.server, f"ns.{zone}", "A")
        assert authdns.answer_texts(ns_a, "A") == ["127.0.0.1"]
    for zone in PDNS_ZONES:
        assert powerdns.ns(zone) == [f"ns.{zone}."]
        ns_a = authdns.query(powerdns.server, f"ns.{zone}", "A")
        assert authdns.answer_texts(ns_a, "A") == ["127.0.0.2"]


def test_bind_tsig_update_and_wrong_key(bind_server: Bind) -> None:
    name = f"_acme-challenge.{_label()}.bind-zone.test"
    rcode = bind_server.update(
        "bind-zone.test", add=[(name, "TXT", '"signed-value"'), (name, "TXT", '"second"')]
    )
    assert rcode == dns.rcode.NOERROR
    assert bind_server.txt(name) == ["second", "signed-value"]
    assert authdns.txt_values(bind_server.server, name) == ["second", "signed-value"]

    wrong = dns.update.UpdateMessage("bind-zone.test.", keyring=bind_server.keyring("d3Jvbmc="))
    wrong.add(f"{name}.", 1, "TXT", '"forged"')
    with pytest.raises(dns.tsig.PeerBadSignature):
        dns.query.tcp(wrong, bind_server.host, port=bind_server.port, timeout=5)
    unsigned = dns.update.UpdateMessage("bind-zone.test.")
    unsigned.add(f"{name}.", 1, "TXT", '"forged"')
    assert (
        dns.query.tcp(unsigned, bind_server.host, port=bind_server.port, timeout=5).rcode()
        == dns.rcode.REFUSED
    )
    assert bind_server.txt(name) == ["second", "signed-value"]

    bind_server.delete_rrset(name, "TXT")
    assert bind_server.txt(name) == []


def test_bind_key_file_works_with_nsupdate(bind_server: Bind) -> None:
    name = f"_acme-challenge.{_label()}.example.test"
    host, port = bind_server.server
    script = f"server {host} {port}\nzone example.test\nupdate add {name} 60 TXT nsupdate\nsend\n"
    done = subprocess.run(
        ["nsupdate", "-k", str(bind_server.key_file)],
        input=script,
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    assert done.returncode == 0, done.stderr
    assert bind_server.txt(name) == ["nsupdate"]


def test_powerdns_api_update_and_wrong_key(powerdns: PowerDNS) -> None:
    name = f"_acme-challenge.{_label()}.pdns-zone.test."
    rrset = {
        "name": name,
        "type": "TXT",
        "ttl": 60,
        "changetype": "REPLACE",
        "records": [{"content": '"api-value"', "disabled": False}],
    }
    url = powerdns.zone_url("pdns-zone.test")
    wrong = requests.patch(url, json={"rrsets": [rrset]}, headers={"X-API-Key": "nope"}, timeout=5)
    assert wrong.status_code == 401
    assert powerdns.txt(name) == []

    resp = requests.patch(
        url, json={"rrsets": [rrset]}, headers={"X-API-Key": powerdns.api_key}, timeout=5
    )
    assert resp.status_code == 204, resp.text
    assert powerdns.txt(name) == ["api-value"]
    powerdns.add_txt(name, "second")
    assert powerdns.txt(name) == ["api-value", "second"]
    assert powerdns.records(name, "TXT") == ['"api-value"', '"second"']
    powerdns.delete_rrset(name, "TXT")
    assert powerdns.txt(name) == []


def test_bind_resolves_both_servers_zones(bind_server: Bind, powerdns: PowerDNS) -> None:
    on_bind = f"_acme-challenge.{_label()}.bind-other.test"
    on_pdns = f"_acme-challenge.{_label()}.pdns-other.test"
    bind_server.add_txt(on_bind, "from-bind")
    powerdns.add_txt(on_pdns, "from-pdns")
    assert authdns.txt_values(bind_server.server, on_bind, recurse=True) == ["from-bind"]
    assert authdns.txt_values(bind_server.server, on_pdns, recurse=True) == ["from-pdns"]
    for name in (f"www.{BIND_ZONES[0]}", f"mail.{PDNS_ZONES[0]}", PDNS_ZONES[0]):
        answer = authdns.query(bind_server.server, name, "A", recurse=True)
        assert authdns.answer_texts(answer, "A") == ["127.0.0.1"]
    # NS of a forwarded zone resolve through BIND to PowerDNS's address; other names do not exist
    answer = authdns.query(bind_server.server, f"ns.{PDNS_ZONES[0]}", "A", recurse=True)
    assert authdns.answer_texts(answer, "A") == ["127.0.0.2"]
    elsewhere = authdns.query(bind_server.server, "mail.example.org", "A", recurse=True)
    assert elsewhere.rcode() == dns.rcode.NXDOMAIN
    powerdns.delete_rrset(on_pdns, "TXT")
    bind_server.flush()
    assert authdns.txt_values(bind_server.server, on_pdns, recurse=True) == []


def test_stale_zone_second_ns_never_sees_updates(bind_server: Bind, powerdns: PowerDNS) -> None:
    ns = [f"ns.{STALE_ZONE}.", f"ns2.{STALE_ZONE}."]
    assert bind_server.ns(STALE_ZONE) == ns
    assert powerdns.ns(STALE_ZONE) == ns
    for label, address in (("ns", "127.0.0.1"), ("ns2", "127.0.0.2")):
        answer = authdns.query(bind_server.server, f"{label}.{STALE_ZONE}", "A")
        assert authdns.answer_texts(answer, "A") == [address]
    name = f"_acme-challenge.{_label()}.{STALE_ZONE}"
    bind_server.add_txt(name, "only-on-bind")
    assert bind_server.txt(name) == ["only-on-bind"]
    assert powerdns.txt(name) == []


def test_pebble_validates_dns01_in_both_zones(
    dns01_pebble: Pebble, bind_server: Bind, powerdns: PowerDNS, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(dns01_pebble.ca_bundle))
    label = _label()
    names = [f"*.{label}.bind-zone.test", f"{label}.bind-zone.test", f"{label}.pdns-zone.test"]
    account_key = JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = client.ClientNetwork(account_key, alg=ES256, user_agent="dns-world-test")
    directory = client.ClientV2.get_directory(dns01_pebble.directory_url, net)
    acme = client.ClientV2(directory, net)
    net.account = acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    cert_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    order = acme.new_order(crypto_util.make_csr(cert_key, names))
    answers = []
    for authz in order.authorizations:
        challb = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01))
        assert isinstance(challb.chall, challenges.DNS01)
        record = challb.chall.validation_domain_name(authz.body.identifier.value)
        server = bind_server if record.endswith(".bind-zone.test") else powerdns
        server.add_txt(record, challb.chall.validation(account_key))
        answers.append((challb, challb.chall.response(account_key)))
    for challb, response in answers:
        acme.answer_challenge(challb, response)
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=30)
    done = acme.poll_and_finalize(order, deadline)
    assert done.fullchain_pem is not None
    assert "BEGIN CERTIFICATE" in done.fullchain_pem
