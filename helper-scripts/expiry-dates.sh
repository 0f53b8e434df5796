#!/usr/bin/env bash
# Print the not-after date each service actually serves, per certificate (SNI name).
#
# Usage: helper-scripts/expiry-dates.sh [HOST] [CERT_DIR]
#   HOST      the server name (default: MAILCOW_HOSTNAME from ./mailcow.conf); the address
#             connected to is CONNECT_TO when set, else HOST
#   CERT_DIR  the certificate volume (default: data/assets/ssl); one SNI name per certificate
#             directory is tried, plus the hostname itself.
# Ports: SMTP 25 and 587 (STARTTLS), 465 (TLS); IMAP 143 (STARTTLS), 993 (TLS); HTTPS 443.
# mailcow.conf's SMTP_PORT, SUBMISSION_PORT, SMTPS_PORT, IMAP_PORT, IMAPS_PORT and HTTPS_PORT
# (or the same environment variables) change them.
set -uo pipefail

if [[ -f mailcow.conf ]]; then
    # shellcheck disable=SC1091
    source mailcow.conf
fi
host=${1:-${MAILCOW_HOSTNAME:-}}
cert_dir=${2:-data/assets/ssl}
if [[ -z $host ]]; then
    echo "usage: $0 HOST [CERT_DIR]  (or run it next to mailcow.conf)" >&2
    exit 2
fi

names=("$host")
if [[ -d $cert_dir ]]; then
    for d in "$cert_dir"/*/; do
        [[ -f $d/domains && -f $d/cert.pem && -f $d/key.pem ]] || continue
        first=$(cut -d' ' -f1 "$d/domains")
        [[ $first != "$host" ]] && names+=("$first")
    done
fi

served() { # port starttls-protocol-or-empty name
    local port=$1 proto=$2 name=$3 args=()
    [[ -n $proto ]] && args=(-starttls "$proto")
    timeout 10 openssl s_client -connect "${CONNECT_TO:-$host}:$port" -servername "$name" "${args[@]}" \
        </dev/null 2>/dev/null | openssl x509 -noout -enddate 2>/dev/null | cut -d= -f2
}

echo "TLS expiry dates served by ${CONNECT_TO:-$host}:"
for name in "${names[@]}"; do
    echo "$name"
    for entry in "Postfix:${SMTP_PORT:-25}:smtp" "Postfix:${SUBMISSION_PORT:-587}:smtp" \
                 "Postfix:${SMTPS_PORT:-465}:" "Dovecot:${IMAP_PORT:-143}:imap" \
                 "Dovecot:${IMAPS_PORT:-993}:" "Nginx:${HTTPS_PORT:-443}:"; do
        IFS=: read -r service port proto <<<"$entry"
        date=$(served "$port" "$proto" "$name")
        printf '  %-8s %-4s %s\n' "$service" "$port" "${date:-no answer}"
    done
done
