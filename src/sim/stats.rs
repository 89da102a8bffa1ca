//! Election statistics of a seed and of a campaign: how many terms and
//! elections each change of leader cost (term inflation), and how long a
//! crashed leader took to replace (failover time, simulated).

use crate::core::{Event, Term};

#[derive(Clone, Debug, Default)]
pub struct ElectionStats {
    /// New leaders elected.
    pub leader_changes: u64,
    /// Sum over leader changes of new term - previous leader's term: equal
    /// to `leader_changes` when every election took one term.
    pub terms: u64,
    /// RequestVote rounds (each in a new term) and PreVote rounds started.
    pub elections: u64,
    pub pre_elections: u64,
    /// Leader crash -> next leader elected, simulated microseconds, in
    /// seeds with the crash fast path's hints and in seeds without; timed
    /// only when no other fault struck in between.
    pub failover_hinted_us: Vec<u64>,
    pub failover_silent_us: Vec<u64>,
    /// Failovers not timed: another fault struck first.
    pub failover_disturbed: u64,
    /// Snapshots a node made durable, and snapshots installed from a
    /// leader (how often the snapshot paths ran).
    pub snapshots_saved: u64,
    pub snapshots_installed: u64,
    last_leader_term: Term,
    /// A leader crash not yet followed by a new leader: (time, its term).
    crashed_leader: Option<(u64, Term)>,
    hinted: bool,
}

impl ElectionStats {
    pub fn new(hinted: bool) -> ElectionStats {
        ElectionStats {
            hinted,
            ..ElectionStats::default()
        }
    }

    /// Starts timing a failover.
    pub fn on_leader_crash(&mut self, now_us: u64, term: Term) {
        self.crashed_leader = Some((now_us, term));
    }

    /// Any fault: a failover under way is no longer timed.
    pub fn on_fault(&mut self) {
        if self.crashed_leader.take().is_some() {
            self.failover_disturbed += 1;
        }
    }

    pub fn on_event(&mut self, at_us: u64, event: &Event) {
        match event {
            Event::ElectionStarted { pre_vote: true, .. } => self.pre_elections += 1,
            Event::ElectionStarted { .. } => self.elections += 1,
            Event::BecameLeader { term, .. } => {
                self.leader_changes += 1;
                self.terms += term.0.saturating_sub(self.last_leader_term.0);
                self.last_leader_term = self.last_leader_term.max(*term);
                if let Some((crashed_us, old)) = self.crashed_leader
                    && *term > old
                {
                    self.crashed_leader = None;
                    let elapsed = at_us - crashed_us;
                    match self.hinted {
                        true => self.failover_hinted_us.push(elapsed),
                        false => self.failover_silent_us.push(elapsed),
                    }
                }
            }
            Event::SnapshotSaved { .. } => self.snapshots_saved += 1,
            Event::SnapshotInstalled { .. } => self.snapshots_installed += 1,
            _ => {}
        }
    }

    /// Adds another seed's numbers to a campaign's.
    pub fn merge(&mut self, other: &ElectionStats) {
        self.leader_changes += other.leader_changes;
        self.terms += other.terms;
        self.elections += other.elections;
        self.pre_elections += other.pre_elections;
        self.failover_hinted_us
            .extend_from_slice(&other.failover_hinted_us);
        self.failover_silent_us
            .extend_from_slice(&other.failover_silent_us);
        self.failover_disturbed += other.failover_disturbed;
        self.snapshots_saved += other.snapshots_saved;
        self.snapshots_installed += other.snapshots_installed;
    }

    /// Terms per leader change, 1.0 at best.
    pub fn term_inflation(&self) -> f64 {
        self.terms as f64 / self.leader_changes.max(1) as f64
    }

    /// The campaign summary `sim-campaign` prints.
    pub fn summary(&self) -> String {
        let per_change = |n: u64| n as f64 / self.leader_changes.max(1) as f64;
        format!(
            "elections: {} leader changes, {} terms ({:.2} per change), {} RequestVote rounds ({:.2} per change), {} PreVote rounds\n\
             failover after a leader crash, with crash hints: {}\n\
             failover after a leader crash, silent:           {}\n\
             failovers not timed (another fault struck first): {}\n\
             snapshots: {} saved, {} installed from a leader",
            self.leader_changes,
            self.terms,
            self.term_inflation(),
            self.elections,
            per_change(self.elections),
            self.pre_elections,
            distribution(&self.failover_hinted_us),
            distribution(&self.failover_silent_us),
            self.failover_disturbed,
            self.snapshots_saved,
            self.snapshots_installed,
        )
    }
}

/// "n=..., p50=... p99=... max=..." in milliseconds.
pub fn distribution(values_us: &[u64]) -> String {
    if values_us.is_empty() {
        return "n=0".into();
    }
    let mut sorted = values_us.to_vec();
    sorted.sort_unstable();
    let at = |p: f64| {
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
    };
    format!(
        "n={} p50={:.1}ms p99={:.1}ms max={:.1}ms",
        sorted.len(),
        at(50.0),
        at(99.0),
        at(100.0)
    )
}
