"""Issue #14 (review N2): every issued certificate is checked against its order before it is
returned as ``Issued``. The pure check (``core.issued``) and the ACME adapter behind the
injected network object (``FakeCA`` answering with a dishonest certificate)."""

from __future__ import annotations

from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from structlog.testing import capture_logs

from acme_sidecar.core.issued import SKEW, problems, spki
from acme_sidecar.core.model import CertSpec, FailureKind, Issued, IssueFailure
from tests.unit import fake_chain
from tests.unit.fake_chain import Dishonest, Signer, pem
from tests.unit.test_acme_adapter import SPEC, FakeCA, run

NOW = datetime(2026, 12, 6, 12, tzinfo=UTC)
KEY = ec.generate_private_key(ec.SECP256R1())
OURS = spki(KEY.public_key())
SIGNER = Signer()


def leaf(
    names: tuple[str, ...] = ("a.test", "b.test"),
    start: datetime = NOW - timedelta(minutes=1),
    end: datetime = NOW + timedelta(days=90),
) -> x509.Certificate:
    return SIGNER.leaf(names, KEY.public_key(), start, end)


def test_the_honest_chain_has_no_problem() -> None:
    """The ordered names (in another case and order), our key, valid now, leaf then issuer."""
    chain = pem(leaf(("B.test", "a.TEST")), SIGNER.inter, SIGNER.root)
    assert problems(chain, SPEC.domains, OURS, NOW) == ()


@pytest.mark.parametrize(
    ("names", "said"),
    [
        (("attacker.example",), "is for other names: attacker.example, and lacks a.test, b.test"),
        (("a.test", "b.test", "x.test"), "is for other names: x.test (ordered"),
        (("a.test",), "lacks b.test (ordered: a.test, b.test)"),
    ],
)
def test_other_extra_or_missing_names_are_named(names: tuple[str, ...], said: str) -> None:
    """A leaf whose names are not exactly the ordered set is one problem naming the difference."""
    [problem] = problems(pem(leaf(names), SIGNER.inter), SPEC.domains, OURS, NOW)
    assert problem.startswith("the CA's certificate ") and said in problem


def test_not_before_within_the_skew_passes_beyond_it_fails() -> None:
    """A notBefore up to SKEW (5 minutes) ahead of our clock is accepted; later is not."""
    near = pem(leaf(start=NOW + SKEW), SIGNER.inter)
    far = pem(leaf(start=NOW + SKEW + timedelta(seconds=1)), SIGNER.inter)
    assert problems(near, SPEC.domains, OURS, NOW) == ()
    [problem] = problems(far, SPEC.domains, OURS, NOW)
    assert "not valid before" in problem and "5 minutes ahead" in problem


def test_not_after_is_exclusive() -> None:
    """A leaf whose notAfter is now has expired."""
    [problem] = problems(pem(leaf(end=NOW), SIGNER.inter), SPEC.domains, OURS, NOW)
    assert "expired at 2026-12-06 12:00:00Z" in problem


def test_garbage_is_one_problem() -> None:
    """An answer that is no PEM certificate is one problem, no exception."""
    assert problems(b"<html>oops</html>", SPEC.domains, OURS, NOW) == (
        "the CA's answer is not a PEM certificate chain",
    )


def test_a_root_not_signing_the_intermediate_is_named() -> None:
    """The link checked is every pair, not only leaf and intermediate."""
    chain = pem(leaf(), SIGNER.inter, Signer().root)
    [problem] = problems(chain, SPEC.domains, OURS, NOW)
    assert problem.startswith("certificate 2 of the chain (CN=Fake Issuing CA) is not signed")


# --- the ACME adapter ----------------------------------------------------------------------


def refused(
    tmp_path: Path, answer: Dishonest, ca: FakeCA | None = None
) -> tuple[IssueFailure, list[MutableMapping[str, Any]], FakeCA]:
    """Order SPEC from a CA answering with ``answer``: the failure and its log lines."""
    ca = ca or FakeCA()
    ca.answer = answer
    with capture_logs() as logs:
        [result] = run(ca, tmp_path, [SPEC])
    assert isinstance(result, IssueFailure), result
    return result, logs, ca


def rejected_line(logs: list[MutableMapping[str, Any]]) -> MutableMapping[str, Any]:
    """The one cert.rejected line, and no other error line."""
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [e["event"] for e in errors] == ["cert.rejected"], errors
    return errors[0]


def test_a_certificate_for_other_names_is_a_failure_that_backs_off(tmp_path: Path) -> None:
    """Review N2's reproduction: the CA signs for attacker.example. The order fails with kind
    OTHER (exponential back-off), one order placed, one cert.rejected line naming the names."""
    result, logs, ca = refused(tmp_path, fake_chain.other_names("attacker.example"))
    assert result.kind is FailureKind.OTHER and result.orders == 1 and len(ca.new_orders) == 1
    line = rejected_line(logs)
    assert line["certificate"] == "a.test" and line["names"] == "a.test b.test"
    assert "is for other names: attacker.example" in line["reason"]
    assert "not stored" in line["action"]
    assert "attacker.example" in result.reason


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (fake_chain.expired, "the CA's certificate expired at "),
        (fake_chain.not_yet_valid, "the CA's certificate is not valid before "),
        (fake_chain.another_key, "for another public key than the one we sent"),
        (fake_chain.wrong_issuer, "certificate 1 of the chain (<empty>) is not signed by"),
    ],
)
def test_a_dishonest_certificate_is_refused(tmp_path: Path, answer: Dishonest, said: str) -> None:
    """Expired, not yet valid, another key, a leaf not signed by the next certificate: each is
    one failure of kind OTHER with one line saying what is wrong."""
    said = said.replace("<empty>", "an empty subject")
    result, logs, _ = refused(tmp_path, answer)
    assert result.kind is FailureKind.OTHER
    assert rejected_line(logs)["reason"] == result.reason.removeprefix(
        "the CA's certificate was refused: "
    )
    assert said in result.reason


def test_an_out_of_order_chain_is_refused(tmp_path: Path) -> None:
    """The intermediate sent before the leaf: its names and key are not the order's, and it
    is not signed by the leaf."""
    result, logs, _ = refused(tmp_path, fake_chain.intermediate_first)
    reason = rejected_line(logs)["reason"]
    assert "for other names" not in reason  # an intermediate has no subjectAltName
    assert "has no subjectAltName" in reason and "another public key" in reason
    assert "certificate 1 of the chain (CN=Fake Issuing CA) is not signed by" in reason
    assert result.kind is FailureKind.OTHER


def test_a_dropped_name_stays_dropped_and_the_rest_is_checked(tmp_path: Path) -> None:
    """A name the CA rejects is left out (as before); the certificate for the rest passes the
    check; one for other names still fails and keeps the dropped name's own back-off."""
    ca = FakeCA(outcomes={"b.test": ("unauthorized", 0)})
    [good] = run(ca, tmp_path, [SPEC])
    assert isinstance(good, Issued) and good.spec.domains == ("a.test",)
    assert set(good.dropped) == {"b.test"}
    bad, _, ca = refused(
        tmp_path, fake_chain.other_names("a.test", "b.test"), FakeCA(outcomes=ca.outcomes)
    )
    assert set(bad.rejected) == {"b.test"} and bad.orders == 2
    assert "is for other names: b.test (ordered: a.test)" in bad.reason


def test_many_specs_each_checked_on_its_own(tmp_path: Path) -> None:
    """In a parallel batch, only the certificate that fails the check is refused."""
    honest = Signer.chain

    def answer(s: Signer, csr: x509.CertificateSigningRequest, now: datetime) -> bytes:
        if fake_chain.csr_names(csr)[0] == "p3.test":
            return fake_chain.expired(s, csr, now)
        return honest(s, csr, now)

    ca = FakeCA(answer=answer)
    specs = [CertSpec(f"p{i}.test", (f"p{i}.test",)) for i in range(6)]
    results = {r.spec.name: r for r in run(ca, tmp_path, specs, parallel=3)}
    failed = [n for n, r in results.items() if isinstance(r, IssueFailure)]
    assert failed == ["p3.test"] and len(results) == 6
