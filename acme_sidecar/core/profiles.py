"""What a certificate is ordered as: its ACME profile and its key type. Pure; touches nothing.

Profiles (draft-ietf-acme-profiles): the CA lists them in its directory's ``meta.profiles``;
an order names one (or none: the CA's default). Let's Encrypt's ``tlsserver`` and
``shortlived`` allow 25 names per order, ``classic`` (its default) 100. Key types are the
names of ``ACME_KEY_TYPE``; the adapters generate and recognise the keys.
"""

from __future__ import annotations

from collections.abc import Mapping

# names per order by profile; a profile not listed (and the CA's default) allows DEFAULT_NAMES
PROFILE_NAMES = {"tlsserver": 25, "shortlived": 25}
DEFAULT_NAMES = 100

KEY_TYPES = ("rsa2048", "rsa3072", "rsa4096", "ec256", "ec384")
NEW_KEY_TYPE = "ec256"  # a new volume's certificate key when ACME_KEY_TYPE is empty


def max_names(profile: str, configured: int = DEFAULT_NAMES) -> int:
    """Names per order: the profile's limit, lowered by ``ACME_MAX_NAMES``."""
    return max(1, min(configured, PROFILE_NAMES.get(profile, DEFAULT_NAMES)))


def profile_problem(profile: str, offered: Mapping[str, str] | None) -> str | None:
    """Why ``profile`` cannot be ordered from a CA offering ``offered`` (its directory's
    ``meta.profiles``: name -> description); ``None`` when it can (or none is asked for)."""
    if not profile:
        return None
    if not offered:
        return (
            f"ACME_PROFILE={profile} is set, but the CA offers no profiles; "
            "leave ACME_PROFILE empty for its default"
        )
    if profile in offered:
        return None
    listed = "; ".join(f"{name} ({text})" if text else name for name, text in offered.items())
    return f"ACME_PROFILE={profile} is not offered by the CA; it offers: {listed}"


def profile_change(ordered_with: str, wanted: str) -> str | None:
    """Why a certificate ordered with profile ``ordered_with`` ("" = the CA's default) must be
    ordered again under ``ACME_PROFILE=wanted``; ``None`` when they agree."""
    if ordered_with == wanted:
        return None
    was = ordered_with or "the CA's default"
    now = wanted or "the CA's default"
    return f"profile changed: ordered with {was}, ACME_PROFILE asks for {now}"
