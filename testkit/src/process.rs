//! The `sraft` binary and how the toolkit runs it.

use crate::wait::poll_until;
use std::ffi::OsStr;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

/// The `sraft` binary next to the running test binary: cargo builds it for
/// the `sraft` package's integration tests (`target/<profile>/sraft`, the
/// tests run from `target/<profile>/deps/`). The experiment names its own
/// binary (`--sraft`).
pub fn sraft_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the running test binary's path");
    let mut dir = exe
        .parent()
        .expect("the test binary's folder")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("sraft");
    assert!(
        bin.exists(),
        "no sraft binary at {} (cargo builds it for the sraft package's tests; \
         elsewhere build it with cargo build --bin sraft)",
        bin.display()
    );
    bin
}

/// Environment variables that change what a node does; the toolkit's
/// commands start without them unless a cluster asks to inherit them.
pub const SRAFT_ENV_VARS: [&str; 9] = [
    "RUST_LOG",
    "RAFT_NODE_ID",
    "RAFT_PORT",
    "RAFT_PEERS",
    "ENABLE_SUBLEADER",
    "RAFT_DATA_DIR",
    "SRAFT_TEST_DELAY_US",
    "SRAFT_TEST_DELAY_US_BY_PEER",
    "SRAFT_TEST_SNAPSHOT_DELAY_MS",
];

/// A command with none of sraft's environment variables inherited, so that
/// the developer's shell cannot change what a test runs.
pub fn hermetic_command(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    for var in SRAFT_ENV_VARS {
        command.env_remove(var);
    }
    command
}

/// Runs `sraft args`, expecting it to exit on its own before `deadline`;
/// returns (status, stdout, stderr). Kills it and panics if it does not.
pub fn run_to_exit(args: &[String], deadline: Instant) -> (ExitStatus, String, String) {
    let mut command = hermetic_command(sraft_bin());
    command.args(args);
    run_command_to_exit(command, deadline)
}

/// Runs `command` (stdin empty, its output captured), expecting it to exit
/// on its own before `deadline`; returns (status, stdout, stderr). Kills it
/// and panics if it does not.
pub fn run_command_to_exit(
    mut command: Command,
    deadline: Instant,
) -> (ExitStatus, String, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let status = poll_until(deadline, || child.try_wait().expect("try_wait"));
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{command:?} did not exit");
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut stdout)
        .expect("read stdout");
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    (status, stdout, stderr)
}

/// POSIX signal numbers the toolkit sends (Linux).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Term = 15,
    Stop = 19,
    Cont = 18,
    Kill = 9,
}

unsafe extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

/// Sends `signal` to `pid` with kill(2), at once (no `kill` process to
/// spawn: the experiment times faults from just before the signal).
pub fn send_signal(pid: u32, signal: Signal) -> std::io::Result<()> {
    // SAFETY: kill(2) has no memory effects; callers pass the pid of a
    // child they spawned and have not reaped.
    if unsafe { kill(pid as i32, signal as i32) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
