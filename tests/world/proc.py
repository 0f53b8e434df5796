"""Process helpers shared by the test world: binaries, free ports, polling, children."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

POLL_INTERVAL = 0.05
_ports_lock = threading.Lock()
_ports_given: set[int] = set()


def require_binary(name: str, package: str) -> str:
    """Return the absolute path of ``name`` or raise naming the Debian package to install."""
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if path is None:
        raise RuntimeError(
            f"test world: required binary {name!r} not found; install it with "
            f"`apt-get install {package}`"
        )
    return path


def free_port(udp_too: bool = False) -> int:
    """Return a loopback port that is currently free (TCP, and UDP if asked).

    Ports handed out earlier in this process are never returned twice.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
            if udp_too:
                try:
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                        udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        with _ports_lock:
            if port not in _ports_given:
                _ports_given.add(port)
                return port
    raise RuntimeError("test world: could not find a free loopback port")


def tcp_open(port: int, host: str = "127.0.0.1") -> bool:
    """Return True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class Child:
    """A long-running child process whose output goes to a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(os.environ, **env) if env is not None else None
        self.cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """PID of the running process, or None."""
        return self._popen.pid if self._popen is not None else None

    def start(self) -> None:
        """Spawn the process (in its own session so terminal signals do not reach it)."""
        if self.running():
            raise RuntimeError(f"{self.name} is already running")
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )

    def running(self) -> bool:
        """Return True while the process is alive."""
        return self._popen is not None and self._popen.poll() is None

    def check_alive(self) -> None:
        """Raise RuntimeError with the log tail if the process has exited."""
        if self._popen is None:
            raise RuntimeError(f"{self.name} was never started")
        code = self._popen.poll()
        if code is not None:
            raise RuntimeError(
                f"{self.name} exited with status {code}: {' '.join(self.argv)}\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 25) -> str:
        """Return the last lines of the log file."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        """Send ``sig`` and wait; SIGKILL the process if it is still alive after ``timeout``."""
        popen, self._popen = self._popen, None
        if popen is None or popen.poll() is not None:
            return
        popen.send_signal(sig)
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(5)


def wait_for(
    check: Callable[[], bool], what: str, child: Child | None = None, timeout: float = 30.0
) -> None:
    """Poll ``check`` every 50 ms until it is true; fail fast if ``child`` dies."""
    deadline = time.monotonic() + timeout
    while True:
        if child is not None:
            child.check_alive()
        if check():
            return
        if time.monotonic() > deadline:
            tail = f"\n{child.log_tail()}" if child is not None else ""
            raise RuntimeError(f"test world: timed out after {timeout}s waiting for {what}{tail}")
        time.sleep(POLL_INTERVAL)
