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
//! **Configurations** (`crate::messages::membership`). The elector knows the
//! configuration in force on its node (`None` on a node that joins, [`Elector::with_config`])
//! and its members: they are whom it asks for pre-votes, heartbeats and counts for
//! check-quorum. Every ballot it makes is of that configuration (`Ballot::next_in`).
//! `Reconfigure(config)`, sent once the state machine applied a StopSign, is ignored
//! unless `config` is newer (ids never go back); otherwise the members change, the
//! highest ballot rises to at least `config`'s first (`c:0.0`), and:
//!
//! - a node that is no member is **removed** ([`Elector::is_removed`]): it steps down,
//!   reports once that it follows nobody, and never campaigns, heartbeats, grants a
//!   pre-vote or follows a leader until a later configuration counts it again;
//! - the **leader hands over** to itself: every member decided the same StopSign, so it
//!   campaigns in `config` at once, without pre-vote, with a fresh ballot persisted
//!   before `Lead` as ever. Clients pause for one phase 1, not an election timeout;
//! - a candidate or pre-candidate of the old configuration gives up and waits as a
//!   follower; a follower keeps its leader until one of `config` heartbeats, and its
//!   election timer starts again so that it campaigns if none does; a follower whose
//!   leader is no member of `config` forgets it and campaigns after a short wait.
//!
//! A heartbeat or pre-vote of an **older** configuration's ballot is neither followed
//! nor granted; the heartbeat's reply names our highest (at least `c:0.0`), so a leader
//! still in the old configuration steps down. A heartbeat of a **newer** configuration
//! is followed (this node has not applied the StopSign yet; knowing the leader lets it
//! forward requests), but its pre-votes are never granted, and a node that knows a
//! ballot of a configuration it has not applied does not campaign (its ballot would be
//! below one it knows) until its `Reconfigure`. A node that joins (`None`) never
//! campaigns or grants until a configuration counts it.
//!
//! **Invariant.** Every ballot this elector hands its proposer is its own, of the
//! configuration in force here, higher than any it has seen or used before, and durable
//! before it is used. Its highest ballot never goes back.
//!
//! **Left out.** Leader leases and leader priorities. Pre-vote is liveness only: Paxos
//! is safe whoever campaigns, and an acceptor still promises any higher ballot. When the
//! leader itself is removed it hands over to nobody in particular: the followers forget
//! it and campaign after a short randomized wait (a third of the shortest election
//! timeout at most) instead of a whole election timeout.

use super::quorum::majority;
use super::ready::{Ready, Write};
use super::rng::SeededRng;
use crate::messages::local::{ElectorOrder, LocalMessage, ProposerEvent};
use crate::messages::{Ballot, ConfigId, Configuration, ElectorMessage, MAX_ROUND, NodeId, PeerMessage};
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
    /// The members of the configuration in force here: who is asked for pre-votes,
    /// heartbeated, and counted for check-quorum.
    nodes: Vec<NodeId>,
    /// The configuration in force here (`None`: a node that joins and has applied
    /// none yet). Every ballot this elector makes is of it.
    config: Option<ConfigId>,
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
            config: Some(0),
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

    /// The configuration in force on this node at start (default `Some(0)`, the config
    /// file's; `nodes` given to [`Elector::new`] are its members). `None`: a node that
    /// joins, which never campaigns until a `Reconfigure` names it a member.
    pub fn with_config(mut self, config: Option<ConfigId>) -> Self {
        self.config = config;
        if let Some(c) = config {
            self.highest = self.highest.max(Ballot::in_config(c, 0, 0));
        }
        self
    }

    /// The configuration in force here.
    pub fn config(&self) -> Option<ConfigId> {
        self.config
    }

    /// The configuration in force here does not count this node: it never campaigns,
    /// heartbeats, grants a pre-vote or follows a leader again (unless a later
    /// configuration counts it once more).
    pub fn is_removed(&self) -> bool {
        self.config.is_some() && !self.nodes.contains(&self.id)
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
            // A StopSign was applied here: the next configuration's members; a leader
            // hands over to itself in it at once (see `reconfigure`).
            ElectorInput::Reconfigure(config) => self.reconfigure(config, &mut out),
            // A leader's heartbeat: follow it if its ballot is the highest we know and
            // not of a configuration older than ours (of a newer one: we have not applied
            // its StopSign yet, but knowing its leader lets us forward requests). The
            // reply names our highest, so a leader of an older configuration steps down.
            ElectorInput::Peer(from, ElectorMessage::Heartbeat { ballot }) => {
                let current = self.config.is_none_or(|c| ballot.config >= c) && !self.is_removed();
                if current && ballot >= self.highest && ballot.node == from && ballot.round <= MAX_ROUND {
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
            // Another node would campaign: grant unless we hear a leader (ours or us),
            // and only for a ballot of our configuration, never as a removed or joining
            // node.
            ElectorInput::Peer(from, ElectorMessage::PreVote { ballot }) => {
                let leader_alive = matches!(self.role, Role::Leader { .. })
                    || self
                        .heard_leader
                        .is_some_and(|t| self.leader.is_some() && self.now - t < self.cfg.election_min_ticks);
                let ours = self.config == Some(ballot.config) && !self.is_removed();
                let granted = ours && ballot > self.highest && ballot.round <= MAX_ROUND && !leader_alive;
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
        let Some(ballot) = self.next_ballot() else {
            // No configuration counting this node, or one it has not applied yet: wait
            // (following whoever it follows) for the `Reconfigure` that changes that.
            if matches!(self.role, Role::Candidate { .. }) {
                set_order(out, ElectorOrder::StepDown);
            }
            self.role = Role::Follower {
                deadline: self.now + self.random_timeout(),
            };
            return;
        };
        self.timeouts += 1;
        if ballot.round > MAX_ROUND {
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

    /// The smallest ballot of ours, in our configuration, above every ballot we know;
    /// `None` if we may not campaign: no configuration yet (joining), not a member
    /// (removed), or we know a ballot of a configuration we have not applied.
    fn next_ballot(&self) -> Option<Ballot> {
        let config = self.config?;
        if self.is_removed() || self.highest.config > config {
            return None;
        }
        Some(self.highest.next_in(config, self.id))
    }

    /// Become a candidate with a fresh ballot (the caller checked that we may).
    fn campaign(&mut self, out: &mut ElectorOutput) {
        let Some(ballot) = self.next_ballot().filter(|b| b.round <= MAX_ROUND) else {
            return self.follow(None, out);
        };
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

    /// `Reconfigure(config)`: ignored unless newer than ours (ids never go back: a
    /// restarted node replays old StopSigns). The members become `config`'s, and our
    /// highest ballot at least the first of `config` (so a leader of an older one that
    /// heartbeats us learns it is behind). Then:
    ///
    /// - not a member: removed. It steps down if it led or campaigned, follows nobody
    ///   (the node hears `leader = None` once), and never campaigns, heartbeats or
    ///   grants a pre-vote again.
    /// - the leader: a planned hand-over. Every member decided the same StopSign, so it
    ///   campaigns in `config` at once, without pre-vote, with a fresh persisted ballot:
    ///   the pause clients see is one phase 1, not an election timeout.
    /// - a candidate of the old configuration steps down, a pre-candidate gives up;
    ///   either waits like a follower.
    /// - a follower keeps its leader until it hears one of `config`; its election timer
    ///   starts again, so it campaigns if none shows up.
    fn reconfigure(&mut self, config: Configuration, out: &mut ElectorOutput) {
        if self.config.is_some_and(|c| config.id <= c) {
            return;
        }
        let was_removed = self.is_removed();
        self.config = Some(config.id);
        self.nodes = config.ids();
        self.highest = self.highest.max(Ballot::in_config(config.id, 0, 0));
        if !config.contains(self.id) {
            tracing::info!(node = self.id, role = "elector", %config, "removed from the configuration");
            if matches!(self.role, Role::Leader { .. } | Role::Candidate { .. }) {
                set_order(out, ElectorOrder::StepDown);
            }
            self.role = Role::Follower { deadline: u64::MAX };
            if !was_removed {
                // Once: the node's gateway stops forwarding to anyone.
                self.leader = None;
                out.leader = Some(None);
            }
            return;
        }
        match self.role {
            // Hand over to ourselves in the new configuration.
            Role::Leader { .. } => self.campaign(out),
            // A campaign of the old configuration: over.
            Role::Candidate { .. } | Role::PreCandidate { .. } => self.follow(None, out),
            // Keep following; campaign after a timeout if no leader of `config` shows up.
            // A leader the configuration removed will not hand over: forget it, and
            // campaign after a short randomized wait (the other members forget it too,
            // so they grant the pre-vote).
            Role::Follower { .. } => {
                let leader_removed = self.leader.is_some_and(|l| !config.contains(l));
                let wait = if leader_removed {
                    self.heard_leader = None;
                    self.set_leader(None, out);
                    self.rng.between(1, (self.cfg.election_min_ticks / 3).max(2))
                } else {
                    self.random_timeout()
                };
                self.role = Role::Follower {
                    deadline: self.now + wait,
                }
            }
        }
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

    /// Configuration `id` of `members`.
    fn config(id: ConfigId, members: &[NodeId]) -> Configuration {
        Configuration {
            id,
            start: 10 * id,
            members: Configuration::of_ids(members).members,
        }
    }

    /// The heartbeats `out` sends: (to, ballot).
    fn beats(out: &ElectorOutput) -> Vec<(NodeId, Ballot)> {
        out.send
            .iter()
            .filter_map(|(to, m)| match m {
                PeerMessage::Elector(ElectorMessage::Heartbeat { ballot }) => Some((*to, *ballot)),
                _ => None,
            })
            .collect()
    }

    /// Ticks `e` `n` times; panics if it asks for a pre-vote, persists a ballot, gives an
    /// order or heartbeats.
    fn stays_quiet(e: &mut Elector, n: usize, why: &str) {
        for _ in 0..n {
            let out = e.handle(ElectorInput::Tick);
            assert!(
                pre_votes(&out).is_empty() && persisted(&out).is_none() && order_of(&out).is_none(),
                "{why}: {out:?}"
            );
            assert!(beats(&out).is_empty(), "{why}: no heartbeats");
        }
    }

    #[test]
    fn elector_leader_hands_over_to_the_next_configuration_without_pre_vote() {
        let (mut e, b) = elected(1);
        let out = e.handle(ElectorInput::Reconfigure(config(1, &[1, 2, 4])));
        let handed = Ballot::in_config(1, 1, 1);
        assert!(pre_votes(&out).is_empty(), "a planned hand-over asks nobody");
        assert_eq!(
            persisted(&out),
            Some(handed),
            "a fresh ballot of configuration 1, persisted"
        );
        assert_eq!(order_of(&out), Some(ElectorOrder::Lead(handed)));
        assert!(handed > b && e.highest() == handed);
        // The ballot is written before the order that uses it leaves (the Ready's rule).
        assert_eq!(out.writes, vec![Write::Ballot(handed)]);
        let out = e.handle(ElectorInput::Proposer(ProposerEvent::Elected(handed)));
        assert_eq!(out.leader, Some(Some(1)));
        assert_eq!(
            beats(&out),
            vec![(2, handed), (4, handed)],
            "the new members are heartbeated, node 3 no more"
        );
        // Check-quorum counts the new members only.
        let ack = ElectorMessage::HeartbeatReply {
            ballot: handed,
            highest: handed,
        };
        for _ in 0..500 {
            e.handle(ElectorInput::Peer(3, ack.clone()));
            if order_of(&e.handle(ElectorInput::Tick)) == Some(ElectorOrder::StepDown) {
                return;
            }
        }
        panic!("acks from a node that left keep nobody in office");
    }

    #[test]
    fn elector_reconfigure_to_an_old_or_equal_configuration_is_ignored() {
        let (mut e, b) = elected(1);
        e.handle(ElectorInput::Reconfigure(config(2, &[1, 2, 3])));
        let before = (e.highest(), e.role_name(), e.leader());
        for id in [0, 1, 2] {
            let out = e.handle(ElectorInput::Reconfigure(config(id, &[1, 5])));
            assert_eq!(out, ElectorOutput::default(), "configuration {id} is not newer than 2");
        }
        assert_eq!((e.highest(), e.role_name(), e.leader()), before);
        assert!(e.highest() > b);
    }

    #[test]
    fn elector_follower_of_a_removed_leader_campaigns_soon() {
        let mut e = elector(2);
        let out = e.handle(ElectorInput::Peer(
            1,
            ElectorMessage::Heartbeat {
                ballot: Ballot::new(4, 1),
            },
        ));
        assert_eq!(out.leader, Some(Some(1)));
        assert!(!grants(&mut e, Ballot::new(9, 3)), "refused while the leader is heard");
        // Node 1, the leader, is removed: nobody is handed over to.
        let out = e.handle(ElectorInput::Reconfigure(config(1, &[2, 3, 4])));
        assert_eq!(out.leader, Some(None), "the removed leader is forgotten at once");
        assert!(
            grants(&mut e, Ballot::in_config(1, 5, 3)),
            "a member of the new configuration may campaign at once"
        );
        // And it campaigns itself well before an election timeout would have passed.
        let soon = ElectorConfig::default().election_min_ticks / 3;
        let asked = (0..soon).any(|_| !pre_votes(&e.handle(ElectorInput::Tick)).is_empty());
        assert!(asked, "a pre-vote within {soon} ticks");
    }

    #[test]
    fn elector_removed_never_campaigns() {
        // A removed leader steps down and says once that it follows nobody.
        let (mut e, _) = elected(3);
        let out = e.handle(ElectorInput::Reconfigure(config(1, &[1, 2, 4])));
        assert_eq!(order_of(&out), Some(ElectorOrder::StepDown));
        assert_eq!(out.leader, Some(None));
        assert!(persisted(&out).is_none() && e.is_removed());
        stays_quiet(&mut e, 2000, "a removed node never campaigns");
        // It grants nothing and follows nobody, whatever it hears.
        assert!(!grants(&mut e, Ballot::in_config(1, 5, 4)));
        let out = e.handle(ElectorInput::Peer(
            1,
            ElectorMessage::Heartbeat {
                ballot: Ballot::in_config(1, 9, 1),
            },
        ));
        assert_eq!((out.leader, e.leader()), (None, None));
        let out = e.handle(ElectorInput::Reconfigure(config(2, &[1, 2])));
        assert_eq!(out.leader, None, "said once");
        stays_quiet(&mut e, 500, "still removed");
        // A removed follower drops its leader too.
        let mut f = elector(3);
        f.handle(ElectorInput::Peer(
            1,
            ElectorMessage::Heartbeat {
                ballot: Ballot::new(2, 1),
            },
        ));
        let out = f.handle(ElectorInput::Reconfigure(config(1, &[1, 2])));
        assert_eq!((out.leader, order_of(&out), f.leader()), (Some(None), None, None));
        stays_quiet(&mut f, 2000, "a removed follower never campaigns");
        // Added again later: it campaigns once more, in the configuration that counts it.
        f.handle(ElectorInput::Reconfigure(config(2, &[1, 2, 3])));
        assert!(!f.is_removed());
        let ballot = (0..1000)
            .find_map(|_| pre_votes(&f.handle(ElectorInput::Tick)).first().map(|p| p.1))
            .expect("a pre-vote once a member again");
        assert_eq!(ballot, Ballot::in_config(2, 1, 3));
    }

    #[test]
    fn elector_refuses_older_config_heartbeats_and_pre_votes() {
        let mut e = elector(2);
        let old = Ballot::new(9, 1);
        e.handle(ElectorInput::Peer(1, ElectorMessage::Heartbeat { ballot: old }));
        assert_eq!(e.leader(), Some(1));
        // A follower keeps its leader across the change, until it hears a newer one.
        let out = e.handle(ElectorInput::Reconfigure(config(1, &[1, 2, 3])));
        assert_eq!((order_of(&out), out.leader, e.leader()), (None, None, Some(1)));
        let first = Ballot::in_config(1, 0, 0);
        assert_eq!(e.highest(), first);
        // The old leader, still in configuration 0, is not followed; the reply tells it.
        let out = e.handle(ElectorInput::Peer(
            3,
            ElectorMessage::Heartbeat {
                ballot: Ballot::new(10, 3),
            },
        ));
        assert_eq!(e.leader(), Some(1), "a heartbeat of configuration 0 is not followed");
        assert_eq!(
            out.send,
            vec![(
                3,
                PeerMessage::Elector(ElectorMessage::HeartbeatReply {
                    ballot: Ballot::new(10, 3),
                    highest: first
                })
            )]
        );
        // ... and a leader of configuration 0 hearing that reply steps down.
        let (mut l, b) = elected(3);
        let reply = ElectorMessage::HeartbeatReply {
            ballot: b,
            highest: first,
        };
        assert_eq!(
            order_of(&l.handle(ElectorInput::Peer(2, reply))),
            Some(ElectorOrder::StepDown)
        );
        // No pre-vote of an older or a newer configuration, even after a long silence.
        for _ in 0..ElectorConfig::default().election_min_ticks {
            e.handle(ElectorInput::Tick);
        }
        assert!(!grants(&mut e, Ballot::new(50, 3)), "configuration 0 is over here");
        assert!(
            !grants(&mut e, Ballot::in_config(2, 1, 3)),
            "configuration 2 is not ours yet"
        );
        assert!(grants(&mut e, Ballot::in_config(1, 1, 3)));
        // A leader of configuration 1 is followed.
        let new = Ballot::in_config(1, 1, 3);
        let out = e.handle(ElectorInput::Peer(3, ElectorMessage::Heartbeat { ballot: new }));
        assert_eq!((out.leader, e.highest()), (Some(Some(3)), new));
    }

    #[test]
    fn elector_follows_a_newer_configuration_but_never_campaigns_in_it_or_below_it() {
        let mut e = elector(2);
        let newer = Ballot::in_config(1, 1, 3);
        let out = e.handle(ElectorInput::Peer(3, ElectorMessage::Heartbeat { ballot: newer }));
        assert_eq!(
            out.leader,
            Some(Some(3)),
            "its leader is known: requests can be forwarded"
        );
        assert!(
            !grants(&mut e, Ballot::in_config(1, 2, 1)),
            "no pre-vote for a newer configuration"
        );
        stays_quiet(&mut e, 2000, "a node behind its configuration does not campaign");
        assert_eq!(e.highest(), newer, "its highest never went back");
        // Once it applied configuration 1, it campaigns there when the leader falls silent.
        e.handle(ElectorInput::Reconfigure(config(1, &[1, 2, 3])));
        let ballot = (0..1000)
            .find_map(|_| pre_votes(&e.handle(ElectorInput::Tick)).first().map(|p| p.1))
            .expect("a pre-vote");
        assert_eq!(ballot, Ballot::in_config(1, 2, 2));
    }

    #[test]
    fn elector_joining_never_campaigns() {
        let mut e = Elector::new(4, vec![1, 2, 3], ElectorConfig::default(), 4, Ballot::ZERO).with_config(None);
        assert!(!e.is_removed() && e.config().is_none());
        stays_quiet(&mut e, 2000, "a joining node holds no configuration");
        assert!(!grants(&mut e, Ballot::new(1, 3)));
        assert!(!grants(&mut e, Ballot::in_config(1, 1, 3)));
        // It follows the leader it hears, so that it can forward requests.
        let leader = Ballot::in_config(1, 1, 1);
        let out = e.handle(ElectorInput::Peer(1, ElectorMessage::Heartbeat { ballot: leader }));
        assert_eq!(out.leader, Some(Some(1)));
        // Named a member: it follows on, and campaigns in configuration 1 if the leader
        // falls silent.
        let out = e.handle(ElectorInput::Reconfigure(config(1, &[1, 2, 4])));
        assert_eq!((order_of(&out), e.leader()), (None, Some(1)));
        let ballot = (0..1000)
            .find_map(|_| pre_votes(&e.handle(ElectorInput::Tick)).first().map(|p| p.1))
            .expect("a pre-vote");
        assert_eq!(ballot, Ballot::in_config(1, 2, 4));
    }

    #[test]
    fn elector_candidate_of_the_old_configuration_steps_down_at_the_change() {
        let mut e = elector(2);
        let Some(ElectorOrder::Lead(b)) = order_of(&tick_until_order(&mut e)) else {
            panic!("expected Lead")
        };
        let out = e.handle(ElectorInput::Reconfigure(config(1, &[1, 2, 3])));
        assert_eq!(order_of(&out), Some(ElectorOrder::StepDown));
        assert!(persisted(&out).is_none(), "no hand-over: it was not leading");
        assert_eq!(e.role_name(), "follower");
        // Its phase 1 succeeding late makes it lead nothing.
        let out = e.handle(ElectorInput::Proposer(ProposerEvent::Elected(b)));
        assert_eq!((out.leader, e.role_name()), (None, "follower"));
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
