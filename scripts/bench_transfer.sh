#!/usr/bin/env bash
# Leadership transfer (issue 11, EXPERIMENTS.md "Leadership transfer"):
# on a local cluster (conf/local-5.toml unless SRAFT_CONFIG says otherwise;
# fsync on), TRIALS times: ask the leader to hand over to its primary
# sub-leader (RAFT TRANSFER-LEADER, what `sraft transfer-leader` sends),
# then SET through the new leader until one is acknowledged. Prints the
# time from the request to that first acknowledged write, per trial and as
# p50 / p90 / p99 / max, and the machine load. Times include starting
# redis-cli twice (printed as "client overhead"); the old leader's own
# figure (request to the new leader in its status) is printed too.
#
#   scripts/bench_transfer.sh [TRIALS]      (default 100)
set -euo pipefail

if [[ "${1:-}" == "--help" || "${1:-}" == "-h" ]]; then
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TRIALS=${1:-100}
CONFIG=${SRAFT_CONFIG:-$ROOT/conf/local-5.toml}
RUN_DIR=$ROOT/run/bench-transfer
export SRAFT_CONFIG=$CONFIG SRAFT_RUN_DIR=$RUN_DIR SRAFT_METRICS_PORT=

command -v redis-cli >/dev/null || { echo "bench_transfer: redis-cli needed (redis-tools)" >&2; exit 1; }
cleanup() { "$ROOT/scripts/stop_local.sh" --clean >/dev/null 2>&1 || true; }
trap cleanup EXIT

(cd "$ROOT" && cargo build --release --quiet --bin sraft)
BIN=$ROOT/target/release/sraft
export SRAFT_BIN=$BIN
"$ROOT/scripts/stop_local.sh" --clean >/dev/null 2>&1 || true
"$ROOT/scripts/start_local.sh" >/dev/null

now_us() { echo $(($(date +%s%N) / 1000)); }
# node -> its client port; the leader's id ("sraft status": node, client
# address, up, role, ...).
client_port() { "$BIN" status --config "$CONFIG" | awk -v n="$1" '$1 == n {sub(/.*:/, "", $2); print $2}'; }
leader() { "$BIN" status --config "$CONFIG" | awk '$4 == "leader" {print $1}'; }

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
p0=$(client_port 0)
t0=$(now_us)
redis-cli -p "$p0" PING >/dev/null
redis-cli -p "$p0" PING >/dev/null
echo "client overhead (two redis-cli runs): $((($(now_us) - t0) / 1000)) ms"

times=()
handover=()
failed=0
lead=$(leader)
for ((i = 1; i <= TRIALS; i++)); do
    lport=$(client_port "$lead")
    start=$(now_us)
    answer=$(redis-cli -p "$lport" RAFT TRANSFER-LEADER)
    if [[ $answer != OK\ node* ]]; then
        echo "trial $i: $answer" >&2
        failed=$((failed + 1))
        sleep 0.5
        lead=$(leader)
        continue
    fi
    new=$(echo "$answer" | awk '{print $3}')
    nport=$((lport - lead + new)) # client ports follow node ids here
    until [[ $(redis-cli -p "$nport" SET transfer "$i") == OK ]]; do :; done
    times+=($(($(now_us) - start)))
    # The leader's own figure: request to the new leader seen in its status.
    handover+=("$(echo "$answer" | sed -n 's/.*(after \([0-9.]*\) ms).*/\1/p')")
    lead=$new
    sleep 0.2
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%s\n' "${times[@]}" | sort -n | awk -v failed="$failed" '
    { t[NR] = $1 }
    END {
        n = NR
        if (n == 0) { print "no successful transfer"; exit 1 }
        printf "transfers: %d ok, %d failed\n", n, failed
        printf "| request -> first acknowledged write | p50 %.1f ms | p90 %.1f ms | p99 %.1f ms | max %.1f ms |\n",
            t[int((n - 1) * 0.50) + 1] / 1000, t[int((n - 1) * 0.90) + 1] / 1000,
            t[int((n - 1) * 0.99) + 1] / 1000, t[n] / 1000
    }'
printf '%s\n' "${handover[@]}" | sort -n | awk '
    { t[NR] = $1 }
    END {
        n = NR
        printf "| request -> new leader (as the old leader saw it) | p50 %.1f ms | p90 %.1f ms | p99 %.1f ms | max %.1f ms |\n",
            t[int((n - 1) * 0.50) + 1], t[int((n - 1) * 0.90) + 1], t[int((n - 1) * 0.99) + 1], t[n]
    }'
