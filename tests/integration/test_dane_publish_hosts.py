"""Issue #17, ``ACME_DANE=publish`` through each kind of DNS host mailcow's DNS-01 settings name:
the TLSA records of a rollover are added and removed by RFC 2136 (``dns_nsupdate`` on BIND,
TSIG-signed, the file's default section) and by a lexicon provider API (``dns_pdns`` on PowerDNS,
a ``[zone …]`` section of the same file), as the daemon builds them (``wiring.tlsa_publisher``
from the settings), and a host that refuses is one message naming it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from acme_sidecar.config.settings import load_settings
from acme_sidecar.core.ports import RecordWriter
from acme_sidecar.wiring import tlsa_publisher
from tests.integration.dns01_env import dns01_env, nsupdate_lines, pdns_lines
from tests.world import authdns
from tests.world.bind import Bind
from tests.world.mariadb import MariaDB
from tests.world.pebble import Pebble
from tests.world.powerdns import PowerDNS

NEXT = "3 1 1 " + "ab" * 32
OLD = "3 1 1 " + "cd" * 32


def tlsa(server: tuple[str, int], name: str) -> list[str]:
    """The TLSA records of ``name`` as ``server`` answers them now."""
    return [r.lower() for r in authdns.answer_texts(authdns.query(server, name, "TLSA"), "TLSA")]


def publisher_of(
    conf: str,
    tmp_path: Path,
    mariadb: MariaDB,
    pebble: Pebble,
    bind: Bind,
    monkeypatch: pytest.MonkeyPatch,
) -> RecordWriter:
    """The publisher the daemon builds from mailcow's settings with ``conf`` as its DNS-01
    file (``dns_nsupdate`` by default), ``ACME_DANE=publish`` and DNS-01 itself off."""
    env = dns01_env(
        tmp_path,
        mariadb,
        pebble,
        bind,
        provider="dns_nsupdate",
        conf=conf,
        ACME_DNS_CHALLENGE="n",  # TLSA only: DNS-01 need not be on
        ACME_DANE="publish",
    )
    for name, value in env.items():  # the provider's variables are read from the environment
        monkeypatch.setenv(name, value)
    publisher = tlsa_publisher(load_settings(dict(os.environ)))
    assert publisher is not None
    return publisher


def test_dane_publish_adds_and_removes_tlsa_by_rfc2136_and_by_a_provider_api(
    tmp_path: Path,
    mariadb: MariaDB,
    dns01_pebble: Pebble,
    bind_server: Bind,
    powerdns: PowerDNS,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """mailcow's dns-01.conf (dns_nsupdate by default, a [zone pdns-other.test] on PowerDNS):
    the records of both MX names are added next to the ones there, with the TTL given, and
    removed again, each through its own host; the other records of the RRsets stay."""
    conf = (
        nsupdate_lines(bind_server)
        + "\n[zone pdns-other.test]\nACME_DNS_PROVIDER=dns_pdns\n"
        + pdns_lines(powerdns)
    )
    publisher = publisher_of(conf, tmp_path, mariadb, dns01_pebble, bind_server, monkeypatch)
    on_bind, on_pdns = "_25._tcp.mail.bind-other.test", "_25._tcp.mail.pdns-other.test"
    assert publisher.add({on_bind: (OLD,), on_pdns: (OLD,)}, 60) is None
    assert publisher.add({on_bind: (NEXT,), on_pdns: (NEXT,)}, 60) is None
    assert tlsa(bind_server.server, on_bind) == sorted([NEXT, OLD])
    assert sorted(powerdns.records(on_pdns, "TLSA")) == sorted([NEXT, OLD])
    ttl = authdns.query(bind_server.server, on_bind, "TLSA").answer[0].ttl
    assert ttl == 60
    assert publisher.remove({on_bind: (OLD,), on_pdns: (OLD,)}) is None
    assert tlsa(bind_server.server, on_bind) == [NEXT]
    assert powerdns.records(on_pdns, "TLSA") == [NEXT]


def test_dane_publish_a_refusing_host_is_one_message_naming_it(
    tmp_path: Path,
    mariadb: MariaDB,
    dns01_pebble: Pebble,
    bind_server: Bind,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A TSIG key BIND does not know: the message names the server and the key, not the
    secret; nothing is written."""
    wrong = tmp_path / "wrong.key"
    wrong.write_text('key "nobody" { algorithm hmac-sha256; secret "c2VjcmV0c2VjcmV0"; };\n')
    wrong.chmod(0o600)
    conf = nsupdate_lines(bind_server, wrong)
    publisher = publisher_of(conf, tmp_path, mariadb, dns01_pebble, bind_server, monkeypatch)
    owner = "_25._tcp.mail.bind-zone.test"
    problem = publisher.add({owner: (NEXT,)}, 60)
    assert problem is not None and "nobody" in problem and "TSIG" in problem, problem
    assert "c2VjcmV0" not in problem
    assert tlsa(bind_server.server, owner) == []
