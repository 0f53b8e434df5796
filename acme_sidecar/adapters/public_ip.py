"""Public address detection as acme-mailcow does it: two sources, asked again a few times.

The configured source (``ACME_IPV4_DETECT_URL`` / ``ACME_IPV6_DETECT_URL``) is asked first;
when it is mailcow's default, acme-mailcow's second source is asked next. A round that gets no
address is tried again (tenacity: at most ``ATTEMPTS`` rounds and ``WITHIN`` seconds, with
jittered pauses); when every round failed, one ``ip.detect_failed`` line names each source and
why. May touch: the network, through ``http_probe.ask_public_ip`` (one bounded request each).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import structlog
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from acme_sidecar.adapters.http_probe import ask_public_ip
from acme_sidecar.core.values import mask_url

log = structlog.get_logger(__name__)

DEFAULT = {4: "http://ip4.mailcow.email", 6: "http://ip6.mailcow.email"}
SECOND = {4: "http://ip4.nevondo.com", 6: "http://ip6.nevondo.com"}  # acme-mailcow's other one
ATTEMPTS = 3  # rounds over the sources
WITHIN = 30.0  # seconds: no new round after this

Ask = Callable[[str, int], tuple[str | None, str]]


class _NoAddress(Exception):
    """No source answered with an address in this round."""


def sources(url: str, version: int) -> tuple[str, ...]:
    """The sources to ask: ``url`` (empty: none), and acme-mailcow's second one when ``url``
    is mailcow's default (an admin's own source is not backed by a third party)."""
    if not url:
        return ()
    return (url, SECOND[version]) if url == DEFAULT[version] else (url,)


def detect(
    urls: Sequence[str],
    version: int,
    *,
    ask: Ask = ask_public_ip,
    attempts: int = ATTEMPTS,
    within: float = WITHIN,
    sleep: Callable[[float], object] = time.sleep,
) -> str | None:
    """This server's public IPv``version`` address from the first source that gives one, in
    at most ``attempts`` rounds; ``None`` (one warning line) when none did."""
    if not urls:
        return None
    errors: dict[str, str] = {}

    def one_round() -> str:
        for url in urls:
            addr, error = ask(url, version)
            if addr is not None:
                return addr
            errors[mask_url(url)] = error[:120]
        raise _NoAddress

    def pause(seconds: float) -> None:
        sleep(seconds)  # the daemon's stop event's wait: a stop ends the pause

    retrying = Retrying(
        retry=retry_if_exception_type(_NoAddress),
        stop=stop_after_attempt(max(1, attempts)) | stop_after_delay(within),
        wait=wait_random_exponential(multiplier=1, max=8),
        sleep=pause,
    )
    try:
        return retrying(one_round)
    except RetryError as exc:
        rounds = exc.last_attempt.attempt_number
        log.warning(
            "ip.detect_failed",
            version=version,
            rounds=rounds,
            errors="; ".join(f"{url}: {error}" for url, error in errors.items()),
        )
        return None
