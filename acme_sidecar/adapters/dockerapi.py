"""Apply through mailcow's dockerapi: reload or restart the consumers without the Docker socket.

mailcow's ``dockerapi-mailcow`` container is the only one holding the Docker socket; on the
mailcow network it answers plain HTTPS calls (see the reference note on its contract):
``GET /containers/json`` (inspect documents keyed by container Id), ``POST
/containers/<id>/restart`` and ``POST /containers/<id>/exec`` with ``{"cmd": "reload", "task":
"postfix"|"dovecot"|"nginx"}``. Every answer is HTTP 200 with ``{"type": "success"|"danger",
"msg": ...}``; ``danger`` is a failure. Containers are matched exactly on their compose labels,
as ``adapters/docker.py`` does; a failed reload falls back to a restart. There is no exec of
other commands, so Postfix's ``sni.map`` cannot be rebuilt here (``can_rebuild_map`` is false:
``core.consumers`` restarts Postfix instead). ``adapters/docker_way.py`` picks this adapter or
the Docker socket's for ``ACME_DOCKER_API``, at each deploy.
Every call ends within ``DEADLINE`` seconds in all and reads at most ``CAP`` bytes
(``adapters.bounded``); redirects are not followed and no proxy from the environment is used.
May touch: the dockerapi over HTTP(S).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self

import requests
import structlog
from urllib3.exceptions import InsecureRequestWarning

from acme_sidecar.adapters.bounded import OutOfBounds, send, watched_session
from acme_sidecar.adapters.docker import (
    PROJECT_LABEL,
    SERVICE_LABEL,
    log_done,
    log_not_found,
    log_restarted,
)
from acme_sidecar.core.consumers import Act, Reaction
from acme_sidecar.core.errors import ServiceError

log = structlog.get_logger(__name__)

# the reload task of each consumer, found by a word in its compose service name
RELOAD_TASKS: tuple[str, ...] = ("postfix", "dovecot", "nginx")
DEADLINE = 60.0  # seconds for one call, all of it (a restart waits for the container to stop)
CAP = 4 * 1024 * 1024  # bytes of an answer (the listing of mailcow's containers is ~0.5 MiB)


def reload_task(service: str) -> str | None:
    """The dockerapi reload task of ``service``; ``None`` means restart it."""
    return next((task for task in RELOAD_TASKS if task in service), None)


class DockerapiServices:
    """Compose services of one project, driven through mailcow's dockerapi at ``url``."""

    can_rebuild_map = False  # dockerapi only knows its reload tasks: no postmap

    def __init__(
        self,
        project: str,
        services: Sequence[str],
        *,
        url: str,
        session_factory: Callable[[], requests.Session] | None = None,
    ) -> None:
        # compose lower-cases project names when it sets the label
        self.project = project.lower()
        self.services = tuple(services)
        self.url = url.rstrip("/")
        # the dockerapi is on the mailcow network: an admin's HTTP(S)_PROXY is not for it
        self._session_factory = session_factory or (lambda: watched_session(trust_env=False))

    def way(self) -> Self:
        return self

    def _call(self, session: requests.Session, method: str, path: str, **kw: Any) -> Any:
        """One call; its JSON answer. Every failure of the transport is a ``ServiceError``."""
        url = self.url + path
        try:
            # dockerapi makes a new self-signed certificate at every start: there is nothing
            # to pin or to verify against, so it is not verified (curl --insecure, as
            # acme-mailcow does). Being on the mailcow network is its only permission.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", InsecureRequestWarning)
                response = send(
                    session, method, url, deadline=DEADLINE, cap=CAP, verify=False, **kw
                )
            response.raise_for_status()
            return response.json()
        except (requests.RequestException, OutOfBounds, ValueError) as exc:
            raise ServiceError(f"mailcow dockerapi at {url}: {exc}") from exc

    def _command(self, session: requests.Session, path: str, body: Any = None) -> str | None:
        """POST ``path``; ``None`` on success, else the message of the ``danger`` answer."""
        answer = self._call(session, "POST", path, json=body)
        if isinstance(answer, dict) and answer.get("type") == "success":
            return None
        msg = answer.get("msg") if isinstance(answer, dict) else answer
        return str(msg)[-200:]

    def _listing(self, session: requests.Session) -> dict[str, Any]:
        """Every container dockerapi knows: inspect documents keyed by Id."""
        listing = self._call(session, "GET", "/containers/json")
        if not isinstance(listing, dict):
            raise ServiceError(f"mailcow dockerapi at {self.url}/containers/json: not a listing")
        return listing

    def _containers(self, listing: dict[str, Any], service: str) -> list[tuple[str, str]]:
        """``(id, name)`` of the running containers of ``service`` in the project."""
        found = []
        for cid, doc in listing.items():
            if not isinstance(doc, dict) or not str(cid).isalnum():
                continue
            labels = (doc.get("Config") or {}).get("Labels") or {}
            running = (doc.get("State") or {}).get("Running") is True
            if (
                running
                and labels.get(PROJECT_LABEL) == self.project
                and labels.get(SERVICE_LABEL) == service
            ):
                found.append((str(cid), str(doc.get("Name", cid)).lstrip("/")))
        return found

    def apply(self, actions: Mapping[str, Reaction]) -> dict[str, str]:
        """Do each service's action (a failed reload restarts instead)."""
        todo = {s: a for s, a in actions.items() if a.act is not Act.NONE}
        if not todo:
            return {}
        done: dict[str, str] = {}
        failed: list[str] = []
        with self._session_factory() as session:
            listing = self._listing(session)
            for service, action in todo.items():
                containers = self._containers(listing, service)
                if not containers:
                    log_not_found(service, self.project)
                for cid, name in containers:
                    try:
                        done[service] = self._apply_one(session, cid, name, service, action)
                    except ServiceError as exc:
                        failed.append(service)
                        log.error("service.failed", service=service, error=str(exc))
        if failed:
            raise ServiceError("could not reload or restart " + ", ".join(failed))
        return done

    def _apply_one(
        self, session: requests.Session, cid: str, name: str, service: str, action: Reaction
    ) -> str:
        if action.act is Act.REBUILD:  # not chosen for this way; restarting is what works
            action = Reaction(Act.RESTART, action.reason + "; dockerapi cannot run postmap")
        task = reload_task(service)
        if action.act is Act.RELOAD and task is not None:
            body = {"cmd": "reload", "task": task}
            error = self._command(session, f"/containers/{cid}/exec", body)
            if error is None:
                log_done(service, name, action, f"dockerapi reload {task}")
                return "reloaded"
            log.warning(
                "service.reload_failed",
                service=service,
                container=name,
                command=f"dockerapi reload {task}",
                output=error,
                action="restarting instead",
            )
        error = self._command(session, f"/containers/{cid}/restart")
        if error is not None:
            raise ServiceError(f"mailcow dockerapi could not restart {name}: {error}")
        log_restarted(service, name, action)
        return "restarted"
