"""Issue #15 "compatible files" against the real Pebble, openssl and HTTP servers.

1. A new volume's account key is read by the real ``openssl rsa`` as acme-tiny (acme-mailcow's
   client, so a rollback) and mailcow's ``generate_caa_record.py`` read it, and an acme-tiny
   style request signed by ``openssl dgst`` finds the sidecar's own account at Pebble.
2. acme-mailcow's directory of a mixed-case MAILCOW_HOSTNAME is taken over, not duplicated.
3. Directories with keys of their own keep them at renewal (TLSA 3 1 1 unchanged).
4. A missing EAB fixed after a failed order is ordered at once, not after the back-off.
5. Public IP detection goes on to the second source, over real HTTP.
"""

from __future__ import annotations

import base64
import binascii
import http.server
import json
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from acme_sidecar.adapters import public_ip
from acme_sidecar.adapters.volume import keys
from acme_sidecar.adapters.volume.pem import load_key
from tests.integration.eab import HMAC, KID
from tests.integration.sidecar import HOST, base_env, cert_dirs, leaf, seed, sidecar
from tests.world import World
from tests.world.pebble import Pebble
from tests.world.proc import free_port


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _acme_tiny_account(account: Path, pebble: Pebble) -> requests.Response:
    """newAccount as acme-tiny (and mailcow's generate_caa_record.py) sends it: the key read
    with ``openssl rsa -noout -text``, the JWS signed with ``openssl dgst -sha256 -sign``."""
    text = subprocess.run(
        ["openssl", "rsa", "-in", str(account), "-noout", "-text"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    found = re.search(r"modulus:[\s]+?00:([a-f0-9\:\s]+?)\npublicExponent: ([0-9]+)", text)
    assert found is not None, text[:200]  # acme-tiny's own pattern
    modulus = binascii.unhexlify(re.sub(r"(\s|:)", "", found.group(1)))
    exponent = int(found.group(2)).to_bytes(3, "big")
    jwk = {"e": _b64(exponent), "kty": "RSA", "n": _b64(modulus)}
    bundle = str(pebble.ca_bundle)
    directory = requests.get(pebble.directory_url, verify=bundle, timeout=30).json()
    nonce = requests.head(directory["newNonce"], verify=bundle, timeout=30)
    protected = {"alg": "RS256", "jwk": jwk, "nonce": nonce.headers["Replay-Nonce"],
                 "url": directory["newAccount"]}  # fmt: skip
    protected64 = _b64(json.dumps(protected).encode())
    payload64 = _b64(json.dumps({"termsOfServiceAgreed": True}).encode())
    signed = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", str(account)],
        input=f"{protected64}.{payload64}".encode(), capture_output=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    body = {"protected": protected64, "payload": payload64, "signature": _b64(signed)}
    return requests.post(
        directory["newAccount"], json=body, verify=bundle, timeout=30,
        headers={"Content-Type": "application/jose+json"},
    )  # fmt: skip


def test_a_new_account_key_is_read_by_acme_mailcows_tools(world: World, volume: Path) -> None:
    """The sidecar's new account key is RSA 4096 as `openssl genrsa 4096` makes it; openssl
    parses it as acme-tiny does and a request signed with it finds the same account (200, not a
    new one): acme-mailcow would go on with it after a rollback, and CAA accounturi holds."""
    seed(world, ["one.test"])
    run = sidecar(base_env(world, volume), "once")
    assert run.code == 0, run.stderr
    [registered] = run.named("account.registered")
    account = volume / "acme" / "account.pem"
    assert account.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    answer = _acme_tiny_account(account, world.pebble)
    assert answer.status_code == 200, answer.text  # an existing account
    assert answer.headers["Location"] == registered["uri"]


def test_a_mixed_case_hostname_takes_acme_mailcows_directory(world: World, volume: Path) -> None:
    """MAILCOW_HOSTNAME=Mail.Example.TEST and acme-mailcow's Mail.Example.TEST/ (its names as
    set): one config.hostname line, the directory renamed, the certificate kept (no order)."""
    seed(world, ["one.test"])
    first = sidecar(base_env(world, volume), "once")
    assert first.code == 0, first.stderr
    names = (volume / HOST / "domains").read_text().split()
    serial = leaf(volume / HOST / "cert.pem").serial_number
    mixed = "Mail.Example.TEST"
    assert mixed.lower() == HOST
    (volume / HOST).rename(volume / mixed)
    (volume / mixed / "domains").write_text(" ".join([mixed, *names[1:]]))
    run = sidecar(base_env(world, volume) | {"MAILCOW_HOSTNAME": mixed}, "once")
    assert run.code == 0, run.stderr
    [told] = run.named("config.hostname")
    assert (told["given"], told["used"]) == (mixed, HOST)
    assert [e["to"] for e in run.named("store.renamed")] == [HOST]
    assert sorted(cert_dirs(volume)) == [HOST]
    assert leaf(volume / HOST / "cert.pem").serial_number == serial
    assert run.named("cert.stored") == []


def _tlsa(directory: Path) -> tuple[str, str]:
    """TLSA 3 1 1 of the directory's key and of its certificate's public key."""
    cert = leaf(directory / "cert.pem")
    return keys.tlsa_311(load_key((directory / "key.pem").read_bytes())), keys.tlsa_311(
        cert.public_key()
    )


def test_directories_keep_their_own_keys_at_renewal(world: World, volume: Path) -> None:
    """Keys of their own (made with ACME_KEY_REUSE=n) are not replaced by acme/key.pem at a
    renewal with ACME_KEY_REUSE=y: one key.own_kept line each, new serials, same TLSA."""
    seed(world, ["one.test"])
    env = base_env(world, volume) | {"ENABLE_SSL_SNI": "y"}
    first = sidecar(env | {"ACME_KEY_REUSE": "n"}, "once")
    assert first.code == 0, first.stderr
    dirs = sorted(cert_dirs(volume))
    assert len(dirs) == 2
    before = {d: _tlsa(volume / d) for d in dirs}
    shared = keys.tlsa_311(load_key((volume / "acme" / "key.pem").read_bytes()))
    assert all(own == served != shared for own, served in before.values())
    serials = {d: leaf(volume / d / "cert.pem").serial_number for d in dirs}
    (volume / "force_renew").touch()
    run = sidecar(env, "once")
    assert run.code == 0, run.stderr
    assert sorted(e["certificate"] for e in run.named("key.own_kept")) == dirs
    assert {d: _tlsa(volume / d) for d in dirs} == before
    assert all(leaf(volume / d / "cert.pem").serial_number != serials[d] for d in dirs)


def test_a_fixed_eab_is_not_held_by_the_back_off(
    world: World, eab_pebble: Pebble, volume: Path
) -> None:
    """The order failed without EAB; with the EAB set (ledger kept) the back-off is dropped
    with one backoff.cleared line and the certificate is issued in the same run."""
    seed(world, ["one.test"])
    env = base_env(world, volume) | {
        "DIRECTORY_URL": eab_pebble.directory_url,
        "ACME_CA_BUNDLE": str(eab_pebble.ca_bundle),
    }
    missing = sidecar(env, "once")
    assert missing.code == 1
    state = json.loads((volume / "acme" / "state.json").read_text())
    assert state["certs"][HOST]["next_attempt"] and state["certs"][HOST]["settings"]
    fixed = sidecar(env | {"ACME_EAB_KID": KID, "ACME_EAB_HMAC_KEY": HMAC}, "once")
    assert fixed.code == 0, fixed.stderr
    [cleared] = fixed.named("backoff.cleared")
    assert cleared["certificates"] == HOST
    assert [e["certificate"] for e in fixed.named("cert.stored")] == [HOST]
    assert HMAC not in (volume / "acme" / "state.json").read_text()


class _Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"192.0.2.44\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def ip_source() -> Iterator[str]:
    """A real HTTP server on loopback that answers an IPv4 address."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_ip_detection_goes_on_to_the_second_source(ip_source: str) -> None:
    """The first source refuses connections: the second one's address; both refusing: three
    rounds, then one line, None."""
    closed = f"http://127.0.0.1:{free_port()}/"
    assert public_ip.detect([closed, ip_source], 4) == "192.0.2.44"
    pauses: list[float] = []
    assert public_ip.detect([closed, closed + "x"], 4, sleep=pauses.append) is None
    assert len(pauses) == 2
