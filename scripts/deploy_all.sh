#!/usr/bin/env bash
# Ships sraft (source or a prebuilt binary), the node scripts and the
# generated node config to every node of the cluster file over ssh, and runs
# setup_ec2.sh there.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/deploy_all.sh [--cluster FILE | --local] [--mode MODE] [--nodes "0 2 ..."]

For every node of the cluster file, over ssh (or the local runner):
  1. creates the install directory (SRAFT_INSTALL_DIR; {id} = node id),
  2. copies scripts/ and conf/cluster.toml, the sraft config generated from
     the cluster file's node list plus SRAFT_SETTINGS (timings etc.), and
     the files of SRAFT_CLUSTER_SECRET_FILE and SRAFT_CLIENT_PASSWORD_FILE
     (if set) as conf/cluster.secret and conf/client.password, mode 0600,
     and with SRAFT_TLS_DIR (scripts/make_certs.sh) the CA and each node's
     own certificate and key (mode 0600) as conf/tls/,
  3. installs sraft with scripts/setup_ec2.sh, per MODE:
       source      ship Cargo.toml, Cargo.lock, src/, benches/, testkit/; every node
                   installs its build tools and builds in release mode
       binary      ship SRAFT_BIN (a Linux build) and install it; no compiler
       build-once  build from source on the first selected node only, fetch
                   its binary, and install that binary on the others
     Default: binary if SRAFT_BIN is set, else source.
Running nodes keep running the old binary until restarted (stop_all.sh, then
start_all.sh). Safe to run again.

  --cluster FILE  cluster file (default: SRAFT_CLUSTER, else conf/cluster.env)
  --local         every node on this machine, no ssh: SRAFT_SSH=local and,
                  unless --cluster is given, conf/cluster-local.env
  --mode MODE     source | binary | build-once (SRAFT_DEPLOY)
  --nodes LIST    only these node ids (default: all)
  -h, --help      this text

Every cluster file setting can be overridden by an environment variable of
the same name (SRAFT_NODES, SRAFT_SSH_USER, SRAFT_SSH_KEY, SRAFT_INSTALL_DIR,
SRAFT_SSH, ...); see conf/cluster-ec2.env. SRAFT_SSH=local runs every node
command on this machine with bash instead of ssh.
EOF
}

# shellcheck source=lib/cluster.sh
source "$(dirname "$0")/lib/cluster.sh"
parse_common_flags "$@"
MODE=""
NODES_ARG=""
set -- ${REST_ARGS[@]+"${REST_ARGS[@]}"}
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --mode) MODE=${2:?--mode needs source, binary or build-once}; shift ;;
        --nodes) NODES_ARG=${2:?--nodes needs a list of ids}; shift ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
load_cluster
[[ -z $MODE ]] || SRAFT_DEPLOY=$MODE
select_nodes "$NODES_ARG"

case $SRAFT_DEPLOY in
    source | build-once) ;;
    binary)
        [[ -n $SRAFT_BIN ]] || SRAFT_BIN=$SRAFT_ROOT/target/release/sraft
        [[ -f $SRAFT_BIN ]] || die "no binary at $SRAFT_BIN: build it (cargo build --release) or set SRAFT_BIN"
        ;;
    *) die "unknown deploy mode '$SRAFT_DEPLOY' (source, binary or build-once)" ;;
esac

STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
generate_node_config "$STAGE/cluster.toml"

# The node-side payload: scripts and config, unpacked into the install dir.
mkdir -p "$STAGE/payload/scripts/lib" "$STAGE/payload/conf"
cp "$SRAFT_ROOT"/scripts/{setup_ec2.sh,start_node.sh,stop_node.sh} "$STAGE/payload/scripts/"
cp "$SRAFT_ROOT/scripts/lib/cluster.sh" "$STAGE/payload/scripts/lib/"
cp "$STAGE/cluster.toml" "$STAGE/payload/conf/cluster.toml"
# Secrets (docs/DESIGN.md 9) with mode 0600, which tar keeps on the node
# (sraft refuses a secret file that group or others can read).
ship_secret() { # SOURCE NAME SETTING
    [[ -n $1 ]] || return 0
    [[ -f $1 ]] || die "no file '$1' ($3)"
    install -m 600 "$1" "$STAGE/payload/conf/$2"
}
ship_secret "$SRAFT_CLUSTER_SECRET_FILE" cluster.secret SRAFT_CLUSTER_SECRET_FILE
ship_secret "$SRAFT_CLIENT_PASSWORD_FILE" client.password SRAFT_CLIENT_PASSWORD_FILE
# TLS (scripts/make_certs.sh): each node gets the CA and its own certificate
# and key (node-ID.crt, node-ID.key) as conf/tls/, the key with mode 0600.
if [[ -n $SRAFT_TLS_DIR ]]; then
    [[ -f $SRAFT_TLS_DIR/ca.crt ]] || die "no $SRAFT_TLS_DIR/ca.crt (SRAFT_TLS_DIR; make it with scripts/make_certs.sh)"
    for id in "${SELECTED[@]}"; do
        for f in crt key; do
            [[ -f $SRAFT_TLS_DIR/node-$id.$f ]] || die "no $SRAFT_TLS_DIR/node-$id.$f (scripts/make_certs.sh)"
        done
        mkdir -p "$STAGE/tls-$id/conf/tls"
        install -m 644 "$SRAFT_TLS_DIR/ca.crt" "$STAGE/tls-$id/conf/tls/ca.crt"
        install -m 644 "$SRAFT_TLS_DIR/node-$id.crt" "$STAGE/tls-$id/conf/tls/node.crt"
        install -m 600 "$SRAFT_TLS_DIR/node-$id.key" "$STAGE/tls-$id/conf/tls/node.key"
    done
fi
if [[ -f $SRAFT_ROOT/conf/sraft@.service ]]; then
    cp "$SRAFT_ROOT/conf/sraft@.service" "$STAGE/payload/conf/"
fi

echo "deploying to ${#SELECTED[@]} node(s) of $CLUSTER_FILE (mode $SRAFT_DEPLOY, runner ${SRAFT_SSH})"
echo "peers = $(peers_toml)"

# One tar stream per node: the payload plus the binary or the source tree.
mkdir -p "$STAGE/binary" "$STAGE/source/source"
build_tree() {
    local tree=$STAGE/$1
    (cd "$STAGE/payload" && tar -cf - .) | (cd "$tree" && tar -xf -)
    if [[ $1 == binary ]]; then
        mkdir -p "$tree/incoming"
        cp "$SRAFT_BIN" "$tree/incoming/sraft"
    else
        (cd "$SRAFT_ROOT" && tar -cf - "${SRAFT_SOURCE_PATHS[@]}") |
            (cd "$tree/source" && tar -xf -)
    fi
}

# deploy_node ID MODE: one ssh session per node: unpack, run setup_ec2.sh.
# A source build's target directory (build/) survives redeploys.
deploy_node() {
    local id=$1 mode=$2 dir setup
    dir=$(install_dir "$id")
    if [[ $mode == binary ]]; then
        setup="scripts/setup_ec2.sh --install-dir . --binary incoming/sraft && rm -rf incoming"
    else
        setup="CARGO_TARGET_DIR=\"\$PWD/build\" scripts/setup_ec2.sh --install-dir . --source source${SRAFT_SWAP_MB:+ --swap-mb $SRAFT_SWAP_MB}"
    fi
    echo "--- node $id ($(node_where "$id")): $mode"
    local extra=()
    if [[ -d $STAGE/tls-$id ]]; then
        extra=(-C "$STAGE/tls-$id" .)
    fi
    # ${a[@]+...}: bash before 4.4 (macOS's 3.2) calls an empty array unbound.
    if tar -C "$STAGE/$mode" -cf - . ${extra[@]+"${extra[@]}"} |
        node_run "$id" "mkdir -p $(sq "$dir") && cd $(sq "$dir") && rm -rf incoming source && tar -xf - && $setup"; then
        echo "--- node $id: deployed"
    else
        echo "--- node $id: deploy FAILED" >&2
        return 1
    fi
}
deploy_binary() { deploy_node "$1" binary; }
deploy_source() { deploy_node "$1" source; }

if [[ $SRAFT_DEPLOY == build-once ]]; then
    first=${SELECTED[0]}
    build_tree source
    deploy_source "$first" || die "build on node $first failed"
    echo "--- fetching the binary built on node $first"
    node_run "$first" "cat $(sq "$(install_dir "$first")/bin/sraft")" </dev/null >"$STAGE/sraft-built"
    SRAFT_BIN=$STAGE/sraft-built
    SRAFT_DEPLOY=binary
    SELECTED=("${SELECTED[@]:1}")
fi
build_tree "$SRAFT_DEPLOY"
# Every node at once: each builds or installs on its own instance.
failed=0
if ((${#SELECTED[@]})); then
    for_each_node_parallel "deploy_$SRAFT_DEPLOY" || failed=$?
fi
select_nodes "$NODES_ARG"

if ((failed)); then
    die "deploy failed on $failed node(s); see above"
fi
echo "deployed to node(s) ${SELECTED[*]}; next: scripts/start_all.sh${CLUSTER_FILE:+ --cluster $CLUSTER_FILE}"
