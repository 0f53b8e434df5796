#!/bin/sh
# Demo CA: starts Pebble. Its HTTPS listener needs a certificate; the first start makes one,
# signed by a small CA of its own, into the pebble-ca volume. The sidecar mounts that volume
# and trusts ca.pem (ACME_CA_BUNDLE). Names are resolved through pebble-challtestsrv
# (PEBBLE_DNS_SERVER, ip:port), which answers every name with nginx's address.
set -eu

dir=/etc/pebble-ca
mkdir -p "$dir"
if [ ! -s "$dir/ca.pem" ] || [ ! -s "$dir/listener.pem" ]; then
    tmp=$(mktemp -d)
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 \
        -subj "/CN=acme-sidecar demo: Pebble listener CA" \
        -keyout "$tmp/ca.key" -out "$tmp/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=pebble" \
        -keyout "$tmp/listener.key" -out "$tmp/listener.csr" 2>/dev/null
    printf 'subjectAltName=DNS:pebble,DNS:localhost,IP:127.0.0.1\n' >"$tmp/ext"
    openssl x509 -req -in "$tmp/listener.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
        -CAcreateserial -days 3650 -extfile "$tmp/ext" -out "$tmp/listener.pem" 2>/dev/null
    chmod 644 "$tmp/ca.pem" "$tmp/listener.pem"
    mv "$tmp/listener.key" "$tmp/listener.pem" "$dir/"
    mv "$tmp/ca.pem" "$dir/ca.pem"
    rm -rf "$tmp"
    echo "start-pebble: new listener certificate; its CA is $dir/ca.pem"
fi
exec pebble -config /etc/pebble/pebble-config.json -dnsserver "${PEBBLE_DNS_SERVER:?set PEBBLE_DNS_SERVER to the challtestsrv ip:port}"
