#!/usr/bin/env bash
# Makes a CA and one certificate per node with openssl, for TLS on both
# ports (docs/DESIGN.md 9, docs/EC2.md): each node certificate names the
# node's IP (peers check it, and clients connecting by IP) and serves as both
# server and client certificate (peers use mutual TLS).
#
#   scripts/make_certs.sh [--out DIR] [--days N] IP [IP ...]
#
# Writes DIR/ca.crt, DIR/ca.key and DIR/node-N.crt, DIR/node-N.key for the
# N-th IP (from 0, the node id order of the peer list). Keys get mode 0600.
# An existing CA in DIR is reused, so nodes can be added later.
set -euo pipefail

usage() {
    echo "Usage: scripts/make_certs.sh [--out DIR] [--days N] IP [IP ...]"
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
}

OUT=certs
DAYS=825
IPS=()
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --out) OUT=${2:?--out needs a directory}; shift ;;
        --days) DAYS=${2:?--days needs a number}; shift ;;
        -*) echo "make_certs: unknown option '$1' (see --help)" >&2; exit 1 ;;
        *) IPS+=("$1") ;;
    esac
    shift
done
((${#IPS[@]})) || { usage >&2; exit 1; }
command -v openssl >/dev/null || { echo "make_certs: openssl not found" >&2; exit 1; }

mkdir -p "$OUT"
umask 077
if [[ ! -f $OUT/ca.key ]]; then
    openssl req -x509 -new -nodes -newkey rsa:2048 -sha256 -days "$DAYS" \
        -subj "/CN=sraft cluster CA" -keyout "$OUT/ca.key" -out "$OUT/ca.crt" 2>/dev/null
    chmod 644 "$OUT/ca.crt"
    echo "made $OUT/ca.crt (keep $OUT/ca.key off the nodes)"
fi

id=0
for ip in "${IPS[@]}"; do
    ext=$(mktemp)
    printf '%s\n' \
        "basicConstraints = CA:FALSE" \
        "keyUsage = digitalSignature, keyEncipherment" \
        "extendedKeyUsage = serverAuth, clientAuth" \
        "subjectAltName = IP:$ip" >"$ext"
    openssl req -new -nodes -newkey rsa:2048 -subj "/CN=sraft node $id" \
        -keyout "$OUT/node-$id.key" -out "$OUT/node-$id.csr" 2>/dev/null
    openssl x509 -req -in "$OUT/node-$id.csr" -CA "$OUT/ca.crt" -CAkey "$OUT/ca.key" \
        -CAcreateserial -days "$DAYS" -sha256 -extfile "$ext" -out "$OUT/node-$id.crt" 2>/dev/null
    rm -f "$ext" "$OUT/node-$id.csr"
    chmod 600 "$OUT/node-$id.key"
    chmod 644 "$OUT/node-$id.crt"
    echo "made $OUT/node-$id.crt for $ip"
    id=$((id + 1))
done
