"""acme.sh's DNS plugins (``ACME_DNS_PROVIDER=dns_*``) and how the sidecar serves each: as data.

One row per plugin: the acme.sh variables it reads, the dns-lexicon provider and option each
variable feeds, which variables it cannot work without, and what the admin should know (the
README's provider table is this table, kept in step by a unit test). ``dns_nsupdate`` is served
without lexicon (RFC 2136 through dnspython); a row with ``via="none"`` is a plugin mailcow's
docs name that no dependency can serve, with the reason. Variable names are acme.sh's own (from
its ``dnsapi/dns_*.sh``); where lexicon needs a value acme.sh has no variable for, the row names
a variable of ours in ``own`` and says so; where acme.sh keeps several values in one variable
(``DA_Api``'s URL with the login inside), a ``Split`` parses it into lexicon's options. Pure
data and lookups: no I/O, no lexicon import.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

_FIELD = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class Split:
    """One acme.sh variable holding several lexicon options: ``parse`` gives their values in
    order, or ``None`` for another form; ``shape`` is the form (a value ``parse`` takes)."""

    options: tuple[str, ...]
    parse: Callable[[str], tuple[str, ...] | None]
    shape: str


@dataclass(frozen=True, slots=True)
class Plugin:
    """One acme.sh plugin. ``options``: acme.sh variable -> lexicon option (for ``dns_nsupdate``
    the setting it fills); several variables may feed one option, the first one set wins.
    ``joined``: lexicon option -> a template of variables (``{IONOS_PREFIX}.{IONOS_SECRET}``).
    ``split``: acme.sh variable -> the options its one value holds (``DA_Api``).
    ``fixed``: lexicon option -> the value used when no variable sets it. ``required``: each
    entry ``A|B`` needs one of them set. ``overrides``: when the key is set, these variables
    are not used (acme.sh prefers ``CF_Token`` to ``CF_Key``/``CF_Email``). ``ignored``:
    acme.sh variables lexicon has no use for. ``package``: a Python module lexicon needs that
    the image lacks."""

    name: str
    provider: str
    options: Mapping[str, str] = field(default_factory=dict)
    via: Literal["lexicon", "rfc2136", "none"] = "lexicon"
    required: tuple[str, ...] = ()
    joined: Mapping[str, str] = field(default_factory=dict)
    split: Mapping[str, Split] = field(default_factory=dict)
    fixed: Mapping[str, str] = field(default_factory=dict)
    overrides: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    own: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    ttl: str = ""
    package: str = ""
    tested: bool = False
    note: str = ""

    @property
    def variables(self) -> tuple[str, ...]:
        """Every variable the sidecar reads for this plugin, in the table's order."""
        from_templates = [v for t in self.joined.values() for v in _FIELD.findall(t)]
        listed = [*self.split, *self.options, *from_templates, *([self.ttl] if self.ttl else [])]
        return tuple(dict.fromkeys(listed))

    @property
    def credentials(self) -> str:
        """The variables a refused login points at (``CF_Token or CF_Key``), for a hint."""
        groups = [g.replace("|", " or ") for g in self.required if _secretish(g, self)]
        return ", ".join(groups) or "the credentials"


# lexicon options that locate rather than authenticate: a refused login does not point at them
_LOCATING = {"pdns_server", "pdns_server_id", "plesk_server", "zone_id", "resource_group"}
_LOCATING |= {"ib_host", "ib_view"}  # Infoblox's appliance and view


def _secretish(group: str, plugin: Plugin) -> bool:
    return plugin.options.get(group.split("|")[0]) not in _LOCATING


def _row(name: str, provider: str, options: dict[str, str], **kw: Any) -> Plugin:
    """A row; ``required`` defaults to every variable of ``options`` (most plugins)."""
    kw.setdefault("required", tuple(options))
    return Plugin(name, provider, options, **kw)


def _url_login(value: str) -> tuple[str, ...] | None:
    """``https://user:password@host:port`` (``DA_Api``): the URL without the login, the user
    and the password (percent-escapes undone, as curl does for acme.sh)."""
    url = urlsplit(value.strip())
    if url.scheme not in ("http", "https") or not url.hostname:
        return None
    if not url.username or not url.password:
        return None
    endpoint = urlunsplit((url.scheme, url.netloc.rpartition("@")[2], url.path.rstrip("/"), "", ""))
    return endpoint, unquote(url.username), unquote(url.password)


def _user_password(value: str) -> tuple[str, ...] | None:
    """``user:password`` (``Infoblox_Creds``), split at the first colon as HTTP Basic does."""
    user, colon, password = value.partition(":")
    return (user, password) if user and colon and password else None


# lexicon's option names most rows use (names, not secrets)
_TOKEN = "auth_token"  # noqa: S105
_USER = "auth_username"
_PASSWORD = "auth_password"  # noqa: S105

ROWS: tuple[Plugin, ...] = (
    _row("dns_ali", "aliyun", {"Ali_Key": "auth_key_id", "Ali_Secret": "auth_secret"}),
    _row("dns_arvan", "arvancloud", {"Arvan_Token": _TOKEN}),
    _row(
        "dns_aurora", "aurora", {"AURORA_Key": "auth_api_key", "AURORA_Secret": "auth_secret_key"}
    ),
    _row(
        "dns_aws", "route53",
        {"AWS_ACCESS_KEY_ID": "auth_access_key", "AWS_SECRET_ACCESS_KEY": "auth_access_secret"},
        ignored=("AWS_SESSION_TOKEN", "AWS_DNS_SLOWRATE"), package="boto3",
        note="access keys only (no session token, no instance role)",
    ),
    _row(
        "dns_azure", "azure",
        {"AZUREDNS_SUBSCRIPTIONID": "auth_subscription_id", "AZUREDNS_TENANTID": "auth_tenant_id",
         "AZUREDNS_APPID": "auth_client_id", "AZUREDNS_CLIENTSECRET": "auth_client_secret",
         "AZUREDNS_RESOURCEGROUP": "resource_group"},
        own=("AZUREDNS_RESOURCEGROUP",),
        ignored=("AZUREDNS_MANAGEDIDENTITY", "AZUREDNS_BEARERTOKEN"),
        note="a service principal only; lexicon needs the zone's resource group",
    ),
    _row(
        "dns_cf", "cloudflare",
        {"CF_Token": _TOKEN, "CF_Key": _TOKEN, "CF_Email": _USER, "CF_Zone_ID": "zone_id"},
        required=("CF_Token|CF_Key",), overrides={"CF_Token": ("CF_Key", "CF_Email")},
        ignored=("CF_Account_ID",),
        note="CF_Token (with CF_Zone_ID for a token limited to one zone), or CF_Key with CF_Email",
    ),
    _row(
        "dns_cloudns", "cloudns",
        {"CLOUDNS_AUTH_ID": "auth_id", "CLOUDNS_SUB_AUTH_ID": "auth_subid",
         "CLOUDNS_AUTH_PASSWORD": _PASSWORD},
        required=("CLOUDNS_AUTH_ID|CLOUDNS_SUB_AUTH_ID", "CLOUDNS_AUTH_PASSWORD"),
    ),
    _row(
        "dns_conoha", "conoha",
        {"CONOHA_Username": _USER, "CONOHA_Password": _PASSWORD,
         "CONOHA_TenantId": "auth_tenant_id", "CONOHA_Region": "auth_region"},
        required=("CONOHA_Username", "CONOHA_Password", "CONOHA_TenantId"),
        own=("CONOHA_Region",), ignored=("CONOHA_IdentityServiceApi",),
        note="region tyo1 unless CONOHA_Region is set",
    ),
    _row("dns_constellix", "constellix", {"CONSTELLIX_Key": _USER, "CONSTELLIX_Secret": _TOKEN}),
    _row(
        "dns_da", "directadmin", {},
        split={"DA_Api": Split(
            ("endpoint", _USER, _PASSWORD), _url_login, "https://user:password@host:port"
        )},
        required=("DA_Api",), ignored=("DA_Api_Insecure",),
        note="DA_Api as https://user:password@host:port; DirectAdmin's certificate must be "
        "valid (lexicon always checks it)",
    ),
    _row("dns_desec", "desec", {"DEDYN_TOKEN": _TOKEN}),
    _row("dns_dgon", "digitalocean", {"DO_API_KEY": _TOKEN}),
    _row("dns_dnsimple", "dnsimple", {"DNSimple_OAUTH_TOKEN": _TOKEN}),
    _row(
        "dns_dnsservices", "dnsservices",
        {"DnsServices_Username": _USER, "DnsServices_Password": _PASSWORD},
    ),
    _row("dns_dp", "dnspod", {"DP_Id": _USER, "DP_Key": _TOKEN}),
    _row("dns_dreamhost", "dreamhost", {"DH_API_KEY": _TOKEN}),
    _row("dns_duckdns", "duckdns", {"DuckDNS_Token": _TOKEN}),
    _row(
        "dns_dynu", "dynu", {"DYNU_API_KEY": _TOKEN}, own=("DYNU_API_KEY",),
        ignored=("Dynu_ClientId", "Dynu_Secret"),
        note="lexicon logs in with Dynu's API key, not acme.sh's OAuth client",
    ),
    _row("dns_easydns", "easydns", {"EASYDNS_Token": _USER, "EASYDNS_Key": _TOKEN}),
    _row("dns_euserv", "euserv", {"EUSERV_Username": _USER, "EUSERV_Password": _PASSWORD}),
    _row(
        "dns_exoscale", "exoscale",
        {"EXOSCALE_API_KEY": "auth_key", "EXOSCALE_SECRET_KEY": "auth_secret"},
    ),
    _row(
        "dns_gandi_livedns", "gandi",
        {"GANDI_LIVEDNS_TOKEN": _TOKEN, "GANDI_LIVEDNS_KEY": _TOKEN},
        required=("GANDI_LIVEDNS_TOKEN|GANDI_LIVEDNS_KEY",), fixed={"api_protocol": "rest"},
    ),
    _row(
        "dns_gcloud", "googleclouddns", {},
        joined={"auth_service_account_info": "file::{GOOGLE_APPLICATION_CREDENTIALS}"},
        required=("GOOGLE_APPLICATION_CREDENTIALS",), own=("GOOGLE_APPLICATION_CREDENTIALS",),
        ignored=("CLOUDSDK_ACTIVE_CONFIG_NAME",),
        note="acme.sh uses the gcloud CLI's login; here the path of a service-account key "
        "file (JSON) the container can read, e.g. in data/conf/acme/",
    ),
    _row("dns_gd", "godaddy", {"GD_Key": "auth_key", "GD_Secret": "auth_secret"}),
    _row(
        "dns_glesys", "glesys", {"GLESYS_PROJECT_ID": _USER, "GLESYS_API_KEY": _TOKEN},
        ttl="GLESYS_TTL", ignored=("GLESYS_API",),
    ),
    _row("dns_he", "henet", {"HE_Username": _USER, "HE_Password": _PASSWORD}),
    _row(
        "dns_hetzner", "hetzner", {"HETZNER_Token": _TOKEN},
        note="removed from acme.sh with Hetzner's old DNS API; kept for existing setups",
    ),
    _row(
        "dns_hetznercloud", "hetzner", {"HETZNER_TOKEN": _TOKEN}, ttl="HETZNER_TTL",
        ignored=("HETZNER_API", "HETZNER_MAX_ATTEMPTS"),
    ),
    _row(
        "dns_hostingde", "hostingde", {"HOSTINGDE_APIKEY": _TOKEN}, ignored=("HOSTINGDE_ENDPOINT",)
    ),
    _row(
        "dns_infoblox", "infoblox",
        {"Infoblox_Server": "ib_host", "Infoblox_View": "ib_view"},
        split={"Infoblox_Creds": Split(("auth_user", "auth_psw"), _user_password, "user:password")},
        required=("Infoblox_Creds", "Infoblox_Server"),
        note="Infoblox_Creds as user:password, Infoblox_View default unless set (as acme.sh); "
        "lexicon speaks WAPI 2.6.1 (NIOS 8.3 or later)",
    ),
    _row(
        "dns_infomaniak", "infomaniak", {"INFOMANIAK_API_TOKEN": _TOKEN}, ttl="INFOMANIAK_TTL",
        ignored=("INFOMANIAK_API_URL",),
    ),
    _row(
        "dns_internetbs", "internetbs",
        {"INTERNETBS_API_KEY": "auth_key", "INTERNETBS_API_PASSWORD": _PASSWORD},
    ),
    _row(
        "dns_inwx", "inwx", {"INWX_User": _USER, "INWX_Password": _PASSWORD},
        ignored=("INWX_Shared_Secret",), note="not for accounts with two-factor login",
    ),
    _row(
        "dns_ionos", "ionos", {}, joined={"api_key": "{IONOS_PREFIX}.{IONOS_SECRET}"},
        required=("IONOS_PREFIX", "IONOS_SECRET"),
    ),
    _row(
        "dns_joker", "joker", {"JOKER_API_KEY": _TOKEN}, own=("JOKER_API_KEY",),
        ignored=("JOKER_USERNAME", "JOKER_PASSWORD"),
        note="lexicon logs in with a Joker API key, not acme.sh's Dynamic DNS login",
    ),
    _row(
        "dns_linode", "linode", {"LINODE_API_KEY": _TOKEN},
        note="Linode's old API, deprecated by acme.sh: use dns_linode_v4",
    ),
    _row("dns_linode_v4", "linode4", {"LINODE_V4_API_KEY": _TOKEN}),
    _row("dns_lua", "luadns", {"LUA_Email": _USER, "LUA_Key": _TOKEN}),
    _row("dns_me", "dnsmadeeasy", {"ME_Key": _USER, "ME_Secret": _TOKEN}),
    _row("dns_misaka", "misaka", {"Misaka_Key": _TOKEN}),
    _row("dns_mythic_beasts", "mythicbeasts", {"MB_AK": _USER, "MB_AS": _PASSWORD}),
    _row(
        "dns_namecheap", "namecheap",
        {"NAMECHEAP_USERNAME": _USER, "NAMECHEAP_API_KEY": _TOKEN,
         "NAMECHEAP_SOURCEIP": "auth_client_ip"},
        note="NAMECHEAP_SOURCEIP is the IP address itself (acme.sh also takes a URL)",
    ),
    _row("dns_namecom", "namecom", {"Namecom_Username": _USER, "Namecom_Token": _TOKEN}),
    _row("dns_namesilo", "namesilo", {"Namesilo_Key": _TOKEN}),
    _row(
        "dns_netcup", "netcup",
        {"NC_CID": "auth_customer_id", "NC_Apikey": "auth_api_key",
         "NC_Apipw": "auth_api_password"},
    ),
    _row("dns_njalla", "njalla", {"NJALLA_Token": _TOKEN}),
    _row("dns_nsone", "nsone", {"NS1_Key": _TOKEN}),
    Plugin(
        "dns_nsupdate", "", via="rfc2136", tested=True,
        options={"NSUPDATE_SERVER": "servers", "NSUPDATE_SERVER_PORT": "port",
                 "NSUPDATE_KEY": "key file", "NSUPDATE_ZONE": "zone"},
        note="NSUPDATE_KEY is the path of the key file nsupdate -k takes",
    ),
    _row(
        "dns_oci", "oci",
        {"OCI_CLI_USER": "auth_user", "OCI_CLI_TENANCY": "auth_tenancy",
         "OCI_CLI_REGION": "auth_region", "OCI_CLI_KEY": "auth_key_content",
         "OCI_CLI_KEY_FILE": "auth_key_file", "OCI_CLI_FINGERPRINT": "auth_fingerprint",
         "OCI_CLI_CONFIG_FILE": "auth_config_file", "OCI_CLI_PROFILE": "auth_profile"},
        required=(), own=("OCI_CLI_FINGERPRINT",), package="oci",
        note="lexicon needs the key's fingerprint (acme.sh computes it)",
    ),
    _row("dns_online", "online", {"ONLINE_API_KEY": _TOKEN}),
    _row(
        "dns_ovh", "ovh",
        {"OVH_END_POINT": "auth_entrypoint", "OVH_AK": "auth_application_key",
         "OVH_AS": "auth_application_secret", "OVH_CK": "auth_consumer_key"},
        required=("OVH_AK", "OVH_AS", "OVH_CK"), fixed={"auth_entrypoint": "ovh-eu"},
        note="OVH_END_POINT is a name such as ovh-eu (the default) or ovh-ca, not a URL",
    ),
    _row(
        "dns_pdns", "powerdns",
        {"PDNS_Url": "pdns_server", "PDNS_ServerId": "pdns_server_id", "PDNS_Token": _TOKEN},
        required=("PDNS_Url", "PDNS_Token"), ttl="PDNS_Ttl", tested=True,
    ),
    _row(
        "dns_pleskxml", "plesk",
        {"pleskxml_uri": "plesk_server", "pleskxml_user": _USER, "pleskxml_pass": _PASSWORD},
    ),
    _row("dns_pointhq", "pointhq", {"PointHQ_Email": _USER, "PointHQ_Key": _TOKEN}),
    _row(
        "dns_porkbun", "porkbun",
        {"PORKBUN_API_KEY": "auth_key", "PORKBUN_SECRET_API_KEY": "auth_secret"},
    ),
    _row(
        "dns_rackspace", "rackspace",
        {"RACKSPACE_Username": _USER, "RACKSPACE_Apikey": "auth_api_key"},
    ),
    _row("dns_rage4", "rage4", {"RAGE4_USERNAME": _USER, "RAGE4_TOKEN": _TOKEN}),
    _row(
        "dns_rcode0", "rcodezero", {"RCODE0_API_TOKEN": _TOKEN}, ttl="RCODE0_TTL",
        ignored=("RCODE0_URL",),
    ),
    _row("dns_scaleway", "scaleway", {"SCALEWAY_API_TOKEN": "auth_secret_key"}),
    _row(
        "dns_tencent", "qcloud",
        {"Tencent_SecretId": "secret_id", "Tencent_SecretKey": "secret_key"},
        package="tencentcloud",
    ),
    _row("dns_timeweb", "timeweb", {"TW_Token": _TOKEN}),
    _row(
        "dns_transip", "transip", {"TRANSIP_Username": _USER, "TRANSIP_Key_File": "auth_api_key"},
        ignored=("TRANSIP_Token_Global_Key",),
        note="the key must accept this server's IP (no global-key tokens)",
    ),
    _row("dns_ultra", "ultradns", {"ULTRA_USR": _USER, "ULTRA_PWD": _PASSWORD}),
    _row("dns_vercel", "vercel", {"VERCEL_TOKEN": _TOKEN}),
    _row("dns_vultr", "vultr", {"VULTR_API_KEY": _TOKEN}),
    _row(
        "dns_wedos", "wedos", {"WEDOS_Username": _USER, "WEDOS_Wapipass": "auth_pass"},
        note="WEDOS' WAPI must allow this server's IP address",
    ),
    _row("dns_zilore", "zilore", {"Zilore_Key": "auth_key"}),
    _row("dns_zonomi", "zonomi", {"ZM_Key": _TOKEN}),
    # named in mailcow's docs or with a lexicon provider, but not servable
    Plugin(
        "dns_servercow", "", {"SERVERCOW_API_Username": "", "SERVERCOW_API_Password": ""},
        via="none", note="dns-lexicon has no servercow provider",
    ),
    Plugin(
        "dns_yc", "", {"YC_SA_ID": "", "YC_SA_Key_ID": ""}, via="none",
        note="lexicon's yandexcloud takes a short-lived IAM token, not a service-account key",
    ),
    Plugin(
        "dns_yandex360", "", {"YANDEX360_CLIENT_ID": ""}, via="none",
        note="lexicon's yandex is Yandex's closed PDD API",
    ),
)  # fmt: skip

PLUGINS: dict[str, Plugin] = {row.name: row for row in ROWS}
SUPPORTED: tuple[str, ...] = tuple(sorted(r.name for r in ROWS if r.via != "none"))


def lexicon_options(plugin: Plugin, values: Mapping[str, str]) -> dict[str, str]:
    """The lexicon options the variables set (empty values count as unset)."""
    unused = {v for key, drop in plugin.overrides.items() if values.get(key) for v in drop}
    options: dict[str, str] = {}
    for variable, option in plugin.options.items():
        if values.get(variable) and variable not in unused:
            options.setdefault(option, values[variable])
    for variable, split in plugin.split.items():
        parts = split.parse(values[variable]) if values.get(variable) else None
        for option, part in zip(split.options, parts or (), strict=False):
            options.setdefault(option, part)
    for option, template in plugin.joined.items():
        if all(values.get(v) for v in _FIELD.findall(template)):
            options[option] = _FIELD.sub(lambda m: values[m.group(1)], template)
    for option, value in plugin.fixed.items():
        options.setdefault(option, value)
    return options


def missing(plugin: Plugin, values: Mapping[str, str]) -> str | None:
    """The first required variable (or choice of them) that is not set, else ``None``."""
    for need in plugin.required:
        if not any(values.get(v) for v in need.split("|")):
            return " or ".join(need.split("|"))
    return None


def malformed(plugin: Plugin, values: Mapping[str, str]) -> str | None:
    """The first variable holding several values whose value has not the form, said as
    ``DA_Api as https://user:password@host:port`` (never the value), else ``None``."""
    for variable, split in plugin.split.items():
        if values.get(variable) and split.parse(values[variable]) is None:
            return f"{variable} as {split.shape}"
    return None


def unsupported(name: str) -> str:
    """One line for a plugin the sidecar cannot serve: why, and the nearest it can."""
    import difflib  # only for this message: not loaded at every start

    shown = name or "(empty)"
    row = PLUGINS.get(name)
    why = f" ({row.note})" if row is not None and row.note else ""
    # by acme.sh's name and by lexicon's (dns_route53 finds dns_aws, dns_godaddy dns_gd)
    words = {PLUGINS[s].provider: s for s in SUPPORTED if PLUGINS[s].provider}
    words.update({s.removeprefix("dns_"): s for s in SUPPORTED})
    near = difflib.get_close_matches(name.removeprefix("dns_"), words, n=6, cutoff=0.0)
    nearest = ", ".join(list(dict.fromkeys(words[w] for w in near))[:3])
    return (
        f"ACME_DNS_PROVIDER {shown} is not supported{why}; nearest supported: {nearest} "
        f"({len(SUPPORTED)} in all, listed in the README's DNS-01 provider table)"
    )
