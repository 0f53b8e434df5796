"""Mock DNS server: ``pebble-challtestsrv`` with only its DNS and management listeners.

Every name resolves to 127.0.0.1 (A) by default and has no AAAA record, so Pebble's
HTTP-01 validation of any test name lands on the local nginx.

Management API of challtestsrv in Pebble 2.4 (all ``POST`` with a JSON body; host names
are made fully qualified by the server):

* ``/set-default-ipv4``, ``/set-default-ipv6``: ``{"ip": "..."}`` (``""`` disables)
* ``/add-a``, ``/add-aaaa``: ``{"host": "...", "addresses": ["..."]}`` (appends)
* ``/clear-a``, ``/clear-aaaa``, ``/clear-caa``, ``/clear-txt``: ``{"host": "..."}``
* ``/add-caa``: ``{"host": "...", "policies": [{"tag": "issue", "value": "ca.example"}]}``
* ``/set-txt``: ``{"host": "...", "value": "..."}``; unlike the others the TXT
  endpoints do *not* qualify the name, so a trailing dot is required (added here)
* ``/set-servfail``, ``/clear-servfail``: ``{"host": "..."}``: every query of that name
  answers SERVFAIL (a name that does not resolve) until cleared
* also ``/set-cname``, ``/clear-cname``, ``/clear-request-history`` and HTTP-01/TLS-ALPN-01
  endpoints (unused here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import requests

from .proc import Child, free_port, require_binary, tcp_open, wait_for

CaaPolicy = Mapping[str, str]


def _fqdn(host: str) -> str:
    return host if host.endswith(".") else host + "."


class MockDNS:
    """A running ``pebble-challtestsrv`` acting as the authoritative DNS for every name."""

    host = "127.0.0.1"

    def __init__(self, workdir: Path) -> None:
        binary = require_binary("pebble-challtestsrv", "pebble")
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port(udp_too=True)
        self.management_port = free_port()
        self.management_url = f"http://{self.host}:{self.management_port}"
        argv = [
            binary,
            "-dns01", f"{self.host}:{self.port}",
            "-management", f"{self.host}:{self.management_port}",
            "-http01", "",
            "-https01", "",
            "-tlsalpn01", "",
            "-defaultIPv4", "127.0.0.1",
            "-defaultIPv6", "",
        ]  # fmt: skip
        self._child = Child("pebble-challtestsrv", argv, workdir / "challtestsrv.log")
        self._session = requests.Session()

    def start(self) -> None:
        """Start the server and wait until both DNS (TCP) and management answer."""
        self._child.start()
        wait_for(
            lambda: tcp_open(self.management_port) and tcp_open(self.port),
            "pebble-challtestsrv",
            self._child,
        )

    def stop(self) -> None:
        """Stop the server."""
        self._child.stop()
        self._session.close()

    def _post(self, endpoint: str, body: Mapping[str, object]) -> None:
        resp = self._session.post(f"{self.management_url}/{endpoint}", json=body, timeout=5)
        resp.raise_for_status()

    def add_a(self, host: str, ips: Sequence[str]) -> None:
        """Add A records for ``host`` (appends to any already added)."""
        self._post("add-a", {"host": host, "addresses": list(ips)})

    def clear_a(self, host: str) -> None:
        """Remove explicit A records of ``host`` (it falls back to the default IPv4)."""
        self._post("clear-a", {"host": host})

    def add_aaaa(self, host: str, ips: Sequence[str]) -> None:
        """Add AAAA records for ``host`` (appends to any already added)."""
        self._post("add-aaaa", {"host": host, "addresses": list(ips)})

    def clear_aaaa(self, host: str) -> None:
        """Remove explicit AAAA records of ``host``."""
        self._post("clear-aaaa", {"host": host})

    def add_caa(self, host: str, policies: Sequence[CaaPolicy]) -> None:
        """Add CAA records, each policy being ``{"tag": "issue", "value": "ca.example"}``."""
        self._post("add-caa", {"host": host, "policies": [dict(p) for p in policies]})

    def clear_caa(self, host: str) -> None:
        """Remove the CAA records of ``host``."""
        self._post("clear-caa", {"host": host})

    def set_txt(self, host: str, value: str) -> None:
        """Add a TXT record value for ``host``."""
        self._post("set-txt", {"host": _fqdn(host), "value": value})

    def clear_txt(self, host: str) -> None:
        """Remove the TXT records of ``host``."""
        self._post("clear-txt", {"host": _fqdn(host)})

    def set_servfail(self, host: str) -> None:
        """Answer SERVFAIL to every query of ``host`` (it does not resolve)."""
        self._post("set-servfail", {"host": host})

    def clear_servfail(self, host: str) -> None:
        """Answer ``host`` normally again."""
        self._post("clear-servfail", {"host": host})

    def set_default_ipv4(self, ip: str) -> None:
        """Set the A answer for names without explicit records (``""`` disables)."""
        self._post("set-default-ipv4", {"ip": ip})

    def set_default_ipv6(self, ip: str) -> None:
        """Set the AAAA answer for names without explicit records (``""`` disables)."""
        self._post("set-default-ipv6", {"ip": ip})
