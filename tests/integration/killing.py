"""Kill ``acme-sidecar once`` with SIGKILL at a chosen moment, then judge what it left.

A ``Trigger`` says when: after a delay, when the n-th log line with an event arrives on
stderr, or when a staged ``*.new`` file is about to be put in place (see ``SHIM``).
``volume_problems`` lists everything a reader of the volume could trip over right after the
kill (DESIGN.md §4); ``served_problems`` lists every name a consumer does not serve with the
stored certificate. Test-only: touches the volume read-only and the process it started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID

from tests.integration.stack import KINDS, Stack

# Run as ``python -c SHIM once``: the sidecar kills itself at an exact write point, like
# ``strace --inject=...:signal=KILL`` would. ``KILL_AFTER_RENAME``: right after the rename that
# puts a file at that path in place (``Path.replace`` calls ``os.replace``), exactly between two
# renames of one swap. ``KILL_BEFORE_STAGED`` (paths joined by ``os.pathsep``) or
# ``KILL_BEFORE_ANY_STAGED_IN`` (a directory): right before a staged ``*.new`` file is renamed
# or linked into place, i.e. while it exists, written and fsynced (a poll of the volume from
# outside can miss a file that lives a few milliseconds on a loaded machine).
SHIM = """
import os, runpy, signal, sys
after = os.environ.pop("KILL_AFTER_RENAME", "")
before = [p for p in os.environ.pop("KILL_BEFORE_STAGED", "").split(os.pathsep) if p]
inside = os.environ.pop("KILL_BEFORE_ANY_STAGED_IN", "")
real_replace, real_link = os.replace, os.link
def staged(src):
    src = os.path.abspath(os.fspath(src))
    if before:
        return src in before
    return bool(inside) and src.endswith(".new") and src.startswith(inside + os.sep)
def die():
    os.kill(os.getpid(), signal.SIGKILL)
def replace(src, dst, *args, **kwargs):
    if staged(src):
        die()
    real_replace(src, dst, *args, **kwargs)
    if after and os.path.abspath(dst) == after:
        die()
def link(src, dst, *args, **kwargs):
    if staged(src):
        die()
    real_link(src, dst, *args, **kwargs)
os.replace, os.link = replace, link
sys.argv[0] = "acme_sidecar"
runpy.run_module("acme_sidecar", run_name="__main__", alter_sys=True)
"""


@dataclass(frozen=True)
class Trigger:
    """When to kill: ``delay`` seconds after start, the ``nth`` line with ``event``, the
    first ``*.new`` file whose volume-relative path is in ``staged`` (any one when empty),
    or right after the rename onto ``renamed`` (volume-relative)."""

    delay: float | None = None
    event: str | None = None
    nth: int = 1
    new_file: bool = False
    staged: tuple[str, ...] = ()
    renamed: str | None = None


@dataclass
class Outcome:
    """A finished or killed run: its exit code, log lines and what killed it."""

    code: int
    killed: bool
    elapsed: float
    lines: list[str] = field(default_factory=list)
    killed_at: str = ""
    first_line: float | None = None  # seconds from start to the first line: the start-up

    @property
    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines, parsed (a line cut off by the kill is left out)."""
        out = []
        for line in self.lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def named(self, event: str) -> list[dict[str, Any]]:
        """Every log line with this event name."""
        return [e for e in self.events if e.get("event") == event]

    def tail(self, n: int = 25) -> str:
        """The last ``n`` log lines, for an assertion message."""
        return "".join(self.lines[-n:])


def _staged_files(root: Path) -> list[str]:
    found = []
    for top in (root, *(e for e in root.iterdir() if e.is_dir() and e.name != "backups")):
        try:
            with os.scandir(top) as entries:
                found += [
                    str(Path(e.path).relative_to(root)) for e in entries if e.name.endswith(".new")
                ]
        except FileNotFoundError:  # a directory archived meanwhile
            continue
    return found


def run(
    env: dict[str, str], trigger: Trigger | None = None, *, volume: Path, timeout: float = 120
) -> Outcome:
    """Run ``acme-sidecar once`` with ``env``; SIGKILL it when ``trigger`` fires."""
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ACME_LOG_FORMAT": "json", **env}
    command = [sys.executable, "-m", "acme_sidecar", "once"]
    if trigger is not None and trigger.renamed is not None:
        full["KILL_AFTER_RENAME"] = str((volume / trigger.renamed).absolute())
        command = [sys.executable, "-c", SHIM, "once"]
    if trigger is not None and trigger.new_file:
        if trigger.staged:
            paths = [str((volume / s).absolute()) for s in trigger.staged]
            full["KILL_BEFORE_STAGED"] = os.pathsep.join(paths)
        else:
            full["KILL_BEFORE_ANY_STAGED_IN"] = str(volume.absolute())
        command = [sys.executable, "-c", SHIM, "once"]
    start = time.monotonic()
    proc = subprocess.Popen(
        command,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    outcome = Outcome(code=0, killed=False, elapsed=0.0)
    lock = threading.Lock()

    def kill(why: str) -> None:
        with lock:
            if proc.poll() is None and not outcome.killed:
                proc.kill()
                outcome.killed, outcome.killed_at = True, why

    def read() -> None:
        assert proc.stdout is not None
        seen = 0
        for line in proc.stdout:
            if outcome.first_line is None:
                outcome.first_line = time.monotonic() - start
            outcome.lines.append(line)
            if trigger is None or trigger.event is None or not line.startswith("{"):
                continue
            try:
                event = json.loads(line).get("event")
            except ValueError:
                continue
            if event == trigger.event:
                seen += 1
                if seen == trigger.nth:
                    kill(f"{event} #{seen}")

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = start + timeout
    if trigger is not None and trigger.delay is not None:
        try:
            proc.wait(timeout=trigger.delay)
        except subprocess.TimeoutExpired:
            kill(f"after {trigger.delay:.2f}s")
    try:
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        kill("timeout")
        proc.wait()
    reader.join(timeout=10)
    outcome.code = proc.returncode
    if trigger is not None and trigger.renamed is not None and proc.returncode == -9:
        outcome.killed, outcome.killed_at = True, f"the rename onto {trigger.renamed}"
    if trigger is not None and trigger.new_file and proc.returncode == -9:
        where = ", ".join(trigger.staged) or "a staged *.new file"
        outcome.killed, outcome.killed_at = True, f"{where} staged, before its rename"
    outcome.elapsed = time.monotonic() - start
    return outcome


# --- what the volume must look like --------------------------------------------------------


def _sans(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        return set()
    assert isinstance(ext.value, x509.SubjectAlternativeName)
    return {n.lower() for n in ext.value.get_values_for_type(x509.DNSName)}


def _spki(public: Any) -> bytes:
    return bytes(
        public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _pair_problems(where: str, cert_path: Path, key_path: Path) -> list[str]:
    """A pair that does not parse, is empty, or whose key is not the leaf's."""
    try:
        chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
    except (ValueError, OSError) as exc:
        return [f"{where}: cert.pem unreadable or torn ({exc})"]
    try:
        key = serialization.load_pem_private_key(
            key_path.read_bytes(), password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError, OSError) as exc:
        return [f"{where}: key.pem unreadable or torn ({exc})"]
    if _spki(chain[0].public_key()) != _spki(key.public_key()) and not _swap_pending(
        cert_path, key_path
    ):
        return [f"{where}: key.pem does not match cert.pem (serial {chain[0].serial_number:x})"]
    return []


def _matches(cert_path: Path, key_path: Path) -> bool:
    try:
        leaf = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
        key = serialization.load_pem_private_key(
            key_path.read_bytes(), password=None, unsafe_skip_rsa_key_validation=True
        )
    except (ValueError, TypeError, OSError):
        return False
    return _spki(leaf.public_key()) == _spki(key.public_key())


def _swap_pending(cert_path: Path, key_path: Path) -> bool:
    """Killed between the renames of one swap (key.pem, then cert.pem, then domains): two
    file names cannot change in one atomic step, so the staged ``*.new`` file that completes
    the pair is still there, and the next start's ``recover()`` renames it in. Accepted only
    when that staged file makes the pair match."""
    cert_new, key_new = (p.with_name(p.name + ".new") for p in (cert_path, key_path))
    return any(
        c.is_file() and k.is_file() and _matches(c, k)
        for c, k in ((cert_new, key_path), (cert_path, key_new), (cert_new, key_new))
        if c != cert_path or k != key_path
    )


def cert_dir_names(root: Path) -> list[str]:
    """The certificate directories: those holding ``domains``, ``cert.pem`` and ``key.pem``."""
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and all((p / f).is_file() for f in ("domains", "cert.pem", "key.pem"))
    )


def volume_problems(root: Path, *, staged_allowed: bool) -> list[str]:
    """Everything wrong for a reader of the volume; ``*.new`` files only when not allowed."""
    problems = _pair_problems("top level", root / "cert.pem", root / "key.pem")
    for name in cert_dir_names(root):
        directory = root / name
        problems += _pair_problems(name, directory / "cert.pem", directory / "key.pem")
        domains = (directory / "domains").read_text().split()
        if not domains:
            problems.append(f"{name}: domains is empty")
            continue
        if domains[0] != name:
            problems.append(f"{name}: domains starts with {domains[0]}")
        try:
            leaf = x509.load_pem_x509_certificates((directory / "cert.pem").read_bytes())[0]
        except ValueError:
            continue  # reported above
        if {d.lower() for d in domains} != _sans(leaf):
            staged = directory / "domains.new"
            pending = staged.is_file() and {d.lower() for d in staged.read_text().split()} == _sans(
                leaf
            )  # killed between the cert.pem and domains renames (see above)
            if not pending:
                problems.append(f"{name}: domains {sorted(domains)} != SANs {sorted(_sans(leaf))}")
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if not path.is_file() or path.name.endswith(".new") or rel.startswith("backups/"):
            continue
        if path.stat().st_size == 0 and rel not in ("force_renew", "acme/lock"):
            problems.append(f"{rel}: empty")
    state = root / "acme" / "state.json"
    if state.is_file():
        try:
            json.loads(state.read_text())
        except ValueError as exc:
            problems.append(f"acme/state.json: torn ({exc})")
    if not staged_allowed:
        problems += [f"{s}: left over after a full run" for s in _staged_files(root)]
    return problems


def backup_problems(root: Path) -> list[str]:
    """Torn or empty files under ``backups/`` (a kill during a backup copy)."""
    problems = []
    for path in sorted((root / "backups").rglob("*")):
        if not path.is_file():
            continue
        data = path.read_bytes()
        rel = str(path.relative_to(root))
        if not data:
            problems.append(f"{rel}: empty")
        elif path.name == "cert.pem":
            try:
                x509.load_pem_x509_certificates(data)
            except ValueError:
                problems.append(f"{rel}: torn")
    return problems


# --- what the consumers serve --------------------------------------------------------------


Stored = dict[str, tuple[int, frozenset[str]]]
"""Certificate directory -> (leaf serial, names)."""


def stored(root: Path) -> Stored:
    """Every certificate directory: its leaf serial and its names (lower case)."""
    out = {}
    for name in cert_dir_names(root):
        directory = root / name
        leaf = x509.load_pem_x509_certificates((directory / "cert.pem").read_bytes())[0]
        names = frozenset(n.lower() for n in (directory / "domains").read_text().split())
        out[name] = (leaf.serial_number, names)
    return out


def served_problems(stack: Stack) -> list[str]:
    """Every (kind, SNI name) whose served serial is not the stored leaf's; None: default."""
    root = stack.volume
    wanted: list[tuple[str | None, int]] = []
    default = x509.load_pem_x509_certificates((root / "cert.pem").read_bytes())[0]
    wanted.append((None, default.serial_number))
    for serial, names in stored(root).values():
        wanted += [(n, serial) for n in sorted(names)]
    problems = []
    for _, kind in KINDS:
        for name, serial in wanted:
            try:
                got: int | str = stack.serial(kind, name) if name else _default_serial(stack, kind)
            except (OSError, ValueError) as exc:
                got = f"error {exc}"
            if got != serial:
                shown = f"{got:x}" if isinstance(got, int) else got
                problems.append(f"{kind} {name or '(no SNI)'}: serves {shown}, stored {serial:x}")
    return problems


def _default_serial(stack: Stack, kind: str) -> int:
    from tests.world.tlsprobe import served_serial

    service = next(s for s, k in KINDS if k == kind)
    return served_serial(kind, stack.ports[service], None)


def unwanted_orders(
    before: Stored,
    after: Stored,
    ordered: Iterable[str],
    forced: Iterable[str],
) -> list[str]:
    """Orders placed for a certificate stored whole with the names it still has afterwards,
    and not forced: ``before``/``after`` are ``stored()`` around the run."""
    wrong = []
    forced = set(forced)
    for name in ordered:
        if name in forced or name not in before or name not in after:
            continue
        if before[name][1] == after[name][1]:
            wrong.append(f"{name}: ordered again though stored with the same names")
    return wrong
