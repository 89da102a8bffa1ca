#!/usr/bin/env bash
# Adds a node to a running cluster: starts it with --join on its instance,
# then has the leader add it (as a learner, promoted once caught up).
set -euo pipefail

usage() {
    cat <<'EOF2'
Usage: scripts/add_node.sh [--cluster FILE | --local] [--learner] ID

Adds node ID of the cluster file to the running cluster (DESIGN.md 8):

  1. on node ID's instance: start_node.sh --node-id ID -- --join --host IP
     --port P, where IP:P is its entry in SRAFT_NODES; the flags are kept in
     run/node-ID.join there, so that start_all.sh starts it the same way
     from then on (a joined node is not in the original peer list);
  2. on the first other reachable node: sraft member add ID IP:P, which
     returns once the new node votes (it catches up as a learner first), or
     fails with the reason, the cluster then unchanged.

Before: launch the instance, append its private IP to SRAFT_NODES (its
position there is its id, which no member may have), and install it with
  scripts/deploy_all.sh --nodes ID
To replace a failed node: add the new one, then scripts/remove_node.sh OLD.

  --cluster FILE  cluster file (default: SRAFT_CLUSTER, else conf/cluster.env)
  --local         every node on this machine (conf/cluster-local.env)
  --learner       keep it a learner (receives the log, never votes)
  -h, --help      this text
EOF2
}

# shellcheck source=lib/cluster.sh
source "$(dirname "$0")/lib/cluster.sh"
parse_common_flags "$@"
FLAGS_OK="--learner"
parse_node_arg ${REST_ARGS[@]+"${REST_ARGS[@]}"}
ID=$NODE_ARG
LEARNER=${FLAG_learner:+--learner}
load_cluster
select_nodes "$ID"
ADDR=${NODE_HOST[ID]}:${NODE_PORT[ID]}
DIR=$(install_dir "$ID")

echo "node $ID ($ADDR): starting with --join on $(node_where "$ID")"
JOIN_ARGS="--join --host ${NODE_HOST[ID]} --port ${NODE_PORT[ID]}"
node_run "$ID" "cd $(sq "$DIR") && mkdir -p run && echo $(sq "$JOIN_ARGS") > run/node-$ID.join && scripts/start_node.sh --install-dir . --node-id $ID" </dev/null \
    || die "node $ID did not start (is it installed? scripts/deploy_all.sh --nodes $ID)"

# The leader adds it; any other reachable member finds the leader.
echo "node $ID: sraft member add $ID $ADDR $LEARNER"
node_run_elsewhere "$ID" "bin/sraft member --config conf/cluster.toml add $ID $(sq "$ADDR") $LEARNER"
