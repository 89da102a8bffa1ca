#!/usr/bin/env bash
# Stops every node of the cluster file over ssh: SIGTERM to the recorded pid,
# SIGKILL after a grace period (stop_node.sh on each node, all in parallel).
# Never by process name.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/stop_all.sh [--cluster FILE | --local] [--nodes "0 2 ..."] [--grace S] [--clean]
                           [--signal SIG]

Runs scripts/stop_node.sh --node-id N on every node at once (over ssh or the
local runner): SIGTERM to the pid in run/node-N.pid, SIGKILL if it has not
exited after S seconds (default: SRAFT_GRACE_S, else 10). Only recorded pids
that still belong to an sraft node are signalled.

  --cluster FILE  cluster file (default: SRAFT_CLUSTER, else conf/cluster.env)
  --local         every node on this machine (SRAFT_SSH=local, conf/cluster-local.env)
  --nodes LIST    only these node ids (default: all)
  --grace S       seconds between SIGTERM and SIGKILL
  --clean         also delete each stopped node's data/ and logs/ (keeps
                  bin/, conf/, scripts/); collect metrics first
  --signal SIG    send only SIG to the recorded pids (KILL = crash, STOP =
                  freeze, CONT = thaw), for failover experiments
  -h, --help      this text
EOF
}

# shellcheck source=lib/cluster.sh
source "$(dirname "$0")/lib/cluster.sh"
parse_common_flags "$@"
NODES_ARG=""
CLEAN=0
SIGNAL_ARG=""
set -- ${REST_ARGS[@]+"${REST_ARGS[@]}"}
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --nodes) NODES_ARG=${2:?--nodes needs a list of ids}; shift ;;
        --grace) SRAFT_GRACE_S=${2:?--grace needs seconds}; shift ;;
        --clean) CLEAN=1 ;;
        --signal) SIGNAL_ARG=" --signal $(sq "${2:?--signal needs a signal name}")"; shift ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
load_cluster
[[ $SRAFT_GRACE_S =~ ^[0-9]+$ ]] || die "--grace needs a whole number of seconds"
select_nodes "$NODES_ARG"

stop_one() {
    local id=$1 dir cmd
    dir=$(install_dir "$id")
    cmd="cd $(sq "$dir") 2>/dev/null || { echo \"node $id: not deployed (no install directory)\"; exit 0; }
scripts/stop_node.sh --install-dir . --node-id $id --grace $SRAFT_GRACE_S$SIGNAL_ARG"
    if ((CLEAN)); then
        cmd+=" && rm -rf data/node-$id logs/node-$id.log logs/metrics-node-$id.jsonl && echo 'node $id: removed its data and logs'"
    fi
    if ! node_run "$id" "$cmd"; then
        echo "node $id ($(node_where "$id")): stop FAILED" >&2
        return 1
    fi
}

if for_each_node_parallel stop_one; then
    if [[ -z $SIGNAL_ARG ]]; then echo "stopped node(s) ${SELECTED[*]}"; fi
else
    failed=$?
    die "$failed node(s) could not be stopped or reached"
fi
