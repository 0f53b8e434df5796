"""The demo stack of ``docker-compose.yml``, driven by Debian's ``docker-compose`` (1.29), or by
Compose v2 (``docker compose``) when ``ACME_TEST_COMPOSE="docker compose"``.

``base_image`` puts the image every Dockerfile of the repository builds ``FROM`` into a docker
daemon: ``helper-scripts/build-base-image.sh`` debootstraps it once per machine (the root fs
tarball is cached under ``/var/cache/acme-sidecar-tests``, keyed by a hash of the script) and
``docker import``s it into each fresh daemon.

``ComposeStack`` runs the repository's ``docker-compose.yml`` against the test world's private
dockerd: from a copy of the checkout's files (the build context a clean clone would have), under
a unique project name, on a free /24 (``DEMO_NET``), with the daemon's socket as the sidecar's
Docker API (``DOCKER_SOCK``). The host has an address on the compose network's bridge, so the
containers' TLS endpoints are reachable from the tests at their fixed addresses. Everything the
README's command does not say is given in the environment (``COMPOSE_FILE``,
``COMPOSE_PROJECT_NAME``, ``BASE_IMAGE``…), so the stack is started with exactly ``up -d``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .images import CACHE_DIR, SUITE
from .proc import require_binary

REPO = Path(__file__).resolve().parents[2]
BASE_SCRIPT = REPO / "helper-scripts" / "build-base-image.sh"
BASE_TAG = "acme-sidecar-base:bookworm"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
# the compose command: Debian 12's docker-compose 1.29 unless the environment names another
COMPOSE_COMMAND_ENV = "ACME_TEST_COMPOSE"
# the fixed host parts of the demo's addresses (docker-compose.yml)
HOST_PART = {
    "acme": 10, "postfix": 25, "dovecot": 143, "nginx": 80, "challtestsrv": 53, "pebble": 14,
    "mysql": 33,
}  # fmt: skip
# what the build context of a clean clone would not have
_NOT_IN_CHECKOUT = shutil.ignore_patterns(
    ".git", ".venv", ".bench-venv", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


def base_rootfs_name() -> str:
    """Cache key of the base root fs: changes whenever the script that makes it changes."""
    digest = hashlib.sha256(BASE_SCRIPT.read_bytes()).hexdigest()[:12]
    return f"{SUITE}-base-{digest}"


def base_image(docker_host: str, tag: str = BASE_TAG) -> str:
    """Import the base image into the daemon at ``docker_host``; return its tag.

    The first call on a machine debootstraps (about a minute); a file lock makes concurrent
    callers build it once. (Tarballs of older versions of the script are kept: another
    checkout on the machine may still use one.)
    """
    require_binary("docker", "docker.io")
    require_binary("debootstrap", "debootstrap")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    name = base_rootfs_name()
    tarball = CACHE_DIR / f"{name}.tar"
    # no MIRROR: the script takes the mirror from the host's apt sources, as the README runs it
    env = dict(os.environ, DOCKER_HOST=docker_host, ROOTFS_TAR=str(tarball), SUITE=SUITE)
    env.pop("MIRROR", None)
    with (CACHE_DIR / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run(
            [str(BASE_SCRIPT), tag], env=env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"test world: {BASE_SCRIPT.name} failed:\n{done.stderr[-3000:]}")
    return tag


def _routes() -> list[ipaddress.IPv4Network]:
    """The IPv4 networks the host routes (``/proc/net/route``, little-endian hex)."""
    nets = []
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        fields = line.split()
        dest, mask = (int(fields[i], 16).to_bytes(4, "little") for i in (1, 7))
        bits = bin(int.from_bytes(mask, "big")).count("1")
        if bits:  # the default route overlaps everything; it is not a local network
            nets.append(ipaddress.IPv4Network((dest, bits)))
    return nets


def free_demo_net() -> str:
    """Three octets ``10.x.y`` of a /24 that no route of the host overlaps (``DEMO_NET``)."""
    taken = _routes()
    for _ in range(200):
        prefix = f"10.{random.randint(64, 250)}.{random.randint(0, 255)}"  # noqa: S311
        net = ipaddress.IPv4Network(f"{prefix}.0/24")
        if not any(net.overlaps(route) for route in taken):
            return prefix
    raise RuntimeError("test world: no free 10.x.y.0/24 for the demo network")


def copy_checkout(dest: Path) -> Path:
    """Copy the checkout's files (tracked and untracked, not ignored) to ``dest``."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=False,
    )
    if listed.returncode != 0:  # not a git checkout: copy all but the usual local state
        shutil.copytree(REPO, dest, ignore=_NOT_IN_CHECKOUT, symlinks=True)
        return dest
    for rel in filter(None, listed.stdout.decode().split("\0")):
        source = REPO / rel
        if not source.is_file():
            continue  # deleted in the work tree
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return dest


class ComposeError(RuntimeError):
    """A docker-compose command failed; the message has its output."""


def compose_command() -> list[str]:
    """The compose command of the test world: ``docker-compose`` (Debian 12's 1.29, the one
    tests/run installs), or ``ACME_TEST_COMPOSE`` split into words (``docker compose`` for
    Compose v2, whose plugin the docker CLI must find, e.g. under ``$DOCKER_CONFIG``)."""
    words = os.environ.get(COMPOSE_COMMAND_ENV, "").split() or ["docker-compose"]
    package = "docker-compose" if words == ["docker-compose"] else "docker.io"
    argv = [require_binary(words[0], package), *words[1:]]
    done = subprocess.run([*argv, "version"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"test world: {COMPOSE_COMMAND_ENV}={' '.join(words)!r} does not run "
            f"(`{' '.join(words)} version`: {(done.stdout + done.stderr).strip()[-300:]})"
        )
    return argv


class ComposeStack:
    """``docker-compose.yml`` of a checkout copy, as one compose project on one daemon."""

    def __init__(
        self,
        workdir: Path,
        client: Any,
        docker_host: str,
        socket: Path,
        *,
        base_image: str,
        overrides: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """``overrides`` are compose files (as dicts) applied after ``docker-compose.yml``."""
        self.command = compose_command()
        self.nsenter = require_binary("nsenter", "util-linux")
        self.iptables = require_binary("iptables", "iptables")
        self.workdir = workdir
        self.client = client
        self.project = f"acmedemo{os.getpid()}"
        self.net = free_demo_net()
        self.files = [workdir / "docker-compose.yml"]
        for number, override in enumerate(overrides):
            path = workdir / f"test-override-{number}.yml"
            path.write_text(json.dumps(override, indent=1))  # JSON is YAML
            self.files.append(path)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "DOCKER_HOST": docker_host,
            "COMPOSE_FILE": os.pathsep.join(str(path) for path in self.files),
            "COMPOSE_PROJECT_NAME": self.project,
            "BASE_IMAGE": base_image,
            "DOCKER_SOCK": str(socket),
            "DEMO_NET": self.net,
        }
        if "DOCKER_CONFIG" in os.environ:  # where the docker CLI finds the compose plugin
            self.env["DOCKER_CONFIG"] = os.environ["DOCKER_CONFIG"]
        self.timings: dict[str, float] = {}
        self.started = 0.0  # time.monotonic() when `up` returned
        self.up_output = ""  # what `up -d` printed
        self.images_before_up: list[str] | None = None  # the stack's images the engine had

    def compose(self, *args: str, timeout: float = 600) -> str:
        """Run the compose command with ``ARGS`` (and nothing else: files, project and settings
        are in its environment); return its output or raise ``ComposeError``."""
        try:
            done = subprocess.run(
                [*self.command, *args],
                cwd=self.workdir,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ComposeError(f"compose {' '.join(args)}: no end in {timeout}s") from exc
        output = done.stdout + done.stderr
        if done.returncode != 0:
            raise ComposeError(f"compose {' '.join(args)} failed:\n{output[-4000:]}")
        return output

    def timed(self, what: str, *args: str, timeout: float = 600) -> str:
        """``compose(ARGS)``, remembering how long it took under ``what``."""
        began = time.monotonic()
        try:
            return self.compose(*args, timeout=timeout)
        finally:
            self.timings[what] = time.monotonic() - began

    def images(self) -> list[str]:
        """The images of the stack's services, as ``config`` resolves them (with BASE_IMAGE
        and the overrides)."""
        lines = self.compose("config").splitlines()
        found = {line.split(":", 1)[1].strip() for line in lines if line.startswith("    image:")}
        if not found:
            raise ComposeError("`config` names no image:\n" + "\n".join(lines[:40]))
        return sorted(found)

    def remove_images(self) -> list[str]:
        """Remove the images of the stack's services from the engine (the base image they are
        built from stays); return the ones that were there."""
        removed = []
        for image in self.images():
            if self.client.images.list(name=image):
                self.client.images.remove(image, force=True)
                removed.append(image)
        return removed

    def up(self) -> None:
        """The README's command, ``up -d``, which builds every missing image first; on failure
        the error has the containers' logs."""
        self.images_before_up = [i for i in self.images() if self.client.images.list(name=i)]
        try:
            self.up_output = self.timed("demo_up", "up", "-d", timeout=900)
        except ComposeError as exc:
            raise ComposeError(f"{exc}\n{self.describe()}") from exc
        self.started = time.monotonic()

    def address(self, service: str) -> str:
        """The fixed IPv4 address of ``service`` on the demo network."""
        return f"{self.net}.{HOST_PART[service]}"

    def containers(self) -> dict[str, Any]:
        """``{service: container}`` of the project (all states)."""
        found = self.client.containers.list(
            all=True, filters={"label": f"{PROJECT_LABEL}={self.project}"}
        )
        return {c.labels[SERVICE_LABEL]: c for c in found}

    def container(self, service: str) -> Any:
        """The (refreshed) container of ``service``."""
        return self.containers()[service]

    def health(self, service: str) -> str:
        """``State.Health.Status`` of the service's container (``""`` without a healthcheck)."""
        state = self.client.api.inspect_container(self.container(service).id)["State"]
        return str(state.get("Health", {}).get("Status", ""))

    def logs(self, service: str) -> str:
        """Everything the service's container wrote (``docker logs``)."""
        return str(self.container(service).logs().decode(errors="replace"))

    def _firewall(self, service: str, action: str, port: int) -> None:
        pid = self.client.api.inspect_container(self.container(service).id)["State"]["Pid"]
        rule = ["INPUT", "-p", "tcp", "--dport", str(port), "-j", "REJECT"]
        argv = [self.nsenter, "-t", str(pid), "-n", self.iptables, action, *rule]
        subprocess.run([*argv, "--reject-with", "tcp-reset"], check=True, capture_output=True)

    def refuse(self, service: str, port: int) -> None:
        """Make ``service`` refuse TCP connections to ``port`` (a rule in its own network
        namespace): it keeps running and keeps its name, nobody gets through."""
        self._firewall(service, "-I", port)

    def accept(self, service: str, port: int) -> None:
        """Undo ``refuse``."""
        self._firewall(service, "-D", port)

    def volume(self, name: str) -> Path:
        """The host directory of the project's volume ``name``."""
        volume = self.client.volumes.get(f"{self.project}_{name}")
        return Path(volume.attrs["Mountpoint"])

    def down(self) -> None:
        """Remove the project's containers, network and volumes."""
        self.compose("down", "-v", "--remove-orphans", "--timeout", "5", timeout=180)

    def describe(self, services: Iterable[str] | None = None, tail: int = 40) -> str:
        """State and last log lines of each container, for failure messages."""
        lines = []
        for service, container in sorted(self.containers().items()):
            if services is not None and service not in services:
                continue
            container.reload()
            health = container.attrs["State"].get("Health", {}).get("Status", "-")
            lines.append(f"--- {service}: {container.status} (health {health})")
            with contextlib.suppress(Exception):
                lines.append(container.logs(tail=tail).decode(errors="replace").rstrip())
        return "\n".join(lines)
