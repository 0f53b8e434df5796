"""Own certificates: whose the top-level pair is, what makes a pair bad, the expiry levels, the
plan stepping aside, and ``import`` respecting the volume's lock."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from acme_sidecar.adapters.volume import CertStore, files
from acme_sidecar.adapters.volume.toppair import inspect_pair
from acme_sidecar.config.policies import OwnPolicy
from acme_sidecar.core.expiry import EXPIRED, URGENT, WARNING, expiry_warning, thresholds
from acme_sidecar.core.model import NameGroup, Verdict
from acme_sidecar.core.names import holds as covers
from acme_sidecar.core.own import Link, PairFacts, classify, pair_problems
from acme_sidecar.core.plan import Shape, make_plan
from acme_sidecar.shell.importer import import_pair
from tests.integration.ownpairs import OwnCA

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
HOST = "mail.example.org"


def facts(**kw: object) -> PairFacts:
    base: dict[str, object] = {
        "fingerprint": "f",
        "chain": (Link(f"CN={HOST}", "CN=CA", True), Link("CN=CA", "CN=Root")),
        "issuer_org": "Example Corp",
        "names": (HOST,),
        "not_before": NOW - timedelta(days=10),
        "not_after": NOW + timedelta(days=80),
        "serial": 7,
        "key_matches": True,
    }
    return PairFacts(**(base | kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "own", "words"),
    [
        ({}, True, "not issued by the configured CA"),
        ({"copy_of_managed": True}, False, "copy of a certificate"),
        ({"key_is_ours": True}, False, "acme/key.pem"),
        ({"managed_issuers": {"CN=CA"}}, False, "also issued"),
        ({"ca_organizations": ("Example Corp",)}, False, "the configured CA"),
        ({"facts": facts(self_signed=True)}, False, "snake-oil"),
        ({"facts": facts(unreadable="cert.pem: bad")}, False, "cannot be read"),
    ],
)
def test_classify(kw: dict[str, object], own: bool, words: str) -> None:
    args: dict[str, object] = {
        "copy_of_managed": False,
        "key_is_ours": False,
        "managed_issuers": set(),
        "ca_organizations": (),
    }
    pair = kw.pop("facts", facts())
    got = classify(pair, **(args | kw))  # type: ignore[arg-type]
    assert got.own is own and words in got.reason


def test_covers() -> None:
    assert covers(["MAIL.example.org"], HOST)
    assert covers(["*.example.org"], HOST)
    assert not covers(["*.org"], HOST)
    assert not covers(["example.org", "*.mail.example.org"], HOST)


def test_pair_problems() -> None:
    assert pair_problems(facts(), HOST, NOW) == []
    assert pair_problems(facts(key_matches=False), HOST, NOW) == [
        "key.pem is not the key of the certificate in cert.pem"
    ]
    wrong_order = (Link("CN=leaf", "CN=CA", False), Link("CN=Root", "CN=Root"))
    assert "out of order" in pair_problems(facts(chain=wrong_order), HOST, NOW)[0]
    alone = (Link(f"CN={HOST}", "CN=CA"),)
    assert "incomplete" in pair_problems(facts(chain=alone), HOST, NOW)[0]
    assert pair_problems(facts(chain=(Link("CN=x", "CN=x"),), self_signed=True), HOST, NOW) == []
    assert "do not cover" in pair_problems(facts(names=("x.example.org",)), HOST, NOW)[0]
    assert "expired" in pair_problems(facts(not_after=NOW), HOST, NOW)[0]
    assert "not valid before" in pair_problems(facts(not_before=NOW + timedelta(1)), HOST, NOW)[0]


def test_inspect_real_pairs() -> None:
    ca = OwnCA()
    good = ca.issue([HOST])
    got = inspect_pair(good.chain, good.key)
    assert got.key_matches and got.issuer_org == "Example Corp" and not got.self_signed
    assert got.chain[0].signed_by_next and got.names == (HOST,)
    assert pair_problems(got, HOST, datetime.now(UTC)) == []
    reversed_chain = inspect_pair(good.ca + good.leaf, good.key)
    assert any("out of order" in p for p in pair_problems(reversed_chain, HOST, datetime.now(UTC)))
    other = ca.issue([HOST])
    assert not inspect_pair(good.chain, other.key).key_matches
    assert inspect_pair(b"junk", good.key).unreadable.startswith("cert.pem")


@pytest.mark.parametrize(
    ("lifetime", "left", "level"),
    [
        (90, 15, None),
        (90, 13.9, WARNING),
        (90, 10, WARNING),
        (90, 6.9, URGENT),
        (90, -0.1, EXPIRED),
        (6, 2.1, None),  # a 6-day certificate: ⅓ and ⅙ of the lifetime, 2 days and 1 day
        (6, 1.9, WARNING),
        (6, 0.9, URGENT),
    ],
)
def test_expiry_levels(lifetime: float, left: float, level: str | None) -> None:
    end = NOW + timedelta(days=left)
    warning = expiry_warning(end - timedelta(days=lifetime), end, NOW)
    assert (warning.level if warning else None) == level


def test_thresholds_follow_the_setting() -> None:
    end = NOW + timedelta(days=300)
    first, second = thresholds(end - timedelta(days=365), end, days=30)
    assert (first, second) == (timedelta(days=30), timedelta(days=15))


def test_plan_steps_aside_for_the_hostname() -> None:
    """With an own top-level pair the hostname's certificate is not ordered nor made the
    default, and a stored one holding the hostname is archived; SNI certificates continue."""
    from acme_sidecar.core.model import StoredCert

    groups = [NameGroup(HOST, (HOST,), server=True), NameGroup("one.test", ("mail.one.test",))]
    verdicts = {n: Verdict(n, True, "ok") for g in groups for n in g.names}
    stored = {HOST: StoredCert(HOST, (HOST,), NOW, NOW + timedelta(90), 1, "CN=CA", True)}
    plan = make_plan(
        groups, verdicts, stored, shape=Shape(sni=True), force=False, now=NOW, own_default="own"
    )
    assert [c.spec.name for c in plan.certs] == ["mail.one.test"]
    assert plan.default_name is None and plan.archive == (HOST,)
    san = make_plan(groups, verdicts, {}, shape=Shape(), force=False, now=NOW, own_default="own")
    assert san.certs == () and san.default_name is None and san.archive == ()


def test_import_waits_for_the_lock_then_gives_up(tmp_path: Path) -> None:
    store = CertStore(tmp_path / "ssl")
    store.prepare()
    pair = OwnCA().issue([HOST])
    (tmp_path / "c.pem").write_bytes(pair.chain)
    (tmp_path / "k.pem").write_bytes(pair.key)
    policy = OwnPolicy(hostname=HOST, skip_lets_encrypt=True)
    fd = files.try_lock(store.layout.lock_path)
    assert fd is not None
    out = io.StringIO()
    try:
        code = import_pair(
            policy, store, tmp_path / "c.pem", tmp_path / "k.pem", out=out, lock_wait=0.6
        )
    finally:
        import os

        os.close(fd)
    assert code == 1 and "held the volume's lock" in out.getvalue()
    assert not (store.root / "cert.pem").exists()
    code = import_pair(policy, store, tmp_path / "c.pem", tmp_path / "k.pem", out=out)
    assert code == 0 and (store.root / "cert.pem").read_bytes() == pair.chain
