//! Quorum calls, in the spirit of Gorums: one request goes to every node of a
//! configuration, and a *quorum function* decides when the replies gathered so far are
//! enough. The proposer's two phases are quorum calls; so could any other role's be.
//!
//! A [`QuorumCall`] is plain data with no I/O: the owner sends the request to
//! [`QuorumCall::targets`], feeds each reply to [`QuorumCall::reply`], feeds time to
//! [`QuorumCall::tick`], and resends to [`QuorumCall::missing`] when it wants to (lost
//! messages are the owner's business, because only the owner knows whether a retry is
//! safe). Replies from nodes outside the configuration and duplicates are ignored.
//!
//! Every majority in the project is counted by [`majority`]: the quorum calls' rule, the
//! elector's pre-votes and check-quorum, the proposer's thrifty choice of acceptors, and
//! the simulator's checker.

use crate::messages::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The size of the smallest majority of `n` nodes: more than half of them. Any two
/// majorities of one configuration share a node, which is what makes a value chosen by
/// one majority visible to the phase 1 of every later ballot (Lamport, "Paxos Made
/// Simple" §2.2). `count` replies out of `n` form a majority when `count >= majority(n)`.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// A custom quorum function: the replies so far and the configuration size in, reached or not out.
pub type QuorumFn<R> = Box<dyn Fn(&BTreeMap<NodeId, R>, usize) -> bool + Send>;

/// When is a quorum reached?
pub enum QuorumRule<R> {
    /// The first reply.
    First,
    /// More than half of the configuration (see [`majority`]).
    Majority,
    /// Every node of the configuration.
    All,
    /// At least this many replies.
    Threshold(usize),
    /// A custom quorum function over the replies so far and the configuration size.
    Custom(QuorumFn<R>),
}

impl<R> QuorumRule<R> {
    fn reached(&self, replies: &BTreeMap<NodeId, R>, size: usize) -> bool {
        match self {
            QuorumRule::First => !replies.is_empty(),
            QuorumRule::Majority => replies.len() >= majority(size),
            QuorumRule::All => replies.len() == size,
            QuorumRule::Threshold(n) => replies.len() >= *n,
            QuorumRule::Custom(f) => f(replies, size),
        }
    }
}

impl<R> fmt::Debug for QuorumRule<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuorumRule::First => write!(f, "First"),
            QuorumRule::Majority => write!(f, "Majority"),
            QuorumRule::All => write!(f, "All"),
            QuorumRule::Threshold(n) => write!(f, "Threshold({n})"),
            QuorumRule::Custom(_) => write!(f, "Custom"),
        }
    }
}

/// Where a quorum call stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuorumStatus {
    /// Still waiting for replies.
    Pending,
    /// The quorum function is satisfied.
    Reached,
    /// The deadline passed first.
    Expired,
}

/// One request to a configuration and the replies gathered for it.
#[derive(Debug)]
pub struct QuorumCall<R> {
    config: BTreeSet<NodeId>,
    rule: QuorumRule<R>,
    replies: BTreeMap<NodeId, R>,
    deadline: u64,
    status: QuorumStatus,
}

impl<R> QuorumCall<R> {
    /// Starts a call to `config` at tick `now` that expires at tick `now + timeout`.
    pub fn new(config: impl IntoIterator<Item = NodeId>, rule: QuorumRule<R>, now: u64, timeout: u64) -> Self {
        let config: BTreeSet<NodeId> = config.into_iter().collect();
        assert!(!config.is_empty(), "a quorum call needs a non-empty configuration");
        QuorumCall {
            config,
            rule,
            replies: BTreeMap::new(),
            deadline: now.saturating_add(timeout),
            status: QuorumStatus::Pending,
        }
    }

    /// The nodes to send the request to, in ascending order.
    pub fn targets(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.config.iter().copied()
    }

    /// The nodes that have not replied yet, in ascending order.
    pub fn missing(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.config.iter().copied().filter(|n| !self.replies.contains_key(n))
    }

    /// Records a reply and says where the call stands. Once reached or expired a call
    /// stays so; later replies are still recorded (a leader may want them) but change nothing.
    pub fn reply(&mut self, from: NodeId, reply: R) -> QuorumStatus {
        if self.config.contains(&from) && !self.replies.contains_key(&from) {
            self.replies.insert(from, reply);
        }
        if self.status == QuorumStatus::Pending && self.rule.reached(&self.replies, self.config.len()) {
            self.status = QuorumStatus::Reached;
        }
        self.status
    }

    /// Advances time; a pending call whose deadline has passed expires.
    pub fn tick(&mut self, now: u64) -> QuorumStatus {
        if self.status == QuorumStatus::Pending && now >= self.deadline {
            self.status = QuorumStatus::Expired;
        }
        self.status
    }

    pub fn status(&self) -> QuorumStatus {
        self.status
    }

    pub fn replies(&self) -> &BTreeMap<NodeId, R> {
        &self.replies
    }

    pub fn into_replies(self) -> BTreeMap<NodeId, R> {
        self.replies
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_majority_of_three_needs_two() {
        let mut call = QuorumCall::new([1, 2, 3], QuorumRule::Majority, 0, 10);
        assert_eq!(call.reply(1, ()), QuorumStatus::Pending);
        assert_eq!(
            call.reply(1, ()),
            QuorumStatus::Pending,
            "a duplicate reply counts once"
        );
        assert_eq!(
            call.reply(9, ()),
            QuorumStatus::Pending,
            "a stranger's reply does not count"
        );
        assert_eq!(call.reply(3, ()), QuorumStatus::Reached);
        assert_eq!(call.missing().collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn quorum_majority_is_more_than_half() {
        let sizes: Vec<usize> = (1..=6).map(majority).collect();
        assert_eq!(sizes, vec![1, 2, 2, 3, 3, 4]);
        for n in 1..=9 {
            assert!(2 * majority(n) > n, "two majorities of {n} share a node");
            assert!(2 * (majority(n) - 1) <= n, "one fewer is not a majority of {n}");
        }
    }

    #[test]
    fn quorum_rules_first_all_threshold_custom() {
        let mut first = QuorumCall::new([1, 2, 3], QuorumRule::First, 0, 10);
        assert_eq!(first.reply(2, 7), QuorumStatus::Reached);

        let mut all = QuorumCall::new([1, 2], QuorumRule::All, 0, 10);
        assert_eq!(all.reply(1, 0), QuorumStatus::Pending);
        assert_eq!(all.reply(2, 0), QuorumStatus::Reached);

        let mut three = QuorumCall::new(1..=5, QuorumRule::Threshold(3), 0, 10);
        three.reply(1, 0);
        assert_eq!(three.reply(2, 0), QuorumStatus::Pending);
        assert_eq!(three.reply(5, 0), QuorumStatus::Reached);

        // A custom quorum function: the replies' values must sum to at least 10.
        let rule = QuorumRule::Custom(Box::new(|r: &BTreeMap<NodeId, u32>, _| r.values().sum::<u32>() >= 10));
        let mut custom = QuorumCall::new([1, 2, 3], rule, 0, 10);
        assert_eq!(custom.reply(1, 6), QuorumStatus::Pending);
        assert_eq!(custom.reply(2, 4), QuorumStatus::Reached);
    }

    #[test]
    fn quorum_expires_at_deadline_and_stays_expired() {
        let mut call = QuorumCall::new([1, 2, 3], QuorumRule::Majority, 5, 10);
        assert_eq!(call.tick(14), QuorumStatus::Pending);
        assert_eq!(call.tick(15), QuorumStatus::Expired);
        call.reply(1, ());
        assert_eq!(
            call.reply(2, ()),
            QuorumStatus::Expired,
            "a late quorum does not revive an expired call"
        );
    }
}
