"""Issue #15 "compatible files": what a volume and settings from acme-mailcow keep.

The account key a new volume gets, a mixed-case MAILCOW_HOSTNAME and its directory, a
directory's own key at renewal, public IP detection from two sources with retries, a back-off
dropped when the settings it failed under change, and ACME_WEBROOT_WAIT.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from structlog.testing import capture_logs

from acme_sidecar.adapters import public_ip
from acme_sidecar.adapters.dns01.setup import build_router
from acme_sidecar.adapters.volume import CertStore, keys
from acme_sidecar.adapters.volume.pem import load_key
from acme_sidecar.config.policies import (
    cycle_policy,
    daemon_policy,
    order_fingerprint,
    retry_policy,
)
from acme_sidecar.config.settings import load_settings
from acme_sidecar.core.ledger import State
from acme_sidecar.core.model import CertSpec, IssueFailure
from acme_sidecar.core.settle import RetryPolicy, settings_changed, settle_result
from tests.certs import key_pem, make_cert, new_key, write_pair

BASE = {"MAILCOW_HOSTNAME": "mail.example.org"}
NOW = datetime(2026, 12, 1, tzinfo=UTC)


# --- 1. the account key ---------------------------------------------------------------------


def test_a_new_volume_gets_acme_mailcows_rsa_4096_account_key(tmp_path: Path) -> None:
    """A new account key is RSA 4096 in traditional PEM, as `openssl genrsa 4096` wrote it."""
    store = CertStore(tmp_path)
    store.prepare()
    with capture_logs() as logs:
        data = store.keys.account_key()
    key = load_key(data)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 4096
    assert data.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert (tmp_path / "acme" / "account.pem").stat().st_mode & 0o777 == 0o600
    assert [(e["event"], e.get("key_type")) for e in logs] == [("key.created", "rsa4096")]


def test_an_existing_account_key_is_kept_whatever_its_type(tmp_path: Path) -> None:
    """An ECDSA account key there (an older sidecar's, or acme.sh's) is never replaced."""
    old = key_pem(ec.generate_private_key(ec.SECP256R1()))
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "account.pem").write_bytes(old)
    (tmp_path / "acme" / "account.pem").chmod(0o600)
    store = CertStore(tmp_path)
    store.prepare()
    assert store.keys.account_key() == old
    assert (tmp_path / "acme" / "account.pem").read_bytes() == old


# --- 2. a mixed-case MAILCOW_HOSTNAME ---------------------------------------------------------


def test_a_mixed_case_hostname_is_lowered_and_told() -> None:
    """MAILCOW_HOSTNAME=Mail.Example.ORG is used as mail.example.org; the value set is kept
    for the one config.hostname line, and a lower-case one gives none."""
    s = load_settings({"MAILCOW_HOSTNAME": "Mail.Example.ORG"})
    assert (s.mailcow_hostname, s.hostname_given) == ("mail.example.org", "Mail.Example.ORG")
    assert load_settings(BASE).hostname_given == ""


def test_a_mixed_case_directory_is_renamed_to_lower_case(tmp_path: Path) -> None:
    """acme-mailcow's Mail.Example.ORG/ becomes mail.example.org/ with its key and names: no
    duplicate directory, one store.renamed line."""
    write_pair(tmp_path / "Mail.Example.ORG", ["Mail.Example.ORG", "autodiscover.example.org"])
    key = (tmp_path / "Mail.Example.ORG" / "key.pem").read_bytes()
    store = CertStore(tmp_path)
    with capture_logs() as logs:
        found = store.certs.load()
    assert list(found) == ["mail.example.org"]
    assert found["mail.example.org"].domains == ("mail.example.org", "autodiscover.example.org")
    assert (tmp_path / "mail.example.org" / "key.pem").read_bytes() == key
    assert not (tmp_path / "Mail.Example.ORG").exists()
    assert [e["event"] for e in logs] == ["store.renamed"]


@pytest.mark.parametrize("set_aside", [True, False])
def test_a_mixed_case_directory_is_left_when_it_cannot_be_renamed(
    tmp_path: Path, set_aside: bool
) -> None:
    """The lower-case directory exists already (or a command that writes nothing reads the
    volume): the mixed-case one is left as it is, one store.ignored line."""
    write_pair(tmp_path / "Mail.Example.ORG", ["mail.example.org"])
    if set_aside:
        write_pair(tmp_path / "mail.example.org", ["mail.example.org"])
    with capture_logs() as logs:
        found = CertStore(tmp_path, set_aside=set_aside).certs.load()
    assert list(found) == (["mail.example.org"] if set_aside else [])
    assert (tmp_path / "Mail.Example.ORG").is_dir()
    assert [e["event"] for e in logs] == ["store.ignored"]


# --- 3. a directory's own key ---------------------------------------------------------------


def _dir_with_key(root: Path, name: str, pem: bytes) -> None:
    (root / name).mkdir()
    (root / name / "key.pem").write_bytes(pem)
    (root / name / "cert.pem").write_bytes(make_cert(load_key(pem), [name]))
    (root / name / "domains").write_text(name)


def test_a_directory_keeps_its_own_key_of_the_type_in_force(tmp_path: Path) -> None:
    """ACME_KEY_REUSE=y: a directory whose key differs from acme/key.pem (same type) is
    renewed on its own key with one key.own_kept warning; the one sharing acme/key.pem, one of
    another type (the plan re-keys it) and a new one get acme/key.pem."""
    store = CertStore(tmp_path)
    store.prepare()
    shared = store.keys.domain_key("ec256")
    own = key_pem(new_key("ec256"))
    _dir_with_key(tmp_path, "own.example.org", own)
    _dir_with_key(tmp_path, "shared.example.org", shared)
    _dir_with_key(tmp_path, "rsa.example.org", key_pem(new_key("rsa2048")))
    names = ["own.example.org", "shared.example.org", "rsa.example.org", "new.example.org"]
    with capture_logs() as logs:
        got = store.keys.order_keys("", names, reuse=True)
    assert isinstance(got, dict)
    assert got == {n: own if n == "own.example.org" else shared for n in names}
    [kept] = [e for e in logs if e["event"] == "key.own_kept"]
    assert kept["certificate"] == "own.example.org"
    assert kept["tlsa_3_1_1"] == keys.tlsa_311(load_key(own))


def test_without_own_keys_the_volume_key_is_shared(tmp_path: Path) -> None:
    """No directory has its own key: one key for every order, as before."""
    store = CertStore(tmp_path)
    store.prepare()
    shared = store.keys.domain_key("ec256")
    _dir_with_key(tmp_path, "a.example.org", shared)
    assert store.keys.order_keys("", ["a.example.org", "b.example.org"], reuse=True) == shared


# --- 4. public IP detection -----------------------------------------------------------------


class Sources:
    """Fake sources: each URL answers from its list of (address, error), then its last one."""

    def __init__(self, answers: dict[str, list[tuple[str | None, str]]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, url: str, version: int) -> tuple[str | None, str]:
        self.asked.append(url)
        left = self.answers[url]
        return left.pop(0) if len(left) > 1 else left[0]


def test_mailcows_default_source_has_a_second_one() -> None:
    """acme-mailcow's two sources for the default URL; an admin's own URL alone; none."""
    assert public_ip.sources("http://ip4.mailcow.email", 4) == (
        "http://ip4.mailcow.email",
        "http://ip4.nevondo.com",
    )
    assert public_ip.sources("http://ip6.mailcow.email", 6)[1] == "http://ip6.nevondo.com"
    assert public_ip.sources("https://ip.example/", 4) == ("https://ip.example/",)
    assert public_ip.sources("", 4) == ()


def test_the_second_source_answers_when_the_first_fails() -> None:
    """The first source down: the second's address, at once, and no failure line."""
    ask = Sources({"http://a": [(None, "timed out")], "http://b": [("192.0.2.7", "")]})
    slept: list[float] = []
    with capture_logs() as logs:
        got = public_ip.detect(["http://a", "http://b"], 4, ask=ask, sleep=slept.append)
    assert got == "192.0.2.7" and ask.asked == ["http://a", "http://b"] and slept == []
    assert logs == []


def test_a_failed_round_is_tried_again() -> None:
    """Both sources fail once, then one answers: the address, after one pause."""
    ask = Sources(
        {
            "http://a": [(None, "HTTP 502 Bad Gateway"), ("2001:db8::7", "")],
            "http://b": [(None, "x")],
        }
    )
    slept: list[float] = []
    got = public_ip.detect(["http://a", "http://b"], 6, ask=ask, sleep=slept.append)
    assert got == "2001:db8::7" and ask.asked == ["http://a", "http://b", "http://a"]
    assert len(slept) == 1 and 0 <= slept[0] <= 8


def test_every_round_failing_is_one_line() -> None:
    """Three rounds over both sources fail: None and one ip.detect_failed line naming each
    source and its error, never a password in a URL."""
    ask = Sources({"http://u:pw@a/": [(None, "timed out")], "http://b": [(None, "got 'x'")]})
    slept: list[float] = []
    with capture_logs() as logs:
        got = public_ip.detect(["http://u:pw@a/", "http://b"], 4, ask=ask, sleep=slept.append)
    assert got is None and len(ask.asked) == 6 and len(slept) == 2
    [line] = logs
    assert line["event"] == "ip.detect_failed" and line["rounds"] == 3
    assert "timed out" in line["errors"] and "got 'x'" in line["errors"]
    assert "pw" not in line["errors"]


# --- 5. a back-off and the settings it failed under ----------------------------------------

SPEC = CertSpec("mail.example.org", ("mail.example.org",))


def _failed(settings: str) -> State:
    failure = IssueFailure(SPEC, "urn:ietf:params:acme:error:externalAccountRequired", orders=1)
    return settle_result(State(), failure, NOW, RetryPolicy(settings=settings, jitter=0.0))


def test_a_failure_records_the_settings_it_happened_under() -> None:
    """The back-off carries the fingerprint; the ledger file keeps it across a restart."""
    state = _failed("f1")
    assert state.cert(SPEC.name).settings == "f1"
    assert State.from_json(state.to_json()).cert(SPEC.name).settings == "f1"


def test_changed_settings_drop_the_back_off() -> None:
    """Other settings now: the back-off is gone (ordered at once); the same settings or an
    old ledger without a fingerprint keep it."""
    state = _failed("f1")
    assert state.cert(SPEC.name).next_attempt is not None
    same, none = settings_changed(state, "f1", NOW + timedelta(minutes=1))
    assert none == () and same == state
    cleared, names = settings_changed(state, "f2", NOW + timedelta(minutes=1))
    assert names == (SPEC.name,)
    ledger = cleared.cert(SPEC.name)
    assert (ledger.next_attempt, ledger.failures, ledger.settings) == (None, 0, "")
    assert settings_changed(_failed(""), "f2", NOW)[1] == ()


DNS01 = BASE | {"ACME_DNS_CHALLENGE": "y", "ACME_DNS_PROVIDER": "dns_pdns"}


def _credentials(tmp_path: Path, token: str, environ: dict[str, str] | None = None) -> str:
    conf = tmp_path / "dns-01.conf"
    conf.write_text(f"PDNS_Url=http://127.0.0.1:9\nPDNS_ServerId=localhost\n{token}")
    conf.chmod(0o600)
    return build_router("dns_pdns", conf, 53, environ=environ).routes().credentials


def test_a_fixed_dns01_token_drops_the_back_off(tmp_path: Path) -> None:
    """The fingerprint covers the DNS-01 credentials in use: a changed token (in dns-01.conf or
    the environment) changes it and drops the back-off, the same token keeps it; neither the
    token nor its hash is logged or written to the ledger."""
    with capture_logs() as logs:
        wrong = _credentials(tmp_path, "PDNS_Token=wr0ng-t0ken")
        again = _credentials(tmp_path, "PDNS_Token=wr0ng-t0ken")
        fixed = _credentials(tmp_path, "PDNS_Token=f1xed-t0ken")
        from_env = _credentials(tmp_path, "", {"PDNS_Token": "env-t0ken"})
        env_fixed = _credentials(tmp_path, "", {"PDNS_Token": "env-f1xed"})
    assert len({wrong, fixed, from_env, env_fixed}) == 4 and wrong == again and len(wrong) == 64
    settings = load_settings(DNS01)
    before = cycle_policy(settings, wrong).retry.settings
    assert before == cycle_policy(settings, again).retry.settings
    assert before != order_fingerprint(settings)  # the credentials count
    after = cycle_policy(settings, fixed).retry.settings
    assert after != before and len(after) == 16
    state = settle_result(
        State(),
        IssueFailure(SPEC, "urn:ietf:params:acme:error:unauthorized", orders=1),
        NOW,
        RetryPolicy(settings=before, jitter=0.0),
    )
    assert settings_changed(state, before, NOW + timedelta(minutes=1))[1] == ()
    assert settings_changed(state, after, NOW + timedelta(minutes=1))[1] == (SPEC.name,)
    text = state.to_json() + repr(logs)
    assert before in state.to_json()
    for secret in ("wr0ng-t0ken", "f1xed-t0ken", "env-t0ken", wrong, fixed, from_env):
        assert secret not in text


def test_without_dns01_credentials_the_fingerprint_is_unchanged() -> None:
    """No DNS-01 credentials: the fingerprint is the one ledgers already hold (an upgrade
    drops no back-off)."""
    settings = load_settings(DNS01)
    assert cycle_policy(settings).retry.settings == "5f86493002260f1d"  # as before the change
    assert order_fingerprint(settings, "") == retry_policy(settings).settings


@pytest.mark.parametrize(
    "change",
    [
        {"ACME_EAB_KID": "kid-1", "ACME_EAB_HMAC_KEY": "c2VjcmV0LWhtYWMta2V5LXZhbHVl"},
        {"ACME_PROFILE": "shortlived"},
        {"ACME_ACCOUNT_EMAIL": "admin@example.org"},
        {"ACME_DNS_CHALLENGE": "y", "ACME_DNS_PROVIDER": "dns_cf"},
    ],
)
def test_the_fingerprint_follows_eab_profile_contact_and_provider(change: dict[str, str]) -> None:
    """Each of those settings changes the fingerprint; no secret is in it in clear."""
    before = order_fingerprint(load_settings(BASE))
    after = retry_policy(load_settings(BASE | change)).settings
    assert after != before and len(after) == 16
    assert all(value not in after for value in change.values())


# --- 6. ACME_WEBROOT_WAIT -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "wait", "check"), [(None, 120.0, True), ("5m", 300.0, True), ("0", 0.0, False)]
)
def test_the_webroot_wait(value: str | None, wait: float, check: bool) -> None:
    """ACME_WEBROOT_WAIT: 2 minutes by default, a duration, 0 skips the wait."""
    env = BASE | ({"ACME_WEBROOT_WAIT": value} if value is not None else {})
    start = daemon_policy(load_settings(env)).start
    assert start is not None and (start.webroot_wait, start.check_webroot) == (wait, check)
