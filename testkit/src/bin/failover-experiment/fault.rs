//! The faults a trial injects into the leader, and their healing, on
//! either system's processes (signalled by pid, never by name).

use crate::cluster::Cluster;
use std::time::Instant;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Fault {
    /// SIGKILL; healed by a restart on the same data dir.
    Kill,
    /// SIGSTOP: frozen with its sockets open; healed by SIGCONT.
    Stop,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Stop => "stop",
        }
    }
    pub fn parse(s: &str) -> Option<Fault> {
        [Fault::Kill, Fault::Stop]
            .into_iter()
            .find(|f| f.name() == s)
    }
}

/// The fault on node `id`. Returns the instant just before the signal:
/// every measure of the trial counts from it.
pub fn inject(cluster: &mut Cluster, id: usize, fault: Fault) -> Instant {
    let at = Instant::now();
    match (cluster, fault) {
        // SIGKILL, then the dead process is reaped.
        (Cluster::Sraft(c), Fault::Kill) => c.kill(id),
        (Cluster::Sraft(c), Fault::Stop) => c.stop(id),
        (Cluster::Etcd(c), Fault::Kill) => c.kill(id),
        (Cluster::Etcd(c), Fault::Stop) => c.stop(id),
    }
    at
}

/// Undoes the fault: restart on the same data dir, or SIGCONT.
pub fn heal(cluster: &mut Cluster, id: usize, fault: Fault) -> std::io::Result<()> {
    match (cluster, fault) {
        (Cluster::Sraft(c), Fault::Kill) => c.try_restart(id),
        (Cluster::Sraft(c), Fault::Stop) => {
            c.cont(id);
            Ok(())
        }
        (Cluster::Etcd(c), Fault::Kill) => c.restart(id),
        (Cluster::Etcd(c), Fault::Stop) => c.cont(id),
    }
}
