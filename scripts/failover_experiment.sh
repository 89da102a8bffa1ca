#!/bin/sh
# EXPERIMENTS.md section 4: every mode x fault of failover-experiment, one
# after the other, with the machine load before and after each run.
#   scripts/failover_experiment.sh [TRIALS] [OUT]
set -eu
TRIALS=${1:-200}
OUT=${2:-results}
cargo build --release --bin sraft --bin failover-experiment
# Each run's stderr (the progress and per-trial lines) goes to $OUT/logs,
# which git ignores: the CSVs and summary are the results.
mkdir -p "$OUT/logs"
for mode in sraft original paper; do
    for fault in kill stop; do
        echo "== $mode $fault: before: $(uptime)" | tee -a "$OUT/load.txt"
        target/release/failover-experiment --sraft target/release/sraft \
            --mode "$mode" --fault "$fault" --trials "$TRIALS" --out "$OUT" \
            2> "$OUT/logs/failover-$mode-$fault.stderr" || echo "run $mode $fault failed" | tee -a "$OUT/load.txt"
        echo "== $mode $fault: after:  $(uptime)" | tee -a "$OUT/load.txt"
    done
done
target/release/failover-experiment --summarize "$OUT" | tee "$OUT/summary.md"
