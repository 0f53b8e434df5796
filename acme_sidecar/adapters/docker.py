"""Apply: reload, rebuild or restart the consumers (Postfix, Dovecot, nginx) through the Docker API.

Containers are found by their compose labels: ``com.docker.compose.project`` equal to
``COMPOSE_PROJECT_NAME`` (exactly, never a substring) and ``com.docker.compose.service`` in
``ACME_RESTART_SERVICES``. Each service gets the action ``core.consumers`` chose for it: a
reload runs the service's own reload command inside its container; Postfix's map rebuild runs
``postmap -F`` on ``sni.map`` then ``postfix reload`` (mailcow runs Postfix with ``-c
/opt/postfix/conf``); a failed reload or rebuild falls back to a restart. Each container is
acted on once per call, with one log line naming service, container, action and reason.
May touch: Docker only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self

import structlog

from acme_sidecar.core.consumers import Act, ConsumerKind, Reaction, kind_of
from acme_sidecar.core.errors import ServiceError

log = structlog.get_logger(__name__)

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
POSTFIX_CONF = "/opt/postfix/conf"  # mailcow starts Postfix with -c this
SNI_MAP = f"hash:{POSTFIX_CONF}/sni.map"

Command = tuple[str, ...]
# the reload command of each consumer kind, run inside its container
RELOAD_COMMANDS: Mapping[ConsumerKind, Command] = {
    ConsumerKind.POSTFIX: ("postfix", "-c", POSTFIX_CONF, "reload"),
    ConsumerKind.DOVECOT: ("doveadm", "reload"),
    ConsumerKind.NGINX: ("nginx", "-s", "reload"),
}
# Postfix's sni.map holds copies of the certificates (postmap -F): rebuilt, then reloaded
REBUILD_COMMANDS: tuple[Command, ...] = (
    ("postmap", "-F", SNI_MAP),
    RELOAD_COMMANDS[ConsumerKind.POSTFIX],
)
DONE = {Act.RELOAD: "reloaded", Act.REBUILD: "rebuilt", Act.RESTART: "restarted"}
FALLBACK = {Act.RELOAD: "reload did not work", Act.REBUILD: "map rebuild or reload did not work"}


def commands_for(service: str, act: Act) -> tuple[Command, ...]:
    """The in-container commands of ``act`` for ``service``; empty means restart it."""
    kind = kind_of(service)
    if act is Act.REBUILD and kind is ConsumerKind.POSTFIX:
        return REBUILD_COMMANDS
    reload = RELOAD_COMMANDS.get(kind)
    if act in (Act.RELOAD, Act.REBUILD) and reload is not None:
        return (reload,)
    return ()


def log_not_found(service: str, project: str) -> None:
    """The one line for a service with no running container of the project."""
    log.warning(
        "service.not_found",
        service=service,
        project=project,
        reason="no running container with these compose labels",
    )


def log_done(service: str, container: str, action: Reaction, command: str) -> None:
    """The one line for a reload or rebuild that worked."""
    log.info(
        "service.reloaded",
        service=service,
        container=container,
        action=action.act.value,
        command=command,
        reason=action.reason,
    )


def log_restarted(service: str, container: str, action: Reaction) -> None:
    """The one line for a restart: the one asked for, or the fallback of a failed reload."""
    asked = action.act is Act.RESTART
    log.info(
        "service.restarted",
        service=service,
        container=container,
        action=Act.RESTART.value,
        reason=action.reason if asked else FALLBACK.get(action.act, action.reason),
    )


def _docker_from_env(timeout: int = 60) -> Any:
    import docker

    return docker.from_env(timeout=timeout, version="auto")


class DockerServices:
    """Compose services of one project, driven through the Docker SDK (``DOCKER_HOST``)."""

    can_rebuild_map = True  # docker exec runs any command: postmap included

    def __init__(
        self,
        project: str,
        services: Sequence[str],
        *,
        client_factory: Callable[[], Any] | None = None,
        timeout: int = 60,
    ) -> None:
        """``timeout``: seconds one Docker API call may take (``ACME_DOCKER_TIMEOUT``)."""
        # compose lower-cases project names when it sets the label
        self.project = project.lower()
        self.services = tuple(services)
        self._client_factory = client_factory or (lambda: _docker_from_env(timeout))

    def way(self) -> Self:
        return self

    def _containers(self, client: Any, service: str) -> list[Any]:
        labels = [f"{PROJECT_LABEL}={self.project}", f"{SERVICE_LABEL}={service}"]
        found = client.containers.list(filters={"label": labels})
        return [
            c
            for c in found
            if c.labels.get(PROJECT_LABEL) == self.project
            and c.labels.get(SERVICE_LABEL) == service
        ]

    def apply(self, actions: Mapping[str, Reaction]) -> dict[str, str]:
        """Do each service's action (a failed reload or rebuild restarts instead)."""
        import docker.errors
        import requests

        # the SDK raises requests' errors (ReadTimeout, ConnectionError) besides its own
        failures = (docker.errors.DockerException, requests.RequestException, OSError)
        todo = {s: a for s, a in actions.items() if a.act is not Act.NONE}
        if not todo:
            return {}
        try:
            client = self._client_factory()
        except failures as exc:
            raise ServiceError(f"cannot reach the Docker API: {exc}") from exc
        done: dict[str, str] = {}
        failed: list[str] = []
        try:
            for service, action in todo.items():
                containers = self._containers(client, service)
                if not containers:
                    log_not_found(service, self.project)
                for container in containers:
                    try:
                        done[service] = self._apply_one(container, service, action)
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

    def _apply_one(self, container: Any, service: str, action: Reaction) -> str:
        commands = commands_for(service, action.act)
        for command in commands:
            result = container.exec_run(list(command))
            if result.exit_code != 0:
                output = (result.output or b"").decode(errors="replace").strip()[-200:]
                log.warning(
                    "service.reload_failed",
                    service=service,
                    container=container.name,
                    command=" ".join(command),
                    exit_code=result.exit_code,
                    output=output,
                    action="restarting instead",
                )
                break
        else:
            if commands:
                log_done(service, container.name, action, "; ".join(map(" ".join, commands)))
                return DONE[action.act]
        container.restart(timeout=10)
        log_restarted(service, container.name, action)
        return DONE[Act.RESTART]
