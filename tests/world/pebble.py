"""Pebble ACME test CA, validating through the mock DNS and the local nginx.

Pebble's issuing root and intermediate are regenerated on every (re)start; fetch them
with :meth:`Pebble.root_pem` / :meth:`Pebble.intermediate_pem` after each start.

Its configuration is the demo's ``demo/pebble/pebble-config.json`` (the one Pebble config of the
project) with this world's addresses, ports and listener certificate filled in.

Two versions: ``Pebble`` is Debian 13's Pebble 2.6 (the ``pebble`` package: ARI, ``replaces``, a
409 conflict for a second replacement); ``ProfilesPebble`` is Debian unstable's Pebble 2.10,
unpacked beside it by ``tests/run`` (``SID_BINARY``), with real profiles, each with its own
certificate lifetime, and the ``alreadyReplaced`` error. 2.10 gives an order that names no
profile one of its profiles at random.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from .proc import Child, free_port, require_binary, wait_for
from .tls import make_server_cert

# where tests/run unpacks Debian unstable's pebble package (Pebble 2.10)
SID_ROOT = Path("/opt/acme-sidecar-pebble-sid")
SID_BINARY = SID_ROOT / "usr" / "bin" / "pebble"
# the demo's config: the template of every Pebble the project starts
CONFIG_TEMPLATE = Path(__file__).resolve().parents[2] / "demo" / "pebble" / "pebble-config.json"
PEBBLE_ENV = {
    "PEBBLE_VA_NOSLEEP": "1",
    "PEBBLE_WFE_NONCEREJECT": "0",
    "PEBBLE_AUTHZREUSE": "0",
}


def pebble_config(**values: object) -> dict[str, Any]:
    """The template's config with ``values`` in place of its own (each must be a template key)."""
    config: dict[str, Any] = json.loads(CONFIG_TEMPLATE.read_text())
    unknown = set(values) - set(config["pebble"])
    if unknown:
        raise KeyError(f"{CONFIG_TEMPLATE} has no {', '.join(sorted(unknown))}")
    config["pebble"].update(values)
    return config


class Pebble:
    """A Pebble instance on 127.0.0.1; ports stay the same across stop()/start()."""

    host = "127.0.0.1"

    def __init__(
        self,
        workdir: Path,
        dns_port: int,
        http_port: int,
        config: Mapping[str, object] | None = None,
    ) -> None:
        """``config``: template values of its own (e.g. EAB required), over the defaults."""
        binary = self._binary()
        workdir.mkdir(parents=True, exist_ok=True)
        tls = make_server_cert(workdir, "pebble listener")
        self.ca_bundle = tls.ca_cert
        self.port = free_port()
        self.management_port = free_port()
        self.http_port = http_port
        self.tls_port = free_port()
        self.directory_url = f"https://{self.host}:{self.port}/dir"
        self.management_url = f"https://{self.host}:{self.management_port}"
        config = pebble_config(
            listenAddress=f"{self.host}:{self.port}",
            managementListenAddress=f"{self.host}:{self.management_port}",
            certificate=str(tls.cert),
            privateKey=str(tls.key),
            httpPort=http_port,
            tlsPort=self.tls_port,
            **(config or {}),
        )
        config["pebble"].update(self._own_config())
        config_path = workdir / "pebble-config.json"
        config_path.write_text(json.dumps(config, indent=2))
        argv = [binary, "-config", str(config_path), "-dnsserver", f"127.0.0.1:{dns_port}"]
        self._child = Child("pebble", argv, workdir / "pebble.log", env=PEBBLE_ENV, cwd=workdir)

    def _binary(self) -> str:
        """The Pebble 2.6 binary (Debian's ``pebble`` package, from trixie)."""
        return require_binary("pebble", "pebble")

    def _own_config(self) -> dict[str, Any]:
        """Config keys beyond the template's (none for 2.6)."""
        return {}

    def _get(self, url: str) -> requests.Response:
        resp = requests.get(url, verify=str(self.ca_bundle), timeout=5)
        resp.raise_for_status()
        return resp

    def _ready(self) -> bool:
        try:
            self._get(self.directory_url)
            self._get(f"{self.management_url}/roots/0")
        except requests.RequestException:
            return False
        return True

    def start(self) -> None:
        """Start Pebble and wait until its directory and management API answer."""
        self._child.start()
        wait_for(self._ready, "pebble directory", self._child)

    def stop(self) -> None:
        """Stop Pebble (simulates the CA being down); start() brings it back."""
        self._child.stop()

    def running(self) -> bool:
        """Return True while the Pebble process is alive."""
        return self._child.running()

    def root_pem(self) -> bytes:
        """PEM of the root currently used for issuance (changes on every start)."""
        return self._get(f"{self.management_url}/roots/0").content

    def intermediate_pem(self) -> bytes:
        """PEM of the intermediate currently used for issuance."""
        return self._get(f"{self.management_url}/intermediates/0").content


class ProfilesPebble(Pebble):
    """Pebble 2.10 with ``profiles``: name -> certificate lifetime in seconds (Pebble's
    ``validityPeriod``; a certificate's notAfter is notBefore + lifetime - 1 s). Its directory
    lists them in ``meta.profiles`` with the description "<name>: <lifetime> s"."""

    def __init__(
        self,
        workdir: Path,
        dns_port: int,
        http_port: int,
        profiles: Mapping[str, int],
        config: Mapping[str, object] | None = None,
    ) -> None:
        self.profiles = dict(profiles)
        super().__init__(workdir, dns_port, http_port, config)

    def _binary(self) -> str:
        """Debian unstable's Pebble (2.10 or later), unpacked by tests/run."""
        if not os.access(SID_BINARY, os.X_OK):
            raise RuntimeError(
                f"test world: Pebble 2.10 not found at {SID_BINARY}; tests/run unpacks Debian "
                f"unstable's pebble package there (run it as root once)"
            )
        return str(SID_BINARY)

    def _own_config(self) -> dict[str, Any]:
        """Pebble 2.10's ``profiles``: each with a description and its ``validityPeriod``."""
        return {
            "profiles": {
                name: {"description": f"{name}: {seconds} s", "validityPeriod": seconds}
                for name, seconds in self.profiles.items()
            }
        }

    def set_renewal_info(self, cert_pem: bytes, start: datetime, end: datetime) -> None:
        """Make Pebble answer ``renewalInfo`` for this certificate with the window
        ``start``-``end`` from now on (its management endpoint ``/set-renewal-info/``)."""
        window = {"suggestedWindow": {"start": _rfc3339(start), "end": _rfc3339(end)}}
        body = {"Certificate": cert_pem.decode(), "ARIResponse": json.dumps(window)}
        url = f"{self.management_url}/set-renewal-info/"
        requests.post(url, json=body, verify=str(self.ca_bundle), timeout=5).raise_for_status()


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
