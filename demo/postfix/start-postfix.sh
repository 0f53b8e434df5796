#!/bin/sh
# Demo Postfix, started the way mailcow's postfix.sh does it: the snake-oil default pair when
# the volume has none, then the SNI map from the certificate volume (one line per name of each
# directory holding domains, cert.pem and key.pem: "<name> <dir>/key.pem <dir>/cert.pem",
# loaded with postmap -F), then Postfix in the foreground. `postfix reload` re-reads the
# default pair; renewed SNI certificates need `postmap -F` again (names stay as at start).
set -eu

certs=/etc/ssl/mail
map=/opt/postfix/conf/sni.map
snakeoil "$certs" "${MAILCOW_HOSTNAME:-localhost}"

: >"$map"
for dir in "$certs"/*/; do
    if [ -f "${dir}domains" ] && [ -f "${dir}cert.pem" ] && [ -f "${dir}key.pem" ]; then
        # shellcheck disable=SC2013 # domains holds names separated by blanks
        for name in $(cat "${dir}domains"); do
            echo "$name ${dir}key.pem ${dir}cert.pem" >>"$map"
        done
    fi
done
postmap -F "hash:$map"
echo "start-postfix: SNI map with $(wc -l <"$map") names"

postconf -e "myhostname = ${MAILCOW_HOSTNAME:-localhost}"
exec postfix start-fg
