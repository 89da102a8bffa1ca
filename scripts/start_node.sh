#!/usr/bin/env bash
# Starts one sraft node on this machine in the background with nohup, logging
# to a file and recording its pid. Runs on the node (start_all.sh calls it
# over ssh).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/start_node.sh --node-id N [--config FILE] [--install-dir DIR]
                             [-- extra sraft flags, e.g. --original-raft --debug]

Starts node N of the cluster in the background (nohup), in INSTALL_DIR:

  binary   INSTALL_DIR/bin/sraft               (setup_ec2.sh puts it there)
  config   INSTALL_DIR/conf/cluster.toml       (deploy_all.sh writes it)
  log      INSTALL_DIR/logs/node-N.log         (appended; tail -f it)
  metrics  INSTALL_DIR/logs/metrics-node-N.jsonl
  data     INSTALL_DIR/data/node-N/
  pid      INSTALL_DIR/run/node-N.pid          (stop_node.sh signals this pid)

A node that is already running (live recorded pid) is left alone. Exits
non-zero, with the end of the log, if the node dies within the first
SRAFT_START_CHECK_S seconds.

  --node-id N       this node's position in the peer list, from 0
                    (default: RAFT_NODE_ID)
  --config FILE     sraft config (default: SRAFT_CONFIG, else the one above)
  --install-dir DIR default: SRAFT_INSTALL_DIR, else the directory above scripts/
  -h, --help        this text

Environment: SRAFT_NODE_ARGS (extra sraft flags, word-split),
SRAFT_START_CHECK_S (default 1), SRAFT_BIN (binary to run instead).
EOF
}

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
INSTALL_DIR=${SRAFT_INSTALL_DIR:-$(dirname "$SCRIPT_DIR")}
NODE_ID=${RAFT_NODE_ID:-}
CONFIG=${SRAFT_CONFIG:-}
CHECK_S=${SRAFT_START_CHECK_S:-1}
EXTRA=()
if [[ -n ${SRAFT_NODE_ARGS:-} ]]; then read -r -a EXTRA <<<"$SRAFT_NODE_ARGS"; fi

while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --node-id) NODE_ID=${2:?--node-id needs a number}; shift ;;
        --node-id=*) NODE_ID=${1#--node-id=} ;;
        --config) CONFIG=${2:?--config needs a file}; shift ;;
        --install-dir) INSTALL_DIR=${2:?--install-dir needs a directory}; shift ;;
        --) shift; EXTRA+=("$@"); break ;;
        *) echo "start_node: unknown argument '$1' (see --help; sraft flags go after --)" >&2; exit 2 ;;
    esac
    shift
done

die() { echo "start_node: $*" >&2; exit 1; }
[[ $NODE_ID =~ ^[0-9]+$ ]] || die "--node-id N is required (a number, from 0)"
[[ -d $INSTALL_DIR ]] || die "no install directory $INSTALL_DIR (run setup_ec2.sh or deploy_all.sh first)"
INSTALL_DIR=$(cd "$INSTALL_DIR" && pwd)
BIN=${SRAFT_BIN:-$INSTALL_DIR/bin/sraft}
CONFIG=${CONFIG:-$INSTALL_DIR/conf/cluster.toml}
[[ -x $BIN ]] || die "no sraft binary at $BIN (run setup_ec2.sh first)"
[[ -f $CONFIG ]] || die "no config $CONFIG (deploy_all.sh writes it; or pass --config conf/ec2-example.toml)"
CONFIG=$(cd "$(dirname "$CONFIG")" && pwd)/$(basename "$CONFIG")

PIDFILE=$INSTALL_DIR/run/node-$NODE_ID.pid
LOG=$INSTALL_DIR/logs/node-$NODE_ID.log
mkdir -p "$INSTALL_DIR/run" "$INSTALL_DIR/logs" "$INSTALL_DIR/data"

# Alive and not a zombie.
running() {
    local stat
    kill -0 "$1" 2>/dev/null || return 1
    stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ $stat != Z* ]]
}

if [[ -f $PIDFILE ]]; then
    old=$(cat "$PIDFILE")
    if [[ $old =~ ^[0-9]+$ ]] && running "$old" && ps -o args= -p "$old" | grep -q -- "--node-id $NODE_ID "; then
        echo "node $NODE_ID: already running (pid $old)"
        exit 0
    fi
    rm -f "$PIDFILE"
fi

# A node that joined a running cluster (add_node.sh) is not in the original
# peer list: it starts with the --join flags recorded for it.
JOIN=()
if [[ -f $INSTALL_DIR/run/node-$NODE_ID.join ]]; then
    read -r -a JOIN <"$INSTALL_DIR/run/node-$NODE_ID.join"
fi

cmd=("$BIN" --config "$CONFIG" --node-id "$NODE_ID"
    --data-dir "$INSTALL_DIR/data/node-$NODE_ID"
    --metrics-file "$INSTALL_DIR/logs/metrics-node-$NODE_ID.jsonl"
    ${JOIN[@]+"${JOIN[@]}"} ${EXTRA[@]+"${EXTRA[@]}"})
echo "=== $(date -u +%Y-%m-%dT%H:%M:%SZ) start_node.sh: ${cmd[*]}" >>"$LOG"
cd "$INSTALL_DIR"
# nohup + every descriptor redirected: the node outlives the ssh session
# that started it, and ssh does not wait for it.
nohup "${cmd[@]}" >>"$LOG" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$PIDFILE"

deadline=$((SECONDS + CHECK_S))
while ((SECONDS < deadline)); do
    if ! running "$pid"; then
        echo "start_node: node $NODE_ID (pid $pid) exited at once; last lines of $LOG:" >&2
        tail -n 10 "$LOG" >&2
        rm -f "$PIDFILE"
        exit 1
    fi
    sleep 0.1
done
echo "node $NODE_ID: started (pid $pid), log $LOG"
