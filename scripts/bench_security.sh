#!/usr/bin/env bash
# The throughput cost of security (EXPERIMENTS.md, "Cost of authentication
# and TLS"): redis-benchmark SET and GET through the leader of a local
# 3-node sraft cluster (conf/local-3.toml, fsync on) at 1 and 64 clients,
# with security off, then "auth" (--cluster-secret-file and
# --client-password-file, the benchmark with -a), then "tls" (auth plus TLS
# on both ports, certificates from make_certs.sh, the benchmark with --tls),
# for ROUNDS rounds; same binary, same machine. Needs redis-tools, openssl.
#
#   scripts/bench_security.sh [REQUESTS] [ROUNDS]      (default 20000 2)
set -euo pipefail

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
    echo "Usage: scripts/bench_security.sh [REQUESTS] [ROUNDS]"
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REQUESTS=${1:-20000}
ROUNDS=${2:-2}
CONFIG=$ROOT/conf/local-3.toml
RUN_DIR=$ROOT/run/bench-security
export SRAFT_CONFIG=$CONFIG SRAFT_RUN_DIR=$RUN_DIR

command -v redis-benchmark >/dev/null || { echo "bench_security: redis-benchmark not found" >&2; exit 1; }
cleanup() { "$ROOT/scripts/stop_local.sh" --clean >/dev/null 2>&1 || true; }
trap cleanup EXIT

(cd "$ROOT" && cargo build --release --quiet --bin sraft)
BIN=$ROOT/target/release/sraft
export SRAFT_BIN=$BIN
SECRETS=$(mktemp -d)
trap 'cleanup; rm -rf "$SECRETS"' EXIT
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$SECRETS/cluster.secret"
PASSWORD=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$PASSWORD" >"$SECRETS/client.password"
chmod 600 "$SECRETS/cluster.secret" "$SECRETS/client.password"
"$ROOT/scripts/make_certs.sh" --out "$SECRETS/certs" 127.0.0.1 >/dev/null

row() { # mode port clients test [auth args...]
    local mode=$1 port=$2 clients=$3 t=$4 out
    shift 4
    out=$(redis-benchmark -p "$port" "$@" -t "$t" -n "$REQUESTS" -c "$clients" -r 100000 --csv 2>/dev/null | tail -n 1)
    # "test","rps","avg","min","p50","p95","p99","max"
    IFS=, read -r _ rps _ _ p50 _ p99 _ <<<"${out//\"/}"
    printf '| %s | %s | %s | %s | %s | %s |\n' "$mode" "$t" "$clients" "$rps" "$p50" "$p99"
}

# run MODE: one cluster, every row, then stop.
run() {
    local mode=$1 flags=() auth=()
    local status=()
    unset SRAFT_PASSWORD
    if [[ $mode != off ]]; then
        flags=(--cluster-secret-file "$SECRETS/cluster.secret" --client-password-file "$SECRETS/client.password")
        auth=(-a "$PASSWORD")
        export SRAFT_PASSWORD=$PASSWORD
    fi
    if [[ $mode == tls ]]; then
        local certs=$SECRETS/certs
        flags+=(--tls-cert-file "$certs/node-0.crt" --tls-key-file "$certs/node-0.key" --tls-ca-cert-file "$certs/ca.crt")
        auth+=(--tls --cacert "$certs/ca.crt")
        status=(--tls-ca-cert-file "$certs/ca.crt")
    fi
    "$ROOT/scripts/start_local.sh" "${flags[@]}" >/dev/null || true
    local leader
    leader=$("$BIN" status --config "$CONFIG" "${status[@]}" | awk '$4 == "leader" {print $1}')
    [[ -n $leader ]] || { echo "bench_security: no leader (security $mode)" >&2; exit 1; }
    for clients in 1 64; do
        for t in set get; do
            row "$mode" $((6100 + leader)) "$clients" "$t" "${auth[@]}"
        done
    done
    "$ROOT/scripts/stop_local.sh" --clean >/dev/null
}

echo "| security | test | clients | requests/s | p50 ms | p99 ms |"
echo "|---|---|---|---|---|---|"
for ((round = 1; round <= ROUNDS; round++)); do
    run off
    run auth
    run tls
done
echo
echo "load: $(uptime)"
