"""The way to the containers: mailcow's compose project, the services to reload, and whether
they are reached through mailcow's dockerapi or the Docker socket (``ACME_DOCKER_API``,
``ACME_DOCKERAPI_URL``, ``ACME_DOCKERAPI_WAIT``, ``ACME_DOCKER_TIMEOUT``,
``ACME_RESTART_SERVICES``, ``COMPOSE_PROJECT_NAME``, ``DOCKER_HOST``). Part of ``Settings``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, field_validator

from acme_sidecar.config.base import SETTINGS_CONFIG
from acme_sidecar.config.values import comma_list


class DockerSettings(BaseModel):
    """The consumers' containers and the way to them."""

    model_config = SETTINGS_CONFIG

    compose_project_name: str = "mailcow-dockerized"
    # the way to the containers: mailcow's dockerapi, the Docker socket, or auto (chosen anew at
    # each deploy, adapters/docker_way.py); unset, the URL is mailcow's dockerapi by its long
    # name, then by its short one (see ``dockerapi_urls``)
    acme_docker_api: Literal["dockerapi", "socket", "auto"] = "auto"
    acme_dockerapi_url: str = ""
    acme_dockerapi_wait: int = 120  # at start, for dockerapi's name
    acme_docker_timeout: int = 60  # one Docker API call over the socket
    docker_host: str = ""  # read by the Docker SDK itself; here only: is there a socket?
    acme_restart_services: tuple[str, ...] = (
        "postfix-mailcow",
        "dovecot-mailcow",
        "nginx-mailcow",
    )

    @field_validator("acme_dockerapi_url")
    @classmethod
    def _dockerapi_url(cls, value: str) -> str:
        text = value.strip()
        if text and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", text):
            raise ValueError("must be an https:// or http:// URL such as https://dockerapi")
        return text.rstrip("/")

    @field_validator("acme_restart_services", mode="before")
    @classmethod
    def _services(cls, value: Any) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        items = comma_list(value)
        for item in items:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", item):
                raise ValueError(f"{item!r} is not a compose service name")
        return items

    @field_validator("compose_project_name")
    @classmethod
    def _project(cls, value: str) -> str:
        text = value.strip()
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", text):
            raise ValueError("must be a compose project name (letters, digits, _ . -)")
        return text

    @property
    def dockerapi_urls(self) -> tuple[str, ...]:
        """ACME_DOCKERAPI_URL, or mailcow's dockerapi by the name acme-mailcow uses (on the
        project's network), then by its alias ``dockerapi`` (mailcow#6170: only that resolved)."""
        if self.acme_dockerapi_url:
            return (self.acme_dockerapi_url,)
        long = f"https://dockerapi.{self.compose_project_name.lower()}_mailcow-network"
        return (long, "https://dockerapi")
