"""Issue #14, trust nothing it reads: damaged certificates, keys, state.json and health files
are one clear line each, set aside (never deleted) or only reported by the read-only commands;
nothing raises past the guard. Real crypto, real files."""

from __future__ import annotations

import json
import threading
from collections.abc import MutableMapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed448
from structlog.testing import capture_logs

from acme_sidecar import cli
from acme_sidecar.adapters.volume import CertStore, backups, toppair
from acme_sidecar.adapters.volume.pem import Unreadable, key_spki, read_cert
from acme_sidecar.config.policies import OwnPolicy
from acme_sidecar.config.settings import load_settings
from acme_sidecar.core.ledger import State
from acme_sidecar.core.own import PairFacts
from acme_sidecar.ops.terminal import Printable, printable
from acme_sidecar.shell.boundary import Book
from acme_sidecar.shell.own import check_own
from acme_sidecar.shell.status import collect, render
from tests.integration.ownpairs import OwnCA, OwnPair, damaged

HOST = "mail.example.org"
NOW = datetime.now(UTC)


def _dir(root: Path, name: str, pair: OwnPair) -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "domains").write_text(name)
    (directory / "cert.pem").write_bytes(pair.chain)
    (directory / "key.pem").write_bytes(pair.key)
    return directory


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def words_of(facts: PairFacts) -> str:
    return facts.unreadable.removeprefix("cert.pem: ")


def _events(logs: Sequence[MutableMapping[str, Any]], event: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == event]


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("bad_san", "its extensions are malformed (ValueError"),
        ("unknown_spki", "its public key cannot be read (UnsupportedAlgorithm"),
    ],
)
def test_read_cert_names_what_is_wrong(kind: str, words: str) -> None:
    """A certificate that loads as PEM but has a malformed SAN or an unknown key algorithm is
    one Unreadable (a StoreError) saying which part is wrong, never a ValueError later."""
    pair = damaged(kind, [HOST])
    with pytest.raises(Unreadable, match=r"^" + words.replace("(", r"\(")):
        read_cert(pair.chain)
    facts = toppair.inspect_pair(pair.chain, pair.key)
    assert facts.unreadable.startswith(f"cert.pem: {words}")
    assert toppair.unreadable_file(CertStore(Path("/v")), facts) == (
        Path("/v/cert.pem"),
        words_of(facts),
    )


def test_an_unsupported_key_type_is_unreadable_but_its_certificate_reads() -> None:
    """An Ed448 certificate reads (key type "": not one we order), an Ed448 private key is
    Unreadable ("unsupported key type"), and the pair is unreadable because of key.pem."""
    ca = OwnCA()
    key = ed448.Ed448PrivateKey.generate()
    good = ca.issue([HOST])
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, HOST)]))
        .issuer_name(ca.name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=60))
        .sign(ca.key, hashes.SHA256())
    )
    facts = read_cert(leaf.public_bytes(serialization.Encoding.PEM))
    assert facts.key_type == "" and facts.serial == 7
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(Unreadable, match="unsupported key type"):
        key_spki(key_pem)
    pair = toppair.inspect_pair(good.chain, key_pem)
    file, why = toppair.unreadable_file(CertStore(Path("/v")), pair)
    assert file == Path("/v/key.pem") and why.startswith("unsupported key type")


@pytest.mark.parametrize("kind", ["bad_san", "unknown_spki"])
def test_load_sets_a_damaged_directory_aside_and_keeps_the_others(
    tmp_path: Path, kind: str
) -> None:
    """load() returns every good certificate; the damaged directory is one store.unreadable
    line naming cert.pem, moved whole and byte-identical to backups/<name>/unreadable-*; a
    second load logs nothing more."""
    root = tmp_path / "ssl"
    good = _dir(root, "good.example.org", OwnCA().issue(["good.example.org"]))
    bad = _dir(root, "bad.example.org", damaged(kind, ["bad.example.org"]))
    before = _files(bad)
    store = CertStore(root)
    with capture_logs() as logs:
        first = store.certs.load()
        second = store.certs.load()
    assert sorted(first) == sorted(second) == ["good.example.org"]
    assert good.is_dir() and not bad.exists()
    (line,) = _events(logs, "store.unreadable")
    assert line["file"] == str(bad / "cert.pem")
    assert line["certificate"] == "bad.example.org"
    (kept,) = (root / "backups" / "bad.example.org").iterdir()
    assert kept.name.startswith(backups.UNREADABLE)
    assert line["kept"] == str(kept.relative_to(root))
    assert _files(kept) == before
    assert store.unreadable() == {str(bad / "cert.pem"): line["error"]}


def test_a_damaged_key_or_domains_file_is_named(tmp_path: Path) -> None:
    """A key.pem that is no key and a domains file that is not UTF-8 are named as the file."""
    root = tmp_path / "ssl"
    ca = OwnCA()
    keyless = _dir(root, "a.example.org", ca.issue(["a.example.org"]))
    (keyless / "key.pem").write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n")
    garbled = _dir(root, "b.example.org", ca.issue(["b.example.org"]))
    (garbled / "domains").write_bytes(b"\xff\xfe b.example.org")
    with capture_logs() as logs:
        assert CertStore(root).certs.load() == {}
    files = sorted(e["file"] for e in _events(logs, "store.unreadable"))
    assert files == [str(keyless / "key.pem"), str(garbled / "domains")]


def test_a_read_only_store_reports_and_moves_nothing(tmp_path: Path) -> None:
    """set_aside=False (status, check, import): the damaged directory stays byte-identical
    where it is, one line is logged however often the volume is loaded."""
    root = tmp_path / "ssl"
    _dir(root, "bad.example.org", damaged("bad_san", ["bad.example.org"]))
    before = _tree(root)
    store = CertStore(root, set_aside=False)
    with capture_logs() as logs:
        for _ in range(3):
            assert store.certs.load() == {}
    assert _tree(root) == before
    assert len(_events(logs, "store.unreadable")) == 1
    assert list(store.unreadable()) == [str(root / "bad.example.org" / "cert.pem")]


def test_pruning_never_removes_what_was_set_aside(tmp_path: Path) -> None:
    """Backups past ACME_BACKUP_KEEP are pruned; an unreadable-* one is never removed."""
    root = tmp_path / "ssl"
    _dir(root, "x.example.org", damaged("bad_san", ["x.example.org"]))
    store = CertStore(root, backup_keep=1)
    store.certs.load()
    base = root / "backups" / "x.example.org"
    for n in range(3):
        (base / f"2026-01-0{n + 1}_00_00_00").mkdir()
    store.certs.prune("x.example.org")
    names = sorted(p.name for p in base.iterdir())
    assert len(names) == 2 and names[0] == "2026-01-03_00_00_00"
    assert names[1].startswith(backups.UNREADABLE)


STATES = {
    "bad_json": b'{"version": 2, "certs": {',
    "not_utf8": b'{"version": 2, "x": "\xff"}',
    "version_inf": b'{"version": 1e400}',
    "count_inf": b'{"rejected": {"a.test": {"reason": "r", "count": 1e400, '
    b'"until": "2026-01-01T00:00:00+00:00"}}}',
    "digits_5000": b'{"version": ' + b"1" * 5000 + b"}",
    "deep_nesting": b'{"certs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "wrong_types": b'{"certs": {"a.test": {"placed": 5}}}',
    "not_an_object": b"[1, 2]",
    "year_9999": b'{"failing_since": {"a.test": "9999-12-31T23:59:59+00:00"}}',
}


@pytest.mark.parametrize("name", sorted(STATES))
def test_a_damaged_state_json_is_kept_aside(tmp_path: Path, name: str) -> None:
    """Any state.json that cannot be read gives an empty ledger; the file is first renamed to
    state.json.damaged-<time>, byte-identical, with one state.damaged line."""
    store = CertStore(tmp_path / "ssl")
    store.prepare()
    store.layout.state_path.write_bytes(STATES[name])
    with capture_logs() as logs:
        state = store.ledger.load()
    assert state == State()
    assert not store.layout.state_path.exists()
    (kept,) = store.layout.acme_dir.glob("state.json.damaged-*")
    assert kept.read_bytes() == STATES[name]
    (line,) = _events(logs, "state.damaged")
    assert line["kept"] == str(kept) and line["error"]
    store.ledger.save(State())  # the new ledger beside it
    assert kept.read_bytes() == STATES[name]


@pytest.mark.parametrize("name", ["count_inf", "deep_nesting", "digits_5000"])
def test_read_state_moves_nothing(tmp_path: Path, name: str) -> None:
    """read_state (status, check) says why state.json is unreadable and leaves it in place."""
    store = CertStore(tmp_path / "ssl", set_aside=False)
    store.prepare()
    store.layout.state_path.write_bytes(STATES[name])
    state, damage = store.ledger.read()
    assert state == State() and damage
    assert store.ledger.load() == State()
    assert store.layout.state_path.read_bytes() == STATES[name]
    assert list(store.layout.acme_dir.glob("state.json.damaged-*")) == []


def test_an_unreadable_top_pair_is_kept_aside_once(tmp_path: Path) -> None:
    """A top-level pair with a malformed SAN (not an own pair): check_own logs one
    store.unreadable line naming cert.pem and copies the pair, byte-identical, to
    backups/default/unreadable-*; the next look logs again but makes no second copy."""
    root = tmp_path / "ssl"
    root.mkdir()
    pair = damaged("bad_san", [HOST])
    pair.write(root)
    store = CertStore(root)
    policy = OwnPolicy(hostname=HOST)
    with capture_logs() as logs:
        view = check_own(policy, store, Book(store, State()), NOW, threading.Event())
        check_own(policy, store, Book(store, State()), NOW, threading.Event())
    assert not view.own and "cannot be read" in view.reason
    lines = _events(logs, "store.unreadable")
    assert len(lines) == 2 and lines[0]["file"] == str(root / "cert.pem")
    (kept,) = (root / "backups" / "default").iterdir()
    assert kept.name.startswith(backups.UNREADABLE) and lines[0]["kept"] == lines[1]["kept"]
    assert _files(kept) == {"cert.pem": pair.chain, "key.pem": pair.key}


def test_status_reports_damaged_files_and_writes_nothing(tmp_path: Path) -> None:
    """status on a volume with a damaged top-level pair, a damaged directory and a damaged
    state.json: every one is named in its output, the good certificate is listed, and not one
    byte (nor a file mode) of the volume changes."""
    root = tmp_path / "ssl"
    store = CertStore(root, set_aside=False)
    store.prepare()
    _dir(root, "good.example.org", OwnCA().issue(["good.example.org"]))
    _dir(root, "bad.example.org", damaged("unknown_spki", ["bad.example.org"]))
    damaged("bad_san", [HOST]).write(root)
    (root / "key.pem").chmod(0o644)
    store.layout.state_path.write_bytes(STATES["count_inf"])
    before = {p: (p.stat().st_mode, p.read_bytes()) for p in root.rglob("*") if p.is_file()}
    data = collect(store, NOW, own=OwnPolicy(hostname=HOST))
    out = _Out()
    render(data, out)
    render(data, out, as_json=True)
    after = {p: (p.stat().st_mode, p.read_bytes()) for p in root.rglob("*") if p.is_file()}
    assert after == before
    text = "".join(out.parts)
    assert f"unreadable: {root / 'bad.example.org' / 'cert.pem'}: " in text
    assert f"unreadable: {root / 'cert.pem'}: its extensions are malformed" in text
    assert "state.json is unreadable (OverflowError" in text
    assert [r["name"] for r in data["certificates"]] == ["good.example.org"]
    assert len(data["unreadable"]) == 2
    json.loads(text[text.index("\n{") :])


class _Out:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str, /) -> int:
        self.parts.append(text)
        return len(text)


@pytest.mark.parametrize(
    "content",
    [
        {"failing_since": "yesterday"},
        {"failing_since": "2026-01-01T00:00:00"},
        {"certificates": '{"x": [1]}'},
        {"expiry_days": "abc", "certificates": "{}"},
        {"deploy_owed_since": "9999-99"},
    ],
)
def test_a_damaged_health_file_is_one_unhealthy_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: dict[str, str]
) -> None:
    """`health` on a hand-edited health file: exit 1 with one "unhealthy: the health file ...
    is damaged" line, no traceback."""
    path = tmp_path / "health.json"
    path.write_text(json.dumps(content))
    settings = load_settings({"MAILCOW_HOSTNAME": HOST, "ACME_HEALTH_FILE": str(path)})
    assert cli._health(settings) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"unhealthy: the health file {path} is damaged (")
    assert out.count("\n") == 1


def test_printable_escapes_terminal_controls() -> None:
    """ESC, BEL, CR and a bidi override are shown escaped; plain and non-ASCII text is kept."""
    caa = '0 issue "x\x1b]52;c;Y3VybA==\x07\x1b[2K\rautodiscover.tenant.test ok\u202e"'
    shown = printable(caa)
    assert shown.isprintable() and "\\x1b]52" in shown and "\\r" in shown
    assert "\\u202e" in shown
    assert printable("münchen.example ok") == "münchen.example ok"
    assert printable("a\nb", keep="\n") == "a\nb"


def test_what_check_prints_goes_through_the_escaping_stream() -> None:
    """print() to Printable (the stream check, status and import print to) escapes a CAA
    value's ESC/BEL/CR but keeps the line breaks."""
    out = _Out()
    print('a.test   skip   CAA: 0 issue "x\x1b]52;c;eA==\x07\r"', file=Printable(out))
    text = "".join(out.parts)
    assert text == 'a.test   skip   CAA: 0 issue "x\\x1b]52;c;eA==\\x07\\r"\n'
