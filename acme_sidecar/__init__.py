"""acme-sidecar: keeps the TLS certificates of a mail server stack valid over ACME.

The folders show the architecture:

- ``core``: pure decisions and values (names, discovery, validation rules, plan, state, settle)
- ``adapters``: one outside system each (MariaDB, DNS, HTTP probe, ACME, volume, Docker, TLS)
- ``shell``: one cycle as gather -> decide -> act, the daemon loop, the wiring
- ``ops``: health file, metrics, notifications, the mailcow UI, logging
- ``config``: settings from the environment and the policies cut from them
- ``cli``: the entry point, the only place that parses arguments and exits

``__version__`` is the one version source (``pyproject.toml`` reads it).
"""

__version__ = "0.2.0"
