"""Certificate keys in the volume and in the cycle: ACME_KEY_TYPE and ACME_KEY_REUSE.

The volume is the real ``CertStore``; the cycle runs in-process with the fakes of
``tests.unit.fakes`` (real certificates for whatever key the cycle hands the issuer).
"""

from __future__ import annotations

import io
import threading
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from structlog.testing import capture_logs

from acme_sidecar.adapters.volume import CertStore, keys, pem
from acme_sidecar.adapters.volume.pem import load_chain, load_key
from acme_sidecar.shell.cycle import guarded_cycle
from acme_sidecar.shell.status import collect, render
from tests.unit.fakes import World, cycle_policy


def _kind(data: bytes) -> str:
    return pem.kind_of(load_key(data))


def test_a_new_volume_gets_ec256(tmp_path: Path) -> None:
    store = CertStore(tmp_path)
    store.prepare()
    assert store.keys.key_type() == "ec256"
    with capture_logs() as logs:
        pem = store.keys.domain_key()
    assert _kind(pem) == "ec256"
    [created] = [e for e in logs if e["event"] == "key.created"]
    assert created["key_type"] == "ec256" and created["tlsa_3_1_1"] == keys.tlsa_311(load_key(pem))


def test_an_adopted_key_keeps_its_type(tmp_path: Path) -> None:
    """ACME_KEY_TYPE empty: acme-mailcow's RSA 4096 key stays, byte for byte."""
    store = CertStore(tmp_path)
    store.prepare()
    adopted = keys.new_pem("rsa4096")
    store.layout.domain_key_path.write_bytes(adopted)
    store.layout.domain_key_path.chmod(0o600)
    assert store.keys.key_type() == "rsa4096"
    assert store.keys.domain_key() == adopted and store.keys.domain_key("rsa4096") == adopted


def test_a_changed_key_type_replaces_the_key_and_says_tlsa_must_change(tmp_path: Path) -> None:
    store = CertStore(tmp_path)
    store.prepare()
    old = store.keys.domain_key("rsa2048")
    with capture_logs() as logs:
        new = store.keys.domain_key("ec384")
    assert _kind(new) == "ec384" and store.layout.domain_key_path.read_bytes() == new
    [changed] = [e for e in logs if e["event"] == "key.type_changed"]
    assert (changed["old"], changed["new"]) == ("rsa2048", "ec384")
    assert changed["old_tlsa_3_1_1"] == keys.tlsa_311(load_key(old))
    assert changed["tlsa_3_1_1"] == keys.tlsa_311(load_key(new))
    assert "TLSA 3 1 1" in changed["action"]
    [backup] = (tmp_path / "backups" / "acme").iterdir()
    assert (backup / "key.pem").read_bytes() == old


def test_reuse_n_gives_every_certificate_its_own_fresh_key(tmp_path: Path) -> None:
    store = CertStore(tmp_path)
    store.prepare()
    shared = store.keys.order_keys("", ["a", "b"], reuse=True)
    assert isinstance(shared, bytes) and _kind(shared) == "ec256"
    fresh = store.keys.order_keys("ec384", ["a", "b"], reuse=False)
    assert isinstance(fresh, dict) and set(fresh) == {"a", "b"}
    assert fresh["a"] != fresh["b"] and {_kind(k) for k in fresh.values()} == {"ec384"}


def _spki(root: Path, name: str) -> str:
    public = load_chain((root / name / "cert.pem").read_bytes())[0].public_key()
    assert isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    return keys.tlsa_311(public)


def test_cycles_reuse_the_key_or_not_and_follow_a_type_change(tmp_path: Path) -> None:
    """Reuse (default): a forced renewal keeps every SPKI. ACME_KEY_TYPE changed: every
    certificate is ordered again with the new type. ACME_KEY_REUSE=n: each renewal and each
    certificate gets a key of its own."""
    w = World(tmp_path / "ssl")  # its acme/key.pem is EC P-256
    policy, deps = cycle_policy(), w.deps()
    first = guarded_cycle(policy, deps)
    names = sorted(w.store.certs.names())
    before = {n: _spki(w.root, n) for n in names}
    assert len(set(before.values())) == 1  # one shared key

    (w.root / "force_renew").touch()
    w.clock.advance(60)
    renewed = guarded_cycle(policy, deps, first.state)
    assert renewed.issued == len(names)
    assert {n: _spki(w.root, n) for n in names} == before

    w.clock.advance(60)
    ec384 = replace(policy, shape=replace(policy.shape, key_type="ec384"))
    changed = guarded_cycle(ec384, deps, renewed.state)
    assert changed.issued == len(names)
    assert {c.reason for c in changed.plan.certs} == {  # type: ignore[union-attr]
        "key type changed: its key is ec256, the key type is ec384"
    }
    assert {w.store.certs.load()[n].key_type for n in names} == {"ec384"}
    assert guarded_cycle(ec384, deps, changed.state).issued == 0  # stable afterwards

    (w.root / "force_renew").touch()
    w.clock.advance(60)
    fresh = replace(ec384, key_reuse=False)
    report = guarded_cycle(fresh, deps, changed.state)
    assert report.issued == len(names)
    after = {n: _spki(w.root, n) for n in names}
    assert len(set(after.values())) == len(names)  # one key per certificate
    assert not set(after.values()) & {keys.tlsa_311(load_key(w.store.keys.domain_key()))}


def test_status_shows_key_type_and_client_auth(tmp_path: Path) -> None:
    """``status`` names the key type and whether the certificate allows clientAuth; without it
    (Let's Encrypt since February 2026) it says what that means for Postfix."""
    w = World(tmp_path / "ssl")
    guarded_cycle(cycle_policy(), w.deps())
    data = collect(w.store, w.clock())
    assert {(r["key_type"], r["client_auth"]) for r in data["certificates"]} == {("ec256", True)}
    data["certificates"][0]["client_auth"] = False
    out = io.StringIO()
    render(data, out)
    text = out.getvalue()
    assert "key:       ec256" in text and "clientAuth: yes" in text
    assert "clientAuth: no: Postfix still presents it as its SMTP client certificate" in text


def test_a_new_volume_s_account_key_is_made_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``prepare_account_key`` makes a new volume's account key in a thread of its own (once,
    however often it is asked) and writes nothing; ``account_key`` then stores that very key;
    a volume that has its key makes none."""
    made: list[str] = []
    release = threading.Event()

    def slow_key() -> pem.PrivateKey:
        made.append(threading.current_thread().name)
        release.wait(10)
        return ec.generate_private_key(ec.SECP256R1())

    monkeypatch.setattr(keys, "new_account_key", slow_key)
    store = CertStore(tmp_path)
    store.keys.prepare_account_key()
    store.keys.prepare_account_key()
    assert not store.layout.account_key_path.exists()
    release.set()
    first = store.keys.account_key()
    assert made == ["account-key"]  # made in the background, once
    assert store.layout.account_key_path.read_bytes() == first
    store.keys.prepare_account_key()  # the volume has its key: nothing more is made
    assert store.keys.account_key() == first and made == ["account-key"]


def test_without_preparation_the_account_key_is_made_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No preparation (``acme-sidecar check``, a unit test): the key is made in the caller's
    thread, as before."""
    made: list[str] = []

    def key() -> pem.PrivateKey:
        made.append(threading.current_thread().name)
        return ec.generate_private_key(ec.SECP256R1())

    monkeypatch.setattr(keys, "new_account_key", key)
    CertStore(tmp_path).keys.account_key()
    assert made == [threading.current_thread().name]
