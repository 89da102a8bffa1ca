//! The embedding API with a state machine other than the KV store: the
//! `bank` example's ledger on a 3-node cluster inside this process (real
//! threads, real TCP on loopback, real WAL files). Transfers run from
//! several threads while a follower is stopped and later restarted from its
//! data dir; every replica must end with the same balances, and the money
//! in the ledger must never change.
//!
//! Ports: peers 28000-28999, below the ephemeral range.

#[path = "../examples/bank/ledger.rs"]
mod ledger;

use ledger::{Command, Member, Outcome, converged, start_member, submit};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

const NODES: usize = 3;
const ACCOUNTS: [&str; 4] = ["alice", "bob", "carol", "dave"];
const DEPOSIT: u64 = 1_000;
const CLIENTS: u64 = 3;
const TRANSFERS_PER_PHASE: usize = 40;
const TIMEOUT: Duration = Duration::from_secs(10);

/// `NODES` listeners on free consecutive ports in 28000-28999.
fn bind_peers() -> Vec<TcpListener> {
    for _ in 0..100 {
        let base = 28_000 + rand::random::<u16>() % (1_000 - NODES as u16);
        let bound: Vec<TcpListener> = (0..NODES as u16)
            .filter_map(|i| TcpListener::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if bound.len() == NODES {
            return bound;
        }
    }
    panic!("no {NODES} free consecutive ports in 28000-28999");
}

/// `CLIENTS` threads, each running transfers between random accounts
/// through whichever node leads; returns how many were refused for funds.
fn transfers(members: &[Member], seed: u64) -> u64 {
    std::thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| {
                scope.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(seed ^ client);
                    let mut refused = 0;
                    for _ in 0..TRANSFERS_PER_PHASE {
                        let from = rng.random_range(0..ACCOUNTS.len());
                        let to = (from + rng.random_range(1..ACCOUNTS.len())) % ACCOUNTS.len();
                        let command = Command::Transfer {
                            from: ACCOUNTS[from].into(),
                            to: ACCOUNTS[to].into(),
                            amount: rng.random_range(1..400),
                        };
                        match submit(members, &command, TIMEOUT) {
                            Some(Outcome::Transferred) => {}
                            Some(Outcome::InsufficientFunds { .. }) => refused += 1,
                            other => panic!("{command:?} answered {other:?}"),
                        }
                    }
                    refused
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().expect("client thread"))
            .sum()
    })
}

fn assert_converged(members: &[Member], when: &str) {
    let accounts = converged(members, TIMEOUT).unwrap_or_else(|| {
        let states: Vec<_> = members
            .iter()
            .map(|m| (m.node.as_ref().map(|n| n.status()), m.replica.accounts()))
            .collect();
        panic!("replicas did not converge {when}: {states:#?}")
    });
    assert_eq!(
        accounts.total(),
        DEPOSIT * ACCOUNTS.len() as u64,
        "money made or lost {when}: {accounts:?}"
    );
    assert_eq!(accounts.balances.len(), ACCOUNTS.len(), "{accounts:?}");
}

#[test]
fn a_ledger_state_machine_converges_on_three_nodes_across_a_follower_restart() {
    let started = Instant::now();
    let seed: u64 = rand::random();
    eprintln!("[embedding] seed {seed}");
    let dir = tempfile::tempdir().expect("temp dir");
    let listeners = bind_peers();
    let peers: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let mut members: Vec<Member> = listeners
        .into_iter()
        .enumerate()
        .map(|(id, listener)| start_member(id as u64, &peers, dir.path(), Some(listener)))
        .collect();

    for account in ACCOUNTS {
        let command = Command::Open {
            account: account.into(),
            deposit: DEPOSIT,
        };
        assert_eq!(
            submit(&members, &command, TIMEOUT),
            Some(Outcome::Opened),
            "{command:?}"
        );
    }
    let mut refused = transfers(&members, seed);
    assert_converged(&members, "after the first transfers");

    // Stop a follower (orderly: fsync, close); the other two go on.
    let follower = (0..NODES)
        .find(|&i| members[i].node.as_ref().expect("running").status().role != "leader")
        .expect("a follower");
    members[follower]
        .node
        .take()
        .expect("running")
        .stop()
        .expect("clean stop");
    refused += transfers(&members, seed.wrapping_add(1));
    assert_converged(&members, "with one follower stopped");

    // Restart it from its data dir: it replays its log and catches up.
    let restarted = start_member(follower as u64, &peers, dir.path(), None);
    members[follower] = restarted;
    refused += transfers(&members, seed.wrapping_add(2));
    assert_converged(&members, "after the follower's restart");

    let accounts = members[follower].replica.accounts();
    eprintln!(
        "[embedding] {} transfers ({refused} refused for funds), node {follower} restarted; \
         every replica at index {} with {:?}, in {:.1}s",
        3 * CLIENTS as usize * TRANSFERS_PER_PHASE,
        accounts.applied,
        accounts.balances,
        started.elapsed().as_secs_f64()
    );
    for member in members {
        member.node.expect("running").stop().expect("clean stop");
    }
}
