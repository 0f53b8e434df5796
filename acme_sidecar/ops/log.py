"""Logging setup: structlog, human lines on a terminal, JSON otherwise, always to stderr.

Taps (``add_tap``) see every event before it is rendered, e.g. to copy it to mailcow's Redis
log (``mailcow_ui``); a tap must be quick and must not block, and what it raises is ignored.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, Literal

import structlog

Tap = Callable[[Mapping[str, Any]], None]
_taps: list[Tap] = []


def add_tap(tap: Tap) -> None:
    """Let ``tap`` see every log event from now on (the wiring calls this)."""
    if tap not in _taps:
        _taps.append(tap)


def remove_tap(tap: Tap) -> None:
    """Stop passing log events to ``tap``."""
    if tap in _taps:
        _taps.remove(tap)


def _run_taps(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: hand the event to every tap; a tap never breaks logging."""
    for tap in tuple(_taps):
        with contextlib.suppress(Exception):  # a broken tap must not lose the log line
            tap(event_dict)
    return event_dict


def configure(fmt: Literal["auto", "console", "json"] = "auto", *, tz: str = "") -> None:
    """Configure structlog once for the process; ``fmt`` is ``ACME_LOG_FORMAT``."""
    use_console = sys.stderr.isatty() if fmt == "auto" else fmt == "console"
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if use_console
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=not tz),
            _run_taps,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries log through stdlib logging; keep their noise out unless it is a warning.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
