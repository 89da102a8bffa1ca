//! Asking the nodes: client calls, INFO, leader waits, and their logs.

use super::TestCluster;
use crate::info::{Info, Leadership};
use crate::resp::{CALL_TIMEOUT, Conn, call};
use crate::wait::poll_until;
use sraft::kv::resp::Value;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

/// Lines of each node's log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

impl TestCluster {
    /// One RESP call to node `i`'s client port, on a connection of its own.
    pub fn call(&self, i: usize, args: &[&[u8]], timeout: Duration) -> std::io::Result<Value> {
        call(self.client_addr(i), &self.auth, args, timeout)
    }

    /// A connection to node `i` that stays open between calls.
    pub fn conn(&self, i: usize, timeout: Duration) -> Conn {
        Conn::new(self.client_addr(i), &self.auth, timeout)
    }

    /// Node `i`'s INFO, or None if it did not answer.
    pub fn info(&self, i: usize) -> Option<Info> {
        Info::fetch(self.client_addr(i), &self.auth)
    }

    /// Polls INFO until `condition` holds for node `i`.
    pub fn wait_info(
        &self,
        i: usize,
        deadline: Instant,
        mut condition: impl FnMut(&Info) -> bool,
    ) -> Option<Info> {
        poll_until(deadline, || self.info(i).filter(|info| condition(info)))
    }

    /// The running node that says it leads, with its INFO; of several
    /// claims (a deposed leader that has not heard of the new term yet),
    /// the highest term's. No agreement asked: see `wait_for_leader`.
    pub fn claimed_leader(&self) -> Option<(usize, Info)> {
        self.claimed_leader_among(&self.running(), 0)
    }

    /// The node of `among` that leads the highest term above `term_above`.
    pub fn claimed_leader_among(&self, among: &[usize], term_above: u64) -> Option<(usize, Info)> {
        among
            .iter()
            .filter_map(|&i| self.info(i).map(|info| (i, info)))
            .filter(|(_, info)| {
                info.is_leader() && info.number_field("term").unwrap_or(0) > term_above
            })
            .max_by_key(|(_, info)| info.term())
    }

    /// Polls until every running node answers INFO, exactly one of them is
    /// the leader, all of them name it as leader in its term, and the
    /// term is above `term_above`; None at the deadline.
    pub fn try_wait_for_leader_above(
        &self,
        term_above: u64,
        deadline: Instant,
    ) -> Option<Leadership> {
        self.poll_leadership(&self.running(), term_above, deadline)
            .0
    }

    /// [`TestCluster::try_wait_for_leader_above`]; panics at the deadline
    /// with the last view.
    pub fn wait_for_leader_above(&self, term_above: u64, deadline: Instant) -> Leadership {
        self.wait_for_leader_among(&self.running(), term_above, deadline)
    }

    /// [`TestCluster::wait_for_leader_above`] asking only the nodes of
    /// `among`: for a running node that may have been left out of the
    /// configuration (a learner whose addition the new leader overwrote
    /// hears from no leader again, as in etcd).
    pub fn wait_for_leader_among(
        &self,
        among: &[usize],
        term_above: u64,
        deadline: Instant,
    ) -> Leadership {
        let (found, last) = self.poll_leadership(among, term_above, deadline);
        found.unwrap_or_else(|| {
            let view: Vec<String> = last
                .iter()
                .map(|(i, info)| {
                    format!(
                        "node {i}: role {} term {} leader {}",
                        info.role(),
                        info.term(),
                        info.get("leader_id")
                    )
                })
                .collect();
            panic!(
                "no agreed leader above term {term_above} among running nodes {among:?}; last view: {view:?}"
            )
        })
    }

    pub fn wait_for_leader(&self, deadline: Instant) -> Leadership {
        self.wait_for_leader_above(0, deadline)
    }

    /// The agreed leadership, if found by `deadline`, and the last view.
    fn poll_leadership(
        &self,
        among: &[usize],
        term_above: u64,
        deadline: Instant,
    ) -> (Option<Leadership>, BTreeMap<usize, Info>) {
        let mut last = BTreeMap::new();
        let found = poll_until(deadline, || {
            let infos: BTreeMap<usize, Info> = among
                .iter()
                .filter_map(|&i| self.info(i).map(|info| (i, info)))
                .collect();
            last = infos.clone();
            agreed_leadership(infos, among.len(), term_above)
        });
        (found, last)
    }

    /// SET through node `i`; panics unless acknowledged with +OK.
    pub fn set(&self, i: usize, key: &str, value: &str) {
        let reply = self.call(i, &[b"SET", key.as_bytes(), value.as_bytes()], CALL_TIMEOUT);
        match reply {
            Ok(Value::Simple(ok)) if ok == "OK" => {}
            other => panic!("SET {key} {value} via node {i}: {other:?}"),
        }
    }

    /// GET through node `i`; None for a nil reply.
    pub fn get(&self, i: usize, key: &str) -> Option<String> {
        match self.call(i, &[b"GET", key.as_bytes()], CALL_TIMEOUT) {
            Ok(Value::Bulk(b)) => Some(String::from_utf8(b).expect("utf-8 value")),
            Ok(Value::NullBulk) => None,
            other => panic!("GET {key} via node {i}: {other:?}"),
        }
    }

    /// Bytes in node `i`'s log so far: a mark to search after.
    pub fn log_len(&self, i: usize) -> u64 {
        std::fs::metadata(self.log_path(i))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Node `i`'s log from byte `from` on.
    pub fn log_since(&self, i: usize, from: u64) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(self.log_path(i)) {
            let _ = file.seek(SeekFrom::Start(from));
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    }

    /// Polls node `i`'s log (after byte `from`) for a line containing
    /// `needle`; returns that line.
    pub fn wait_log_line(
        &self,
        i: usize,
        from: u64,
        needle: &str,
        deadline: Instant,
    ) -> Option<String> {
        poll_until(deadline, || {
            self.log_since(i, from)
                .lines()
                .find(|l| l.contains(needle))
                .map(str::to_string)
        })
    }

    /// The last `lines` lines of every node's log, for a failure message.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for i in 0..self.len() {
            let text = self.log_since(i, 0);
            let all: Vec<&str> = text.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            out += &format!(
                "----- node {i} ({:?}), last {} lines of {} -----\n",
                self.state(i),
                tail.len(),
                self.log_path(i).display()
            );
            for line in tail {
                out += line;
                out.push('\n');
            }
        }
        out
    }

    pub(super) fn print_log_tails(&self) {
        eprint!("{}", self.log_tails(LOG_TAIL_LINES));
    }
}

/// Leadership if every running node answered (`infos` has `running`
/// entries), exactly one leads, everyone names it in its term, and that
/// term is above `term_above`.
fn agreed_leadership(
    infos: BTreeMap<usize, Info>,
    asked: usize,
    term_above: u64,
) -> Option<Leadership> {
    if infos.len() != asked {
        return None;
    }
    let leaders: Vec<usize> = infos
        .iter()
        .filter(|(_, info)| info.role() == "leader")
        .map(|(i, _)| *i)
        .collect();
    let [leader] = leaders[..] else { return None };
    let term = infos[&leader].term();
    let agreed = infos
        .values()
        .all(|info| info.leader_id() == Some(leader) && info.term() == term);
    (agreed && term > term_above).then_some(Leadership {
        leader,
        term,
        infos,
    })
}
