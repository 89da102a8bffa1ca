#!/usr/bin/env bash
# SET through the leader against SET through a follower (issue 12): for each
# sraft binary given, a fresh local 3-node cluster (fsync on, loopback), then
# redis-benchmark SET with random keys at CLIENTS clients against the
# leader's client port and a follower's. Give two binaries (say, one built
# from main and one from a branch) to compare them in the same minute.
# Needs redis-benchmark and redis-cli (apt-get install redis-tools).
#
#   scripts/bench_forward.sh BIN [BIN ...]
#   environment: REQUESTS (20000), CLIENTS (64), PEER_PORT (23100; client
#   ports are peer + 1000), ROUNDS (1: runs of every binary, interleaved),
#   VALUE_BYTES (3: redis-benchmark's default value size)
set -euo pipefail

if [[ $# -eq 0 || "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi

REQUESTS=${REQUESTS:-20000}
CLIENTS=${CLIENTS:-64}
PEER_PORT=${PEER_PORT:-23100}
ROUNDS=${ROUNDS:-1}
VALUE_BYTES=${VALUE_BYTES:-3}
command -v redis-benchmark >/dev/null || { echo "bench_forward: redis-benchmark not found" >&2; exit 1; }
command -v redis-cli >/dev/null || { echo "bench_forward: redis-cli not found" >&2; exit 1; }

PIDS=()
DIR=""
stop_cluster() {
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
    [[ -n $DIR ]] && rm -rf "$DIR"
    DIR=""
}
trap stop_cluster EXIT

peers="127.0.0.1:$PEER_PORT,127.0.0.1:$((PEER_PORT + 1)),127.0.0.1:$((PEER_PORT + 2))"

start_cluster() { # bin
    DIR=$(mktemp -d /tmp/sraft-bench-forward.XXXXXX)
    for i in 0 1 2; do
        "$1" --node-id "$i" --peers "$peers" --data-dir "$DIR/node-$i" \
            >"$DIR/node-$i.log" 2>&1 &
        PIDS+=($!)
    done
}

leader_of() { # prints the node id every node agrees leads, or nothing
    local i
    for i in 0 1 2; do
        if redis-cli -p $((PEER_PORT + 1000 + i)) INFO raft 2>/dev/null | grep -q '^role:leader'; then
            echo "$i"
            return
        fi
    done
}

rps() { # port
    local out
    out=$(redis-benchmark -p "$1" -t set -n "$REQUESTS" -c "$CLIENTS" -d "$VALUE_BYTES" -r 100000 --csv 2>/dev/null | tail -n 1)
    IFS=, read -r _ rps _ <<<"${out//\"/}"
    echo "$rps"
}

echo "| binary | SET via leader (req/s) | SET via follower (req/s) | follower/leader |"
echo "|---|---|---|---|"
for _ in $(seq 1 "$ROUNDS"); do
    for bin in "$@"; do
        start_cluster "$bin"
        leader=""
        for _ in $(seq 1 100); do
            leader=$(leader_of)
            [[ -n $leader ]] && break
            sleep 0.1
        done
        [[ -n $leader ]] || { echo "bench_forward: no leader with $bin" >&2; exit 1; }
        follower=$(( (leader + 1) % 3 ))
        # Until the follower knows the leader, its requests would wait.
        for _ in $(seq 1 100); do
            redis-cli -p $((PEER_PORT + 1000 + follower)) SET warm up 2>/dev/null | grep -q OK && break
            sleep 0.1
        done
        via_leader=$(rps $((PEER_PORT + 1000 + leader)))
        via_follower=$(rps $((PEER_PORT + 1000 + follower)))
        ratio=$(awk -v f="$via_follower" -v l="$via_leader" 'BEGIN { printf "%.2f", f / l }')
        echo "| $bin | $via_leader | $via_follower | $ratio |"
        stop_cluster
    done
done
echo
echo "($CLIENTS clients, $REQUESTS requests each, $VALUE_BYTES-byte values, random keys; load: $(uptime | sed 's/.*load/load/'))"
