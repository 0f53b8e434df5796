"""Pebble ACME test CA, validating through the mock DNS and the local nginx.

Pebble's issuing root and intermediate are regenerated on every (re)start; fetch them
with :meth:`Pebble.root_pem` / :meth:`Pebble.intermediate_pem` after each start.

Its configuration is the demo's ``demo/pebble/pebble-config.json`` (the one Pebble config of the
project) with this world's addresses, ports and listener certificate filled in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

from .proc import Child, free_port, require_binary, wait_for
from .tls import make_server_cert

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
        binary = require_binary("pebble", "pebble")
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
        config_path = workdir / "pebble-config.json"
        config_path.write_text(json.dumps(config, indent=2))
        argv = [binary, "-config", str(config_path), "-dnsserver", f"127.0.0.1:{dns_port}"]
        self._child = Child("pebble", argv, workdir / "pebble.log", env=PEBBLE_ENV, cwd=workdir)

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
