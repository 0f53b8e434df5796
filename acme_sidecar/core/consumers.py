"""Consumers: what each consumer of the volume needs to serve a change. Pure, no I/O.

mailcow's consumers read the volume differently (reference note on mailcow's dockerapi):

- Postfix reads the top-level pair (``smtpd_tls_cert_file``) again on ``postfix reload``; its
  SNI answers come from ``sni.map``, which ``postmap -F`` fills at container start with the
  *contents* of every certificate directory (the hostname's included). A changed directory
  needs the map rebuilt: ``postmap -F`` then ``postfix reload`` where commands can be run in
  the container (the Docker socket), a restart through mailcow's dockerapi (no ``postmap``).
- Dovecot and nginx re-read the files of the certificates they know on reload.
- All three build their SNI configuration at start: a directory or name added or removed
  needs a restart.

``reactions_by_kind`` turns what changed into one reaction per consumer kind; ``reactions``
maps the compose services onto kinds (by a word in the service name) and leaves out the ones
with nothing to do.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Literal

ProbeKind = Literal["smtp", "imap", "https"]  # how a TLS endpoint is spoken to when verified


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One TLS listener of one consumer, verified after a deploy."""

    service: str
    kind: ProbeKind
    host: str
    port: int


class ConsumerKind(Enum):
    """What a compose service is, found by a word in its name."""

    POSTFIX = "postfix"
    DOVECOT = "dovecot"
    NGINX = "nginx"
    OTHER = "other"  # no known way to reload it: restarted whenever anything changed


class Act(Enum):
    """What is done to one consumer."""

    NONE = "none"
    RELOAD = "reload"
    REBUILD = "rebuild-map-and-reload"  # postmap -F, then postfix reload (Postfix only)
    RESTART = "restart"


@dataclass(frozen=True, slots=True)
class Change:
    """What an owed deploy changed in the volume."""

    default: bool = False  # the top-level cert.pem/key.pem were written
    dirs: frozenset[str] = frozenset()  # certificate directories whose contents were written
    layout: bool = False  # a directory added or removed, or a name moved between directories

    @property
    def any(self) -> bool:
        """Whether anything a consumer serves changed."""
        return self.default or bool(self.dirs) or self.layout


@dataclass(frozen=True, slots=True)
class Reaction:
    """One consumer's action and the reason logged with it."""

    act: Act
    reason: str


NOTHING = Reaction(Act.NONE, "nothing it serves changed")
LAYOUT = "a certificate directory or name was added or removed; {what} at start"


def kind_of(service: str) -> ConsumerKind:
    """The consumer kind of a compose service: the first kind whose word is in its name."""
    return next(
        (k for k in ConsumerKind if k is not ConsumerKind.OTHER and k.value in service),
        ConsumerKind.OTHER,
    )


def _listed(dirs: Collection[str]) -> str:
    shown = sorted(dirs)
    return ", ".join(shown[:3]) + (f" and {len(shown) - 3} more" if len(shown) > 3 else "")


def _postfix(change: Change, can_rebuild_map: bool) -> Reaction:
    if change.layout:
        return Reaction(Act.RESTART, LAYOUT.format(what="sni.map is built"))
    if change.dirs:
        held = f"certificate contents changed ({_listed(change.dirs)}); sni.map holds copies"
        if can_rebuild_map:
            return Reaction(Act.REBUILD, held + " (postmap -F)")
        return Reaction(Act.RESTART, held + " and mailcow's dockerapi cannot run postmap")
    if change.default:
        return Reaction(Act.RELOAD, "the default certificate changed")
    return NOTHING


def _rereads(change: Change, what: str) -> Reaction:
    if change.layout:
        return Reaction(Act.RESTART, LAYOUT.format(what=what))
    if change.dirs or change.default:
        return Reaction(Act.RELOAD, "certificate contents changed")
    return NOTHING


def reactions_by_kind(change: Change, *, can_rebuild_map: bool) -> dict[ConsumerKind, Reaction]:
    """One action per consumer kind for ``change``. ``can_rebuild_map``: commands can be run
    in the containers (the Docker socket), so Postfix's ``sni.map`` can be rebuilt in place."""
    other = Reaction(Act.RESTART, "no known reload for this service") if change.any else NOTHING
    return {
        ConsumerKind.POSTFIX: _postfix(change, can_rebuild_map),
        ConsumerKind.DOVECOT: _rereads(change, "its SNI configuration is built"),
        ConsumerKind.NGINX: _rereads(change, "its server blocks are rendered"),
        ConsumerKind.OTHER: other,
    }


def reactions(
    services: Iterable[str], change: Change, *, can_rebuild_map: bool
) -> dict[str, Reaction]:
    """The action of every service that has something to do (``Act.NONE`` left out)."""
    table = reactions_by_kind(change, can_rebuild_map=can_rebuild_map)
    chosen = {s: table[kind_of(s)] for s in services}
    return {s: a for s, a in chosen.items() if a.act is not Act.NONE}


def restart_all(services: Iterable[str], reason: str) -> Mapping[str, Reaction]:
    """A restart of each of ``services`` with one reason (the fallback after a stale check)."""
    return {s: Reaction(Act.RESTART, reason) for s in services}
