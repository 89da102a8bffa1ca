#!/usr/bin/env bash
# One line per node of the cluster file: reachable over ssh, recorded pid
# alive, and the node's own view (role, term, leader, commit index) from
# `sraft status`, run on the first reachable node.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/status_all.sh [--cluster FILE | --local] [--wait S]

Prints one line per node:

  node peer-address     ssh        pid    alive role      term leader commit
  0    10.0.1.10:5000   reachable  4711   yes   leader       3      0     42

  ssh      reachable | UNREACHABLE (ssh, or the local runner, failed)
  pid      the pid in run/node-N.pid, - if none
  alive    yes if that pid is a live process, no if not
  role ... from `sraft status --config conf/cluster.toml`, which asks every
           node's client port (INFO); run on the first reachable node, since
           client ports are open only inside the VPC; "down" if it did not answer

and a summary line. Exit status 0 when every node is reachable, alive and
up, exactly one is leader and all agree on it; 1 otherwise.

  --cluster FILE  cluster file (default: SRAFT_CLUSTER, else conf/cluster.env)
  --local         every node on this machine (SRAFT_SSH=local, conf/cluster-local.env)
  --wait S        poll until healthy (exit 0) or S seconds pass (exit 1)
  -h, --help      this text
EOF
}

# shellcheck source=lib/cluster.sh
source "$(dirname "$0")/lib/cluster.sh"
parse_common_flags "$@"
WAIT_S=0
set -- ${REST_ARGS[@]+"${REST_ARGS[@]}"}
while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --wait) WAIT_S=${2:?--wait needs seconds}; shift ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
load_cluster
select_nodes ""
[[ $WAIT_S =~ ^[0-9]+$ ]] || die "--wait needs a whole number of seconds"

# Prints "pid=P alive=yes|no" for node $1, or fails if the node is unreachable.
probe() {
    local id=$1 dir
    dir=$(install_dir "$id")
    node_run "$id" "cd $(sq "$dir") 2>/dev/null || { echo 'pid=- alive=no'; exit 0; }
pid=\$(cat run/node-$id.pid 2>/dev/null || true)
case \$pid in ''|*[!0-9]*) echo 'pid=- alive=no'; exit 0 ;; esac
stat=\$(ps -o stat= -p \"\$pid\" 2>/dev/null || true)
case \$stat in ''|Z*) echo \"pid=\$pid alive=no\" ;; *) echo \"pid=\$pid alive=yes\" ;; esac" </dev/null 2>/dev/null
}

probe_to_file() {
    local out
    if out=$(probe "$1"); then
        echo "reachable ${out}" >"$TMP/probe-$1"
    else
        echo "UNREACHABLE pid=? alive=?" >"$TMP/probe-$1"
    fi
}

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# One round: fills REPORT, returns 0 when healthy.
check() {
    local id pids=() first=""
    for id in "${SELECTED[@]}"; do
        probe_to_file "$id" &
        pids+=("$!")
    done
    wait "${pids[@]}" || true
    for id in "${SELECTED[@]}"; do
        if [[ -z $first && $(cat "$TMP/probe-$id") == reachable* ]]; then first=$id; fi
    done

    local table=""
    if [[ -n $first ]]; then
        local dir
        dir=$(install_dir "$first")
        table=$(node_run "$first" "cd $(sq "$dir") && bin/sraft status --config conf/cluster.toml" </dev/null 2>/dev/null || true)
    fi

    REPORT=$(printf '%-4s %-21s %-11s %-7s %-5s %-13s %5s %6s %8s\n' \
        node peer-address ssh pid alive role term leader commit)
    local healthy=1 leaders=() leader_views=() up=0 ssh pidf alivef pid alive row role term leader commit
    for id in "${SELECTED[@]}"; do
        read -r ssh pidf alivef <"$TMP/probe-$id"
        pid=${pidf#pid=}
        alive=${alivef#alive=}
        # sraft status row: node client-address up|down role term leader commit ...
        row=$(awk -v id="$id" '$1 == id {print; exit}' <<<"$table")
        read -r _ _ state role term leader commit _ <<<"${row:-x x none}" || true
        if [[ $state == up ]]; then
            up=$((up + 1))
            leader_views+=("$leader")
            if [[ $role == leader ]]; then leaders+=("$id"); fi
        else
            role=down term=- leader=- commit=-
            healthy=0
        fi
        [[ $ssh == reachable && $alive == yes ]] || healthy=0
        REPORT+=$'\n'$(printf '%-4s %-21s %-11s %-7s %-5s %-13s %5s %6s %8s' \
            "$id" "${NODE_HOST[id]}:${NODE_PORT[id]}" "$ssh" "$pid" "$alive" "$role" "$term" "$leader" "$commit")
    done

    local summary
    if ((${#leaders[@]} == 1)); then
        summary="leader: node ${leaders[0]}"
        local v
        for v in ${leader_views[@]+"${leader_views[@]}"}; do
            if [[ $v != "${leaders[0]}" ]]; then
                summary+=" (not yet known to every node)"
                healthy=0
                break
            fi
        done
    elif ((${#leaders[@]} == 0)); then
        summary="leader: NONE"
        healthy=0
    else
        summary="leader: SEVERAL (${leaders[*]})"
        healthy=0
    fi
    if [[ -z $first ]]; then summary+="; no node reachable, so no sraft status"; fi
    REPORT+=$'\n'"$summary; $up/${#SELECTED[@]} node(s) up"
    ((healthy))
}

deadline=$((SECONDS + WAIT_S))
while true; do
    if check; then
        echo "$REPORT"
        exit 0
    fi
    if ((SECONDS >= deadline)); then
        echo "$REPORT"
        exit 1
    fi
    sleep 0.5
done
