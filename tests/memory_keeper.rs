//! The memory keeper on real processes (DESIGN.md 3.5): a second process
//! that shares the node's memory, so that a kill -9 closes the node's
//! sockets before the kernel frees its pages. It must hold none of the
//! node's sockets (or a killed node would stay reachable), and must go
//! with the node.

use sraft::runtime::memory_keeper::ENV_MEMORY_KEEPER;
use sraft_testkit::{TestCluster, deadline_in, poll_until};
use std::net::TcpStream;
use std::time::Duration;

/// kcmp(2)'s type for "the same address space" (linux/kcmp.h).
const KCMP_VM: libc::c_int = 1;

/// The pid of the keeper whose parent is `pid`.
fn keeper_of(pid: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let child: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
        // "pid (comm) state ppid ..."; comm may hold spaces, not ')'.
        let (comm, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
        let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        (comm == "sraft-keeper" && ppid == pid).then_some(child)
    })
}

/// What `pid`'s descriptors point at ("socket:[...]", "pipe:[...]", paths).
fn descriptors(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|target| target.to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Gone, or a zombie waiting for init.
fn is_gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
        })
        .unwrap_or(true)
}

#[test]
fn a_node_has_a_keeper_that_shares_its_memory_holds_no_socket_and_goes_with_it() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let mut cluster = TestCluster::builder(1).start();
    cluster.wait_for_leader(deadline_in(Duration::from_secs(20)));
    let node = cluster.pid(0);
    let keeper = poll_until(deadline_in(Duration::from_secs(10)), || keeper_of(node))
        .expect("a keeper process whose parent is the node");
    // The same address space (a forked copy would not be): kcmp(2).
    // SAFETY: kcmp only compares kernel objects of two pids.
    let same = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            node as libc::pid_t,
            keeper as libc::pid_t,
            KCMP_VM,
            0,
            0,
        )
    };
    if same == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM) {
        eprintln!("kcmp not permitted here: the shared memory is not checked");
    } else {
        assert_eq!(same, 0, "the keeper has its own memory");
    }
    // None of the node's sockets: those must close when the node dies.
    let held = descriptors(keeper);
    assert!(
        held.iter().all(|d| !d.starts_with("socket:")),
        "the keeper holds {held:?}"
    );
    assert!(
        descriptors(node).iter().any(|d| d.starts_with("socket:")),
        "the node's own sockets are not visible"
    );

    let client = cluster.client_addr(0);
    cluster.kill(0);
    poll_until(deadline_in(Duration::from_secs(10)), || {
        is_gone(keeper).then_some(())
    })
    .expect("the keeper outlived its node");
    assert!(
        TcpStream::connect_timeout(&client, Duration::from_secs(1)).is_err(),
        "the killed node's client port still answers"
    );
}

#[test]
fn sraft_memory_keeper_off_starts_none() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let cluster = TestCluster::builder(1)
        .env(0, ENV_MEMORY_KEEPER, "off")
        .start();
    cluster.wait_for_leader(deadline_in(Duration::from_secs(20)));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(keeper_of(cluster.pid(0)), None);
}
