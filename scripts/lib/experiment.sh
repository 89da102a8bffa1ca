# Shared by scripts/failover_experiment.sh and scripts/experiment_v2.sh
# (POSIX sh; source it from the project root with OUT set).
#   run_experiment NAME ARGS...   one failover-experiment run into $OUT, its
#   stderr in $OUT/logs/NAME.stderr, `uptime` before and after in $OUT/load.txt
run_experiment() {
    name=$1
    shift
    echo "== $name: before: $(uptime)" | tee -a "$OUT/load.txt"
    target/release/failover-experiment --sraft target/release/sraft --out "$OUT" "$@" \
        2> "$OUT/logs/$name.stderr" || echo "run $name failed" | tee -a "$OUT/load.txt"
    echo "== $name: after:  $(uptime)" | tee -a "$OUT/load.txt"
}
