# acme-sidecar container image.
#
# BASE_IMAGE is a Debian 12 (bookworm) root file system. Where images can be pulled this is
# debian:bookworm-slim; where they cannot (CI), helper-scripts/build-base-image.sh debootstraps
# one and `docker import`s it. Build with:
#   docker build --network host --build-arg BASE_IMAGE=<image> -t acme-sidecar .
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# python3 + venv + CA certificates; the debootstrapped base already carries them
RUN set -eux; \
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null || [ ! -e /etc/ssl/certs/ca-certificates.crt ]; then \
        apt-get update; \
        apt-get install -y --no-install-recommends python3 python3-venv ca-certificates; \
        rm -rf /var/lib/apt/lists/*; \
    fi

# exact versions of every runtime dependency (requirements.txt), then the package without deps
COPY requirements.txt /opt/acme-sidecar/requirements.txt
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
        -r /opt/acme-sidecar/requirements.txt
COPY pyproject.toml README.md LICENSE /opt/acme-sidecar/
COPY acme_sidecar /opt/acme-sidecar/acme_sidecar
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps \
        /opt/acme-sidecar \
    && rm -rf /opt/acme-sidecar/build
COPY entrypoint.sh /usr/local/bin/entrypoint.sh

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ACME_CERT_DIR=/var/lib/acme \
    ACME_WEBROOT=/var/www/acme

VOLUME ["/var/lib/acme"]
HEALTHCHECK --interval=60s --timeout=15s --start-period=180s --retries=2 \
    CMD ["acme-sidecar", "health"]
ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]
CMD ["run"]
