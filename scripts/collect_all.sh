#!/usr/bin/env bash
# Fetches every node's log and metrics file over ssh into one local directory.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/collect_all.sh [--cluster FILE | --local] [--out DIR]

Copies logs/node-N.log and logs/metrics-node-N.jsonl (one JSON object per
election, promotion, leader change and sub-leader assignment) from every
node's install directory into DIR/node-N/ (default: results/ec2-<UTC time>),
and prints every leader election found: the new leader, its term, how it
won (kind: initial, subleader/crash_hint promotion, or an ordinary election)
and leader_silence_ms, the time since it last heard the old leader, on its
own clock (so clock skew between instances does not enter).

  --cluster FILE  cluster file (default: SRAFT_CLUSTER, else conf/cluster.env)
  --local         every node on this machine (SRAFT_SSH=local, conf/cluster-local.env)
  --out DIR       where to put the files
  -h, --help      this text
EOF
}

# shellcheck source=lib/cluster.sh
source "$(dirname "$0")/lib/cluster.sh"
parse_common_flags "$@"
OUT=""
set -- ${REST_ARGS[@]+"${REST_ARGS[@]}"}
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --out) OUT=${2:?--out needs a directory}; shift ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
load_cluster
select_nodes ""
OUT=${OUT:-results/ec2-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"

# shellcheck disable=SC2317  # called through for_each_node_parallel
fetch() {
    local id=$1 dir
    dir=$(install_dir "$id")
    mkdir -p "$OUT/node-$id"
    # -T /dev/null: a node with no logs yet sends an empty archive, which GNU
    # tar refuses to create from an empty list of names.
    if node_run "$id" "cd $(sq "$dir")/logs && tar -cf - -T /dev/null \$(ls node-$id.log metrics-node-$id.jsonl 2>/dev/null)" </dev/null |
        tar -C "$OUT/node-$id" -xf -; then
        local got
        got=$(cd "$OUT/node-$id" && ls)
        echo "node $id: ${got:-no logs yet}"
    else
        echo "node $id: could not fetch logs from $(node_where "$id")" >&2
        return 1
    fi
}
status=0
for_each_node_parallel fetch || status=1

echo "collected into $OUT"
echo "leaders elected (became_leader), in time order:"
shopt -s nullglob
files=("$OUT"/node-*/metrics-node-*.jsonl)
if ((${#files[@]})); then
    grep -h '"event":"became_leader"' "${files[@]}" |
        sed -E 's/.*"kind":"([^"]*)".*"leader_silence_ms":([0-9.]+|null).*"node":([0-9]+).*"term":([0-9]+).*"unix_ms":([0-9]+).*/\5 node=\3 term=\4 kind=\1 leader_silence_ms=\2/' |
        sort -n | awk '{ $1 = ""; print "  " substr($0, 2) }'
fi
exit "$status"
