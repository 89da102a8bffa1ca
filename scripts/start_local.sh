#!/usr/bin/env bash
# Starts a local S-Raft cluster on loopback: builds sraft in release mode,
# then starts every node of the cluster file in the background with nohup,
# each logging to its own file, and prints the cluster status.
#
#   scripts/start_local.sh [extra sraft flags, e.g. --original-raft]
#
# Settings (environment):
#   SRAFT_CONFIG   cluster file            (default conf/local-5.toml)
#   SRAFT_RUN_DIR  logs, pids, data, metrics (default run/local)
#   SRAFT_BIN      prebuilt binary; skips the build
#   SRAFT_METRICS_PORT  node N serves Prometheus metrics on 127.0.0.1:(this + N)
#                  (default 7000; empty: no metrics endpoint)
set -euo pipefail

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CONFIG=${SRAFT_CONFIG:-$ROOT/conf/local-5.toml}
RUN_DIR=${SRAFT_RUN_DIR:-$ROOT/run/local}
METRICS_PORT=${SRAFT_METRICS_PORT-7000}

if [[ -z "${SRAFT_BIN:-}" ]]; then
    echo "building sraft (release)..."
    (cd "$ROOT" && cargo build --release --quiet --bin sraft)
    SRAFT_BIN=$ROOT/target/release/sraft
fi
[[ -x "$SRAFT_BIN" ]] || { echo "start_local: no executable at $SRAFT_BIN" >&2; exit 1; }
[[ -f "$CONFIG" ]] || { echo "start_local: no cluster file $CONFIG" >&2; exit 1; }

mkdir -p "$RUN_DIR"
# The node count comes from the cluster file, through sraft itself.
NODES=$("$SRAFT_BIN" status --config "$CONFIG" --json 2>/dev/null | grep -o '"node":[0-9]*' | wc -l || true)
if [[ "$NODES" -lt 1 ]]; then
    echo "start_local: cannot read the node list from $CONFIG" >&2
    "$SRAFT_BIN" status --config "$CONFIG" >&2 || true
    exit 1
fi

for ((id = 0; id < NODES; id++)); do
    pidfile=$RUN_DIR/node-$id.pid
    if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "start_local: node $id already running (pid $(cat "$pidfile")); run scripts/stop_local.sh first" >&2
        exit 1
    fi
done

for ((id = 0; id < NODES; id++)); do
    metrics_args=()
    if [[ -n "$METRICS_PORT" ]]; then
        metrics_args=(--metrics-addr "127.0.0.1:$((METRICS_PORT + id))")
    fi
    nohup "$SRAFT_BIN" --config "$CONFIG" --node-id "$id" \
        --data-dir "$RUN_DIR/data/node-$id" \
        --metrics-file "$RUN_DIR/metrics-$id.jsonl" "${metrics_args[@]}" "$@" \
        >>"$RUN_DIR/node-$id.log" 2>&1 &
    echo $! >"$RUN_DIR/node-$id.pid"
done

# Wait (up to 10 s) for a leader; a node that exits at once is reported.
for _ in $(seq 1 100); do
    sleep 0.1
    for ((id = 0; id < NODES; id++)); do
        if ! kill -0 "$(cat "$RUN_DIR/node-$id.pid")" 2>/dev/null; then
            echo "start_local: node $id exited; last lines of $RUN_DIR/node-$id.log:" >&2
            tail -n 5 "$RUN_DIR/node-$id.log" >&2
            exit 1
        fi
    done
    if "$SRAFT_BIN" status --config "$CONFIG" 2>/dev/null | grep -Eq '^[0-9]+ +[^ ]+ +up +leader '; then
        break
    fi
done

"$SRAFT_BIN" status --config "$CONFIG" || true
cat <<INFO

$NODES nodes running; logs, pids, data and metrics in $RUN_DIR
  tail -f $RUN_DIR/node-*.log
  $SRAFT_BIN status --config $CONFIG
  redis-cli -p <client port> SET k v      (or: $SRAFT_BIN client --config $CONFIG set k v)
INFO
if [[ -n "$METRICS_PORT" ]]; then
    echo "  curl -s 127.0.0.1:$METRICS_PORT/metrics         (node N: port $METRICS_PORT + N)"
fi
echo "  scripts/stop_local.sh"
