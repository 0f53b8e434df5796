"""acme-sidecar: keeps the TLS certificates of a mail server stack valid over ACME.

The folders show the architecture:

- ``core``: pure decisions and values (names, discovery, validation verdicts, the decision and
  the plan, the ledger and its settle rules, the budget), and the ports (``core/ports.py``)
- ``adapters``: one outside system each (MariaDB, DNS, HTTP probe, ACME, the volume, Docker, TLS)
- ``shell``: the cycle (``shell/cycle.py``: finish what is owed -> gather -> decide -> act ->
  settle), the lookups behind validation, the daemon loop
- ``ops``: health file, metrics, notifications, the mailcow UI, logging
- ``config``: settings from the environment and the policies cut from them
- ``cli``: the entry point, the only place that parses arguments and exits; ``wiring`` builds
  the adapters and hooks from the settings

The words mean one thing each: ``GLOSSARY.md`` beside this file.

``__version__`` is the one version source (``pyproject.toml`` reads it).
"""

__version__ = "0.2.0"
