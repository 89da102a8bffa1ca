#!/usr/bin/env bash
# Client benchmarks of EXPERIMENTS.md section 5, side by side in one run:
# redis-benchmark against a local 3-node sraft cluster (fsync on), through
# the leader and through a follower, at 1 and 64 clients; a single
# redis-server with appendfsync always; and, when ETCD_BENCHMARK names
# etcd's own load generator (tools/benchmark, e.g. ../shared/tools/
# etcd-benchmark) and `etcd` is installed, a local 3-node etcd cluster
# (defaults: fsync on) through its leader: put and linearizable range.
# Needs redis-tools and redis-server (apt-get install redis-tools
# redis-server; etcd-server for etcd).
#
#   [ETCD_BENCHMARK=PATH] scripts/bench_redis.sh [REQUESTS]   (default 20000)
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

command -v redis-benchmark >/dev/null || { echo "bench_redis: redis-benchmark not found (apt-get install redis-tools)" >&2; exit 1; }
# Checked before the long sraft rows: without it redis-benchmark would spin
# on a refused port instead of failing.
command -v redis-server >/dev/null || { echo "bench_redis: redis-server not found (apt-get install redis-server)" >&2; exit 1; }
cleanup() {
    "$ROOT/scripts/stop_local.sh" --clean >/dev/null 2>&1 || true
    if [[ -n "${REDIS_PID:-}" ]]; then
        kill "$REDIS_PID" 2>/dev/null || true
    fi
    local pid
    for pid in ${ETCD_PIDS[@]+"${ETCD_PIDS[@]}"}; do kill "$pid" 2>/dev/null || true; done
    for pid in ${ETCD_PIDS[@]+"${ETCD_PIDS[@]}"}; do wait "$pid" 2>/dev/null || true; done
    if [[ -n "${ETCD_DIR:-}" ]]; then rm -rf "$ETCD_DIR"; fi
}
ETCD_PIDS=()
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
    RPS["$5/$4/$3"]=$rps
}
declare -A RPS  # "who/test/clients" -> requests/s, for the ratios at the end

echo "| target | test | clients | requests/s | p50 ms | p99 ms |"
echo "|---|---|---|---|---|---|"
for clients in 1 64; do
    for t in set get; do
        row "sraft leader (node $leader)" $((6100 + leader)) "$clients" "$t" leader
        row "sraft follower (node $follower)" $((6100 + follower)) "$clients" "$t" follower
    done
done

redis-server --port "$REDIS_PORT" --save '' --appendonly yes --appendfsync always \
    --dir "$(mktemp -d)" --daemonize no >/dev/null 2>&1 &
REDIS_PID=$!
redis_up=
for _ in $(seq 1 50); do
    if redis-cli -p "$REDIS_PORT" PING >/dev/null 2>&1; then redis_up=1; break; fi
    sleep 0.1
done
[[ -n "$redis_up" ]] || { echo "bench_redis: redis-server did not answer on port $REDIS_PORT (port taken?)" >&2; exit 1; }
for clients in 1 64; do
    for t in set get; do
        row "redis-server (appendfsync always)" "$REDIS_PORT" "$clients" "$t" redis
    done
done

# etcd 3.4, three members on loopback, its defaults (fsync on every commit),
# driven by its own benchmark tool through the leader (--target-leader).
# redis-benchmark writes 3-byte values under ~16-byte keys; the same sizes
# here. Ports below 32768 (above, outgoing connections can take them).
if [[ -n "${ETCD_BENCHMARK:-}" ]] && command -v etcd >/dev/null; then
    ETCD_DIR=$(mktemp -d)
    cluster=""
    for i in 1 2 3; do cluster+="${cluster:+,}e$i=http://127.0.0.1:2380$i"; done
    for i in 1 2 3; do
        etcd --name "e$i" --data-dir "$ETCD_DIR/e$i" \
            --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
            --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
            --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "bench-$$" \
            >"$ETCD_DIR/e$i.log" 2>&1 &
        ETCD_PIDS+=("$!")
    done
    endpoints=127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793
    for _ in $(seq 1 100); do
        "$ETCD_BENCHMARK" put --endpoints "$endpoints" --target-leader --total 1 >/dev/null 2>&1 && break
        sleep 0.2
    done
    etcd_row() { # test clients command...
        local test=$1 clients=$2 out rps p50 p99
        shift 2
        out=$("$@" --endpoints "$endpoints" --target-leader --clients "$clients" --conns "$clients" \
            --total "$REQUESTS" 2>/dev/null)
        rps=$(awk '/Requests\/sec:/ {printf "%.0f", $2}' <<<"$out")
        p50=$(awk '/ 50% in / {printf "%.2f", $3 * 1000}' <<<"$out")
        p99=$(awk '/ 99% in / {printf "%.2f", $3 * 1000}' <<<"$out")
        printf '| etcd 3.4 leader | %s | %s | %s | %s | %s |\n' "$test" "$clients" "$rps" "$p50" "$p99"
        RPS["etcd/$test/$clients"]=$rps
    }
    "$ETCD_BENCHMARK" put --endpoints "$endpoints" --target-leader --total 1 --key-size 16 --val-size 3 >/dev/null 2>&1
    for clients in 1 64; do
        etcd_row set "$clients" "$ETCD_BENCHMARK" put --key-size 16 --val-size 3 --key-space-size 100000
        etcd_row get "$clients" "$ETCD_BENCHMARK" range key --consistency l
    done
fi
# Issue 12's targets, as ratios of this run's rows.
ratio() { # label numerator denominator target
    local a=${RPS[$2]:-} b=${RPS[$3]:-}
    [[ -n $a && -n $b ]] || return 0
    awk -v a="$a" -v b="$b" -v t="$4" -v l="$1" \
        'BEGIN { r = a / b; printf "| %s | %.2f | %s | %s |\n", l, r, (t == "" ? "-" : ">= " t), (t == "" ? "" : (r >= t ? "yes" : "no")) }'
}
echo
echo "| ratio (this run) | value | target | met |"
echo "|---|---|---|---|"
ratio "SET, 1 client: sraft leader / etcd" leader/set/1 etcd/set/1 2
ratio "SET, 64 clients: sraft leader / etcd" leader/set/64 etcd/set/64 3
ratio "SET, 64 clients: sraft leader / redis-server (always)" leader/set/64 redis/set/64 0.5
ratio "SET, 64 clients: sraft follower / leader" follower/set/64 leader/set/64 0.9
ratio "GET, 64 clients: sraft leader / etcd" leader/get/64 etcd/get/64 ""
ratio "GET, 1 client: sraft leader / etcd" leader/get/1 etcd/get/1 ""
echo
echo "load: $(uptime)"
