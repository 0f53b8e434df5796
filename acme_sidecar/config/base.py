"""The model configuration every settings class shares.

The settings are plain pydantic models, validated from the dict ``settings.load_settings`` cuts
from the environment (the variables named like a field, in any case). As ``pydantic-settings``'
``BaseSettings`` did before: unknown keys are ignored, defaults are validated too, and a
validated ``Settings`` is frozen; a model's schema is built when it is first validated (the
base classes are never validated alone). pydantic-settings' environment sources were never
used, and importing it cost the daemon 1.5 MB of memory.

pydantic looks for plugins (its ``pydantic`` entry points) the first time it builds a
validator, and the module that looks imports ``importlib.metadata`` (with ``email``, ``zipfile``
and ``csv``): 1.2 MB the daemon would hold for its whole life, for plugins it never uses.
``PYDANTIC_DISABLE_PLUGINS=__all__`` is pydantic's switch for "no plugins", but the module is
imported all the same, so ``no_plugins`` sets the switch and stands in for that module with one
that finds none. pydantic is pinned (pyproject.toml); tests/unit/test_settings_memory.py holds
the stand-in to the pinned module's interface.
"""

from __future__ import annotations

import os
import sys
import types

from pydantic import ConfigDict

PLUGIN_LOADER = "pydantic.plugin._loader"


def no_plugins() -> None:
    """Tell pydantic there are no plugins, without it scanning the installed packages."""
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    if PLUGIN_LOADER in sys.modules or os.environ["PYDANTIC_DISABLE_PLUGINS"] != "__all__":
        return  # loaded already, or the environment asks for plugins: pydantic's own loader
    loader = types.ModuleType(PLUGIN_LOADER, "No pydantic plugins (acme_sidecar.config.base).")
    loader.get_plugins = tuple  # type: ignore[attr-defined]  # () : no plugins
    sys.modules[PLUGIN_LOADER] = loader


no_plugins()

SETTINGS_CONFIG = ConfigDict(
    extra="ignore",
    frozen=True,
    validate_default=True,
    arbitrary_types_allowed=True,
    defer_build=True,
)
