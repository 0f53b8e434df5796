"""``python -m acme_sidecar``: the same entry point as the ``acme-sidecar`` console script."""

from acme_sidecar.cli import main

raise SystemExit(main())
