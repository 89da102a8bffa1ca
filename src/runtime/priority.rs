//! CPU priority of the node's threads. Timers live on the Raft thread and
//! heartbeats cross the transport's threads: when a connection per client,
//! or a snapshot being written, takes the CPU from them, a follower's timer
//! fires although the leader is alive. On a loaded 2-core machine the Raft
//! thread was measured waiting 4-14 ms in the run queue per batch (from
//! /proc/thread-self/schedstat), and round trips of heartbeats grew to
//! 30-90 ms, past the sub-leaders' 40-80 ms timeouts.
//!
//! Bulk threads therefore lower their own priority (a higher nice value,
//! which needs no privilege); the Raft thread, the WAL thread and the
//! transport keep the process's. Under CFS and EEVDF a thread at nice 0
//! then gets ten times the CPU share of one at nice 10 and is picked first
//! when it wakes, while the bulk threads still get every idle cycle.

/// The nice value bulk threads add to the process's.
pub const BULK_NICE_INCREMENT: i32 = 10;

/// Lowers the calling thread's priority by `BULK_NICE_INCREMENT`, for
/// work that may wait: serving one client, writing a snapshot. Threads it
/// spawns inherit the lower priority. Best effort: where it is not
/// supported the thread keeps its priority, which only costs timeliness.
pub fn lower_to_bulk() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on the calling thread's own id; no memory
        // is shared with the kernel. On Linux, PRIO_PROCESS with a thread
        // id sets that one thread's nice value.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            *libc::__errno_location() = 0;
            let current = libc::getpriority(libc::PRIO_PROCESS, tid);
            if current == -1 && *libc::__errno_location() != 0 {
                return;
            }
            let lowered = (current + BULK_NICE_INCREMENT).min(19);
            if libc::setpriority(libc::PRIO_PROCESS, tid, lowered) != 0 {
                log::debug!(
                    "cannot lower a bulk thread's priority: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn own_nice() -> i32 {
        // SAFETY: as above.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::getpriority(libc::PRIO_PROCESS, tid)
        }
    }

    #[test]
    fn a_bulk_thread_lowers_only_its_own_priority() {
        let before = own_nice();
        let lowered = std::thread::spawn(|| {
            let start = own_nice();
            lower_to_bulk();
            (start, own_nice())
        })
        .join()
        .unwrap();
        assert_eq!(lowered.1, (lowered.0 + BULK_NICE_INCREMENT).min(19));
        assert_eq!(own_nice(), before, "the spawning thread is unchanged");
    }
}
