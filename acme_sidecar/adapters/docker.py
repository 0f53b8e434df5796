"""Apply: reload or restart the consumers (Postfix, Dovecot, nginx) through the Docker API.

Containers are found by their compose labels: ``com.docker.compose.project`` equal to
``COMPOSE_PROJECT_NAME`` (exactly, never a substring) and ``com.docker.compose.service`` in
``ACME_RESTART_SERVICES``. A change of certificate contents is applied with the service's own
reload command run inside its container (falling back to a restart when that fails); a change in
the set of certificate directories needs a restart, because the consumers build their SNI maps
at start. Each container is acted on once per call. May touch: Docker only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import structlog

from acme_sidecar.core.errors import ServiceError

log = structlog.get_logger(__name__)

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"

# the reload command of each consumer, found by a word in its compose service name
RELOAD_COMMANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("postfix", ("postfix", "reload")),
    ("dovecot", ("doveadm", "reload")),
    ("nginx", ("nginx", "-s", "reload")),
)


def reload_command(service: str) -> tuple[str, ...] | None:
    """The in-container reload command of ``service``; ``None`` means restart it."""
    return next((cmd for word, cmd in RELOAD_COMMANDS if word in service), None)


def log_not_found(service: str, project: str) -> None:
    """The one line for a service with no running container of the project."""
    log.warning(
        "service.not_found",
        service=service,
        project=project,
        reason="no running container with these compose labels",
    )


class Services(Protocol):
    """The consumers of the certificate volume."""

    services: tuple[str, ...]

    def apply(
        self, *, restart: bool, only: Sequence[str] | None = None, reason: str = ""
    ) -> dict[str, str]:
        """Reload (or restart) every consumer once; return ``{service: "reloaded"|...}``."""


def _docker_from_env() -> Any:
    import docker

    return docker.from_env(timeout=60, version="auto")


class DockerServices:
    """Compose services of one project, driven through the Docker SDK (``DOCKER_HOST``)."""

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

    def apply(
        self, *, restart: bool, only: Sequence[str] | None = None, reason: str = ""
    ) -> dict[str, str]:
        """Reload, or restart when ``restart`` (or when the reload fails), each service once;
        ``reason`` says why a restart was asked for (default: the set changed)."""
        import docker.errors
        import requests

        # the SDK raises requests' errors (ReadTimeout, ConnectionError) besides its own
        failures = (docker.errors.DockerException, requests.RequestException, OSError)
        try:
            client = self._client_factory()
        except failures as exc:
            raise ServiceError(f"cannot reach the Docker API: {exc}") from exc
        done: dict[str, str] = {}
        failed: list[str] = []
        try:
            for service in self.services if only is None else only:
                containers = self._containers(client, service)
                if not containers:
                    log_not_found(service, self.project)
                for container in containers:
                    try:
                        done[service] = self._apply_one(container, service, restart, reason)
                    except failures as exc:
                        failed.append(service)
                        log.error("service.failed", service=service, error=str(exc))
        except failures as exc:
            raise ServiceError(f"cannot list containers through the Docker API: {exc}") from exc
        finally:
            with contextlib.suppress(*failures):
                client.close()
        if failed:
            raise ServiceError("could not reload or restart " + ", ".join(failed))
        return done

    def _apply_one(self, container: Any, service: str, restart: bool, reason: str) -> str:
        command = reload_command(service)
        if not restart and command is not None:
            result = container.exec_run(list(command))
            if result.exit_code == 0:
                log.info(
                    "service.reloaded",
                    service=service,
                    container=container.name,
                    command=" ".join(command),
                    reason="certificate contents changed",
                )
                return "reloaded"
            output = (result.output or b"").decode(errors="replace").strip()[-200:]
            log.warning(
                "service.reload_failed",
                service=service,
                command=" ".join(command),
                exit_code=result.exit_code,
                output=output,
                action="restarting instead",
            )
        container.restart(timeout=10)
        why = (reason or "the set of certificates changed") if restart else "reload did not work"
        log.info("service.restarted", service=service, container=container.name, reason=why)
        return "restarted"
