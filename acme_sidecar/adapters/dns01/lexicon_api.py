"""Provider APIs (PowerDNS, Cloudflare, deSEC, DigitalOcean, OVH) through dns-lexicon.

The provider class is loaded by name and given the zone we found by SOA: lexicon's ``Client``
would guess the zone itself (from the public suffix list, downloaded, or the system resolver),
which a private zone or a delegated ``_acme-challenge`` defeats. One provider object per call
(lexicon caches zone data in it); calls to one host are serialized, so two orders never
rewrite the same record set at once. May touch: the provider's HTTPS API.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

import requests
from lexicon._private.discovery import load_provider_module
from lexicon.config import ConfigResolver

from acme_sidecar.adapters.dns01.base import DnsUpdateError
from acme_sidecar.config.dns01 import LexiconConf
from acme_sidecar.core.values import scrub

API_DEADLINE = 60.0  # seconds one call of a provider API may take in all
HUNG_WAIT = 30.0  # seconds the next call waits for a call given up at API_DEADLINE to end

# the acme.sh variable that holds each provider's credential, for the hint of a 401/403
_CREDENTIAL = {
    "dns_pdns": "PDNS_Token",
    "dns_cf": "CF_Token (or CF_Key with CF_Email)",
    "dns_desec": "DEDYN_TOKEN",
    "dns_dgon": "DO_API_KEY",
    "dns_ovh": "OVH_AK, OVH_AS and OVH_CK",
}


# requests' own refusals of what it was asked to send: their text echoes the header or URL,
# which holds the credential (a token with a space or a line break, as written in the file)
_REFUSED_INPUT = (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL)


def _quiet(exc: BaseException, secrets: Iterable[str]) -> str:
    """An exception as one short line for a log line: every configured value (all may be
    secrets) taken out, in any form; for requests' refusals of its input, only the type."""
    if isinstance(exc, _REFUSED_INPUT):
        return (
            f"{type(exc).__name__} (a value in the DNS-01 file cannot be sent over HTTP: "
            "a space at its start or end, a line break, or another character it may not hold)"
        )
    return scrub(f"{type(exc).__name__}: {str(exc)[:300]}", secrets)[:300]


class LexiconProvider:
    """One API account of one provider, from a section of the DNS-01 file."""

    def __init__(self, conf: LexiconConf) -> None:
        self._conf = conf
        self._lock = threading.Lock()
        self._hung: threading.Thread | None = None  # a call given up that may still write
        module: Any = load_provider_module(conf.provider)
        self._class = module.Provider
        self._secrets = tuple(conf.options.values())  # taken out of every error text

    @property
    def label(self) -> str:
        """``dns_pdns (lexicon powerdns)``."""
        return f"{self._conf.plugin} (lexicon {self._conf.provider})"

    def add_txt(self, zone: str, records: Mapping[str, tuple[str, ...]]) -> None:
        """Create each TXT value (lexicon keeps the record set's other values)."""
        pairs = [(n, v) for n, values in records.items() for v in values]
        self._call(zone, lambda p: [p.create_record("TXT", n, v) for n, v in pairs], "add")

    def remove_txt(self, zone: str, records: Mapping[str, tuple[str, ...]]) -> None:
        """Delete each TXT value."""
        pairs = [(n, v) for n, values in records.items() for v in values]
        self._call(zone, lambda p: [p.delete_record(None, "TXT", n, v) for n, v in pairs], "remove")

    def _provider(self, zone: str) -> Any:
        config = ConfigResolver().with_dict(  # type: ignore[no-untyped-call]
            {
                "provider_name": self._conf.provider,
                "domain": zone,
                "ttl": self._conf.ttl,
                self._conf.provider: dict(self._conf.options),
            }
        )
        return self._class(config)

    def _call(self, zone: str, action: Any, what: str) -> None:
        """Run ``action`` on a fresh provider within ``API_DEADLINE`` seconds: lexicon's HTTP
        calls have no timeout of their own, so the call runs in a daemon thread and a hung API
        is given up (a transient failure) instead of holding the order for ever. The next
        call (the removal after a failure) first waits up to ``HUNG_WAIT`` seconds for such a
        call to end, so that a record it creates late is removed rather than left behind."""
        with self._lock:
            if self._hung is not None:
                self._hung.join(HUNG_WAIT)
                self._hung = None
            failure: list[BaseException] = []
            done = threading.Event()

            def work() -> None:
                try:
                    self._run(zone, action, what)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                    failure.append(exc)
                finally:
                    done.set()

            thread = threading.Thread(target=work, name=f"dns-api-{zone}", daemon=True)
            thread.start()
            if not done.wait(API_DEADLINE):
                self._hung = thread
                raise DnsUpdateError(
                    f"{self.label} did not answer within {API_DEADLINE:.0f}s when asked to "
                    f"{what} a TXT record in {zone}",
                    transient=True,
                )
            if failure:
                raise failure[0]

    def _run(self, zone: str, action: Any, what: str) -> None:
        """``action`` on a fresh provider; every failure as one ``DnsUpdateError``."""
        try:
            provider = self._provider(zone)
            provider.authenticate()
            try:
                action(provider)
            finally:
                provider.cleanup()
        except requests.HTTPError as exc:
            raise self._http_error(exc, zone, what) from exc
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise DnsUpdateError(
                f"{self.label} cannot be reached: {_quiet(exc, self._secrets)}", transient=True
            ) from exc
        except Exception as exc:  # lexicon raises plain Exception for its own refusals
            raise DnsUpdateError(
                f"{self.label} could not {what} the TXT record in {zone}: "
                f"{_quiet(exc, self._secrets)}"
            ) from exc

    def _http_error(self, exc: requests.HTTPError, zone: str, what: str) -> DnsUpdateError:
        status = exc.response.status_code if exc.response is not None else 0
        reason = exc.response.reason if exc.response is not None else ""
        head = f"{self.label} answered {status} {reason}".rstrip()
        if status in (401, 403):
            credential = _CREDENTIAL.get(self._conf.plugin, "the credentials")
            return DnsUpdateError(f"{head}: check {credential} in the DNS-01 file")
        if status == 404 or status == 422:
            return DnsUpdateError(f"{head} for zone {zone}: does this account serve {zone}?")
        return DnsUpdateError(
            f"{head} when asked to {what} a TXT record in {zone}", transient=status >= 500
        )
