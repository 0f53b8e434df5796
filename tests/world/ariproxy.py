"""A CA whose renewal windows the test chooses: the fault proxy in front of Pebble, recording
the payload of every newOrder request and answering ``renewalInfo`` with the window the test's
``window_for`` gives for a CertID (None: Pebble's own answer passes through). With ``ari``
False it is a CA without ARI: its directory names no ``renewalInfo``.

Pebble 2.6 suggests a window of ±24 hours around two thirds of a certificate's life, which for
the short certificates of a test says nothing; its "renew now" window for a revoked
certificate is passed through unchanged when the test wants Pebble's own answer.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .faultproxy import FaultProxy

RENEWAL_INFO = "/renewalInfo/"
NEW_ORDER = "/order-plz"
DIRECTORY = "/dir"


def _payload(body: bytes) -> dict[str, Any]:
    """The JSON payload of a JWS request body (flattened JSON serialisation)."""
    try:
        jws = json.loads(body)
        data = jws["payload"]
        decoded: dict[str, Any] = json.loads(
            base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        )
    except (ValueError, KeyError, TypeError):
        return {}
    return decoded


class AriProxy(FaultProxy):
    """``FaultProxy`` with chosen renewal windows and a record of newOrder payloads."""

    window_for: Callable[[str], tuple[datetime, datetime] | None] = staticmethod(lambda cid: None)
    ari = True  # False: the directory names no renewalInfo (a CA without ARI)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.orders: list[tuple[int, dict[str, Any]]] = []  # (HTTP status, payload)
        self.windows_asked: list[tuple[str, str]] = []  # (CertID, "chosen" or "pebble")
        self._record = threading.Lock()

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        if method == "GET" and RENEWAL_INFO in path:
            cid = path.rsplit("/", 1)[-1]
            window = self.window_for(cid)
            with self._record:
                self.windows_asked.append((cid, "pebble" if window is None else "chosen"))
            if window is not None:
                start, end = (w.strftime("%Y-%m-%dT%H:%M:%SZ") for w in window)
                data = json.dumps({"suggestedWindow": {"start": start, "end": end}}).encode()
                return 200, [("Content-Type", "application/json"), ("Retry-After", "21600")], data
        status, answer_headers, data = super()._forward(method, path, headers, body)
        if method == "GET" and path == DIRECTORY and not self.ari:
            directory = json.loads(data)
            directory.pop("renewalInfo", None)
            data = json.dumps(directory).encode()
        if method == "POST" and path.endswith(NEW_ORDER):
            with self._record:
                self.orders.append((status, _payload(body)))
        return status, answer_headers, data
