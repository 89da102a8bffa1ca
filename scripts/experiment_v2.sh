#!/bin/sh
# Experiment v2 (issue 13; EXPERIMENTS.md section 12): failover on real
# processes for every mode, sraft's and etcd's, plotted and written into
# EXPERIMENTS.md by the tool itself.
#   scripts/experiment_v2.sh [TRIALS] [OUT]       (defaults: 1000, results/v2)
# One run after the other, `uptime` before and after each in OUT/load.txt:
#   - every mode in MODES x every fault in FAULTS on the LAN layout (loopback);
#   - every mode in ZONES_MODES with SIGSTOP in three emulated zones
#     (--zones 0,0,1,1,2: 0.1 ms within a zone, 1.5 ms across; sraft modes);
# then `failover-experiment --plot OUT` (SVG CDFs, into OUT) and
# `failover-experiment --report OUT --experiments EXPERIMENTS.md`, which
# rewrites only the text between its experiment-v2 markers.
# Environment (all optional):
#   MODES="sraft seed original paper etcd etcd-fast"
#   FAULTS="kill stop"
#   ZONES_MODES="sraft seed original"     (empty: no zones runs)
#   EXPERIMENTS=EXPERIMENTS.md            the file whose v2 section is rewritten
# The etcd modes need etcd 3.4 at /usr/bin/etcd (Debian: etcd-server).
# How long (smoke run, load 4-6): about 1.2 s per trial for sraft and seed,
# 1.7 s for original and paper, 1.6 s for etcd-fast and 2.5 s for etcd
# (the heal of a killed etcd member, restart and catch-up, takes ~0.1 s).
# Over 1000 kills etcd slows to 4.4 s a trial: its WAL grows to ~120 MB a
# member and a restarted member replays what its last snapshot (every
# 100,000 entries by default) does not cover; 1000 etcd kills took 62 min.
# With the defaults (1000 trials in each of 15 runs) about 6.5 h. Nothing
# else heavy should run meanwhile: the load is recorded, not controlled.
set -eu
cd "$(dirname "$0")/.."
TRIALS=${1:-1000}
OUT=${2:-results/v2}
MODES=${MODES-"sraft seed original paper etcd etcd-fast"}
FAULTS=${FAULTS-"kill stop"}
ZONES_MODES=${ZONES_MODES-"sraft seed original"}
EXPERIMENTS=${EXPERIMENTS:-EXPERIMENTS.md}
cargo build --release --bin sraft --bin failover-experiment
# Each run's stderr (progress, one line per trial) goes to OUT/logs, which
# git ignores: the CSVs, plots and the section are the results.
mkdir -p "$OUT/logs"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo "unknown commit")
echo "MODES=\"$MODES\" FAULTS=\"$FAULTS\" ZONES_MODES=\"$ZONES_MODES\" scripts/experiment_v2.sh $TRIALS $OUT (at $commit)" \
    > "$OUT/command.txt"
. scripts/lib/experiment.sh
for mode in $MODES; do
    for fault in $FAULTS; do
        run_experiment "failover-$mode-$fault" --mode "$mode" --fault "$fault" --trials "$TRIALS"
    done
done
for mode in $ZONES_MODES; do
    run_experiment "failover-$mode-stop-zones" --mode "$mode" --fault stop --trials "$TRIALS" \
        --zones 0,0,1,1,2
done
target/release/failover-experiment --plot "$OUT"
target/release/failover-experiment --report "$OUT" --experiments "$EXPERIMENTS"
target/release/failover-experiment --summarize "$OUT" | tee "$OUT/summary.md"
