"""Review N4 on a real volume: the acme.sh takeover runs once. After an ACME_KEY_TYPE change,
while the certificates are still on acme.sh's key, later starts move no key in use, with the
ledger's marker and without it (a volume from the version before the marker)."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tests.integration.acmesh_volume import mailcow_dns01_volume, spki
from tests.integration.dns01_env import HOST, dns01_env, nsupdate_lines
from tests.integration.sidecar import sidecar
from tests.world.bind import Bind
from tests.world.mariadb import MariaDB
from tests.world.pebble import Pebble


def _files(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def test_key_type_change_then_restarts_move_no_key_in_use(
    tmp_path: Path, mariadb: MariaDB, dns01_pebble: Pebble, bind_server: Bind
) -> None:
    """mailcow's acme.sh volume: start 1 takes over and issues on acme.sh's key; start 2 with
    ACME_KEY_TYPE=rsa2048 makes the new key, but its order fails (a refused TSIG key), so
    acme.sh's key still serves; start 3 (marker) and start 4 (marker removed) move nothing."""
    env = dns01_env(
        tmp_path,
        mariadb,
        dns01_pebble,
        bind_server,
        provider="dns_nsupdate",
        conf=nsupdate_lines(bind_server),
        ADDITIONAL_SAN="",
        AUTODISCOVER_SAN="n",
    )
    cert_dir = Path(env["ACME_CERT_DIR"])
    acme = cert_dir / "acme"
    _, cert_key = mailcow_dns01_volume(cert_dir, dns01_pebble.directory_url)
    first = sidecar(env, "once")
    assert first.code == 0, first.stderr[-3000:]
    assert len(first.named("takeover.backed_up")) == 2
    account = (acme / "account.pem").read_bytes()
    assert json.loads((acme / "state.json").read_text())["takeover_at"]

    wrong_key = tmp_path / "wrong.key"
    wrong_key.write_text(
        'key "acme-test-key." {\n\talgorithm hmac-sha256;\n\tsecret "d3JvbmcgYnV0IHZhbGlk";\n};\n'
    )
    wrong_key.chmod(0o600)
    (tmp_path / "dns-01.conf").write_text(nsupdate_lines(bind_server, wrong_key))
    env["ACME_KEY_TYPE"] = "rsa2048"
    second = sidecar(env, "once")
    assert second.named("key.type_changed"), second.stderr[-3000:]
    assert second.named("order.failed"), second.stderr[-3000:]
    new_key = (acme / "key.pem").read_bytes()
    served = x509.load_pem_x509_certificates((cert_dir / "cert.pem").read_bytes())[0]
    old = load_pem_private_key(cert_key.read_bytes(), None)
    assert spki(served) == spki(old)  # the window: acme.sh's key serves, acme/key.pem is new
    assert spki(load_pem_private_key(new_key, None)) != spki(old)
    backups = _files(cert_dir / "backups" / "acme")
    assert len(backups) == 3  # mailcow's two keys (start 1), the EC key (the type change)

    third = sidecar(env, "once")  # a restart in the window (a mailcow update, a reboot)
    state = json.loads((acme / "state.json").read_text())
    del state["takeover_at"]  # as the version before the marker left the ledger
    (acme / "state.json").write_text(json.dumps(state))
    fourth = sidecar(env, "once")

    for run in (third, fourth):
        assert run.code != 2, run.stderr[-3000:]
        assert not run.named("takeover.backed_up") and not run.named("takeover.certificate_key")
    assert [e["path"] for e in fourth.named("takeover.kept")] == ["acme/key.pem"]
    assert (acme / "key.pem").read_bytes() == new_key
    assert (acme / "account.pem").read_bytes() == account
    assert _files(cert_dir / "backups" / "acme") == backups
    assert (cert_dir / f"{HOST}" / "key.pem").exists()
    assert json.loads((acme / "state.json").read_text())["takeover_at"]
