#!/usr/bin/env bash
# GET throughput, ReadIndex against lease reads (docs/DESIGN.md 3.8,
# EXPERIMENTS.md 11): for each read mode, a fresh local 3-node cluster
# (release build, fsync on), a few keys written, then redis-benchmark
# `-t get` through the leader at 1 and 64 clients, each run REPEAT times.
# Ports 5470-5472 (peers) and 6470-6472 (clients), away from the other
# scripts' clusters. Needs redis-tools.
#
#   scripts/bench_reads.sh [REQUESTS [REPEAT]]   (default 20000, 3)
set -euo pipefail

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REQUESTS=${1:-20000}
REPEAT=${2:-3}
RUN_DIR=$ROOT/run/bench-reads
CONFIG=$RUN_DIR/cluster.toml
export SRAFT_CONFIG=$CONFIG SRAFT_RUN_DIR=$RUN_DIR SRAFT_METRICS_PORT=

command -v redis-benchmark >/dev/null || { echo "bench_reads: redis-benchmark not found" >&2; exit 1; }
cleanup() { "$ROOT/scripts/stop_local.sh" --clean >/dev/null 2>&1 || true; }
trap cleanup EXIT

(cd "$ROOT" && cargo build --release --quiet --bin sraft)
export SRAFT_BIN=$ROOT/target/release/sraft

echo "| read_mode | clients | run | GET/s | p50 ms | p99 ms |"
echo "|---|---|---|---|---|---|"
for mode in read_index lease; do
    mkdir -p "$RUN_DIR"
    cat >"$CONFIG" <<CONF
cluster_id = "bench-reads"
peers = ["127.0.0.1:5470", "127.0.0.1:5471", "127.0.0.1:5472"]
client_port_offset = 1000
[storage]
fsync = true
[raft]
read_mode = "$mode"
CONF
    "$ROOT/scripts/start_local.sh" >/dev/null
    leader=""
    for _ in $(seq 1 50); do
        leader=$("$SRAFT_BIN" status --config "$CONFIG" | awk '$4 == "leader" {print $1}')
        [[ -n "$leader" ]] && break
        sleep 0.1
    done
    [[ -n "$leader" ]] || { echo "bench_reads: no leader" >&2; exit 1; }
    port=$((6470 + leader))
    # Keys for `-r 1000` (key:000000000000 .. key:000000000999): GETs find values.
    redis-benchmark -p "$port" -t set -n 1000 -r 1000 -c 16 -q >/dev/null 2>&1
    for clients in 1 64; do
        for run in $(seq 1 "$REPEAT"); do
            out=$(redis-benchmark -p "$port" -t get -n "$REQUESTS" -c "$clients" -r 1000 --csv 2>/dev/null | tail -n 1)
            # "test","rps","avg","min","p50","p95","p99","max"
            IFS=, read -r _ rps _ _ p50 _ p99 _ <<<"${out//\"/}"
            printf '| %s | %s | %s | %s | %s | %s |\n' "$mode" "$clients" "$run" "$rps" "$p50" "$p99"
        done
    done
    "$ROOT/scripts/stop_local.sh" --clean >/dev/null 2>&1
done
echo
echo "load: $(uptime)"
