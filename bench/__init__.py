"""acme-sidecar against certbot and lego on the test world; run ``python -m bench.run``."""
