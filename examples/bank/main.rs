//! Embedding sraft with your own state machine: a bank ledger replicated
//! on a 3-node cluster inside this one process (each node has its own
//! threads, peer port on loopback and data directory, exactly as in the
//! `sraft` server).
//!
//!     cargo run --example bank
//!
//! It opens three accounts, runs transfers through whichever node leads,
//! reads the total linearizably, then shows that every replica holds the
//! same balances and that no money was made or lost. `RUST_LOG=info` shows
//! the elections and sub-leader assignments.

mod ledger;

use ledger::{Command, Member, Outcome, converged, start_member, submit};
use std::net::TcpListener;
use std::time::Duration;

const ACCOUNTS: [&str; 3] = ["alice", "bob", "carol"];
const DEPOSIT: u64 = 100;

fn main() {
    env_logger::init();
    let dir = tempfile::tempdir().expect("temp dir");
    // Bind every peer port first, so that each node knows the others'
    // addresses before any of them starts (port 0: the OS picks free ones).
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let peers: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let members: Vec<Member> = listeners
        .into_iter()
        .enumerate()
        .map(|(id, listener)| start_member(id as u64, &peers, dir.path(), Some(listener)))
        .collect();
    println!("3 nodes on {peers:?}");

    let timeout = Duration::from_secs(10);
    for account in ACCOUNTS {
        let command = Command::Open {
            account: account.into(),
            deposit: DEPOSIT,
        };
        let outcome = submit(&members, &command, timeout).expect("no leader");
        println!("open {account}: {outcome:?}");
    }
    let mut moved = 0;
    for i in 0..30u64 {
        let command = Command::Transfer {
            from: ACCOUNTS[i as usize % 3].into(),
            to: ACCOUNTS[(i as usize + 1) % 3].into(),
            amount: (i * 37) % 90,
        };
        match submit(&members, &command, timeout).expect("no leader") {
            Outcome::Transferred => moved += 1,
            refused => println!("{command:?}: {refused:?}"),
        }
    }
    println!("{moved} of 30 transfers done");

    // A linearizable read on the leader: the total as of now.
    let leader = members
        .iter()
        .filter_map(|m| m.node.as_ref())
        .find(|n| n.status().role == "leader")
        .expect("a leader");
    let total = leader
        .read(|ledger| Outcome::Total(ledger.accounts().total()), timeout)
        .expect("answered")
        .expect("read on the leader");
    let Outcome::Total(total) = total else {
        panic!("a read answers a total: {total:?}")
    };
    println!("total (read on the leader): {total}");

    let accounts = converged(&members, timeout).expect("replicas converge");
    for (id, member) in members.iter().enumerate() {
        println!("node {id}: {:?}", member.replica.accounts().balances);
    }
    assert_eq!(accounts.total(), DEPOSIT * ACCOUNTS.len() as u64);
    println!(
        "all 3 replicas equal at index {}, total {}",
        accounts.applied,
        accounts.total()
    );
    for member in members {
        member.node.expect("running").stop().expect("clean stop");
    }
}
