//! Quorum: the rule that keeps a cut-off primary from taking writes.
//!
//! The voters are the db and balancer nodes of the cluster file. A node
//! "sees" a voter that membership reports up (and itself). A primary that
//! sees fewer than a majority fences itself at once; the failover decider
//! (on the other side of the cut) promotes only while it sees a majority
//! and only after the old primary's node has been silent for `down_after`
//! plus a margin: by then the old primary, which lost its majority at the
//! same moment, has stopped. Both sides count the same way, so at most one
//! side of any cut can have a majority, and only that side has a writable
//! primary.

use std::collections::BTreeSet;

/// Whether `me`, seeing `alive` (hostnames up in membership), sees a
/// majority of `voters`. A node outside the voters (a db node that joined
/// by pattern) needs a majority of the voters without itself.
pub fn has_quorum(voters: &[String], me: &str, alive: &BTreeSet<String>) -> bool {
    if voters.is_empty() {
        return true;
    }
    let seen = voters
        .iter()
        .filter(|v| v.as_str() == me || alive.contains(v.as_str()))
        .count();
    seen * 2 > voters.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(hosts: &[&str]) -> BTreeSet<String> {
        hosts.iter().map(|h| h.to_string()).collect()
    }

    fn voters(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("pi-{i}")).collect()
    }

    #[test]
    fn a_majority_of_three_is_two() {
        assert!(has_quorum(&voters(3), "pi-1", &set(&["pi-2"])));
        assert!(!has_quorum(&voters(3), "pi-1", &set(&[])));
    }

    #[test]
    fn two_halves_of_four_both_lack_a_majority() {
        assert!(!has_quorum(&voters(4), "pi-1", &set(&["pi-2"])));
        assert!(!has_quorum(&voters(4), "pi-3", &set(&["pi-4"])));
        assert!(has_quorum(&voters(4), "pi-1", &set(&["pi-2", "pi-3"])));
    }

    #[test]
    fn a_single_voter_always_has_its_majority() {
        assert!(has_quorum(&voters(1), "pi-1", &set(&[])));
    }

    #[test]
    fn web_nodes_do_not_count() {
        // pi-4 is up but is not a voter.
        assert!(!has_quorum(&voters(3), "pi-1", &set(&["pi-4"])));
    }
}
