"""Three TLS consumers (Postfix-, Dovecot- and nginx-like) serving one certificate volume."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from docker.models.containers import Container

from tests.world import World
from tests.world.tlsprobe import served_serial

KINDS = (("postfix-mailcow", "smtp"), ("dovecot-mailcow", "imap"), ("nginx-mailcow", "https"))


@dataclass
class Stack:
    """Three consumers serving the volume, and the sidecar settings that point at them."""

    volume: Path
    env: dict[str, str]
    containers: dict[str, Container]
    ports: dict[str, int]

    def started(self, world: World) -> dict[str, str]:
        return {s: world.docker.started_at(c.id) for s, c in self.containers.items()}

    def reloads(self, world: World) -> dict[str, int]:
        return {s: world.docker.reloads(c.id) for s, c in self.containers.items()}

    def events(self, world: World) -> dict[str, dict[str, int]]:
        """Per service: starts, reloads and map rebuilds since its container was created."""
        return {s: world.docker.events(c.id) for s, c in self.containers.items()}

    def serial(self, kind: str, name: str | None) -> int:
        service = next(s for s, k in KINDS if k == kind)
        return served_serial(kind, self.ports[service], name)
