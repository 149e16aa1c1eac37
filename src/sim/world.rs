//! The simulated world: N nodes made of the five role cores, one event queue, a faulty
//! network, a disk per node, crashes, partitions, and clients. Everything here runs on
//! one thread and draws randomness from one seeded generator.

use super::checker::{Checker, Violation};
use super::history::{OpInput, OpOutput, OpRecord};
use super::{SimConfig, Stats};
use crate::actors::PlantedBugs;
use crate::actors::acceptor::Acceptor;
use crate::actors::elector::{Elector, ElectorConfig, ElectorInput, ElectorOutput, ProposerEvent, SeededRng};
use crate::actors::learner::{Learner, LearnerConfig, LearnerInput, LearnerOutput, fetched};
use crate::actors::proposer::{ElectorOrder, Proposer, ProposerConfig, ProposerInput, ProposerOutput};
use crate::actors::state_machine::StateMachine;
use crate::app::kv::{KvCommand, KvReply, KvResult, KvStore};
use crate::codec;
use crate::messages::{
    AcceptorReply, AcceptorRequest, Ballot, Command, ElectorMessage, LearnerMessage, NodeId, PeerMessage,
    ProposerMessage, RequestId, Slot, StateMachineMessage, Value,
};
use crate::storage::AcceptorWrite;
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;

/// The acceptor keeps this many of its latest values in memory (the node keeps 4096).
const SIM_HOT_SLOTS: u64 = 2;

/// What a node keeps across a crash: exactly what the cores asked to persist.
#[derive(Clone, Debug, Default)]
struct Disk {
    promised: Ballot,
    accepted: BTreeMap<Slot, (Ballot, Value)>,
    log: BTreeMap<Slot, Value>,
    ballot: Ballot,
}

impl Disk {
    fn write_acceptor(&mut self, w: AcceptorWrite) {
        if let Some(b) = w.promised {
            self.promised = b;
        }
        for (slot, ballot, value) in w.accepted {
            self.accepted.insert(slot, (ballot, value));
        }
    }
}

/// The roles of a running node: lost on a crash.
struct Roles {
    acceptor: Acceptor,
    proposer: Proposer,
    learner: Learner,
    elector: Elector,
    sm: StateMachine<KvStore>,
}

/// A client request this node waits on (as `NodeHandle::submit` and `NodeHandle::read`
/// do).
struct Pending {
    client: usize,
    ask: Ask,
    deadline: u64,
}

/// What a node asks the leader for on a client's behalf, until it is answered.
enum Ask {
    /// A command through the log (`NodeHandle::submit`): `Propose` it.
    Propose(Command),
    /// A read by read index (`NodeHandle::read`): ask for `ReadIndex`, then answer
    /// `command` from this node's state machine once it has applied every slot below
    /// the first index a leader confirmed (the state machine's `ReadWait`).
    Read { command: KvCommand, index: Option<Slot> },
}

struct SimNode {
    id: NodeId,
    /// Bumped on every crash, so a crashed incarnation's timers and mailboxes go silent.
    incarnation: u64,
    roles: Option<Roles>,
    disk: Disk,
    leader: Option<NodeId>,
    pending: BTreeMap<RequestId, Pending>,
}

/// A message between two roles of one node (an actor mailbox).
#[derive(Debug)]
enum Local {
    Peer(NodeId, PeerMessage),
    Order(ElectorOrder),
    Event(ProposerEvent),
    Learned(Slot),
    Apply(Vec<(Slot, Value)>),
}

#[derive(Debug)]
enum Event {
    /// The network delivers a message.
    Net {
        from: NodeId,
        to: NodeId,
        msg: PeerMessage,
    },
    /// A mailbox of one incarnation of a node.
    Local {
        node: NodeId,
        inc: u64,
        msg: Local,
    },
    /// The tick of a node's roles.
    Tick {
        node: NodeId,
        inc: u64,
    },
    /// A client starts its next operation.
    Invoke {
        client: usize,
    },
    /// A node retries (or gives up on) a client request.
    Retry {
        node: NodeId,
        inc: u64,
        id: RequestId,
    },
    /// Something bad happens.
    Chaos,
    Restart {
        node: NodeId,
    },
    Heal,
}

struct Client {
    id: u64,
    seq: u64,
    /// The last value this client saw per key (`None`: absent), for plausible CAS.
    seen: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// The index of its operation in flight in the history.
    op: Option<usize>,
}

pub(crate) struct World {
    cfg: SimConfig,
    bugs: PlantedBugs,
    rng: SeededRng,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    nodes: Vec<SimNode>,
    ids: Vec<NodeId>,
    /// The side of the partition each node is on (all 0: no partition).
    side: Vec<u8>,
    clients: Vec<Client>,
    pub(crate) history: Vec<OpRecord>,
    pub(crate) checker: Checker,
    pub(crate) steps: u64,
    pub(crate) digest: u64,
    pub(crate) trace: Option<Vec<String>>,
    pub(crate) stats: Stats,
    elector_cfg: ElectorConfig,
    proposer_cfg: ProposerConfig,
    learner_cfg: LearnerConfig,
}

const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl World {
    pub(crate) fn new(cfg: &SimConfig) -> Self {
        let n = cfg.nodes;
        let ids: Vec<NodeId> = (1..=n as u64).collect();
        let mut w = World {
            cfg: cfg.clone(),
            bugs: cfg.bugs,
            rng: SeededRng::new(cfg.seed),
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes: Vec::new(),
            ids: ids.clone(),
            side: vec![0; n],
            clients: Vec::new(),
            history: Vec::new(),
            checker: Checker::new(n),
            steps: 0,
            digest: 0xcbf2_9ce4_8422_2325,
            trace: cfg.trace.then(Vec::new),
            stats: Stats::default(),
            elector_cfg: ElectorConfig::default(),
            proposer_cfg: ProposerConfig::default(),
            learner_cfg: LearnerConfig::default(),
        };
        for &id in &ids {
            w.nodes.push(SimNode {
                id,
                incarnation: 0,
                roles: None,
                disk: Disk::default(),
                leader: None,
                pending: BTreeMap::new(),
            });
        }
        for client in 0..cfg.clients {
            w.clients.push(Client {
                id: 1000 + client as u64,
                seq: 0,
                seen: BTreeMap::new(),
                op: None,
            });
            let at = w.rng.between(0, 50 * cfg.tick_us);
            w.schedule(at, Event::Invoke { client });
        }
        if cfg.faults.crashes || cfg.faults.partitions {
            let at = w.rng.between(cfg.faults.chaos_min_us, cfg.faults.chaos_max_us);
            w.schedule(at, Event::Chaos);
        }
        w
    }

    /// Boots every node (the first incarnation); a violation here is reported like any other.
    pub(crate) fn boot(&mut self) -> Result<(), String> {
        for i in 0..self.nodes.len() {
            self.start_node(i)?;
        }
        Ok(())
    }

    pub(crate) fn now(&self) -> u64 {
        self.now
    }

    fn schedule(&mut self, at: u64, ev: Event) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    fn mix(&mut self, x: u64) {
        for b in x.to_le_bytes() {
            self.digest = (self.digest ^ u64::from(b)).wrapping_mul(FNV_PRIME);
        }
    }

    fn idx(&self, id: NodeId) -> usize {
        (id - 1) as usize
    }

    fn chance(&mut self, permille: u64) -> bool {
        permille > 0 && self.rng.between(0, 999) < permille
    }

    /// Runs one event. `Ok(false)`: the run is over.
    pub(crate) fn step(&mut self) -> Result<bool, Violation> {
        let Some(((at, seq), ev)) = self.queue.pop_first() else {
            return Ok(false);
        };
        if at > self.cfg.duration_us {
            return Ok(false);
        }
        self.now = at;
        self.steps += 1;
        self.mix(at);
        self.mix(seq);
        if let Some(trace) = &mut self.trace {
            trace.push(format!("#{} t={}us {:?}", self.steps, at, ev));
        }
        self.handle(ev).map_err(|message| Violation {
            step: self.steps,
            time_us: self.now,
            message,
        })?;
        Ok(true)
    }

    fn handle(&mut self, ev: Event) -> Result<(), String> {
        match ev {
            Event::Net { from, to, msg } => {
                let i = self.idx(to);
                if self.nodes[i].roles.is_none() || self.side[i] != self.side[self.idx(from)] {
                    self.stats.messages_dropped += 1;
                    return Ok(());
                }
                self.mix(1);
                self.mix(from * 16 + to);
                self.deliver(i, from, msg)
            }
            Event::Local { node, inc, msg } => {
                let i = self.idx(node);
                if self.nodes[i].incarnation != inc || self.nodes[i].roles.is_none() {
                    return Ok(());
                }
                self.mix(2);
                self.mix(node);
                match msg {
                    Local::Peer(from, m) => self.deliver(i, from, m),
                    Local::Order(ElectorOrder::Lead(b)) => self.run_proposer(i, ProposerInput::Lead(b)),
                    Local::Order(ElectorOrder::StepDown) => self.run_proposer(i, ProposerInput::StepDown),
                    Local::Event(e) => self.run_elector(i, ElectorInput::Proposer(e)),
                    Local::Learned(s) => self.run_proposer(i, ProposerInput::Learned(s)),
                    Local::Apply(batch) => self.apply(i, batch),
                }
            }
            Event::Tick { node, inc } => {
                let i = self.idx(node);
                if self.nodes[i].incarnation != inc || self.nodes[i].roles.is_none() {
                    return Ok(());
                }
                self.mix(3);
                self.mix(node);
                let next = self.now + self.cfg.tick_us;
                self.schedule(next, Event::Tick { node, inc });
                // The three timers are independent actors: their order varies.
                let first = self.rng.between(0, 2);
                for k in 0..3 {
                    match (first + k) % 3 {
                        0 => self.run_elector(i, ElectorInput::Tick)?,
                        1 => self.run_proposer(i, ProposerInput::Tick)?,
                        _ => {
                            let out = self.roles(i).learner.handle(LearnerInput::Tick);
                            self.emit_learner(i, out)?;
                        }
                    }
                }
                Ok(())
            }
            Event::Invoke { client } => {
                self.mix(4);
                self.invoke(client);
                Ok(())
            }
            Event::Retry { node, inc, id } => {
                let i = self.idx(node);
                if self.nodes[i].incarnation != inc || self.nodes[i].roles.is_none() {
                    return Ok(());
                }
                self.mix(5);
                self.retry(i, id);
                Ok(())
            }
            Event::Chaos => {
                self.mix(6);
                self.chaos()
            }
            Event::Restart { node } => {
                self.mix(7);
                self.mix(node);
                let i = self.idx(node);
                self.start_node(i)
            }
            Event::Heal => {
                self.mix(8);
                self.side.iter_mut().for_each(|s| *s = 0);
                Ok(())
            }
        }
    }

    fn roles(&mut self, i: usize) -> &mut Roles {
        self.nodes[i]
            .roles
            .as_mut()
            .expect("events for a crashed node are filtered before they get here")
    }

    // ---- the network ------------------------------------------------------------------

    /// Sends like `Peers::send`: to itself through the local mailbox, else over the network.
    fn send(&mut self, i: usize, to: NodeId, msg: PeerMessage) {
        let from = self.nodes[i].id;
        self.stats.messages_sent += 1;
        if to == from {
            let inc = self.nodes[i].incarnation;
            let now = self.now;
            self.schedule(
                now,
                Event::Local {
                    node: from,
                    inc,
                    msg: Local::Peer(from, msg),
                },
            );
            return;
        }
        for b in brief(&msg).bytes() {
            self.mix(u64::from(b));
        }
        let f = self.cfg.faults.clone();
        if self.side[i] != self.side[self.idx(to)] || self.chance(f.drop_permille) {
            self.stats.messages_dropped += 1;
            return;
        }
        let copies = if self.chance(f.dup_permille) { 2 } else { 1 };
        for _ in 0..copies {
            let delay = if self.chance(f.slow_permille) {
                self.rng.between(f.slow_min_us, f.slow_max_us)
            } else {
                self.rng.between(f.delay_min_us, f.delay_max_us)
            };
            let at = self.now + delay;
            self.schedule(
                at,
                Event::Net {
                    from,
                    to,
                    msg: msg.clone(),
                },
            );
        }
    }

    fn send_all(&mut self, i: usize, out: Vec<(NodeId, PeerMessage)>) {
        for (to, msg) in out {
            self.send(i, to, msg);
        }
    }

    fn local(&mut self, i: usize, msg: Local) {
        let (node, inc, now) = (self.nodes[i].id, self.nodes[i].incarnation, self.now);
        self.schedule(now, Event::Local { node, inc, msg });
    }

    /// Hands a message to the role that handles it (`LocalRoles::deliver`).
    fn deliver(&mut self, i: usize, from: NodeId, msg: PeerMessage) -> Result<(), String> {
        match msg {
            PeerMessage::AcceptorRequest(req) => self.on_acceptor(i, from, req),
            PeerMessage::AcceptorReply(reply) => self.run_proposer(i, ProposerInput::Reply(from, reply)),
            PeerMessage::Learner(m) => {
                let out = self.roles(i).learner.handle(LearnerInput::Peer(from, m));
                self.emit_learner(i, out)
            }
            PeerMessage::Elector(m) => self.run_elector(i, ElectorInput::Peer(from, m)),
            PeerMessage::Proposer(ProposerMessage::Propose { command }) => {
                self.run_proposer(i, ProposerInput::Propose(from, command))
            }
            PeerMessage::Proposer(ProposerMessage::ReadIndex { id }) => {
                self.run_proposer(i, ProposerInput::ReadIndex(from, id))
            }
            PeerMessage::StateMachine(StateMachineMessage::ReadIndexReply { id, index }) => {
                self.on_read_index(i, id, index);
                Ok(())
            }
        }
    }

    // ---- the roles, wired as their actors are ------------------------------------------

    /// `AcceptorActor`: write first, then reply.
    fn on_acceptor(&mut self, i: usize, from: NodeId, req: AcceptorRequest) -> Result<(), String> {
        let id = self.nodes[i].id;
        // As the actor does: values evicted from memory are read back for a Prepare.
        if let AcceptorRequest::Prepare { ballot, from_slot, .. } = &req {
            let node = &mut self.nodes[i];
            let (disk, roles) = (&node.disk, node.roles.as_mut().expect("running"));
            if *ballot >= roles.acceptor.promised() {
                let read = |slot| disk.accepted.get(&slot).map(|(_, v)| v.clone()).ok_or(slot);
                if let Err(slot) = roles.acceptor.reload_from(*from_slot, read) {
                    return Err(format!("acceptor {id} evicted slot {slot}, which is not on its disk"));
                }
            }
        }
        let (write, reply) = self.roles(i).acceptor.handle(req);
        let accepted = match &reply {
            AcceptorReply::Accepted { first_slot, count, .. } => Some((*first_slot, *count)),
            _ => None,
        };
        let node = &mut self.nodes[i];
        let roles = node.roles.as_ref().expect("running");
        self.checker.acceptor_handled(id, &roles.acceptor, accepted)?;
        if let Some(write) = write {
            node.disk.write_acceptor(write);
        }
        // Durable now: all but the most recent values leave memory (few here, so that
        // every run exercises the reload).
        self.roles(i).acceptor.evict_all_but(SIM_HOT_SLOTS);
        self.send(i, from, PeerMessage::AcceptorReply(reply));
        Ok(())
    }

    /// `ProposerActor::run`, watched by the phase-1 checks.
    fn run_proposer(&mut self, i: usize, input: ProposerInput) -> Result<(), String> {
        let id = self.nodes[i].id;
        let p = &self.roles(i).proposer;
        let (before, was_leading) = (p.ballot(), p.is_leading());
        if let (Some(b), false, ProposerInput::Reply(from, AcceptorReply::Promise { ballot, accepted, .. })) =
            (before, was_leading, &input)
            && *ballot == b
        {
            self.checker.promise_received(b, *from, accepted);
        }
        let out: ProposerOutput = self.roles(i).proposer.handle(input);
        let p = &self.roles(i).proposer;
        if let (true, Some(b)) = (p.is_leading(), p.ballot())
            && !(was_leading && before == Some(b))
        {
            self.checker.proposer_leads(id, b)?;
        }
        let mut checked = BTreeSet::new();
        for (_, msg) in &out.send {
            if let PeerMessage::AcceptorRequest(AcceptorRequest::Accept {
                call,
                ballot,
                first_slot,
                values,
            }) = msg
                && checked.insert(*call)
            {
                self.checker.accept_sent(id, *ballot, *first_slot, values)?;
            }
        }
        for event in out.events {
            if let ProposerEvent::Elected(_) = event {
                self.stats.elections += 1;
            }
            self.local(i, Local::Event(event));
        }
        self.send_all(i, out.send);
        Ok(())
    }

    /// `LearnerActor::emit`: persist, feed the state machine, tell the proposer, send.
    fn emit_learner(&mut self, i: usize, out: LearnerOutput) -> Result<(), String> {
        let id = self.nodes[i].id;
        if !out.persist.is_empty() {
            self.checker.learned(id, &out.persist)?;
            let disk = &mut self.nodes[i].disk;
            for (slot, value) in out.persist {
                disk.log.insert(slot, value);
            }
        }
        if !out.apply.is_empty() {
            self.local(i, Local::Apply(out.apply));
        }
        if let Some(slot) = out.learned {
            self.local(i, Local::Learned(slot));
        }
        // The actor reads applied slots from its decided log on disk.
        let mut send = out.send;
        for (peer, first, to) in out.serve {
            let log = &self.nodes[i].disk.log;
            let reply = fetched(&self.learner_cfg, first, to, |s| {
                Ok::<_, Infallible>(log.get(&s).cloned())
            });
            send.push((peer, PeerMessage::Learner(reply.unwrap_or_else(|e| match e {}))));
        }
        self.send_all(i, send);
        Ok(())
    }

    /// `ElectorActor::run`: persist the ballot, publish the leader, order the proposer, send.
    fn run_elector(&mut self, i: usize, input: ElectorInput) -> Result<(), String> {
        let out: ElectorOutput = self.roles(i).elector.handle(input);
        if let Some(ballot) = out.persist {
            self.nodes[i].disk.ballot = ballot;
        }
        if let Some(leader) = out.leader {
            self.nodes[i].leader = leader;
            // `submit` proposes again as soon as the leader changes.
            if leader.is_some() {
                let ids: Vec<RequestId> = self.nodes[i].pending.keys().copied().collect();
                for id in ids {
                    self.ask_leader(i, id);
                }
            }
        }
        if let Some(order) = out.order {
            self.local(i, Local::Order(order));
        }
        self.send_all(i, out.send);
        Ok(())
    }

    /// `StateMachineActor`'s `ApplyBatch`: apply in order, answer waiting clients.
    fn apply(&mut self, i: usize, batch: Vec<(Slot, Value)>) -> Result<(), String> {
        let id = self.nodes[i].id;
        for (slot, value) in batch {
            if slot < self.roles(i).sm.next() {
                continue;
            }
            self.checker.applied(id, slot, &value)?;
            let Some((rid, outcome)) = self.roles(i).sm.apply(slot, value) else {
                continue;
            };
            // Slots answer commands only: reads wait apart, as in the actor.
            if matches!(
                self.nodes[i].pending.get(&rid),
                Some(Pending {
                    ask: Ask::Propose(_),
                    ..
                })
            ) && let Some(p) = self.nodes[i].pending.remove(&rid)
            {
                self.complete(p.client, kv_output(outcome));
            }
        }
        self.maybe_answer_reads(i);
        Ok(())
    }

    /// `StateMachineActor`'s `ReadIndexReply`: the first confirmed index counts.
    fn on_read_index(&mut self, i: usize, id: RequestId, index: Option<Slot>) {
        if let (
            Some(Pending {
                ask: Ask::Read { index: mine, .. },
                ..
            }),
            Some(index),
        ) = (self.nodes[i].pending.get_mut(&id), index)
        {
            mine.get_or_insert(index);
        }
        self.maybe_answer_reads(i);
    }

    /// `StateMachineActor::maybe_answer_reads`: answers every read whose index this node's
    /// state machine has reached, from its state.
    fn maybe_answer_reads(&mut self, i: usize) {
        let next = self.roles(i).sm.next();
        let ready: Vec<RequestId> = self.nodes[i]
            .pending
            .iter()
            .filter(|(_, p)| matches!(p.ask, Ask::Read { index: Some(index), .. } if index <= next))
            .map(|(id, _)| *id)
            .collect();
        for id in ready {
            let Some(Pending {
                client,
                ask: Ask::Read { command, .. },
                ..
            }) = self.nodes[i].pending.remove(&id)
            else {
                continue;
            };
            let answer = self
                .roles(i)
                .sm
                .read(&command)
                .ok_or_else(|| "not a read-only command".to_string());
            self.stats.read_index_reads += 1;
            self.complete(client, kv_output(answer));
        }
    }

    // ---- crashes and restarts -------------------------------------------------------------

    /// Starts a node from its disk, as `Node::start` does with no snapshot.
    fn start_node(&mut self, i: usize) -> Result<(), String> {
        let bugs = self.bugs;
        let id = self.nodes[i].id;
        let seed = self.rng.next_u64();
        let node = &mut self.nodes[i];
        node.incarnation += 1;
        node.leader = None;
        let disk = &node.disk;
        let acceptor = Acceptor::restore(disk.promised, disk.accepted.clone()).with_bugs(bugs);
        let sm = StateMachine::new(KvStore::new()).with_bugs(bugs);
        let learner = Learner::restore(id, self.learner_cfg.clone(), disk.log.clone(), sm.next()).with_bugs(bugs);
        let elector = Elector::new(
            id,
            self.ids.clone(),
            self.elector_cfg.clone(),
            seed,
            disk.promised.max(disk.ballot),
        );
        let proposer = Proposer::new(id, self.ids.clone(), self.proposer_cfg.clone()).with_bugs(bugs);
        node.roles = Some(Roles {
            acceptor,
            proposer,
            learner,
            elector,
            sm,
        });
        self.checker.restarted(id);
        let roles = self.nodes[i].roles.as_ref().expect("just started");
        self.checker.acceptor_restored(id, &roles.acceptor)?;
        let out = self.roles(i).learner.start();
        self.emit_learner(i, out)?;
        let inc = self.nodes[i].incarnation;
        let at = self.now + self.rng.between(1, self.cfg.tick_us);
        self.schedule(at, Event::Tick { node: id, inc });
        Ok(())
    }

    fn crash(&mut self, i: usize) {
        self.stats.crashes += 1;
        let node = &mut self.nodes[i];
        node.roles = None;
        node.incarnation += 1;
        node.leader = None;
        let pending = std::mem::take(&mut node.pending);
        for (_, p) in pending {
            self.complete(p.client, OpOutput::Unknown);
        }
    }

    fn chaos(&mut self) -> Result<(), String> {
        let f = self.cfg.faults.clone();
        let n = self.nodes.len() as u64;
        let what = self.rng.between(0, 9);
        if f.crashes && (what < 6 || !f.partitions) {
            let up: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].roles.is_some())
                .collect();
            if !up.is_empty() {
                let victim = up[self.rng.between(0, up.len() as u64 - 1) as usize];
                self.crash(victim);
                let at = self.now + self.rng.between(f.down_min_us, f.down_max_us);
                let node = self.nodes[victim].id;
                self.schedule(at, Event::Restart { node });
            }
        } else if f.partitions && self.side.iter().all(|&s| s == 0) {
            self.stats.partitions += 1;
            // A random cut with both sides non-empty.
            let mask = self.rng.between(1, (1 << n) - 2);
            for (k, s) in self.side.iter_mut().enumerate() {
                *s = ((mask >> k) & 1) as u8;
            }
            let at = self.now + self.rng.between(f.heal_min_us, f.heal_max_us);
            self.schedule(at, Event::Heal);
        }
        let at = self.now + self.rng.between(f.chaos_min_us, f.chaos_max_us);
        self.schedule(at, Event::Chaos);
        Ok(())
    }

    // ---- clients --------------------------------------------------------------------------

    fn invoke(&mut self, client: usize) {
        let up: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].roles.is_some())
            .collect();
        if up.is_empty() {
            let at = self.now + self.cfg.tick_us;
            self.schedule(at, Event::Invoke { client });
            return;
        }
        let i = up[self.rng.between(0, up.len() as u64 - 1) as usize];
        let key = format!("k{}", self.rng.between(0, self.cfg.keys as u64 - 1)).into_bytes();
        let c = &mut self.clients[client];
        c.seq += 1;
        let value = format!("{}.{}", c.id, c.seq).into_bytes();
        let kind = self.rng.between(0, 99);
        let mut by_read_index = false;
        let input = if kind < 40 {
            OpInput::Put { key, value }
        } else if kind < 75 {
            by_read_index = self.chance(self.cfg.read_index_permille);
            OpInput::Get { key }
        } else {
            let seen = self.clients[client].seen.get(&key).cloned().unwrap_or(None);
            let expected = if self.rng.between(0, 3) == 0 { None } else { seen };
            OpInput::Cas {
                key,
                expected,
                new: value,
            }
        };
        let command = match &input {
            OpInput::Get { key } => KvCommand::get(key.clone()),
            OpInput::Put { key, value } => KvCommand::put(key.clone(), value.clone()),
            OpInput::Cas { key, expected, new } => KvCommand::cas(key.clone(), expected.clone(), new.clone()),
        };
        let c = &mut self.clients[client];
        let rid = RequestId {
            client: c.id,
            seq: c.seq,
        };
        let ask = if by_read_index {
            Ask::Read { command, index: None }
        } else {
            let payload = codec::encode(&command).expect("a KV command always encodes");
            Ask::Propose(Command {
                id: rid,
                ack_below: c.seq,
                payload,
            })
        };
        c.op = Some(self.history.len());
        self.history.push(OpRecord {
            client: c.id,
            node: self.nodes[i].id,
            input,
            read_index: by_read_index,
            invoked_us: self.now,
            completed_us: None,
            output: None,
        });
        self.nodes[i].pending.insert(
            rid,
            Pending {
                client,
                ask,
                deadline: self.now + self.cfg.request_timeout_us,
            },
        );
        self.ask_leader(i, rid);
        let (node, inc) = (self.nodes[i].id, self.nodes[i].incarnation);
        let at = self.now + self.cfg.retry_us;
        self.schedule(at, Event::Retry { node, inc, id: rid });
    }

    /// Sends `Propose` (a command) or `ReadIndex` (a read) to the leader this node's
    /// elector names, if it names one (`NodeHandle::ask_leader`).
    fn ask_leader(&mut self, i: usize, id: RequestId) {
        let (Some(leader), Some(p)) = (self.nodes[i].leader, self.nodes[i].pending.get(&id)) else {
            return;
        };
        let msg = match &p.ask {
            Ask::Propose(command) => ProposerMessage::Propose {
                command: command.clone(),
            },
            Ask::Read { .. } => ProposerMessage::ReadIndex { id },
        };
        self.send(i, leader, PeerMessage::Proposer(msg));
    }

    fn retry(&mut self, i: usize, id: RequestId) {
        let Some(p) = self.nodes[i].pending.get(&id) else {
            return;
        };
        if self.now >= p.deadline {
            let client = p.client;
            self.nodes[i].pending.remove(&id);
            self.complete(client, OpOutput::Unknown);
            return;
        }
        self.ask_leader(i, id);
        let (node, inc) = (self.nodes[i].id, self.nodes[i].incarnation);
        let at = self.now + self.cfg.retry_us;
        self.schedule(at, Event::Retry { node, inc, id });
    }

    fn complete(&mut self, client: usize, output: OpOutput) {
        let Some(op) = self.clients[client].op.take() else {
            return;
        };
        let rec = &mut self.history[op];
        match &output {
            OpOutput::Unknown => self.stats.ops_unknown += 1,
            _ => self.stats.ops_ok += 1,
        }
        let key = rec.input.key().to_vec();
        let seen = match (&rec.input, &output) {
            (_, OpOutput::Got(v)) => Some(v.clone()),
            (OpInput::Put { value, .. }, OpOutput::Put) => Some(Some(value.clone())),
            (OpInput::Cas { new, .. }, OpOutput::Cas(true)) => Some(Some(new.clone())),
            _ => None,
        };
        rec.completed_us = Some(self.now);
        rec.output = Some(output);
        if let Some(v) = seen {
            self.clients[client].seen.insert(key, v);
        }
        let at = self.now + self.rng.between(0, 2 * self.cfg.tick_us);
        self.schedule(at, Event::Invoke { client });
    }

    /// Mixes the end state into the digest and fills in the statistics.
    pub(crate) fn finish(&mut self) {
        self.stats.chosen_slots = self.checker.chosen_slots() as u64;
        self.stats.applied = self.checker.applied_len() as u64;
        let ends: Vec<u64> = self
            .nodes
            .iter()
            .map(|n| n.roles.as_ref().map_or(u64::MAX, |r| r.sm.next()))
            .collect();
        for e in ends {
            self.mix(e);
        }
        self.mix(self.history.len() as u64);
    }
}

/// What a client is told, from its state machine's answer (applied or read).
fn kv_output(outcome: Result<KvReply, String>) -> OpOutput {
    match outcome {
        Ok(reply) => match reply.result {
            KvResult::Range { .. } => OpOutput::Got(reply.value().map(<[u8]>::to_vec)),
            KvResult::Put { .. } => OpOutput::Put,
            KvResult::Cas { succeeded, .. } => OpOutput::Cas(succeeded),
            other => OpOutput::Error(format!("unexpected result {other:?}")),
        },
        Err(e) => OpOutput::Error(e),
    }
}

/// Names a message without its payload, for the digest.
fn brief(msg: &PeerMessage) -> &'static str {
    match msg {
        PeerMessage::AcceptorRequest(AcceptorRequest::Prepare { .. }) => "Prepare",
        PeerMessage::AcceptorRequest(AcceptorRequest::Accept { .. }) => "Accept",
        PeerMessage::AcceptorReply(AcceptorReply::Promise { .. }) => "Promise",
        PeerMessage::AcceptorReply(AcceptorReply::Accepted { .. }) => "Accepted",
        PeerMessage::AcceptorReply(AcceptorReply::Rejected { .. }) => "Rejected",
        PeerMessage::Learner(LearnerMessage::Decide { .. }) => "Decide",
        PeerMessage::Learner(LearnerMessage::Fetch { .. }) => "Fetch",
        PeerMessage::Learner(LearnerMessage::Fetched { .. }) => "Fetched",
        PeerMessage::Elector(ElectorMessage::Heartbeat { .. }) => "Heartbeat",
        PeerMessage::Elector(ElectorMessage::HeartbeatReply { .. }) => "HeartbeatReply",
        PeerMessage::Elector(ElectorMessage::PreVote { .. }) => "PreVote",
        PeerMessage::Elector(ElectorMessage::PreVoteReply { .. }) => "PreVoteReply",
        PeerMessage::Proposer(ProposerMessage::Propose { .. }) => "Propose",
        PeerMessage::Proposer(ProposerMessage::ReadIndex { .. }) => "ReadIndex",
        PeerMessage::StateMachine(_) => "ReadIndexReply",
    }
}

// ---- scripted control (scenario scripts) ----------------------------------------------
//
// Everything below drives the world above from a script (`super::script`) instead of
// from random clients and random chaos. It adds no behaviour to the nodes and changes
// no line above: it reuses `World::new`, `boot`, `schedule`, `step` (and with it the
// wiring and the checker), `run_elector` (for `campaign`), `crash`, `start_node`, the
// partition sides, and the clients' machinery (`Client`, `Pending`, `ask_leader`, the
// `Retry` events, `complete` and the history). What it changes is only the world
// around the nodes:
//
// - The network is fault-free and in order: every message takes `SCRIPT_DELAY_US`, none
//   is dropped, duplicated or reordered unless a script rule says so.
// - Time moves in whole ticks, and only when the script says `tick`: at each tick every
//   live node ticks (its elector, proposer and learner, as `Event::Tick` does). The
//   nodes' own periodic `Tick` events, random client invocations and chaos are removed
//   from the queue unrun. Nothing else is: a node's client retries (`Retry`) and
//   delayed messages still fire at their time, which a `tick` reaches.
// - `deliver` runs every event due before the next tick (messages, mailboxes, retries):
//   with `SCRIPT_DELAY_US` far below a tick, that is every message in flight and
//   every message they cause, until the network is quiet.
// - Script rules (`drop`, `hold`, slow acceptors) act when a message arrives. A message
//   sent across a partition is lost inside `send`, before it is an event, so the
//   trace does not show it; one that arrives across a partition shows as lost.

/// One tick of the scripted world's clocks.
const SCRIPT_TICK_US: u64 = 10_000;
/// The scripted network's one delay: a hundred hops fit in one tick.
const SCRIPT_DELAY_US: u64 = 100;

/// The knobs a script's `start` line may turn.
#[derive(Clone, Debug)]
pub(crate) struct ScriptSetup {
    pub(crate) nodes: usize,
    pub(crate) seed: u64,
    pub(crate) pre_vote: bool,
    pub(crate) thrifty: bool,
    pub(crate) max_batch: usize,
    pub(crate) bugs: PlantedBugs,
}

/// Which network messages a script rule (`drop`, `hold`, `release`) is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Filter {
    /// `None`: from any node.
    pub(crate) from: Option<NodeId>,
    /// `None`: to any node.
    pub(crate) to: Option<NodeId>,
    /// A message kind as [`brief`] names it (`None`: every kind).
    pub(crate) kind: Option<String>,
    /// Only messages that carry this slot (an `Accept`, `Accepted` or `Decide` covering it).
    pub(crate) slot: Option<Slot>,
}

impl Filter {
    fn matches(&self, from: NodeId, to: NodeId, msg: &PeerMessage) -> bool {
        self.from.is_none_or(|f| f == from)
            && self.to.is_none_or(|t| t == to)
            && self.kind.as_deref().is_none_or(|k| k == brief(msg))
            && self
                .slot
                .is_none_or(|s| slots_of(msg).is_some_and(|(first, n)| s >= first && s < first + n))
    }
}

/// What a node's elector and proposer tell each other, as the trace names it (a script
/// may leave these out of the trace like message kinds).
pub(crate) const LOCAL_KINDS: [&str; 5] = ["Lead", "StepDown", "Elected", "Preempted", "PrepareTimedOut"];

/// The message kinds a script may name, as [`brief`] names them.
pub(crate) const MESSAGE_KINDS: [&str; 15] = [
    "Prepare",
    "Accept",
    "Promise",
    "Accepted",
    "Rejected",
    "Decide",
    "Fetch",
    "Fetched",
    "Heartbeat",
    "HeartbeatReply",
    "PreVote",
    "PreVoteReply",
    "Propose",
    "ReadIndex",
    "ReadIndexReply",
];

/// A client operation a script asks for.
#[derive(Clone, Debug)]
pub(crate) enum ScriptOp {
    Put {
        key: String,
        value: String,
    },
    Cas {
        key: String,
        expected: Option<String>,
        new: String,
    },
    Get {
        key: String,
    },
}

/// What one scripted client asked, to ask it again (`resubmit`).
struct ScriptRequest {
    input: OpInput,
    ask: ScriptAsk,
}

#[derive(Clone)]
enum ScriptAsk {
    Propose(Command),
    Read(KvCommand),
}

/// What the run loop does with the next event.
enum Fate {
    Run,
    Discard,
    Drop,
    Hold,
    Delay(u64),
}

/// The world under a script's control, with the script's network rules and the lines
/// each command prints.
pub(crate) struct Scripted {
    w: World,
    ticks: u64,
    trace: bool,
    /// Message kinds the trace leaves out.
    trace_skip: Vec<String>,
    drops: Vec<Filter>,
    holds: Vec<Filter>,
    held: Vec<(NodeId, NodeId, PeerMessage)>,
    /// Nodes whose acceptor answers late, by how many ticks.
    slow: BTreeMap<NodeId, u64>,
    /// Queue sequence numbers of messages already held back for a slow acceptor.
    delayed: BTreeSet<u64>,
    /// Queue sequence numbers of the ticks the script scheduled (any other is dropped).
    ticks_due: BTreeSet<u64>,
    requests: Vec<ScriptRequest>,
    /// History indexes of operations not yet answered.
    open: Vec<usize>,
    out: Vec<String>,
    stopped: bool,
}

impl World {
    /// A world for scenario scripts: `setup.nodes` nodes booted at time 0, a perfect
    /// in-order network, no clients and no chaos of its own.
    pub(crate) fn scripted(setup: &ScriptSetup) -> Scripted {
        let mut cfg = SimConfig::from_seed(setup.seed).with_nodes(setup.nodes);
        let mut faults = super::Faults::none();
        faults.delay_min_us = SCRIPT_DELAY_US;
        faults.delay_max_us = SCRIPT_DELAY_US;
        cfg.faults = faults;
        cfg.duration_us = u64::MAX;
        cfg.tick_us = SCRIPT_TICK_US;
        cfg.clients = 0;
        cfg.bugs = setup.bugs;
        let mut w = World::new(&cfg);
        w.elector_cfg.pre_vote = setup.pre_vote;
        w.proposer_cfg.thrifty = setup.thrifty;
        w.proposer_cfg.max_batch = setup.max_batch;
        let mut s = Scripted {
            w,
            ticks: 0,
            trace: false,
            trace_skip: Vec::new(),
            drops: Vec::new(),
            holds: Vec::new(),
            held: Vec::new(),
            slow: BTreeMap::new(),
            delayed: BTreeSet::new(),
            ticks_due: BTreeSet::new(),
            requests: Vec::new(),
            open: Vec::new(),
            out: Vec::new(),
            stopped: false,
        };
        s.guard(World::boot);
        s
    }
}

impl Scripted {
    /// The lines printed since the last call.
    pub(crate) fn take_output(&mut self) -> Vec<String> {
        std::mem::take(&mut self.out)
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stopped
    }

    /// Runs `f` on the world as a step runs: a core's panic or a checker's complaint
    /// prints as a violation and stops the world.
    fn guard(&mut self, f: impl FnOnce(&mut World) -> Result<(), String>) {
        if self.stopped {
            return;
        }
        super::quiet_panics_in_sim();
        super::IN_SIM.with(|c| c.set(true));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut self.w)));
        super::IN_SIM.with(|c| c.set(false));
        let message = match result {
            Ok(Ok(())) => return,
            Ok(Err(message)) => message,
            Err(p) => format!("a core panicked: {}", super::panic_message(p.as_ref())),
        };
        self.out.push(format!("violation: {message}"));
        self.stopped = true;
    }

    fn node_index(&self, node: NodeId) -> Result<usize, String> {
        if node == 0 || node as usize > self.w.nodes.len() {
            return Err(format!("no node {node} (nodes are 1..={})", self.w.nodes.len()));
        }
        Ok(self.w.idx(node))
    }

    fn up(&self, i: usize) -> bool {
        self.w.nodes[i].roles.is_some()
    }

    /// The time of the next tick.
    fn next_tick_at(&self) -> u64 {
        (self.ticks + 1) * SCRIPT_TICK_US
    }

    /// Runs every event due before `limit`, applying the script's network rules.
    fn run_until(&mut self, limit: u64) {
        while !self.stopped {
            let Some((&(at, seq), _)) = self.w.queue.first_key_value() else {
                break;
            };
            if at >= limit {
                break;
            }
            let Some((_, ev)) = self.w.queue.pop_first() else {
                break;
            };
            let fate = match &ev {
                Event::Tick { .. } if self.ticks_due.remove(&seq) => Fate::Run,
                Event::Tick { .. } | Event::Invoke { .. } | Event::Chaos | Event::Restart { .. } | Event::Heal => {
                    Fate::Discard
                }
                Event::Net { from, to, msg } => self.fate(seq, *from, *to, msg),
                Event::Local { .. } | Event::Retry { .. } => Fate::Run,
            };
            match (fate, ev) {
                (Fate::Discard, _) => {}
                (Fate::Drop, Event::Net { from, to, msg }) => self.trace_line(from, to, &msg, " (dropped)"),
                (Fate::Hold, Event::Net { from, to, msg }) => {
                    self.trace_line(from, to, &msg, " (held)");
                    self.held.push((from, to, msg));
                }
                (Fate::Delay(us), ev) => {
                    self.w.schedule(at + us, ev);
                    self.delayed.insert(self.w.seq);
                }
                (_, ev) => {
                    self.trace_event(&ev);
                    self.w.queue.insert((at, seq), ev);
                    self.guard(|w| w.step().map(|_| ()).map_err(|v| v.message));
                    self.report_answers();
                }
            }
        }
    }

    /// What the script's rules do with a message about to arrive.
    fn fate(&self, seq: u64, from: NodeId, to: NodeId, msg: &PeerMessage) -> Fate {
        if self.drops.iter().any(|f| f.matches(from, to, msg)) {
            return Fate::Drop;
        }
        if self.holds.iter().any(|f| f.matches(from, to, msg)) {
            return Fate::Hold;
        }
        if let (Some(&ticks), PeerMessage::AcceptorReply(_)) = (self.slow.get(&from), msg)
            && !self.delayed.contains(&seq)
        {
            return Fate::Delay(ticks * SCRIPT_TICK_US);
        }
        Fate::Run
    }

    fn trace_event(&mut self, ev: &Event) {
        match ev {
            Event::Net { from, to, msg } => {
                let (i, j) = (self.w.idx(*from), self.w.idx(*to));
                let why = if !self.up(j) {
                    " (lost: node down)"
                } else if self.w.side[i] != self.w.side[j] {
                    " (lost: partition)"
                } else {
                    ""
                };
                self.trace_line(*from, *to, msg, why);
            }
            Event::Local {
                node,
                inc,
                msg: Local::Peer(from, msg),
            } if self.w.nodes[self.w.idx(*node)].incarnation == *inc => self.trace_line(*from, *node, msg, ""),
            // Between the elector and the proposer of one node: who leads.
            Event::Local { node, inc, msg } if self.w.nodes[self.w.idx(*node)].incarnation == *inc => {
                let (kind, line) = match msg {
                    Local::Order(ElectorOrder::Lead(b)) => {
                        ("Lead", format!("{node} elector->proposer Lead ballot={b}"))
                    }
                    Local::Order(ElectorOrder::StepDown) => ("StepDown", format!("{node} elector->proposer StepDown")),
                    Local::Event(ProposerEvent::Elected(b)) => {
                        ("Elected", format!("{node} proposer->elector Elected ballot={b}"))
                    }
                    Local::Event(ProposerEvent::Preempted(b)) => {
                        ("Preempted", format!("{node} proposer->elector Preempted by={b}"))
                    }
                    Local::Event(ProposerEvent::PrepareTimedOut(b)) => (
                        "PrepareTimedOut",
                        format!("{node} proposer->elector PrepareTimedOut ballot={b}"),
                    ),
                    _ => return,
                };
                if self.trace && !self.trace_skip.iter().any(|k| k == kind) {
                    self.out.push(line);
                }
            }
            _ => {}
        }
    }

    fn trace_line(&mut self, from: NodeId, to: NodeId, msg: &PeerMessage, note: &str) {
        let beacon = matches!(msg, PeerMessage::Learner(LearnerMessage::Decide { values, .. }) if values.is_empty());
        let skip = self
            .trace_skip
            .iter()
            .any(|k| k == brief(msg) || (beacon && k == "beacon"));
        if self.trace && !skip {
            self.out.push(format!("{from}->{to} {}{note}", describe(msg)));
        }
    }

    /// Prints the answers clients got since the last look.
    fn report_answers(&mut self) {
        let mut still = Vec::new();
        for op in std::mem::take(&mut self.open) {
            let rec = &self.w.history[op];
            match &rec.output {
                Some(output) => {
                    let line = format!(
                        "client {} at node {}: {} -> {}",
                        rec.client,
                        rec.node,
                        describe_input(&rec.input, rec.read_index),
                        describe_output(output)
                    );
                    self.out.push(line);
                }
                None => still.push(op),
            }
        }
        self.open = still;
    }

    // ---- commands ----------------------------------------------------------------------

    /// `deliver`: every event due before the next tick.
    pub(crate) fn deliver(&mut self) {
        let limit = self.next_tick_at();
        self.run_until(limit);
    }

    /// `tick K`: K ticks of every live node, each after everything due before it.
    /// With the trace on, a tick that printed anything is headed `-- tick N`.
    pub(crate) fn tick(&mut self, k: u64) {
        self.deliver();
        for _ in 0..k {
            if self.stopped {
                return;
            }
            self.ticks += 1;
            let at = self.ticks * SCRIPT_TICK_US;
            for i in 0..self.w.nodes.len() {
                if self.up(i) {
                    let (node, inc) = (self.w.nodes[i].id, self.w.nodes[i].incarnation);
                    self.w.schedule(at, Event::Tick { node, inc });
                    self.ticks_due.insert(self.w.seq);
                }
            }
            let mark = self.out.len();
            self.deliver();
            if self.trace && self.out.len() > mark {
                self.out.insert(mark, format!("-- tick {}", self.ticks));
            }
        }
    }

    /// `campaign N`: node N's election timer runs out now (its elector alone is ticked
    /// until its election timeout fires). What it sends waits for `deliver`.
    pub(crate) fn campaign(&mut self, node: NodeId) -> Result<(), String> {
        let i = self.node_index(node)?;
        let Some(roles) = &self.w.nodes[i].roles else {
            return Err(format!("node {node} is down"));
        };
        if roles.elector.role_name() == "leader" {
            return Err(format!("node {node} leads already"));
        }
        let before = roles.elector.timeouts();
        let limit = self.w.elector_cfg.election_max_ticks + 1;
        for _ in 0..limit {
            self.guard(|w| w.run_elector(i, ElectorInput::Tick));
            self.report_answers();
            match &self.w.nodes[i].roles {
                Some(r) if r.elector.timeouts() == before && !self.stopped => {}
                _ => return Ok(()),
            }
        }
        Err(format!("node {node}'s election timer did not fire in {limit} ticks"))
    }

    /// `propose N OP` / `read N KEY`: a new client asks node N; the answer prints when
    /// it comes. Nothing moves until `deliver` or `tick`.
    pub(crate) fn submit(&mut self, node: NodeId, op: &ScriptOp, by_read_index: bool) -> Result<(), String> {
        let i = self.node_index(node)?;
        let client = self.w.clients.len() as u64 + 1;
        let (input, command) = match op.clone() {
            ScriptOp::Put { key, value } => {
                let (key, value) = (key.into_bytes(), value.into_bytes());
                (
                    OpInput::Put {
                        key: key.clone(),
                        value: value.clone(),
                    },
                    KvCommand::put(key, value),
                )
            }
            ScriptOp::Cas { key, expected, new } => {
                let (key, expected, new) = (key.into_bytes(), expected.map(String::into_bytes), new.into_bytes());
                let command = KvCommand::cas(key.clone(), expected.clone(), new.clone());
                (OpInput::Cas { key, expected, new }, command)
            }
            ScriptOp::Get { key } => {
                let key = key.into_bytes();
                (OpInput::Get { key: key.clone() }, KvCommand::get(key))
            }
        };
        if by_read_index && !matches!(input, OpInput::Get { .. }) {
            return Err("only a get can be served by read index".to_string());
        }
        let ask = if by_read_index {
            ScriptAsk::Read(command)
        } else {
            let payload = codec::encode(&command).map_err(|e| format!("cannot encode {command:?}: {e}"))?;
            ScriptAsk::Propose(Command {
                id: RequestId { client, seq: 1 },
                ack_below: 1,
                payload,
            })
        };
        self.w.clients.push(Client {
            id: client,
            seq: 1,
            seen: BTreeMap::new(),
            op: None,
        });
        self.requests.push(ScriptRequest { input, ask });
        self.ask_through(i, client)
    }

    /// `resubmit C N`: client C sends its request again, with the same id, through node N
    /// (a client whose node went silent tries another).
    pub(crate) fn resubmit(&mut self, client: u64, node: NodeId) -> Result<(), String> {
        let i = self.node_index(node)?;
        if client == 0 || client as usize > self.requests.len() {
            return Err(format!("no client {client} yet"));
        }
        if self.w.clients[(client - 1) as usize].op.is_some() {
            // One operation per client at a time, as the history records them.
            return Err(format!(
                "client {client} still waits for an answer (resubmit once it got one or none)"
            ));
        }
        self.ask_through(i, client)
    }

    /// Client `client`'s request, invoked now through node index `i`.
    fn ask_through(&mut self, i: usize, client: u64) -> Result<(), String> {
        let c = (client - 1) as usize;
        let node = self.w.nodes[i].id;
        let req = &self.requests[c];
        let read_index = matches!(req.ask, ScriptAsk::Read(_));
        let record = OpRecord {
            client,
            node,
            input: req.input.clone(),
            read_index,
            invoked_us: self.w.now,
            completed_us: None,
            output: None,
        };
        let ask = match req.ask.clone() {
            ScriptAsk::Propose(command) => Ask::Propose(command),
            ScriptAsk::Read(command) => Ask::Read { command, index: None },
        };
        let op = self.w.history.len();
        self.w.history.push(record);
        self.w.clients[c].op = Some(op);
        self.open.push(op);
        if !self.up(i) {
            // As `NodeHandle::submit` on a stopped node: no answer.
            self.w.complete(c, OpOutput::Unknown);
            self.report_answers();
            return Ok(());
        }
        let rid = RequestId { client, seq: 1 };
        let deadline = self.w.now + self.w.cfg.request_timeout_us;
        self.w.nodes[i].pending.insert(
            rid,
            Pending {
                client: c,
                ask,
                deadline,
            },
        );
        self.w.ask_leader(i, rid);
        let (node, inc) = (self.w.nodes[i].id, self.w.nodes[i].incarnation);
        let at = self.w.now + self.w.cfg.retry_us;
        self.w.schedule(at, Event::Retry { node, inc, id: rid });
        Ok(())
    }

    /// `crash N`: the node loses everything but its disk; its waiting clients get no answer.
    pub(crate) fn crash(&mut self, node: NodeId) -> Result<(), String> {
        let i = self.node_index(node)?;
        if !self.up(i) {
            return Err(format!("node {node} is down already"));
        }
        self.w.crash(i);
        self.report_answers();
        Ok(())
    }

    /// `restart N`: the node comes back from its disk.
    pub(crate) fn restart(&mut self, node: NodeId) -> Result<(), String> {
        let i = self.node_index(node)?;
        if self.up(i) {
            return Err(format!("node {node} is up"));
        }
        self.guard(|w| w.start_node(i));
        Ok(())
    }

    /// `partition A.. | B.. | ..`: messages between groups are lost (when sent and when
    /// they arrive). Every node must be in exactly one group.
    pub(crate) fn partition(&mut self, groups: &[Vec<NodeId>]) -> Result<(), String> {
        let mut side = vec![None; self.w.nodes.len()];
        for (g, group) in groups.iter().enumerate() {
            for &node in group {
                let i = self.node_index(node)?;
                if side[i].replace(g as u8).is_some() {
                    return Err(format!("node {node} is in two groups"));
                }
            }
        }
        let mut sides = Vec::new();
        for (i, s) in side.into_iter().enumerate() {
            sides.push(s.ok_or_else(|| format!("node {} is in no group", i + 1))?);
        }
        self.w.side = sides;
        self.w.stats.partitions += 1;
        Ok(())
    }

    /// `heal`: the partition ends.
    pub(crate) fn heal(&mut self) {
        self.w.side.iter_mut().for_each(|s| *s = 0);
    }

    /// `trace on [-KIND ..]` / `trace off`: print messages as they arrive, but for the
    /// kinds skipped (`beacon` skips the leader's empty `Decide`s).
    pub(crate) fn set_trace(&mut self, on: bool, skip: Vec<String>) {
        self.trace = on;
        self.trace_skip = skip;
    }

    /// `drop FILTER`: matching messages are lost until `undrop`.
    pub(crate) fn add_drop(&mut self, f: Filter) {
        self.drops.push(f);
    }

    /// `undrop [FILTER]`: removes that drop rule (every one without a filter).
    pub(crate) fn undrop(&mut self, f: Option<&Filter>) -> Result<(), String> {
        remove_rules(&mut self.drops, f, "drop")
    }

    /// `hold FILTER`: matching messages wait, undelivered, for `release`.
    pub(crate) fn add_hold(&mut self, f: Filter) {
        self.holds.push(f);
    }

    /// `release [FILTER]`: removes that hold rule (every one without a filter) and sends
    /// again, in the order they were held, the held messages it matches.
    pub(crate) fn release(&mut self, f: Option<&Filter>) -> Result<(), String> {
        remove_rules(&mut self.holds, f, "hold")?;
        let held = std::mem::take(&mut self.held);
        let at = self.w.now + SCRIPT_DELAY_US;
        for (from, to, msg) in held {
            let matches = f.is_none_or(|f| f.matches(from, to, &msg));
            let still_held = self.holds.iter().any(|h| h.matches(from, to, &msg));
            if matches && !still_held {
                self.w.schedule(at, Event::Net { from, to, msg });
            } else {
                self.held.push((from, to, msg));
            }
        }
        Ok(())
    }

    /// `slow N K`: acceptor N's answers arrive K ticks late (`slow N 0`: on time again).
    pub(crate) fn set_slow(&mut self, node: NodeId, ticks: u64) -> Result<(), String> {
        self.node_index(node)?;
        if ticks == 0 {
            self.slow.remove(&node);
        } else {
            self.slow.insert(node, ticks);
        }
        Ok(())
    }

    /// `status`: one line per node.
    pub(crate) fn status(&mut self) {
        for i in 0..self.w.nodes.len() {
            let n = &self.w.nodes[i];
            let line = match &n.roles {
                None => format!("node {}: down", n.id),
                Some(r) => {
                    let leader = n.leader.map_or("-".to_string(), |l| l.to_string());
                    let proposer = match (r.proposer.ballot(), r.proposer.next_slot()) {
                        (None, _) => "idle".to_string(),
                        (Some(b), Some(next)) => format!("leading {b} next_slot={next}"),
                        (Some(b), None) => format!("preparing {b}"),
                    };
                    format!(
                        "node {}: {} ballot={} leader={leader} proposer={proposer} learned={} commit={} applied={}",
                        n.id,
                        r.elector.role_name(),
                        r.elector.highest(),
                        r.learner.next(),
                        r.learner.commit(),
                        r.sm.next(),
                    )
                }
            };
            self.out.push(line);
        }
        let held = self.held.len();
        if held > 0 {
            self.out.push(format!("held messages: {held}"));
        }
    }

    /// `log N`: the decided log on node N's disk, a line per slot.
    pub(crate) fn log(&mut self, node: NodeId) -> Result<(), String> {
        let i = self.node_index(node)?;
        let lines: Vec<String> = self.w.nodes[i]
            .disk
            .log
            .iter()
            .map(|(slot, v)| format!("slot {slot}: {}", describe_value(v)))
            .collect();
        if lines.is_empty() {
            self.out.push("(empty log)".to_string());
        }
        self.out.extend(lines);
        Ok(())
    }

    /// `acceptor N`: what acceptor N holds on its disk: its promise, and per slot the
    /// ballot and value it accepted.
    pub(crate) fn acceptor(&mut self, node: NodeId) -> Result<(), String> {
        let i = self.node_index(node)?;
        let disk = &self.w.nodes[i].disk;
        let mut lines = vec![format!("promised {}", disk.promised)];
        for (slot, (ballot, v)) in &disk.accepted {
            lines.push(format!("slot {slot}: accepted at {ballot}: {}", describe_value(v)));
        }
        if let Some(roles) = &self.w.nodes[i].roles
            && !roles.acceptor.accepted().is_empty()
        {
            let hot: Vec<String> = roles.acceptor.accepted().keys().map(|s| s.to_string()).collect();
            lines.push(format!("values in memory: slots {}", hot.join(", ")));
        }
        self.out.extend(lines);
        Ok(())
    }

    /// `local N KEY`: KEY in node N's own state machine, read without asking anyone
    /// (possibly stale: what a read index guards against).
    pub(crate) fn local(&mut self, node: NodeId, key: &str) -> Result<(), String> {
        let i = self.node_index(node)?;
        let Some(roles) = &self.w.nodes[i].roles else {
            return Err(format!("node {node} is down"));
        };
        let answer = roles
            .sm
            .read(&KvCommand::get(key.as_bytes().to_vec()))
            .ok_or_else(|| "not a read-only command".to_string());
        let line = format!(
            "node {node} (applied {}) has {key} = {}",
            roles.sm.next(),
            describe_output(&kv_output(answer))
        );
        self.out.push(line);
        Ok(())
    }
}

fn remove_rules(rules: &mut Vec<Filter>, f: Option<&Filter>, what: &str) -> Result<(), String> {
    match f {
        None => rules.clear(),
        Some(f) => {
            let before = rules.len();
            rules.retain(|r| r != f);
            if rules.len() == before {
                return Err(format!("no such {what} rule"));
            }
        }
    }
    Ok(())
}

/// The slots a message carries values or answers for: (first, count).
fn slots_of(msg: &PeerMessage) -> Option<(Slot, u64)> {
    match msg {
        PeerMessage::AcceptorRequest(AcceptorRequest::Accept { first_slot, values, .. })
        | PeerMessage::Learner(LearnerMessage::Decide { first_slot, values, .. })
        | PeerMessage::Learner(LearnerMessage::Fetched { first_slot, values }) => {
            Some((*first_slot, values.len() as u64))
        }
        PeerMessage::AcceptorReply(AcceptorReply::Accepted { first_slot, count, .. }) => Some((*first_slot, *count)),
        _ => None,
    }
}

/// `3` or `3-5` (inclusive); `none` for no slot.
fn slot_range(first: Slot, count: u64) -> String {
    match count {
        0 => "none".to_string(),
        1 => first.to_string(),
        n => format!("{first}-{}", first + n - 1),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A log value in a line: `noop`, or the client and its command (`c1 put x=1`).
fn describe_value(v: &Value) -> String {
    match v {
        Value::Noop => "noop".to_string(),
        Value::Command(c) => {
            let what = match codec::decode::<KvCommand>(&c.payload) {
                Ok(KvCommand::Put { key, value }) => format!("put {}={}", text(&key), text(&value)),
                Ok(KvCommand::Cas { key, expected, new }) => format!(
                    "cas {} {}->{}",
                    text(&key),
                    expected.as_deref().map_or("(absent)".to_string(), text),
                    text(&new)
                ),
                Ok(KvCommand::Range { key, .. }) => format!("get {}", text(&key)),
                Ok(other) => format!("{other:?}"),
                Err(e) => format!("undecodable ({e})"),
            };
            format!("c{} {what}", c.id.client)
        }
    }
}

fn describe_values(values: &[Value]) -> String {
    let all: Vec<String> = values.iter().map(describe_value).collect();
    format!("[{}]", all.join(", "))
}

/// One message as a trace line shows it (after `from->to `).
fn describe(msg: &PeerMessage) -> String {
    match msg {
        PeerMessage::AcceptorRequest(AcceptorRequest::Prepare { ballot, from_slot, .. }) => {
            format!("Prepare ballot={ballot} from_slot={from_slot}")
        }
        PeerMessage::AcceptorRequest(AcceptorRequest::Accept { ballot, values, .. }) if values.is_empty() => {
            format!("Accept ballot={ballot} (empty: a read barrier)")
        }
        PeerMessage::AcceptorReply(AcceptorReply::Accepted { ballot, count: 0, .. }) => {
            format!("Accepted ballot={ballot} (empty)")
        }
        PeerMessage::AcceptorRequest(AcceptorRequest::Accept {
            ballot,
            first_slot,
            values,
            ..
        }) => format!(
            "Accept ballot={ballot} slots={} {}",
            slot_range(*first_slot, values.len() as u64),
            describe_values(values)
        ),
        PeerMessage::AcceptorReply(AcceptorReply::Promise {
            ballot,
            accepted,
            more_from,
            ..
        }) => {
            let all: Vec<String> = accepted
                .iter()
                .map(|pv| format!("{}@{}: {}", pv.slot, pv.ballot, describe_value(&pv.value)))
                .collect();
            let more = more_from.map_or(String::new(), |s| format!(" more_from={s}"));
            format!("Promise ballot={ballot} accepted=[{}]{more}", all.join(", "))
        }
        PeerMessage::AcceptorReply(AcceptorReply::Accepted {
            ballot,
            first_slot,
            count,
            ..
        }) => format!("Accepted ballot={ballot} slots={}", slot_range(*first_slot, *count)),
        PeerMessage::AcceptorReply(AcceptorReply::Rejected { ballot, promised, .. }) => {
            format!("Rejected ballot={ballot} promised={promised}")
        }
        PeerMessage::Learner(LearnerMessage::Decide {
            first_slot,
            values,
            commit,
        }) => {
            if values.is_empty() {
                format!("Decide (beacon) commit={commit}")
            } else {
                format!(
                    "Decide slots={} commit={commit} {}",
                    slot_range(*first_slot, values.len() as u64),
                    describe_values(values)
                )
            }
        }
        PeerMessage::Learner(LearnerMessage::Fetch { from, to }) => {
            format!("Fetch slots={}", slot_range(*from, to.saturating_sub(*from)))
        }
        PeerMessage::Learner(LearnerMessage::Fetched { first_slot, values }) => format!(
            "Fetched slots={} {}",
            slot_range(*first_slot, values.len() as u64),
            describe_values(values)
        ),
        PeerMessage::Elector(ElectorMessage::Heartbeat { ballot }) => format!("Heartbeat ballot={ballot}"),
        PeerMessage::Elector(ElectorMessage::HeartbeatReply { ballot, highest }) => {
            format!("HeartbeatReply ballot={ballot} highest={highest}")
        }
        PeerMessage::Elector(ElectorMessage::PreVote { ballot }) => format!("PreVote ballot={ballot}"),
        PeerMessage::Elector(ElectorMessage::PreVoteReply { ballot, granted }) => {
            format!("PreVoteReply ballot={ballot} granted={granted}")
        }
        PeerMessage::Proposer(ProposerMessage::Propose { command }) => {
            format!("Propose {}", describe_value(&Value::Command(command.clone())))
        }
        PeerMessage::Proposer(ProposerMessage::ReadIndex { id }) => format!("ReadIndex c{}", id.client),
        PeerMessage::StateMachine(StateMachineMessage::ReadIndexReply { id, index }) => format!(
            "ReadIndexReply c{} index={}",
            id.client,
            index.map_or("none".to_string(), |i| i.to_string())
        ),
    }
}

fn describe_input(input: &OpInput, read_index: bool) -> String {
    match input {
        OpInput::Get { key } if read_index => format!("read {}", text(key)),
        OpInput::Get { key } => format!("get {}", text(key)),
        OpInput::Put { key, value } => format!("put {}={}", text(key), text(value)),
        OpInput::Cas { key, expected, new } => format!(
            "cas {} {}->{}",
            text(key),
            expected.as_deref().map_or("(absent)".to_string(), text),
            text(new)
        ),
    }
}

fn describe_output(output: &OpOutput) -> String {
    match output {
        OpOutput::Got(Some(v)) => text(v),
        OpOutput::Got(None) => "(absent)".to_string(),
        OpOutput::Put => "ok".to_string(),
        OpOutput::Cas(true) => "ok (swapped)".to_string(),
        OpOutput::Cas(false) => "failed (value differs)".to_string(),
        OpOutput::Error(e) => format!("error: {e}"),
        OpOutput::Unknown => "unknown (no answer)".to_string(),
    }
}
