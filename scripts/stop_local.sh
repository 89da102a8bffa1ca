#!/usr/bin/env bash
# Stops the local cluster started by scripts/start_local.sh: SIGTERM to each
# recorded pid (an orderly shutdown: fsync, exit 0), SIGKILL after a grace
# period. Only processes whose pids were recorded are touched.
#
#   scripts/stop_local.sh [--clean]   (--clean also deletes data and logs)
#
# Settings (environment):
#   SRAFT_RUN_DIR  as for start_local.sh (default run/local)
#   SRAFT_GRACE_S  seconds to wait before SIGKILL (default 5)
set -euo pipefail

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN_DIR=${SRAFT_RUN_DIR:-$ROOT/run/local}
GRACE_S=${SRAFT_GRACE_S:-5}

shopt -s nullglob
pids=()
for pidfile in "$RUN_DIR"/node-*.pid; do
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid")
    fi
    rm -f "$pidfile"
done

deadline=$((SECONDS + GRACE_S))
for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "stop_local: pid $pid did not stop in ${GRACE_S}s; SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
done
echo "stopped ${#pids[@]} node(s)"

if [[ "${1:-}" == "--clean" ]]; then
    rm -rf "$RUN_DIR"
    echo "removed $RUN_DIR"
fi
