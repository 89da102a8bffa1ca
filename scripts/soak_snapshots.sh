#!/usr/bin/env bash
# Snapshot soak (issue 10, EXPERIMENTS.md "Snapshots"): redis-benchmark SET
# at full rate over 100,000 random keys against the leader of a local
# 3-node cluster (conf/local-3.toml, fsync on, default snapshot policy
# unless flags say otherwise) for DURATION seconds, in 10-second slices.
# After each slice it samples every node's resident memory (ps rss) and
# data dir size (du) and counts the snapshots each node logged in the
# slice. Prints one row per slice, then start, max and end per node.
#
#   scripts/soak_snapshots.sh [DURATION_S] [extra sraft flags...]
#       (default 600; e.g. --snapshot-entries 20000)
set -euo pipefail

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
    echo "Usage: scripts/soak_snapshots.sh [DURATION_S] [extra sraft flags...]"
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${1:-600}
shift || true
CONFIG=$ROOT/conf/local-3.toml
RUN_DIR=$ROOT/run/soak-snapshots
SLICE=10
CLIENTS=${SOAK_CLIENTS:-50}
export SRAFT_CONFIG=$CONFIG SRAFT_RUN_DIR=$RUN_DIR

command -v redis-benchmark >/dev/null && command -v redis-cli >/dev/null || { echo "soak_snapshots: redis-benchmark and redis-cli needed (redis-tools)" >&2; exit 1; }
cleanup() { "$ROOT/scripts/stop_local.sh" --clean >/dev/null 2>&1 || true; }
trap cleanup EXIT

(cd "$ROOT" && cargo build --release --quiet --bin sraft)
BIN=$ROOT/target/release/sraft
export SRAFT_BIN=$BIN
"$ROOT/scripts/start_local.sh" "$@" >/dev/null
leader=$("$BIN" status --config "$CONFIG" | awk '$4 == "leader" {print $1}')
[[ -n $leader ]] || { echo "soak_snapshots: no leader" >&2; exit 1; }
port=$((6100 + leader))

pids=()
dirs=()
for n in 0 1 2; do
    pids+=("$(cat "$RUN_DIR/node-$n.pid")")
    dirs+=("$RUN_DIR/data/node-$n")
done

sample() { # -> "rss_kib,du_kib rss_kib,du_kib rss_kib,du_kib"
    local out=()
    for n in 0 1 2; do
        local rss du
        rss=$(ps -o rss= -p "${pids[$n]}" | tr -d ' ')
        du=$(du -sk "${dirs[$n]}" | cut -f1)
        out+=("$rss,$du")
    done
    echo "${out[*]}"
}

snapshots() { # node -> snapshots logged so far
    grep -c "\[SNAPSHOT\]" "$RUN_DIR/node-$1.log" || true
}

echo "leader: node $leader (client port $port), $CLIENTS clients, ${DURATION}s in ${SLICE}s slices"
echo "| t s | SET/s | snapshots in slice (n0 n1 n2) | rss MiB (n0 n1 n2) | data dir MiB (n0 n1 n2) |"
echo "|---|---|---|---|---|"
declare -a first last max before
read -ra first <<<"$(sample)"
for n in 0 1 2; do before[$n]=$(snapshots $n); done
max=("${first[@]}")
commit() { # the leader's commit index
    redis-cli -p "$port" INFO raft 2>/dev/null | tr -d '\r' | awk -F: '$1 == "commit_index" {print $2}'
}
# One benchmark for the whole run; throughput per slice is the commit
# index's progress (every SET is one entry).
redis-benchmark -p "$port" -t set -c "$CLIENTS" -r 100000 -n 2000000000 -q >/dev/null 2>&1 &
bench=$!
trap 'kill $bench 2>/dev/null; cleanup' EXIT
elapsed=0
prev=$(commit)
while ((elapsed < DURATION)); do
    sleep "$SLICE"
    now_commit=$(commit)
    rps=$(((now_commit - prev) / SLICE))
    prev=$now_commit
    elapsed=$((elapsed + SLICE))
    read -ra now <<<"$(sample)"
    snaps=()
    for n in 0 1 2; do
        total=$(snapshots $n)
        snaps+=($((total - before[n])))
        before[$n]=$total
        IFS=, read -r r d <<<"${now[$n]}"
        IFS=, read -r mr md <<<"${max[$n]}"
        max[$n]="$((r > mr ? r : mr)),$((d > md ? d : md))"
    done
    rss=() du=()
    for n in 0 1 2; do
        IFS=, read -r r d <<<"${now[$n]}"
        rss+=($((r / 1024)))
        du+=($((d / 1024)))
    done
    echo "| $elapsed | $rps | ${snaps[*]} | ${rss[*]} | ${du[*]} |"
    last=("${now[@]}")
done
echo
echo "| node | rss MiB start, max, end | data dir MiB start, max, end |"
echo "|---|---|---|"
for n in 0 1 2; do
    IFS=, read -r fr fd <<<"${first[$n]}"
    IFS=, read -r mr md <<<"${max[$n]}"
    IFS=, read -r lr ld <<<"${last[$n]}"
    echo "| $n | $((fr / 1024)), $((mr / 1024)), $((lr / 1024)) | $((fd / 1024)), $((md / 1024)), $((ld / 1024)) |"
done
echo
echo "load: $(uptime)"
