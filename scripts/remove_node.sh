#!/usr/bin/env bash
# Removes a node from the running cluster: the leader commits the change
# (the leader itself included: it hands over first), and the removed node
# stops by itself, or is stopped here.
set -euo pipefail

usage() {
    cat <<'EOF2'
Usage: scripts/remove_node.sh [--cluster FILE | --local] ID

Removes node ID from the running cluster (DESIGN.md 8):

  1. on the first other reachable node: sraft member remove ID; the leader
     commits the new configuration (if ID is the leader, it hands over to
     its primary sub-leader once the change commits);
  2. on node ID's instance, if reachable: stop_node.sh (a running removed
     node stops by itself once it hears of its removal; this makes sure),
     and the run/node-ID.join mark of add_node.sh is deleted.

Its data directory stays; its entry in SRAFT_NODES must stay too (a node's
id is its position). Add ID to SRAFT_REMOVED in the cluster file so that
start_all.sh, stop_all.sh, status_all.sh and collect_all.sh skip it (they
would report it as down).
Works for a dead instance: step 2 is then skipped.

  --cluster FILE  cluster file (default: SRAFT_CLUSTER, else conf/cluster.env)
  --local         every node on this machine (conf/cluster-local.env)
  -h, --help      this text
EOF2
}

# shellcheck source=lib/cluster.sh
source "$(dirname "$0")/lib/cluster.sh"
parse_common_flags "$@"
parse_node_arg ${REST_ARGS[@]+"${REST_ARGS[@]}"}
ID=$NODE_ARG
load_cluster
select_nodes "$ID"

echo "node $ID: sraft member remove $ID"
node_run_elsewhere "$ID" "bin/sraft member --config conf/cluster.toml remove $ID" \
    || die "node $ID was not removed (see above); nothing was stopped"

DIR=$(install_dir "$ID")
if node_run "$ID" "cd $(sq "$DIR") && rm -f run/node-$ID.join && scripts/stop_node.sh --install-dir . --node-id $ID" </dev/null 2>/dev/null; then
    echo "node $ID: stopped"
else
    echo "node $ID: not reachable (a dead instance): nothing to stop"
fi
if ! is_removed "$ID"; then
    echo "node $ID: now add it to SRAFT_REMOVED in $CLUSTER_FILE (SRAFT_REMOVED=\"${SRAFT_REMOVED:+$SRAFT_REMOVED }$ID\"), so that the *_all.sh scripts skip it"
fi
