#!/bin/sh
# Demo consumers (Postfix, Dovecot, nginx): give the certificate volume mailcow's snake-oil
# default pair (a self-signed cert.pem and key.pem) when it has none yet, so the servers can
# start before acme-sidecar obtained the first real certificate. The consumers start in
# parallel; a lock in the volume makes exactly one of them write the pair.
# Usage: snakeoil <certificate directory> <host name>
set -eu

dir=$1
name=$2
lock=$dir/.snakeoil.lock

has_pair() { [ -s "$dir/cert.pem" ] && [ -s "$dir/key.pem" ]; }

has_pair && exit 0
mkdir -p "$dir"
exec 9>"$lock"
flock 9
# the lock file goes when we are done; whoever still waits on it re-checks under the lock
# (and finds the pair), whoever comes later finds the pair without a lock
trap 'rm -f "$lock"' EXIT
has_pair && exit 0
tmp=$(mktemp -d "$dir/.snakeoil.XXXXXX")
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=$name" \
    -addext "subjectAltName=DNS:$name" -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
chmod 600 "$tmp/key.pem"
chmod 644 "$tmp/cert.pem"
mv "$tmp/key.pem" "$dir/key.pem"
mv "$tmp/cert.pem" "$dir/cert.pem"
rmdir "$tmp"
echo "snakeoil: wrote a self-signed default certificate for $name into $dir"
