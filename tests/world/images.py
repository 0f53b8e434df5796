"""Debian images for the private dockerd, built with ``debootstrap`` from the host's apt mirror.

``debian_rootfs`` debootstraps a minimal Debian root fs once per machine and keeps it as a
tarball under ``/var/cache/acme-sidecar-tests`` (a fresh machine needs about a minute; later
sessions and CI on the same machine reuse it). ``debian_image`` imports such a tarball into
a docker daemon, optionally with extra files committed on top. ``consumer_image`` is the
image of the TLS consumers (see ``consumer_server.py``): Python, OpenSSL, the server script
and stand-ins for the ``postfix``, ``doveadm`` and ``nginx`` reload commands and for Postfix's
``postmap -F hash:/opt/postfix/conf/sni.map``.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import docker

from .proc import require_binary

CACHE_DIR = Path("/var/cache/acme-sidecar-tests")
SUITE = "bookworm"
APT_SOURCES = Path("/etc/apt/sources.list")
APT_SOURCES_DIR = Path("/etc/apt/sources.list.d")
HOST_LOCAL_CAS = Path("/usr/local/share/ca-certificates")
# Trimmed after debootstrap like Debian's "slim" images: nothing here is needed at run time.
_TRIM = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
         "usr/share/info", "usr/share/locale")  # fmt: skip

CONSUMER_PACKAGES = ("python3-minimal", "openssl")
CONSUMER_ROOTFS = f"{SUITE}-consumer-v1"
CONSUMER_IMAGE = "acme-test-consumer:v2"
CONSUMER_SERVER = "/usr/local/bin/consumer-server"
CONSUMER_SCRIPT = Path(__file__).resolve().parent / "consumer_server.py"
_RELOAD = """\
#!/bin/sh
# Test stand-in for `{usage}`: SIGHUP the TLS consumer (PID 1), which re-reads its files.
if {test}; then
    echo "usage: {usage}" >&2
    exit 1
fi
kill -HUP 1
"""
_POSTMAP = f"""\
#!/bin/sh
# Test stand-in for `postmap -F hash:/opt/postfix/conf/sni.map`: the TLS consumer's copies of
# the SNI certificates (made at its start with --sni-snapshot) are taken again from the files.
if [ "$*" != "-F hash:/opt/postfix/conf/sni.map" ]; then
    echo "usage: postmap -F hash:/opt/postfix/conf/sni.map" >&2
    exit 1
fi
exec {CONSUMER_SERVER} --postmap
"""
# path -> the argument lists each stand-in accepts (mailcow runs Postfix with -c its conf dir)
RELOAD_COMMANDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "/usr/sbin/postfix": (("reload",), ("-c", "/opt/postfix/conf", "reload")),
    "/usr/bin/doveadm": (("reload",),),
    "/usr/sbin/nginx": (("-s", "reload"),),
}

File = tuple[bytes, int]  # content and mode of a file added to an image


def _deb822_entries(text: str) -> Iterator[dict[str, str]]:
    """Yield the stanzas of a deb822 ``.sources`` file as lower-cased field dicts."""
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields:
            yield fields


def _apt_entries() -> Iterator[tuple[str, list[str], list[str]]]:
    """Yield ``(uri, suites, components)`` of every enabled ``deb`` source of the host."""
    files = [APT_SOURCES] if APT_SOURCES.is_file() else []
    if APT_SOURCES_DIR.is_dir():
        files += sorted(APT_SOURCES_DIR.glob("*.list")) + sorted(APT_SOURCES_DIR.glob("*.sources"))
    for path in files:
        text = path.read_text(errors="replace")
        if path.suffix == ".sources":
            for fields in _deb822_entries(text):
                if "deb" not in fields.get("types", "").split():
                    continue
                if fields.get("enabled", "yes").lower() == "no":
                    continue
                for uri in fields.get("uris", "").split():
                    yield (
                        uri,
                        fields.get("suites", "").split(),
                        fields.get("components", "").split(),
                    )
            continue
        for raw in text.splitlines():
            line = re.sub(r"\[[^]]*\]", " ", raw.split("#", 1)[0]).split()
            if len(line) >= 3 and line[0] == "deb":
                yield line[1], [line[2]], line[3:]


def apt_mirror(suite: str = SUITE) -> str:
    """The Debian mirror the host's apt uses (the only one this machine may reach)."""
    candidates = [
        (uri, suites)
        for uri, suites, components in _apt_entries()
        if "main" in components and any("-" not in s and "/" not in s for s in suites)
    ]
    for uri, suites in candidates:
        if suite in suites:
            return uri
    if candidates:
        return candidates[0][0]
    raise RuntimeError(
        f"test world: no Debian mirror with a `main` component in {APT_SOURCES} or "
        f"{APT_SOURCES_DIR}/*; cannot debootstrap {suite}"
    )


def _unmount_below(root: Path) -> None:
    """Lazily unmount anything an interrupted debootstrap left mounted under ``root``."""
    prefix = str(root.resolve()) + "/"
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def _add_local_cas(target: Path) -> None:
    """Copy the host's locally added CAs into the root fs and register them if possible."""
    sources = sorted(HOST_LOCAL_CAS.glob("*.crt")) if HOST_LOCAL_CAS.is_dir() else []
    if not sources:
        return
    dest = target / HOST_LOCAL_CAS.relative_to("/")
    dest.mkdir(parents=True, exist_ok=True)
    for source in sources:
        shutil.copyfile(source, dest / source.name)
    if (target / "usr/sbin/update-ca-certificates").exists():
        subprocess.run(
            ["chroot", str(target), "update-ca-certificates"], check=True, capture_output=True
        )


def _build_rootfs(packages: Sequence[str], suite: str, tarball: Path, log: Path) -> None:
    debootstrap = require_binary("debootstrap", "debootstrap")
    work = Path(tempfile.mkdtemp(prefix=f"{tarball.stem}-", dir=tarball.parent))
    target = work / "root"
    partial = work / "rootfs.tar"
    try:
        argv = [debootstrap, "--variant=minbase"]
        if packages:
            argv.append("--include=" + ",".join(packages))
        argv += [suite, str(target), apt_mirror(suite)]
        with log.open("wb") as out:
            proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"test world: {' '.join(argv)} failed; see {log}:\n{tail}")
        _add_local_cas(target)
        for rel in _TRIM:
            for child in (target / rel).glob("*"):
                if child.name in ("partial", "lock"):
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        subprocess.run(
            ["tar", "--numeric-owner", "--xattrs", "-C", str(target), "-cf", str(partial),
             "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*", "."],
            check=True, capture_output=True,
        )  # fmt: skip
        partial.rename(tarball)
    finally:
        _unmount_below(work)
        shutil.rmtree(work, ignore_errors=True)


def debian_rootfs(packages: Sequence[str], name: str, suite: str = SUITE) -> Path:
    """Return ``CACHE_DIR/<name>.tar``: a minbase ``suite`` root fs with ``packages``.

    Built with debootstrap from the host's apt mirror only when the tarball is missing; a
    file lock makes concurrent callers (threads or processes) build it once. ``name`` is the
    cache key: change it (``-v2``) whenever ``packages`` or the build steps change.
    """
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tarball = CACHE_DIR / f"{name}.tar"
    if tarball.is_file():
        return tarball
    with (CACHE_DIR / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not tarball.is_file():
            _build_rootfs(packages, suite, tarball, CACHE_DIR / f"{name}.log")
    return tarball


def _files_tar(files: Mapping[str, File]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, (content, mode) in sorted(files.items()):
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode = len(content), mode
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def debian_image(
    client: Any, tag: str, rootfs: Path, files: Mapping[str, File] | None = None
) -> str:
    """Import ``rootfs`` into ``client``'s daemon as ``tag`` (if missing) and return ``tag``.

    ``files`` (absolute path -> (content, mode)) are committed on top of the imported root
    fs, so the cached tarball stays independent of them.
    """
    if client.images.list(name=tag):
        return tag
    repository, _, version = tag.rpartition(":")
    if not files:
        client.api.import_image_from_file(str(rootfs), repository=repository, tag=version)
        return tag
    base = f"{repository}-rootfs:{version}"
    if not client.images.list(name=base):
        client.api.import_image_from_file(
            str(rootfs), repository=base.rpartition(":")[0], tag=version
        )
    container = client.containers.create(base, ["/bin/true"], network_mode="none")
    try:
        if not container.put_archive("/", _files_tar(files)):
            raise RuntimeError(f"test world: could not add files to {tag}")
        container.commit(repository=repository, tag=version)
    finally:
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)
    return tag


def consumer_files() -> dict[str, File]:
    """The server script and the reload-command stand-ins baked into the consumer image."""
    files: dict[str, File] = {
        CONSUMER_SERVER: (CONSUMER_SCRIPT.read_bytes(), 0o755),
        "/usr/sbin/postmap": (_POSTMAP.encode(), 0o755),
    }
    for path, accepted in RELOAD_COMMANDS.items():
        name = PurePosixPath(path).name
        usage = " | ".join(" ".join((name, *args)) for args in accepted)
        test = " && ".join(f'[ "$*" != "{" ".join(args)}" ]' for args in accepted)
        files[path] = (_RELOAD.format(usage=usage, test=test).encode(), 0o755)
    return files


def consumer_rootfs() -> Path:
    """The cached root fs tarball of the consumer image (debootstrapped when missing)."""
    return debian_rootfs(list(CONSUMER_PACKAGES), CONSUMER_ROOTFS)


def consumer_image(client: Any) -> str:
    """Return the tag of the TLS consumer image in ``client``'s daemon, importing it if needed."""
    return debian_image(client, CONSUMER_IMAGE, consumer_rootfs(), consumer_files())
