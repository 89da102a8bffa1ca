#!/usr/bin/env bash
# Client benchmarks of EXPERIMENTS.md section 5: redis-benchmark against a
# local 3-node sraft cluster (fsync on), through the leader and through a
# follower, at 1 and 64 clients, and against a single redis-server on the
# same machine as the reference. Needs redis-tools and redis-server
# (apt-get install redis-tools redis-server).
#
#   scripts/bench_redis.sh [REQUESTS]      (default 20000)
set -euo pipefail

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REQUESTS=${1:-20000}
CONFIG=$ROOT/conf/local-3.toml
RUN_DIR=$ROOT/run/bench-3
REDIS_PORT=${REDIS_PORT:-6390}
export SRAFT_CONFIG=$CONFIG SRAFT_RUN_DIR=$RUN_DIR

command -v redis-benchmark >/dev/null || { echo "bench_redis: redis-benchmark not found" >&2; exit 1; }
cleanup() {
    "$ROOT/scripts/stop_local.sh" --clean >/dev/null 2>&1 || true
    if [[ -n "${REDIS_PID:-}" ]]; then
        kill "$REDIS_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

"$ROOT/scripts/start_local.sh" >/dev/null
BIN=$ROOT/target/release/sraft
leader=$("$BIN" status --config "$CONFIG" | awk '$4 == "leader" {print $1}')
follower=$(( (leader + 1) % 3 ))

row() { # label port clients test
    local out
    out=$(redis-benchmark -p "$2" -t "$4" -n "$REQUESTS" -c "$3" -r 100000 --csv 2>/dev/null | tail -n 1)
    # "test","rps","avg","min","p50","p95","p99","max"
    IFS=, read -r _ rps _ _ p50 _ p99 _ <<<"${out//\"/}"
    printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$4" "$3" "$rps" "$p50" "$p99"
}

echo "| target | test | clients | requests/s | p50 ms | p99 ms |"
echo "|---|---|---|---|---|---|"
for clients in 1 64; do
    for t in set get; do
        row "sraft leader (node $leader)" $((6100 + leader)) "$clients" "$t"
        row "sraft follower (node $follower)" $((6100 + follower)) "$clients" "$t"
    done
done

redis-server --port "$REDIS_PORT" --save '' --appendonly yes --appendfsync always \
    --dir "$(mktemp -d)" --daemonize no >/dev/null 2>&1 &
REDIS_PID=$!
for _ in $(seq 1 50); do redis-cli -p "$REDIS_PORT" PING >/dev/null 2>&1 && break; sleep 0.1; done
for clients in 1 64; do
    for t in set get; do
        row "redis-server (appendfsync always)" "$REDIS_PORT" "$clients" "$t"
    done
done
echo
echo "load: $(uptime)"
