"""Let's Encrypt's intermediates, as data: the CA keys a ``2 1 x`` TLSA record can pin.

Source: "Chains of Trust", https://letsencrypt.org/certificates/ (the repository
github.com/letsencrypt/website, ``content/en/certificates.md`` and the certificates under
``static/certs/gen-y/`` and ``static/certs/2024/``, as of commit b89871e, 2026-08-21). The SPKI
hashes are SHA-256 and SHA-512 over each certificate's SubjectPublicKeyInfo (DER), as a
``2 1 1`` / ``2 1 2`` record holds them; a CA's cross-signed certificates share its key.

Since 2025-11 (Generation Y) Let's Encrypt issues each certificate from one of its *active*
intermediates for the key's type, picked at random, and may move to a *backup* one at any time
without warning. The *retired* ones (R10-R14, E5-E9) issue nothing new, but certificates from
them are still served until they expire. Update this table when that page changes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Intermediate:
    """One Let's Encrypt intermediate CA: its name, key type (``rsa``/``ec``), state
    (``active``, ``backup`` or ``retired``), end of validity and its key's hashes."""

    name: str
    key: str
    state: str
    not_after: str
    spki_sha256: str
    spki_sha512: str


INTERMEDIATES = (
    Intermediate(
        "YR1",
        "rsa",
        "active",
        "2028-09-02",
        "2e8307068b6db620e4a39d068b5dee5d6ef5788cbb2c0b6d23ead84fcc17178c",
        "a90d0606d641b94aff27371f57e0be2764db4f656353be12550eadf86e8ea133"
        "4752b2c7863613a775a25ed942686480557bacb97477dc1d74f22800a0eee6a3",
    ),
    Intermediate(
        "YR2",
        "rsa",
        "active",
        "2028-09-02",
        "9d637b3d27a9e570d07607b9ccadb80a70915c7af72afce12841b1b1da825fd1",
        "b71db2ef3a7aec54f4651711b72821ecd4e4d1201df55661680dd02b067a4d69"
        "aec0e4e1569415f02ee2bef62484f3325d7d6aae34a0da2844d95bb71fa8687d",
    ),
    Intermediate(
        "YR3",
        "rsa",
        "backup",
        "2028-09-02",
        "51aaa87d984b559ac69e929f888a022d832e089ff4dba0a412b5101bca4bc799",
        "96cf1ea3990c4aa13199478f66481b3a864b0fd4a53481f37bea9c3b2a1f9ebc"
        "c73002584b1015b289109682015b330d41062988849b01ec28dd991633b0d400",
    ),
    Intermediate(
        "YE1",
        "ec",
        "active",
        "2028-09-02",
        "6ebcefb4210b088654a38b03fea3d7d1c711b4fb1ddc363a45f9b1a4e53da01e",
        "8b0a0cbbe72552e12ab3c82cf13f4793e620c17bc534561b39e92f68d875d19f"
        "8e44d1711e01ce1142cec99a69f63506075a6fdce196bfe89ecd495045121b11",
    ),
    Intermediate(
        "YE2",
        "ec",
        "active",
        "2028-09-02",
        "b3fb5d00e994cddf2cc9a4eea9f806bc5727e83cc0e4299bf956f2d524fe5376",
        "115f68647dc892788ad8be021fdea758bca54e844f4f699c6a3e296c1ccd3c6e"
        "5e4864b0d58656bec403a8ce41d96da15b8862526d547a971efcb5456bc82dfc",
    ),
    Intermediate(
        "YE3",
        "ec",
        "backup",
        "2028-09-02",
        "a698a20824be04e47a1a33c4fa488731be92011f23a31e900e2ca26c9c2acfce",
        "be2afcd44f8a4de78c679b1c653be95420de83fcbd6bf847836ced22401c0991"
        "9e937f223e93ad76bc99be2b40ead75afdd81b5a981328107ec694ddb42a84d8",
    ),
    Intermediate(
        "R10",
        "rsa",
        "retired",
        "2027-03-12",
        "2bbad93ab5c79279ec121507f272cbe0c6647a3aae52e22f388afab426b4adba",
        "86fb010ee652f162e22ba2ba48e45d3a19ee557ab8d2601aabd62c993a814174"
        "67bf9a8c50ba03f2315dfbb028478b22923bd87e3bbeeb02fc1f69104782eea4",
    ),
    Intermediate(
        "R11",
        "rsa",
        "retired",
        "2027-03-12",
        "6ddac18698f7f1f7e1c69b9bce420d974ac6f94ca8b2c761701623f99c767dc7",
        "8854317b0a187b35956b5fd361f6101c86be4741107be8847ef4e3f48abf5320"
        "0f65414c281fbdf08218ff14d15d6d1c5f2e9a1f09d7ce39d0ecf6adb654ea4a",
    ),
    Intermediate(
        "R12",
        "rsa",
        "retired",
        "2027-03-12",
        "919c0df7a787b597ed056ace654b1de9c0387acf349f73734a4fd7b58cf612a4",
        "661ba3b2ba5c26c64cfca723320b98984ae813d89ec8a6a0d4845d850197c2fa"
        "00add80db09b4785d8bd1ecfc518ee4ad6d0989a48e1325bfc1a99208e23538e",
    ),
    Intermediate(
        "R13",
        "rsa",
        "retired",
        "2027-03-12",
        "025490860b498ab73c6a12f27a49ad5fe230fafe3ac8f6112c9b7d0aad46941d",
        "e19500a5a83e36d3529bcbcc2d07472f81d5e7c9a8032c00a98996f35f32123e"
        "d7093eeb789396c8603bfbe68ab6686e2b52c7baaa89043c74c5eed055dea95c",
    ),
    Intermediate(
        "R14",
        "rsa",
        "retired",
        "2027-03-12",
        "f1647a5ee3efac54c892e930584fe47979b7acd1c76c1271bca1c5076d869888",
        "3b4921b5fcb35dd660b8f8b5944d2506d389d4367981b38620b48a5d07334378"
        "590ba3f240aa7b64beea5d5489add8039a906e5ff4da3062789660e33e98f2d4",
    ),
    Intermediate(
        "E5",
        "ec",
        "retired",
        "2027-03-12",
        "3586d4ecf070578cbd27aedce20b964e48bc149faeb9dad72f46b857869172b8",
        "a1ef14fea3ca15a552d42665d2fe685672cfdd903de4b370b0d7d87c6d31b5df"
        "07142483f36e0e15e16b58f9ba1cbdeeebd4bcb8d74ab7ea32a087db2105f402",
    ),
    Intermediate(
        "E6",
        "ec",
        "retired",
        "2027-03-12",
        "d016e1fe311948aca64f2de44ce86c9a51ca041df6103bb52a88eb3f761f57d7",
        "f8a2b4e23e82a4494e9998fcc4242bef1277656a118beede55ddfadcb82e20c5"
        "dc036dcb3b6c48d2ce04e362a9f477c82ad5a557b06b6f33b45ca6662b37c1c9",
    ),
    Intermediate(
        "E7",
        "ec",
        "retired",
        "2027-03-12",
        "cbbc559b44d524d6a132bdac672744da3407f12aae5d5f722c5f6c7913871c75",
        "7d779dd26d37ca5a72fd05f1b815a06078c8e09777697c651fbe012c8d2894e0"
        "48fcfe24160ee1562602240b6bef44e00f2b7340c84546d6110842bbdeb484a7",
    ),
    Intermediate(
        "E8",
        "ec",
        "retired",
        "2027-03-12",
        "885bf0572252c6741dc9a52f5044487fef2a93b811cdedfad7624cc283b7cdd5",
        "89d8f1d26d16e94600405c8585e40ad1ecde0023cd447e8b39fd90bc8b482c7b"
        "d68d963156e5037023b144ec4caa03af8213296f3a498f69dee691a95a92d722",
    ),
    Intermediate(
        "E9",
        "ec",
        "retired",
        "2027-03-12",
        "f1440a9b76e1e41e53a4cb461329bf6337b419726be513e42e19f1c691c5d4b2",
        "61192edc98e0a4efddd151a2147b9f52128584e7f8e06d5e294888ba2214fdfe"
        "a7f489032afbdace4a3d97420cbe9c36fac209ccf8ec9d0977dc4ef239434243",
    ),
)


def issuing(key: str) -> tuple[Intermediate, ...]:
    """The intermediates a new certificate with a ``key`` (``rsa``/``ec``) key may come from:
    the active ones and the backups."""
    return tuple(i for i in INTERMEDIATES if i.key == key and i.state != "retired")


def by_key(spki_sha256: str) -> Intermediate | None:
    """The intermediate with this key (SHA-256 of its SPKI, hex), or None: not Let's Encrypt's."""
    return next((i for i in INTERMEDIATES if i.spki_sha256 == spki_sha256.lower()), None)
