#!/usr/bin/env bash
# Starts every node of the cluster file over ssh (start_node.sh on each),
# then waits for a leader and prints status_all.sh.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/start_all.sh [--cluster FILE | --local] [--nodes "0 2 ..."] [--wait S]
                            [-- extra sraft flags, e.g. --original-raft]

Runs scripts/start_node.sh --node-id N on every node (in its install
directory, over ssh or the local runner): nohup, log in logs/node-N.log, pid
in run/node-N.pid. Nodes already running are left alone. Then waits up to S
seconds (default 20; 0 = do not wait) until status_all.sh sees every node up
and exactly one leader, and prints it.

  --cluster FILE  cluster file (default: SRAFT_CLUSTER, else conf/cluster.env)
  --local         every node on this machine (SRAFT_SSH=local, conf/cluster-local.env)
  --nodes LIST    only these node ids (default: all)
  --wait S        seconds to wait for a leader (SRAFT_START_WAIT_S)
  -h, --help      this text

SRAFT_NODE_ARGS (or flags after --) are passed to every sraft, e.g.
"--original-raft" for the baseline runs. Cluster settings as for deploy_all.sh.
EOF
}

# shellcheck source=lib/cluster.sh
source "$(dirname "$0")/lib/cluster.sh"
parse_common_flags "$@"
NODES_ARG=""
WAIT_S=${SRAFT_START_WAIT_S:-20}
EXTRA=()
set -- ${REST_ARGS[@]+"${REST_ARGS[@]}"}
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --nodes) NODES_ARG=${2:?--nodes needs a list of ids}; shift ;;
        --wait) WAIT_S=${2:?--wait needs seconds}; shift ;;
        --) shift; EXTRA+=("$@"); break ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
load_cluster
select_nodes "$NODES_ARG"
[[ $WAIT_S =~ ^[0-9]+$ ]] || die "--wait needs a whole number of seconds"

node_args=""
for a in $SRAFT_NODE_ARGS ${EXTRA[@]+"${EXTRA[@]}"}; do node_args+=" $(sq "$a")"; done

failed=()
for id in "${SELECTED[@]}"; do
    dir=$(install_dir "$id")
    if ! node_run "$id" "cd $(sq "$dir") && scripts/start_node.sh --install-dir . --node-id $id${node_args:+ --$node_args}"; then
        echo "start_all: node $id ($(node_where "$id")) did not start" >&2
        failed+=("$id")
    fi
done
if ((${#failed[@]})); then
    echo "start_all: node(s) ${failed[*]} failed to start" >&2
fi

status=0
if ((WAIT_S > 0)); then
    "$(dirname "$0")/status_all.sh" --cluster "$CLUSTER_FILE" --wait "$WAIT_S" || status=$?
fi
if ((${#failed[@]})); then exit 1; fi
exit "$status"
