"""The model configuration every settings class shares.

The settings are plain pydantic models, validated from the dict ``settings.load_settings`` cuts
from the environment (the variables named like a field, in any case). As ``pydantic-settings``'
``BaseSettings`` did before: unknown keys are ignored, defaults are validated too, and a
validated ``Settings`` is frozen; a model's schema is built when it is first validated (the
base classes are never validated alone). pydantic-settings' environment sources were never
used, and importing it cost the daemon 1.5 MB of memory.
"""

from __future__ import annotations

from pydantic import ConfigDict

SETTINGS_CONFIG = ConfigDict(
    extra="ignore",
    frozen=True,
    validate_default=True,
    arbitrary_types_allowed=True,
    defer_build=True,
)
