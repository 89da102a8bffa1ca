//! One trial: wait for a stable leader, fault it at a random phase,
//! measure the election and the client-visible gap, heal, wait for the
//! healed node to catch up; and the trial's CSV row.

use crate::NODES;
use crate::cluster::Cluster;
use crate::fault::{self, Fault};
use crate::options::{Mode, Options};
use crate::probes::{NewUser, Shared, Watch};
use rand::Rng;
use rand::rngs::StdRng;
use std::fs;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

/// A trial without a new leader or an ack this long after the fault fails.
const TRIAL_TIMEOUT: Duration = Duration::from_secs(15);
/// How long leader, term and sub-leaders must hold before a fault.
const STABLE_FOR: Duration = Duration::from_millis(1000);

pub struct Trial {
    pub trial: usize,
    pub phase_ms: f64,
    pub old_leader: usize,
    pub old_term: u64,
    pub sub_leaders: Vec<usize>,
    pub subleader_changes: usize,
    pub writer_target: usize,
    pub new_leader: Option<usize>,
    pub new_term: Option<u64>,
    pub election_ms: Option<f64>,
    pub last_ack_before_ms: Option<f64>,
    pub first_ack_after_ms: Option<f64>,
    pub first_any_ack_after_ms: Option<f64>,
    /// Fault to the first ack of a write sent at the fault ([`NewUser`]).
    pub new_user_ack_ms: Option<f64>,
    pub unavailable_ms: Option<f64>,
    pub write_errors: usize,
    pub catch_up_ms: f64,
    pub load1: f64,
}

impl Trial {
    pub const HEADER: &str = "trial,mode,fault,phase_ms,old_leader,old_term,sub_leaders,subleader_changes_1s,writer_target,\
        new_leader,new_term,election_ms,won_by_primary,won_by_subleader,last_ack_before_ms,\
        first_ack_after_ms,first_any_ack_after_ms,unavailable_ms,write_errors,catch_up_ms,load1,new_user_ack_ms";

    pub fn won_by_primary(&self) -> bool {
        self.new_leader.is_some() && self.sub_leaders.first().copied() == self.new_leader
    }
    pub fn won_by_subleader(&self) -> bool {
        self.new_leader
            .is_some_and(|n| self.sub_leaders.contains(&n))
    }

    pub fn csv(&self, mode: Mode, fault: Fault) -> String {
        let f = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_default();
        let u = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_default();
        format!(
            "{},{},{},{:.3},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.1},{:.2},{}",
            self.trial,
            mode.name(),
            fault.name(),
            self.phase_ms,
            self.old_leader,
            self.old_term,
            self.sub_leaders
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            self.subleader_changes,
            self.writer_target,
            u(self.new_leader.map(|x| x as u64)),
            u(self.new_term),
            f(self.election_ms),
            self.won_by_primary() as u8,
            self.won_by_subleader() as u8,
            f(self.last_ack_before_ms),
            f(self.first_ack_after_ms),
            f(self.first_any_ack_after_ms),
            f(self.unavailable_ms),
            self.write_errors,
            self.catch_up_ms,
            self.load1,
            f(self.new_user_ack_ms),
        )
    }
}

pub fn load1() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn ms_between(later: Instant, earlier: Instant) -> f64 {
    later.duration_since(earlier).as_secs_f64() * 1000.0
}

/// Signed: `t - origin` in milliseconds.
fn ms_from(origin: Instant, t: Instant) -> f64 {
    if t >= origin {
        ms_between(t, origin)
    } else {
        -ms_between(origin, t)
    }
}

/// A leader that every node agrees on, in the same term, for STABLE_FOR;
/// in S-Raft mode with sub-leaders named throughout. Which followers hold
/// the ranks may change meanwhile (the leader re-ranks them, see
/// EXPERIMENTS.md 4): the last sub-leader list and the number of changes
/// seen during the window are returned.
pub fn wait_stable(
    shared: &Shared,
    cluster: &mut Cluster,
    need_subleaders: bool,
) -> Result<(usize, u64, Vec<usize>, usize), String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut since: Option<(Instant, usize, u64, Vec<usize>)> = None;
    let mut changes = 0;
    while Instant::now() < deadline {
        cluster.check_alive()?;
        let views = shared.views.lock().clone();
        let now = Instant::now();
        let fresh = views.iter().all(|v| {
            v.status.is_some()
                && v.at
                    .is_some_and(|t| now.duration_since(t) < Duration::from_millis(100))
        });
        let mut current = None;
        if fresh {
            let leaders: Vec<usize> = (0..NODES).filter(|&i| views[i].leads(i)).collect();
            if let [l] = leaders[..] {
                let term = views[l].term().unwrap_or(0);
                let subs = views[l].sub_leaders();
                let agree = views
                    .iter()
                    .all(|v| v.term() == Some(term) && v.leader() == Some(l));
                if agree && (!need_subleaders || !subs.is_empty()) {
                    current = Some((l, term, subs));
                }
            }
        }
        match (current, &mut since) {
            (Some((l, t, s)), Some((start, l0, t0, s0))) if l == *l0 && t == *t0 => {
                if s != *s0 {
                    changes += 1;
                    *s0 = s.clone();
                }
                if now.duration_since(*start) >= STABLE_FOR {
                    return Ok((l, t, s, changes));
                }
            }
            (Some((l, t, s)), _) => {
                since = Some((now, l, t, s));
                changes = 0;
            }
            (None, _) => since = None,
        }
        thread::sleep(Duration::from_millis(5));
    }
    Err("no stable leader within 120 s".into())
}

/// The leader a trial faults, as it stood when armed.
struct Armed {
    leader: usize,
    term: u64,
    subs: Vec<usize>,
    phase_ms: f64,
    subleader_changes: usize,
}

/// Waits for a stable leader, moves the writer to a surviving follower,
/// waits the random phase; again if leadership moved meanwhile.
fn arm(
    trial: usize,
    o: &Options,
    shared: &Shared,
    cluster: &mut Cluster,
    rng: &mut StdRng,
) -> Result<Armed, String> {
    loop {
        let (leader, term, subs, changes) = wait_stable(shared, cluster, o.mode.is_sraft())?;
        // The writer goes through a follower that survives and, if possible,
        // is not a sub-leader, so that writes are forwarded.
        let candidates: Vec<usize> = (0..NODES)
            .filter(|&i| i != leader && !subs.contains(&i))
            .collect();
        switch_writer(shared, candidates[rng.random_range(0..candidates.len())]);
        let phase = Duration::from_micros(rng.random_range(0..=50_000));
        // Let the writer settle on its target, then the random phase.
        thread::sleep(Duration::from_millis(20) + phase);
        let views = shared.views.lock().clone();
        if views[leader].leads(leader) && views[leader].term() == Some(term) {
            let subs_now = views[leader].sub_leaders();
            return Ok(Armed {
                leader,
                term,
                subs: if subs_now.is_empty() { subs } else { subs_now },
                phase_ms: phase.as_secs_f64() * 1000.0,
                subleader_changes: changes,
            });
        }
        eprintln!("trial {trial}: leadership moved while arming; waiting again");
    }
}

/// Points the writer at `target` and waits (10 s at most) for its first
/// ack there: a SET still in flight to the old target (possibly the leader
/// itself, which would hang with it under SIGSTOP) would measure the
/// client, not sraft.
fn switch_writer(shared: &Shared, target: usize) {
    shared.target.store(target, Ordering::SeqCst);
    let switched_at = Instant::now();
    let switch_deadline = switched_at + Duration::from_secs(10);
    while !shared
        .last_ack
        .lock()
        .is_some_and(|(t, sent)| t == target && sent >= switched_at)
    {
        if Instant::now() > switch_deadline {
            break;
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Polls until (a) a new leader was seen and (b) a SET sent after the
/// fault was acknowledged, or [`TRIAL_TIMEOUT`]; returns both sightings.
fn wait_for_outcome(
    shared: &Shared,
    fault_at: Instant,
) -> (Option<(Instant, usize, u64)>, Option<Instant>) {
    let deadline = fault_at + TRIAL_TIMEOUT;
    let (mut found, mut first_ack) = (None, None);
    while Instant::now() < deadline {
        if found.is_none() {
            found = shared.watch.lock().as_ref().and_then(|w| w.found);
        }
        if first_ack.is_none() {
            first_ack = shared
                .acks
                .lock()
                .iter()
                .filter(|(sent, _)| *sent >= fault_at)
                .map(|(_, acked)| *acked)
                .min();
        }
        if found.is_some() && first_ack.is_some() {
            break;
        }
        thread::sleep(Duration::from_millis(2));
    }
    // Give a racing poller a moment to report an earlier sighting.
    thread::sleep(Duration::from_millis(5));
    let found = shared.watch.lock().take().and_then(|w| w.found).or(found);
    (found, first_ack)
}

/// Waits (60 s at most) until the healed node's log index (sraft: applied,
/// etcd: raftIndex) reaches the new leader's when first seen.
fn catch_up(
    trial: usize,
    shared: &Shared,
    cluster: &mut Cluster,
    healed: usize,
) -> Result<(), String> {
    let catch_deadline = Instant::now() + Duration::from_secs(60);
    let mut goal: Option<u64> = None;
    loop {
        if Instant::now() > catch_deadline {
            return Err(format!(
                "trial {trial}: node {healed} did not catch up within 60 s"
            ));
        }
        cluster.check_alive()?;
        let views = shared.views.lock().clone();
        if goal.is_none()
            && let Some(l) = (0..NODES).find(|&i| i != healed && views[i].leads(i))
        {
            goal = views[l].log_index();
        }
        if let (Some(g), Some(a)) = (goal, views[healed].log_index())
            && a >= g
        {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// One trial: arm, fault the leader, measure, heal, catch up.
pub fn run_trial(
    trial: usize,
    o: &Options,
    shared: &Shared,
    cluster: &mut Cluster,
    rng: &mut StdRng,
) -> Result<Trial, String> {
    let armed = arm(trial, o, shared, cluster, rng)?;
    let (leader, term) = (armed.leader, armed.term);
    let target = shared.target.load(Ordering::SeqCst);
    shared.paused[leader].store(true, Ordering::SeqCst);
    let errors_before = shared.write_errors.load(Ordering::Relaxed);
    let new_user = NewUser::ready(&cluster.connector(), target, format!("new-user-{trial}"));
    let load = load1();
    let fault_at = {
        let mut w = shared.watch.lock();
        let fault_at = fault::inject(cluster, leader, o.fault);
        *w = Some(Watch {
            fault_at,
            victim: leader,
            old_term: term,
            found: None,
        });
        fault_at
    };
    new_user.go();
    let (found, first_ack) = wait_for_outcome(shared, fault_at);
    let new_user_ack = new_user.first_ack(fault_at + TRIAL_TIMEOUT);
    let (last_before, first_any_after) = {
        let acks = shared.acks.lock();
        let last = acks.iter().map(|(_, a)| *a).filter(|a| *a < fault_at).max();
        let any = acks
            .iter()
            .map(|(_, a)| *a)
            .filter(|a| *a >= fault_at)
            .min();
        (last, any)
    };
    let write_errors = shared.write_errors.load(Ordering::Relaxed) - errors_before;

    let heal_at = Instant::now();
    fault::heal(cluster, leader, o.fault).map_err(|e| format!("heal node {leader}: {e}"))?;
    shared.paused[leader].store(false, Ordering::SeqCst);
    catch_up(trial, shared, cluster, leader)?;
    let catch_up_ms = ms_between(Instant::now(), heal_at);
    shared.acks.lock().retain(|(_, a)| *a >= fault_at);

    let unavailable_ms = match (first_ack, last_before) {
        (Some(f), Some(l)) => Some(ms_between(f, l)),
        _ => None,
    };
    Ok(Trial {
        trial,
        phase_ms: armed.phase_ms,
        old_leader: leader,
        old_term: term,
        sub_leaders: armed.subs,
        subleader_changes: armed.subleader_changes,
        writer_target: target,
        new_leader: found.map(|(_, n, _)| n),
        new_term: found.map(|(_, _, t)| t),
        election_ms: found.map(|(t, _, _)| ms_between(t, fault_at)),
        last_ack_before_ms: last_before.map(|t| ms_from(fault_at, t)),
        first_ack_after_ms: first_ack.map(|t| ms_from(fault_at, t)),
        first_any_ack_after_ms: first_any_after.map(|t| ms_from(fault_at, t)),
        new_user_ack_ms: new_user_ack.map(|t| ms_from(fault_at, t)),
        unavailable_ms,
        write_errors,
        catch_up_ms,
        load1: load,
    })
}
