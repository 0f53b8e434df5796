"""Challenge responders: how an authorization is answered, behind one small seam.

A ``ChallengeResponder`` picks a challenge of an authorization and notes or puts the answer
where the CA will look (``prepare``, once per authorization), makes sure all of them can be
seen (``ready``, once per order, before any challenge is answered) and removes them again
when the order is done (``cleanup``, after success and failure). One responder serves one
order. ``Http01Webroot`` answers HTTP-01 through the shared webroot; DNS-01 is
``adapters.dns01.responder``. May touch: files in the webroot only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from acme import challenges, messages
from josepy.jwk import JWK

from acme_sidecar.core.errors import IssueError, NamesRejected


@dataclass(frozen=True, slots=True)
class Answer:
    """The challenge chosen for an authorization and the response to send for it."""

    challenge: messages.ChallengeBody
    response: challenges.ChallengeResponse


class ChallengeResponder(Protocol):
    """Answers the challenges of one order."""

    def prepare(self, authz: messages.AuthorizationResource, account_key: JWK) -> Answer:
        """Make the CA's validation of ``authz`` succeed; raise ``NamesRejected`` for a name
        this responder cannot answer."""

    def ready(self) -> None:
        """Called once after every ``prepare`` of the order, before the challenges are
        answered: publish and wait until the CA can see the answers; raise ``NamesRejected``
        for the names whose answer cannot be seen."""

    def cleanup(self) -> None:
        """Remove whatever ``prepare`` put in place; never raises."""


class Http01Webroot:
    """HTTP-01: the key authorization as a file named by the token in ``webroot``."""

    def __init__(self, webroot: Path) -> None:
        self._webroot = webroot
        self._written: list[Path] = []

    def prepare(self, authz: messages.AuthorizationResource, account_key: JWK) -> Answer:
        """Write the challenge file for ``authz`` (mode 0644, nginx reads it)."""
        name = authz.body.identifier.value
        for challb in authz.body.challenges:
            if isinstance(challb.chall, challenges.HTTP01):
                response, validation = challb.response_and_validation(account_key)
                token = str(challb.chall.encode("token"))
                if not token or "/" in token or token.startswith("."):
                    raise NamesRejected(
                        f"the CA sent an unusable http-01 token for {name}",
                        failed_names={name: "unusable http-01 token"},
                    )
                path = self._webroot / token
                self._written.append(path)
                try:
                    self._webroot.mkdir(parents=True, exist_ok=True)
                    path.write_text(validation)
                    path.chmod(0o644)
                except OSError as exc:
                    raise IssueError(f"cannot write the challenge file {path}: {exc}") from exc
                return Answer(challb, response)
        raise NamesRejected(
            f"the CA offered no http-01 challenge for {name}",
            failed_names={name: "no http-01 challenge offered"},
        )

    def ready(self) -> None:
        """Nothing to wait for: the files are in place once written."""

    def cleanup(self) -> None:
        """Remove every challenge file this responder wrote."""
        for path in self._written:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                continue
        self._written.clear()
