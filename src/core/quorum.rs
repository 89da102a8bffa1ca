//! Quorum arithmetic as pure functions, checked against a brute-force
//! reference (as etcd's quorum/quick_test.go does).

use super::types::LogIndex;

/// The largest value that at least `quorum` of `values` reach: the commit
/// index over match indexes, or the lease start over acknowledged send
/// times (DESIGN.md 3.8).
pub fn quorum_value<T: Ord + Copy>(values: &[T], quorum: usize) -> T {
    assert!(
        quorum >= 1 && quorum <= values.len(),
        "quorum={quorum} voters={}",
        values.len()
    );
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted[quorum - 1]
}

/// The largest index that at least `quorum` of `matches` have reached.
pub fn committed_index(matches: &[LogIndex], quorum: usize) -> LogIndex {
    quorum_value(matches, quorum)
}

/// Outcome of a vote count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    Won,
    Lost,
    Pending,
}

pub fn vote_result(granted: usize, rejected: usize, voters: usize) -> VoteResult {
    let quorum = voters / 2 + 1;
    if granted >= quorum {
        VoteResult::Won
    } else if rejected > voters - quorum {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(matches: &[LogIndex], quorum: usize) -> LogIndex {
        // The largest candidate that at least `quorum` nodes have reached.
        let mut best = LogIndex(0);
        for candidate in matches {
            let count = matches.iter().filter(|m| *m >= candidate).count();
            if count >= quorum && *candidate > best {
                best = *candidate;
            }
        }
        best
    }

    proptest! {
        #[test]
        fn committed_index_matches_reference(raw in prop::collection::vec(0u64..20, 1..8)) {
            let matches: Vec<LogIndex> = raw.into_iter().map(LogIndex).collect();
            let quorum = matches.len() / 2 + 1;
            prop_assert_eq!(committed_index(&matches, quorum), reference(&matches, quorum));
        }
    }

    #[test]
    fn votes_decide_as_soon_as_the_outcome_is_certain() {
        assert_eq!(vote_result(3, 0, 5), VoteResult::Won);
        assert_eq!(vote_result(2, 2, 5), VoteResult::Pending);
        assert_eq!(vote_result(1, 3, 5), VoteResult::Lost);
        assert_eq!(vote_result(1, 0, 1), VoteResult::Won);
        assert_eq!(vote_result(1, 1, 2), VoteResult::Lost);
    }
}
