"""``ACME_DANE=publish`` (issue #17): the rollover adds the next key's TLSA record itself through
the DNS hosts of DNS-01 and removes the old key's 2 x TTL after the switch. The pure step
(``core.rollover`` with ``publish``), the glue (``shell.rollover``) and the hook (``ops.dane``)
with a recording publisher, and ``RecordPublisher`` over a router of fake providers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

import pytest
import structlog

from acme_sidecar.adapters.dns01.base import DnsUpdateError
from acme_sidecar.adapters.dns01.nsupdate import NsupdateProvider
from acme_sidecar.adapters.dns01.publish import RecordPublisher
from acme_sidecar.adapters.dns01.responder import Dns01Router, Target
from acme_sidecar.adapters.volume.keys import tlsa_311
from acme_sidecar.adapters.volume.pem import load_key
from acme_sidecar.config.dns01 import NsupdateConf
from acme_sidecar.core.rollover import (
    Progress,
    Step,
    parse_record,
    record,
    rollover,
    value,
    wake_at,
)
from acme_sidecar.ops.alerts import DANE_PUBLISH_NEXT
from acme_sidecar.ops.dane import load_state
from acme_sidecar.shell.rollover import KeyRoll
from tests.certs import cert_pem, leaf
from tests.unit.test_dns01_adapters import FakeLookups, FakeProvider
from tests.unit.test_rollover import (
    CUR,
    NOW,
    NXT,
    OTHER,
    OWNER,
    FakeDns,
    answer,
    at,
    hook,
    served_volume,
)

Records = Mapping[str, tuple[str, ...]]


class Writer:
    """A publisher that records its calls; ``problem``: what every call answers."""

    def __init__(self, problem: str | None = None) -> None:
        self.problem = problem
        self.added: list[tuple[dict[str, tuple[str, ...]], int]] = []
        self.removed: list[dict[str, tuple[str, ...]]] = []

    def add(self, records: Records, ttl: int) -> str | None:
        self.added.append((dict(records), ttl))
        return self.problem

    def remove(self, records: Records) -> str | None:
        self.removed.append(dict(records))
        return self.problem


def test_publish_step_adds_the_next_record_and_the_current_where_missing() -> None:
    """With ``publish`` the step names the records to add, never tells: the next key's, and the
    current key's too where the RRset lacks it; once seen, nothing is added."""
    found = rollover(CUR, NXT, {OWNER: answer(CUR)}, Progress(), NOW, publish=True)
    assert (found.step, found.tell, dict(found.add)) == (
        Step.PUBLISH,
        False,
        {OWNER: (f"3 1 1 {NXT}",)},
    )
    assert found.progress.ttl == 300 and not found.progress.told
    lacking = rollover(CUR, NXT, {OWNER: answer(OTHER)}, found.progress, NOW, publish=True)
    assert dict(lacking.add) == {OWNER: (f"3 1 1 {CUR}", f"3 1 1 {NXT}")}
    seen = rollover(CUR, NXT, {OWNER: answer(CUR, NXT)}, found.progress, NOW, publish=True)
    assert (seen.step, dict(seen.add)) == (Step.WAIT, {})


def test_publish_wakes_when_the_cached_rrset_has_expired() -> None:
    """Records just added are looked for again after 2 x TTL (5 s at least), never later than
    ``ACME_DANE_INTERVAL``."""
    short = rollover(CUR, NXT, {OWNER: answer(CUR, ttl=1)}, Progress(), NOW, publish=True)
    assert wake_at(short, NOW, timedelta(hours=1)) == NOW + timedelta(seconds=5)
    long = rollover(CUR, NXT, {OWNER: answer(CUR, ttl=7200)}, short.progress, NOW, publish=True)
    assert wake_at(long, NOW, timedelta(hours=1)) == NOW + timedelta(hours=1)


def test_record_lines_read_back() -> None:
    """A ``record`` line gives back its owner and value (what the retirement removes)."""
    assert parse_record(record(OWNER, CUR)) == (OWNER, value(CUR))


def roll_with(tmp_path: Path, dns: FakeDns, writer: Writer) -> KeyRoll:
    """The glue for one owner with ``writer`` as its publisher, state in ``tmp_path``."""
    return KeyRoll(
        ("mail.example.org",), (25,), dns.lookup, tmp_path / "dane.json", publisher=writer
    )


def test_glue_publishes_the_next_key_then_switches(tmp_path: Path) -> None:
    """rsa2048 -> ec256, the current key pinned: the next key is made and its record added
    (``dane.published``, nothing told); held until the record is seen for 2 x TTL; switch."""
    store, current = served_volume(tmp_path / "ssl")
    dns = FakeDns()
    dns.records = [current]
    writer = Writer()
    roll = roll_with(tmp_path, dns, writer)
    with structlog.testing.capture_logs() as logs:
        first = roll.before_plan(store, "ec256", reuse=True, now=NOW)
    assert first is not None and (first.step, first.kind) == (Step.PUBLISH, "rsa2048")
    nxt = tlsa_311(load_key((tmp_path / "ssl" / "acme" / "key.next.pem").read_bytes()))
    assert writer.added == [({OWNER: (f"3 1 1 {nxt}",)}, 1)]
    events = [e["event"] for e in logs]
    assert "dane.published" in events and "dane.publish_next" not in events
    assert first.wake == NOW + timedelta(seconds=5)
    assert load_state(tmp_path / "dane.json").rollover.published == NOW
    assert not hook(tmp_path, dns, writer).notices()  # published: nothing to ask of the admin
    dns.records = [current, nxt]
    seen = roll.before_plan(store, "ec256", reuse=True, now=NOW + timedelta(seconds=5))
    go = roll.before_plan(store, "ec256", reuse=True, now=NOW + timedelta(seconds=7))
    assert seen is not None and go is not None
    assert (seen.step, go.step, len(writer.added)) == (Step.WAIT, Step.SWITCH, 1)


def test_glue_a_refused_publication_tells_the_admin_and_waits(tmp_path: Path) -> None:
    """The DNS host refuses: one ``dane.publish_failed`` line naming the cause, the admin is
    told the record once, and the next try is at ``ACME_DANE_INTERVAL`` (not at once)."""
    store, current = served_volume(tmp_path / "ssl")
    dns = FakeDns()
    dns.records = [current]
    writer = Writer("dns_nsupdate 127.0.0.1:53 in zone example.org: REFUSED")
    roll = roll_with(tmp_path, dns, writer)
    with structlog.testing.capture_logs() as logs:
        first = roll.before_plan(store, "ec256", reuse=True, now=NOW)
        again = roll.before_plan(store, "ec256", reuse=True, now=NOW + timedelta(hours=1))
    assert first is not None and again is not None and first.step is Step.PUBLISH
    failed = [e for e in logs if e["event"] == "dane.publish_failed"]
    assert len(failed) == 2 and "REFUSED" in failed[0]["error"]
    assert [e["event"] for e in logs].count("dane.publish_next") == 1
    assert first.wake == NOW + timedelta(hours=1) and len(writer.added) == 2
    (notice,) = hook(tmp_path, dns, writer).notices()
    assert notice.event == DANE_PUBLISH_NEXT


def test_glue_read_only_publishes_nothing(tmp_path: Path) -> None:
    """``check`` (read only) with ``publish`` set: nothing is added."""
    store, current = served_volume(tmp_path / "ssl")
    dns = FakeDns()
    dns.records = [current]
    writer = Writer()
    roll = KeyRoll(
        ("mail.example.org",),
        (25,),
        dns.lookup,
        tmp_path / "dane.json",
        read_only=True,
        publisher=writer,
    )
    roll.before_plan(store, "ec256", reuse=True, now=NOW)
    assert writer.added == []


@pytest.mark.parametrize("problem", [None, "dns_nsupdate 127.0.0.1:53: NOTAUTH"])
def test_hook_removes_the_old_record_after_2_ttl(tmp_path: Path, problem: str | None) -> None:
    """After the switch and 2 x TTL, the old key's record is removed through the provider
    (``dane.retired``); a refusal is one ``dane.retire_failed`` line saying to remove it by
    hand, and is not tried again."""
    store, current = served_volume(tmp_path / "ssl")
    dns = FakeDns()
    dns.records = [current]
    writer = Writer()
    roll = roll_with(tmp_path, dns, writer)
    roll.before_plan(store, "ec256", reuse=True, now=NOW)
    nxt_key = load_key((tmp_path / "ssl" / "acme" / "key.next.pem").read_bytes())
    dns.records = [current, tlsa_311(nxt_key)]
    roll.before_plan(store, "ec256", reuse=True, now=NOW + timedelta(seconds=5))
    roll.before_plan(store, "ec256", reuse=True, now=NOW + timedelta(seconds=7))
    (tmp_path / "ssl" / "cert.pem").write_bytes(cert_pem(leaf(["mail.example.org"], key=nxt_key)))
    writer.problem = problem
    check = hook(tmp_path, dns, writer)
    with structlog.testing.capture_logs() as logs:
        for second in (8, 9, 10, 11, 12):
            check.after_cycle(at(NOW + timedelta(seconds=second)))
    said = [e["event"] for e in logs if e["event"].startswith(("dane.switched", "dane.retire"))]
    last = "dane.retired" if problem is None else "dane.retire_failed"
    assert said == ["dane.switched", last]
    assert writer.removed == [{OWNER: (f"3 1 1 {current}",)}]


def test_publisher_routes_each_owner_to_its_host_and_zone() -> None:
    """The default host writes in the zone found by SOA; a ``[zone …]`` section's host in its
    fixed zone (``NSUPDATE_ZONE``); one update per host and zone, with the TTL given."""
    lookups = FakeLookups()
    default, section = FakeProvider(lookups), FakeProvider(lookups, label="acme.net host")
    router = Dns01Router(Target(default), {"acme.net": Target(section, zone="acme.net")})
    publisher = RecordPublisher(router, lookups)
    records = {
        "_25._tcp.mail.example.org": (f"3 1 1 {NXT}",),
        "_465._tcp.mail.example.org": (f"3 1 1 {NXT}",),
        "_25._tcp.mx.acme.net": (f"3 1 1 {CUR}", f"3 1 1 {NXT}"),
    }
    assert publisher.add(records, 0) is None
    assert default.calls == [
        ("add TLSA 1", "example.org", {k: v for k, v in records.items() if "example" in k})
    ]
    mx = "_25._tcp.mx.acme.net"
    assert section.calls == [("add TLSA 1", "acme.net", {mx: records[mx]})]
    assert publisher.remove({"_25._tcp.mx.acme.net": (f"3 1 1 {CUR}",)}) is None
    assert section.calls[-1][0] == "remove TLSA"


def test_publisher_says_which_host_failed_and_why() -> None:
    """No usable provider, an unknown zone and a refusal: one message naming each."""
    lookups = FakeLookups()
    refusing = FakeProvider(lookups, error=DnsUpdateError("REFUSED"), label="dns_nsupdate x")
    router = Dns01Router(
        Target(None, "ACME_DNS_PROVIDER is not set"), {"example.org": Target(refusing)}
    )
    problem = RecordPublisher(router, lookups).add(
        {
            "_25._tcp.mail.example.org": (f"3 1 1 {NXT}",),
            "_25._tcp.mail.elsewhere.test": (f"3 1 1 {NXT}",),
        },
        60,
    )
    assert problem is not None
    assert "dns_nsupdate x in zone example.org: REFUSED" in problem
    assert "no usable DNS provider for _25._tcp.mail.elsewhere.test" in problem
    assert "ACME_DNS_PROVIDER is not set" in problem


def test_nsupdate_refuses_a_malformed_record_before_sending() -> None:
    """A TLSA value dnspython cannot read is one ``DnsUpdateError`` naming it; nothing sent."""
    provider = NsupdateProvider(NsupdateConf(servers=("192.0.2.1",)), None)
    with pytest.raises(DnsUpdateError, match=r"TLSA '3 1 1 zz' at _25\._tcp\.mail"):
        provider.add_records(
            "example.org", "TLSA", {"_25._tcp.mail.example.org": ("3 1 1 zz",)}, 60
        )
