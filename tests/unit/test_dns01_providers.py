"""The acme.sh plugin table (config/dns01_providers.py): every mapped plugin's acme.sh variables
become the options of a real dns-lexicon provider; mailcow's documented plugins map as their
docs set them; credentials come from dns-01.conf, the environment and acme.sh's account.conf in
that order; the README's table is the data table.

``python -m tests.unit.test_dns01_providers`` rewrites the README's table from the data."""

from __future__ import annotations

import argparse
import base64
import importlib
import importlib.util
import sys
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from acme_sidecar.adapters.dns01.setup import build_router
from acme_sidecar.config.dns01 import LexiconConf, Section, provider_conf
from acme_sidecar.config.dns01_credentials import fill, parse_account_conf
from acme_sidecar.config.dns01_providers import PLUGINS, ROWS, SUPPORTED, Plugin, unsupported

README = Path(__file__).resolve().parents[2] / "README.md"
BEGIN = "<!-- dns01-providers: made by python -m tests.unit.test_dns01_providers -->"
END = "<!-- /dns01-providers -->"
LEXICON_ROWS = [r for r in ROWS if r.via == "lexicon"]


def lexicon_options_of(provider: str) -> set[str]:
    """The options lexicon's provider declares (its command line)."""
    module = importlib.import_module(f"lexicon._private.providers.{provider}")
    parser = argparse.ArgumentParser()
    module.Provider.configure_parser(parser)
    return {a.dest for a in parser._actions if a.dest != "help"}


def secret(variable: str) -> str:
    """A distinct value per variable."""
    return f"value-of-{variable}"


@pytest.mark.parametrize("row", LEXICON_ROWS, ids=lambda r: r.name)
def test_every_variable_reaches_an_option_lexicon_declares(row: Plugin) -> None:
    """acme.sh variables in, the lexicon provider's own options out: each variable's value
    lands on its option (unless a preferred variable is set), and every option the table
    names is one the installed lexicon provider declares."""
    declared = lexicon_options_of(row.provider)
    split = {o for s in row.split.values() for o in s.options}
    named = {*row.options.values(), *row.joined, *row.fixed, *split}
    assert named and named <= declared, sorted(named - declared)
    values = {v: secret(v) for v in row.variables}
    values.update({v: s.shape for v, s in row.split.items()})  # a value of the form asked
    if row.ttl:
        values[row.ttl] = "300"
    conf = provider_conf(Section("", row.name, values))
    assert isinstance(conf, LexiconConf), conf
    assert (conf.plugin, conf.provider) == (row.name, row.provider)
    unused = {v for drop in row.overrides.values() for v in drop}
    for option in set(row.options.values()):
        feeding = [v for v, o in row.options.items() if o == option and v not in unused]
        if feeding:  # the first variable set wins
            assert conf.options[option] == secret(feeding[0]), option
        else:  # only fed by variables a preferred one overrides (CF_Email beside CF_Token)
            assert option not in conf.options, option
    for option in row.joined:
        assert all(secret(v) in conf.options[option] for v in row.variables if v not in row.options)
    for variable, way in row.split.items():
        parts = way.parse(way.shape)
        assert parts and len(parts) == len(way.options) and all(parts), variable
        given = dict(zip(way.options, parts, strict=True))
        assert {o: conf.options[o] for o in way.options} == given, variable
    assert conf.ttl == (300 if row.ttl else 60)


@pytest.mark.parametrize("row", [r for r in LEXICON_ROWS if r.required], ids=lambda r: r.name)
def test_without_its_credentials_a_plugin_names_the_first_missing(row: Plugin) -> None:
    """No variables: one message naming the plugin and the first variable it needs."""
    problem = provider_conf(Section("", row.name, {}))
    first = row.required[0].replace("|", " or ")
    assert isinstance(problem, str) and problem.startswith(f"{row.name} needs {first} (")


@pytest.mark.parametrize(
    ("plugin", "values", "provider", "options"),
    [
        ("dns_aws", {"AWS_ACCESS_KEY_ID": "AKIA1", "AWS_SECRET_ACCESS_KEY": "s3"}, "route53",
         {"auth_access_key": "AKIA1", "auth_access_secret": "s3"}),
        ("dns_azure", {"AZUREDNS_SUBSCRIPTIONID": "sub", "AZUREDNS_TENANTID": "ten",
                       "AZUREDNS_APPID": "app", "AZUREDNS_CLIENTSECRET": "pw",
                       "AZUREDNS_RESOURCEGROUP": "rg"}, "azure",
         {"auth_subscription_id": "sub", "auth_tenant_id": "ten", "auth_client_id": "app",
          "auth_client_secret": "pw", "resource_group": "rg"}),
        ("dns_gcloud", {"GOOGLE_APPLICATION_CREDENTIALS": "/etc/acme/sa.json"}, "googleclouddns",
         {"auth_service_account_info": "file::/etc/acme/sa.json"}),
        ("dns_hetzner", {"HETZNER_Token": "h"}, "hetzner", {"auth_token": "h"}),
        ("dns_hetznercloud", {"HETZNER_TOKEN": "hc"}, "hetzner", {"auth_token": "hc"}),
        ("dns_ionos", {"IONOS_PREFIX": "pre", "IONOS_SECRET": "sec"}, "ionos",
         {"api_key": "pre.sec"}),
        ("dns_gd", {"GD_Key": "k", "GD_Secret": "s"}, "godaddy",
         {"auth_key": "k", "auth_secret": "s"}),
        ("dns_linode_v4", {"LINODE_V4_API_KEY": "l"}, "linode4", {"auth_token": "l"}),
        ("dns_namecheap", {"NAMECHEAP_USERNAME": "u", "NAMECHEAP_API_KEY": "k",
                           "NAMECHEAP_SOURCEIP": "192.0.2.1"}, "namecheap",
         {"auth_username": "u", "auth_token": "k", "auth_client_ip": "192.0.2.1"}),
        ("dns_dnsimple", {"DNSimple_OAUTH_TOKEN": "d"}, "dnsimple", {"auth_token": "d"}),
        ("dns_netcup", {"NC_CID": "1", "NC_Apikey": "k", "NC_Apipw": "p"}, "netcup",
         {"auth_customer_id": "1", "auth_api_key": "k", "auth_api_password": "p"}),
        ("dns_inwx", {"INWX_User": "u", "INWX_Password": "p"}, "inwx",
         {"auth_username": "u", "auth_password": "p"}),
        ("dns_porkbun", {"PORKBUN_API_KEY": "k", "PORKBUN_SECRET_API_KEY": "s"}, "porkbun",
         {"auth_key": "k", "auth_secret": "s"}),
        ("dns_vultr", {"VULTR_API_KEY": "v"}, "vultr", {"auth_token": "v"}),
        ("dns_gandi_livedns", {"GANDI_LIVEDNS_KEY": "g"}, "gandi",
         {"auth_token": "g", "api_protocol": "rest"}),
        ("dns_ovh", {"OVH_AK": "a", "OVH_AS": "b", "OVH_CK": "c"}, "ovh",
         {"auth_application_key": "a", "auth_application_secret": "b", "auth_consumer_key": "c",
          "auth_entrypoint": "ovh-eu"}),
        # a token wins over a global key, and the key's e-mail is then not sent
        ("dns_cf", {"CF_Token": "t", "CF_Key": "k", "CF_Email": "e@example.org"}, "cloudflare",
         {"auth_token": "t"}),
        ("dns_cf", {"CF_Key": "k", "CF_Email": "e@example.org"}, "cloudflare",
         {"auth_token": "k", "auth_username": "e@example.org"}),
    ],
)  # fmt: skip
def test_mailcow_s_documented_plugins_map_as_their_docs_set_them(
    plugin: str, values: dict[str, str], provider: str, options: dict[str, str]
) -> None:
    """The plugins of mailcow's docs and generate_config.sh, with acme.sh's variables written
    out here (not taken from the table): the lexicon provider and options they give."""
    assert provider_conf(Section("", plugin, values)) == LexiconConf(plugin, provider, options)


@pytest.mark.parametrize(
    ("plugin", "values", "provider", "options"),
    [
        ("dns_da", {"DA_Api": "https://remoteUser:remotePassword@da.example.net:2222",
                    "DA_Api_Insecure": "0"}, "directadmin",
         {"endpoint": "https://da.example.net:2222", "auth_username": "remoteUser",
          "auth_password": "remotePassword"}),
        # curl undoes percent-escapes in the URL's login; a path is kept, a trailing / is not
        ("dns_da", {"DA_Api": "http://admin%40x:p%3Aw%40rd@192.0.2.7:2222/da/"}, "directadmin",
         {"endpoint": "http://192.0.2.7:2222/da", "auth_username": "admin@x",
          "auth_password": "p:w@rd"}),
        # HTTP Basic splits at the first colon: the password may hold more
        ("dns_infoblox", {"Infoblox_Creds": "admin:pa:ss", "Infoblox_Server": "ib.example.net"},
         "infoblox", {"auth_user": "admin", "auth_psw": "pa:ss", "ib_host": "ib.example.net"}),
        ("dns_infoblox", {"Infoblox_Creds": "u:p", "Infoblox_Server": "192.0.2.8",
                          "Infoblox_View": "external"}, "infoblox",
         {"auth_user": "u", "auth_psw": "p", "ib_host": "192.0.2.8", "ib_view": "external"}),
        ("dns_glesys", {"GLESYS_PROJECT_ID": "cl12345", "GLESYS_API_KEY": "k",
                        "GLESYS_API": "https://api.glesys.com/domain"}, "glesys",
         {"auth_username": "cl12345", "auth_token": "k"}),
        ("dns_wedos", {"WEDOS_Username": "me@example.org", "WEDOS_Wapipass": "w"}, "wedos",
         {"auth_username": "me@example.org", "auth_pass": "w"}),
    ],
)  # fmt: skip
def test_plugins_added_from_acme_sh_s_docs_map_as_they_name_them(
    plugin: str, values: dict[str, str], provider: str, options: dict[str, str]
) -> None:
    """dns_da, dns_infoblox, dns_glesys, dns_wedos with their variables as acme.sh's dnsapi
    scripts document them (written out here): the one-value logins are split into lexicon's
    options, the variables lexicon has no place for are not sent."""
    assert provider_conf(Section("", plugin, values)) == LexiconConf(plugin, provider, options)


@pytest.mark.parametrize(
    ("plugin", "values", "needs"),
    [
        ("dns_da", {"DA_Api": "da.example.net:2222"}, "DA_Api as https://user:password@host:port"),
        ("dns_da", {"DA_Api": "https://da.example.net:2222"}, "DA_Api as https://user:password@"),
        ("dns_da", {"DA_Api": "https://user:@da.example.net"}, "DA_Api as https://user:password@"),
        ("dns_infoblox", {"Infoblox_Creds": "s3cret", "Infoblox_Server": "ib"},
         "Infoblox_Creds as user:password"),
        ("dns_infoblox", {"Infoblox_Creds": ":s3cret", "Infoblox_Server": "ib"},
         "Infoblox_Creds as user:password"),
    ],
)  # fmt: skip
def test_a_one_value_login_of_another_form_is_named_not_shown(
    plugin: str, values: dict[str, str], needs: str
) -> None:
    """A DA_Api without the login in it, an Infoblox_Creds without user or password: one
    message naming the variable and the form, without the value."""
    problem = provider_conf(Section("", plugin, values))
    assert isinstance(problem, str) and problem.startswith(f"{plugin} needs {needs}"), problem
    assert "s3cret" not in problem and "da.example.net" not in problem


def test_plugins_no_dependency_serves_say_why_and_what_is_near() -> None:
    """dns_servercow (mailcow's own hoster) has no lexicon provider: one line saying so and
    naming three supported plugins; a misspelt name finds the right one, also by lexicon's
    name."""
    line = unsupported("dns_servercow")
    assert "dns-lexicon has no servercow provider" in line and line.count("dns_") == 4
    assert "nearest supported: dns_cf," in unsupported("dns_cloudflare")
    assert "nearest supported: dns_aws," in unsupported("dns_route53")
    assert "dns_servercow" not in SUPPORTED and "dns_nsupdate" in SUPPORTED
    assert len(SUPPORTED) == 68


def test_account_conf_as_acme_sh_writes_it() -> None:
    """SAVED_X (acme.sh's mutable save) before a plain X (older plugins), shell quoting,
    acme.sh's base64 marks; a line with unbalanced quotes is skipped by number."""
    pem = "-----BEGIN KEY-----\nabc\n-----END KEY-----"
    b64 = base64.b64encode(pem.encode()).decode()
    text = (
        "LOG_FILE='/var/lib/acme/acme-sh/acme.sh.log'\n"
        '#AUTO_UPGRADE="1"\n'
        "CF_Token='old-plain'\n"
        "SAVED_CF_Token='tok'\n"
        "SAVED_CF_Zone_ID=zone42\n"
        'export SAVED_PDNS_Url="http://ns:8081"\n'
        f"SAVED_OCI_CLI_KEY='__ACME_BASE64__START_{b64}__ACME_BASE64__END_'\n"
        "SAVED_GD_Secret='it's'\n"
        "USER_PATH='/usr/bin:/bin'\n"
    )
    saved = parse_account_conf(text)
    assert saved.values["CF_Token"] == "tok"
    assert saved.values["CF_Zone_ID"] == "zone42"
    assert saved.values["PDNS_Url"] == "http://ns:8081"
    assert saved.values["OCI_CLI_KEY"] == pem
    assert "GD_Secret" not in saved.values and saved.unreadable == (8,)
    assert "AUTO_UPGRADE" not in saved.values
    assert "tok" not in repr(saved)


def test_the_file_then_the_environment_then_account_conf() -> None:
    """Per variable: dns-01.conf wins, then the container's environment (an empty value there
    counts as unset), then account.conf; each set variable says where it was read."""
    section = Section("", "dns_pdns", {"PDNS_Url": "http://file:8081", "PDNS_Ttl": ""})
    environ = {"PDNS_Url": "http://env:8081", "PDNS_Token": "env-token", "PDNS_ServerId": ""}
    saved = {"PDNS_Token": "saved-token", "PDNS_ServerId": "saved-id", "PDNS_Ttl": "120"}
    filled, sources = fill(section, environ, saved)
    assert filled.values == {
        "PDNS_Url": "http://file:8081",
        "PDNS_Token": "env-token",
        "PDNS_ServerId": "saved-id",
        "PDNS_Ttl": "120",
    }
    assert sources == {
        "PDNS_Url": "dns-01.conf",
        "PDNS_Token": "environment",
        "PDNS_ServerId": "account.conf",
        "PDNS_Ttl": "account.conf",
    }


def test_only_the_plugin_s_variables_and_only_the_default_section_are_filled() -> None:
    """Other variables of the environment are not taken; a [zone …] section keeps exactly
    its own lines (its credentials are that zone's)."""
    environ = {"PATH": "/bin", "CF_Token": "env", "DO_API_KEY": "other-plugin"}
    filled, sources = fill(Section("", "dns_cf"), environ, {})
    assert filled.values == {"CF_Token": "env"} and sources == {"CF_Token": "environment"}
    zone = Section("example.net", "dns_cf", {"CF_Zone_ID": "z"})
    assert fill(zone, environ, {"CF_Token": "saved"}) == (zone, {"CF_Zone_ID": "dns-01.conf"})


def test_start_logs_where_each_credential_came_from(tmp_path: Path) -> None:
    """mailcow's setup: a 0644 dns-01.conf, the token in the environment, the URL saved by
    acme.sh: the provider is usable; one warning with the chmod, one dns01.provider line
    naming each variable's source; no value in any line."""
    conf = tmp_path / "dns-01.conf"
    conf.write_text("PDNS_ServerId=localhost\n")
    conf.chmod(0o644)
    account = tmp_path / "account.conf"
    account.write_text("SAVED_PDNS_Url='http://127.0.0.1:9'\nSAVED_PDNS_Token='saved-s3cret'\n")
    with capture_logs() as logs:
        router = build_router(
            "dns_pdns", conf, 53, environ={"PDNS_Token": "env-s3cret"}, account_conf=account
        )
    assert router.routes().default is None, router.routes().default
    [warning] = [e for e in logs if e["event"] == "dns01.config_readable"]
    assert warning["problem"].endswith(f"run chmod 600 {conf}")
    [line] = [e for e in logs if e["event"] == "dns01.provider"]
    assert line["config"] == (
        "dns_pdns with PDNS_ServerId (dns-01.conf) PDNS_Token (environment) PDNS_Url (account.conf)"
    )
    assert "s3cret" not in repr(logs) and "127.0.0.1" not in repr(logs)


def test_no_file_credentials_from_the_environment_alone(tmp_path: Path) -> None:
    """generate_config.sh's way: no dns-01.conf, the variables in the container's
    environment: usable, with one line saying the file is missing."""
    environ = {"PDNS_Url": "http://127.0.0.1:9", "PDNS_Token": "t"}
    with capture_logs() as logs:
        router = build_router("dns_pdns", tmp_path / "absent.conf", 53, environ=environ)
    assert router.routes().default is None, router.routes().default
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["dns01.config_missing"]


def test_a_provider_needing_a_package_the_image_lacks_says_which(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dns_aws needs boto3 (lexicon's route53 extra): without it the section is unusable
    with one line naming the package, instead of failing at the first order."""
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    environ = {"AWS_ACCESS_KEY_ID": "AKIA1", "AWS_SECRET_ACCESS_KEY": "s"}
    with capture_logs() as logs:
        router = build_router("dns_aws", tmp_path / "absent.conf", 53, environ=environ)
    assert router.routes().default is not None
    [line] = [e for e in logs if e["event"] == "dns01.unusable"]
    assert "needs the Python package boto3" in line["reason"]


def render() -> str:
    """The README's provider table, from the data."""
    lines = [
        "| `ACME_DNS_PROVIDER` | variables (acme.sh's names) | status |",
        "|---|---|---|",
    ]
    for row in sorted(ROWS, key=lambda r: (r.via == "none", r.name)):
        names = ", ".join(f"`{v}`" + ("¹" if v in row.own else "") for v in row.variables)
        if row.via == "none":
            status = f"not supported: {row.note}"
        else:
            via = "built in, RFC 2136" if row.via == "rfc2136" else f"lexicon `{row.provider}`"
            parts = [f"supported ({via})"]
            parts += ["tested here"] if row.tested else []
            if row.package:
                parts.append(f"needs the Python package `{row.package}`, not in the image")
            parts += [row.note] if row.note else []
            if row.ignored:
                parts.append("not used: " + ", ".join(f"`{v}`" for v in row.ignored))
            status = "; ".join(parts)
        lines.append(f"| `{row.name}` | {names} | {status} |")
    return "\n".join([BEGIN, *lines, END])


def test_the_readme_table_is_the_data_table() -> None:
    """README.md holds exactly the table made from the data (regenerate: python -m
    tests.unit.test_dns01_providers)."""
    text = README.read_text(encoding="utf-8")
    assert BEGIN in text and END in text
    shown = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert shown == render()
    assert all(f"| `{name}` |" in shown for name in PLUGINS)


def main() -> int:
    """Rewrite the README's table from the data."""
    text = README.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    README.write_text(head + render() + tail, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
