#!/bin/sh
# Demo Dovecot, started the way mailcow's docker-entrypoint.sh does it: the snake-oil default
# pair when the volume has none, then one local_name block per name of each certificate
# directory (domains, cert.pem and key.pem present), then Dovecot in the foreground.
# `doveadm reload` re-reads the files; new directories need a restart.
set -eu

certs=/etc/ssl/mail
sni=/etc/dovecot/sni.conf
snakeoil "$certs" "${MAILCOW_HOSTNAME:-localhost}"

: >"$sni"
for dir in "$certs"/*/; do
    if [ -f "${dir}domains" ] && [ -f "${dir}cert.pem" ] && [ -f "${dir}key.pem" ]; then
        # shellcheck disable=SC2013 # domains holds names separated by blanks
        for name in $(cat "${dir}domains"); do
            printf 'local_name %s {\n  ssl_cert = <%scert.pem\n  ssl_key = <%skey.pem\n}\n' \
                "$name" "$dir" "$dir" >>"$sni"
        done
    fi
done
echo "start-dovecot: $(grep -c '^local_name' "$sni" || true) local_name blocks"
exec dovecot -F
