"""Issue #9, tests 4 and 5: External Account Binding and key types against the real Pebble.

Test 4 runs a Pebble of its own that requires EAB (``externalAccountBindingRequired`` with one
MAC key in ``externalAccountMACKeys``). Test 5 issues a certificate of each ``ACME_KEY_TYPE``
from Pebble on the consumer stack (Postfix-, Dovecot- and nginx-like TLS listeners) and reads
the key of the served certificate back over SMTP and IMAP STARTTLS and HTTPS; a reused key keeps
its SPKI (TLSA 3 1 1) across renewals, ``ACME_KEY_REUSE=n`` does not; an acme-mailcow volume's
RSA 4096 key stays.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from acme_sidecar.adapters.volume import keys, pem
from acme_sidecar.adapters.volume.pem import load_key
from acme_sidecar.core.profiles import KEY_TYPES
from tests.integration.eab import HMAC, KID, WRONG
from tests.integration.sidecar import HOST, Run, base_env, leaf, seed, sidecar
from tests.integration.stack import KINDS, Stack
from tests.world import World
from tests.world.pebble import Pebble
from tests.world.tlsprobe import served_certificate


def _errors(run: Run) -> list[dict[str, object]]:
    return [e for e in run.events if e.get("level") in ("error", "critical")]


def test_eab_required_missing_wrong_and_right(
    world: World, eab_pebble: Pebble, volume: Path, totals: Callable[[str, dict[str, int]], None]
) -> None:
    """Issue #9 test 4: against a CA that requires EAB, no binding and a wrong HMAC key are
    each one clear error line (the second with the CA's problem); the right key registers the
    account and the certificate is issued. The HMAC keys never appear in the output."""
    seed(world, ["one.test"])
    env = base_env(world, volume) | {
        "DIRECTORY_URL": eab_pebble.directory_url,
        "ACME_CA_BUNDLE": str(eab_pebble.ca_bundle),
    }
    missing = sidecar(env, "once")
    assert missing.code == 1
    [line] = _errors(missing)
    assert line["event"] == "orders.not_started"
    assert "requires External Account Binding" in str(line["error"])
    assert "set ACME_EAB_KID and ACME_EAB_HMAC_KEY" in str(line["error"])

    # each run starts without the ledger: its back-off would hold the next order (that the
    # failure is kept and retried later is tested elsewhere)
    (volume / "acme" / "state.json").unlink()
    wrong = sidecar(env | {"ACME_EAB_KID": KID, "ACME_EAB_HMAC_KEY": WRONG}, "once")
    assert wrong.code == 1
    [line] = _errors(wrong)
    assert line["event"] == "orders.not_started"
    assert str(line["error"]).startswith(
        f"the CA refused the account with External Account Binding ACME_EAB_KID={KID}: "
        "the CA answered "
    )
    assert line["problem"] and line["detail"]  # the CA's own problem type and text
    assert WRONG not in wrong.stderr + wrong.stdout

    (volume / "acme" / "state.json").unlink()
    right = sidecar(env | {"ACME_EAB_KID": KID, "ACME_EAB_HMAC_KEY": HMAC}, "once")
    assert right.code == 0, right.stderr
    [registered] = right.named("account.registered")
    assert registered["eab_kid"] == KID
    assert leaf(volume / HOST / "cert.pem").subject is not None
    assert right.named("cert.stored") and _errors(right) == []
    assert HMAC not in right.stderr + right.stdout
    totals("eab (test 4)", {"runs": 3, "refused": 2, "issued": len(right.named("cert.stored"))})


def _served_kind(stack: Stack, kind: str) -> tuple[int, str, str]:
    """Serial, key type and TLSA 3 1 1 of what the ``kind`` consumer serves for HOST."""
    service = next(s for s, k in KINDS if k == kind)
    cert = served_certificate(kind, stack.ports[service], HOST)
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    return cert.serial_number, pem.kind_of(public), keys.tlsa_311(public)


def _served(world: World, stack: Stack, run: Run) -> set[tuple[int, str, str]]:
    """What the three consumers serve for HOST (after any restart of this run)."""
    if run.named("service.restarted"):
        for service, _ in KINDS:
            world.docker.wait_ready(stack.containers[service].id)
    return {_served_kind(stack, kind) for _, kind in KINDS}


def _stored(volume: Path) -> tuple[int, str, str]:
    cert = leaf(volume / HOST / "cert.pem")
    return cert.serial_number, pem.kind_of(cert.public_key()), keys.tlsa_311(cert.public_key())


def test_each_key_type_is_issued_and_served(
    world: World, stack: Stack, totals: Callable[[str, dict[str, int]], None]
) -> None:
    """Issue #9 test 5: each ACME_KEY_TYPE in turn is issued by Pebble and served by all
    three consumers; each change logs the new TLSA 3 1 1 and re-issues. Then a forced
    renewal keeps the SPKI (ACME_KEY_REUSE=y), and with ACME_KEY_REUSE=n it changes."""
    seed(world, ["one.test"])
    # seven certificates for the same names within minutes: past Let's Encrypt's 5 a week,
    # which ACME_RATE_LIMITS=auto (the default) keeps for Let's Encrypt only, not for Pebble
    env = stack.env
    changes = probes = 0
    for kind in KEY_TYPES:
        run = sidecar(env | {"ACME_KEY_TYPE": kind}, "once", timeout=180)
        assert run.code == 0, run.stderr
        stored = _stored(stack.volume)
        assert stored[1] == kind
        assert _served(world, stack, run) == {stored}, kind
        probes += 3
        changed = run.named("key.type_changed")
        if kind != KEY_TYPES[0]:
            assert [(c["new"], c["tlsa_3_1_1"]) for c in changed] == [(kind, stored[2])]
            assert "TLSA 3 1 1" in str(changed[0]["action"])
            changes += 1
        else:  # the first certificate of a fresh volume: no type to change from
            assert changed == []
    last = _stored(stack.volume)

    (stack.volume / "force_renew").touch()
    reused = sidecar(env, "once")  # ACME_KEY_TYPE empty: the volume's type (ec384)
    assert reused.code == 0, reused.stderr
    renewed = _stored(stack.volume)
    assert renewed[0] != last[0] and renewed[1:] == last[1:]  # new serial, same SPKI
    assert _served(world, stack, reused) == {renewed}
    assert reused.named("key.type_changed") == []

    (stack.volume / "force_renew").touch()
    fresh = sidecar(env | {"ACME_KEY_REUSE": "n"}, "once")
    assert fresh.code == 0, fresh.stderr
    other = _stored(stack.volume)
    assert other[1] == "ec384" and other[2] != renewed[2]  # a fresh key of the same type
    assert _served(world, stack, fresh) == {other}
    assert fresh.named("key.fresh")
    probes += 6
    totals("key types (test 5)", {"types": len(KEY_TYPES), "type_changes": changes,
                                  "probes": probes, "spki_kept": 1, "spki_fresh": 1})  # fmt: skip


def test_adopted_rsa4096_volume_keeps_rsa4096(
    world: World, stack: Stack, totals: Callable[[str, dict[str, int]], None]
) -> None:
    """Issue #9 test 5: an acme-mailcow volume (RSA 4096 ``acme/key.pem``) with ACME_KEY_TYPE
    unset keeps its key byte for byte: the certificate and its renewal are RSA 4096 with the
    key's SPKI, so TLSA 3 1 1 records published for acme-mailcow stay valid."""
    seed(world, ["one.test"])
    adopted = keys.new_pem("rsa4096")
    (stack.volume / "acme").mkdir(mode=0o700)
    (stack.volume / "acme" / "key.pem").write_bytes(adopted)
    pin = keys.tlsa_311(load_key(adopted))
    spkis = []
    for attempt in range(2):
        if attempt:
            (stack.volume / "force_renew").touch()
        run = sidecar(stack.env, "once")
        assert run.code == 0, run.stderr
        stored = _stored(stack.volume)
        assert stored[1:] == ("rsa4096", pin)
        assert _served(world, stack, run) == {stored}
        assert run.named("key.type_changed") == []
        assert [e["path"] for e in run.named("key.created")] in ([], ["acme/account.pem"])
        spkis.append(stored[2])
    assert (stack.volume / "acme" / "key.pem").read_bytes() == adopted
    status = sidecar(stack.env, "status", "--json")
    row = next(r for r in json.loads(status.stdout)["certificates"] if r["name"] == HOST)
    cert = leaf(stack.volume / HOST / "cert.pem")
    assert row["key_type"] == "rsa4096"
    assert row["client_auth"] is pem.client_auth(cert)  # what Pebble's EKU says
    shown = sidecar(stack.env, "status").stdout
    assert "key:       rsa4096" in shown and "clientAuth: " in shown
    totals(
        "adopted rsa4096 (test 5)",
        {
            "issued": 2,
            "spki_kept": int(len(set(spkis)) == 1),
            "pebble_client_auth": int(row["client_auth"]),
        },
    )
