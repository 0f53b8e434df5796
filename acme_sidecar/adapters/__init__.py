"""Adapters: each wraps one outside system (MariaDB, DNS, the HTTP probe, the ACME CA, the
certificate volume, Docker, the TLS probe) behind a narrow interface and translates its
library's errors into ``acme_sidecar.core.errors``."""
