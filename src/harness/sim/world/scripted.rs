//! Scripted control of the simulated world, for the scenario scripts
//! (`super::super::script`).

use super::*;
use crate::app::lock_service::LockInfo;
// ---- scripted control (scenario scripts) ----------------------------------------------
//
// Everything below drives the world above from a script (`super::script`) instead of
// from random clients and random chaos. It adds no behaviour to the nodes: it reuses
// `World::new`, `boot`, `schedule`, `step` (and with it the wiring and the checker),
// `run_elector` (for `campaign`), `crash`, `start_node`, the partition sides, and the
// clients' machinery (`Client`, `Pending`, `ask_leader`, the `Retry` events, `complete`
// and the history). Above, it only sets `snapshot_every` and turns on `answered` (how
// the clock loop's and the lock clients' requests ended, `Who::Script`). What it changes
// is only the world around the nodes:
//
// - The network is fault-free and in order: every message takes `SCRIPT_DELAY_US`, none
//   is dropped, duplicated or reordered unless a script rule says so.
// - Time moves in whole ticks, and only when the script says `tick`: at each tick every
//   live node ticks (its elector, proposer and learner, as `Event::Tick` does). The
//   nodes' own periodic `Tick` events, random client invocations, the random operator's
//   membership changes and chaos are removed from the queue unrun. Nothing else is: a node's client retries (`Retry`) and
//   delayed messages still fire at their time, which a `tick` reaches.
// - `deliver` runs every event due before the next tick (messages, mailboxes, retries):
//   with `SCRIPT_DELAY_US` far below a tick, that is every message in flight and
//   every message they cause, until the network is quiet.
// - Script rules (`drop`, `hold`, slow acceptors) act when a message arrives. A message
//   sent across a partition is lost inside `send`, before it is an event, so the
//   trace does not show it; one that arrives across a partition shows as lost.
// - The nodes' clock loops (`Event::Clock`, every `CLOCK_MS`), snapshots becoming
//   durable (`Event::SnapshotDone`) and joining nodes' gateways telling their learners
//   to migrate (`Event::Migrate`, a hop after the configuration that counts them) run as
//   they do in a random run; `hold snapshot N`
//   keeps node N's `SnapshotDone` back until `release snapshot N`.

/// One tick of the scripted world's clocks.
const SCRIPT_TICK_US: u64 = 10_000;
/// The scripted network's one delay: a hundred hops fit in one tick.
const SCRIPT_DELAY_US: u64 = 100;
/// Every sync of a node's disk takes this long: less than a message, so a leader's own
/// acceptor answers before the others' Accepts arrive.
const SCRIPT_DISK_US: u64 = 20;

/// The knobs a script's `start` line may turn.
#[derive(Clone, Debug)]
pub(crate) struct ScriptSetup {
    pub(crate) nodes: usize,
    pub(crate) seed: u64,
    pub(crate) pre_vote: bool,
    pub(crate) thrifty: bool,
    pub(crate) max_batch: usize,
    /// The state machines snapshot every this many slots (`None`: the simulator's default).
    pub(crate) snapshot_every: Option<u64>,
    pub(crate) bugs: PlantedBugs,
    /// Nodes in the world (`None`: `nodes`): those above `nodes` start joining.
    pub(crate) pool: Option<usize>,
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
    /// Only messages that carry this slot (an `Accept`, `Accepted`, `Pull`, `Pulled`,
    /// `Decide` or `Fetched` covering it).
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
pub(crate) const LOCAL_KINDS: [&str; 7] = [
    "Lead",
    "StepDown",
    "Elected",
    "Preempted",
    "PrepareTimedOut",
    "CatchUp",
    "Reconfigure",
];

/// The message kinds a script may name, as [`brief`] names them.
pub(crate) const MESSAGE_KINDS: [&str; 21] = [
    "Prepare",
    "Pull",
    "Accept",
    "Promise",
    "Pulled",
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
    "ProposeStop",
    "SnapshotOffer",
    "SnapshotRead",
    "SnapshotChunk",
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

/// A lock-service request a script makes (the node's clock is added when it is made).
#[derive(Clone, Debug)]
pub(crate) enum LockOp {
    Open { ttl_ms: u64 },
    Close { session: SessionId },
    KeepAlive { session: SessionId },
    Lock { session: SessionId, name: String },
    Unlock { session: SessionId, name: String },
    Cancel { session: SessionId, name: String },
}

impl LockOp {
    /// The command, made at a node whose clock reads `now_ms`.
    fn command(&self, now_ms: u64) -> LockCommand {
        match self.clone() {
            LockOp::Open { ttl_ms } => LockCommand::OpenSession { ttl_ms, now_ms },
            LockOp::Close { session } => LockCommand::CloseSession { session },
            LockOp::KeepAlive { session } => LockCommand::KeepAlive { session, now_ms },
            LockOp::Lock { session, name } => LockCommand::Lock { name, session, now_ms },
            LockOp::Unlock { session, name } => LockCommand::Unlock { name, session },
            LockOp::Cancel { session, name } => LockCommand::Cancel { name, session },
        }
    }
}

/// What one scripted client asked, to ask it again (`resubmit`).
struct ScriptRequest {
    asked: Asked,
    ask: ScriptAsk,
}

/// What a scripted client asked, for the history (key-value) or its answer line (locks,
/// membership changes).
#[derive(Clone)]
enum Asked {
    Kv(OpInput),
    Lock(String),
    Stop(String),
}

#[derive(Clone)]
enum ScriptAsk {
    Propose(Command),
    Read(ServiceCommand),
    Stop(StopSign),
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
    /// Nodes whose snapshots are held back before they are durable (`hold snapshot N`).
    snapshot_holds: BTreeSet<NodeId>,
    /// Snapshots taken but held back: (node, incarnation, slot, bytes).
    held_snapshots: Vec<(NodeId, u64, Slot, Vec<u8>)>,
    /// The clock commands proposed and not yet answered, as their lines name them.
    clock_proposed: BTreeMap<RequestId, String>,
    /// Lock clients waiting for an answer.
    waiting: BTreeSet<u64>,
    requests: Vec<ScriptRequest>,
    /// History indexes of operations not yet answered.
    open: Vec<usize>,
    /// Configurations that came into force and were printed.
    configs_shown: usize,
    out: Vec<String>,
    stopped: bool,
}

impl World {
    /// A world for scenario scripts: `setup.nodes` nodes booted at time 0, a perfect
    /// in-order network, no clients and no chaos of its own.
    pub(crate) fn scripted(setup: &ScriptSetup) -> Scripted {
        let mut cfg = SimConfig::from_seed(setup.seed).with_nodes(setup.nodes);
        cfg.pool = setup.pool.unwrap_or(setup.nodes).max(setup.nodes);
        let mut faults = crate::harness::sim::Faults::none();
        faults.delay_min_us = SCRIPT_DELAY_US;
        faults.delay_max_us = SCRIPT_DELAY_US;
        faults.disk_min_us = SCRIPT_DISK_US;
        faults.disk_max_us = SCRIPT_DISK_US;
        cfg.faults = faults;
        cfg.duration_us = u64::MAX;
        cfg.tick_us = SCRIPT_TICK_US;
        cfg.clients = 0;
        cfg.lock_clients = 0;
        cfg.bugs = setup.bugs;
        let mut w = World::new(&cfg);
        w.snapshot_every = setup.snapshot_every.unwrap_or(w.snapshot_every);
        w.answered = Some(Vec::new());
        w.elector_cfg.pre_vote = setup.pre_vote;
        w.proposer_cfg.thrifty = setup.thrifty;
        w.proposer_cfg.max_batch = setup.max_batch;
        // A joining node's gateway tells its learner to migrate a hop after the
        // configuration that counts it came into force.
        w.migrate_min_us = SCRIPT_DELAY_US;
        w.migrate_max_us = SCRIPT_DELAY_US;
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
            snapshot_holds: BTreeSet::new(),
            held_snapshots: Vec::new(),
            clock_proposed: BTreeMap::new(),
            waiting: BTreeSet::new(),
            requests: Vec::new(),
            open: Vec::new(),
            configs_shown: 1,
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
        crate::harness::sim::quiet_panics_in_sim();
        crate::harness::sim::IN_SIM.with(|c| c.set(true));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut self.w)));
        crate::harness::sim::IN_SIM.with(|c| c.set(false));
        let message = match result {
            Ok(Ok(())) => return,
            Ok(Err(message)) => message,
            Err(p) => format!("a core panicked: {}", crate::harness::sim::panic_message(p.as_ref())),
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
                Event::Tick { .. } | Event::Chaos | Event::Restart { .. } | Event::Heal | Event::Operator => {
                    Fate::Discard
                }
                Event::Net { from, to, msg } => self.fate(seq, *from, *to, msg),
                Event::Invoke { .. } | Event::LockStep { .. } => Fate::Discard,
                Event::SnapshotDone { node, inc, .. }
                    if self.snapshot_holds.contains(node) && self.current(*node, *inc) =>
                {
                    Fate::Hold
                }
                Event::Local { .. }
                | Event::Retry { .. }
                | Event::AskAgain { .. }
                | Event::Synced { .. }
                | Event::SnapshotDone { .. }
                | Event::InstallDone { .. }
                | Event::Migrate { .. }
                | Event::Clock { .. } => Fate::Run,
            };
            match (fate, ev) {
                (Fate::Discard, _) => {}
                (Fate::Drop, Event::Net { from, to, msg }) => self.trace_line(from, to, &msg, " (dropped)"),
                (Fate::Hold, Event::Net { from, to, msg }) => {
                    self.trace_line(from, to, &msg, " (held)");
                    self.held.push((from, to, msg));
                }
                (Fate::Hold, Event::SnapshotDone { node, inc, at, bytes }) => {
                    self.out
                        .push(format!("{node} snapshot below slot {at} taken, held: not durable yet"));
                    self.held_snapshots.push((node, inc, at, bytes));
                }
                (Fate::Delay(us), ev) => {
                    self.w.schedule(at + us, ev);
                    self.delayed.insert(self.w.seq);
                }
                (_, ev) => {
                    self.trace_event(&ev);
                    let clock = match &ev {
                        Event::Clock { node, .. } => Some(*node),
                        _ => None,
                    };
                    self.w.queue.insert((at, seq), ev);
                    self.guard(|w| w.step().map(|_| ()).map_err(|v| v.message));
                    if let Some(node) = clock {
                        self.report_clock(node);
                    }
                    self.report_configurations();
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
            // Between the elector and the proposer of one node: who leads; and the
            // proposer telling its learner to catch up below a floor.
            Event::Local { node, inc, msg } if self.w.nodes[self.w.idx(*node)].incarnation == *inc => {
                let (kind, line) = match msg {
                    Local::Msg(LocalMessage::Order(ElectorOrder::Lead(b))) => {
                        ("Lead", format!("{node} elector->proposer Lead ballot={b}"))
                    }
                    Local::Msg(LocalMessage::Order(ElectorOrder::StepDown)) => {
                        ("StepDown", format!("{node} elector->proposer StepDown"))
                    }
                    Local::Msg(LocalMessage::Event(ProposerEvent::Elected(b))) => {
                        ("Elected", format!("{node} proposer->elector Elected ballot={b}"))
                    }
                    Local::Msg(LocalMessage::Event(ProposerEvent::Preempted(b))) => {
                        ("Preempted", format!("{node} proposer->elector Preempted by={b}"))
                    }
                    Local::Msg(LocalMessage::Event(ProposerEvent::PrepareTimedOut(b))) => (
                        "PrepareTimedOut",
                        format!("{node} proposer->elector PrepareTimedOut ballot={b}"),
                    ),
                    Local::Msg(LocalMessage::CatchUp { below, from }) => (
                        "CatchUp",
                        format!("{node} proposer->learner CatchUp below={below} from={from}"),
                    ),
                    Local::Msg(LocalMessage::Reconfigure(config)) => (
                        "Reconfigure",
                        format!("{node} state_machine->roles Reconfigure {config}"),
                    ),
                    // Not a message between roles: printed with the trace off too.
                    Local::Msg(LocalMessage::Migrate { below, sources }) => {
                        self.out.push(format!(
                            "{node} joins: its learner migrates below={below} from {sources:?}"
                        ));
                        return;
                    }
                    _ => return,
                };
                if self.trace && !self.trace_skip.iter().any(|k| k == kind) {
                    self.out.push(line);
                }
            }
            // Not a message: printed with the trace off too.
            Event::SnapshotDone { node, inc, at, .. } if self.current(*node, *inc) => {
                self.out.push(format!("{node} snapshot durable below slot {at}"));
            }
            _ => {}
        }
    }

    /// Whether `inc` is the running incarnation of `node`.
    fn current(&self, node: NodeId, inc: u64) -> bool {
        let i = self.w.idx(node);
        self.up(i) && self.w.nodes[i].incarnation == inc
    }

    /// Prints the clock command node `node`'s clock loop just proposed, if it did.
    fn report_clock(&mut self, node: NodeId) {
        let i = self.w.idx(node);
        let mut new = Vec::new();
        for (id, p) in &self.w.nodes[i].pending {
            if let (Who::Clock, Ask::Propose(c), false) = (p.who, &p.ask, self.clock_proposed.contains_key(id)) {
                new.push((*id, describe_command(&c.payload)));
            }
        }
        for (id, what) in new {
            self.out.push(format!("{node} clock {what}"));
            self.clock_proposed.insert(id, what);
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

    /// Prints the configurations that came into force since the last look.
    fn report_configurations(&mut self) {
        let all = self.w.configurations();
        for config in &all[self.configs_shown.min(all.len())..] {
            self.out.push(config.to_string());
        }
        self.configs_shown = all.len();
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
        let answered = self.w.answered.as_mut().map(std::mem::take).unwrap_or_default();
        for a in answered {
            let asked = match a.who {
                Who::Script(client) => {
                    self.waiting.remove(&client);
                    let request = &self.requests[(client - 1) as usize];
                    match (&request.asked, &request.ask) {
                        (Asked::Lock(what), _) => format!("client {client} at node {}: {what}", a.node),
                        (Asked::Stop(what), ScriptAsk::Stop(stop)) => {
                            let end = describe_change_end(stop, a.outcome, a.config);
                            self.out
                                .push(format!("client {client} at node {}: {what} -> {end}", a.node));
                            continue;
                        }
                        _ => continue,
                    }
                }
                Who::Clock => {
                    let what = self.clock_proposed.remove(&a.id).unwrap_or_default();
                    format!("{} clock {what}", a.node)
                }
                Who::Kv(_) | Who::Lock(_) | Who::Operator => continue,
            };
            let line = format!("{asked} -> {}", describe_lock_outcome(a.outcome));
            self.out.push(line);
        }
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
        self.new_request(i, Asked::Kv(input), ServiceCommand::Kv(command), by_read_index)
    }

    /// `session N open ttl=MS`, `lock N S NAME`, ...: a new client asks node N for
    /// `op`, made at N's clock; the answer prints when it comes.
    pub(crate) fn lock_request(&mut self, node: NodeId, op: &LockOp) -> Result<(), String> {
        let i = self.node_index(node)?;
        let command = op.command(self.w.now / 1000);
        let what = describe_lock(&command);
        self.new_request(i, Asked::Lock(what), ServiceCommand::Lock(command), false)
    }

    /// A new client (numbered in script order) and its one request, asked through node
    /// index `i`.
    fn new_request(
        &mut self,
        i: usize,
        asked: Asked,
        command: ServiceCommand,
        by_read_index: bool,
    ) -> Result<(), String> {
        let client = self.w.clients.len() as u64 + 1;
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
        self.requests.push(ScriptRequest { asked, ask });
        self.ask_through(i, client)
    }

    /// `reconfigure N members=A,B,.. [from=C,..] [prev=K]`: a new client asks node N to
    /// change the members to `members` (pulling from `from`), against configuration `K`
    /// (default: the latest one in force anywhere). It prints how it ended: the
    /// configuration it made (or another that came first), a refusal, or no answer.
    pub(crate) fn reconfigure(
        &mut self,
        node: NodeId,
        members: &[NodeId],
        sources: &[NodeId],
        prev: Option<ConfigId>,
    ) -> Result<(), String> {
        let i = self.node_index(node)?;
        for &m in members.iter().chain(sources) {
            self.node_index(m)?;
        }
        let client = self.w.clients.len() as u64 + 1;
        let id = RequestId { client, seq: 1 };
        let stop = StopSign {
            id,
            prev: prev.unwrap_or(self.w.latest.id),
            members: members.iter().map(|&n| (n, Member::default())).collect(),
            sources: sources.to_vec(),
        };
        let from = if sources.is_empty() {
            String::new()
        } else {
            format!(" from {sources:?}")
        };
        let what = format!(
            "reconfigure {:?}{from} (against configuration {})",
            stop.members.keys().collect::<Vec<_>>(),
            stop.prev
        );
        self.w.clients.push(Client {
            id: client,
            seq: 1,
            seen: BTreeMap::new(),
            op: None,
        });
        self.requests.push(ScriptRequest {
            asked: Asked::Stop(what),
            ask: ScriptAsk::Stop(stop),
        });
        self.ask_through(i, client)
    }

    /// `members`: a line per node: the configuration its state machine has in force (and
    /// whether it counts the node), or that it is joining; and the snapshot chunks its
    /// learner pulled from each source in migrations (this incarnation's).
    pub(crate) fn members(&mut self) {
        for n in &self.w.nodes {
            let down = if n.roles.is_some() { "" } else { " (down)" };
            let mut line = match &n.config {
                None => format!("node {}{down}: joining, no configuration yet", n.id),
                Some(c) if c.contains(n.id) => format!("node {}{down}: member of {c}", n.id),
                Some(c) => format!("node {}{down}: removed by {c}", n.id),
            };
            if let Some(r) = &n.roles
                && !r.learner.migration_chunks().is_empty()
            {
                let by: Vec<String> = r
                    .learner
                    .migration_chunks()
                    .iter()
                    .map(|(source, chunks)| format!("{chunks} from {source}"))
                    .collect();
                line += &format!("; migration chunks: {}", by.join(", "));
            }
            self.out.push(line);
        }
    }

    /// `resubmit C N`: client C sends its request again, with the same id, through node N
    /// (a client whose node went silent tries another).
    pub(crate) fn resubmit(&mut self, client: u64, node: NodeId) -> Result<(), String> {
        let i = self.node_index(node)?;
        if client == 0 || client as usize > self.requests.len() {
            return Err(format!("no client {client} yet"));
        }
        if self.w.clients[(client - 1) as usize].op.is_some() || self.waiting.contains(&client) {
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
        let ask = match req.ask.clone() {
            ScriptAsk::Propose(command) => Ask::Propose(command),
            ScriptAsk::Read(command) => Ask::Read { command },
            ScriptAsk::Stop(stop) => Ask::Stop(stop),
        };
        let rid = RequestId { client, seq: 1 };
        let who = match req.asked.clone() {
            Asked::Kv(input) => {
                let op = self.w.history.len();
                self.w.history.push(OpRecord {
                    client,
                    node,
                    input,
                    read_index,
                    invoked_us: self.w.now,
                    completed_us: None,
                    output: None,
                });
                self.w.clients[c].op = Some(op);
                self.open.push(op);
                Who::Kv(c)
            }
            Asked::Lock(_) | Asked::Stop(_) => {
                self.waiting.insert(client);
                Who::Script(client)
            }
        };
        if !self.up(i) {
            // As `NodeHandle::submit` on a stopped node: no answer.
            self.w.gave_up(i, rid, who);
            self.report_answers();
            return Ok(());
        }
        self.w.submit(i, who, rid, ask);
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
        let (lost, kept) = std::mem::take(&mut self.held_snapshots)
            .into_iter()
            .partition(|h| h.0 == node);
        self.held_snapshots = kept;
        for (_, _, at, _) in lost {
            self.out.push(format!(
                "node {node}'s snapshot below slot {at} is lost: it never became durable"
            ));
        }
        Ok(())
    }

    /// `restart N`: the node comes back from its disk; prints where its state machine
    /// starts and which slots of its log the learner hands it again.
    pub(crate) fn restart(&mut self, node: NodeId) -> Result<(), String> {
        let i = self.node_index(node)?;
        if self.up(i) {
            return Err(format!("node {node} is up"));
        }
        self.guard(|w| w.start_node(i));
        let n = &self.w.nodes[i];
        let Some(roles) = &n.roles else {
            return Ok(());
        };
        let from = match n.disk.snapshot {
            Some(_) => format!("from its snapshot below slot {}", roles.sm.next()),
            None => "empty (no snapshot)".to_string(),
        };
        let replayed = self.w.queue.values().filter_map(|ev| match ev {
            Event::Local {
                node: to,
                inc,
                msg: Local::Msg(LocalMessage::Apply(batch)),
            } if *to == node && *inc == n.incarnation => Some(batch.iter().map(|(slot, _)| *slot)),
            _ => None,
        });
        let replay = match slot_ranges(replayed.flatten()) {
            none if none == "none" => "nothing to replay".to_string(),
            slots => format!("replays log slots {slots}"),
        };
        let line = format!("node {node} restarts: state machine {from}, {replay}");
        self.out.push(line);
        Ok(())
    }

    /// `hold snapshot N`: node N's snapshots are taken but wait, not yet durable, for
    /// `release snapshot N`.
    pub(crate) fn hold_snapshots(&mut self, node: NodeId) -> Result<(), String> {
        self.node_index(node)?;
        self.snapshot_holds.insert(node);
        Ok(())
    }

    /// `release snapshot N`: node N's held snapshots go on to become durable (a crashed
    /// incarnation's are gone already), and the next ones are not held.
    pub(crate) fn release_snapshots(&mut self, node: NodeId) -> Result<(), String> {
        if !self.snapshot_holds.remove(&node) {
            return Err(format!("node {node}'s snapshots are not held"));
        }
        let (mine, others) = std::mem::take(&mut self.held_snapshots)
            .into_iter()
            .partition(|h| h.0 == node);
        self.held_snapshots = others;
        let at_us = self.w.now + SCRIPT_DISK_US;
        for (node, inc, at, bytes) in mine {
            self.w.schedule(at_us, Event::SnapshotDone { node, inc, at, bytes });
        }
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
        if let Some(roles) = &self.w.nodes[i].roles
            && roles.acceptor.floor() > 0
        {
            lines.push(format!("floor: slots below {} decided", roles.acceptor.floor()));
        }
        self.out.extend(lines);
        Ok(())
    }

    /// `disk N`: what node N would restart from: its snapshot, its decided log, its
    /// acceptor's promise and accepted slots, and a snapshot still on its way.
    pub(crate) fn disk(&mut self, node: NodeId) -> Result<(), String> {
        let i = self.node_index(node)?;
        let disk = &self.w.nodes[i].disk;
        let snapshot = match &disk.snapshot {
            None => "snapshot: none".to_string(),
            Some(bytes) => {
                let below = StateMachine::<Service>::restore(bytes)
                    .map_err(|e| format!("node {node}'s snapshot does not restore: {e}"))?
                    .next();
                format!("snapshot: below slot {below}, {} bytes", bytes.len())
            }
        };
        let mut lines = vec![
            snapshot,
            format!("decided log: slots {}", slot_ranges(disk.log.keys().copied())),
            format!(
                "acceptor: promised {}, accepted slots {}",
                disk.promised,
                slot_ranges(disk.accepted.keys().copied())
            ),
        ];
        for (_, _, at, _) in self.held_snapshots.iter().filter(|h| h.0 == node) {
            lines.push(format!("held, not durable yet: a snapshot below slot {at}"));
        }
        self.out.extend(lines);
        Ok(())
    }

    /// `locks N`: the lock service's state in node N's own state machine, read locally
    /// (possibly stale): log time, the sessions, the locks held or waited for.
    pub(crate) fn locks(&mut self, node: NodeId) -> Result<(), String> {
        let i = self.node_index(node)?;
        let Some(roles) = &self.w.nodes[i].roles else {
            return Err(format!("node {node} is down"));
        };
        let service = roles.sm.app();
        let mut lines = vec![format!(
            "node {node} (applied {}) log time {} ms",
            roles.sm.next(),
            service.locks.log_time_ms()
        )];
        for (id, ttl, seen) in service.locks.sessions() {
            lines.push(format!(
                "session {id}: ttl={ttl} last seen {seen} ms (expires once log time passes {} ms)",
                seen + ttl
            ));
        }
        match roles.sm.read(&ServiceCommand::Lock(LockCommand::List)) {
            Some(ServiceReply::Lock(LockReply::Locks(locks))) if locks.is_empty() => lines.push("no locks".to_string()),
            Some(ServiceReply::Lock(LockReply::Locks(locks))) => {
                lines.extend(locks.iter().map(describe_lock_info));
            }
            other => return Err(format!("the lock list reads as {other:?}")),
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
            .read(&ServiceCommand::Kv(KvCommand::get(key.as_bytes().to_vec())))
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
        PeerMessage::AcceptorRequest(AcceptorRequest::Pull { first, end, .. }) => {
            Some((*first, end.saturating_sub(*first)))
        }
        PeerMessage::AcceptorReply(AcceptorReply::Pulled { first_slot, values, .. }) => {
            Some((*first_slot, values.len() as u64))
        }
        _ => None,
    }
}

/// Slots in increasing order as runs: `0-3, 5, 7-9`; `none` for no slot.
fn slot_ranges(slots: impl IntoIterator<Item = Slot>) -> String {
    let mut runs: Vec<(Slot, u64)> = Vec::new();
    for slot in slots {
        match runs.last_mut() {
            Some((first, n)) if *first + *n == slot => *n += 1,
            _ => runs.push((slot, 1)),
        }
    }
    if runs.is_empty() {
        return "none".to_string();
    }
    let all: Vec<String> = runs.into_iter().map(|(first, n)| slot_range(first, n)).collect();
    all.join(", ")
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
        Value::Command(c) => format!("c{} {}", c.id.client, describe_command(&c.payload)),
        Value::StopSign(s) => format!(
            "c{} stop config {} -> members {:?}",
            s.id.client,
            s.prev,
            s.members.keys().collect::<Vec<_>>()
        ),
    }
}

/// A command's payload as a line shows it (`put x=1`, `lock L session=1 now_ms=5`).
fn describe_command(payload: &[u8]) -> String {
    match codec::decode::<ServiceCommand>(payload) {
        Ok(ServiceCommand::Kv(KvCommand::Put { key, value })) => format!("put {}={}", text(&key), text(&value)),
        Ok(ServiceCommand::Kv(KvCommand::Cas { key, expected, new })) => format!(
            "cas {} {}->{}",
            text(&key),
            expected.as_deref().map_or("(absent)".to_string(), text),
            text(&new)
        ),
        Ok(ServiceCommand::Kv(KvCommand::Range { key, .. })) => format!("get {}", text(&key)),
        Ok(ServiceCommand::Lock(command)) => describe_lock(&command),
        Ok(other) => format!("{other:?}"),
        Err(e) => format!("undecodable ({e})"),
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
            decided_below,
            accepted,
            more_from,
            ..
        }) => {
            let all: Vec<String> = accepted
                .iter()
                .map(|r| format!("{}@{}", slot_range(r.first, r.end - r.first), r.ballot))
                .collect();
            let floor = match decided_below {
                0 => String::new(),
                f => format!(" decided_below={f}"),
            };
            let more = more_from.map_or(String::new(), |s| format!(" more_from={s}"));
            format!("Promise ballot={ballot}{floor} accepted=[{}]{more}", all.join(", "))
        }
        PeerMessage::AcceptorRequest(AcceptorRequest::Pull { ballot, first, end, .. }) => {
            format!("Pull ballot={ballot} slots={}", slot_range(*first, end - first))
        }
        PeerMessage::AcceptorReply(AcceptorReply::Pulled {
            ballot,
            first_slot,
            values,
            more_from,
            ..
        }) => {
            let all: Vec<String> = (*first_slot..)
                .zip(values)
                .map(|(slot, (b, v))| format!("{slot}@{b}: {}", describe_value(v)))
                .collect();
            let more = more_from.map_or(String::new(), |s| format!(" more_from={s}"));
            format!("Pulled ballot={ballot} [{}]{more}", all.join(", "))
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
        PeerMessage::Learner(LearnerMessage::SnapshotOffer { at }) => format!("SnapshotOffer at={at}"),
        PeerMessage::Learner(LearnerMessage::SnapshotRead { at, offset }) => {
            format!("SnapshotRead at={at} offset={offset}")
        }
        PeerMessage::Learner(LearnerMessage::SnapshotChunk {
            at,
            offset,
            total,
            data,
            ..
        }) => format!(
            "SnapshotChunk at={at} bytes={offset}..{} of {total}",
            offset + data.len() as u64
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
        PeerMessage::Proposer(ProposerMessage::ProposeStop { stop }) => {
            format!(
                "ProposeStop c{} members {:?}",
                stop.id.client,
                stop.members.keys().collect::<Vec<_>>()
            )
        }
        PeerMessage::StateMachine(StateMachineMessage::ReadIndexReply { id, index }) => format!(
            "ReadIndexReply c{} index={}",
            id.client,
            index.map_or("none".to_string(), |i| i.to_string())
        ),
        PeerMessage::Raft(_) => "Raft".to_string(),
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

/// A lock-service command as a line shows it (`lock L session=1 now_ms=50`).
fn describe_lock(command: &LockCommand) -> String {
    match command {
        LockCommand::OpenSession { ttl_ms, now_ms } => format!("open session ttl={ttl_ms} now_ms={now_ms}"),
        LockCommand::KeepAlive { session, now_ms } => format!("keepalive session={session} now_ms={now_ms}"),
        LockCommand::CloseSession { session } => format!("close session={session}"),
        LockCommand::Lock { name, session, now_ms } => format!("lock {name} session={session} now_ms={now_ms}"),
        LockCommand::Cancel { name, session } => format!("cancel {name} session={session}"),
        LockCommand::Unlock { name, session } => format!("unlock {name} session={session}"),
        LockCommand::Tick { now_ms } => format!("Tick now_ms={now_ms}"),
        LockCommand::Get { name } => format!("get lock {name}"),
        LockCommand::List => "list locks".to_string(),
    }
}

fn describe_lock_info(info: &LockInfo) -> String {
    let holder = info.holder.map_or("-".to_string(), |s| format!("session {s}"));
    let queue: Vec<String> = info.queue.iter().map(|s| s.to_string()).collect();
    format!(
        "lock {}: holder={holder} token={} queue=[{}]",
        info.name,
        info.token,
        queue.join(", ")
    )
}

/// How a membership change a script asked for ended, as its answer line shows it.
fn describe_change_end(
    stop: &StopSign,
    outcome: Option<Outcome<ServiceReply>>,
    config: Option<Configuration>,
) -> String {
    match (config, outcome) {
        (Some(c), _) if c.id == stop.prev + 1 && c.members == stop.members => format!("applied: {c}"),
        (Some(c), _) => format!("another change came first: {c}"),
        (None, Some(Err(e))) => e,
        (None, Some(Ok(reply))) => format!("answered {reply:?}"),
        (None, None) => "unknown (no answer)".to_string(),
    }
}

/// A lock-service answer (or none) as an answer line shows it.
fn describe_lock_outcome(outcome: Option<Outcome<ServiceReply>>) -> String {
    let reply = match outcome {
        None => return "unknown (no answer)".to_string(),
        Some(Err(e)) => return format!("error: {e}"),
        Some(Ok(ServiceReply::Lock(reply))) => reply,
        Some(Ok(other)) => return format!("not a lock reply: {other:?}"),
    };
    match reply {
        LockReply::SessionOpened { session, .. } => format!("session={session}"),
        LockReply::SessionAlive { .. } => "alive".to_string(),
        LockReply::SessionClosed { .. } => "closed".to_string(),
        LockReply::Granted { token, .. } => format!("granted token={token}"),
        LockReply::Queued { position, .. } => format!("queued position={position}"),
        LockReply::Cancelled { .. } => "cancelled".to_string(),
        LockReply::Released { .. } => "released".to_string(),
        LockReply::NoSession { session } => format!("no session {session} (expired or unknown)"),
        LockReply::NotHolder { holder, .. } => format!(
            "not the holder (holder={})",
            holder.map_or("-".to_string(), |s| format!("session {s}"))
        ),
        LockReply::Ticked { expired } => {
            let all: Vec<String> = expired.iter().map(|s| s.to_string()).collect();
            format!("expired=[{}]", all.join(", "))
        }
        LockReply::Lock(info) => describe_lock_info(&info),
        LockReply::Locks(locks) => {
            let all: Vec<String> = locks.iter().map(describe_lock_info).collect();
            all.join("; ")
        }
    }
}
