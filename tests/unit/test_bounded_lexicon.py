"""DNS provider (lexicon) calls are bounded: a hung call is killed at its deadline with its
child process, so no thread, socket or process outlives it, and the call can write nothing
afterwards. The real lexicon PowerDNS provider runs against loopback servers that never
answer, drip one byte every 0.1 s, or send 100 MiB; a stand-in provider shows the rest. The
deadline of the hung calls is shortened to 2 s: the child's start (0.4 s, more on a busy
machine) is inside it (review N7, reproduction e9_hung.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from acme_sidecar.adapters.dns01 import lexicon_api, lexicon_call
from acme_sidecar.adapters.dns01.base import DnsUpdateError
from acme_sidecar.adapters.dns01.lexicon_api import LexiconProvider
from acme_sidecar.config.dns01 import LexiconConf
from tests.unit.loopback import (
    HUGE,
    Loopback,
    Respond,
    above,
    counts,
    drip_body,
    drip_head,
    hang,
    huge,
    settled,
)

ROOT = Path(__file__).resolve().parents[2]
ZONE = "pdns-zone.test"
RECORDS = {f"_acme-challenge.{ZONE}": ("token-value",)}


@pytest.fixture(autouse=True)
def standin_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The child can import the stand-in from ``tests``."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    yield


@pytest.fixture
def short_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2 s deadline instead of 60 s."""
    monkeypatch.setattr(lexicon_api, "API_DEADLINE", 2.0)


def pdns(url: str) -> LexiconProvider:
    options = {"pdns_server": url, "auth_token": "t0ken", "pdns_server_id": "localhost"}
    return LexiconProvider(LexiconConf("dns_pdns", "powerdns", options, 60))


def standin(mode: str, log: Path) -> LexiconProvider:
    conf = LexiconConf("dns_pdns", "powerdns", {"mode": mode, "log": str(log)}, 60)
    return LexiconProvider(conf, module="tests.unit.lexicon_standin")


@pytest.mark.usefixtures("short_deadline")
@pytest.mark.parametrize(("respond", "cycles"), [(hang, 2), (drip_body, 1), (drip_head, 1)])
def test_a_hung_provider_api_is_cancelled(respond: Respond, cycles: int) -> None:
    """Cycles of add and remove against an API that never answers (or drips): each call is a
    transient failure at the deadline, the API saw every connection closed, and the threads
    and sockets of this process are back to what they were before."""
    with Loopback(respond) as server:
        provider = pdns(server.url)
        before = counts()
        errors = []
        for _ in range(cycles):
            for call in (provider.add_txt, provider.remove_txt):
                with pytest.raises(DnsUpdateError) as info:
                    call(ZONE, RECORDS)
                errors.append(info.value)
        after = settled(before, server.closed)
        connections, gone = server.connections, server.gone
    assert [e.transient for e in errors] == [True] * 2 * cycles
    assert "did not answer within 2s when asked to add a TXT record" in str(errors[0])
    assert "did not answer within 2s when asked to remove a TXT record" in str(errors[1])
    assert 1 <= connections == gone and server.sent < 2 * cycles * 20
    assert not above(after, before)


def test_a_huge_provider_answer_is_cut_off() -> None:
    """A 100 MiB answer fails the call (transient) once ANSWER_CAP bytes are read, naming
    the host but not the URL (it may hold a token)."""
    with Loopback(huge()) as server:
        with pytest.raises(DnsUpdateError) as info:
            pdns(server.url).add_txt(ZONE, RECORDS)
        assert server.sent < HUGE
    assert info.value.transient
    assert str(info.value) == (
        "dns_pdns (lexicon powerdns) at 127.0.0.1: "
        f"the answer is longer than {lexicon_call.ANSWER_CAP} bytes"
    )


@pytest.mark.usefixtures("short_deadline")
def test_a_call_given_up_can_write_nothing_afterwards(tmp_path: Path) -> None:
    """The hung call's process is killed and reaped by the time the error is raised: it
    cannot create its record late, and the removal that follows runs on its own."""
    log = tmp_path / "calls"
    with pytest.raises(DnsUpdateError) as info:
        standin("hang", log).add_txt(ZONE, RECORDS)
    pid = int(log.read_text().split()[0])
    assert info.value.transient and not Path(f"/proc/{pid}").exists()
    standin("ok", log).remove_txt(ZONE, RECORDS)
    assert log.read_text().splitlines()[1:] == [f"deleted TXT _acme-challenge.{ZONE} token-value"]


def test_a_provider_call_that_works(tmp_path: Path) -> None:
    """Records go to the provider, each value once, through the child process."""
    log = tmp_path / "calls"
    provider = standin("ok", log)
    provider.add_txt(ZONE, {"a": ("1", "2"), "b": ("3",)})
    provider.remove_txt(ZONE, {"a": ("1",)})
    assert log.read_text().splitlines() == [
        "created TXT a 1",
        "created TXT a 2",
        "created TXT b 3",
        "deleted TXT a 1",
    ]


def test_a_refused_token_is_named(tmp_path: Path) -> None:
    """An HTTP 401 from the provider says which credential to check; not transient."""
    with pytest.raises(DnsUpdateError) as info:
        standin("denied", tmp_path / "calls").add_txt(ZONE, RECORDS)
    assert str(info.value) == (
        "dns_pdns (lexicon powerdns) answered 401 Unauthorized: check PDNS_Token (the "
        "dns01.provider line at start says where each was read)"
    )
    assert not info.value.transient


@pytest.mark.usefixtures("short_deadline")
def test_credentials_are_not_in_the_child_command_line(tmp_path: Path) -> None:
    """The child gets the provider options on stdin: its argv and environment hold none."""
    log = tmp_path / "calls"
    conf = LexiconConf("dns_pdns", "powerdns", {"mode": "hang", "log": str(log), "k": "s3cr3t"}, 60)
    with pytest.raises(DnsUpdateError):
        LexiconProvider(conf, module="tests.unit.lexicon_standin").add_txt(ZONE, RECORDS)
    seen = log.read_text()
    assert "lexicon_call" in seen and "s3cr3t" not in seen
