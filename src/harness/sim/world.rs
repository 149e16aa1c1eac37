//! The simulated world: N nodes made of the five role cores, one event queue, a faulty
//! network, a disk per node, crashes, partitions, and clients; with membership changes,
//! a pool of nodes beyond the first configuration's, an operator changing the members
//! and each joining node's gateway telling its learner to migrate. Everything here runs
//! on one thread and draws randomness from one seeded generator.
//!
//! The roles' outputs are carried out by the production driver ([`crate::driver`]): the
//! world is only its [`Host`], over a simulated disk (appends lost in a crash until a
//! sync, which takes simulated time, covers them) and the simulated network.

use super::checker::{Checker, Violation};
use super::history::{OpInput, OpOutput, OpRecord};
use super::snapshot_check::SnapshotCheck;
use super::{SimConfig, Stats};
use crate::app::Application;
use crate::app::kv::{KvCommand, KvResult};
use crate::app::lock_service::{LockCommand, LockReply, SessionId};
use crate::app::service::{Service, ServiceCommand, ServiceReply};
use crate::driver::{self, AcceptorHost, Driver, Host, SnapshotPiece, Sync};
use crate::error::{Error, Result as CrateResult};
use crate::messages::codec;
use crate::messages::local::{ElectorOrder, LocalMessage, ProposerEvent};
use crate::messages::{
    AcceptorReply, AcceptorRequest, Ballot, Command, ConfigId, Configuration, ElectorMessage, LearnerMessage, Member,
    NodeId, PeerMessage, ProposerMessage, RequestId, Slot, StateMachineMessage, StopSign, Value,
};
use crate::roles::acceptor::Acceptor;
use crate::roles::bugs::PlantedBugs;
use crate::roles::elector::{Elector, ElectorConfig, ElectorInput};
use crate::roles::learner::{Learner, LearnerConfig, LearnerInput};
use crate::roles::proposer::{Proposer, ProposerConfig, ProposerInput};
use crate::roles::ready::{AcceptorWrite, Outcome, Write};
use crate::roles::rng::SeededRng;
use crate::roles::state_machine::{CompactPolicy, SnapshotPolicy, StateMachine, StateMachineInput};
use std::collections::{BTreeMap, BTreeSet};

/// The acceptor keeps this many of its latest values in memory (the node keeps 4096).
const SIM_HOT_SLOTS: u64 = 2;

/// The state machine snapshots every this many slots (the node's default is 10,000), so
/// that runs restart from snapshots too.
const SIM_SNAPSHOT_EVERY: u64 = 40;

/// Snapshot chunks are this small, so that a transfer takes several and can be cut,
/// resumed and reordered.
const SIM_CHUNK_BYTES: usize = 48;

/// A joining node's learner is told to migrate this long after a configuration that
/// counts it comes into force (or it restarts), and again every `MIGRATE_AGAIN_US`
/// while it still holds no configuration that counts it (the node's gateway polls the
/// members the same way).
const MIGRATE_MIN_US: u64 = 1_000;
const MIGRATE_MAX_US: u64 = 30_000;
const MIGRATE_AGAIN_US: u64 = 1_000_000;

/// The client id of the operator's reconfiguration requests.
const OPERATOR_CLIENT: u64 = 4000;

/// Most configuration changes the operator has in flight at once.
const OPERATOR_MAX_INFLIGHT: usize = 2;

/// What a node keeps across a crash: exactly what the cores asked to persist, and of
/// that only what a sync made durable (the decided log's appends count as durable: a
/// process crash keeps what was written).
#[derive(Clone, Debug, Default)]
struct Disk {
    promised: Ballot,
    accepted: BTreeMap<Slot, (Ballot, Value)>,
    log: BTreeMap<Slot, Value>,
    ballot: Ballot,
    snapshot: Option<Vec<u8>>,
    /// Appended but not yet synced: lost in a crash.
    unsynced_acceptor: Vec<AcceptorWrite>,
    unsynced_ballots: Vec<Ballot>,
    /// Every acceptance the acceptor ever wrote, with its value (for the checker: what an
    /// `Accepted` reveals).
    written: BTreeMap<(Slot, Ballot), Value>,
    /// The durable snapshot covers every slot below this one.
    snapshot_at: Slot,
    /// Compactions of the acceptor's log waiting for a sync: (how many of the unsynced
    /// writes must be durable first, below which slot).
    unsynced_compactions: Vec<(usize, Slot)>,
    /// A snapshot being received from a peer, and one received whole (covering slots
    /// below `.0`), waiting to be installed.
    incoming: Vec<u8>,
    received: Option<(Slot, Vec<u8>)>,
    /// The latest configuration the state machine put in force (`Write::Membership`; the
    /// node's `membership` file, written and synced in place by its host before the
    /// roles hear of it, so durable at once).
    membership: Option<Configuration>,
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

/// The roles of a running node, and the drivers carrying out their outputs: lost on a
/// crash.
struct Roles {
    acceptor: Acceptor,
    proposer: Proposer,
    learner: Learner,
    elector: Elector,
    sm: StateMachine<Service>,
    drivers: Drivers,
}

#[derive(Default)]
struct Drivers {
    acceptor: Driver,
    proposer: Driver,
    learner: Driver,
    elector: Driver,
    sm: Driver<ServiceReply>,
}

/// The role a host serves (for messages and for what it may write).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SimRole {
    Acceptor,
    Proposer,
    Learner,
    Elector,
    StateMachine,
}

/// A client request this node waits on (as `NodeHandle::submit` and `NodeHandle::read`
/// do).
struct Pending {
    who: Who,
    ask: Ask,
    deadline: u64,
    /// When the leader was last asked (or would have been, had one been known).
    asked_at: u64,
    /// An ask after a refusal is scheduled ([`Event::AskAgain`]).
    ask_again: bool,
}

/// On whose behalf a node waits for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    /// A key-value client (its operations make the history).
    Kv(usize),
    /// A lock client.
    Lock(usize),
    /// The node's own clock loop (the leader's clock command).
    Clock,
    /// A scenario script's client (its number): the answer is only recorded.
    Script(u64),
    /// The operator, changing the membership.
    Operator,
}

/// How a request a node took for the clock loop or a script ended, as a scripted world
/// reads it (`outcome` `None`: no answer, the node gave up or crashed).
#[derive(Debug)]
struct Answered {
    node: NodeId,
    who: Who,
    id: RequestId,
    outcome: Option<Outcome<ServiceReply>>,
    /// A membership change ended because this configuration came into force here.
    config: Option<Configuration>,
}

/// What a node asks the leader for on a client's behalf, until it is answered.
enum Ask {
    /// A command through the log (`NodeHandle::submit`): `Propose` it.
    Propose(Command),
    /// A read by read index (`NodeHandle::read`): ask for `ReadIndex`, then answer
    /// `command` from this node's state machine once it has applied every slot below
    /// the first index a leader confirmed (the state machine's `ReadWait`).
    Read { command: ServiceCommand },
    /// A membership change (`NodeHandle::reconfigure`): `ProposeStop` it. The state
    /// machine answers only a refusal; the request succeeds when this node's
    /// configuration moves past `stop.prev`.
    Stop(StopSign),
}

struct SimNode {
    id: NodeId,
    /// Bumped on every crash, so a crashed incarnation's timers and mailboxes go silent.
    incarnation: u64,
    roles: Option<Roles>,
    disk: Disk,
    leader: Option<NodeId>,
    pending: BTreeMap<RequestId, Pending>,
    /// The configuration this node's state machine has in force (`None`: joining, it
    /// never had one).
    config: Option<Configuration>,
    /// The configuration its elector was last told of (its roles hear of a new one a
    /// mailbox hop after the state machine): an elector told of one that does not count
    /// its node must stay silent.
    roles_config: Option<Configuration>,
    /// A chain of `Migrate` events runs for this incarnation.
    migrating: bool,
}

/// A message between two roles of one node (an actor mailbox).
#[derive(Debug)]
enum Local {
    /// A peer message a node sent to itself.
    Peer(NodeId, PeerMessage),
    Msg(LocalMessage),
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
    /// A lock client takes its next step.
    LockStep {
        locker: usize,
    },
    /// A node's clock loop: the leader proposes the application's clock command.
    Clock {
        node: NodeId,
        inc: u64,
    },
    /// A node retries (or gives up on) a client request.
    Retry {
        node: NodeId,
        inc: u64,
        id: RequestId,
    },
    /// A node asks the leader again for a read refused less than a tick after its last
    /// ask.
    AskAgain {
        node: NodeId,
        inc: u64,
        id: RequestId,
    },
    /// A sync of a node's disk completes: the first `count` unsynced writes of `role`
    /// are durable.
    Synced {
        node: NodeId,
        inc: u64,
        role: SimRole,
        count: usize,
    },
    /// A snapshot taken at `at` is durable.
    SnapshotDone {
        node: NodeId,
        inc: u64,
        at: Slot,
        bytes: Vec<u8>,
    },
    /// The received snapshot covering slots below `at` is installed in place of the
    /// node's own (durable).
    InstallDone {
        node: NodeId,
        inc: u64,
        at: Slot,
    },
    /// Something bad happens.
    Chaos,
    Restart {
        node: NodeId,
    },
    Heal,
    /// The operator submits a membership change.
    Operator,
    /// A joining node's gateway looks at the latest configuration: if it counts the node
    /// and the node holds none that does, its learner is told to migrate.
    Migrate {
        node: NodeId,
        inc: u64,
    },
}

struct Client {
    id: u64,
    seq: u64,
    /// The last value this client saw per key (`None`: absent), for plausible CAS.
    seen: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// The index of its operation in flight in the history.
    op: Option<usize>,
}

/// A client of the lock service: opens a session, waits in line for lock `L`, holds it
/// for a while with keep-alives, then releases it, or dies holding it (its session then
/// expires by log time and the lock passes on).
struct Locker {
    id: u64,
    seq: u64,
    session: Option<SessionId>,
    /// The fencing token of the grant it holds.
    holding: Option<u64>,
    /// Keep-alives left before it lets go.
    hold_steps: u64,
    /// A request in flight.
    busy: bool,
}

/// The lock service's settings in the simulator (simulated milliseconds): sessions live
/// `LOCK_TTL_MS` past their last sign of life; the leader moves log time every
/// `CLOCK_MS`, `CLOCK_MARGIN_MS` behind its clock (as `NodeHandle`'s clock loop does).
const LOCK_TTL_MS: u64 = 400;
const CLOCK_MS: u64 = 100;
const CLOCK_MARGIN_MS: u64 = 100;

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
    lockers: Vec<Locker>,
    /// Every fencing token granted for lock `L`, with the session it went to.
    tokens: BTreeMap<u64, SessionId>,
    /// Sequence numbers of the nodes' clock commands.
    clock_seq: u64,
    /// The state machines snapshot every this many slots (from their next start on).
    snapshot_every: u64,
    /// Log compaction (`None`: the logs are kept whole).
    pub(crate) compact: Option<CompactPolicy>,
    /// How the clock loop's and the scripts' requests ended (`None`: not recorded, as in
    /// a random run, where nobody reads them).
    answered: Option<Vec<Answered>>,
    pub(crate) history: Vec<OpRecord>,
    pub(crate) checker: Checker,
    pub(crate) snapshot_check: SnapshotCheck,
    pub(crate) steps: u64,
    pub(crate) digest: u64,
    pub(crate) trace: Option<Vec<String>>,
    pub(crate) stats: Stats,
    elector_cfg: ElectorConfig,
    proposer_cfg: ProposerConfig,
    learner_cfg: LearnerConfig,
    /// A check failed inside a host call (reported after the step).
    violation: Option<String>,
    /// The first configuration (id 0): nodes 1..=`cfg.nodes`; the rest of the pool joins.
    first: Configuration,
    /// The latest configuration any node put in force.
    latest: Configuration,
    /// Every configuration that came into force, in order.
    history_configs: Vec<Configuration>,
    /// The StopSigns the state machines applied (or refused), by slot, and their requests.
    stops: BTreeMap<Slot, StopSign>,
    stop_requests: BTreeSet<RequestId>,
    /// The CRC-32 of the answer every node's state machine gave each request applied
    /// through the log: one request, one answer, however often it was decided.
    outcomes: BTreeMap<RequestId, u32>,
    /// Sequence numbers of the operator's requests.
    operator_seq: u64,
    /// How long after a configuration counting a joining node it is told to migrate.
    migrate_min_us: u64,
    migrate_max_us: u64,
}

const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl World {
    pub(crate) fn new(cfg: &SimConfig) -> Self {
        let n = cfg.pool.max(cfg.nodes);
        let ids: Vec<NodeId> = (1..=cfg.nodes as u64).collect();
        let first = Configuration::of_ids(&ids);
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
            lockers: Vec::new(),
            tokens: BTreeMap::new(),
            clock_seq: 0,
            snapshot_every: SIM_SNAPSHOT_EVERY,
            compact: Some(CompactPolicy {
                every_slots: SIM_SNAPSHOT_EVERY,
                every_bytes: u64::MAX / 4,
            }),
            answered: None,
            history: Vec::new(),
            checker: Checker::with_first(first.clone()),
            snapshot_check: SnapshotCheck::default(),
            steps: 0,
            digest: 0xcbf2_9ce4_8422_2325,
            trace: cfg.trace.then(Vec::new),
            stats: Stats::default(),
            elector_cfg: ElectorConfig::default(),
            proposer_cfg: ProposerConfig::default(),
            learner_cfg: LearnerConfig {
                snapshot_chunk_bytes: SIM_CHUNK_BYTES,
                ..LearnerConfig::default()
            },
            violation: None,
            latest: first.clone(),
            history_configs: vec![first.clone()],
            first,
            stops: BTreeMap::new(),
            stop_requests: BTreeSet::new(),
            outcomes: BTreeMap::new(),
            operator_seq: 0,
            migrate_min_us: MIGRATE_MIN_US,
            migrate_max_us: MIGRATE_MAX_US,
        };
        for id in 1..=n as NodeId {
            w.nodes.push(SimNode {
                id,
                incarnation: 0,
                roles: None,
                disk: Disk::default(),
                leader: None,
                pending: BTreeMap::new(),
                config: None,
                roles_config: None,
                migrating: false,
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
        for locker in 0..cfg.lock_clients {
            w.lockers.push(Locker {
                id: 2000 + locker as u64,
                seq: 0,
                session: None,
                holding: None,
                hold_steps: 0,
                busy: false,
            });
            let at = w.rng.between(0, 50 * cfg.tick_us);
            w.schedule(at, Event::LockStep { locker });
        }
        if cfg.faults.crashes || cfg.faults.partitions {
            let at = w.rng.between(cfg.faults.chaos_min_us, cfg.faults.chaos_max_us);
            w.schedule(at, Event::Chaos);
        }
        if cfg.membership {
            let at = w.rng.between(cfg.reconfigure_min_us, cfg.reconfigure_max_us);
            w.schedule(at, Event::Operator);
        }
        w
    }

    /// Every configuration that came into force, in order (the first one included).
    pub(crate) fn configurations(&self) -> Vec<Configuration> {
        self.history_configs.clone()
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

    /// The index of `node` while its incarnation `inc` runs: a crashed incarnation's
    /// timers and mailboxes go silent.
    fn running(&self, node: NodeId, inc: u64) -> Option<usize> {
        let i = self.idx(node);
        (self.nodes[i].incarnation == inc && self.nodes[i].roles.is_some()).then_some(i)
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
        let result = self.handle(ev).and_then(|()| self.violation.take().map_or(Ok(()), Err));
        result.map_err(|message| Violation {
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
                let Some(i) = self.running(node, inc) else {
                    return Ok(());
                };
                self.mix(2);
                self.mix(node);
                match msg {
                    Local::Peer(from, m) => self.deliver(i, from, m),
                    Local::Msg(LocalMessage::Order(ElectorOrder::Lead(b))) => {
                        self.run_proposer(i, ProposerInput::Lead(b))
                    }
                    Local::Msg(LocalMessage::Order(ElectorOrder::StepDown)) => {
                        self.run_proposer(i, ProposerInput::StepDown)
                    }
                    Local::Msg(LocalMessage::Event(e)) => self.run_elector(i, ElectorInput::Proposer(e)),
                    Local::Msg(LocalMessage::Learned(s)) => self.run_proposer(i, ProposerInput::Learned(s)),
                    Local::Msg(LocalMessage::Apply(batch)) => self.run_sm(i, StateMachineInput::Apply(batch)),
                    Local::Msg(LocalMessage::Compact { below }) => self.compact_acceptor(i, below),
                    Local::Msg(LocalMessage::SnapshotDurable { at }) => {
                        self.run_learner(i, LearnerInput::SnapshotDurable { at })
                    }
                    Local::Msg(LocalMessage::CatchUp { below, from }) => {
                        self.run_learner(i, LearnerInput::CatchUp { below, from })
                    }
                    Local::Msg(LocalMessage::InstallSnapshot { at }) => {
                        self.run_sm(i, StateMachineInput::InstallSnapshot { at })
                    }
                    // Every role but the state machine (which sent it) hears of it.
                    Local::Msg(LocalMessage::Reconfigure(config)) => {
                        let n = &mut self.nodes[i];
                        if n.roles_config.as_ref().is_none_or(|c| c.id < config.id) {
                            n.roles_config = Some(config.clone());
                        }
                        self.with_roles(i, |_, r| r.acceptor.reconfigure(config.id));
                        self.run_proposer(i, ProposerInput::Reconfigure(config.clone()))?;
                        self.run_elector(i, ElectorInput::Reconfigure(config.clone()))?;
                        self.run_learner(i, LearnerInput::Reconfigure(config))
                    }
                    Local::Msg(LocalMessage::Migrate { below, sources }) => {
                        self.run_learner(i, LearnerInput::Migrate { below, sources })
                    }
                }
            }
            Event::Synced { node, inc, role, count } => {
                let Some(i) = self.running(node, inc) else {
                    return Ok(());
                };
                self.mix(9);
                self.mix(node);
                self.synced(i, role, count);
                Ok(())
            }
            Event::SnapshotDone { node, inc, at, bytes } => {
                let Some(i) = self.running(node, inc) else {
                    return Ok(());
                };
                self.mix(10);
                self.mix(at);
                self.stats.snapshots += 1;
                let size = bytes.len() as u64;
                let id = self.nodes[i].id;
                self.snapshot_check.snapshot_durable(id, at, &bytes)?;
                let disk = &mut self.nodes[i].disk;
                disk.snapshot = Some(bytes);
                disk.snapshot_at = at;
                self.run_sm(i, StateMachineInput::SnapshotInstalled(Ok(size)))
            }
            Event::InstallDone { node, inc, at } => {
                let Some(i) = self.running(node, inc) else {
                    return Ok(());
                };
                self.mix(11);
                self.mix(at);
                let result = match self.nodes[i].disk.received.take() {
                    Some((received_at, bytes)) if received_at == at => {
                        self.snapshot_check.snapshot_durable(node, at, &bytes)?;
                        self.stats.snapshots_installed += 1;
                        let disk = &mut self.nodes[i].disk;
                        disk.snapshot = Some(bytes.clone());
                        disk.snapshot_at = at;
                        Ok(bytes)
                    }
                    _ => Err(format!("no received snapshot at {at}")),
                };
                self.run_sm(i, StateMachineInput::Restored { at, result })
            }
            Event::Tick { node, inc } => {
                let Some(i) = self.running(node, inc) else {
                    return Ok(());
                };
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
                        _ => self.run_learner(i, LearnerInput::Tick)?,
                    }
                }
                Ok(())
            }
            Event::Invoke { client } => {
                self.mix(4);
                self.invoke(client);
                Ok(())
            }
            Event::LockStep { locker } => {
                self.mix(11);
                self.lock_step(locker);
                Ok(())
            }
            Event::Clock { node, inc } => {
                let i = self.idx(node);
                if self.nodes[i].incarnation != inc || self.nodes[i].roles.is_none() {
                    return Ok(());
                }
                self.mix(12);
                self.clock(i);
                Ok(())
            }
            Event::Retry { node, inc, id } => {
                let Some(i) = self.running(node, inc) else {
                    return Ok(());
                };
                self.mix(5);
                self.retry(i, id);
                Ok(())
            }
            Event::AskAgain { node, inc, id } => {
                if let Some(i) = self.running(node, inc) {
                    self.mix(11);
                    self.ask_again(i, id);
                }
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
            Event::Operator => {
                self.mix(13);
                self.operator();
                Ok(())
            }
            Event::Migrate { node, inc } => {
                let Some(i) = self.running(node, inc) else {
                    return Ok(());
                };
                self.mix(14);
                self.mix(node);
                self.migrate(i);
                Ok(())
            }
        }
    }

    /// Runs `f` on node `i`'s roles, taken out of the world for the call so that the
    /// world can be the drivers' host meanwhile.
    fn with_roles<T>(&mut self, i: usize, f: impl FnOnce(&mut World, &mut Roles) -> T) -> T {
        let mut roles = self.nodes[i]
            .roles
            .take()
            .expect("events for a crashed node are filtered before they get here");
        let out = f(self, &mut roles);
        self.nodes[i].roles = Some(roles);
        out
    }

    /// Records a failed check; the step fails with it.
    fn violated(&mut self, message: String) {
        self.violation.get_or_insert(message);
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

    fn local(&mut self, i: usize, msg: Local) {
        let (node, inc, now) = (self.nodes[i].id, self.nodes[i].incarnation, self.now);
        self.schedule(now, Event::Local { node, inc, msg });
    }

    /// Hands a message to the role that handles it (`LocalRoles::deliver`).
    fn deliver(&mut self, i: usize, from: NodeId, msg: PeerMessage) -> Result<(), String> {
        match msg {
            PeerMessage::AcceptorRequest(req) => self.on_acceptor(i, from, req),
            PeerMessage::AcceptorReply(reply) => self.run_proposer(i, ProposerInput::Reply(from, reply)),
            PeerMessage::Learner(m) => self.run_learner(i, LearnerInput::Peer(from, m)),
            PeerMessage::Elector(m) => self.run_elector(i, ElectorInput::Peer(from, m)),
            PeerMessage::Proposer(ProposerMessage::Propose { command }) => {
                self.run_proposer(i, ProposerInput::Propose(from, command))
            }
            PeerMessage::Proposer(ProposerMessage::ReadIndex { id }) => {
                self.run_proposer(i, ProposerInput::ReadIndex(from, id))
            }
            PeerMessage::Proposer(ProposerMessage::ProposeStop { stop }) => {
                self.run_proposer(i, ProposerInput::ProposeStop(from, stop))
            }
            PeerMessage::StateMachine(StateMachineMessage::ReadIndexReply { id, index }) => {
                self.run_sm(i, StateMachineInput::ReadIndexReply { id, index })
            }
            // The simulator runs the Paxos roles only.
            PeerMessage::Raft(_) => Ok(()),
        }
    }

    // ---- the roles: each input to its core, the output to the production driver --------

    /// The acceptor, as `AcceptorActor` hands it a request.
    fn on_acceptor(&mut self, i: usize, from: NodeId, req: AcceptorRequest) -> Result<(), String> {
        self.with_roles(i, |w, r| {
            let mut host = SimHost::new(w, i, SimRole::Acceptor);
            driver::acceptor_request(&mut r.acceptor, &mut r.drivers.acceptor, &mut host, from, req);
        });
        Ok(())
    }

    /// A sync of node `i`'s disk completed.
    fn synced(&mut self, i: usize, role: SimRole, count: usize) {
        let disk = &mut self.nodes[i].disk;
        match role {
            SimRole::Acceptor => {
                let count = count.min(disk.unsynced_acceptor.len());
                for w in disk.unsynced_acceptor.drain(..count).collect::<Vec<_>>() {
                    disk.write_acceptor(w);
                }
                // A compaction waits for the writes before it (the promise it re-records).
                for (waits, below) in std::mem::take(&mut disk.unsynced_compactions) {
                    match waits.checked_sub(count) {
                        Some(waits) if waits > 0 => disk.unsynced_compactions.push((waits, below)),
                        _ => disk.accepted = disk.accepted.split_off(&below),
                    }
                }
                self.with_roles(i, |w, r| {
                    let mut host = SimHost::new(w, i, SimRole::Acceptor);
                    driver::acceptor_synced(&mut r.acceptor, &mut r.drivers.acceptor, &mut host, Ok(()));
                });
            }
            SimRole::Elector => {
                let count = count.min(disk.unsynced_ballots.len());
                for b in disk.unsynced_ballots.drain(..count).collect::<Vec<_>>() {
                    disk.ballot = disk.ballot.max(b);
                }
                self.with_roles(i, |w, r| {
                    let mut host = SimHost::new(w, i, SimRole::Elector);
                    r.drivers.elector.synced(Ok(()), &mut host);
                });
            }
            other => self.violated(format!("a sync for the {other:?}, which never asks for one")),
        }
    }

    /// `ProposerActor`, watched by the phase-1 checks.
    fn run_proposer(&mut self, i: usize, input: ProposerInput) -> Result<(), String> {
        let id = self.nodes[i].id;
        self.with_roles(i, |w, r| {
            let p = &r.proposer;
            let (before, was_leading) = (p.ballot(), p.is_leading());
            // Only the promises the proposer can still count (not once it pulls).
            if let (Some(b), false, false, ProposerInput::Reply(from, promise)) =
                (before, was_leading, p.is_pulling(), &input)
                && let AcceptorReply::Promise {
                    ballot,
                    decided_below,
                    accepted,
                    more_from,
                    ..
                } = promise
                && *ballot == b
            {
                w.checker
                    .promise_received(b, *from, *decided_below, accepted, *more_from);
            }
            let ready = r.proposer.handle(input);
            let p = &r.proposer;
            if let (true, Some(b)) = (p.is_leading(), p.ballot())
                && !(was_leading && before == Some(b))
            {
                w.checker.proposer_leads(id, b)?;
            }
            let mut checked = BTreeSet::new();
            for (_, msg) in &ready.send {
                if let PeerMessage::AcceptorRequest(AcceptorRequest::Accept {
                    call,
                    ballot,
                    first_slot,
                    values,
                }) = msg
                    && checked.insert(*call)
                {
                    w.checker.accept_sent(id, *ballot, *first_slot, values)?;
                }
            }
            for m in &ready.local {
                if let LocalMessage::Event(ProposerEvent::Elected(b)) = m {
                    w.checker.elected(id, *b)?;
                    w.stats.elections += 1;
                }
            }
            let mut host = SimHost::new(w, i, SimRole::Proposer);
            r.drivers.proposer.carry_out(ready, &mut host);
            Ok(())
        })
    }

    /// `AcceptorActor` told by its state machine that a durable snapshot covers every
    /// slot below `below`.
    fn compact_acceptor(&mut self, i: usize, below: Slot) -> Result<(), String> {
        self.with_roles(i, |w, r| {
            let mut host = SimHost::new(w, i, SimRole::Acceptor);
            driver::acceptor_compact(&mut r.acceptor, &mut r.drivers.acceptor, &mut host, below);
        });
        Ok(())
    }

    /// `LearnerActor`.
    fn run_learner(&mut self, i: usize, input: LearnerInput) -> Result<(), String> {
        self.with_roles(i, |w, r| {
            let ready = r.learner.handle(input);
            let mut host = SimHost::new(w, i, SimRole::Learner);
            r.drivers.learner.carry_out(ready, &mut host);
        });
        Ok(())
    }

    /// `ElectorActor`. An elector told of a configuration that does not count its node
    /// (removed), or of none (joining), must stay silent: no heartbeat, no pre-vote, no
    /// order to lead.
    fn run_elector(&mut self, i: usize, input: ElectorInput) -> Result<(), String> {
        let id = self.nodes[i].id;
        let silent = match &self.nodes[i].roles_config {
            Some(c) if c.contains(id) => None,
            Some(c) => Some(format!("was removed ({c})")),
            None => Some("is joining (no configuration yet)".to_string()),
        };
        self.with_roles(i, |w, r| {
            let ready = r.elector.handle(input);
            if let Some(why) = &silent {
                let beats = ready.send.iter().find(|(_, m)| {
                    matches!(
                        m,
                        PeerMessage::Elector(ElectorMessage::Heartbeat { .. } | ElectorMessage::PreVote { .. })
                    )
                });
                let leads = ready
                    .local
                    .iter()
                    .find(|m| matches!(m, LocalMessage::Order(ElectorOrder::Lead(_))));
                if let Some((to, m)) = beats {
                    return Err(format!("node {id} {why}, but its elector sent {m:?} to node {to}"));
                }
                if let Some(m) = leads {
                    return Err(format!("node {id} {why}, but its elector ordered {m:?}"));
                }
            }
            let mut host = SimHost::new(w, i, SimRole::Elector);
            r.drivers.elector.carry_out(ready, &mut host);
            Ok(())
        })
    }

    /// `StateMachineActor`: every applied slot is checked against the other replicas.
    fn run_sm(&mut self, i: usize, input: StateMachineInput<ServiceCommand>) -> Result<(), String> {
        let id = self.nodes[i].id;
        self.with_roles(i, |w, r| {
            if let StateMachineInput::Apply(batch) = &input {
                for (slot, value) in batch.iter().filter(|(slot, _)| *slot >= r.sm.next()) {
                    w.checker.applied(id, *slot, value)?;
                    if let Value::StopSign(stop) = value {
                        w.stops.insert(*slot, stop.clone());
                        w.stop_requests.insert(stop.id);
                    }
                }
            }
            let (before, restored) = (r.sm.next(), matches!(input, StateMachineInput::Restored { .. }));
            let ready = r.sm.handle(input);
            if restored && r.sm.next() > before {
                // A received snapshot was installed: the applied sequence goes on from it.
                w.checker.restarted(id, r.sm.next());
            }
            let mut host = SimHost::new(w, i, SimRole::StateMachine);
            host.sm = Some(&r.sm);
            r.drivers.sm.carry_out(ready, &mut host);
            Ok(())
        })
    }

    // ---- crashes and restarts -------------------------------------------------------------

    /// Starts a node from its disk, as `Node::start` does: the state machine from the
    /// snapshot if there is one (the first configuration's state otherwise, on every
    /// node alike: a joining node that applied the log from slot 0 would hold what the
    /// others hold), the learner from the decided log after it. The node's configuration
    /// is the latest its disk holds (its membership file, or the one in its snapshot),
    /// else the first configuration if it is a member of it, else none: it joins, its
    /// acceptor answers no ballot and its elector never campaigns. The roles hear of a
    /// configuration: the elector and proposer are built with it, the learner hears of
    /// one after the first at once (`Reconfigure`, before any other event).
    fn start_node(&mut self, i: usize) -> Result<(), String> {
        let bugs = self.bugs;
        let id = self.nodes[i].id;
        let seed = self.rng.next_u64();
        let first = self.first.clone();
        let node = &mut self.nodes[i];
        node.incarnation += 1;
        node.leader = None;
        node.migrating = false;
        let disk = &node.disk;
        let sm = match &disk.snapshot {
            Some(bytes) => StateMachine::<Service>::restore(bytes)
                .map_err(|e| format!("node {id} cannot restore its snapshot: {e}"))?,
            None => StateMachine::new(Service::default()).with_configuration(first.clone()),
        }
        .with_bugs(bugs)
        .with_snapshots(SnapshotPolicy {
            every: self.snapshot_every,
            compact: self.compact,
        });
        let restored = disk.snapshot.as_ref().map(|_| sm.configuration().clone());
        let own = [
            disk.membership.clone(),
            restored,
            first.contains(id).then(|| first.clone()),
        ]
        .into_iter()
        .flatten()
        .max_by_key(|c| c.id);
        // The snapshot's slots are decided: the acceptor's floor.
        let acceptor = Acceptor::restore(disk.promised, disk.accepted.clone())
            .with_floor(sm.next())
            .with_hot_slots(SIM_HOT_SLOTS)
            .with_config(own.as_ref().map(|c| c.id))
            .with_bugs(bugs);
        // The run of slots the decided log holds up to the snapshot (as
        // `DecidedLog::held_through`): below it, the snapshot serves.
        let mut floor = sm.next();
        while floor > 0 && disk.log.contains_key(&(floor - 1)) {
            floor -= 1;
        }
        let learner = Learner::restore(id, self.learner_cfg.clone(), disk.log.clone(), sm.next())
            .with_snapshot(sm.next(), floor)
            .with_bugs(bugs);
        // The elector and proposer know the members and the configuration's id (a joining
        // node's elector none: it never campaigns, so its proposer never leads).
        let (members, config_id) = match &own {
            Some(c) => (c.ids(), Some(c.id)),
            None => (self.ids.clone(), None),
        };
        let elector = Elector::new(
            id,
            members.clone(),
            self.elector_cfg.clone(),
            seed,
            disk.promised.max(disk.ballot),
        )
        .with_config(config_id);
        let proposer = Proposer::new(id, members, self.proposer_cfg.clone())
            .with_config_id(config_id.unwrap_or(0))
            .with_bugs(bugs);
        self.checker.restarted(id, sm.next());
        let mut roles = Roles {
            acceptor,
            proposer,
            learner,
            elector,
            sm,
            drivers: Drivers::default(),
        };
        roles.acceptor.evict_restored();
        self.checker.acceptor_restored(id, &roles.acceptor)?;
        let node = &mut self.nodes[i];
        node.roles = Some(roles);
        node.config = own.clone();
        node.roles_config = own.clone();
        if let Some(config) = own.filter(|c| c.id > 0) {
            self.run_learner(i, LearnerInput::Reconfigure(config))?;
        }
        self.with_roles(i, |w, r| {
            let ready = r.learner.start();
            let mut host = SimHost::new(w, i, SimRole::Learner);
            r.drivers.learner.carry_out(ready, &mut host);
        });
        let inc = self.nodes[i].incarnation;
        let at = self.now + self.rng.between(1, self.cfg.tick_us);
        self.schedule(at, Event::Tick { node: id, inc });
        let at = self.now + CLOCK_MS * 1000;
        self.schedule(at, Event::Clock { node: id, inc });
        if self.behind(i) {
            self.start_migrating(i);
        }
        Ok(())
    }

    fn crash(&mut self, i: usize) {
        self.stats.crashes += 1;
        let node = &mut self.nodes[i];
        node.roles = None;
        node.incarnation += 1;
        node.leader = None;
        // What no sync covered yet is gone.
        node.disk.unsynced_acceptor.clear();
        node.disk.unsynced_compactions.clear();
        node.disk.unsynced_ballots.clear();
        node.disk.incoming.clear();
        node.migrating = false;
        let pending = std::mem::take(&mut node.pending);
        for (id, p) in pending {
            self.gave_up(i, id, p.who);
        }
    }

    /// Request `id` node `i` took for `who` ended without an answer (timed out, or the
    /// node crashed).
    fn gave_up(&mut self, i: usize, id: RequestId, who: Who) {
        match who {
            Who::Kv(client) => self.complete(client, OpOutput::Unknown),
            Who::Lock(locker) => self.lock_answered(locker, None),
            Who::Operator => self.stats.stop_signs_timed_out += 1,
            Who::Clock | Who::Script(_) => self.record_answer(i, who, id, None, None),
        }
    }

    /// Keeps how a clock or script request ended, if this world records that.
    fn record_answer(
        &mut self,
        i: usize,
        who: Who,
        id: RequestId,
        outcome: Option<Outcome<ServiceReply>>,
        config: Option<Configuration>,
    ) {
        let node = self.nodes[i].id;
        if let Some(answered) = &mut self.answered {
            answered.push(Answered {
                node,
                who,
                id,
                outcome,
                config,
            });
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
        let up = self.client_nodes();
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
        let command = ServiceCommand::Kv(match &input {
            OpInput::Get { key } => KvCommand::get(key.clone()),
            OpInput::Put { key, value } => KvCommand::put(key.clone(), value.clone()),
            OpInput::Cas { key, expected, new } => KvCommand::cas(key.clone(), expected.clone(), new.clone()),
        });
        let c = &mut self.clients[client];
        let rid = RequestId {
            client: c.id,
            seq: c.seq,
        };
        let ack_below = c.seq;
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
        let ask = if by_read_index {
            Ask::Read { command }
        } else {
            Ask::Propose(Command {
                id: rid,
                ack_below,
                payload: encode(&command),
            })
        };
        self.submit(i, Who::Kv(client), rid, ask);
    }

    /// Node `i` takes request `id` on behalf of `who`, as `NodeHandle::submit` (a
    /// command) or `NodeHandle::read` (a read by read index) do: it waits for the
    /// answer, asks the leader, and asks again every `retry_us` until `request_timeout_us`.
    fn submit(&mut self, i: usize, who: Who, id: RequestId, ask: Ask) {
        let read = match &ask {
            Ask::Read { command } => Some(command.clone()),
            Ask::Propose(_) | Ask::Stop(_) => None,
        };
        let deadline = self.now + self.cfg.request_timeout_us;
        let pending = Pending {
            who,
            ask,
            deadline,
            asked_at: self.now,
            ask_again: false,
        };
        self.nodes[i].pending.insert(id, pending);
        if let Some(command) = read
            && let Err(e) = self.run_sm(i, StateMachineInput::ReadWait { id, command })
        {
            self.violated(e);
        }
        self.ask_leader(i, id);
        let (node, inc) = (self.nodes[i].id, self.nodes[i].incarnation);
        let at = self.now + self.cfg.retry_us;
        self.schedule(at, Event::Retry { node, inc, id });
    }

    /// The nodes a client may ask: the live members of the latest configuration (a
    /// client knows the members from any node's `GET /v1/members`; a removed node's
    /// gateway would refuse it). Requests a node took before it was removed wait out
    /// their timeout there.
    fn client_nodes(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].roles.is_some() && self.latest.contains(self.nodes[i].id))
            .collect()
    }

    /// A random live member of the latest configuration, if any.
    fn random_live_node(&mut self) -> Option<usize> {
        let up = self.client_nodes();
        if up.is_empty() {
            return None;
        }
        Some(up[self.rng.between(0, up.len() as u64 - 1) as usize])
    }

    // ---- the lock service ------------------------------------------------------------------

    /// Lock client `k`'s next step: open a session, ask for lock `L` (asking again keeps
    /// the session alive while it waits in line), keep the session alive while holding,
    /// then release, or die holding the lock (a new incarnation starts over).
    fn lock_step(&mut self, k: usize) {
        let now_ms = self.now / 1000;
        let locker = &self.lockers[k];
        if locker.busy {
            return;
        }
        let command = match (locker.session, locker.holding) {
            (None, _) => LockCommand::OpenSession {
                ttl_ms: LOCK_TTL_MS,
                now_ms,
            },
            (Some(session), None) => LockCommand::Lock {
                name: "L".into(),
                session,
                now_ms,
            },
            (Some(session), Some(_)) if locker.hold_steps > 0 => LockCommand::KeepAlive { session, now_ms },
            (Some(session), Some(_)) => {
                if self.chance(250) {
                    // Dies holding the lock: its session must expire before anyone else gets it.
                    self.stats.lock_clients_died += 1;
                    let locker = &mut self.lockers[k];
                    locker.session = None;
                    locker.holding = None;
                    let at = self.now + self.rng.between(1, 5) * 10_000;
                    self.schedule(at, Event::LockStep { locker: k });
                    return;
                }
                LockCommand::Unlock {
                    name: "L".into(),
                    session,
                }
            }
        };
        let Some(i) = self.random_live_node() else {
            let at = self.now + self.cfg.tick_us;
            self.schedule(at, Event::LockStep { locker: k });
            return;
        };
        let locker = &mut self.lockers[k];
        locker.busy = true;
        locker.hold_steps = locker.hold_steps.saturating_sub(1);
        locker.seq += 1;
        let id = RequestId {
            client: locker.id,
            seq: locker.seq,
        };
        let command = Command {
            id,
            ack_below: locker.seq,
            payload: encode(&ServiceCommand::Lock(command)),
        };
        self.submit(i, Who::Lock(k), id, Ask::Propose(command));
    }

    /// Lock client `k`'s request was answered (`None`: it gave up on it).
    fn lock_answered(&mut self, k: usize, outcome: Option<Outcome<ServiceReply>>) {
        let locker = &mut self.lockers[k];
        locker.busy = false;
        match outcome {
            Some(Ok(ServiceReply::Lock(LockReply::SessionOpened { session, .. }))) => locker.session = Some(session),
            Some(Ok(ServiceReply::Lock(LockReply::Granted { token, .. }))) => {
                let session = locker.session.unwrap_or_default();
                if locker.holding.is_none() {
                    locker.holding = Some(token);
                    locker.hold_steps = 1 + self.rng.between(0, 4);
                    self.stats.lock_grants += 1;
                }
                // Fencing: a token names one grant, to one session.
                match self.tokens.insert(token, session) {
                    Some(other) if other != session => self.violated(format!(
                        "lock L granted with token {token} to session {other} and to session {session}"
                    )),
                    _ => {}
                }
            }
            Some(Ok(ServiceReply::Lock(LockReply::Released { .. } | LockReply::NotHolder { .. }))) => {
                locker.holding = None
            }
            // The session expired (its client was cut off too long), and its lock with it.
            Some(Ok(ServiceReply::Lock(LockReply::NoSession { .. }))) => {
                locker.session = None;
                locker.holding = None;
            }
            _ => {}
        }
        let at = self.now + self.rng.between(2, 8) * 10_000;
        self.schedule(at, Event::LockStep { locker: k });
    }

    /// `NodeHandle`'s clock loop: the leader proposes the application's clock command
    /// (log time moves only this way), `CLOCK_MARGIN_MS` behind its clock.
    fn clock(&mut self, i: usize) {
        let (id, inc) = (self.nodes[i].id, self.nodes[i].incarnation);
        let at = self.now + CLOCK_MS * 1000;
        self.schedule(at, Event::Clock { node: id, inc });
        // Only the leader, and one clock command at a time: `NodeHandle`'s loop awaits
        // each before it asks for the next.
        let waiting = self.nodes[i].pending.values().any(|p| p.who == Who::Clock);
        if self.nodes[i].leader != Some(id) || waiting {
            return;
        }
        let now_ms = (self.now / 1000).saturating_sub(CLOCK_MARGIN_MS);
        let Some(command) = self.nodes[i]
            .roles
            .as_ref()
            .and_then(|r| r.sm.app().clock_command(now_ms))
        else {
            return;
        };
        self.clock_seq += 1;
        let rid = RequestId {
            client: 3000 + id,
            seq: self.clock_seq,
        };
        let command = Command {
            id: rid,
            ack_below: self.clock_seq,
            payload: encode(&command),
        };
        self.submit(i, Who::Clock, rid, Ask::Propose(command));
    }

    // ---- membership changes ------------------------------------------------------------

    /// Node `i`'s state machine put `config` in force (`Write::Membership`): the check
    /// that it is the one configuration of its id, that it follows from the StopSign
    /// decided just before its first slot, and, if the node applied exactly the slots
    /// below that first slot, that its state there is every node's. Then it goes to the
    /// node's disk, the requests for a change this node took end if it moved past them,
    /// and joining members of a new latest configuration are told to migrate.
    fn membership_applied(
        &mut self,
        i: usize,
        config: Configuration,
        sm: Option<&StateMachine<Service>>,
    ) -> Result<(), String> {
        let id = self.nodes[i].id;
        self.checker.configuration_applied(id, &config)?;
        if config.id > 0 {
            let slot = config.start.checked_sub(1).ok_or_else(|| {
                format!("node {id} put {config} in force, which starts at slot 0 though it is not the first")
            })?;
            match self.stops.get(&slot) {
                Some(stop) if stop.prev + 1 == config.id && stop.members == config.members => {}
                Some(stop) => {
                    return Err(format!(
                        "node {id} put {config} in force, but the StopSign decided in slot {slot} ends configuration {} and names members {:?}",
                        stop.prev,
                        stop.members.keys().collect::<Vec<_>>()
                    ));
                }
                None => {
                    return Err(format!(
                        "node {id} put {config} in force, but no state machine applied a StopSign in slot {slot}"
                    ));
                }
            }
        }
        if let Some(sm) = sm
            && sm.next() == config.start
        {
            let bytes = sm
                .snapshot()
                .map_err(|e| format!("node {id}'s state machine cannot snapshot: {e}"))?;
            self.snapshot_check
                .state_at_configuration(id, config.id, config.start, &bytes)?;
        }
        let node = &mut self.nodes[i];
        if node.disk.membership.as_ref().is_none_or(|m| m.id < config.id) {
            node.disk.membership = Some(config.clone());
        }
        if node.config.as_ref().is_none_or(|m| m.id < config.id) {
            node.config = Some(config.clone());
        }
        self.changes_ended(i, &config);
        if config.id > self.latest.id {
            self.stats.reconfigurations += 1;
            self.latest = config.clone();
            self.history_configs.push(config.clone());
            for member in config.ids() {
                let j = self.idx(member);
                if self.nodes[j].roles.is_some() && self.behind(j) {
                    self.start_migrating(j);
                }
            }
        }
        Ok(())
    }

    /// The membership changes node `i` took that its configuration `config` moved past
    /// end: applied if `config` is the one they asked for, else another change came
    /// first (the node's gateway watches the configuration; the state machine answers
    /// only a refusal).
    fn changes_ended(&mut self, i: usize, config: &Configuration) {
        let ended: Vec<RequestId> = self.nodes[i]
            .pending
            .iter()
            .filter(|(_, p)| matches!(&p.ask, Ask::Stop(stop) if stop.prev < config.id))
            .map(|(id, _)| *id)
            .collect();
        for id in ended {
            let Some(p) = self.nodes[i].pending.remove(&id) else {
                continue;
            };
            match p.who {
                Who::Operator => {
                    if let Ask::Stop(stop) = &p.ask
                        && stop.prev + 1 == config.id
                        && stop.members == config.members
                    {
                        self.stats.stop_signs_applied += 1;
                    }
                }
                who => self.record_answer(i, who, id, None, Some(config.clone())),
            }
        }
    }

    /// Whether node `i` is a member of the latest configuration but holds none that
    /// counts it (it joins, or was removed and is added again): its learner must pull
    /// the state up to the StopSign.
    fn behind(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        self.latest.contains(n.id) && !n.config.as_ref().is_some_and(|c| c.contains(n.id))
    }

    /// Starts the chain of `Migrate` events of node `i`'s incarnation (one at a time).
    fn start_migrating(&mut self, i: usize) {
        if self.nodes[i].migrating {
            return;
        }
        self.nodes[i].migrating = true;
        let (node, inc) = (self.nodes[i].id, self.nodes[i].incarnation);
        let at = self.now + self.rng.between(self.migrate_min_us, self.migrate_max_us);
        self.schedule(at, Event::Migrate { node, inc });
    }

    /// Node `i`'s gateway sees the latest configuration count it while it holds none
    /// that does: its learner gets `Migrate` (the state below the configuration's first
    /// slot, from the StopSign's sources, else from the previous configuration's members
    /// that stay, else from all of them), and the gateway looks again later.
    fn migrate(&mut self, i: usize) {
        if !self.behind(i) {
            self.nodes[i].migrating = false;
            return;
        }
        let config = self.latest.clone();
        let sources = self.migration_sources(&config);
        self.stats.migrations += 1;
        self.local(
            i,
            Local::Msg(LocalMessage::Migrate {
                below: config.start,
                sources,
            }),
        );
        let (node, inc) = (self.nodes[i].id, self.nodes[i].incarnation);
        let at = self.now + MIGRATE_AGAIN_US;
        self.schedule(at, Event::Migrate { node, inc });
    }

    /// Whom a new member of `config` pulls the state up to its StopSign from.
    fn migration_sources(&self, config: &Configuration) -> Vec<NodeId> {
        let named = config
            .start
            .checked_sub(1)
            .and_then(|s| self.stops.get(&s))
            .map(|stop| stop.sources.clone())
            .unwrap_or_default();
        if !named.is_empty() {
            return named;
        }
        let prev = config
            .id
            .checked_sub(1)
            .and_then(|p| self.checker.configurations().get(&p))
            .map(Configuration::ids)
            .unwrap_or_default();
        let staying: Vec<NodeId> = prev.iter().copied().filter(|n| config.contains(*n)).collect();
        if staying.is_empty() { prev } else { staying }
    }

    /// The operator: now and then a membership change, drawn at random against the
    /// latest configuration (as `GET /v1/members` shows it), submitted through a live
    /// member like a command (`ProposeStop`, retried, given up after the request
    /// timeout). Mostly one change at a time; now and then a second one before the
    /// first is applied (both against the same configuration: at most one applies), or
    /// one against a configuration already gone (refused).
    fn operator(&mut self) {
        let (lo, hi) = (self.cfg.reconfigure_min_us, self.cfg.reconfigure_max_us);
        let at = self.now + self.rng.between(lo, hi);
        self.schedule(at, Event::Operator);
        let inflight = self
            .nodes
            .iter()
            .flat_map(|n| n.pending.values())
            .filter(|p| p.who == Who::Operator)
            .count();
        if inflight >= OPERATOR_MAX_INFLIGHT || (inflight > 0 && !self.chance(300)) {
            return;
        }
        let latest = self.latest.clone();
        let Some((members, sources)) = self.draw_change(&latest) else {
            return;
        };
        let prev = if latest.id > 0 && self.chance(80) {
            latest.id - 1
        } else {
            latest.id
        };
        let Some(i) = self.random_live_node() else {
            return;
        };
        self.operator_seq += 1;
        let id = RequestId {
            client: OPERATOR_CLIENT,
            seq: self.operator_seq,
        };
        let stop = StopSign {
            id,
            prev,
            members: members.into_iter().map(|n| (n, Member::default())).collect(),
            sources,
        };
        self.stats.stop_signs += 1;
        self.submit(i, Who::Operator, id, Ask::Stop(stop));
    }

    /// A random change of `config`'s members: add a node of the pool (now and then
    /// naming one or two members to pull from), remove a member (now and then the
    /// leader; never the last), replace one, grow to 5 members, shrink to 3. `None` if
    /// the draw changes nothing.
    fn draw_change(&mut self, config: &Configuration) -> Option<(BTreeSet<NodeId>, Vec<NodeId>)> {
        let mut members: BTreeSet<NodeId> = config.ids().into_iter().collect();
        let before = members.clone();
        let outside: Vec<NodeId> = self
            .nodes
            .iter()
            .map(|n| n.id)
            .filter(|n| !members.contains(n))
            .collect();
        let leader = self
            .nodes
            .iter()
            .find(|n| members.contains(&n.id) && n.roles.as_ref().is_some_and(|r| r.proposer.is_leading()))
            .map(|n| n.id);
        let pick = |w: &mut World, from: &[NodeId]| from[w.rng.between(0, from.len() as u64 - 1) as usize];
        let kind = self.rng.between(0, 99);
        let mut sources = Vec::new();
        if kind < 30 || (kind < 45 && members.len() < 2) {
            // Add one node.
            if outside.is_empty() {
                return None;
            }
            let new = pick(self, &outside);
            let named = self.rng.between(0, 2);
            let current: Vec<NodeId> = members.iter().copied().collect();
            for _ in 0..named {
                let s = pick(self, &current);
                if !sources.contains(&s) {
                    sources.push(s);
                }
            }
            sources.sort_unstable();
            members.insert(new);
        } else if kind < 55 {
            // Remove one: the leader now and then.
            let current: Vec<NodeId> = members.iter().copied().collect();
            let victim = match leader {
                Some(l) if self.chance(400) => l,
                _ => pick(self, &current),
            };
            members.remove(&victim);
        } else if kind < 75 {
            // Replace one by a node of the pool, in one StopSign.
            if outside.is_empty() {
                return None;
            }
            let current: Vec<NodeId> = members.iter().copied().collect();
            let victim = pick(self, &current);
            let new = pick(self, &outside);
            members.remove(&victim);
            members.insert(new);
        } else if kind < 87 {
            // Grow to 5 (or the whole pool).
            let mut outside = outside;
            while members.len() < 5 && !outside.is_empty() {
                let k = self.rng.between(0, outside.len() as u64 - 1) as usize;
                members.insert(outside.swap_remove(k));
            }
        } else {
            // Shrink to 3.
            while members.len() > 3 {
                let current: Vec<NodeId> = members.iter().copied().collect();
                let victim = pick(self, &current);
                members.remove(&victim);
            }
        }
        if members.is_empty() || members == before {
            return None;
        }
        Some((members, sources))
    }

    /// Sends `Propose` (a command) or `ReadIndex` (a read) to the leader this node's
    /// elector names, if it names one (`NodeHandle::ask_leader`).
    fn ask_leader(&mut self, i: usize, id: RequestId) {
        let (now, leader) = (self.now, self.nodes[i].leader);
        let Some(p) = self.nodes[i].pending.get_mut(&id) else {
            return;
        };
        p.asked_at = now;
        let Some(leader) = leader else {
            return;
        };
        let msg = match &p.ask {
            Ask::Propose(command) => ProposerMessage::Propose {
                command: command.clone(),
            },
            Ask::Read { .. } => ProposerMessage::ReadIndex { id },
            Ask::Stop(stop) => ProposerMessage::ProposeStop { stop: stop.clone() },
        };
        self.send(i, leader, PeerMessage::Proposer(msg));
    }

    /// The node asked refused read `id` (it does not lead): ask again at once, but no
    /// sooner than a tick after the last ask (`NodeHandle::ask_leader`).
    fn read_refused(&mut self, i: usize, id: RequestId) {
        let (now, node, inc) = (self.now, self.nodes[i].id, self.nodes[i].incarnation);
        let Some(p) = self.nodes[i].pending.get_mut(&id) else {
            return;
        };
        let at = p.asked_at + self.cfg.tick_us;
        if at <= now {
            self.ask_leader(i, id);
        } else if !p.ask_again {
            p.ask_again = true;
            self.schedule(at, Event::AskAgain { node, inc, id });
        }
    }

    /// The ask a refusal scheduled, unless the leader was asked since.
    fn ask_again(&mut self, i: usize, id: RequestId) {
        let (now, tick) = (self.now, self.cfg.tick_us);
        let Some(p) = self.nodes[i].pending.get_mut(&id) else {
            return;
        };
        p.ask_again = false;
        if p.asked_at + tick <= now {
            self.ask_leader(i, id);
        }
    }

    fn retry(&mut self, i: usize, id: RequestId) {
        let Some(p) = self.nodes[i].pending.get(&id) else {
            return;
        };
        if self.now >= p.deadline {
            let who = p.who;
            self.nodes[i].pending.remove(&id);
            if let Err(e) = self.run_sm(i, StateMachineInput::Unregister(id)) {
                self.violated(e);
            }
            self.gave_up(i, id, who);
            return;
        }
        self.ask_leader(i, id);
        let (node, inc) = (self.nodes[i].id, self.nodes[i].incarnation);
        let at = self.now + self.cfg.retry_us;
        self.schedule(at, Event::Retry { node, inc, id });
    }

    /// Node `i`'s state machine answered request `id` (`None`: with nothing a client of
    /// the service understands).
    fn answered(&mut self, i: usize, id: RequestId, outcome: Option<Outcome<ServiceReply>>) {
        let Some(p) = self.nodes[i].pending.remove(&id) else {
            return;
        };
        // A StopSign is answered only with a refusal: success shows as the node's
        // configuration moving on.
        if let (Ask::Stop(stop), Some(outcome)) = (&p.ask, &outcome)
            && !matches!(outcome, Err(e) if e.starts_with("refused:"))
        {
            let node = self.nodes[i].id;
            self.violated(format!(
                "node {node} answered the StopSign request {:?} (against configuration {}) with {outcome:?}: a StopSign is answered only when refused (`refused: ...`)",
                stop.id, stop.prev
            ));
        }
        match p.who {
            Who::Kv(client) => {
                if matches!(p.ask, Ask::Read { .. }) {
                    self.stats.read_index_reads += 1;
                }
                let output = outcome.map_or(OpOutput::Unknown, kv_output);
                self.complete(client, output);
            }
            Who::Lock(locker) => self.lock_answered(locker, outcome),
            Who::Clock => {
                if let Some(Ok(ServiceReply::Lock(LockReply::Ticked { expired }))) = &outcome {
                    self.stats.sessions_expired += expired.len() as u64;
                }
                self.record_answer(i, p.who, id, outcome, None);
            }
            Who::Script(_) => self.record_answer(i, p.who, id, outcome, None),
            Who::Operator => {
                if matches!(&outcome, Some(Err(e)) if e.starts_with("refused:")) {
                    self.stats.stop_signs_refused += 1;
                }
            }
        }
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

    /// Every state machine must give request `id` the same answer, however often it was
    /// decided (in two slots, around a StopSign, in two configurations): the client
    /// table answers a duplicate with the first answer, so two different ones mean the
    /// command was applied twice. Reads by read index are answered from the node's own
    /// state, not through the log, and are left out; so are StopSigns, which take no
    /// entry in the client table: a copy decided again is refused naming the
    /// configuration in force then (one StopSign applies at most once since
    /// configurations only move on, which the configuration checks hold).
    fn same_answer(&mut self, i: usize, id: RequestId, outcome: &Outcome<ServiceReply>) -> Result<(), String> {
        if self.stop_requests.contains(&id) {
            return Ok(());
        }
        if matches!(
            self.nodes[i].pending.get(&id),
            Some(Pending {
                ask: Ask::Read { .. },
                ..
            })
        ) {
            return Ok(());
        }
        let bytes = codec::encode(outcome).map_err(|e| format!("an answer does not encode: {e}"))?;
        let crc = crc32fast::hash(&bytes);
        match self.outcomes.insert(id, crc) {
            Some(before) if before != crc => Err(format!(
                "node {} answered request {id:?} with {outcome:?}, but it was answered differently before (applied twice?)",
                self.nodes[i].id
            )),
            _ => Ok(()),
        }
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

/// The world as the host of one role of node `i`: what the driver carries out lands on
/// the simulated disk and network.
struct SimHost<'a> {
    w: &'a mut World,
    i: usize,
    role: SimRole,
    /// The state machine, to take a snapshot of (its host only).
    sm: Option<&'a StateMachine<Service>>,
}

impl<'a> SimHost<'a> {
    fn new(w: &'a mut World, i: usize, role: SimRole) -> Self {
        SimHost { w, i, role, sm: None }
    }

    /// How long a sync takes.
    fn sync_latency(&mut self) -> u64 {
        let f = &self.w.cfg.faults;
        let (lo, hi) = (f.disk_min_us, f.disk_max_us);
        self.w.rng.between(lo, hi)
    }

    fn schedule_sync(&mut self, count: usize) {
        let (node, inc) = (self.w.nodes[self.i].id, self.w.nodes[self.i].incarnation);
        let at = self.w.now + self.sync_latency();
        let role = self.role;
        self.w.schedule(at, Event::Synced { node, inc, role, count });
    }
}

/// The answers a driver's host hands clients: the service's, or none.
trait SimReply: Sized {
    fn service(outcome: Outcome<Self>) -> Option<Outcome<ServiceReply>>;
}

impl SimReply for () {
    fn service(_: Outcome<()>) -> Option<Outcome<ServiceReply>> {
        None
    }
}

impl SimReply for ServiceReply {
    fn service(outcome: Outcome<ServiceReply>) -> Option<Outcome<ServiceReply>> {
        Some(outcome)
    }
}

impl<R: SimReply> Host<R> for SimHost<'_> {
    fn append(&mut self, write: Write) -> CrateResult<()> {
        let id = self.w.nodes[self.i].id;
        match (self.role, write) {
            (SimRole::Acceptor, Write::Acceptor(w)) => {
                let disk = &mut self.w.nodes[self.i].disk;
                for (slot, ballot, value) in &w.accepted {
                    disk.written.insert((*slot, *ballot), value.clone());
                }
                disk.unsynced_acceptor.push(w);
            }
            (SimRole::Elector, Write::Ballot(b)) => self.w.nodes[self.i].disk.unsynced_ballots.push(b),
            (SimRole::Acceptor, Write::Compact { below }) => {
                let durable = self.w.nodes[self.i].disk.snapshot_at;
                if let Err(e) = self.w.snapshot_check.compacted(id, below, durable) {
                    self.w.violated(e);
                }
                let disk = &mut self.w.nodes[self.i].disk;
                let waits = disk.unsynced_acceptor.len();
                disk.unsynced_compactions.push((waits, below));
            }
            (SimRole::Learner, Write::Compact { below }) => {
                let durable = self.w.nodes[self.i].disk.snapshot_at;
                if let Err(e) = self.w.snapshot_check.compacted(id, below, durable) {
                    self.w.violated(e);
                }
                let disk = &mut self.w.nodes[self.i].disk;
                disk.log = disk.log.split_off(&below);
            }
            (
                SimRole::Learner,
                Write::SnapshotChunk {
                    offset, data, fresh, ..
                },
            ) => {
                let incoming = &mut self.w.nodes[self.i].disk.incoming;
                if fresh {
                    incoming.clear();
                }
                let (start, end) = (offset as usize, offset as usize + data.len());
                if incoming.len() < end {
                    incoming.resize(end, 0);
                }
                incoming[start..end].copy_from_slice(&data);
                self.w.stats.snapshot_chunks += 1;
            }
            (SimRole::Learner, Write::SnapshotReceived { at }) => {
                let bytes = std::mem::take(&mut self.w.nodes[self.i].disk.incoming);
                if let Err(e) = self.w.snapshot_check.snapshot_received(id, at, &bytes) {
                    self.w.violated(e);
                }
                self.w.nodes[self.i].disk.received = Some((at, bytes));
            }
            (SimRole::StateMachine, Write::InstallSnapshot { at }) => {
                let (node, inc) = (id, self.w.nodes[self.i].incarnation);
                let at_us = self.w.now + self.sync_latency();
                self.w.schedule(at_us, Event::InstallDone { node, inc, at });
            }
            (SimRole::Learner, Write::Decided(values)) => {
                if let Err(e) = self.w.checker.learned(id, &values) {
                    self.w.violated(e);
                }
                let disk = &mut self.w.nodes[self.i].disk;
                for (slot, value) in values {
                    disk.log.insert(slot, value);
                }
            }
            (SimRole::StateMachine, Write::Membership(config)) => {
                if let Err(e) = self.w.membership_applied(self.i, config, self.sm) {
                    self.w.violated(e);
                }
            }
            (SimRole::StateMachine, Write::Snapshot { at }) => {
                let sm = self
                    .sm
                    .ok_or_else(|| Error::Storage("no state machine to snapshot".into()))?;
                let bytes = sm.snapshot()?;
                let (node, inc) = (id, self.w.nodes[self.i].incarnation);
                let at_us = self.w.now + self.sync_latency();
                self.w.schedule(at_us, Event::SnapshotDone { node, inc, at, bytes });
            }
            (role, write) => return Err(Error::Storage(format!("the {role:?} cannot write {write:?}"))),
        }
        Ok(())
    }

    fn start_sync(&mut self) -> CrateResult<Sync> {
        let disk = &self.w.nodes[self.i].disk;
        let count = match self.role {
            SimRole::Acceptor => disk.unsynced_acceptor.len(),
            SimRole::Elector => disk.unsynced_ballots.len(),
            _ => 1,
        };
        self.schedule_sync(count);
        Ok(Sync::Started)
    }

    fn send(&mut self, to: NodeId, msg: PeerMessage) {
        let id = self.w.nodes[self.i].id;
        match &msg {
            // What an acceptor reveals must be on its disk by now.
            PeerMessage::AcceptorReply(AcceptorReply::Promise {
                ballot, decided_below, ..
            }) => {
                self.w.checker.promise_revealed(id, *ballot);
                if let Err(e) = self.w.checker.floor_revealed(id, *decided_below) {
                    self.w.violated(e);
                }
            }
            PeerMessage::AcceptorReply(AcceptorReply::Accepted {
                ballot,
                first_slot,
                count,
                ..
            }) => {
                let disk = &self.w.nodes[self.i].disk;
                let (written, durable) = (&disk.written, &disk.accepted);
                if let Err(e) = self
                    .w
                    .checker
                    .accepted_revealed(id, written, durable, *first_slot, *count, *ballot)
                {
                    self.w.violated(e);
                }
            }
            _ => {}
        }
        self.w.send(self.i, to, msg);
    }

    fn local(&mut self, msg: LocalMessage) {
        self.w.local(self.i, Local::Msg(msg));
    }

    fn leader(&mut self, leader: Option<NodeId>) {
        self.w.nodes[self.i].leader = leader;
        // `submit` proposes again as soon as the leader changes.
        if leader.is_some() {
            let ids: Vec<RequestId> = self.w.nodes[self.i].pending.keys().copied().collect();
            for id in ids {
                self.w.ask_leader(self.i, id);
            }
        }
    }

    fn read_decided(&mut self, slot: Slot) -> CrateResult<Option<Value>> {
        Ok(self.w.nodes[self.i].disk.log.get(&slot).cloned())
    }

    fn read_snapshot(&mut self, _at: Slot, offset: u64, max_bytes: usize) -> CrateResult<Option<SnapshotPiece>> {
        let disk = &self.w.nodes[self.i].disk;
        let Some(bytes) = &disk.snapshot else { return Ok(None) };
        let start = (offset as usize).min(bytes.len());
        let end = start.saturating_add(max_bytes).min(bytes.len());
        Ok(Some(SnapshotPiece {
            at: disk.snapshot_at,
            total: bytes.len() as u64,
            file_crc: crc32fast::hash(bytes),
            data: bytes[start..end].to_vec(),
        }))
    }

    fn answer(&mut self, answers: Vec<(RequestId, Outcome<R>)>) {
        for (id, outcome) in answers {
            let outcome = R::service(outcome);
            if let Some(outcome) = &outcome
                && let Err(e) = self.w.same_answer(self.i, id, outcome)
            {
                self.w.violated(e);
            }
            self.w.answered(self.i, id, outcome);
        }
    }

    fn retry_read(&mut self, id: RequestId) {
        self.w.read_refused(self.i, id);
    }

    fn fail_stop(&mut self, error: &Error) {
        let id = self.w.nodes[self.i].id;
        self.w
            .violated(format!("the {:?} of node {id} failed: {error}", self.role));
    }
}

impl AcceptorHost for SimHost<'_> {
    fn read_accepted(&mut self, slot: Slot) -> CrateResult<Value> {
        let id = self.w.nodes[self.i].id;
        let disk = &self.w.nodes[self.i].disk;
        disk.accepted
            .get(&slot)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| Error::Storage(format!("acceptor {id} evicted slot {slot}, which is not on its disk")))
    }
}

/// A command as the log carries it.
fn encode(command: &ServiceCommand) -> Vec<u8> {
    codec::encode(command).expect("a service command always encodes")
}

/// What a client is told, from its state machine's answer (applied or read).
fn kv_output(outcome: Outcome<ServiceReply>) -> OpOutput {
    let outcome = match outcome {
        Ok(ServiceReply::Kv(reply)) => Ok(reply),
        Ok(other) => Err(format!("not a key-value reply: {other:?}")),
        Err(e) => Err(e),
    };
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
        PeerMessage::AcceptorRequest(AcceptorRequest::Pull { .. }) => "Pull",
        PeerMessage::AcceptorRequest(AcceptorRequest::Accept { .. }) => "Accept",
        PeerMessage::AcceptorReply(AcceptorReply::Promise { .. }) => "Promise",
        PeerMessage::AcceptorReply(AcceptorReply::Pulled { .. }) => "Pulled",
        PeerMessage::AcceptorReply(AcceptorReply::Accepted { .. }) => "Accepted",
        PeerMessage::AcceptorReply(AcceptorReply::Rejected { .. }) => "Rejected",
        PeerMessage::Learner(LearnerMessage::Decide { .. }) => "Decide",
        PeerMessage::Learner(LearnerMessage::Fetch { .. }) => "Fetch",
        PeerMessage::Learner(LearnerMessage::Fetched { .. }) => "Fetched",
        PeerMessage::Learner(LearnerMessage::SnapshotOffer { .. }) => "SnapshotOffer",
        PeerMessage::Learner(LearnerMessage::SnapshotRead { .. }) => "SnapshotRead",
        PeerMessage::Learner(LearnerMessage::SnapshotChunk { .. }) => "SnapshotChunk",
        PeerMessage::Elector(ElectorMessage::Heartbeat { .. }) => "Heartbeat",
        PeerMessage::Elector(ElectorMessage::HeartbeatReply { .. }) => "HeartbeatReply",
        PeerMessage::Elector(ElectorMessage::PreVote { .. }) => "PreVote",
        PeerMessage::Elector(ElectorMessage::PreVoteReply { .. }) => "PreVoteReply",
        PeerMessage::Proposer(ProposerMessage::Propose { .. }) => "Propose",
        PeerMessage::Proposer(ProposerMessage::ReadIndex { .. }) => "ReadIndex",
        PeerMessage::Proposer(ProposerMessage::ProposeStop { .. }) => "ProposeStop",
        PeerMessage::StateMachine(_) => "ReadIndexReply",
        PeerMessage::Raft(_) => "Raft",
    }
}

mod scripted;
pub(crate) use scripted::*;

#[cfg(test)]
mod tests {
    use super::*;

    /// A booted world of three nodes, calm, no clients.
    fn calm_world() -> World {
        let mut cfg = SimConfig::from_seed(7).with_nodes(3);
        cfg.faults = crate::harness::sim::Faults::none();
        cfg.clients = 0;
        cfg.lock_clients = 0;
        let mut w = World::new(&cfg);
        w.boot().expect("boots");
        w
    }

    #[test]
    fn sim_world_flags_an_elector_that_speaks_after_its_node_was_removed() {
        let mut w = calm_world();
        // As if node 3's roles had been told of a configuration without it (its elector
        // was not: it still campaigns, which is what the check is for).
        w.nodes[2].roles_config = Some(Configuration {
            id: 1,
            start: 0,
            members: Configuration::of_ids(&[1, 2]).members,
        });
        let limit = w.elector_cfg.election_max_ticks + 1;
        let err = (0..limit)
            .find_map(|_| w.run_elector(2, ElectorInput::Tick).err())
            .expect("its election timer runs out and it asks for pre-votes");
        assert!(err.contains("node 3 was removed"), "{err}");
        // Node 1, a member, may campaign.
        assert!((0..limit).all(|_| w.run_elector(0, ElectorInput::Tick).is_ok()));
    }

    #[test]
    fn sim_world_flags_a_request_answered_two_ways() {
        let mut w = calm_world();
        let id = RequestId { client: 1, seq: 1 };
        let reply =
            |ok: bool| -> Outcome<ServiceReply> { if ok { Err("a".to_string()) } else { Err("b".to_string()) } };
        w.same_answer(0, id, &reply(true)).expect("the first answer");
        w.same_answer(1, id, &reply(true)).expect("the same answer again");
        let err = w.same_answer(2, id, &reply(false)).expect_err("another answer");
        assert!(err.contains("answered differently"), "{err}");
        // A StopSign's request may be refused twice, naming two configurations.
        let stop = RequestId { client: 2, seq: 1 };
        w.stop_requests.insert(stop);
        w.same_answer(0, stop, &reply(true)).expect("refused");
        w.same_answer(0, stop, &reply(false)).expect("refused again, otherwise");
    }

    #[test]
    fn sim_world_flags_a_configuration_no_stop_sign_made() {
        let mut w = calm_world();
        let members = Configuration::of_ids(&[1, 2]).members;
        let made_up = Configuration {
            id: 1,
            start: 5,
            members: members.clone(),
        };
        let err = w
            .membership_applied(0, made_up.clone(), None)
            .expect_err("no StopSign in slot 4");
        assert!(err.contains("no state machine applied a StopSign in slot 4"), "{err}");
        // With the StopSign that makes it, it is fine; another one under its id is not.
        let stop = StopSign {
            id: RequestId { client: 9, seq: 1 },
            prev: 0,
            members,
            sources: Vec::new(),
        };
        w.stops.insert(4, stop.clone());
        w.membership_applied(0, made_up, None)
            .expect("follows from the StopSign in slot 4");
        let other = Configuration {
            id: 1,
            start: 5,
            members: Configuration::of_ids(&[1, 3]).members,
        };
        let err = w
            .membership_applied(1, other, None)
            .expect_err("two configurations numbered 1");
        assert!(err.contains("under the same id"), "{err}");
        // Node 1 holds it now, on its disk too; node 3 joins nothing.
        assert_eq!(w.nodes[0].disk.membership.as_ref().map(|c| c.id), Some(1));
        assert!(!w.behind(2), "node 3 is no member of configuration 1");
    }
}
