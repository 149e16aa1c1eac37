//! # A deterministic simulator of the whole protocol
//!
//! The role cores ([`Acceptor`], [`Proposer`], [`Learner`], [`Elector`],
//! [`StateMachine`]) are plain state machines: input in, output out, no I/O, no clock,
//! no randomness of their own. That makes it possible to run N complete nodes on one
//! thread, with time, the network, disks and failures all simulated, and to replay any
//! run exactly from a single `u64` seed. This module does that, and checks the safety
//! of Paxos after every single step.
//!
//! ## What is modelled
//!
//! *Time* is a number of simulated microseconds. One event queue, ordered by (time,
//! sequence number), holds everything that will happen: message deliveries, mailbox
//! messages between the roles of one node, each node's tick (the elector, proposer and
//! learner tick every `tick_us`, in an order that varies, since in the real node they
//! are three independent timers), client invocations and retries, and faults. A step
//! is one event. Nothing else decides the order of anything: there is no `HashMap`
//! and no wall clock anywhere, and all randomness (network delays, fault choices, the
//! electors' seeds, the workload) comes from one SplitMix64 ([`SeededRng`]) seeded with
//! the run's seed.
//!
//! *The wiring* is production's own: every core's output (a `Ready`) is carried out by
//! the same [`crate::driver::Driver`] the actors use, with this world as its `Host`. So
//! the acceptor's write reaches the node's disk, and a sync covers it, before its reply
//! leaves (group commit included); the elector's ballot is synced before its proposer
//! is told to lead with it; the learner's values are written, handed in order to the
//! state machine's mailbox, and the proposer told how far it learned. A message a node
//! sends to itself takes the local mailbox (as `Peers::send` does), never the network.
//! Mailbox messages are events at the current time, so they run after whatever is
//! already due, in the order they were sent.
//!
//! *The network* delivers each message after a random delay, drops some, duplicates
//! some, and holds some back much longer, which reorders them. A *partition* splits the
//! nodes into two sides; messages across the cut are dropped, both when sent and when
//! they arrive, until it heals. Each run draws its own fault rates from its seed.
//!
//! *The disk* of each node holds exactly what the cores' outputs asked to persist: the
//! acceptor's `AcceptorWrite`s and the elector's ballots once a sync covered them (a
//! sync takes a random `disk_min_us..disk_max_us`), the learner's decided values, and
//! the state machine's snapshots once durable (they are taken every
//! `SIM_SNAPSHOT_EVERY` slots, as the node's policy says, and become durable after a
//! disk delay).
//!
//! *Crashes* drop a node's roles, drivers, mailboxes, timers and waiting clients at once,
//! and whatever its disk had not synced. A restart rebuilds every core from the disk
//! through the same constructors `Node::start` uses: the state machine from its
//! snapshot (or empty), the learner replaying the decided log after it.
//!
//! *Clients* (a few per run) each run one operation at a time: a put, a get or a
//! compare-and-swap on one of a few keys, sent to a random live node. That node waits
//! for the answer as `NodeHandle::submit` does: it forwards `Propose` to the leader its
//! elector names, proposes again every `retry_us` and whenever the leader changes, and
//! gives up after `request_timeout_us`. Its state machine answers when it applies the
//! request. A share of the gets (`read_index_permille`, drawn per operation) goes the
//! way of `NodeHandle::read` instead: the node registers the read with its state
//! machine (`ReadWait`) and asks the leader for `ReadIndex` under the same retry,
//! leader-change and give-up rules; the state machine core keeps the first index a
//! `ReadIndexReply` confirms and answers once it has applied every slot below it. Every
//! operation's invocation and response (or timeout, or the crash of the node it asked,
//! which drops its waiting commands and reads alike) is recorded with simulated times
//! in [`RunReport::history`], for a linearizability checker.
//!
//! *Lock clients* (`lock_clients` per run) open a session, wait in line for one lock,
//! hold it with keep-alives, then release it or die holding it; the leader proposes
//! the lock service's clock command every `CLOCK_MS`, as `NodeHandle`'s clock loop
//! does, so the sessions of dead holders expire by log time and the lock passes on.
//!
//! *Membership changes* ([`SimConfig::with_membership`]; `crate::messages::membership`).
//! The world holds a pool of nodes: the first configuration's (1..=`nodes`), and joining
//! ones (an acceptor and an elector with no configuration, an empty state machine).
//! Every role is built with its node's configuration: the latest its disk holds (the
//! `membership` file its state machine's host writes on `Write::Membership`, synced in
//! place; or the one in its snapshot), else the first one if it is a member, else
//! none. An *operator* submits a random change every `reconfigure_min_us..max_us`:
//! add a node of the pool (now and then naming one or two members to pull from),
//! remove a member (now and then the leader; never the last), replace one in one
//! StopSign, grow to 5, shrink to 3; mostly one at a time, now and then a second one
//! before the first is applied or one against a configuration already gone. It goes
//! through a live member like a command (`ProposeStop`, retried, given up after the
//! request timeout); the state machine answers only a refusal, and success is the
//! node's configuration moving on. The world plays each joining node's gateway: once a
//! configuration counting it is in force somewhere (and again after its restarts, and
//! every second while it still holds none that counts it) its learner is told to
//! `Migrate` the state below the configuration's first slot from the StopSign's
//! sources (else the previous members that stay). Clients ask only live members of the
//! latest configuration; removed nodes stay up (or crash and restart like any node),
//! and the requests they took time out. The run's [`RunReport::configurations`] and
//! [`Stats`] record what changed.
//!
//! ## What is checked
//!
//! After every step, the invariants of [`checker`]: at most one value chosen per slot;
//! every learned value chosen; every applied sequence a prefix of every other; acceptor
//! promises never decreasing (across restarts too) and never below an accepted ballot;
//! proposers bound by their phase-1 promises; an acceptor's `Accepted` only for what its
//! disk holds (an acceptance counts toward a value being chosen once it is revealed);
//! a fencing token never granted to two sessions; and the snapshot checks of
//! [`snapshot_check`]. Across configurations: quorums are majorities of the ballot's
//! configuration, one configuration per id (each following from the StopSign decided
//! just before its first slot), nothing chosen by a configuration after its StopSign,
//! one leader per ballot and only a member of its configuration, the state at a
//! configuration's first slot the same on every node that held it (old members
//! applying the StopSign, new members migrating to it), a removed or joining node's
//! elector silent, and every request answered alike by every state machine however
//! often it was decided (a command applied twice, say on both sides of a StopSign,
//! answers differently). A panic inside a core (its own `assert!`s, such as the
//! learner's "decided twice") stops the run and counts as a violation too: each step
//! runs under `catch_unwind`.
//!
//! ## What is not modelled
//!
//! The simulator drives the cores and the driver, not the actor shells: actix, tokio,
//! the files, the TCP transport and the codec on the wire are not exercised (the
//! cluster and TCP tests do that). A write is either durable or lost whole (no torn
//! writes), the decided log's appends survive a crash without a sync (a process crash,
//! not a power cut), nodes have no addresses (a configuration's members are ids), and
//! a joining node needs no operator to start it or validate the change (the world's
//! operator only draws changes a node's gateway would accept, but for the deliberate
//! stale or concurrent ones). Liveness is not asserted, only reported (operations
//! answered, slots chosen, configurations changed).
//!
//! ## Scenario scripts
//!
//! The same world also runs under a script's control ([`script`]): a perfect network,
//! time that moves only when the script says `tick`, clients and faults (crashes,
//! partitions, lost, held or late messages) only where the script puts them, and every
//! message and client answer printable, with the checks above after every step. The
//! scripts in `tests/scenarios/` each put the protocol into one situation (a value
//! recovered by phase 1, a hole filled with a no-op, a read refused by a deposed
//! leader, ...) and record what it does (`cargo test --test scenarios`).
//!
//! ## Replaying a seed
//!
//! A run is a pure function of its [`SimConfig`], and [`SimConfig::from_seed`] derives
//! everything but the planted bugs and the cluster size from the seed. A failing run
//! prints its seed and the one command that replays it, for example
//!
//! ```text
//! ROLEPAX_SIM_SEED=1234 cargo test --test sim sim_replay -- --nocapture
//! ```
//!
//! (with `ROLEPAX_SIM_MEMBERSHIP=1`, `ROLEPAX_SIM_NODES=…`, `ROLEPAX_SIM_PROFILE=split_brain` (see
//! [`SimConfig::with_split_brain_bias`]) and `ROLEPAX_SIM_BUGS=…` added when the run had
//! them),
//! together with the shortest failing prefix: the seed is run again with a step budget,
//! bisecting for the fewest steps that still fail, and the last events of that prefix
//! are shown. A long soak is `ROLEPAX_SIM_RUNS=100000 cargo test --release --test sim
//! sim_soak -- --ignored --nocapture`.
//!
//! [`Acceptor`]: crate::roles::acceptor::Acceptor
//! [`Proposer`]: crate::roles::proposer::Proposer
//! [`Learner`]: crate::roles::learner::Learner
//! [`Elector`]: crate::roles::elector::Elector
//! [`StateMachine`]: crate::roles::state_machine::StateMachine
//! [`SeededRng`]: crate::roles::rng::SeededRng

pub mod checker;
pub mod history;
pub mod script;
pub mod snapshot_check;
mod world;

pub use checker::Violation;
pub use history::{OpInput, OpOutput, OpRecord};

use crate::messages::Configuration;
use crate::roles::bugs::PlantedBugs;
use crate::roles::rng::SeededRng;
use std::cell::Cell;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

/// How hostile the world is, per run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Faults {
    /// Chance, in thousandths, that a message between two nodes is lost.
    pub drop_permille: u64,
    /// Chance that it is delivered twice.
    pub dup_permille: u64,
    /// Chance that it is held back for a long delay (which reorders messages).
    pub slow_permille: u64,
    pub delay_min_us: u64,
    pub delay_max_us: u64,
    pub slow_min_us: u64,
    pub slow_max_us: u64,
    /// How long a sync of a node's disk takes (appends it has not covered are lost in a
    /// crash).
    pub disk_min_us: u64,
    pub disk_max_us: u64,
    /// Whether nodes crash (and restart after `down_*_us`).
    pub crashes: bool,
    /// Whether the network partitions (and heals after `heal_*_us`).
    pub partitions: bool,
    /// Time between two faults.
    pub chaos_min_us: u64,
    pub chaos_max_us: u64,
    pub down_min_us: u64,
    pub down_max_us: u64,
    pub heal_min_us: u64,
    pub heal_max_us: u64,
}

impl Faults {
    /// A perfect network and no failures.
    pub fn none() -> Self {
        Faults {
            drop_permille: 0,
            dup_permille: 0,
            slow_permille: 0,
            delay_min_us: 100,
            delay_max_us: 2_000,
            slow_min_us: 5_000,
            slow_max_us: 80_000,
            disk_min_us: 20,
            disk_max_us: 1_500,
            crashes: false,
            partitions: false,
            chaos_min_us: 100_000,
            chaos_max_us: 600_000,
            down_min_us: 50_000,
            down_max_us: 600_000,
            heal_min_us: 100_000,
            heal_max_us: 900_000,
        }
    }
}

/// Everything a run depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    pub seed: u64,
    /// Cluster size (nodes are numbered 1..=nodes).
    pub nodes: usize,
    /// Simulated length of the run.
    pub duration_us: u64,
    /// One tick of the role cores' clocks (the node's `tick`).
    pub tick_us: u64,
    pub clients: usize,
    /// Clients of the lock service (contending for one lock).
    pub lock_clients: usize,
    /// Keys the clients use (`k0`, `k1`, ...).
    pub keys: usize,
    /// A node proposes a waiting request again after this long.
    pub retry_us: u64,
    /// And gives up after this long.
    pub request_timeout_us: u64,
    /// Chance, in thousandths, that a get is served by read index rather than through
    /// the log (0: every get goes through the log).
    pub read_index_permille: u64,
    pub faults: Faults,
    pub bugs: PlantedBugs,
    /// Stop after this many steps (for shrinking a failure to its shortest prefix).
    pub max_steps: Option<u64>,
    /// Record a line per step (slow; for replays and the determinism test).
    pub trace: bool,
    /// Membership changes: an operator client submits random reconfigurations
    /// (StopSigns) every `reconfigure_min_us..reconfigure_max_us` (see
    /// [`SimConfig::with_membership`]).
    pub membership: bool,
    /// How many nodes the world holds (numbered 1..=pool): the first configuration is
    /// nodes 1..=`nodes`, the others start as joining nodes (no configuration, nothing
    /// held) that a reconfiguration may add. Equal to `nodes` without membership changes.
    pub pool: usize,
    pub reconfigure_min_us: u64,
    pub reconfigure_max_us: u64,
}

impl SimConfig {
    /// The configuration a seed stands for: 3 nodes for even seeds, 5 for odd ones, and
    /// fault rates drawn from the seed (some runs calm, most with crashes, partitions,
    /// or both).
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = SeededRng::new(seed ^ 0x05EE_D0FF_A175_u64);
        let mut faults = Faults::none();
        faults.drop_permille = rng.between(0, 80);
        faults.dup_permille = rng.between(0, 50);
        faults.slow_permille = rng.between(0, 100);
        let profile = rng.between(0, 7);
        faults.crashes = profile & 1 == 1 || profile == 0;
        faults.partitions = profile & 2 == 2 || profile == 0;
        if profile == 4 {
            // A calm run now and then: no crashes, no partitions.
            faults.crashes = false;
            faults.partitions = false;
        }
        let chaos = rng.between(150_000, 600_000);
        faults.chaos_min_us = chaos / 3;
        faults.chaos_max_us = chaos;
        SimConfig {
            seed,
            nodes: if seed.is_multiple_of(2) { 3 } else { 5 },
            duration_us: 3_000_000,
            tick_us: 10_000,
            clients: 3,
            lock_clients: 2,
            keys: 3,
            retry_us: 100_000,
            request_timeout_us: 1_000_000,
            read_index_permille: 500,
            faults,
            bugs: PlantedBugs::default(),
            max_steps: None,
            trace: false,
            membership: false,
            pool: if seed.is_multiple_of(2) { 3 } else { 5 },
            reconfigure_min_us: 100_000,
            reconfigure_max_us: 500_000,
        }
    }

    /// The cluster size (the first configuration's); the pool follows (two joining nodes
    /// beside it with membership changes on).
    pub fn with_nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes;
        self.pool = if self.membership { nodes + 2 } else { nodes };
        self
    }

    /// Membership changes on: two joining nodes beside the first configuration's, and an
    /// operator that submits a random reconfiguration (add a node, sometimes naming the
    /// members it pulls from; remove one, sometimes the leader; replace one; grow to 5;
    /// shrink to 3; now and then a second change before the first is applied, or one
    /// against a configuration already gone) every 100 to 500 ms of the run, among the
    /// seed's crashes, partitions, losses and duplicates. The seed draws the same faults
    /// as without; the run differs from the seed's plain one from the first step on (more
    /// nodes draw from the one generator). `ROLEPAX_SIM_MEMBERSHIP=1` in a replay command.
    pub fn with_membership(mut self) -> Self {
        self.membership = true;
        self.pool = self.nodes + 2;
        self
    }

    pub fn with_bugs(mut self, bugs: PlantedBugs) -> Self {
        self.bugs = bugs;
        self
    }

    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Biases the run towards a leader that was deposed behind a partition and still
    /// believes it leads, the case a read index guards against: partitions and no
    /// crashes (a crash ends a leader's belief at once), and every get served by read
    /// index. `ROLEPAX_SIM_PROFILE=split_brain` in a replay command.
    pub fn with_split_brain_bias(mut self) -> Self {
        self.faults.crashes = false;
        self.faults.partitions = true;
        self.read_index_permille = 1000;
        self
    }

    /// The command that replays this run (planted bugs, cluster size and the split-brain
    /// bias included).
    pub fn replay_command(&self) -> String {
        let mut env = format!("ROLEPAX_SIM_SEED={}", self.seed);
        let mut plain = SimConfig::from_seed(self.seed);
        if self.membership {
            env += " ROLEPAX_SIM_MEMBERSHIP=1";
            plain = plain.with_membership();
        }
        if self.nodes != plain.nodes {
            env += &format!(" ROLEPAX_SIM_NODES={}", self.nodes);
            plain = plain.with_nodes(self.nodes);
        }
        let biased = plain.clone().with_split_brain_bias();
        let same = |b: &SimConfig| {
            self.faults == b.faults
                && self.duration_us == b.duration_us
                && self.read_index_permille == b.read_index_permille
                && self.pool == b.pool
                && (self.reconfigure_min_us, self.reconfigure_max_us) == (b.reconfigure_min_us, b.reconfigure_max_us)
        };
        let base = if !same(&plain) && same(&biased) {
            env += " ROLEPAX_SIM_PROFILE=split_brain";
            biased
        } else {
            plain
        };
        let bugs = bug_names(self.bugs);
        if !bugs.is_empty() {
            env += &format!(" ROLEPAX_SIM_BUGS={}", bugs.join(","));
        }
        let mut cmd = format!("{env} cargo test --test sim sim_replay -- --nocapture");
        if !same(&base) {
            cmd += "  (note: this run also overrode the seed's faults, duration, read-index share, pool or reconfiguration pace)";
        }
        cmd
    }
}

/// The switch of one planted bug in a [`PlantedBugs`].
type BugSwitch = fn(&mut PlantedBugs) -> &mut bool;

/// Every planted bug, by the name `ROLEPAX_SIM_BUGS` spells it.
const BUGS: [(&str, BugSwitch); 12] = [
    ("acceptor_skips_persist", |b| &mut b.acceptor_skips_persist),
    ("proposer_skips_phase_one", |b| &mut b.proposer_skips_phase_one),
    ("proposer_decides_on_minority", |b| &mut b.proposer_decides_on_minority),
    ("learner_applies_out_of_order", |b| &mut b.learner_applies_out_of_order),
    ("proposer_reads_without_quorum", |b| {
        &mut b.proposer_reads_without_quorum
    }),
    ("acceptor_promise_skips_stored", |b| {
        &mut b.acceptor_promise_skips_stored
    }),
    ("state_machine_compacts_early", |b| &mut b.state_machine_compacts_early),
    ("learner_takes_chunks_out_of_order", |b| {
        &mut b.learner_takes_chunks_out_of_order
    }),
    ("proposer_adopts_lower_ballot_part", |b| {
        &mut b.proposer_adopts_lower_ballot_part
    }),
    ("proposer_proposes_past_stop_sign", |b| {
        &mut b.proposer_proposes_past_stop_sign
    }),
    ("proposer_starts_next_config_early", |b| {
        &mut b.proposer_starts_next_config_early
    }),
    ("migration_skips_a_chunk", |b| &mut b.migration_skips_a_chunk),
];

/// The names of the planted bugs that are on, as `ROLEPAX_SIM_BUGS` spells them.
pub fn bug_names(mut bugs: PlantedBugs) -> Vec<&'static str> {
    BUGS.iter()
        .filter(|(_, on)| *on(&mut bugs))
        .map(|(name, _)| *name)
        .collect()
}

/// Parses a comma-separated list of planted bug names (`ROLEPAX_SIM_BUGS`).
pub fn parse_bugs(list: &str) -> Result<PlantedBugs, String> {
    let mut bugs = PlantedBugs::default();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !cfg!(feature = "planted-bugs") {
            return Err(format!(
                "planted bug {name:?}: this build has no planted bugs (they need the cargo feature `planted-bugs`, which the tests turn on)"
            ));
        }
        let (_, on) = BUGS
            .iter()
            .find(|(known, _)| *known == name)
            .ok_or_else(|| format!("unknown planted bug {name:?}"))?;
        *on(&mut bugs) = true;
    }
    Ok(bugs)
}

/// Counters of one run (or of many, added up).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub messages_sent: u64,
    pub messages_dropped: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub elections: u64,
    /// Operations answered.
    pub ops_ok: u64,
    /// Operations timed out or lost with their node.
    pub ops_unknown: u64,
    /// Gets answered by read index (counted in `ops_ok` too).
    pub read_index_reads: u64,
    pub chosen_slots: u64,
    /// The longest applied sequence.
    pub applied: u64,
    /// State machine snapshots made durable.
    pub snapshots: u64,
    /// Snapshot chunks received from peers, and snapshots received and installed.
    pub snapshot_chunks: u64,
    pub snapshots_installed: u64,
    /// Locks granted to lock clients, lock clients that died holding a lock, and
    /// sessions the leader's clock commands expired.
    pub lock_grants: u64,
    pub lock_clients_died: u64,
    pub sessions_expired: u64,
    /// Configurations that came into force (counted once, when a node first applied
    /// one); StopSigns the operator submitted, and of those: refused by the state
    /// machine (made against a configuration no longer in force), given up (no answer in
    /// time), or ended by a configuration change (theirs, or another that came first).
    pub reconfigurations: u64,
    pub stop_signs: u64,
    pub stop_signs_refused: u64,
    pub stop_signs_timed_out: u64,
    pub stop_signs_applied: u64,
    /// `Migrate` orders given to joining nodes' learners.
    pub migrations: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.messages_sent += o.messages_sent;
        self.messages_dropped += o.messages_dropped;
        self.crashes += o.crashes;
        self.partitions += o.partitions;
        self.elections += o.elections;
        self.ops_ok += o.ops_ok;
        self.ops_unknown += o.ops_unknown;
        self.read_index_reads += o.read_index_reads;
        self.chosen_slots += o.chosen_slots;
        self.snapshot_chunks += o.snapshot_chunks;
        self.snapshots_installed += o.snapshots_installed;
        self.applied += o.applied;
        self.snapshots += o.snapshots;
        self.lock_grants += o.lock_grants;
        self.lock_clients_died += o.lock_clients_died;
        self.sessions_expired += o.sessions_expired;
        self.reconfigurations += o.reconfigurations;
        self.stop_signs += o.stop_signs;
        self.stop_signs_refused += o.stop_signs_refused;
        self.stop_signs_timed_out += o.stop_signs_timed_out;
        self.stop_signs_applied += o.stop_signs_applied;
        self.migrations += o.migrations;
    }
}

/// What one run did.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub config: SimConfig,
    pub steps: u64,
    pub sim_time_us: u64,
    /// A hash of every step (time, sequence number, what happened where) and of the end
    /// state: two runs of one configuration must agree on it.
    pub digest: u64,
    pub violation: Option<Violation>,
    pub history: Vec<OpRecord>,
    /// One line per step, if the configuration asked for it.
    pub trace: Vec<String>,
    pub stats: Stats,
    /// Every configuration that came into force, in order (the first one included),
    /// with the slot it starts at.
    pub configurations: Vec<Configuration>,
}

thread_local! {
    pub(crate) static IN_SIM: Cell<bool> = const { Cell::new(false) };
}

/// Keeps the default panic hook quiet for panics inside simulated steps (they are
/// caught and reported as violations); other panics print as usual.
pub(crate) fn quiet_panics_in_sim() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_SIM.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

/// Runs one simulation to its end (or its step budget, or its first violation).
pub fn run(cfg: &SimConfig) -> RunReport {
    quiet_panics_in_sim();
    IN_SIM.with(|f| f.set(true));
    let mut world = world::World::new(cfg);
    let mut violation = match catch_unwind(AssertUnwindSafe(|| world.boot())) {
        Ok(Ok(())) => None,
        Ok(Err(message)) => Some(Violation {
            step: 0,
            time_us: 0,
            message,
        }),
        Err(p) => Some(Violation {
            step: 0,
            time_us: 0,
            message: format!("a core panicked: {}", panic_message(p.as_ref())),
        }),
    };
    let mut time = 0;
    while violation.is_none() {
        if cfg.max_steps.is_some_and(|max| world.steps >= max) {
            break;
        }
        match catch_unwind(AssertUnwindSafe(|| world.step())) {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => break,
            Ok(Err(v)) => violation = Some(v),
            Err(p) => {
                violation = Some(Violation {
                    step: world.steps,
                    time_us: time,
                    message: format!("a core panicked: {}", panic_message(p.as_ref())),
                })
            }
        }
        time = world.now();
    }
    IN_SIM.with(|f| f.set(false));
    world.finish();
    RunReport {
        config: cfg.clone(),
        steps: world.steps,
        sim_time_us: world.now(),
        digest: world.digest,
        violation,
        history: std::mem::take(&mut world.history),
        trace: world.trace.take().unwrap_or_default(),
        stats: world.stats.clone(),
        configurations: world.configurations(),
    }
}

/// The fewest steps of `cfg`'s run that still end in a violation (bisecting over step
/// budgets), given that the full run failed at step `failed_at`.
pub fn shortest_failing_prefix(cfg: &SimConfig, failed_at: u64) -> u64 {
    let fails = |steps: u64| {
        let mut c = cfg.clone();
        c.max_steps = Some(steps);
        c.trace = false;
        run(&c).violation.is_some()
    };
    let (mut lo, mut hi) = (0, failed_at);
    if fails(0) {
        return 0;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fails(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    hi
}

/// A failed run, and everything needed to replay it.
#[derive(Clone, Debug)]
pub struct Failure {
    pub report: RunReport,
}

impl Failure {
    pub fn seed(&self) -> u64 {
        self.report.config.seed
    }

    pub fn violation(&self) -> &Violation {
        self.report.violation.as_ref().expect("a failure has a violation")
    }

    /// The full story: seed, replay command, violation, shortest failing prefix and the
    /// last steps of it. Runs the seed again a few times to find the prefix.
    pub fn explain(&self) -> String {
        let cfg = &self.report.config;
        let v = self.violation();
        let prefix = shortest_failing_prefix(cfg, v.step);
        let mut traced = cfg.clone();
        traced.max_steps = Some(prefix);
        traced.trace = true;
        let tail = run(&traced).trace;
        let from = tail.len().saturating_sub(25);
        let mut s = format!(
            "SIMULATION FAILED: seed {} ({} nodes{}, bugs: {:?})\n  violation at step {} (t={}us): {}\n  replay: {}\n  shortest failing prefix: {} steps (of {} run); its last steps:\n",
            cfg.seed,
            cfg.nodes,
            if cfg.membership {
                format!(" of a pool of {}, membership changes", cfg.pool)
            } else {
                String::new()
            },
            bug_names(cfg.bugs),
            v.step,
            v.time_us,
            v.message,
            cfg.replay_command(),
            prefix,
            self.report.steps,
        );
        for line in &tail[from..] {
            let mut line = line.clone();
            if line.len() > 300 {
                let mut cut = 300;
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.truncate(cut);
                line += "…";
            }
            s += &format!("    {line}\n");
        }
        if self.report.configurations.len() > 1 {
            s += "  configurations that came into force in the run:\n";
            for config in &self.report.configurations {
                s += &format!("    {config}\n");
            }
        }
        s
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.violation();
        write!(
            f,
            "seed {}: {} (step {}); replay: {}",
            self.seed(),
            v.message,
            v.step,
            self.report.config.replay_command()
        )
    }
}

/// The outcome of many runs.
#[derive(Clone, Debug, Default)]
pub struct Exploration {
    pub runs: u64,
    pub steps: u64,
    pub elapsed: Duration,
    pub stats: Stats,
    /// The first failing run, if any (exploring stops there).
    pub failure: Option<Failure>,
}

impl Exploration {
    pub fn steps_per_second(&self) -> f64 {
        self.steps as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Exploration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} runs, {} steps in {:.2?} ({:.0} steps/s); {} ops answered ({} reads by read index), {} unknown, {} slots chosen, {} snapshots ({} received in {} chunks), {} lock grants ({} holders died, {} sessions expired), {} crashes, {} partitions, {} elections",
            self.runs,
            self.steps,
            self.elapsed,
            self.steps_per_second(),
            self.stats.ops_ok,
            self.stats.read_index_reads,
            self.stats.ops_unknown,
            self.stats.chosen_slots,
            self.stats.snapshots,
            self.stats.snapshots_installed,
            self.stats.snapshot_chunks,
            self.stats.lock_grants,
            self.stats.lock_clients_died,
            self.stats.sessions_expired,
            self.stats.crashes,
            self.stats.partitions,
            self.stats.elections,
        )?;
        if self.stats.stop_signs > 0 {
            write!(
                f,
                "; {} reconfigurations ({} StopSigns submitted: {} applied, {} refused, {} timed out), {} migrations",
                self.stats.reconfigurations,
                self.stats.stop_signs,
                self.stats.stop_signs_applied,
                self.stats.stop_signs_refused,
                self.stats.stop_signs_timed_out,
                self.stats.migrations,
            )?;
        }
        if let Some(failure) = &self.failure {
            write!(f, "; FAILED: {failure}")?;
        }
        Ok(())
    }
}

/// Runs every seed of `seeds` through `config`, stopping at the first failure.
pub fn explore(seeds: impl IntoIterator<Item = u64>, config: impl Fn(u64) -> SimConfig) -> Exploration {
    explore_each(seeds, config, |_| {})
}

/// Like [`explore`], handing every run's report to `each` as well (to check its client
/// history, say).
pub fn explore_each(
    seeds: impl IntoIterator<Item = u64>,
    config: impl Fn(u64) -> SimConfig,
    mut each: impl FnMut(&RunReport),
) -> Exploration {
    let start = Instant::now();
    let mut ex = Exploration::default();
    for seed in seeds {
        let report = run(&config(seed));
        each(&report);
        ex.runs += 1;
        ex.steps += report.steps;
        ex.stats.add(&report.stats);
        if report.violation.is_some() {
            ex.failure = Some(Failure { report });
            break;
        }
    }
    ex.elapsed = start.elapsed();
    ex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_bug_names_and_parse_bugs_agree_on_every_bug() {
        for (name, _) in BUGS {
            let bugs = parse_bugs(name).expect("a known bug");
            assert_eq!(bug_names(bugs), vec![name], "{name} switches on itself only");
        }
        assert!(parse_bugs("no_such_bug").is_err());
        assert_eq!(bug_names(PlantedBugs::default()), Vec::<&str>::new());
    }
}
