//! One answer from the Raft thread to the client thread that waits for it,
//! with no spinning: the waiter sleeps on a condition variable at once.
//!
//! A crossbeam channel's receive spins, then calls `sched_yield` a few
//! times, before it sleeps. With 64 client threads waiting on two cores,
//! those yields were 15% of the leader's CPU samples at 64 clients (perf,
//! EXPERIMENTS.md 5): each one hands the core to another waiter instead of
//! the Raft or WAL thread that would answer it. An answer takes a commit
//! (an fsync and a round trip), far longer than any spin, so sleeping at
//! once costs nothing.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

enum State<T> {
    Waiting,
    Sent(T),
    /// The sender was dropped without an answer (the node is stopping).
    Dropped,
    Taken,
}

struct Slot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

/// Where the answer goes: used once, by the Raft thread. Dropping it
/// unanswered wakes the waiter with `None`.
pub struct AnswerTx<T>(Option<Arc<Slot<T>>>);

/// The client thread's side.
pub struct AnswerRx<T>(Arc<Slot<T>>);

pub fn answer_slot<T>() -> (AnswerTx<T>, AnswerRx<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State::Waiting),
        ready: Condvar::new(),
    });
    (AnswerTx(Some(Arc::clone(&slot))), AnswerRx(slot))
}

impl<T> AnswerTx<T> {
    /// Hands over the answer and wakes the waiter; never blocks for long
    /// (the lock is held only to move the value).
    pub fn send(mut self, value: T) {
        if let Some(slot) = self.0.take() {
            finish(&slot, State::Sent(value));
        }
    }
}

impl<T> Drop for AnswerTx<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.0.take() {
            finish(&slot, State::Dropped);
        }
    }
}

fn finish<T>(slot: &Slot<T>, state: State<T>) {
    let mut guard = slot.state.lock().unwrap_or_else(|e| e.into_inner());
    *guard = state;
    drop(guard);
    slot.ready.notify_one();
}

impl<T> AnswerRx<T> {
    /// The answer, or `None` at `deadline` or if the sender was dropped
    /// without one.
    pub fn recv_deadline(&self, deadline: Instant) -> Option<T> {
        let mut guard = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if !matches!(*guard, State::Waiting) {
                return match std::mem::replace(&mut *guard, State::Taken) {
                    State::Sent(value) => Some(value),
                    _ => None,
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            guard = self
                .0
                .ready
                .wait_timeout(guard, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The answer if it is there now.
    pub fn try_recv(&self) -> Option<T> {
        self.recv_deadline(Instant::now())
    }

    pub fn recv_timeout(&self, timeout: Duration) -> Option<T> {
        self.recv_deadline(Instant::now() + timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_reaches_a_waiter_on_another_thread() {
        let (tx, rx) = answer_slot();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(7);
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Some(7));
        sender.join().unwrap();
    }

    #[test]
    fn an_answer_sent_before_the_wait_is_kept() {
        let (tx, rx) = answer_slot();
        tx.send("done");
        assert_eq!(rx.recv_timeout(Duration::ZERO), Some("done"));
        assert_eq!(rx.recv_timeout(Duration::ZERO), None, "taken once");
    }

    #[test]
    fn a_dropped_sender_wakes_the_waiter_at_once() {
        let (tx, rx) = answer_slot::<u8>();
        let dropper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(tx);
        });
        let started = Instant::now();
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)), None);
        assert!(started.elapsed() < Duration::from_secs(30));
        dropper.join().unwrap();
    }

    #[test]
    fn no_answer_times_out() {
        let (_tx, rx) = answer_slot::<u8>();
        assert_eq!(rx.recv_timeout(Duration::from_millis(10)), None);
    }
}
