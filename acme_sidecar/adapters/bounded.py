"""Bounded HTTP: a request that ends within its deadline and reads at most its cap.

A per-read timeout alone cannot bound a request: a server that sends one byte every two seconds
never trips it, in the status line, the headers or the body. So a ``Watchdog`` shuts the
request's sockets down when the deadline passes, whatever phase the request is in (connect,
TLS, headers, body), and ``read_capped`` reads the body in chunks, never more than the cap.
A session from ``watched_session`` registers its sockets with the current watchdog, both new
ones and pooled ones taken up again, so a kept-alive connection is bounded too.

``send`` is one such request on a watched session; the ACME network, ARI and dockerapi use it.
``http_probe.fetch`` (self-check, IP detection, webhook) uses the watchdog and the reader
directly. May touch: the network, through the session it is given.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_CHUNK = 16 * 1024
MiB = 1024 * 1024


class OutOfBounds(Exception):
    """A request ran past its deadline or its answer past its cap; the message says which
    and never holds the URL (the caller names the component and the URL)."""


class Watchdog:
    """Shuts every socket it watches down once ``seconds`` have passed."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self.end = clock() + seconds
        self.fired = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        """Seconds until the deadline (negative after it)."""
        return self.end - self._clock()

    @property
    def over(self) -> bool:
        """Whether the deadline has passed."""
        return self.fired or self.left() <= 0

    def late(self) -> OutOfBounds:
        """The error of a request cut off at this deadline."""
        return OutOfBounds(f"no complete answer within {self.seconds:g}s")

    def watch(self, sock: socket.socket) -> None:
        """Shut ``sock`` down at the deadline (at once if it has passed)."""
        with self._lock:
            self._socks.append(sock)
            if self.fired:
                _shutdown(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._socks:
                _shutdown(sock)

    def cancel(self) -> None:
        """Stop the timer, wait for its thread to end, and forget the sockets."""
        self._timer.cancel()
        self._timer.join()
        with self._lock:
            self._socks.clear()


def _shutdown(sock: socket.socket) -> None:
    # socket.socket's own shutdown: an SSLSocket's would drop its TLS state under the reader
    with contextlib.suppress(OSError):  # already closed
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


_WATCHDOG: ContextVar[Watchdog | None] = ContextVar("acme_sidecar_http_watchdog", default=None)


@contextlib.contextmanager
def watching(deadline: float, clock: Callable[[], float] = time.monotonic) -> Iterator[Watchdog]:
    """A watchdog for the requests of this thread (and context) until the block ends."""
    watchdog = Watchdog(deadline, clock)
    token = _WATCHDOG.set(watchdog)
    try:
        yield watchdog
    finally:
        _WATCHDOG.reset(token)
        watchdog.cancel()


def _register(sock: Any) -> None:
    watchdog = _WATCHDOG.get()
    if watchdog is not None and isinstance(sock, socket.socket):
        watchdog.watch(sock)


class _WatchedConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _register(sock)
        return sock


class _WatchedTlsConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _register(sock)
        return sock


class _WatchedPool(HTTPConnectionPool):
    ConnectionCls = _WatchedConnection

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        _register(getattr(conn, "sock", None))  # a kept-alive connection taken up again
        return conn


class _WatchedTlsPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedTlsConnection

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        _register(getattr(conn, "sock", None))
        return conn


_POOLS: dict[str, type[HTTPConnectionPool]] = {"http": _WatchedPool, "https": _WatchedTlsPool}


class WatchedAdapter(HTTPAdapter):
    """requests' adapter, with connections whose sockets the current watchdog can shut."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, urllib3.PoolManager):
            manager.pool_classes_by_scheme = _POOLS
        return manager


def watch_session(session: requests.Session) -> requests.Session:
    """Mount a ``WatchedAdapter`` (no retries) on ``session`` for http and https."""
    adapter = WatchedAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def watched_session(*, trust_env: bool = True) -> requests.Session:
    """A new session whose requests a watchdog can bound."""
    session = requests.Session()
    session.trust_env = trust_env
    return watch_session(session)


def read_capped(response: requests.Response, cap: int, watchdog: Watchdog) -> bytes:
    """At most ``cap`` bytes of the body, in chunks (``cap=0``: none is read).

    Raises ``OutOfBounds`` past the deadline or the cap, and ``requests.ConnectionError``
    when the answer broke off. Closing the response afterwards drops what was not read.
    """
    if cap <= 0:
        return b""
    body = bytearray()
    while len(body) <= cap:
        try:
            chunk = response.raw.read(min(_CHUNK, cap + 1 - len(body)), decode_content=True)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if watchdog.fired:
                raise watchdog.late() from exc
            raise requests.ConnectionError(f"the answer broke off ({type(exc).__name__})") from exc
        if watchdog.over:
            raise watchdog.late()
        if not chunk:
            return bytes(body)
        body += chunk
    raise OutOfBounds(f"the answer is longer than {cap} bytes")


Cap = int | Callable[[Mapping[str, str]], int]


def _body(response: requests.Response, method: str, cap: Cap, watchdog: Watchdog) -> bytes:
    if watchdog.over:  # cut off in the headers: http.client took EOF as their end
        raise watchdog.late()
    limit = cap(response.headers) if callable(cap) else cap
    return read_capped(response, limit if method != "HEAD" else 0, watchdog)


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    deadline: float,
    cap: Cap,
    **kwargs: Any,
) -> requests.Response:
    """``session.request(method, url, ...)`` ended within ``deadline`` seconds, its body (at
    most ``cap`` bytes, or ``cap(headers)``) read: ``response.content`` holds it.

    Redirects are not followed. Raises ``OutOfBounds`` past the deadline or the cap, and
    requests' own errors (``ConnectionError``, ``SSLError``...) as the session raised them.
    ``session`` must have a ``WatchedAdapter`` mounted (``watch_session``).
    """
    headers = {"Accept-Encoding": "identity", **(kwargs.pop("headers", None) or {})}
    kwargs.pop("timeout", None)
    with watching(deadline) as watchdog:
        left = max(watchdog.left(), 0.001)
        try:
            response = session.request(
                method,
                url,
                headers=headers,
                timeout=(left, left),
                stream=True,
                allow_redirects=False,
                **kwargs,
            )
        except requests.RequestException as exc:
            if watchdog.over:
                raise watchdog.late() from exc
            raise
        try:
            body = _body(response, method, cap, watchdog)
        except BaseException:
            response.close()
            raise
    response._content = body
    response._content_consumed = True  # type: ignore[attr-defined]  # requests' own flag
    response.close()  # the body is read: the connection goes back to the pool
    return response
