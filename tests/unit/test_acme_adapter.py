"""The ACME issuer driven by a fake CA behind the injected network object.

``FakeCA`` answers the requests ``AcmeNetwork`` would send with constructed ACME JSON (RFC 8555
shapes, no signature checks), so every fault the real CA cannot be made to produce on demand
(badNonce streaks, 5xx, rateLimited, authorizations still processing, a 10-year Retry-After,
garbage) is exercised through the real client code, parsing and translation included. The
certificate it sends is real (``fake_chain.Signer``, for the order's CSR), or ``answer``'s.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import JWASignature
from josepy.jwk import JWK
from structlog.testing import capture_logs

from acme_sidecar.adapters.acme import AcmeIssuer, AcmeNetwork
from acme_sidecar.adapters.acme.challenges import Answer
from acme_sidecar.adapters.acme.issuer import CA_DOWN_AFTER
from acme_sidecar.adapters.acme.session import BAD_NONCE_RETRIES
from acme_sidecar.core.errors import NamesRejected
from acme_sidecar.core.model import CertSpec, FailureKind, Issued, IssueFailure
from tests.unit.fake_chain import Dishonest, Signer

CA = "https://ca.test"
PREFIX = "urn:ietf:params:acme:error:"
Reply = tuple[int, object, dict[str, str]]


def pem_key() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def problem(status: int, code: str, detail: str = "", **headers: str) -> Reply:
    return status, {"type": PREFIX + code, "detail": detail or code}, headers


@dataclass
class Authz:
    """One authorization: its final outcome and how many polls it still reports processing."""

    name: str
    error: str | None = None  # None: valid; else the challenge error type
    lag: int = 0
    answered: bool = False

    def status(self) -> str:
        if not self.answered:
            return "pending"
        if self.lag > 0:
            return "processing"
        return "invalid" if self.error else "valid"


@dataclass
class FakeCA:
    """An in-memory ACME server; ``fault`` may answer any request instead of the CA."""

    outcomes: dict[str, tuple[str | None, int]] = field(default_factory=dict)
    fault: Callable[[str, str], Reply | None] = lambda method, path: None
    order_headers: dict[str, str] = field(default_factory=dict)
    seen: list[tuple[str, str]] = field(default_factory=list)
    new_orders: list[tuple[str, ...]] = field(default_factory=list)
    accounts: int = 0
    contacts: list[tuple[str, ...]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # the directory's meta
    name_limits: dict[str, int] = field(default_factory=dict)  # profile -> names per order
    order_expires: str | None = None  # the orders' "expires" (RFC 3339)
    order_profiles: list[str] = field(default_factory=list)
    account_payloads: list[dict[str, Any]] = field(default_factory=list)
    signer: Signer = field(default_factory=Signer)  # signs the leaf for the order's CSR
    answer: Dishonest | None = None  # a dishonest certificate instead of ``Signer.chain``
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    _authzs: dict[str, Authz] = field(default_factory=dict)
    _orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _nonce: int = 0

    def handle(self, method: str, url: str, data: str | None) -> requests.Response:
        path = url.removeprefix(CA)
        with self._lock:
            self.seen.append((method, path))
            reply = self.fault(method, path) or self._route(method, path, data)
            self._nonce += 1
            nonce = b64(f"nonce-{self._nonce}".encode())
        status, body, headers = reply
        response = requests.Response()
        response.status_code = status
        response.url = url
        response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
        content_type = "application/problem+json" if status >= 400 else "application/json"
        response.headers.update({"Content-Type": content_type, "Replay-Nonce": nonce, **headers})
        response.request = requests.Request(method, url).prepare()
        return response

    def _route(self, method: str, path: str, data: str | None) -> Reply:
        encoded = json.loads(data)["payload"] if data else ""
        payload = json.loads(base64.urlsafe_b64decode(_pad(encoded))) if encoded else None
        if path == "/dir":
            urls: dict[str, Any] = {k: f"{CA}/{k}" for k in ("newNonce", "newAccount", "newOrder")}
            return 200, urls | ({"meta": self.meta} if self.meta else {}), {}
        if path == "/newNonce":
            return 200, b"", {}
        if path == "/newAccount":
            self.accounts += 1
            self.contacts.append(tuple((payload or {}).get("contact", ())))
            self.account_payloads.append(payload or {})
            return 201, {"status": "valid"}, {"Location": f"{CA}/acct/{self.accounts}"}
        if path == "/newOrder":
            return self._new_order(payload)
        kind, _, ident = path.strip("/").partition("/")
        if kind == "authz":
            authz = self._authzs[ident]
            if authz.answered and authz.lag > 0:
                authz.lag -= 1
            return 200, self._authz_json(ident), {}
        if kind == "chall":
            self._authzs[ident].answered = True
            body = self._authz_json(ident)["challenges"][0]
            return 200, body, {"Link": f'<{CA}/authz/{ident}>;rel="up"'}
        if kind == "order":
            return 200, self._order_json(ident), self.order_headers
        if kind == "finalize":
            self._orders[ident]["finalized"] = True
            der = (payload or {})["csr"]
            self._orders[ident]["csr"] = base64.urlsafe_b64decode(_pad(der))
            return 200, self._order_json(ident), {}
        if kind == "cert":
            csr = x509.load_der_x509_csr(self._orders[ident]["csr"])
            answer = self.answer or (lambda signer, csr, now: signer.chain(csr, now))
            return 200, answer(self.signer, csr, self.clock()), {}
        return problem(404, "malformed", f"no route {path}")

    def _new_order(self, payload: Any) -> Reply:
        names = tuple(i["value"] for i in payload["identifiers"])
        profile = str(payload.get("profile", ""))
        limit = self.name_limits.get(profile)
        if limit is not None and len(names) > limit:
            return problem(400, "malformed", f"profile {profile} allows {limit} identifiers")
        self.order_profiles.append(profile)
        self.new_orders.append(names)
        oid = str(len(self.new_orders))
        ids = []
        for name in names:
            aid = f"{oid}-{name}"
            error, lag = self.outcomes.get(name, (None, 0))
            self._authzs[aid] = Authz(name, error, lag)
            ids.append(aid)
        self._orders[oid] = {"authzs": ids, "names": names, "finalized": False}
        return 201, self._order_json(oid), {"Location": f"{CA}/order/{oid}"}

    def _authz_json(self, aid: str) -> dict[str, Any]:
        authz = self._authzs[aid]
        status = authz.status()
        challenge: dict[str, Any] = {
            "type": "http-01",
            "url": f"{CA}/chall/{aid}",
            "token": b64(aid.encode().ljust(32, b"t")),
            "status": status if status != "processing" else "processing",
        }
        if status == "invalid":
            challenge["error"] = {"type": PREFIX + str(authz.error), "detail": f"{authz.error}!"}
        return {
            "identifier": {"type": "dns", "value": authz.name},
            "status": status,
            "challenges": [challenge],
        }

    def _order_json(self, oid: str) -> dict[str, Any]:
        order = self._orders[oid]
        states = [self._authzs[a].status() for a in order["authzs"]]
        status = "pending"
        if "invalid" in states:
            status = "invalid"
        elif all(s == "valid" for s in states):
            status = "valid" if order["finalized"] else "ready"
        body: dict[str, Any] = {
            "status": status,
            "identifiers": [{"type": "dns", "value": n} for n in order["names"]],
            "authorizations": [f"{CA}/authz/{a}" for a in order["authzs"]],
            "finalize": f"{CA}/finalize/{oid}",
        }
        if self.order_expires:
            body["expires"] = self.order_expires
        if status == "valid":
            body["certificate"] = f"{CA}/cert/{oid}"
        if status == "invalid":
            body["error"] = {"type": PREFIX + "unauthorized", "detail": "authorization failed"}
        return body


def _pad(text: str) -> str:
    return text + "=" * (-len(text) % 4)


class FakeNetwork(AcmeNetwork):
    """The real ``AcmeNetwork`` with its HTTP transport replaced by the fake CA."""

    def __init__(self, ca: FakeCA, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ca = ca

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        data: str | None = kwargs.get("data")
        return self.ca.handle(method, url, data)


class NullResponder:
    """Answers every challenge without writing a file (the fake CA does not look)."""

    def prepare(self, authz: messages.AuthorizationResource, account_key: JWK) -> Answer:
        challb = authz.body.challenges[0]
        return Answer(challb, challb.response(account_key))

    def ready(self) -> None:
        return None

    def cleanup(self) -> None:
        return None


def issuer(ca: FakeCA, tmp_path: Path, **kwargs: Any) -> AcmeIssuer:
    def network(
        key: JWK, alg: JWASignature, account: messages.RegistrationResource | None
    ) -> AcmeNetwork:
        return FakeNetwork(ca, key, alg=alg, account=account)

    return AcmeIssuer(
        directory_url=f"{CA}/dir",
        account_pem=pem_key(),
        webroot=tmp_path,
        network_factory=network,
        responders=NullResponder,
        **kwargs,
    )


def run(ca: FakeCA, tmp_path: Path, specs: list[CertSpec], **kwargs: Any) -> list[Any]:
    results = list(issuer(ca, tmp_path, **kwargs).issue_all(specs, pem_key()))
    assert sorted(r.spec.name for r in results) == sorted(s.name for s in specs)
    return results


SPEC = CertSpec("a.test", ("a.test", "b.test"))


def test_happy_path_issues_with_one_order(tmp_path: Path) -> None:
    """A plain order gives the chain, one new-order request and nothing dropped."""
    [result] = run(FakeCA(), tmp_path, [SPEC])
    assert isinstance(result, Issued) and b"BEGIN CERTIFICATE" in result.fullchain_pem
    assert result.orders == 1 and result.dropped == {} and result.failed_validations == ()


def bad_nonces(count: int) -> Callable[[str, str], Reply | None]:
    left = [count]

    def fault(method: str, path: str) -> Reply | None:
        if method == "POST" and left[0] > 0:
            left[0] -= 1
            return problem(400, "badNonce", "stale nonce")
        return None

    return fault


def test_bad_nonce_streak_is_retried(tmp_path: Path) -> None:
    """Ten badNonce answers in a row (the library alone retries once) still issue."""
    [result] = run(FakeCA(fault=bad_nonces(BAD_NONCE_RETRIES)), tmp_path, [SPEC])
    assert isinstance(result, Issued)


def test_bad_nonce_retry_uses_the_nonce_of_the_error_answer(tmp_path: Path) -> None:
    """A badNonce answer carries a fresh nonce; the retry uses it instead of asking newNonce."""
    ca = FakeCA(fault=bad_nonces(5))
    [result] = run(ca, tmp_path, [SPEC])
    assert isinstance(result, Issued)
    # one newNonce per network object (the session's and the worker's), none per retry
    assert ca.seen.count(("HEAD", "/newNonce")) == 2


def test_bad_nonce_without_end_is_systemic(tmp_path: Path) -> None:
    """A CA rejecting every nonce fails the spec as SYSTEMIC after a bounded number of tries."""
    ca = FakeCA(fault=bad_nonces(10**6))
    [result] = run(ca, tmp_path, [SPEC])
    assert isinstance(result, IssueFailure) and result.kind is FailureKind.SYSTEMIC
    assert "badNonce" in result.reason
    assert sum(1 for m, _ in ca.seen if m == "POST") == BAD_NONCE_RETRIES + 1


def test_server_errors_give_up_the_rest_after_ca_down_after(tmp_path: Path) -> None:
    """With newOrder answering 500, every spec fails SYSTEMIC and later ones are not ordered."""

    def fault(method: str, path: str) -> Reply | None:
        return problem(500, "serverInternal", "boom") if path == "/newOrder" else None

    ca = FakeCA(fault=fault)
    specs = [CertSpec(f"d{i}.test", (f"d{i}.test",)) for i in range(8)]
    results = run(ca, tmp_path, specs, parallel=1)
    assert all(isinstance(r, IssueFailure) and r.kind is FailureKind.SYSTEMIC for r in results)
    assert len(ca.new_orders) == 0 and ca.seen.count(("POST", "/newOrder")) == CA_DOWN_AFTER


def test_unreachable_directory_fails_every_spec_systemic(tmp_path: Path) -> None:
    """A CA that cannot be reached at all gives one SYSTEMIC failure per spec, no exception."""

    class Down(FakeCA):
        def handle(self, method: str, url: str, data: str | None) -> requests.Response:
            raise requests.ConnectionError("connection refused")

    results = run(Down(), tmp_path, [SPEC, CertSpec("c.test", ("c.test",))])
    assert all(isinstance(r, IssueFailure) and r.kind is FailureKind.SYSTEMIC for r in results)


def test_rate_limited_carries_retry_after(tmp_path: Path) -> None:
    """A rateLimited newOrder fails RATE_LIMITED with the CA's Retry-After."""

    def fault(method: str, path: str) -> Reply | None:
        if path == "/newOrder":
            return problem(429, "rateLimited", "too many", **{"Retry-After": "7200"})
        return None

    [result] = run(FakeCA(fault=fault), tmp_path, [SPEC])
    assert isinstance(result, IssueFailure) and result.kind is FailureKind.RATE_LIMITED
    assert result.retry_after is not None and result.orders == 1


def test_rejected_name_is_dropped_and_ordered_again(tmp_path: Path) -> None:
    """A name refused for the CA's own reason is dropped; the rest is ordered again."""
    ca = FakeCA(outcomes={"b.test": ("unauthorized", 0)})
    [result] = run(ca, tmp_path, [SPEC])
    assert isinstance(result, Issued) and result.spec.domains == ("a.test",)
    assert set(result.dropped) == {"b.test"} and "unauthorized" in result.dropped["b.test"]
    assert result.failed_validations == ("b.test",) and result.orders == 2
    assert ca.new_orders == [("a.test", "b.test"), ("a.test",)]


def test_every_name_rejected_is_rejected(tmp_path: Path) -> None:
    """When the CA refuses every name for its own reason, the failure is REJECTED."""
    ca = FakeCA(outcomes={"a.test": ("caa", 0), "b.test": ("incorrectResponse", 0)})
    [result] = run(ca, tmp_path, [SPEC])
    assert isinstance(result, IssueFailure) and result.kind is FailureKind.REJECTED
    assert set(result.rejected) == {"a.test", "b.test"}
    assert set(result.failed_validations) == {"a.test", "b.test"}


def test_transient_failure_is_systemic_and_not_ordered_again(tmp_path: Path) -> None:
    """A name the CA could not look up is not banned; the spec fails SYSTEMIC at once."""
    ca = FakeCA(outcomes={"a.test": ("unauthorized", 0), "b.test": ("dns", 0)})
    [result] = run(ca, tmp_path, [SPEC])
    assert isinstance(result, IssueFailure) and result.kind is FailureKind.SYSTEMIC
    assert set(result.rejected) == {"a.test"}
    assert set(result.failed_validations) == {"a.test", "b.test"}
    assert result.orders == 1 and len(ca.new_orders) == 1


def test_processing_authorization_is_polled_until_final(tmp_path: Path) -> None:
    """After the order turned invalid, a still-processing authorization is polled to its end."""
    ca = FakeCA(outcomes={"a.test": ("unauthorized", 0), "b.test": ("connection", 3)})
    [result] = run(ca, tmp_path, [SPEC])
    assert isinstance(result, IssueFailure) and result.kind is FailureKind.SYSTEMIC
    assert set(result.failed_validations) == {"a.test", "b.test"}
    assert ca.seen.count(("POST", "/authz/1-b.test")) >= 4


def test_forgotten_account_is_registered_again(tmp_path: Path) -> None:
    """accountDoesNotExist once: the same key is registered again and the order retried."""
    left = [1]

    def fault(method: str, path: str) -> Reply | None:
        if path == "/newOrder" and left[0]:
            left[0] -= 1
            return problem(400, "accountDoesNotExist", "who are you")
        return None

    ca = FakeCA(fault=fault)
    [result] = run(ca, tmp_path, [SPEC])
    assert isinstance(result, Issued) and ca.accounts == 2


def test_huge_retry_after_while_polling_is_a_deadline_not_an_overflow(tmp_path: Path) -> None:
    """A 10-year Retry-After on the order is capped; the order then fails at its deadline."""
    ca = FakeCA(
        outcomes={"a.test": (None, 1)},  # processing until polled: the order stays pending
        order_headers={"Retry-After": str(10 * 365 * 86400)},
    )
    [result] = run(ca, tmp_path, [SPEC], order_timeout=60)
    assert isinstance(result, IssueFailure) and result.kind is FailureKind.OTHER
    assert "deadline" in result.reason


def test_malformed_answer_is_other(tmp_path: Path) -> None:
    """Garbage where an order should be becomes an OTHER failure naming a malformed answer."""

    def fault(method: str, path: str) -> Reply | None:
        return (200, {"status": 42}, {}) if path.startswith("/order/") else None

    [result] = run(FakeCA(fault=fault), tmp_path, [SPEC])
    assert isinstance(result, IssueFailure) and result.kind is FailureKind.OTHER
    assert "malformed" in result.reason


def test_a_worker_bug_is_one_failure_and_one_log_line(tmp_path: Path) -> None:
    """An unexpected exception in a worker costs that spec only, logged as order.crashed."""

    class Broken(NullResponder):
        def prepare(self, authz: messages.AuthorizationResource, account_key: JWK) -> Answer:
            raise RuntimeError("bug")

    ca = FakeCA()
    acme = issuer(ca, tmp_path)
    acme._flow._responders = Broken
    with capture_logs() as logs:
        [result] = list(acme.issue_all([SPEC], pem_key()))
    assert isinstance(result, IssueFailure) and result.kind is FailureKind.OTHER
    crashed = [e for e in logs if e["event"] == "order.crashed"]
    assert len(crashed) == 1 and crashed[0]["error_type"] == "RuntimeError"


def test_the_order_timeout_starts_after_the_responder_is_ready(tmp_path: Path) -> None:
    """Review #5: a DNS-01 propagation wait (ready) longer than the order timeout does not
    leave the order without time to be polled: it is issued."""

    class Slow(NullResponder):
        def ready(self) -> None:
            time.sleep(0.6)

    polls: list[str] = []

    def pending_once(method: str, path: str) -> Reply | None:
        if path == "/order/1" and not polls:  # the first poll after the answers: pending
            polls.append(path)
            return 200, {**ca._order_json("1"), "status": "pending"}, {}
        return None

    ca = FakeCA(fault=pending_once)
    acme = issuer(ca, tmp_path, order_timeout=0.5)
    acme._flow._responders = Slow
    [result] = list(acme.issue_all([SPEC], pem_key()))
    assert isinstance(result, Issued), getattr(result, "reason", result)
    assert polls == ["/order/1"]


def test_dns01_not_prepared_is_not_called_a_ca_rejection(tmp_path: Path) -> None:
    """Review #9: when the responder cannot put any answer in place (no DNS-01 provider),
    the failure says DNS-01 could not be prepared, not that the CA rejected the names."""

    class NoProvider(NullResponder):
        def ready(self) -> None:
            why = "no usable DNS-01 provider"
            raise NamesRejected(
                "DNS-01 could not be prepared", failed_names=dict.fromkeys(SPEC.domains, why)
            )

    acme = issuer(FakeCA(), tmp_path)
    acme._flow._responders = NoProvider
    [result] = list(acme.issue_all([SPEC], pem_key()))
    assert isinstance(result, IssueFailure)
    assert result.reason.startswith("DNS-01 could not be prepared for any name: ")
    assert "the CA rejected" not in result.reason


def test_bad_certificate_key_fails_every_spec(tmp_path: Path) -> None:
    """A certificate key that does not parse fails each spec once, without an exception."""
    results = list(issuer(FakeCA(), tmp_path).issue_all([SPEC], b"not a key"))
    assert len(results) == 1 and isinstance(results[0], IssueFailure)


@pytest.mark.parametrize("parallel", [1, 4])
def test_one_result_per_spec_in_parallel(tmp_path: Path, parallel: int) -> None:
    """Many specs in parallel: each yields exactly one result, all issued."""
    specs = [CertSpec(f"p{i}.test", (f"p{i}.test", f"www.p{i}.test")) for i in range(12)]
    results = run(FakeCA(), tmp_path, specs, parallel=parallel)
    assert all(isinstance(r, Issued) for r in results)


@pytest.mark.parametrize(
    ("email", "sent"),
    [
        ("me@example.com", False),
        ("a@sub.example.org", False),
        ("x@mail.test", False),
        ("x@foo.example", False),
        ("x@localhost-ish.org", True),
        ("real@mailcow.email", True),
    ],
)
def test_reserved_contact_is_not_sent(tmp_path: Path, email: str, sent: bool) -> None:
    """A contact at a reserved domain is left out of the account, with one line saying why."""
    ca = FakeCA()
    with capture_logs() as logs:
        [result] = run(ca, tmp_path, [SPEC], email=email)
    assert isinstance(result, Issued)
    assert ca.contacts == [(f"mailto:{email}",) if sent else ()]
    skipped = [e for e in logs if e["event"] == "account.contact_skipped"]
    if sent:
        assert skipped == []
    else:
        assert len(skipped) == 1 and skipped[0]["email"] == email and skipped[0]["reason"]


def test_reserved_contact_is_not_sent_when_registering_again(tmp_path: Path) -> None:
    """The account registered again after accountDoesNotExist has no reserved contact either."""
    left = [1]

    def fault(method: str, path: str) -> Reply | None:
        if path == "/newOrder" and left[0]:
            left[0] -= 1
            return problem(400, "accountDoesNotExist", "who are you")
        return None

    ca = FakeCA(fault=fault)
    [result] = run(ca, tmp_path, [SPEC], email="me@example.com")
    assert isinstance(result, Issued) and ca.contacts == [(), ()]


def failed_line(logs: list[MutableMapping[str, Any]]) -> MutableMapping[str, Any]:
    """The one order.failed line of a run."""
    [line] = [e for e in logs if e["event"] == "order.failed"]
    return line


def test_order_failed_carries_the_problem_and_detail(tmp_path: Path) -> None:
    """A CA refusal is logged with the CA's problem type and its own detail text."""

    def fault(method: str, path: str) -> Reply | None:
        if path == "/newOrder":
            return problem(400, "rejectedIdentifier", "policy forbids issuing for a.test")
        return None

    with capture_logs() as logs:
        [result] = run(FakeCA(fault=fault), tmp_path, [SPEC])
    assert isinstance(result, IssueFailure)
    line = failed_line(logs)
    assert line["problem"] == "rejectedIdentifier"
    assert line["detail"] == "policy forbids issuing for a.test"


def test_rate_limit_failure_carries_the_problem_and_detail(tmp_path: Path) -> None:
    """A rateLimited answer's type and detail reach the order.failed line."""

    def fault(method: str, path: str) -> Reply | None:
        if path == "/newOrder":
            return problem(429, "rateLimited", "too many certificates", **{"Retry-After": "60"})
        return None

    with capture_logs() as logs:
        run(FakeCA(fault=fault), tmp_path, [SPEC])
    line = failed_line(logs)
    assert (line["problem"], line["detail"]) == ("rateLimited", "too many certificates")


def test_rejected_names_carry_the_problem_and_detail(tmp_path: Path) -> None:
    """Every name.rejected line and the final order.failed line name the CA's types and texts."""
    ca = FakeCA(outcomes={"a.test": ("caa", 0), "b.test": ("incorrectResponse", 0)})
    with capture_logs() as logs:
        run(ca, tmp_path, [SPEC])
    rejected = {e["name"]: e for e in logs if e["event"] == "name.rejected"}
    assert (rejected["a.test"]["problem"], rejected["a.test"]["detail"]) == ("caa", "caa!")
    assert rejected["b.test"]["problem"] == "incorrectResponse"
    line = failed_line(logs)
    assert set(line["problem"].split(",")) == {"caa", "incorrectResponse"}
    assert "a.test: caa!" in line["detail"] and "b.test: incorrectResponse!" in line["detail"]


def test_transient_failure_carries_the_problem_and_detail(tmp_path: Path) -> None:
    """A spec stopped by a failure on the CA's side logs that failure's type and detail."""
    ca = FakeCA(outcomes={"a.test": ("dns", 0), "b.test": ("dns", 0)})
    with capture_logs() as logs:
        run(ca, tmp_path, [SPEC])
    line = failed_line(logs)
    assert line["problem"] == "dns" and "a.test: dns!" in line["detail"]


def test_refused_registration_carries_the_problem_and_detail(tmp_path: Path) -> None:
    """A CA refusing the account (say, ``invalidContact``) is one orders.not_started line with
    the CA's problem type and detail, and every certificate fails with it."""

    def fault(method: str, path: str) -> Reply | None:
        if path == "/newAccount":
            return problem(400, "invalidContact", "contact domain is forbidden")
        return None

    with capture_logs() as logs:
        results = run(FakeCA(fault=fault), tmp_path, [SPEC])
    assert all(isinstance(r, IssueFailure) for r in results)
    [line] = [e for e in logs if e["event"] == "orders.not_started"]
    assert (line["problem"], line["detail"]) == ("invalidContact", "contact domain is forbidden")
