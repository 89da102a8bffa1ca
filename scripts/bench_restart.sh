#!/usr/bin/env bash
# Restart and catch-up with a large state (issue 10, EXPERIMENTS.md
# "Snapshots"): loads KEYS distinct keys (default 1,000,000) of 100-byte
# values into a local 3-node cluster (conf/local-3.toml, fsync on), has every
# node take a snapshot (BGSAVE), then measures on a follower:
#   1. restart: kill -9, start again, time until it answers INFO with its
#      applied index at the leader's commit index (snapshot load + WAL tail);
#   2. empty-follower catch-up: kill -9, wipe its data dir, start again, time
#      until the same (InstallSnapshot from the leader, then the log).
# Also prints the snapshot size, the restore time the node logged, and the
# machine load, which decides how far the times can be trusted.
#
#   scripts/bench_restart.sh [KEYS] [ROUNDS]      (defaults 1000000, 3)
set -euo pipefail

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
KEYS=${1:-1000000}
ROUNDS=${2:-3}
LOADERS=32
CONFIG=$ROOT/conf/local-3.toml
RUN_DIR=$ROOT/run/bench-restart
export SRAFT_CONFIG=$CONFIG SRAFT_RUN_DIR=$RUN_DIR SRAFT_METRICS_PORT=

command -v redis-cli >/dev/null || { echo "bench_restart: redis-cli needed (redis-tools)" >&2; exit 1; }
cleanup() { "$ROOT/scripts/stop_local.sh" --clean >/dev/null 2>&1 || true; }
trap cleanup EXIT

(cd "$ROOT" && cargo build --release --quiet --bin sraft)
BIN=$ROOT/target/release/sraft
export SRAFT_BIN=$BIN
"$ROOT/scripts/stop_local.sh" --clean >/dev/null 2>&1 || true
"$ROOT/scripts/start_local.sh" >/dev/null

now_ms() { date +%s%3N; }
info() { # port field -> value
    redis-cli -p "$1" INFO 2>/dev/null | tr -d '\r' | awk -F: -v f="$2" '$1 == f {print $2}'
}
leader() { "$BIN" status --config "$CONFIG" | awk '$4 == "leader" {print $1}'; }

lead=$(leader)
[[ -n $lead ]] || { echo "bench_restart: no leader" >&2; exit 1; }
lport=$((6100 + lead))
follower=$(((lead + 1) % 3))
fport=$((6100 + follower))
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); leader node $lead, measured follower node $follower"

# Load: LOADERS connections, each pipelining its share of SETs (RESP built
# by awk: key-NNNNNNNN, 100-byte value).
started=$(now_ms)
per=$(((KEYS + LOADERS - 1) / LOADERS))
for ((l = 0; l < LOADERS; l++)); do
    awk -v from=$((l * per)) -v to=$(((l + 1) * per)) -v max="$KEYS" 'BEGIN {
        v = sprintf("%0100d", 0);
        if (to > max) to = max;
        for (i = from; i < to; i++) {
            k = sprintf("key-%08d", i);
            printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n", length(k), k, v;
        }
    }' | redis-cli -p "$lport" --pipe >/dev/null &
done
wait
load_ms=$(($(now_ms) - started))
last_key=$(printf "key-%08d" $((KEYS - 1)))
[[ $(redis-cli -p "$lport" EXISTS "$last_key") == 1 ]] || { echo "bench_restart: $last_key missing after the load" >&2; exit 1; }
echo "loaded $KEYS keys in ${load_ms} ms ($((KEYS * 1000 / (load_ms + 1))) SET/s)"

# Every node applies everything, then snapshots it (BGSAVE), so that the
# restart below loads the whole state from a snapshot.
commit=$(info "$lport" commit_index)
for n in 0 1 2; do
    until [[ $(info $((6100 + n)) applied_index) -ge $commit ]]; do sleep 0.2; done
    redis-cli -p $((6100 + n)) BGSAVE >/dev/null
done
for n in 0 1 2; do
    until [[ $(info $((6100 + n)) snapshot_index) -ge $commit ]]; do sleep 0.2; done
done
sleep 1
snap_bytes=$(info "$fport" snapshot_bytes)
echo "snapshots taken; follower snapshot ${snap_bytes} bytes at index $(info "$fport" snapshot_index)"
grep "\[SNAPSHOT\]" "$RUN_DIR/node-$follower.log" | tail -n 1

start_follower() {
    nohup "$BIN" --config "$CONFIG" --node-id "$follower" \
        --data-dir "$RUN_DIR/data/node-$follower" \
        --metrics-file "$RUN_DIR/metrics-$follower.jsonl" \
        >>"$RUN_DIR/node-$follower.log" 2>&1 &
    echo $! >"$RUN_DIR/node-$follower.pid"
}

# Kills the follower (-9), optionally wipes it, starts it again and prints
# the milliseconds until it has applied the leader's commit index.
measure() { # wipe(0/1)
    local target pid t0 applied
    target=$(info "$lport" commit_index)
    pid=$(cat "$RUN_DIR/node-$follower.pid")
    kill -9 "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.01; done
    [[ $1 == 1 ]] && rm -rf "$RUN_DIR/data/node-$follower"
    t0=$(now_ms)
    start_follower
    while :; do
        applied=$(info "$fport" applied_index || true)
        [[ -n $applied && $applied -ge $target ]] && break
        (($(now_ms) - t0 > 600000)) && { echo "bench_restart: no catch-up in 10 min" >&2; exit 1; }
        sleep 0.005
    done
    echo $(($(now_ms) - t0))
}

echo "| round | restart ms (kill -9 -> applied = commit) | empty follower catch-up ms | load |"
echo "|---|---|---|---|"
for ((r = 1; r <= ROUNDS; r++)); do
    restart=$(measure 0)
    catchup=$(measure 1)
    echo "| $r | $restart | $catchup | $(cut -d' ' -f1 /proc/loadavg) |"
done
echo "follower log, last install and restore lines:"
grep -E "InstallSnapshot|restored|snapshot installed|\[SNAPSHOT\]" "$RUN_DIR/node-$follower.log" | tail -n 4
