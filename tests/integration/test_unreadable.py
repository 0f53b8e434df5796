"""Issue #14, must show 2: damaged files on a real volume against the real test world (Pebble,
MariaDB, the DNS mock, nginx for HTTP-01). A malformed certificate in the top-level pair (an
unknown SPKI algorithm) and in one SNI certificate directory (a SAN holding a 0-byte IP
address), and a garbage ``state.json``: one ``once`` cycle renews every other certificate,
orders the damaged directory's certificate anew, keeps every damaged file aside byte-identical
with one line each, and ``status``, ``check``, ``import`` and ``health`` report the damage
without a traceback (``status`` and ``check`` write nothing). All through
``python -m acme_sidecar``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.integration.ownpairs import OwnCA, damaged
from tests.integration.sidecar import HOST, Run, base_env, cert_dirs, leaf, seed, sidecar
from tests.world import World

GARBAGE_STATE = b'{"version": 2, "rejected": {"a.test": {"count": 1e400}}, "certs": [[[['


def _tree(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every path under ``root`` with its mode, mtime (ns) and content (b"" for a directory)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (
            st.st_mode,
            st.st_mtime_ns,
            p.read_bytes() if p.is_file() else b"",
        )
    return out


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def _clean(run: Run) -> None:
    """No traceback, on either stream."""
    assert "Traceback" not in run.stdout + run.stderr, run.stdout + run.stderr


def _aside(volume: Path, name: str) -> Path:
    (kept,) = (p for p in (volume / "backups" / name).iterdir() if p.name.startswith("unreadable-"))
    return kept


def test_damaged_files_are_set_aside_and_everything_else_is_renewed(
    world: World, volume: Path
) -> None:
    """The must-show: see the module docstring. Counts: 2 damaged certificate files, 1 damaged
    ledger, every other certificate directory renewed in the one cycle."""
    seed(world, ["one.test", "two.test"])
    env = base_env(world, volume) | {"ENABLE_SSL_SNI": "y"}
    first = sidecar(env, "once")
    assert first.code == 0, first.stderr
    dirs = cert_dirs(volume)
    assert len(dirs) >= 3 and HOST in dirs, dirs  # the hostname's and one per SNI domain
    victim = next(n for n in sorted(dirs) if "one.test" in n)
    others = [n for n in dirs if n != victim]

    # the damage: the victim's certificate, the top-level pair, the ledger; the other
    # certificates are made due (a pair for the same names, 89 of its 90 days gone)
    bad_dir = damaged("bad_san", dirs[victim].split())
    bad_dir.write(volume / victim)
    bad_top = damaged("unknown_spki", [HOST])
    bad_top.write(volume)
    (volume / "acme" / "state.json").write_bytes(GARBAGE_STATE)
    ca = OwnCA()
    due = {}
    for name in others:
        pair = ca.issue(dirs[name].split(), days_left=1, lifetime=90)
        pair.write(volume / name)
        due[name] = pair.serial
    victim_files = _files(volume / victim)

    # the read-only commands on the damaged volume: they report it and write nothing
    before = _tree(volume)
    status = sidecar(env, "status")
    status_json = sidecar(env, "status", "--json")
    check = sidecar(env, "check")
    assert _tree(volume) == before
    for run in (status, status_json, check):
        _clean(run)
    assert status.code == 0 and status_json.code == 0 and check.code == 0, check.stdout
    for text in (status.stdout, check.stdout):
        assert f"unreadable: {volume / victim / 'cert.pem'}: " in text
        assert f"unreadable: {volume / 'cert.pem'}: its public key cannot be read (" in text
    assert (
        "state.json is unreadable (" in status.stdout and "state.json is unreadable" in check.stdout
    )
    assert '"unreadable": [' in status_json.stdout

    # import on a copy of the damaged volume: a good pair is installed, nothing else moves
    scratch = volume.parent / "scratch"
    shutil.copytree(volume, scratch, symlinks=True)
    good = OwnCA().issue([HOST])
    upload = volume.parent / "upload"
    upload.mkdir()
    (upload / "cert.pem").write_bytes(good.leaf)
    (upload / "ca.pem").write_bytes(good.ca)
    (upload / "key.pem").write_bytes(good.key)
    (upload / "bad.pem").write_bytes(bad_top.chain)
    (upload / "bad.key").write_bytes(bad_top.key)
    scratch_env = base_env(world, scratch) | {"ENABLE_SSL_SNI": "y"}
    imported = sidecar(
        scratch_env, "import", "--chain", str(upload / "ca.pem"),
        "--cert", str(upload / "cert.pem"), "--key", str(upload / "key.pem"),
    )  # fmt: skip
    refused = sidecar(
        scratch_env, "import", "--cert", str(upload / "bad.pem"), "--key", str(upload / "bad.key")
    )
    _clean(imported)
    _clean(refused)
    assert imported.code == 0 and "installed CN=mail.example.test" in imported.stdout
    assert (scratch / victim / "cert.pem").read_bytes() == bad_dir.chain  # not moved by import
    assert refused.code == 1
    assert "not installed: cert.pem: its public key cannot be read" in refused.stdout
    health_file = Path(scratch_env["ACME_HEALTH_FILE"])
    health_file.write_text('{"failing_since": "yesterday"}')
    sick = sidecar(scratch_env, "health")
    _clean(sick)
    assert sick.code == 1 and sick.stdout.startswith("unhealthy: the health file ")

    # the cycle
    run = sidecar(env, "once")
    _clean(run)
    assert run.code == 0, run.stderr
    assert run.named("cycle.crashed") == []
    lines = run.named("store.unreadable")
    assert sorted(e["file"] for e in lines) == sorted(
        [str(volume / victim / "cert.pem"), str(volume / "cert.pem")]
    )
    (ledger_line,) = run.named("state.damaged")

    # every other certificate was renewed, and the damaged one ordered anew, in that cycle
    after = cert_dirs(volume)
    assert after == dirs
    for name in others:
        renewed = leaf(volume / name / "cert.pem")
        assert renewed.serial_number != due[name], name
        assert "Pebble" in renewed.issuer.rfc4514_string(), name
    reissued = leaf(volume / victim / "cert.pem")
    assert "Pebble" in reissued.issuer.rfc4514_string()
    assert (volume / "cert.pem").read_bytes() == (volume / HOST / "cert.pem").read_bytes()

    # the damaged files are kept aside, byte-identical, never deleted
    assert _files(_aside(volume, victim)) == victim_files
    assert _files(_aside(volume, "default")) == {"cert.pem": bad_top.chain, "key.pem": bad_top.key}
    (kept,) = (volume / "acme").glob("state.json.damaged-*")
    assert kept.read_bytes() == GARBAGE_STATE and ledger_line["kept"] == str(kept)

    # and the commands on the repaired volume
    for args in (("status",), ("check",), ("health",)):
        later = sidecar(env, *args)
        _clean(later)
        assert later.code == 0, (args, later.stdout, later.stderr)
        assert "unreadable" not in later.stdout
