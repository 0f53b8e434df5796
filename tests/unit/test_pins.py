"""The image's lock (requirements.txt) and the project's declared pins agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _name(spec: str) -> str:
    return re.split(r"[=<>!~\[ ]", spec, maxsplit=1)[0].lower().replace("_", "-")


def test_every_declared_dependency_is_pinned_as_in_requirements_txt() -> None:
    """Each runtime dependency of pyproject.toml is pinned with == to the version the image
    installs from requirements.txt (a bump in one file alone fails here)."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert len(declared) >= 10
    locked = {
        _name(line): line.split("==", 1)[1].strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.lstrip().startswith("#")
    }
    for spec in declared:
        name, _, version = spec.partition("==")
        assert version, f"{spec} is not pinned with =="
        assert locked.get(_name(name)) == version, f"{spec} vs requirements.txt"
