//! The cluster under test, whichever system runs it: one seam between the
//! measurement (probes, trials) and the processes. Each system says what
//! its nodes report as a [`Status`] and takes writes through a
//! [`NodeConn`]; the fault and its healing are in `fault.rs`.

use crate::etcd_nodes::EtcdCluster;
use crate::options::Options;
use crate::sraft_nodes;
use sraft_testkit::TestCluster;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// What one node says about leadership, normalized across systems.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The node it names as leader (itself if it leads); None while it
    /// knows none.
    pub leader: Option<usize>,
    pub term: u64,
    /// How far its log is: sraft's `applied_index`, etcd's `raftIndex`.
    pub log_index: u64,
    /// A leader's sub-leaders, primary first (empty elsewhere, and always
    /// for etcd).
    pub sub_leaders: Vec<usize>,
}

impl Status {
    /// Node `id`'s own status says it leads.
    pub fn leads(&self, id: usize) -> bool {
        self.leader == Some(id)
    }
}

/// A connection to one node, owned by one probe thread.
pub trait NodeConn: Send {
    /// The node's status; None if it did not answer in time.
    fn status(&mut self) -> Option<Status>;
    /// One acknowledged write of `key = value`; Err names what came back.
    fn put(&mut self, key: &str, value: &str) -> Result<(), String>;
    /// Drops the connection (the next call reconnects).
    fn reset(&mut self);
}

/// Opens a connection to node `id` whose calls wait at most `timeout`.
pub type Connector = Arc<dyn Fn(usize, Duration) -> Box<dyn NodeConn> + Send + Sync>;

/// The running nodes of one run.
pub enum Cluster {
    // Boxed: the toolkit's cluster is much larger than etcd's.
    Sraft(Box<TestCluster>),
    Etcd(EtcdCluster),
}

impl Cluster {
    /// Starts the mode's nodes, logs in `logs_dir`.
    pub fn start(o: &Options, logs_dir: &Path) -> std::io::Result<Cluster> {
        if o.mode.is_etcd() {
            EtcdCluster::start(o, logs_dir).map(Cluster::Etcd)
        } else {
            sraft_nodes::start(o, logs_dir).map(|c| Cluster::Sraft(Box::new(c)))
        }
    }

    pub fn connector(&self) -> Connector {
        match self {
            Cluster::Sraft(c) => sraft_nodes::connector(c),
            Cluster::Etcd(c) => c.connector(),
        }
    }

    /// An error naming the first node that exited on its own.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self {
            Cluster::Sraft(c) => c.check_alive(),
            Cluster::Etcd(c) => c.check_alive(),
        }
    }
}
