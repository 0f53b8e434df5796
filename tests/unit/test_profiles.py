"""Profiles, External Account Binding and key types: settings, planner and the ACME adapter.

Pebble 2.6 has no profiles, so the profile tests (issue #9, test 6) run the real ACME adapter
(client code, parsing, translation) against ``FakeCA``'s constructed directory and order
answers: a directory listing Let's Encrypt's three profiles with their descriptions, and a
``tlsserver`` that refuses orders of more than 25 names as Let's Encrypt does. EAB against a
real CA (Pebble with binding required) is in tests/integration/test_keys.py.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from acme_sidecar.adapters.volume import keys, pem
from acme_sidecar.config.policies import cycle_policy
from acme_sidecar.config.settings import load_settings
from acme_sidecar.core.errors import ConfigError
from acme_sidecar.core.ledger import CertLedger, State
from acme_sidecar.core.model import Action, Issued, IssueFailure, NameGroup, StoredCert, Verdict
from acme_sidecar.core.plan import Shape, make_plan, wanted_specs
from acme_sidecar.core.profiles import KEY_TYPES, max_names, profile_change, profile_problem
from tests.certs import leaf
from tests.unit.test_acme_adapter import CA, FakeCA, run

HOST = "mail.example.org"
LE_PROFILES = {
    "classic": "The same profile you're accustomed to",
    "tlsserver": "https://letsencrypt.org/2025/01/09/acme-profiles/",
    "shortlived": "https://letsencrypt.org/2025/01/09/acme-profiles/",
}
NOW = datetime(2027, 3, 1, 12, tzinfo=UTC)


def env(**values: str) -> dict[str, str]:
    return {"MAILCOW_HOSTNAME": HOST, **{k.upper(): v for k, v in values.items()}}


def le_ca() -> FakeCA:
    """A constructed Let's Encrypt-like directory: three profiles, 25 names for tlsserver."""
    return FakeCA(meta={"profiles": LE_PROFILES}, name_limits={"tlsserver": 25, "shortlived": 25})


# --- the rules -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "configured", "expected"),
    [("", 100, 100), ("classic", 100, 100), ("tlsserver", 100, 25), ("shortlived", 100, 25),
     ("tlsserver", 10, 10), ("classic", 50, 50)],
)  # fmt: skip
def test_names_per_order_follow_the_profile(profile: str, configured: int, expected: int) -> None:
    """25 names for tlsserver/shortlived, 100 otherwise; ACME_MAX_NAMES can lower it."""
    assert max_names(profile, configured) == expected


def test_profile_problem_lists_what_the_ca_offers() -> None:
    """An unknown profile names every offered one with its description; none asked: fine."""
    assert profile_problem("", LE_PROFILES) is None and profile_problem("", None) is None
    assert profile_problem("tlsserver", LE_PROFILES) is None
    text = profile_problem("tlserver", LE_PROFILES)
    assert text is not None and text.startswith("ACME_PROFILE=tlserver is not offered by the CA")
    assert all(name in text for name in LE_PROFILES)
    assert "offers no profiles" in (profile_problem("classic", {}) or "")


def test_profile_change() -> None:
    assert profile_change("", "") is None and profile_change("tlsserver", "tlsserver") is None
    assert profile_change("", "tlsserver") == (
        "profile changed: ordered with the CA's default, ACME_PROFILE asks for tlsserver"
    )


# --- settings ------------------------------------------------------------------------------


def test_settings_cut_the_shape() -> None:
    """ACME_PROFILE=tlsserver makes orders of at most 25 names; ACME_KEY_TYPE and
    ACME_KEY_REUSE reach the cycle's policy."""
    policy = cycle_policy(load_settings(env(acme_profile="tlsserver", acme_key_type="EC384")))
    assert (policy.shape.profile, policy.shape.max_names, policy.shape.key_type) == (
        "tlsserver",
        25,
        "ec384",
    )
    assert policy.key_reuse is True
    default = cycle_policy(load_settings(env(acme_key_reuse="n")))
    assert (default.shape.max_names, default.shape.key_type, default.key_reuse) == (100, "", False)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"acme_key_type": "rsa1024"}, "must be one of rsa2048, rsa3072, rsa4096, ec256, ec384"),
        ({"acme_key_reuse": "sometimes"}, "use y (one key across renewals"),
        ({"acme_profile": "tls server"}, "must be a profile name the CA lists"),
        ({"acme_eab_kid": "kid-1"}, "ACME_EAB_KID and ACME_EAB_HMAC_KEY go together"),
        ({"acme_eab_kid": "k", "acme_eab_hmac_key": "not base64!"}, "ACME_EAB_HMAC_KEY='***'"),
    ],
)
def test_bad_values_are_one_clear_message(values: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(env(**values))
    assert message in str(raised.value)
    assert "not base64!" not in str(raised.value)  # the HMAC key is never echoed


def test_eab_settings() -> None:
    """The HMAC key is kept as a secret; padding is accepted and dropped."""
    settings = load_settings(env(acme_eab_kid="kid-1", acme_eab_hmac_key="c2VjcmV0LWtleQ=="))
    assert settings.eab == ("kid-1", "c2VjcmV0LWtleQ")
    assert "c2VjcmV0" not in repr(settings) and "c2VjcmV0" not in str(settings.model_dump())


# --- the planner ---------------------------------------------------------------------------


def _stored(key_type: str = "ec256") -> dict[str, StoredCert]:
    start = NOW - timedelta(days=5)
    cert = StoredCert(
        HOST,
        (HOST,),
        start,
        start + timedelta(days=90),
        1,
        "CN=x",
        True,
        (HOST,),
        key_type=key_type,
    )
    return {HOST: cert}


def _plan(shape: Shape, stored: dict[str, StoredCert], profile: str = "") -> tuple[Action, str]:
    groups = (NameGroup(HOST, (HOST,), server=True),)
    plan = make_plan(
        groups,
        {HOST: Verdict(HOST, True, "ok")},
        stored,
        shape=shape,
        force=False,
        now=NOW,
        profiles={HOST: profile},
    )
    return plan.certs[0].action, plan.certs[0].reason


def test_a_certificate_of_another_profile_is_ordered_again() -> None:
    """The ledger's profile against ACME_PROFILE: equal keeps, different re-issues (both
    ways); a certificate the ledger knows nothing of counts as the CA's default."""
    assert _plan(Shape(), _stored())[0] is Action.KEEP
    assert _plan(Shape(profile="tlsserver"), _stored(), "tlsserver")[0] is Action.KEEP
    action, reason = _plan(Shape(profile="tlsserver"), _stored())
    assert action is Action.ISSUE and "ACME_PROFILE asks for tlsserver" in reason
    assert _plan(Shape(), _stored(), "shortlived")[0] is Action.ISSUE


def test_a_certificate_of_another_key_type_is_ordered_again() -> None:
    assert _plan(Shape(key_type="ec256"), _stored("ec256"))[0] is Action.KEEP
    action, reason = _plan(Shape(key_type="ec384"), _stored("rsa4096"))
    assert action is Action.ISSUE
    assert reason == "key type changed: its key is rsa4096, the key type is ec384"
    assert _plan(Shape(key_type=""), _stored("rsa4096"))[0] is Action.KEEP  # not checked


def test_the_ledger_keeps_the_profile() -> None:
    state = State(certs={HOST: CertLedger(profile="tlsserver")})
    assert State.from_json(state.to_json()).cert(HOST).profile == "tlsserver"
    assert '"profile"' not in State(certs={HOST: CertLedger()}).to_json()  # an optional key


# --- test 6: profiles against constructed directory and order answers ----------------------


def test_tlsserver_with_30_names_gives_two_certificates_of_at_most_25(tmp_path: Path) -> None:
    """Issue #9 test 6 (constructed answers: Pebble 2.6 has no profiles). ACME_PROFILE=
    tlsserver and 30 SAN names: the plan splits them 25 + 5, both orders name tlsserver and
    the CA (which refuses more than 25 names under tlsserver) issues both."""
    policy = cycle_policy(load_settings(env(acme_profile="tlsserver")))
    names = (HOST, *(f"n{i:02}.example.org" for i in range(29)))
    groups = (NameGroup(HOST, names, server=True),)
    specs = wanted_specs(groups, {n: Verdict(n, True, "ok") for n in names}, policy.shape)
    assert [len(s.domains) for s in specs] == [25, 5]
    assert specs[0].domains[0] == HOST
    ca = le_ca()
    results = run(ca, tmp_path, specs, profile=policy.shape.profile)
    assert all(isinstance(r, Issued) and r.profile == "tlsserver" for r in results)
    assert ca.order_profiles == ["tlsserver", "tlsserver"]
    assert sorted(len(o) for o in ca.new_orders) == [5, 25]
    assert {n for o in ca.new_orders for n in o} == set(names)


def test_without_the_split_the_ca_refuses_the_order(tmp_path: Path) -> None:
    """The constructed CA does enforce the limit: 30 names under tlsserver are refused."""
    names = (HOST, *(f"n{i:02}.example.org" for i in range(29)))
    specs = wanted_specs(
        (NameGroup(HOST, names, server=True),),
        {n: Verdict(n, True, "ok") for n in names},
        Shape(max_names=100),
    )
    [result] = run(le_ca(), tmp_path, specs, profile="tlsserver")
    assert isinstance(result, IssueFailure) and "allows 25 identifiers" in result.reason


def test_an_unknown_profile_is_refused_with_the_cas_list(tmp_path: Path) -> None:
    """Issue #9 test 6: ACME_PROFILE=tlserver (a typo) places no order; every certificate
    fails with one message that lists the CA's profiles."""
    ca = le_ca()
    specs = wanted_specs(
        (NameGroup(HOST, (HOST, "a.example.org"), server=True),),
        {n: Verdict(n, True, "ok") for n in (HOST, "a.example.org")},
        Shape(),
    )
    [result] = run(ca, tmp_path, specs, profile="tlserver")
    assert isinstance(result, IssueFailure)
    assert result.reason.startswith("ACME_PROFILE=tlserver is not offered by the CA; it offers:")
    assert all(f"{name} ({text})" in result.reason for name, text in LE_PROFILES.items())
    assert ca.new_orders == [] and ca.accounts == 0


def test_no_profile_asked_sends_none(tmp_path: Path) -> None:
    ca = le_ca()
    [result] = run(ca, tmp_path, wanted_specs(
        (NameGroup(HOST, (HOST,), server=True),), {HOST: Verdict(HOST, True, "ok")}, Shape()
    ))  # fmt: skip
    assert isinstance(result, Issued) and result.profile == "" and ca.order_profiles == [""]


def test_a_short_orders_lifetime_ends_the_wait(tmp_path: Path) -> None:
    """An order is given up at its own ``expires`` when that comes before ACME_ORDER_TIMEOUT
    (a short profile's orders live briefly): here 1 s instead of 300 s."""
    ca = le_ca()
    ca.outcomes[HOST] = (None, 10**6)  # the authorization stays processing
    ca.order_expires = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    spec = wanted_specs(
        (NameGroup(HOST, (HOST,), server=True),), {HOST: Verdict(HOST, True, "ok")}, Shape()
    )
    began = time.monotonic()
    [result] = run(ca, tmp_path, spec, profile="shortlived", order_timeout=300)
    assert isinstance(result, IssueFailure) and "at the deadline" in result.reason
    assert time.monotonic() - began < 10


# --- EAB against constructed answers -------------------------------------------------------


def test_eab_required_but_missing_is_one_clear_message(tmp_path: Path) -> None:
    ca = FakeCA(meta={"externalAccountRequired": True})
    [result] = run(ca, tmp_path, wanted_specs(
        (NameGroup(HOST, (HOST,), server=True),), {HOST: Verdict(HOST, True, "ok")}, Shape()
    ))  # fmt: skip
    assert isinstance(result, IssueFailure)
    assert "requires External Account Binding" in result.reason
    assert "ACME_EAB_KID and ACME_EAB_HMAC_KEY" in result.reason
    assert ca.accounts == 0


def test_eab_is_sent_at_registration(tmp_path: Path) -> None:
    """The binding is a JWS over the account key, MACed with the HMAC key, naming the kid."""
    import base64
    import json

    ca = FakeCA(meta={"externalAccountRequired": True})
    [result] = run(ca, tmp_path, wanted_specs(
        (NameGroup(HOST, (HOST,), server=True),), {HOST: Verdict(HOST, True, "ok")}, Shape()
    ), eab=("kid-1", "c2VjcmV0LWtleQ"))  # fmt: skip
    assert isinstance(result, Issued)
    binding = ca.account_payloads[0]["externalAccountBinding"]
    protected = json.loads(base64.urlsafe_b64decode(binding["protected"] + "=="))
    assert protected == {"alg": "HS256", "kid": "kid-1", "url": f"{CA}/newAccount"}


# --- key types -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KEY_TYPES)
def test_each_key_type_is_made_and_recognised(kind: str) -> None:
    key = keys.generate(kind)
    assert pem.kind_of(key) == kind and pem.kind_of(key.public_key()) == kind
    assert len(keys.tlsa_311(key)) == 64


def _cert(usages: list[x509.ObjectIdentifier] | None) -> x509.Certificate:
    return leaf([HOST], serial=1, not_before=NOW, days=1, usages=usages)


def test_client_auth_is_read_from_the_extended_key_usage() -> None:
    """Let's Encrypt since February 2026: serverAuth only, no clientAuth."""
    server, client = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
    assert pem.client_auth(_cert([server, client])) is True
    assert pem.client_auth(_cert([server])) is False
    assert pem.client_auth(_cert(None)) is True  # no EKU: any use
