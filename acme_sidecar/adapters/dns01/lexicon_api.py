"""Provider APIs through dns-lexicon (the plugins of ``config/dns01_providers``).

The provider class is loaded by name and given the zone we found by SOA: lexicon's ``Client``
would guess the zone itself (from the public suffix list, downloaded, or the system resolver),
which a private zone or a delegated ``_acme-challenge`` defeats. One provider object per call
(lexicon caches zone data in it); calls to one host are serialized, so two orders never
rewrite the same record set at once.

Each call runs in a child process (``lexicon_call``) that is killed at ``API_DEADLINE``:
lexicon's HTTP calls have no timeout, and a thread blocked on an API that never answers cannot
be ended, nor its socket closed, from outside. Killing the process ends both, and a call given
up can write nothing afterwards. Each answer the provider reads is capped there
(``lexicon_call.ANSWER_CAP``). May touch: the provider's HTTPS API, through the child process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping

from lexicon._private.discovery import load_provider_module

from acme_sidecar.adapters.dns01.base import DnsUpdateError
from acme_sidecar.config.dns01 import LexiconConf
from acme_sidecar.core.values import scrub

API_DEADLINE = 60.0  # seconds one call of a provider API may take in all
_CALL = "acme_sidecar.adapters.dns01.lexicon_call"
_PROVIDERS = "lexicon._private.providers"


class LexiconProvider:
    """One API account of one provider, from a section of the DNS-01 file (the default one
    completed from the environment and acme.sh's account.conf).

    ``module`` is where the ``Provider`` class comes from: lexicon's module for the provider,
    or a stand-in of the tests."""

    def __init__(self, conf: LexiconConf, *, module: str | None = None) -> None:
        self._conf = conf
        self._lock = threading.Lock()
        if module is None:
            load_provider_module(conf.provider)  # an ImportError here is a setup problem
            module = f"{_PROVIDERS}.{conf.provider}"
        self._module = module
        self._secrets = tuple(conf.options.values())  # taken out of every error text

    @property
    def label(self) -> str:
        """``dns_pdns (lexicon powerdns)``."""
        return f"{self._conf.plugin} (lexicon {self._conf.provider})"

    def add_txt(self, zone: str, records: Mapping[str, tuple[str, ...]]) -> None:
        """Create each TXT value (lexicon keeps the record set's other values)."""
        self._call(zone, "TXT", records, "add", self._conf.ttl)

    def remove_txt(self, zone: str, records: Mapping[str, tuple[str, ...]]) -> None:
        """Delete each TXT value."""
        self._call(zone, "TXT", records, "remove", self._conf.ttl)

    def add_records(
        self, zone: str, rtype: str, records: Mapping[str, tuple[str, ...]], ttl: int
    ) -> None:
        """Create each ``rtype`` value, with ``ttl`` (where the provider's API takes one)."""
        self._call(zone, rtype, records, "add", ttl)

    def remove_records(self, zone: str, rtype: str, records: Mapping[str, tuple[str, ...]]) -> None:
        """Delete each ``rtype`` value."""
        self._call(zone, rtype, records, "remove", self._conf.ttl)

    def _call(
        self, zone: str, rtype: str, records: Mapping[str, tuple[str, ...]], what: str, ttl: int
    ) -> None:
        """Run the call in a child process, within ``API_DEADLINE`` seconds: a hung API is
        given up (a transient failure) and the child killed, its socket with it."""
        request = {
            "module": self._module,
            "provider": self._conf.provider,
            "plugin": self._conf.plugin,
            "label": self.label,
            "zone": zone,
            "ttl": ttl,
            "rtype": rtype,
            "options": dict(self._conf.options),
            "what": what,
            "pairs": [(n, v) for n, values in records.items() for v in values],
            "deadline": API_DEADLINE,
        }
        with self._lock:
            out = self._run(json.dumps(request).encode(), zone, f"{what} a {rtype} record")
        try:
            outcome = json.loads(out.decode(errors="replace").strip().splitlines()[-1])
            ok, message, transient = outcome["ok"], outcome.get("message"), outcome.get("transient")
        except (ValueError, IndexError, KeyError, TypeError, AttributeError):
            raise DnsUpdateError(
                f"{self.label}: the provider call ended without an answer", transient=True
            ) from None
        if not ok:  # the child scrubbed it already; once more, in case
            raise DnsUpdateError(scrub(str(message), self._secrets), transient=bool(transient))

    def _run(self, request: bytes, zone: str, what: str) -> bytes:
        """The child's output; killed (with anything it started) at the deadline."""
        try:
            child = subprocess.Popen(  # our own module, with this interpreter
                [sys.executable, "-P", "-m", _CALL],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # lexicon's log lines: the outcome comes on stdout
                start_new_session=True,
            )
        except OSError as exc:
            raise DnsUpdateError(
                f"{self.label}: cannot start the provider call: {exc}", transient=True
            ) from exc
        try:
            out, _ = child.communicate(request, timeout=API_DEADLINE)
        except subprocess.TimeoutExpired:
            _kill(child)
            raise DnsUpdateError(
                f"{self.label} did not answer within {API_DEADLINE:g}s when asked to "
                f"{what} in {zone}",
                transient=True,
            ) from None
        except BaseException:
            _kill(child)
            raise
        return out


def _kill(child: subprocess.Popen[bytes]) -> None:
    """Kill the child's process group and reap it; its pipes are closed."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.communicate()
