"""The settings load without pydantic's plugin scan (``config.base.no_plugins``).

pydantic imports its plugin loader (and with it ``importlib.metadata``) the first time it builds
a validator; the daemon stands in for that module with one that finds no plugins. These tests
hold the stand-in to the pinned pydantic's interface and show what it saves.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pydantic.plugin

from acme_sidecar.config.base import PLUGIN_LOADER

PROBE = """
import json, sys
from acme_sidecar.config.settings import load_settings
settings = load_settings({"MAILCOW_HOSTNAME": "mail.example.org", "DBPASS": "x"})
loader = sys.modules.get("pydantic.plugin._loader")
print(json.dumps({
    "hostname": settings.mailcow_hostname,
    "metadata": "importlib.metadata" in sys.modules,
    "stand_in": bool(loader and "acme_sidecar" in (loader.__doc__ or "")),
}))
"""


def _probe(**env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_the_pinned_pydantic_asks_its_loader_for_get_plugins_only() -> None:
    """The pinned pydantic imports one name from the loader module, ``get_plugins``, called
    without arguments: the stand-in's whole interface."""
    package = Path(pydantic.plugin.__file__).parent
    users = [
        p.name
        for p in Path(pydantic.plugin.__file__).parents[1].rglob("*.py")
        if "_loader" in p.read_text() and p.name != "_loader.py"
    ]
    assert users == ["_schema_validator.py"]
    source = (package / "_schema_validator.py").read_text()
    assert source.count("_loader") == 1
    assert "from ._loader import get_plugins\n" in source
    assert source.count("get_plugins()") == 1
    spec = importlib.util.spec_from_file_location("real_loader", package / "_loader.py")
    assert spec is not None and spec.loader is not None
    real = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real)
    assert callable(real.get_plugins)
    assert PLUGIN_LOADER == "pydantic.plugin._loader"


def test_settings_load_without_importlib_metadata() -> None:
    """A fresh process validates the settings with the stand-in, and never imports
    ``importlib.metadata`` (1.2 MB the daemon would otherwise hold)."""
    result = _probe()
    assert result == {"hostname": "mail.example.org", "metadata": False, "stand_in": True}


def test_an_admin_who_names_plugins_gets_pydantic_s_own_loader() -> None:
    """``PYDANTIC_DISABLE_PLUGINS`` set to anything but ``__all__`` leaves pydantic's loader in
    place (plugins named there are skipped, others load as pydantic documents)."""
    result = _probe(PYDANTIC_DISABLE_PLUGINS="some-plugin")
    assert result == {"hostname": "mail.example.org", "metadata": True, "stand_in": False}
