"""A private ``dockerd`` (with its own managed containerd) and a tiny offline busybox image.

Services are plain long-running busybox containers labelled like docker compose would
label them. Their shell traps SIGHUP and appends ``reload`` to ``/tmp/reloads`` so tests
can tell a reload signal was delivered; SIGTERM makes them exit at once.

Consumers (``run_consumer``) are compose-labelled containers of the Debian consumer image
(``images.py``) running ``consumer_server.py``: real SMTP/IMAP STARTTLS or HTTPS listeners
on the host's loopback that serve the certificate volume like mailcow's Postfix, Dovecot
and nginx (SNI map fixed at start, files re-read on ``postfix reload`` & co., which append
to ``/run/reloads``). ``events`` counts a consumer's starts, reloads and map rebuilds since it
was created (kept across restarts).
"""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import docker
from docker.models.containers import Container

from . import images
from .proc import Child, require_binary, wait_for

IMAGE = "acme-test-busybox:latest"
READY_FILE = "/run/ready"
RELOADS_FILE = "/tmp/reloads"
CONSUMER_RELOADS_FILE = "/run/reloads"
CONSUMER_EVENTS_FILE = "/var/lib/consumer/events"
CONSUMER_CERTS = "/etc/ssl/mail"
SERVICE_SCRIPT = f"""\
trap 'echo reload >> {RELOADS_FILE}; kill $child 2>/dev/null' HUP
trap 'kill $child 2>/dev/null; exit 0' TERM INT
touch {READY_FILE}
while :; do sleep 86400 & child=$!; wait $child; done
"""


def _require_static(path: str) -> None:
    """Raise unless ``path`` is an ELF64 binary without an interpreter (statically linked)."""
    data = Path(path).read_bytes()
    phoff, phentsize, phnum = data[32:40], data[54:56], data[56:58]
    start, size = int.from_bytes(phoff, "little"), int.from_bytes(phentsize, "little")
    types = [
        int.from_bytes(data[start + i * size : start + i * size + 4], "little")
        for i in range(int.from_bytes(phnum, "little"))
    ]
    if data[:5] != b"\x7fELF\x02" or 3 in types:  # 3 = PT_INTERP
        raise RuntimeError(f"{path} is not a static binary; `apt-get install busybox-static`")


def _rootfs_tar(busybox: str) -> bytes:
    """Return a tar of a root fs holding only a static busybox and its applet links."""
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, mode in (("bin", 0o755), ("etc", 0o755), ("run", 0o755), ("tmp", 0o1777)):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for applet in applets.stdout.split():
            if applet != "busybox":
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
    return buf.getvalue()


class DockerWorld:
    """A private docker daemon listening on ``docker_host`` (a unix socket URL)."""

    def __init__(self, workdir: Path) -> None:
        """``workdir`` must be a short path: unix socket paths are limited to 107 bytes."""
        binary = require_binary("dockerd", "docker.io")
        require_binary("containerd", "containerd")
        require_binary("runc", "runc")
        self._busybox = require_binary("busybox", "busybox-static")
        _require_static(self._busybox)
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.socket = workdir / "d.sock"
        self.docker_host = f"unix://{self.socket}"
        config = workdir / "daemon.json"
        # Without this key dockerd 20.10 writes its trust key to /etc/docker/key.json.
        config.write_text(json.dumps({"deprecated-key-path": str(workdir / "key.json")}))
        argv = [
            binary, "--host", self.docker_host, "--config-file", str(config),
            "--data-root", str(workdir / "data"), "--exec-root", str(workdir / "x"),
            "--pidfile", str(workdir / "docker.pid"),
            "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false",
            "--ip-masq=false", "--userland-proxy=false", "--shutdown-timeout=2",
            "--log-level=warn",
        ]  # fmt: skip
        self._child = Child("dockerd", argv, workdir / "dockerd.log")
        self._client: Any = None
        self._consumer_lock = threading.Lock()
        self._consumer_image: str | None = None

    @property
    def client(self) -> Any:
        """The ``docker.DockerClient`` connected to the private daemon."""
        if self._client is None:
            raise RuntimeError("DockerWorld is not started")
        return self._client

    def _connect(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            self._client = docker.DockerClient(base_url=self.docker_host, version="auto")
        except docker.errors.DockerException:
            return False
        return True

    def start(self) -> None:
        """Start dockerd, wait for its API and import the busybox image."""
        self._child.start()
        wait_for(self._connect, "dockerd API", self._child)
        if not self.client.images.list(name=IMAGE):
            data = _rootfs_tar(self._busybox)
            self.client.api.import_image_from_data(
                data, repository=IMAGE.split(":")[0], tag=IMAGE.split(":")[1]
            )

    def _replace(self, name: str) -> None:
        for old in self.client.containers.list(all=True, filters={"name": f"^{name}$"}):
            old.remove(force=True)

    @staticmethod
    def _labels(project: str, service: str) -> dict[str, str]:
        return {
            "com.docker.compose.project": project,
            "com.docker.compose.service": service,
            "com.docker.compose.container-number": "1",
        }

    def run_service(self, project: str, service: str) -> Container:
        """Start container ``<project>-<service>-1`` labelled as a compose service."""
        name = f"{project}-{service}-1"
        self._replace(name)
        container = self.client.containers.run(
            IMAGE,
            ["/bin/sh", "-c", SERVICE_SCRIPT],
            name=name,
            detach=True,
            network_mode="none",
            tmpfs={"/run": ""},
            stop_signal="SIGTERM",
            labels=self._labels(project, service),
        )
        self.wait_ready(container.id)
        return container

    def consumer_image(self) -> str:
        """Tag of the TLS consumer image, imported on first use (debootstrapped if uncached)."""
        with self._consumer_lock:
            if self._consumer_image is None:
                self._consumer_image = images.consumer_image(self.client)
            return self._consumer_image

    def run_consumer(
        self,
        project: str,
        service: str,
        kind: str,
        port: int,
        cert_dir: Path,
        *,
        sni_snapshot: bool = False,
    ) -> Container:
        """Start ``<project>-<service>-1``: a ``kind`` TLS listener on 127.0.0.1:``port``.

        ``kind`` is ``smtp``, ``imap`` or ``https``; ``cert_dir`` (which must hold the
        default ``cert.pem``/``key.pem``) is mounted read-only at ``/etc/ssl/mail``. Mount
        semantics: files and subdirectories changed inside ``cert_dir`` are visible to the
        container, a ``cert_dir`` replaced as a whole (renamed over) is not. ``sni_snapshot``:
        SNI answers from copies made at start, refreshed only by ``postmap`` (mailcow's Postfix).
        """
        if kind not in ("smtp", "imap", "https"):
            raise ValueError(f"consumer kind must be smtp, imap or https, not {kind!r}")
        image = self.consumer_image()
        name = f"{project}-{service}-1"
        self._replace(name)
        container = self.client.containers.run(
            image,
            [images.CONSUMER_SERVER, "--kind", kind, "--port", str(port)]
            + (["--sni-snapshot"] if sni_snapshot else []),
            name=name,
            detach=True,
            network_mode="host",
            tmpfs={"/run": ""},
            volumes={str(cert_dir.resolve()): {"bind": CONSUMER_CERTS, "mode": "ro"}},
            stop_signal="SIGTERM",
            labels=self._labels(project, service),
        )
        self.wait_ready(container.id)
        return container

    def wait_ready(self, container_id: str, timeout: float = 20.0) -> None:
        """Wait until a service or consumer (re)started: its ``/run/ready`` exists.

        Both kinds keep ``/run`` on a tmpfs, so the file is gone after every restart until
        the new process has installed its signal handlers (and listens, for consumers).
        """

        def ready() -> bool:
            container = self.client.containers.get(container_id)
            if container.status != "running":
                return False
            code, _ = container.exec_run(["test", "-e", READY_FILE])
            return bool(code == 0)

        try:
            wait_for(ready, f"container {container_id[:12]}", self._child, timeout)
        except RuntimeError as exc:
            container = self.client.containers.get(container_id)
            logs = container.logs(tail=20).decode(errors="replace")
            raise RuntimeError(f"{exc}\n{container.name} is {container.status}:\n{logs}") from exc

    def reloads(self, container_id: str) -> int:
        """SIGHUPs the container has handled so far (lines in its reloads file).

        Services count in /tmp/reloads (kept across restarts), consumers in /run/reloads
        (a tmpfs: back to 0 after a restart).
        """
        container = self.client.containers.get(container_id)
        busybox = container.attrs["Config"]["Image"] == IMAGE
        path = RELOADS_FILE if busybox else CONSUMER_RELOADS_FILE
        code, out = container.exec_run(["cat", path])
        return out.decode().split().count("reload") if code == 0 else 0

    def events(self, container_id: str) -> dict[str, int]:
        """A consumer's ``start``, ``reload`` and ``postmap`` count since it was created."""
        container = self.client.containers.get(container_id)
        code, out = container.exec_run(["cat", CONSUMER_EVENTS_FILE])
        words = out.decode().split() if code == 0 else []
        return {w: words.count(w) for w in ("start", "reload", "postmap")}

    def wait_reloads(self, container_id: str, count: int, timeout: float = 10.0) -> None:
        """Wait until the service has handled at least ``count`` SIGHUPs."""
        deadline = time.monotonic() + timeout
        while self.reloads(container_id) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"container {container_id[:12]} got no SIGHUP #{count}")
            time.sleep(0.05)

    def started_at(self, container_id: str) -> str:
        """``State.StartedAt`` of the container (changes on every (re)start)."""
        return str(self.client.api.inspect_container(container_id)["State"]["StartedAt"])

    def remove_all(self) -> None:
        """Force-remove every container of the private daemon."""
        for container in self.client.containers.list(all=True):
            container.remove(force=True)

    def stop(self) -> None:
        """Remove all containers and stop dockerd (and its managed containerd)."""
        if self._client is not None:
            try:
                self.remove_all()
            finally:
                self._client.close()
                self._client = None
        self._child.stop(timeout=20)
