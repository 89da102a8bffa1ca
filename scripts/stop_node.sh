#!/usr/bin/env bash
# Stops sraft nodes on this machine by their recorded pids: SIGTERM (an
# orderly shutdown), SIGKILL after a grace period. Never by process name.
# Runs on the node (stop_all.sh calls it over ssh).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/stop_node.sh (--node-id N | --all) [--grace S] [--signal SIG] [--install-dir DIR]

Sends SIGTERM to the pid recorded in INSTALL_DIR/run/node-N.pid (--all: every
run/node-*.pid), waits up to S seconds for it to exit, then sends SIGKILL.
A pid that is gone, or that is no longer an sraft node N (the pid was
reused), is not signalled; its stale pid file is removed.

  --node-id N       the node to stop (default: RAFT_NODE_ID)
  --all             every node with a pid file in this install directory
  --grace S         seconds between SIGTERM and SIGKILL (default: SRAFT_GRACE_S, else 10)
  --signal SIG      instead of stopping: send only SIG (KILL, STOP, CONT, ...)
                    to the recorded pid, for failover experiments. KILL (a
                    crash) waits for the exit and removes the pid file; STOP
                    (a silent failure) keeps it, heal with --signal CONT.
  --install-dir DIR default: SRAFT_INSTALL_DIR, else the directory above scripts/
  -h, --help        this text
EOF
}

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
INSTALL_DIR=${SRAFT_INSTALL_DIR:-$(dirname "$SCRIPT_DIR")}
NODE_ID=${RAFT_NODE_ID:-}
GRACE_S=${SRAFT_GRACE_S:-10}
ALL=0
SIGNAL=""

while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --node-id) NODE_ID=${2:?--node-id needs a number}; shift ;;
        --node-id=*) NODE_ID=${1#--node-id=} ;;
        --all) ALL=1 ;;
        --grace) GRACE_S=${2:?--grace needs seconds}; shift ;;
        --signal) SIGNAL=${2:?--signal needs a signal name}; SIGNAL=${SIGNAL#SIG}; shift ;;
        --install-dir) INSTALL_DIR=${2:?--install-dir needs a directory}; shift ;;
        *) echo "stop_node: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

die() { echo "stop_node: $*" >&2; exit 1; }
[[ $GRACE_S =~ ^[0-9]+$ ]] || die "--grace must be a whole number of seconds"
if ((ALL == 0)); then
    [[ $NODE_ID =~ ^[0-9]+$ ]] || die "give --node-id N or --all"
fi
if [[ ! -d $INSTALL_DIR/run ]]; then
    echo "node ${NODE_ID:-*}: not running (no $INSTALL_DIR/run)"
    exit 0
fi

running() {
    local stat
    kill -0 "$1" 2>/dev/null || return 1
    stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ $stat != Z* ]]
}

stop_one() {
    local id=$1 pidfile=$INSTALL_DIR/run/node-$1.pid pid args
    if [[ ! -f $pidfile ]]; then
        echo "node $id: not running (no pid file)"
        return 0
    fi
    pid=$(cat "$pidfile")
    if ! [[ $pid =~ ^[0-9]+$ ]] || ! running "$pid"; then
        echo "node $id: not running (stale pid ${pid:-?}); removed $pidfile"
        rm -f "$pidfile"
        return 0
    fi
    args=$(ps -o args= -p "$pid" 2>/dev/null || true)
    if [[ $args != *sraft* || $args != *"--node-id $id "* ]]; then
        echo "node $id: pid $pid is now '$args', not this node; not signalled; removed $pidfile"
        rm -f "$pidfile"
        return 0
    fi
    if [[ -n $SIGNAL ]]; then
        kill -s "$SIGNAL" "$pid" || return 1
        if [[ $SIGNAL == KILL || $SIGNAL == 9 ]]; then
            local until=$((SECONDS + 5))
            while running "$pid" && ((SECONDS < until)); do sleep 0.05; done
            rm -f "$pidfile"
        fi
        echo "node $id: sent SIG$SIGNAL to pid $pid"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + GRACE_S)) how="SIGTERM"
    while running "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if running "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        how="SIGKILL after ${GRACE_S}s"
        deadline=$((SECONDS + 5))
        while running "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    fi
    if running "$pid"; then
        echo "node $id: pid $pid survived SIGKILL" >&2
        return 1
    fi
    rm -f "$pidfile"
    echo "node $id: stopped (pid $pid, $how)"
}

status=0
if ((ALL)); then
    shopt -s nullglob
    found=0
    for pidfile in "$INSTALL_DIR"/run/node-*.pid; do
        id=${pidfile##*/node-}
        id=${id%.pid}
        found=1
        stop_one "$id" || status=1
    done
    ((found)) || echo "no node pid files in $INSTALL_DIR/run"
else
    stop_one "$NODE_ID" || status=1
fi
exit "$status"
