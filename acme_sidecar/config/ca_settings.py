"""The settings of the CA and what is asked of it: the directory (``DIRECTORY_URL``,
``LE_STAGING``; https unless ``ACME_ALLOW_HTTP_CA=y``, a test CA), profile, key type and reuse,
External Account Binding (EAB).

A base class of ``Settings``: the same environment, validated the same way. The EAB HMAC key is
a secret: never echoed in an error (``settings.HIDDEN``) nor logged.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationInfo, field_validator, model_validator

from acme_sidecar.config.base import SETTINGS_CONFIG
from acme_sidecar.config.values import yes_no
from acme_sidecar.core.profiles import KEY_TYPES

LE_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
LE_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"


def eab_key_bytes(text: str) -> bytes:
    """The HMAC key of ``ACME_EAB_HMAC_KEY`` (base64url, padding optional); ``ValueError``."""
    value = text.strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]+=*", value):
        raise ValueError("must be the base64url HMAC key your CA gave (letters, digits, - and _)")
    try:
        key = base64.urlsafe_b64decode(value.rstrip("=") + "=" * (-len(value.rstrip("=")) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("must be the base64url HMAC key your CA gave") from None
    if not key:
        raise ValueError("must be the base64url HMAC key your CA gave, not empty")
    return key


class CaSettings(BaseModel):
    """ACME_PROFILE, ACME_KEY_TYPE, ACME_KEY_REUSE, ACME_EAB_KID, ACME_EAB_HMAC_KEY and
    ACME_ALLOW_HTTP_CA."""

    model_config = SETTINGS_CONFIG

    acme_profile: str = ""  # "" = the CA's default profile
    acme_key_type: str = ""  # "" = keep the volume's key type (a new volume: ec256)
    acme_key_reuse: bool = True
    acme_eab_kid: str = ""
    acme_eab_hmac_key: SecretStr = SecretStr("")
    # an http:// DIRECTORY_URL is refused unless this is y (a test CA such as Pebble in plain
    # http); checked in ``Settings`` (this field is validated before DIRECTORY_URL)
    acme_allow_http_ca: bool = False
    le_staging: bool = False  # a mailcow flag: see settings.MAILCOW_FLAGS
    directory_url: str = ""

    @field_validator("directory_url")
    @classmethod
    def _directory_url(cls, value: str, info: ValidationInfo) -> str:
        text = value.strip()
        if text and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", text):
            raise ValueError("must be an http:// or https:// URL")
        if (
            text.lower().startswith("http://")
            and not info.data.get("acme_allow_http_ca")
            and not info.data.get("le_staging")  # LE staging wins: the value is not used
        ):
            raise ValueError(
                "the ACME directory must be an https:// URL (over plain http anyone on the path "
                "can change what the CA sends), or set ACME_ALLOW_HTTP_CA=y for a test CA"
            )
        return text

    @property
    def directory(self) -> str:
        """The ACME directory URL: LE staging wins over DIRECTORY_URL, then LE production."""
        if self.le_staging:
            return LE_STAGING
        return self.directory_url or LE_PRODUCTION

    @field_validator("acme_profile")
    @classmethod
    def _profile(cls, value: str) -> str:
        text = value.strip()
        if text and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", text):
            raise ValueError(
                "must be a profile name the CA lists (such as classic, tlsserver or "
                "shortlived), or empty for the CA's default"
            )
        return text

    @field_validator("acme_key_type", mode="before")
    @classmethod
    def _key_type(cls, value: Any) -> str:
        text = str(value).strip().lower()
        if text and text not in KEY_TYPES:
            raise ValueError(
                f"must be one of {', '.join(KEY_TYPES)}, or empty to keep the type of the key "
                "in the volume (ec256 for a new volume)"
            )
        return text

    @field_validator("acme_key_reuse", mode="before")
    @classmethod
    def _reuse(cls, value: Any) -> bool:
        try:
            return bool(yes_no(value)) if str(value).strip() else True
        except ValueError:
            raise ValueError(
                "use y (one key across renewals: TLSA 3 1 1 stays valid) or n (a fresh key "
                "for every certificate)"
            ) from None

    @field_validator("acme_allow_http_ca", mode="before")
    @classmethod
    def _allow_http(cls, value: Any) -> bool:
        try:
            return bool(yes_no(value))
        except ValueError:
            raise ValueError(
                "use y (a test CA: DIRECTORY_URL may be http://) or n (the default: https only)"
            ) from None

    @field_validator("acme_eab_kid")
    @classmethod
    def _kid(cls, value: str) -> str:
        text = value.strip()
        if text and not re.fullmatch(r"[!-~]{1,256}", text):
            raise ValueError("must be the key identifier your CA gave (printable, no spaces)")
        return text

    @field_validator("acme_eab_hmac_key", mode="before")
    @classmethod
    def _hmac(cls, value: Any) -> str:
        text = (value.get_secret_value() if isinstance(value, SecretStr) else str(value)).strip()
        if text:
            eab_key_bytes(text)
        return text

    @model_validator(mode="after")
    def _eab_pair(self) -> CaSettings:
        if bool(self.acme_eab_kid) != bool(self.acme_eab_hmac_key.get_secret_value()):
            raise ValueError(
                "ACME_EAB_KID and ACME_EAB_HMAC_KEY go together: set both (from your CA "
                "account) or neither"
            )
        return self

    @property
    def eab(self) -> tuple[str, str] | None:
        """(key identifier, base64url HMAC key) for External Account Binding, or None."""
        key = self.acme_eab_hmac_key.get_secret_value().rstrip("=")
        return (self.acme_eab_kid, key) if self.acme_eab_kid and key else None
