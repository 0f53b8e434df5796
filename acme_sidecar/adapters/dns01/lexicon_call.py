"""One provider call of ``lexicon_api``, run in a child process the parent kills at its deadline.

lexicon's providers call ``requests`` without a timeout, so a provider API that accepts and
never answers holds a thread and a socket for ever; only a process can be ended from outside
whatever it blocks on (a read, a name lookup). ``python -m
acme_sidecar.adapters.dns01.lexicon_call`` reads one request as JSON on stdin (the credentials
come this way, never in argv or the environment), runs it on a fresh provider, and writes one
JSON line on stdout: ``{"ok": true}`` or ``{"ok": false, "message": ..., "transient": ...}``.
Every HTTP answer a provider reads here is capped at ``ANSWER_CAP`` bytes (this process does
nothing else, so ``requests.Session.send`` is wrapped for all of it). May touch: the
provider's HTTPS API.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from acme_sidecar.adapters.bounded import MiB, OutOfBounds, Watchdog, read_capped
from acme_sidecar.adapters.dns01.base import DnsUpdateError
from acme_sidecar.config.dns01_providers import PLUGINS
from acme_sidecar.core.values import scrub

ANSWER_CAP = 8 * MiB  # bytes of one provider answer (a zone of 10,000 records is ~2 MiB)


# requests' own refusals of what it was asked to send: their text echoes the header or URL,
# which holds the credential (a token with a space or a line break, as written in the file)
_REFUSED_INPUT = (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL)


def _quiet(exc: BaseException, secrets: Iterable[str]) -> str:
    """An exception as one short line for a log line: every configured value (all may be
    secrets) taken out, in any form; for requests' refusals of its input, only the type."""
    if isinstance(exc, _REFUSED_INPUT):
        return (
            f"{type(exc).__name__} (a DNS-01 credential value cannot be sent over HTTP: "
            "a space at its start or end, a line break, or another character it may not hold)"
        )
    return scrub(f"{type(exc).__name__}: {str(exc)[:300]}", secrets)[:300]


def _capping(watchdog: Watchdog) -> None:
    """Make every ``requests`` answer of this process read at most ``ANSWER_CAP`` bytes."""
    send = requests.Session.send

    def capped(self: requests.Session, request: requests.PreparedRequest, **kw: Any) -> Any:
        kw["stream"] = True
        response = send(self, request, **kw)
        try:
            body = read_capped(response, ANSWER_CAP, watchdog)
        except OutOfBounds as exc:
            response.close()
            host = urlsplit(request.url or "").hostname  # not the URL: it may hold a token
            raise OutOfBounds(f"{host}: {exc}") from exc
        response._content = body
        response._content_consumed = True  # type: ignore[attr-defined]  # requests' own flag
        return response

    requests.Session.send = capped  # type: ignore[method-assign]


def _provider(request: Mapping[str, Any]) -> Any:
    module = importlib.import_module(request["module"])
    config = importlib.import_module("lexicon.config").ConfigResolver()
    resolved = config.with_dict(
        {
            "provider_name": request["provider"],
            "domain": request["zone"],
            "ttl": request["ttl"],
            request["provider"]: dict(request["options"]),
        }
    )
    return module.Provider(resolved)


def run(request: Mapping[str, Any]) -> None:
    """The request's action on a fresh provider; every failure as one ``DnsUpdateError``."""
    label, zone, what = request["label"], request["zone"], request["what"]
    rtype = str(request.get("rtype", "TXT"))
    secrets = [str(v) for v in request["options"].values()]
    pairs = [(str(n), str(v)) for n, v in request["pairs"]]
    try:
        provider = _provider(request)
        provider.authenticate()
        try:
            for name, value in pairs:
                if what == "add":
                    provider.create_record(rtype, name, value)
                else:
                    provider.delete_record(None, rtype, name, value)
        finally:
            provider.cleanup()
    except requests.HTTPError as exc:
        raise _http_error(exc, request) from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise DnsUpdateError(
            f"{label} cannot be reached: {_quiet(exc, secrets)}", transient=True
        ) from exc
    except OutOfBounds as exc:
        raise DnsUpdateError(f"{label} at {exc}", transient=True) from exc
    except Exception as exc:  # lexicon raises plain Exception for its own refusals
        raise DnsUpdateError(
            f"{label} could not {what} the {rtype} record in {zone}: {_quiet(exc, secrets)}"
        ) from exc


def _http_error(exc: requests.HTTPError, request: Mapping[str, Any]) -> DnsUpdateError:
    label, zone, what = request["label"], request["zone"], request["what"]
    rtype = str(request.get("rtype", "TXT"))
    status = exc.response.status_code if exc.response is not None else 0
    reason = exc.response.reason if exc.response is not None else ""
    head = f"{label} answered {status} {reason}".rstrip()
    if status in (401, 403):
        plugin = PLUGINS.get(request["plugin"])
        credential = plugin.credentials if plugin is not None else "the credentials"
        return DnsUpdateError(
            f"{head}: check {credential} (the dns01.provider line at start says where each "
            "was read)"
        )
    if status == 404 or status == 422:
        return DnsUpdateError(f"{head} for zone {zone}: does this account serve {zone}?")
    return DnsUpdateError(
        f"{head} when asked to {what} a {rtype} record in {zone}", transient=status >= 500
    )


def main() -> int:
    """Read the request, run it, write the outcome; the exit code is 0 when it was written."""
    request = json.loads(sys.stdin.read())
    watchdog = Watchdog(float(request["deadline"]))  # the parent kills at the deadline anyway
    outcome: dict[str, object]
    try:
        _capping(watchdog)
        run(request)
    except DnsUpdateError as exc:
        outcome = {"ok": False, "message": str(exc), "transient": exc.transient}
    except Exception as exc:  # noqa: BLE001  # reported to the parent, which logs it
        secrets = [str(v) for v in request["options"].values()]
        message = f"{request['label']}: {_quiet(exc, secrets)}"
        outcome = {"ok": False, "message": message, "transient": False}
    else:
        outcome = {"ok": True}
    finally:
        watchdog.cancel()
    sys.stdout.write(json.dumps(outcome) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
