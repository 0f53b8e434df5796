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
import heapq
import os
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


class _Deadlines:
    """One thread for every watchdog of the process: it fires each at its deadline.

    A timer thread started and joined per request waited for the GIL each time: under eight
    order threads that cost the 50-certificate cycle about a second. This thread is started at
    the first watchdog (and again in a forked child, which has no threads) and sleeps until the
    next deadline; a cancelled watchdog leaves the queue at once.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Watchdog]] = []
        self._seq = 0
        self._thread: threading.Thread | None = None

    def add(self, at: float, watchdog: Watchdog) -> None:
        """Fire ``watchdog`` at ``at`` (``time.monotonic``) unless it is cancelled first."""
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="bounded-deadlines", daemon=True
                )
                self._thread.start()
            self._seq += 1
            heapq.heappush(self._heap, (at, self._seq, watchdog))
            if self._heap[0][2] is watchdog:
                self._cond.notify()

    def cancel(self, watchdog: Watchdog) -> None:
        """Forget ``watchdog``: it will not fire."""
        with self._cond:
            self._heap = [entry for entry in self._heap if entry[2] is not watchdog]
            heapq.heapify(self._heap)

    def forget_all(self) -> None:
        """In a forked child: no thread runs, and the parent's deadlines are not the child's."""
        self._cond = threading.Condition()
        self._heap = []
        self._thread = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(wait)
                _, _, due = heapq.heappop(self._heap)
            due.fire()


class Watchdog:
    """Shuts every socket it watches down once ``seconds`` have passed."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self.end = clock() + seconds
        self.fired = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._done = False
        _DEADLINES.add(time.monotonic() + max(seconds, 0.0), self)

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

    def fire(self) -> None:
        """The deadline: shut every watched socket down (not after ``cancel``: a finished
        request's connection may be back in its pool, serving another)."""
        with self._lock:
            if self._done:
                return
            self.fired = True
            for sock in self._socks:
                _shutdown(sock)

    def cancel(self) -> None:
        """The request ended: the deadline no longer fires; forget the sockets."""
        _DEADLINES.cancel(self)
        with self._lock:
            self._done = True
            self._socks.clear()


def _shutdown(sock: socket.socket) -> None:
    # socket.socket's own shutdown: an SSLSocket's would drop its TLS state under the reader
    with contextlib.suppress(OSError):  # already closed
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


_DEADLINES = _Deadlines()
os.register_at_fork(after_in_child=_DEADLINES.forget_all)

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
