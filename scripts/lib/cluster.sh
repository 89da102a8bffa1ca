# shellcheck shell=bash
# Shared by deploy_all.sh, start_all.sh, stop_all.sh and status_all.sh (the
# operator side). Loads the cluster file, lets the environment override any
# of its settings, and runs commands on nodes through ssh or the local runner.
# Written for bash 3.2 too (a macOS operator machine): no associative arrays.

SRAFT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# What a source deploy ships (deploy_all.sh --mode source|build-once): the
# workspace's manifests and lock, and every member's sources (the toolkit
# is a workspace member and a path dev-dependency, so cargo cannot load
# the workspace without it, even to build only the sraft binary).
# tests/deploy_scripts.rs checks that cargo loads exactly these.
# shellcheck disable=SC2034  # read by deploy_all.sh
SRAFT_SOURCE_PATHS=(Cargo.toml Cargo.lock src benches testkit)

# Every setting a cluster file may hold. An exported variable of the same
# name wins over the file.
SRAFT_CLUSTER_VARS=(
    SRAFT_NODES SRAFT_SSH_HOSTS SRAFT_PEER_PORT SRAFT_CLIENT_PORT_OFFSET
    SRAFT_CLUSTER_ID SRAFT_SETTINGS SRAFT_SSH SRAFT_SSH_USER SRAFT_SSH_KEY
    SRAFT_SSH_PORT SRAFT_SSH_OPTS SRAFT_INSTALL_DIR SRAFT_DEPLOY SRAFT_BIN
    SRAFT_GRACE_S SRAFT_NODE_ARGS SRAFT_SWAP_MB
    SRAFT_CLUSTER_SECRET_FILE SRAFT_CLIENT_PASSWORD_FILE SRAFT_TLS_DIR
    SRAFT_REMOVED
)

die() {
    echo "$(basename "$0"): $*" >&2
    exit 1
}

# Single-quotes a word for a POSIX shell on the far side of ssh.
sq() {
    local s=${1//\'/\'\\\'\'}
    printf "'%s'" "$s"
}

# Common flags of the *_all.sh scripts. Sets CLUSTER_FILE and leaves the rest
# of the arguments in REST_ARGS.
parse_common_flags() {
    REST_ARGS=()
    CLUSTER_FILE=${SRAFT_CLUSTER:-}
    while (($#)); do
        case $1 in
            --local)
                export SRAFT_SSH=local
                [[ -n $CLUSTER_FILE ]] || CLUSTER_FILE=$SRAFT_ROOT/conf/cluster-local.env
                ;;
            --cluster)
                [[ $# -ge 2 ]] || die "--cluster needs a file"
                CLUSTER_FILE=$2
                shift
                ;;
            --cluster=*) CLUSTER_FILE=${1#--cluster=} ;;
            *) REST_ARGS+=("$1") ;;
        esac
        shift
    done
    [[ -n $CLUSTER_FILE ]] || CLUSTER_FILE=$SRAFT_ROOT/conf/cluster.env
}

# Loads CLUSTER_FILE: environment first, then the file, then defaults.
load_cluster() {
    local v
    [[ -f $CLUSTER_FILE ]] || die "no cluster file $CLUSTER_FILE (copy conf/cluster-ec2.env to conf/cluster.env and edit it, set SRAFT_CLUSTER, or pass --cluster FILE / --local)"
    for v in "${SRAFT_CLUSTER_VARS[@]}"; do
        if [[ -n ${!v+set} ]]; then
            printf -v "_sraft_env_$v" '%s' "${!v}"
            printf -v "_sraft_isset_$v" '%s' 1
        fi
    done
    # shellcheck disable=SC1090
    source "$CLUSTER_FILE"
    for v in "${SRAFT_CLUSTER_VARS[@]}"; do
        local isset="_sraft_isset_$v" saved="_sraft_env_$v"
        if [[ -n ${!isset:-} ]]; then
            printf -v "$v" '%s' "${!saved}"
        fi
    done

    : "${SRAFT_NODES:?the cluster file must set SRAFT_NODES}"
    SRAFT_SSH_HOSTS=${SRAFT_SSH_HOSTS:-}
    SRAFT_PEER_PORT=${SRAFT_PEER_PORT:-5000}
    SRAFT_CLIENT_PORT_OFFSET=${SRAFT_CLIENT_PORT_OFFSET:-1000}
    SRAFT_CLUSTER_ID=${SRAFT_CLUSTER_ID:-sraft}
    SRAFT_SETTINGS=${SRAFT_SETTINGS:-$SRAFT_ROOT/conf/ec2-example.toml}
    SRAFT_CLUSTER_SECRET_FILE=${SRAFT_CLUSTER_SECRET_FILE:-}
    SRAFT_CLIENT_PASSWORD_FILE=${SRAFT_CLIENT_PASSWORD_FILE:-}
    SRAFT_TLS_DIR=${SRAFT_TLS_DIR:-}
    SRAFT_SSH=${SRAFT_SSH:-ssh}
    SRAFT_SSH_USER=${SRAFT_SSH_USER:-ec2-user}
    SRAFT_SSH_KEY=${SRAFT_SSH_KEY:-}
    SRAFT_SSH_KEY=${SRAFT_SSH_KEY/#\~/$HOME}
    SRAFT_SSH_PORT=${SRAFT_SSH_PORT:-22}
    SRAFT_SSH_OPTS=${SRAFT_SSH_OPTS:--o BatchMode=yes -o ConnectTimeout=10 -o StrictHostKeyChecking=accept-new -o ServerAliveInterval=30}
    SRAFT_INSTALL_DIR=${SRAFT_INSTALL_DIR:-sraft}
    SRAFT_DEPLOY=${SRAFT_DEPLOY:-}
    SRAFT_BIN=${SRAFT_BIN:-}
    SRAFT_GRACE_S=${SRAFT_GRACE_S:-10}
    SRAFT_NODE_ARGS=${SRAFT_NODE_ARGS:-}
    SRAFT_SWAP_MB=${SRAFT_SWAP_MB:-}
    [[ -z $SRAFT_SWAP_MB || $SRAFT_SWAP_MB =~ ^[0-9]+$ ]] || die "SRAFT_SWAP_MB must be a number of MiB"
    if [[ -z $SRAFT_DEPLOY ]]; then
        if [[ -n $SRAFT_BIN ]]; then SRAFT_DEPLOY=binary; else SRAFT_DEPLOY=source; fi
    fi

    [[ $SRAFT_PEER_PORT =~ ^[0-9]+$ ]] || die "SRAFT_PEER_PORT must be a number, not '$SRAFT_PEER_PORT'"
    [[ $SRAFT_CLIENT_PORT_OFFSET =~ ^-?[0-9]+$ ]] || die "SRAFT_CLIENT_PORT_OFFSET must be a number"
    [[ $SRAFT_GRACE_S =~ ^[0-9]+$ ]] || die "SRAFT_GRACE_S must be a whole number of seconds"

    # Node i: NODE_HOST[i]:NODE_PORT[i] is its peer address (a private IP on
    # EC2); NODE_SSH[i] (-p NODE_SSH_PORT[i]) is where ssh reaches it.
    NODE_HOST=()
    NODE_PORT=()
    NODE_SSH=()
    NODE_SSH_PORT=()
    local entry host port
    for entry in $SRAFT_NODES; do
        split_host_port "$entry" "$SRAFT_PEER_PORT"
        NODE_HOST+=("$SPLIT_HOST")
        NODE_PORT+=("$SPLIT_PORT")
    done
    NODE_COUNT=${#NODE_HOST[@]}
    ((NODE_COUNT > 0)) || die "SRAFT_NODES lists no node"
    # Ids removed from the cluster (remove_node.sh): their entries stay in
    # SRAFT_NODES, since ids are positions, but no script acts on them
    # unless named with --nodes.
    REMOVED=()
    SRAFT_REMOVED=${SRAFT_REMOVED:-}
    for entry in ${SRAFT_REMOVED//,/ }; do
        if ! [[ $entry =~ ^[0-9]+$ ]] || ((entry >= NODE_COUNT)); then
            die "SRAFT_REMOVED: no node '$entry' (the cluster has nodes 0..$((NODE_COUNT - 1)))"
        fi
        REMOVED+=("$entry")
    done
    local ssh_hosts=()
    for entry in $SRAFT_SSH_HOSTS; do ssh_hosts+=("$entry"); done
    if ((${#ssh_hosts[@]} > 0 && ${#ssh_hosts[@]} != NODE_COUNT)); then
        die "SRAFT_SSH_HOSTS has ${#ssh_hosts[@]} entries but SRAFT_NODES has $NODE_COUNT; give one per node, in the same order"
    fi
    local i
    for ((i = 0; i < NODE_COUNT; i++)); do
        if ((${#ssh_hosts[@]} > 0)); then
            split_host_port "${ssh_hosts[i]}" "$SRAFT_SSH_PORT"
            host=$SPLIT_HOST
            port=$SPLIT_PORT
        else
            host=${NODE_HOST[i]}
            port=$SRAFT_SSH_PORT
        fi
        host=${host#\[}
        NODE_SSH+=("${host%\]}")
        NODE_SSH_PORT+=("$port")
    done
}

# "10.0.1.10:5000" -> SPLIT_HOST=10.0.1.10 SPLIT_PORT=5000; "10.0.1.10" takes
# the default port; "[fd00::1]:5000" works for IPv6.
split_host_port() {
    local entry=$1 default_port=$2
    if [[ $entry =~ ^(\[[^]]+\]|[^:]+):([0-9]+)$ ]]; then
        SPLIT_HOST=${BASH_REMATCH[1]}
        SPLIT_PORT=${BASH_REMATCH[2]}
    elif [[ $entry =~ ^(\[[^]]+\]|[^:]+)$ ]]; then
        SPLIT_HOST=$entry
        SPLIT_PORT=$default_port
    else
        die "cannot read '$entry' as HOST or HOST:PORT"
    fi
}

# The install directory of node $1 ({id} is replaced by the node id). A
# relative path is relative to the node user's home directory.
install_dir() {
    local dir=${SRAFT_INSTALL_DIR//\{id\}/$1}
    dir=${dir#\~/}
    printf '%s' "$dir"
}

# True if node $1 is in SRAFT_REMOVED.
is_removed() {
    local id
    for id in ${REMOVED[@]+"${REMOVED[@]}"}; do
        if ((id == $1)); then return 0; fi
    done
    return 1
}

# Node ids to act on: all but the removed ones, or the ids given with
# --nodes "0 3".
select_nodes() {
    local list=${1:-} id
    SELECTED=()
    if [[ -z $list ]]; then
        for ((id = 0; id < NODE_COUNT; id++)); do
            is_removed "$id" || SELECTED+=("$id")
        done
        ((${#SELECTED[@]} > 0)) || die "every node of SRAFT_NODES is in SRAFT_REMOVED"
        return
    fi
    for id in ${list//,/ }; do
        if ! [[ $id =~ ^[0-9]+$ ]] || ((id >= NODE_COUNT)); then
            die "no node $id (the cluster has nodes 0..$((NODE_COUNT - 1)))"
        fi
        SELECTED+=("$id")
    done
}

# node_run ID COMMAND: runs a shell command on node ID, in the node user's
# home directory, with stdin/stdout/stderr passed through. SRAFT_SSH=local
# runs it on this machine instead, in a fresh environment as ssh would;
# anything else is the ssh command to use (default "ssh").
node_run() {
    local id=$1 cmd=$2
    if [[ $SRAFT_SSH == local ]]; then
        (cd ~ && env -i HOME="$HOME" PATH="$PATH" USER="${USER:-}" LANG=C.UTF-8 bash -c "$cmd")
    else
        local ssh_cmd=() opts=()
        read -r -a ssh_cmd <<<"$SRAFT_SSH"
        read -r -a opts <<<"$SRAFT_SSH_OPTS"
        if [[ -n $SRAFT_SSH_KEY ]]; then opts+=(-i "$SRAFT_SSH_KEY"); fi
        "${ssh_cmd[@]}" ${opts[@]+"${opts[@]}"} -p "${NODE_SSH_PORT[id]}" \
            "$SRAFT_SSH_USER@${NODE_SSH[id]}" -- "bash -c $(sq "$cmd")"
    fi
}

# The one node id among the arguments of add_node.sh / remove_node.sh, in
# NODE_ARG; FLAGS_OK names the flags the script takes (set to "yes" in
# FLAG_<name>, e.g. --learner -> FLAG_learner). Exits on anything else.
parse_node_arg() {
    NODE_ARG=""
    while (($#)); do
        case $1 in
            -h | --help) usage; exit 0 ;;
            --*)
                local flag=${1#--}
                [[ " ${FLAGS_OK:-} " == *" $1 "* ]] || die "unknown argument '$1' (see --help)"
                printf -v "FLAG_${flag//-/_}" yes
                ;;
            *)
                [[ -z $NODE_ARG ]] || die "one node id, please (got '$NODE_ARG' and '$1')"
                NODE_ARG=$1
                ;;
        esac
        shift
    done
    [[ $NODE_ARG =~ ^[0-9]+$ ]] || die "which node? give its id (its position in SRAFT_NODES)"
}

# node_run_elsewhere ID COMMAND: runs COMMAND (in the install dir) on the
# first node other than ID that is reachable and installed; fails if none.
node_run_elsewhere() {
    local id=$1 cmd=$2 other dir
    for ((other = 0; other < NODE_COUNT; other++)); do
        ((other == id)) && continue
        dir=$(install_dir "$other")
        if node_run "$other" "cd $(sq "$dir") && test -x bin/sraft" </dev/null 2>/dev/null; then
            echo "(through node $other)"
            node_run "$other" "cd $(sq "$dir") && $cmd" </dev/null
            return
        fi
    done
    die "no node other than $id is reachable"
}

# Where node ID is, for messages.
node_where() {
    if [[ $SRAFT_SSH == local ]]; then
        printf 'local:%s' "$(install_dir "$1")"
    else
        printf '%s@%s' "$SRAFT_SSH_USER" "${NODE_SSH[$1]}"
    fi
}

# The peer list as sraft's TOML wants it: ["10.0.1.10:5000", ...].
peers_toml() {
    local i out=""
    for ((i = 0; i < NODE_COUNT; i++)); do
        out+="${out:+, }\"${NODE_HOST[i]}:${NODE_PORT[i]}\""
    done
    printf '[%s]' "$out"
}

# Writes the sraft config every node reads: SRAFT_SETTINGS (timings, storage,
# transport) with peers, cluster_id and client_port_offset taken from the
# cluster file, the one source of truth for node addresses.
generate_node_config() {
    local out=$1
    [[ -f $SRAFT_SETTINGS ]] || die "no settings file $SRAFT_SETTINGS (SRAFT_SETTINGS)"
    {
        echo "# Generated by scripts/deploy_all.sh from $(basename "$CLUSTER_FILE") and"
        echo "# $(basename "$SRAFT_SETTINGS"). Edit those and redeploy; do not edit this copy."
        echo "peers = $(peers_toml)"
        echo "cluster_id = \"$SRAFT_CLUSTER_ID\""
        echo "client_port_offset = $SRAFT_CLIENT_PORT_OFFSET"
        # Secrets travel beside this file (deploy_all.sh, mode 0600);
        # start_node.sh runs sraft in the install dir, so the paths are
        # relative to it.
        if [[ -n $SRAFT_CLUSTER_SECRET_FILE ]]; then
            echo 'cluster_secret_file = "conf/cluster.secret"'
        fi
        if [[ -n $SRAFT_CLIENT_PASSWORD_FILE ]]; then
            echo 'client_password_file = "conf/client.password"'
        fi
        if [[ -n $SRAFT_TLS_DIR ]]; then
            echo 'tls_cert_file = "conf/tls/node.crt"'
            echo 'tls_key_file = "conf/tls/node.key"'
            echo 'tls_ca_cert_file = "conf/tls/ca.crt"'
        fi
        # The template minus the keys set above (a peers array may span lines).
        awk '
            skip { if ($0 ~ /\]/) skip = 0; next }
            /^[ \t]*peers[ \t]*=/ { if ($0 !~ /\]/) skip = 1; next }
            /^[ \t]*(cluster_id|client_port_offset|cluster_secret_file|client_password_file|tls_[a-z_]*file)[ \t]*=/ { next }
            { print }
        ' "$SRAFT_SETTINGS"
    } >"$out"
}

# Runs "$@" once per selected node in parallel, each with the node id as
# $1, output collected per node and printed in node order. Returns the
# number of nodes that failed.
for_each_node_parallel() {
    local fn=$1 tmp id failed=0
    tmp=$(mktemp -d)
    local pids=()
    for id in "${SELECTED[@]}"; do
        "$fn" "$id" >"$tmp/$id.out" 2>&1 &
        pids+=("$!")
    done
    local k=0
    for id in "${SELECTED[@]}"; do
        if ! wait "${pids[k]}"; then failed=$((failed + 1)); fi
        cat "$tmp/$id.out"
        k=$((k + 1))
    done
    rm -rf "$tmp"
    return "$failed"
}
