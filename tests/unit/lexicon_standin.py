"""A lexicon provider stand-in, loaded by ``lexicon_call`` in its child process.

Its option ``mode`` says what it does: ``ok`` (writes ``created``/``deleted`` lines into the
file ``log``), ``hang`` (writes its pid, argv and environment values into ``log``, then blocks for
ever), ``denied``
(answers like an API refusing the token: HTTP 401), ``refusing`` (an error whose text holds
its ``auth_token``, as written and URL-quoted).
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests


class Provider:
    """Acts as its ``mode`` option says."""

    def __init__(self, config: Any) -> None:
        name = config.resolve("lexicon:provider_name")
        self.mode = config.resolve(f"lexicon:{name}:mode")
        self.log = Path(config.resolve(f"lexicon:{name}:log") or "/dev/null")
        self.token = str(config.resolve(f"lexicon:{name}:auth_token"))

    def _write(self, line: str) -> None:
        with self.log.open("a") as file:
            file.write(line + "\n")

    def authenticate(self) -> None:
        if self.mode == "hang":
            self._write(f"{os.getpid()} {' '.join(sys.argv)} {' '.join(os.environ.values())}")
            threading.Event().wait()
        if self.mode == "refusing":
            raise Exception(  # noqa: TRY002 - lexicon raises plain Exception
                f"bad token {self.token!r} at https://api.example/?key={quote(self.token)}"
            )
        if self.mode == "denied":
            response = requests.Response()
            response.status_code, response.reason = 401, "Unauthorized"
            raise requests.HTTPError(response=response)

    def create_record(self, rtype: str, name: str, content: str) -> bool:
        self._write(f"created {rtype} {name} {content}")
        return True

    def delete_record(self, ident: object, rtype: str, name: str, content: str) -> bool:
        self._write(f"deleted {rtype} {name} {content}")
        return True

    def cleanup(self) -> None:
        pass
