"""Discovery: the names mailcow's rules produce from settings and database rows."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from acme_sidecar.core.discover import NameRules, candidate_groups, clean_rows
from acme_sidecar.core.names import normalize_hostname

HOST = "mail.example.org"


def names(groups: tuple[object, ...]) -> list[str]:
    return [n for g in groups for n in g.names]  # type: ignore[attr-defined]


def test_autodiscover_names_per_domain_and_mta_sts_only_when_active() -> None:
    """autodiscover/autoconfig for every domain; mta-sts only where MTA-STS is active."""
    rows = clean_rows(["a.test", "b.test"], ["b.test"], [])
    groups = candidate_groups(NameRules(HOST), rows)
    assert names(groups) == [
        HOST,
        "autodiscover.a.test",
        "autoconfig.a.test",
        "autodiscover.b.test",
        "autoconfig.b.test",
        "mta-sts.b.test",
    ]


def test_alias_gets_only_mta_sts() -> None:
    """An alias domain whose target has MTA-STS gets mta-sts.<alias> and nothing else."""
    rows = clean_rows(["a.test"], ["a.test"], ["alias.test"])
    groups = candidate_groups(NameRules(HOST), rows)
    assert groups[-1].names == ("mta-sts.alias.test",)


def test_only_hostname() -> None:
    """ONLY_MAILCOW_HOSTNAME reduces everything to the hostname."""
    rows = clean_rows(["a.test"], [], [])
    rules = NameRules(HOST, static_sans=("x.example.org",), only_hostname=True)
    assert names(candidate_groups(rules, rows)) == [HOST]


def test_prefix_entries_and_no_autodiscover() -> None:
    """`mail.*` gives mail.<domain>; AUTODISCOVER_SAN=n drops the autodiscover names."""
    rows = clean_rows(["a.test"], ["a.test"], ["alias.test"])
    rules = NameRules(HOST, prefixes=("mail",), autodiscover=False)
    assert names(candidate_groups(rules, rows)) == [HOST, "mail.a.test"]


def test_bad_database_values_are_skipped() -> None:
    """Values that are not hostnames never become names."""
    rows = clean_rows(["ok.test", "../etc", "a b.test", "x;rm -rf", "", "Bücher.Test"], [], [])
    assert rows.domains == ("ok.test", "xn--bcher-kva.test")


def test_hostname_not_repeated() -> None:
    """A per-domain name equal to the hostname is not repeated."""
    rows = clean_rows(["example.org"], [], [])
    rules = NameRules(HOST, prefixes=("mail",), autodiscover=False)
    assert names(candidate_groups(rules, rows)) == [HOST]


@given(st.text(max_size=80))
def test_normalized_names_are_safe(value: str) -> None:
    """Whatever the input, a normalised name has only safe characters for paths and orders."""
    name = normalize_hostname(value)
    if name is not None:
        assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-.")
        assert ".." not in name and not name.startswith(".") and len(name) <= 253
