//! The memory keeper: makes a killed node's sockets close before its memory
//! is freed, so that peers see a SIGKILL at once (DESIGN.md 3.5).
//!
//! When a process dies, Linux frees its memory (`exit_mm`) before it closes
//! its files (`exit_files`), so a peer reads EOF only after the kernel has
//! torn down every page of the dead node: about 85 us per MiB on the EC2-like
//! VM of EXPERIMENTS.md, 2-3 ms for an idle 15 MiB node, 85 ms for one
//! holding 1 GiB of keys, and longer than the silent-failure detector (3.3)
//! beyond that. The crash fast path waited for it.
//!
//! The keeper is a second process that shares the node's address space
//! (`clone(CLONE_VM)`, not a thread: a SIGKILL of the node does not reach
//! it) and does nothing but wait. While it lives, the dying node's
//! `exit_mm` only drops a reference, and the sockets close at once. The
//! keeper waits on a pipe whose only write end the node holds: it reads EOF
//! when the node's descriptors close, the same instant as the sockets, and
//! exits, and the memory is freed by the keeper's exit instead. (Not
//! `PR_SET_PDEATHSIG`: it fires when the creating *thread* exits, which
//! during a kill is before the last thread's `exit_mm`, so the keeper was
//! gone too soon.) It touches nothing but its own stack and makes raw
//! system calls only, never a library call that could take a lock the
//! node holds.
//!
//! Linux only; elsewhere, or when `SRAFT_MEMORY_KEEPER=off`, nothing is
//! started and the node works as before.

/// `SRAFT_MEMORY_KEEPER=off` turns the keeper off (for A/B measurements).
pub const ENV_MEMORY_KEEPER: &str = "SRAFT_MEMORY_KEEPER";

/// Starts the keeper, and returns its pid. Call it first thing, before the
/// node opens a file or a socket: the keeper gets a copy of the descriptor
/// table as it is then, and any socket in it would stay open until the
/// keeper died.
#[cfg(target_os = "linux")]
pub fn spawn() -> std::io::Result<u32> {
    imp::spawn()
}

#[cfg(not(target_os = "linux"))]
pub fn spawn() -> std::io::Result<u32> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "the memory keeper needs Linux",
    ))
}

#[cfg(target_os = "linux")]
mod imp {
    use std::cell::UnsafeCell;
    use std::io;
    use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

    const STACK_BYTES: usize = 64 * 1024;

    /// The keeper's stack: static memory the node never touches.
    #[repr(C, align(16))]
    struct Stack(UnsafeCell<[u8; STACK_BYTES]>);

    // SAFETY: only the keeper process uses it, and only one keeper exists
    // (`STARTED`).
    unsafe impl Sync for Stack {}

    static STACK: Stack = Stack(UnsafeCell::new([0; STACK_BYTES]));
    static STARTED: AtomicBool = AtomicBool::new(false);

    /// The pipe: (read end, write end). The node keeps the write end open
    /// for its whole life; the keeper reads the other.
    static PIPE: [AtomicI32; 2] = [AtomicI32::new(-1), AtomicI32::new(-1)];

    /// The keeper's whole life. Raw system calls only: it shares the node's
    /// memory (and the TLS of the thread that cloned it), so it must not
    /// allocate, lock, run destructors, or enter a glibc cancellation point.
    extern "C" fn keep(_: *mut libc::c_void) -> libc::c_int {
        let (read_end, write_end) = (
            PIPE[0].load(Ordering::SeqCst),
            PIPE[1].load(Ordering::SeqCst),
        );
        // SAFETY: raw system calls on our own descriptor table and a byte
        // of our own stack.
        unsafe {
            libc::syscall(libc::SYS_close, write_end);
            libc::syscall(libc::SYS_prctl, libc::PR_SET_NAME, c"sraft-keeper".as_ptr());
            let mut byte = 0u8;
            loop {
                // 0: EOF, the node's descriptors are closed: it is gone
                // (or exiting). No handler is installed here, so no EINTR;
                // anything else is as final.
                let n = libc::syscall(libc::SYS_read, read_end, &mut byte as *mut u8, 1);
                if n <= 0 {
                    // Freeing the pages is the CPU work of the exit (about
                    // 85 us per MiB), and it comes exactly when the
                    // survivors' threads need the CPUs to elect a new
                    // leader. SCHED_IDLE (allowed unprivileged: it only
                    // lowers our priority; weight 3 against a normal
                    // thread's 1024, so slowed, never starved) lets the
                    // other runnable threads of our CPU cgroup have the
                    // CPUs first; the memory is freed a little later.
                    // Zeroed: priority 0, and no field list to depend on.
                    let param: libc::sched_param = std::mem::zeroed();
                    libc::syscall(
                        libc::SYS_sched_setscheduler,
                        0,
                        libc::SCHED_IDLE,
                        &param as *const libc::sched_param,
                    );
                    libc::syscall(libc::SYS_exit_group, 0);
                }
            }
        }
    }

    pub fn spawn() -> io::Result<u32> {
        if STARTED.swap(true, Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a memory keeper runs already",
            ));
        }
        let mut fds = [-1; 2];
        // SAFETY: pipe2 writes two descriptors into `fds`.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            STARTED.store(false, Ordering::SeqCst);
            return Err(io::Error::last_os_error());
        }
        PIPE[0].store(fds[0], Ordering::SeqCst);
        PIPE[1].store(fds[1], Ordering::SeqCst);
        // The keeper ignores the signals a terminal or a supervisor sends
        // to a whole process group or cgroup (Ctrl-C, systemd's SIGTERM):
        // the node shuts down on them and the keeper follows it through the
        // pipe; killed first, the keeper would leave the node's fast close
        // gone and a zombie behind. Dispositions are copied at clone (no
        // CLONE_SIGHAND), so the node sets them to SIG_IGN for the clone
        // and puts its own back: no handler is installed yet at start-up.
        const IGNORED: [libc::c_int; 4] =
            [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];
        let saved: Vec<libc::sighandler_t> = IGNORED
            .iter()
            // SAFETY: SIG_IGN is a valid disposition for these signals.
            .map(|&sig| unsafe { libc::signal(sig, libc::SIG_IGN) })
            .collect();
        // SAFETY: the stack is ours alone (`STARTED`) and the child runs
        // `keep` on it, which touches nothing else. No CLONE_FILES: the
        // keeper's descriptor table is a copy, so the node's sockets close
        // when the node's own table goes. The exit signal is 0: the node is
        // never interrupted by the keeper's death.
        let pid = unsafe {
            let top = (STACK.0.get() as *mut u8).add(STACK_BYTES);
            libc::clone(
                keep,
                top as *mut libc::c_void,
                libc::CLONE_VM,
                std::ptr::null_mut(),
            )
        };
        let err = io::Error::last_os_error();
        for (&sig, &old) in IGNORED.iter().zip(&saved) {
            // SAFETY: `old` is what `signal` returned for `sig` above.
            unsafe { libc::signal(sig, old) };
        }
        // SAFETY: our copy of the read end; the keeper has its own.
        unsafe { libc::close(fds[0]) };
        if pid < 0 {
            // SAFETY: nobody else holds the write end.
            unsafe { libc::close(fds[1]) };
            STARTED.store(false, Ordering::SeqCst);
            return Err(err);
        }
        // The write end stays open until the node's last moment.
        Ok(pid as u32)
    }
}
