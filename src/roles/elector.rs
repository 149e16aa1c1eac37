//! # Leader-elector
//!
//! Paxos is safe with any number of proposers but makes progress only when one leads
//! (Lamport, "Paxos Made Simple" §2.4; PMMC §3's failure detector). The elector decides
//! which node's proposer should lead, and with which ballot:
//!
//! - A **follower** waits for heartbeats. If none arrives within a randomized election
//!   timeout it first asks the others for a **pre-vote** (`PreVote`, answered by
//!   `PreVoteReply`): a node grants it if the ballot asked for is above every ballot it
//!   knows and it heard no leader within the shortest election timeout, and answering
//!   changes nothing at the node that answers. With a majority of grants (its own
//!   included) it becomes a **candidate**: it picks the smallest ballot of its own above
//!   every ballot it has seen, persists it (so a restarted node never reuses a ballot),
//!   and orders its proposer to `Lead` with it. Without them it asks again after
//!   another timeout, its ballot unchanged: a node cut off from the majority does not
//!   inflate its ballot, so when it returns it cannot depose a healthy leader (Raft's
//!   pre-vote, Ongaro's thesis §9.6; config key `pre_vote`).
//! - When the proposer's phase 1 succeeds (`Elected`) the candidate becomes **leader** and
//!   sends `Heartbeat` every `heartbeat_ticks`. A leader that has not heard
//!   `HeartbeatReply` from a majority within an election timeout steps down (it is
//!   probably cut off), so clients on its side fail fast instead of waiting on it.
//! - A heartbeat or reply carrying a higher ballot, or a proposer `Preempted`, turns a
//!   candidate or leader back into a follower and orders the proposer to `StepDown`.
//!
//! The elector also tells the node who leads (`leader()`), so that a node asked by a
//! client forwards the command to the leader's proposer.
//!
//! **Invariant.** Every ballot this elector hands its proposer is its own, higher than
//! any it has seen or used before, and durable before it is used.
//!
//! **Left out.** Leader leases and leader priorities. Pre-vote is liveness only: Paxos
//! is safe whoever campaigns, and an acceptor still promises any higher ballot.

use super::quorum::majority;
use super::ready::{Ready, Write};
use super::rng::SeededRng;
use crate::messages::local::{ElectorOrder, LocalMessage, ProposerEvent};
use crate::messages::{Ballot, Configuration, ElectorMessage, MAX_ROUND, NodeId, PeerMessage};
use std::collections::{BTreeMap, BTreeSet};

/// What the elector publishes to the rest of the node: who leads, and the highest
/// ballot known (etcd's gateway reports its round as `raft_term`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leadership {
    pub leader: Option<NodeId>,
    pub ballot: Ballot,
}

#[derive(Clone, Debug)]
pub struct ElectorConfig {
    pub heartbeat_ticks: u64,
    pub election_min_ticks: u64,
    pub election_max_ticks: u64,
    /// A leader that heard no majority for this long steps down (check-quorum).
    pub step_down_ticks: u64,
    /// Ask for a majority of pre-votes before campaigning.
    pub pre_vote: bool,
}

impl Default for ElectorConfig {
    fn default() -> Self {
        ElectorConfig {
            heartbeat_ticks: 5,
            election_min_ticks: 30,
            election_max_ticks: 60,
            step_down_ticks: 60,
            pre_vote: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Role {
    Follower {
        deadline: u64,
    },
    /// Asking for pre-votes for `ballot` (not yet its own: nothing persisted or raised).
    PreCandidate {
        ballot: Ballot,
        deadline: u64,
        grants: BTreeSet<NodeId>,
    },
    Candidate {
        ballot: Ballot,
        deadline: u64,
    },
    Leader {
        ballot: Ballot,
        since: u64,
        last_beat: u64,
        acks: BTreeMap<NodeId, u64>,
    },
}

/// What the elector asks to have done.
pub type ElectorOutput = Ready;

/// The order an output gives the proposer, if any (at most one per input).
pub fn order_of(out: &Ready) -> Option<ElectorOrder> {
    out.local.iter().find_map(|m| match m {
        LocalMessage::Order(order) => Some(*order),
        _ => None,
    })
}

/// The ballot an output persists, if any.
pub fn persisted(out: &Ready) -> Option<Ballot> {
    out.writes.iter().find_map(|w| match w {
        Write::Ballot(b) => Some(*b),
        _ => None,
    })
}

/// Gives the proposer `order`, replacing an order given earlier in the same output.
fn set_order(out: &mut Ready, order: ElectorOrder) {
    out.local.retain(|m| !matches!(m, LocalMessage::Order(_)));
    out.local.push(LocalMessage::Order(order));
}

#[derive(Debug)]
pub enum ElectorInput {
    Tick,
    Peer(NodeId, ElectorMessage),
    Proposer(ProposerEvent),
    /// From the local state machine: this configuration is in force here.
    Reconfigure(Configuration),
}

/// The elector's state machine: no I/O, randomness from a seed.
#[derive(Debug)]
pub struct Elector {
    id: NodeId,
    nodes: Vec<NodeId>,
    cfg: ElectorConfig,
    rng: SeededRng,
    now: u64,
    highest: Ballot,
    leader: Option<NodeId>,
    /// When the leader's last heartbeat came (a pre-vote is refused for a while after).
    heard_leader: Option<u64>,
    role: Role,
    /// Election timeouts that fired (each a pre-vote or a campaign), for the status.
    timeouts: u64,
}

impl Elector {
    /// `highest` is the highest ballot this node persisted or promised before.
    pub fn new(id: NodeId, nodes: Vec<NodeId>, cfg: ElectorConfig, seed: u64, highest: Ballot) -> Self {
        let mut rng = SeededRng::new(seed);
        let deadline = rng.between(cfg.election_min_ticks, cfg.election_max_ticks);
        Elector {
            id,
            nodes,
            cfg,
            rng,
            now: 0,
            highest,
            leader: None,
            heard_leader: None,
            role: Role::Follower { deadline },
            timeouts: 0,
        }
    }

    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    pub fn highest(&self) -> Ballot {
        self.highest
    }

    pub fn timeouts(&self) -> u64 {
        self.timeouts
    }

    pub fn role_name(&self) -> &'static str {
        match self.role {
            Role::Follower { .. } => "follower",
            Role::PreCandidate { .. } => "pre-candidate",
            Role::Candidate { .. } => "candidate",
            Role::Leader { .. } => "leader",
        }
    }

    pub fn handle(&mut self, input: ElectorInput) -> ElectorOutput {
        let mut out = Ready::default();
        let before = self.highest;
        match input {
            // Time passes: campaign on timeout; as leader, beat and check the quorum.
            ElectorInput::Tick => self.on_tick(&mut out),
            // A new configuration is in force here (membership issue: to do).
            ElectorInput::Reconfigure(_) => {}
            // A leader's heartbeat: follow it if its ballot is the highest we know.
            ElectorInput::Peer(from, ElectorMessage::Heartbeat { ballot }) => {
                if ballot >= self.highest && ballot.node == from && ballot.round <= MAX_ROUND {
                    self.highest = ballot;
                    self.heard_leader = Some(self.now);
                    let still_mine = matches!(&self.role, Role::Leader { ballot: b, .. } if *b == ballot);
                    if !still_mine {
                        self.follow(Some(from), &mut out);
                    }
                }
                let reply = ElectorMessage::HeartbeatReply {
                    ballot,
                    highest: self.highest,
                };
                out.send.push((from, PeerMessage::Elector(reply)));
            }
            // A follower's answer: count it, or learn that we were deposed. Only the
            // other members count toward check-quorum (this node counts itself once).
            ElectorInput::Peer(from, ElectorMessage::HeartbeatReply { ballot, highest }) => {
                if let Role::Leader { ballot: b, acks, .. } = &mut self.role
                    && *b == ballot
                    && from != self.id
                    && self.nodes.contains(&from)
                {
                    acks.insert(from, self.now);
                }
                self.maybe_defer_to(highest, &mut out);
            }
            // Another node would campaign: grant unless we hear a leader (ours or us).
            ElectorInput::Peer(from, ElectorMessage::PreVote { ballot }) => {
                let leader_alive = matches!(self.role, Role::Leader { .. })
                    || self
                        .heard_leader
                        .is_some_and(|t| self.leader.is_some() && self.now - t < self.cfg.election_min_ticks);
                let granted = ballot > self.highest && ballot.round <= MAX_ROUND && !leader_alive;
                let reply = ElectorMessage::PreVoteReply { ballot, granted };
                out.send.push((from, PeerMessage::Elector(reply)));
            }
            // An answer to our pre-vote: campaign once a majority grants it.
            ElectorInput::Peer(from, ElectorMessage::PreVoteReply { ballot, granted }) => {
                if let Role::PreCandidate { ballot: b, grants, .. } = &mut self.role
                    && *b == ballot
                    && granted
                    && self.nodes.contains(&from)
                {
                    grants.insert(from);
                    if grants.len() >= majority(self.nodes.len()) {
                        self.campaign(&mut out);
                    }
                }
            }
            // Our proposer won phase 1: lead, and say so at once.
            ElectorInput::Proposer(ProposerEvent::Elected(ballot)) => {
                if matches!(self.role, Role::Candidate { ballot: b, .. } if b == ballot) {
                    self.role = Role::Leader {
                        ballot,
                        since: self.now,
                        last_beat: self.now,
                        acks: BTreeMap::new(),
                    };
                    self.set_leader(Some(self.id), &mut out);
                    self.beat(ballot, &mut out);
                }
            }
            // Our proposer met a higher ballot.
            ElectorInput::Proposer(ProposerEvent::Preempted(higher)) => self.maybe_defer_to(higher, &mut out),
            // Our phase 1 found no majority: wait a random while before trying again.
            ElectorInput::Proposer(ProposerEvent::PrepareTimedOut(ballot)) => {
                if matches!(self.role, Role::Candidate { ballot: b, .. } if b == ballot) {
                    self.follow(None, &mut out);
                }
            }
        }
        assert!(
            self.highest >= before,
            "elector's highest ballot went down from {before} to {}",
            self.highest
        );
        out
    }

    fn on_tick(&mut self, out: &mut ElectorOutput) {
        self.now += 1;
        let now = self.now;
        match &mut self.role {
            Role::Follower { deadline } | Role::PreCandidate { deadline, .. } | Role::Candidate { deadline, .. } => {
                if now >= *deadline {
                    self.maybe_pre_vote(out);
                }
            }
            Role::Leader {
                ballot,
                since,
                last_beat,
                acks,
            } => {
                let ballot = *ballot;
                let window = self.cfg.step_down_ticks;
                let heard = 1 + acks.values().filter(|&&t| now - t <= window).count();
                if now - *since > window && heard < majority(self.nodes.len()) {
                    // Lost touch with a majority for a whole election timeout.
                    tracing::info!(node = self.id, role = "elector", %ballot, "no majority heard: stepping down");
                    self.follow(None, out);
                    return;
                }
                if now - *last_beat >= self.cfg.heartbeat_ticks {
                    *last_beat = now;
                    self.beat(ballot, out);
                }
            }
        }
    }

    /// The election timeout passed: ask for pre-votes (or, with pre-vote off or alone,
    /// campaign at once).
    fn maybe_pre_vote(&mut self, out: &mut ElectorOutput) {
        self.timeouts += 1;
        if self.highest.round >= MAX_ROUND {
            // No acceptor takes a higher ballot: campaigning would only wedge the cluster.
            tracing::error!(node = self.id, role = "elector", highest = %self.highest, "ballots exhausted: not campaigning");
            return self.follow(None, out);
        }
        if !self.cfg.pre_vote || self.nodes.len() == 1 {
            return self.campaign(out);
        }
        if matches!(self.role, Role::Candidate { .. }) {
            set_order(out, ElectorOrder::StepDown);
        }
        let ballot = self.highest.next_for(self.id);
        self.role = Role::PreCandidate {
            ballot,
            deadline: self.now + self.random_timeout(),
            grants: BTreeSet::from([self.id]),
        };
        self.set_leader(None, out);
        for &to in self.nodes.iter().filter(|&&n| n != self.id) {
            out.send
                .push((to, PeerMessage::Elector(ElectorMessage::PreVote { ballot })));
        }
    }

    /// Become a candidate with a fresh ballot.
    fn campaign(&mut self, out: &mut ElectorOutput) {
        let ballot = self.highest.next_for(self.id);
        self.highest = ballot;
        let deadline = self.now + self.random_timeout();
        self.role = Role::Candidate { ballot, deadline };
        out.writes.push(Write::Ballot(ballot));
        set_order(out, ElectorOrder::Lead(ballot));
        self.set_leader(None, out);
    }

    /// A higher ballot exists: if we lead or campaign below it, stop.
    fn maybe_defer_to(&mut self, higher: Ballot, out: &mut ElectorOutput) {
        if higher <= self.highest || higher.round > MAX_ROUND {
            return;
        }
        self.highest = higher;
        if matches!(self.role, Role::Leader { .. } | Role::Candidate { .. }) {
            set_order(out, ElectorOrder::StepDown);
        }
        self.follow(None, out);
    }

    fn follow(&mut self, leader: Option<NodeId>, out: &mut ElectorOutput) {
        if matches!(self.role, Role::Leader { .. } | Role::Candidate { .. }) && order_of(out).is_none() {
            set_order(out, ElectorOrder::StepDown);
        }
        self.role = Role::Follower {
            deadline: self.now + self.random_timeout(),
        };
        self.set_leader(leader, out);
    }

    fn beat(&mut self, ballot: Ballot, out: &mut ElectorOutput) {
        for &to in self.nodes.iter().filter(|&&n| n != self.id) {
            out.send
                .push((to, PeerMessage::Elector(ElectorMessage::Heartbeat { ballot })));
        }
    }

    fn set_leader(&mut self, leader: Option<NodeId>, out: &mut ElectorOutput) {
        if self.leader != leader {
            self.leader = leader;
            out.leader = Some(leader);
        }
    }

    fn random_timeout(&mut self) -> u64 {
        self.rng
            .between(self.cfg.election_min_ticks, self.cfg.election_max_ticks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elector(id: NodeId) -> Elector {
        Elector::new(id, vec![1, 2, 3], ElectorConfig::default(), id, Ballot::ZERO)
    }

    /// Ticks until the election timeout, grants the pre-vote from the first other node
    /// asked (a majority, with this one), and returns the campaign that follows.
    fn tick_until_order(e: &mut Elector) -> ElectorOutput {
        for _ in 0..1000 {
            let out = e.handle(ElectorInput::Tick);
            if let Some((to, PeerMessage::Elector(ElectorMessage::PreVote { ballot }))) = out.send.first() {
                let granted = ElectorMessage::PreVoteReply {
                    ballot: *ballot,
                    granted: true,
                };
                return e.handle(ElectorInput::Peer(*to, granted));
            }
        }
        panic!("no pre-vote within 1000 ticks");
    }

    /// An elector of node `id` that won its campaign: it leads with the ballot returned.
    fn elected(id: NodeId) -> (Elector, Ballot) {
        let mut e = elector(id);
        let Some(ElectorOrder::Lead(b)) = order_of(&tick_until_order(&mut e)) else {
            panic!("expected Lead")
        };
        e.handle(ElectorInput::Proposer(ProposerEvent::Elected(b)));
        (e, b)
    }

    /// The pre-votes `out` asks for: (to, ballot).
    fn pre_votes(out: &ElectorOutput) -> Vec<(NodeId, Ballot)> {
        out.send
            .iter()
            .filter_map(|(to, m)| match m {
                PeerMessage::Elector(ElectorMessage::PreVote { ballot }) => Some((*to, *ballot)),
                _ => None,
            })
            .collect()
    }

    /// Whether `e` grants a pre-vote for `ballot` from node 3.
    fn grants(e: &mut Elector, ballot: Ballot) -> bool {
        let out = e.handle(ElectorInput::Peer(3, ElectorMessage::PreVote { ballot }));
        match &out.send[..] {
            [(3, PeerMessage::Elector(ElectorMessage::PreVoteReply { ballot: b, granted }))] if *b == ballot => {
                *granted
            }
            other => panic!("expected one PreVoteReply to node 3, got {other:?}"),
        }
    }

    #[test]
    fn elector_campaigns_after_silence_with_persisted_fresh_ballot() {
        let mut e = Elector::new(2, vec![1, 2, 3], ElectorConfig::default(), 42, Ballot::new(7, 3));
        let out = tick_until_order(&mut e);
        assert_eq!(
            persisted(&out),
            Some(Ballot::new(8, 2)),
            "above every ballot seen, and persisted"
        );
        assert_eq!(order_of(&out), Some(ElectorOrder::Lead(Ballot::new(8, 2))));
    }

    #[test]
    fn elector_leads_after_elected_and_heartbeats() {
        let mut e = elector(1);
        let Some(ElectorOrder::Lead(b)) = order_of(&tick_until_order(&mut e)) else {
            panic!("expected Lead")
        };
        let out = e.handle(ElectorInput::Proposer(ProposerEvent::Elected(b)));
        assert_eq!(out.leader, Some(Some(1)));
        assert_eq!(out.send.len(), 2, "a new leader heartbeats every peer at once");
    }

    #[test]
    fn elector_heartbeat_with_higher_ballot_deposes_leader() {
        let (mut e, b) = elected(1);
        let out = e.handle(ElectorInput::Peer(
            3,
            ElectorMessage::Heartbeat {
                ballot: Ballot::new(b.round + 1, 3),
            },
        ));
        assert_eq!(order_of(&out), Some(ElectorOrder::StepDown));
        assert_eq!(e.leader(), Some(3));
        // A stale heartbeat from the old ballot's node does not change the leader.
        let out = e.handle(ElectorInput::Peer(
            2,
            ElectorMessage::Heartbeat {
                ballot: Ballot::new(1, 2),
            },
        ));
        assert_eq!(e.leader(), Some(3));
        assert!(
            matches!(
                &out.send[..],
                [(2, PeerMessage::Elector(ElectorMessage::HeartbeatReply { .. }))]
            ),
            "the stale leader is told the higher ballot"
        );
    }

    #[test]
    fn elector_leader_cut_off_from_majority_steps_down() {
        let (mut e, _) = elected(1);
        let mut stepped_down = false;
        for _ in 0..500 {
            if order_of(&e.handle(ElectorInput::Tick)) == Some(ElectorOrder::StepDown) {
                stepped_down = true;
                break;
            }
        }
        assert!(stepped_down, "a leader hearing nobody must step down");
    }

    #[test]
    fn elector_heartbeat_replies_from_strangers_do_not_keep_a_cut_off_leader() {
        let (mut e, b) = elected(1);
        let ack = ElectorMessage::HeartbeatReply { ballot: b, highest: b };
        let mut stepped_down = false;
        for _ in 0..500 {
            // Nodes 2 and 3 are silent; a stranger and this node itself answer every tick.
            for from in [99, 1] {
                let out = e.handle(ElectorInput::Peer(from, ack.clone()));
                assert_eq!(order_of(&out), None, "an ack deposes nobody");
            }
            if order_of(&e.handle(ElectorInput::Tick)) == Some(ElectorOrder::StepDown) {
                stepped_down = true;
                break;
            }
        }
        assert!(stepped_down, "acks from outside the configuration are no quorum");
        // A member's acks do keep a leader in office.
        let (mut e, b) = elected(1);
        let ack = ElectorMessage::HeartbeatReply { ballot: b, highest: b };
        for _ in 0..500 {
            e.handle(ElectorInput::Peer(2, ack.clone()));
            assert_ne!(order_of(&e.handle(ElectorInput::Tick)), Some(ElectorOrder::StepDown));
        }
        assert_eq!(e.role_name(), "leader");
    }

    #[test]
    fn elector_same_seed_same_timeouts() {
        let run = || {
            let mut e = elector(2);
            (0..200).map(|_| e.handle(ElectorInput::Tick)).collect::<Vec<_>>()
        };
        let first = run();
        assert!(
            first.iter().any(|out| !pre_votes(out).is_empty()),
            "200 ticks of silence ask for pre-votes"
        );
        assert_eq!(first, run());
    }

    #[test]
    fn elector_cut_off_node_asks_for_pre_votes_without_raising_its_ballot() {
        let mut e = Elector::new(2, vec![1, 2, 3], ElectorConfig::default(), 42, Ballot::new(7, 3));
        let mut asked = Vec::new();
        for _ in 0..1000 {
            let out = e.handle(ElectorInput::Tick);
            assert_eq!(
                (persisted(&out), order_of(&out)),
                (None, None),
                "no campaign without a majority"
            );
            asked.extend(pre_votes(&out));
            // Node 1 refuses; node 3 is cut off.
            for &(to, ballot) in pre_votes(&out).iter().filter(|(to, _)| *to == 1) {
                let refused = ElectorMessage::PreVoteReply { ballot, granted: false };
                let out = e.handle(ElectorInput::Peer(to, refused));
                assert_eq!(
                    (persisted(&out), order_of(&out)),
                    (None, None),
                    "a refusal starts nothing"
                );
            }
        }
        assert!(e.timeouts() >= 10, "it keeps asking, {} rounds", e.timeouts());
        assert!(
            asked.iter().all(|&(_, b)| b == Ballot::new(8, 2)),
            "always for the same ballot"
        );
        assert_eq!(e.highest(), Ballot::new(7, 3), "its ballot did not grow");
        assert_eq!(e.role_name(), "pre-candidate");
    }

    #[test]
    fn elector_refuses_pre_votes_while_it_hears_a_leader() {
        let mut e = elector(2);
        let leader = Ballot::new(5, 1);
        e.handle(ElectorInput::Peer(1, ElectorMessage::Heartbeat { ballot: leader }));
        assert!(!grants(&mut e, Ballot::new(6, 3)), "the leader was just heard");
        assert_eq!(
            (e.highest(), e.leader(), e.role_name()),
            (leader, Some(1), "follower"),
            "answering changes nothing"
        );
        // Silence for the shortest election timeout: the leader may be gone.
        for _ in 0..ElectorConfig::default().election_min_ticks {
            e.handle(ElectorInput::Tick);
        }
        assert!(
            grants(&mut e, Ballot::new(6, 3)),
            "no leader heard for an election timeout"
        );
        assert!(
            !grants(&mut e, Ballot::new(4, 3)),
            "never for a ballot not above the highest"
        );
        // A leader refuses too.
        let (mut l, b) = elected(1);
        assert!(!grants(&mut l, Ballot::new(b.round + 1, 3)));
    }

    #[test]
    fn elector_pre_votes_from_strangers_or_for_absurd_ballots_count_for_nothing() {
        let mut e = elector(2);
        let out = (0..1000)
            .map(|_| e.handle(ElectorInput::Tick))
            .find(|out| !pre_votes(out).is_empty())
            .expect("a pre-vote");
        let ballot = pre_votes(&out)[0].1;
        let granted = ElectorMessage::PreVoteReply { ballot, granted: true };
        for stranger in [2, 99] {
            let out = e.handle(ElectorInput::Peer(stranger, granted.clone()));
            assert_eq!(
                order_of(&out),
                None,
                "a grant from {stranger} is not one of the others'"
            );
        }
        assert_eq!(
            order_of(&e.handle(ElectorInput::Peer(1, granted))),
            Some(ElectorOrder::Lead(ballot))
        );
        // No grant for a ballot no acceptor would take, and no campaign past the last one.
        let mut f = elector(1);
        assert!(!grants(&mut f, Ballot::new(MAX_ROUND + 1, 3)));
        let mut last = Elector::new(
            2,
            vec![1, 2, 3],
            ElectorConfig::default(),
            42,
            Ballot::new(MAX_ROUND, 3),
        );
        for _ in 0..1000 {
            let out = last.handle(ElectorInput::Tick);
            assert!(
                pre_votes(&out).is_empty() && order_of(&out).is_none(),
                "ballots exhausted"
            );
        }
    }

    #[test]
    fn elector_without_pre_vote_campaigns_at_the_timeout() {
        let cfg = ElectorConfig {
            pre_vote: false,
            ..ElectorConfig::default()
        };
        let mut e = Elector::new(2, vec![1, 2, 3], cfg, 42, Ballot::new(7, 3));
        let out = (0..1000)
            .map(|_| e.handle(ElectorInput::Tick))
            .find(|out| persisted(out).is_some())
            .expect("a campaign");
        assert!(pre_votes(&out).is_empty());
        assert_eq!(order_of(&out), Some(ElectorOrder::Lead(Ballot::new(8, 2))));
    }
}
