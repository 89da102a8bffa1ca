#!/bin/sh
# EXPERIMENTS.md sections 4 and 10: every mode x fault of failover-experiment,
# one after the other, with the machine load before and after each run.
#   scripts/failover_experiment.sh [TRIALS] [OUT]
# Environment (all optional):
#   MODES="sraft seed original paper"   which rows (seed = conf/seed-timings.toml)
#   FAULTS="kill stop"                  (empty: no fault runs, e.g. zones only)
#   ZONES_TRIALS=N   also N trials per mode with SIGSTOP in three emulated
#                    zones (--zones 0,0,1,1,2: 0.1 ms within, 1.5 ms across)
#   SOAK_SECS=S      also S seconds without faults per S-Raft mode, both
#                    modes at once (same background load), counting elections
set -eu
cd "$(dirname "$0")/.."
TRIALS=${1:-200}
OUT=${2:-results}
MODES=${MODES-"sraft seed original paper"}
FAULTS=${FAULTS-"kill stop"}
ZONES_TRIALS=${ZONES_TRIALS:-0}
SOAK_SECS=${SOAK_SECS:-0}
cargo build --release --bin sraft --bin failover-experiment
# Each run's stderr (the progress and per-trial lines) goes to $OUT/logs,
# which git ignores: the CSVs and summary are the results.
mkdir -p "$OUT/logs"
. scripts/lib/experiment.sh
for mode in $MODES; do
    for fault in $FAULTS; do
        run_experiment "failover-$mode-$fault" --mode "$mode" --fault "$fault" --trials "$TRIALS"
    done
done
if [ "$ZONES_TRIALS" -gt 0 ]; then
    for mode in $MODES; do
        run_experiment "failover-$mode-stop-zones" --mode "$mode" --fault stop --trials "$ZONES_TRIALS" \
            --zones 0,0,1,1,2
    done
fi
if [ "$SOAK_SECS" -gt 0 ]; then
    echo "== soak: before: $(uptime)" | tee -a "$OUT/load.txt"
    for mode in sraft seed; do
        target/release/failover-experiment --sraft target/release/sraft --out "$OUT" \
            --mode "$mode" --soak "$SOAK_SECS" 2> "$OUT/logs/soak-$mode.stderr" &
    done
    wait
    echo "== soak: after:  $(uptime)" | tee -a "$OUT/load.txt"
    cat "$OUT"/soak-*.md | tee "$OUT/soak.md"
fi
target/release/failover-experiment --summarize "$OUT" | tee "$OUT/summary.md"
