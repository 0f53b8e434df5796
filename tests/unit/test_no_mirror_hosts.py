"""No package mirror or registry is named in the repository (issue #15): apt's mirror comes from
the machine's apt sources, pip's index from the machine's pip configuration, and images are built
here or imported, never pulled by a name written down.

The names looked for are spelled here in pieces, so this file does not name them either.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# what a checkout holds that is not the repository (local state, caches, build output)
_LOCAL = {".git", ".venv", ".bench-venv", "build", "__pycache__", ".hypothesis"}


def _dotted(*labels: str) -> str:
    """A host name (or domain) as a regex, from its labels."""
    return r"\.".join(re.escape(label) for label in labels)


def _under(*labels: str) -> str:
    """The domain and every host under it."""
    return r"(?<![\w.-])(?:[\w-]+\.)*" + _dotted(*labels) + r"(?![\w-])"


def _host(*labels: str) -> str:
    """Exactly this host."""
    return r"(?<![\w.-])" + _dotted(*labels) + r"(?![\w-])"


# Debian's and Ubuntu's mirrors, PyPI, the image registries. `docker.io` alone is a Debian
# package name; as a registry it has a subdomain, or a slash after it (an image name).
FORBIDDEN = re.compile(
    "|".join(
        (
            _under("debian", "org"),
            _under("ubuntu", "com"),
            _under("pypi", "org"),
            _under("pythonhosted", "org"),
            _host("pypi", "python", "org"),
            r"(?<![\w.-])(?:[\w-]+\.)+" + _dotted("docker", "io") + r"(?![\w-])",
            r"(?<![\w.-])" + _dotted("docker", "io") + "/",
            _under("hub", "docker", "com"),
            _host("download", "docker", "com"),
            _under("ghcr", "io"),
            _under("quay", "io"),
            _under("gcr", "io"),
            _under("pkg", "dev"),
            _host("mcr", "microsoft", "com"),
            _host("public", "ecr", "aws"),
            _host("registry", "gitlab", "com"),
            _under("npmjs", "org"),
            _under("alpinelinux", "org"),
            # a package index given to pip by hand instead of the machine's pip configuration
            r"(?i:index[-_]url)",
            r"(?i:trusted[-_]host)",
        )
    )
)


def repository_files() -> list[Path]:
    """Every file of the checkout (tracked or new, not ignored); without git, every file but
    local state."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=False,
    )
    if listed.returncode == 0:
        names = filter(None, listed.stdout.decode().split("\0"))
        return [path for name in names if (path := REPO / name).is_file()]
    return [
        path
        for path in REPO.rglob("*")
        if path.is_file()
        and not any(part in _LOCAL or part.endswith((".egg-info", "_cache")) for part in path.parts)
    ]


def offences(text: str) -> list[str]:
    """The forbidden names in ``text``."""
    return [match.group(0) for match in FORBIDDEN.finditer(text)]


def test_the_patterns_find_mirrors_and_registries() -> None:
    """The patterns catch a mirror, a registry host, an image's registry prefix and a pip index
    option, and leave the Debian package `docker.io` and the test domains alone."""
    mirror = "http://" + ".".join(("deb", "debian", "org")) + "/debian"
    registry = ".".join(("registry-1", "docker", "io"))
    image = ".".join(("docker", "io")) + "/library/debian:bookworm-slim"
    pip = "pip install --" + "index" + "-url https://mirror.example.test/simple"
    for text in (mirror, registry, image, pip):
        assert offences(text), text
    harmless = "apt-get install docker.io docker-compose; mail.example.test; acme-sidecar-base"
    assert offences(harmless) == []


def test_no_mirror_or_registry_is_named() -> None:
    """No file of the repository names a package mirror, an image registry or a pip index."""
    files = repository_files()
    assert REPO / "README.md" in files and REPO / "tests" / "run" in files
    found = {
        str(path.relative_to(REPO)): names
        for path in files
        if (names := offences(path.read_bytes().decode(errors="replace")))
    }
    assert found == {}
