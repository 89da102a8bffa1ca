#!/usr/bin/env bash
# Prepares one node (a fresh Amazon Linux 2023 or Ubuntu 22.04 instance, or
# any Linux with dnf/yum/apt-get) to run sraft, and installs the binary as
# INSTALL_DIR/bin/sraft. Safe to run again: every step checks first.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/setup_ec2.sh [--source DIR | --binary FILE] [--install-dir DIR]
                            [--swap-mb N] [--dry-run]

Prepares this machine to run sraft and installs the binary as
INSTALL_DIR/bin/sraft. Idempotent: run it as often as you like.

  --source DIR    Build from the workspace in DIR (Cargo.toml, Cargo.lock, src/,
                  benches/, testkit/: what deploy_all.sh ships):
                  installs a C linker (gcc), curl and tar with dnf/yum or apt-get
                  if missing, Rust through rustup if cargo is missing or older
                  than 1.89, then `cargo build --release --locked --bin sraft`.
                  Default: INSTALL_DIR itself if it holds Cargo.toml (a git
                  clone), else INSTALL_DIR/source (what deploy_all.sh ships).
  --binary FILE   Install a prebuilt sraft instead (no compiler needed). It must
                  have been built for this CPU and a glibc no newer than this
                  machine's (build on the same AMI, or use --source).
  --install-dir DIR
                  Where bin/, conf/, logs/, run/ and data/ live. Default: the
                  directory above scripts/ (SRAFT_INSTALL_DIR overrides).
  --swap-mb N     If the machine has under 2 GiB of memory and no swap, add an
                  N MiB /swapfile first (a t2.micro needs about 2048 to build).
  --dry-run       Print what would be done; change nothing.
  -h, --help      This text.

Environment: SRAFT_INSTALL_DIR, SRAFT_SETUP_SOURCE, SRAFT_SETUP_BINARY,
SRAFT_SWAP_MB, CARGO_BUILD_JOBS (parallel rustc jobs) override the defaults.
EOF
}

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
INSTALL_DIR=${SRAFT_INSTALL_DIR:-$(dirname "$SCRIPT_DIR")}
SOURCE=${SRAFT_SETUP_SOURCE:-}
BINARY=${SRAFT_SETUP_BINARY:-}
SWAP_MB=${SRAFT_SWAP_MB:-}
DRY_RUN=0
MIN_RUST_MINOR=89 # File::try_lock (Cargo.toml rust-version)

while (($#)); do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --source) SOURCE=${2:?--source needs a directory}; shift ;;
        --binary) BINARY=${2:?--binary needs a file}; shift ;;
        --install-dir) INSTALL_DIR=${2:?--install-dir needs a directory}; shift ;;
        --swap-mb) SWAP_MB=${2:?--swap-mb needs a number}; shift ;;
        --dry-run) DRY_RUN=1 ;;
        *) echo "setup_ec2: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

say() { echo "setup_ec2: $*"; }
die() { echo "setup_ec2: $*" >&2; exit 1; }
run() {
    echo "+ $*"
    if ((DRY_RUN == 0)); then "$@"; fi
}

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null; then SUDO=(sudo -n); fi
fi
as_root() { run ${SUDO[@]+"${SUDO[@]}"} "$@"; }

if [[ -n $SOURCE && -n $BINARY ]]; then die "give --source or --binary, not both"; fi
mkdir -p "$INSTALL_DIR"
INSTALL_DIR=$(cd "$INSTALL_DIR" && pwd)
if [[ -z $SOURCE && -z $BINARY ]]; then
    if [[ -f $INSTALL_DIR/Cargo.toml ]]; then
        SOURCE=$INSTALL_DIR
    elif [[ -f $INSTALL_DIR/source/Cargo.toml ]]; then
        SOURCE=$INSTALL_DIR/source
    else
        die "nothing to install: no Cargo.toml in $INSTALL_DIR or $INSTALL_DIR/source; pass --source DIR or --binary FILE"
    fi
fi

# --- Packages -----------------------------------------------------------------

OS_ID=unknown
if [[ -r /etc/os-release ]]; then
    # shellcheck disable=SC1091
    OS_ID=$(. /etc/os-release && echo "${ID:-unknown}")
fi

pkg_install() {
    # A freshly launched instance is often still running cloud-init, whose
    # package upgrades hold the package manager's lock.
    if command -v cloud-init >/dev/null && ((DRY_RUN == 0)); then
        as_root cloud-init status --wait >/dev/null || true
    fi
    if command -v dnf >/dev/null; then
        as_root dnf install -y "$@"
    elif command -v yum >/dev/null; then
        as_root yum install -y "$@"
    elif command -v apt-get >/dev/null; then
        if [[ ! -f /tmp/.sraft-apt-updated ]]; then
            as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -q
            run touch /tmp/.sraft-apt-updated
        fi
        # Ubuntu's unattended-upgrades may hold the dpkg lock for minutes.
        as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q "$@"
    else
        die "no dnf, yum or apt-get on this $OS_ID machine; install $* by hand"
    fi
}

ensure_build_packages() {
    local want=()
    local rpm=0
    if command -v dnf >/dev/null || command -v yum >/dev/null; then rpm=1; fi
    if ! command -v cc >/dev/null; then
        if ((rpm)); then want+=(gcc); else want+=(build-essential); fi
    fi
    if ! command -v curl >/dev/null; then
        # Amazon Linux 2023 ships curl-minimal, which conflicts with curl.
        if ((rpm)); then want+=(curl-minimal); else want+=(curl ca-certificates); fi
    fi
    if ! command -v tar >/dev/null; then want+=(tar); fi
    if ((${#want[@]} == 0)); then
        say "build packages present (cc, curl, tar)"
    else
        say "installing ${want[*]} ($OS_ID)"
        pkg_install "${want[@]}"
    fi
}

ensure_swap() {
    [[ -n $SWAP_MB ]] || return 0
    local mem_kb swap_kb
    mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    swap_kb=$(awk '/^SwapTotal:/ {print $2}' /proc/meminfo)
    if ((mem_kb >= 2 * 1024 * 1024 || swap_kb > 0)); then
        say "memory ${mem_kb} kB, swap ${swap_kb} kB: no swap file needed"
        return 0
    fi
    say "adding a ${SWAP_MB} MiB /swapfile for the build"
    as_root dd if=/dev/zero of=/swapfile bs=1M count="$SWAP_MB" status=none
    as_root chmod 600 /swapfile
    as_root mkswap /swapfile
    as_root swapon /swapfile
}

# --- Rust ---------------------------------------------------------------------

rust_minor() {
    # "cargo 1.86.0 (adcdfd8 2025-04-01)" -> 86; 0 when there is no cargo.
    local v
    v=$(cargo --version 2>/dev/null | awk '{print $2}') || true
    if [[ $v =~ ^1\.([0-9]+) ]]; then echo "${BASH_REMATCH[1]}"; else echo 0; fi
}

ensure_rust() {
    if [[ -d $HOME/.cargo/bin ]]; then export PATH=$HOME/.cargo/bin:$PATH; fi
    local minor
    minor=$(rust_minor)
    if ((minor >= MIN_RUST_MINOR)); then
        say "$(cargo --version) present"
        return 0
    fi
    if command -v rustup >/dev/null; then
        say "cargo is 1.$minor; updating the stable toolchain with rustup"
        run rustup toolchain install stable --profile minimal
        run rustup default stable
    else
        say "installing Rust (stable, minimal profile) with rustup into $HOME/.cargo"
        if ((DRY_RUN)); then
            echo "+ curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain stable"
        else
            curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
                sh -s -- -y --profile minimal --default-toolchain stable
        fi
        export PATH=$HOME/.cargo/bin:$PATH
    fi
    if ((DRY_RUN == 0)); then
        minor=$(rust_minor)
        ((minor >= MIN_RUST_MINOR)) || die "cargo is still 1.$minor after rustup; sraft needs 1.$MIN_RUST_MINOR or newer"
    fi
}

# --- Install ------------------------------------------------------------------

install_binary() {
    local from=$1 to=$INSTALL_DIR/bin/sraft
    if ((DRY_RUN)) && [[ ! -f $from ]]; then
        # A dry run did not build, so there may be nothing to look at yet.
        say "would install $from as $to"
        return 0
    fi
    [[ -f $from ]] || die "no binary at $from"
    if [[ -x $to ]] && cmp -s "$from" "$to"; then
        say "$to is already this binary"
        return 0
    fi
    if ((DRY_RUN == 0)); then
        # A binary built against a newer glibc fails here, not at start time.
        chmod +x "$from" 2>/dev/null || true
        if ! "$from" --help >/dev/null 2>&1; then
            "$from" --help 2>&1 | head -n 3 >&2 || true
            die "$from does not run on this machine (another CPU or a newer glibc?); deploy with --source instead"
        fi
    fi
    run mkdir -p "$INSTALL_DIR/bin"
    # Copy then rename: a running node keeps its old binary until restarted.
    run cp "$from" "$to.new"
    run chmod 755 "$to.new"
    run mv -f "$to.new" "$to"
    say "installed $to"
}

if [[ -n $SOURCE ]]; then
    [[ -f $SOURCE/Cargo.toml ]] || die "no Cargo.toml in $SOURCE"
    SOURCE=$(cd "$SOURCE" && pwd)
    ensure_swap
    ensure_build_packages
    ensure_rust
    say "building sraft (release) in $SOURCE; the first build takes a few minutes"
    (cd "$SOURCE" && run cargo build --release --locked --bin sraft)
    install_binary "${CARGO_TARGET_DIR:-$SOURCE/target}/release/sraft"
else
    install_binary "$BINARY"
fi

run mkdir -p "$INSTALL_DIR/conf" "$INSTALL_DIR/logs" "$INSTALL_DIR/run" "$INSTALL_DIR/data"
if ((DRY_RUN == 0)); then
    say "ready: $("$INSTALL_DIR/bin/sraft" --version 2>/dev/null || echo sraft) in $INSTALL_DIR"
fi
