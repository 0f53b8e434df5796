"""Apply: restart the consumers (Postfix, Dovecot, nginx) through the Docker API.

Containers are found by their compose labels: ``com.docker.compose.project`` equal to
``COMPOSE_PROJECT_NAME`` (exactly, never a substring) and ``com.docker.compose.service`` in
``ACME_RESTART_SERVICES``. Each container is restarted once per cycle. May touch: Docker only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import structlog

from acme_sidecar.errors import ServiceError

log = structlog.get_logger(__name__)

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


class Services(Protocol):
    """The consumers of the certificate volume."""

    def restart_all(self) -> list[str]:
        """Restart every consumer once; return the services restarted."""


def _docker_from_env() -> Any:
    import docker

    return docker.from_env(timeout=60)


class DockerServices:
    """Compose services of one project, restarted through the Docker SDK (``DOCKER_HOST``)."""

    def __init__(
        self,
        project: str,
        services: Sequence[str],
        *,
        client_factory: Callable[[], Any] = _docker_from_env,
    ) -> None:
        # compose lower-cases project names when it sets the label
        self.project = project.lower()
        self.services = tuple(services)
        self._client_factory = client_factory

    def _containers(self, client: Any, service: str) -> list[Any]:
        labels = [f"{PROJECT_LABEL}={self.project}", f"{SERVICE_LABEL}={service}"]
        found = client.containers.list(filters={"label": labels})
        return [
            c
            for c in found
            if c.labels.get(PROJECT_LABEL) == self.project
            and c.labels.get(SERVICE_LABEL) == service
        ]

    def restart_all(self) -> list[str]:
        """Restart each running container of the configured services once."""
        import docker.errors

        try:
            client = self._client_factory()
        except docker.errors.DockerException as exc:
            raise ServiceError(f"cannot reach the Docker API: {exc}") from exc
        done: list[str] = []
        failed: list[str] = []
        try:
            for service in self.services:
                containers = self._containers(client, service)
                if not containers:
                    log.warning(
                        "service.not_found",
                        service=service,
                        project=self.project,
                        reason="no running container with these compose labels",
                    )
                for container in containers:
                    try:
                        container.restart(timeout=10)
                    except docker.errors.DockerException as exc:
                        failed.append(service)
                        log.error("service.restart_failed", service=service, error=str(exc))
                        continue
                    log.info(
                        "service.restarted",
                        service=service,
                        container=container.name,
                        reason="certificates changed",
                    )
                    done.append(service)
        except docker.errors.DockerException as exc:
            raise ServiceError(f"cannot list containers through the Docker API: {exc}") from exc
        finally:
            client.close()
        if failed:
            raise ServiceError("could not restart " + ", ".join(failed))
        return done
