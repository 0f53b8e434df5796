#!/bin/sh
# Demo nginx, configured at start like mailcow's nginx bootstrap: the default server (port 443)
# serves the default pair for MAILCOW_HOSTNAME; every certificate directory holding domains,
# cert.pem and key.pem whose domains do not contain MAILCOW_HOSTNAME gets its own server
# block for its names. Port 80 serves the ACME webroot. `nginx -s reload` re-reads the files;
# new directories need a restart.
set -eu

certs=/etc/ssl/mail
hostname=${MAILCOW_HOSTNAME:-localhost}
conf=/etc/nginx/nginx.conf
snakeoil "$certs" "$hostname"

server_block() {  # <server_name list> <cert> <key> [default_server]
    cat <<BLOCK
    server {
        listen 443 ssl $4;
        server_name $1;
        ssl_certificate $2;
        ssl_certificate_key $3;
        location / { return 200 "acme-sidecar demo: \$ssl_server_name\n"; }
    }
BLOCK
}

{
    cat <<HEAD
daemon off;
worker_processes 1;
pid /run/nginx.pid;
error_log stderr notice;
events { worker_connections 256; }
http {
    access_log off;
    default_type text/plain;
    server {
        listen 80 default_server;
        server_name _;
        location ^~ /.well-known/acme-challenge/ { alias /var/www/acme/; }
        location / { return 200 "acme-sidecar demo\n"; }
    }
HEAD
    server_block "$hostname" "$certs/cert.pem" "$certs/key.pem" default_server
    for dir in "$certs"/*/; do
        if [ -f "${dir}domains" ] && [ -f "${dir}cert.pem" ] && [ -f "${dir}key.pem" ]; then
            names=$(cat "${dir}domains")
            case " $names " in *" $hostname "*) continue ;; esac
            server_block "$names" "${dir}cert.pem" "${dir}key.pem" ""
        fi
    done
    echo "}"
} >"$conf"
echo "start-nginx: $(grep -c 'listen 443' "$conf") TLS server blocks"
exec nginx
