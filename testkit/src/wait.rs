//! Bounded waits: every wait polls a condition against a deadline.

use std::time::{Duration, Instant};

/// How often the waits poll.
pub const POLL: Duration = Duration::from_millis(10);

/// Polls `condition` every [`POLL`] until it returns `Some` or `deadline`
/// passes.
pub fn poll_until<T>(deadline: Instant, mut condition: impl FnMut() -> Option<T>) -> Option<T> {
    loop {
        if let Some(value) = condition() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

pub fn deadline_in(duration: Duration) -> Instant {
    Instant::now() + duration
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_until_gives_up_at_the_deadline() {
        let started = Instant::now();
        let found: Option<()> = poll_until(deadline_in(Duration::from_millis(50)), || None);
        assert!(found.is_none());
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn poll_until_returns_the_first_value() {
        let mut calls = 0;
        let found = poll_until(deadline_in(Duration::from_secs(5)), || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(found, Some(3));
    }
}
