//! # Scenario scripts over the deterministic simulator
//!
//! A scenario script is a plain-text file that drives a [scripted world](super) step by
//! step and records, under each step, what the step printed. The runner replays the
//! script and compares; with `UPDATE_SCENARIOS=1` it rewrites the recorded output in
//! place instead (in the spirit of toydb's goldenscript and etcd-raft's datadriven
//! tests).
//!
//! ## The format
//!
//! ```text
//! # A sentence or two: what the scenario shows.
//!
//! start 3
//!
//! campaign 1
//!
//! deliver
//!
//! status
//! > node 1: leader ballot=1.1 leader=1 proposer=leading 1.1 next_slot=0 learned=0 commit=0 applied=0
//! > ...
//! ```
//!
//! The file opens with `#` comment lines. Each step is a command line, then the lines
//! it printed, each behind `> `, then a blank line. `#` lines between steps are comments
//! and stay as they are. The first command is `start`.
//!
//! The scripted world: a perfect network that delivers every message after 100 µs in
//! the order sent; clocks that move only by `tick` (10 ms each: a hundred hops fit in
//! one tick); no random clients, no chaos.
//! Commands other than `tick` and `deliver` change the world at the current instant
//! and run nothing: what they cause waits for the next `deliver` or `tick`.
//!
//! | command | what it does |
//! |---------|--------------|
//! | `start N [seed=S] [pre_vote=on\|off] [thrifty=on\|off] [max_batch=K] [snapshot_every=K] [bugs=a,b] [pool=P]` | boots N nodes (the seed draws the electors' timeouts; `snapshot_every`: the state machines snapshot every K slots, default 40; `pool`: P nodes in all, those above N start joining: no configuration, nothing held) |
//! | `tick [K]` | K ticks (default 1): before each, every event due runs; then every live node's elector, proposer and learner tick; then what that caused is delivered |
//! | `deliver` | runs every event due before the next tick: every message in flight and all they cause, until the network is quiet (held or slowed messages and client retries wait for their time) |
//! | `campaign N` | N's election timer runs out now (its elector alone is ticked until its timeout fires): it asks for pre-votes, or campaigns |
//! | `propose N put K V` / `propose N cas K OLD NEW` / `propose N get K` | a new client (numbered 1, 2, ... in script order) submits the command through node N, which forwards it to the leader it knows and retries every 10 ticks (gives up after 100). `OLD` may be `-` (absent) |
//! | `read N K` | a new client reads K through node N by read index |
//! | `resubmit C N` | client C sends its request again, same request id, through node N |
//! | `crash N` / `restart N` | N loses all but its disk / comes back from it, and prints where its state machine starts (empty, or its snapshot below slot S) and which log slots it replays |
//! | `partition 1 2 \| 3` / `heal` | messages between groups are lost / the partition ends |
//! | `drop F` / `undrop [F]` | messages matching F are lost / no longer (no F: every drop rule goes) |
//! | `hold F` / `release [F]` | messages matching F wait / the rule goes and what it held is sent again |
//! | `slow N K` | acceptor N's replies arrive K ticks late (`slow N 0`: on time) |
//! | `hold snapshot N` / `release snapshot N` | node N's snapshots are taken but not made durable (`N snapshot below slot S taken, held: not durable yet`; a crash loses them) / they go on to be durable, and the next ones are not held |
//! | `trace on [-KIND ..]` / `trace off` | print every message as it is delivered (or dropped, or held), but for the kinds named (`-beacon`: the leader's empty `Decide`s); with the trace on, `tick` heads each tick that printed anything `-- tick N` |
//! | `status` | a line per node: elector role, highest ballot, leader, proposer, learned/commit/applied |
//! | `log N` / `acceptor N` | node N's decided log / its acceptor's promise and accepted values (from its disk), and which values it holds in memory |
//! | `local N K` | K in node N's state machine, read locally (no quorum: may be stale) |
//! | `disk N` | what node N restarts from: its snapshot (the slots below S it covers, its size), the decided log's slots, the acceptor's promise and accepted slots, and a held snapshot not yet durable |
//! | `session N open ttl=MS` / `session N close S` | a new client opens a lock-service session through node N (answered `session=S`) / closes session S |
//! | `keepalive N S` | a new client keeps session S alive through node N (answered `alive`, or `no session S` once it expired) |
//! | `lock N S NAME` / `unlock N S NAME` / `cancel N S NAME` | session S asks for lock NAME (`granted token=T` or `queued position=P`, P from 0; asking again answers `granted` once it is) / releases it / leaves its queue |
//! | `locks N` | the lock service in node N's state machine, read locally like `local`: log time, each session's TTL and last sign of life, each lock's holder, token and queue |
//! | `reconfigure N members=A,B,.. [from=C,..] [prev=K]` | a new client asks node N to change the members (one StopSign; new members pull the state up to it from C,..), against configuration K (default: the latest in force anywhere). Answered `applied: configuration ...`, `another change came first: configuration ...`, `refused: ...` (by the state machine: K is no longer in force) or `unknown (no answer)` |
//! | `members` | a line per node: the configuration its state machine has in force and whether it counts the node (`member of`, `removed by`), or `joining` |
//!
//! A filter `F` is `FROM->TO [KIND[:SLOT]]`: FROM and TO are node numbers or `*`,
//! KIND a message kind (`Prepare`, `Pull`, `Accept`, `Promise`, `Pulled`, `Accepted`,
//! `Rejected`, `Decide`, `Fetch`, `Fetched`, `Heartbeat`, `HeartbeatReply`, `PreVote`,
//! `PreVoteReply`, `Propose`, `ReadIndex`, `ReadIndexReply`, `ProposeStop`,
//! `SnapshotOffer`, `SnapshotRead`, `SnapshotChunk`), and `:SLOT` keeps only the
//! messages carrying that slot (`Accept`, `Accepted`, `Pull`, `Pulled`, `Decide`,
//! `Fetched`). Rules apply
//! on arrival, to messages between two nodes (a node's messages to itself take its
//! mailbox, never the network).
//!
//! With the trace on, what a node's elector and proposer tell each other prints too
//! (`2 elector->proposer Lead ballot=1.2`, `2 proposer->elector Elected ballot=1.2`,
//! likewise `StepDown`, `Preempted`, `PrepareTimedOut`; `trace on -Lead ..` skips them),
//! and a proposer telling its learner to catch up below the floor phase 1 found
//! (`3 proposer->learner CatchUp below=4 from=2`; `-CatchUp`), and a state machine
//! telling the other roles of a configuration it put in force
//! (`2 state_machine->roles Reconfigure configuration 1 [1, 2, 4] from slot 5`;
//! `-Reconfigure`).
//!
//! **Membership.** A configuration coming into force prints once, trace on or off, when
//! the first node's state machine applies it: `configuration 1 [1, 2, 4] from slot 5`.
//! The world plays a joining node's gateway: a hop after a configuration that counts a
//! node holding none that does (a joining node, or one removed before) is in force, its
//! learner is told to pull the state below the configuration's first slot from the
//! StopSign's `from` nodes (else the previous members that stay): `4 joins: its learner
//! migrates below=5 from [1, 2]`. Clients may ask any node (a script says which).
//!
//! Lock-service requests are clients too (numbered with the others, `resubmit` works on
//! them); each is made at its node's clock (`now_ms`, the simulated time in ms), which
//! marks the session alive. Sessions expire by *log time* only: every node's clock loop
//! runs every 100 ms (10 ticks), and while any session exists the leader's proposes the
//! lock service's clock command, its clock minus 100 ms. The scripted world prints it,
//! trace on or off: `1 clock Tick now_ms=400` when proposed, `1 clock Tick now_ms=400 ->
//! expired=[2]` when answered (`unknown (no answer)` if its node gave up or crashed).
//! Likewise `N snapshot durable below slot S` when a snapshot of node N becomes durable.
//!
//! Output lines: `client C at node N: OP -> ANSWER` when a client is answered (or
//! `unknown (no answer)` when its node crashed or gave up); trace lines `1->2 Accept
//! ballot=1.1 slots=0-1 [c1 put x=1, noop]`; and `violation: ...` when the safety checker
//! (run after every step) or a core's own assertion objects, after which the world stops.
//! A value prints as `noop` or `cK OP` (client K's command).

use super::world::{Filter, LOCAL_KINDS, LockOp, MESSAGE_KINDS, ScriptOp, ScriptSetup, Scripted, World};
use crate::messages::NodeId;
use crate::roles::bugs::PlantedBugs;
use std::path::Path;

/// One piece of a script file.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    /// A comment or blank line, kept as it is.
    Text(String),
    Step(Step),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Step {
    /// 1-based line number of the command.
    line: usize,
    command: String,
    expected: Vec<String>,
}

/// The marker of an output line.
const MARK: &str = "> ";

fn parse(name: &str, text: &str) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    let mut current: Option<Step> = None;
    let mut lines = text.lines().enumerate().peekable();
    if !lines.peek().is_some_and(|(_, l)| l.starts_with('#')) {
        return Err(format!(
            "{name}:1: a script opens with `#` lines saying what the scenario shows"
        ));
    }
    for (n, line) in lines {
        let line_no = n + 1;
        if let Some(out) = line.strip_prefix(MARK).or_else(|| (line == ">").then_some("")) {
            match &mut current {
                Some(step) => step.expected.push(out.to_string()),
                None => return Err(format!("{name}:{line_no}: an output line with no command above it")),
            }
        } else if line.trim().is_empty() {
            match current.take() {
                // A step owns the blank line that ends it.
                Some(step) => entries.push(Entry::Step(step)),
                None => entries.push(Entry::Text(line.to_string())),
            }
        } else if line.starts_with('#') {
            if let Some(step) = current.take() {
                entries.push(Entry::Step(step));
            }
            entries.push(Entry::Text(line.to_string()));
        } else {
            if let Some(step) = current.take() {
                entries.push(Entry::Step(step));
            }
            current = Some(Step {
                line: line_no,
                command: line.trim_end().to_string(),
                expected: Vec::new(),
            });
        }
    }
    if let Some(step) = current {
        entries.push(Entry::Step(step));
    }
    Ok(entries)
}

/// The file as it would be with `actual` as each step's output.
fn render(entries: &[Entry], actual: &[Vec<String>]) -> String {
    let mut s = String::new();
    let mut outputs = actual.iter();
    for e in entries {
        match e {
            Entry::Text(t) => {
                s += t;
                s.push('\n');
            }
            Entry::Step(step) => {
                s += &step.command;
                s.push('\n');
                for line in outputs.next().into_iter().flatten() {
                    s += MARK.trim_end();
                    if !line.is_empty() {
                        s.push(' ');
                        s += line;
                    }
                    s.push('\n');
                }
                s.push('\n');
            }
        }
    }
    while s.ends_with("\n\n") {
        s.pop();
    }
    s
}

/// A line diff of one step's output: ` ` kept, `-` expected only, `+` actual only.
fn diff_lines(expected: &[String], actual: &[String]) -> Vec<String> {
    let (n, m) = (expected.len(), actual.len());
    // lcs[i][j]: the longest common subsequence of expected[i..] and actual[j..].
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == actual[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            out.push(format!("  {}", expected[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("- {}", expected[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", actual[j]));
            j += 1;
        }
    }
    out
}

/// What running one script gave.
#[derive(Debug)]
pub struct ScriptRun {
    /// The script with the output it printed now.
    pub rendered: String,
    /// A readable diff of every step whose output differs, or `None`.
    pub mismatch: Option<String>,
}

/// Runs the script `text` (named `name` in messages). `Err` for a script that cannot
/// run (a parse error or a command that makes no sense), naming the file and line.
pub fn run_script(name: &str, text: &str) -> Result<ScriptRun, String> {
    let entries = parse(name, text)?;
    let mut runner = Runner { world: None };
    let mut actual = Vec::new();
    let mut diff = String::new();
    for e in &entries {
        let Entry::Step(step) = e else { continue };
        let out = runner
            .execute(&step.command)
            .map_err(|e| format!("{name}:{}: `{}`: {e}", step.line, step.command))?;
        if out != step.expected {
            diff += &format!("--- {name}:{}: `{}` (- expected, + actual)\n", step.line, step.command);
            for line in diff_lines(&step.expected, &out) {
                diff += &line;
                diff.push('\n');
            }
        }
        actual.push(out);
    }
    Ok(ScriptRun {
        rendered: render(&entries, &actual),
        mismatch: (!diff.is_empty()).then_some(diff),
    })
}

/// Runs the script file at `path`. With `update`, rewrites its recorded output in place
/// when it differs; otherwise a difference is an `Err` with the diff.
pub fn check_file(path: &Path, update: bool) -> Result<(), String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: cannot read: {e}"))?;
    let run = run_script(&name, &text)?;
    match run.mismatch {
        None => Ok(()),
        Some(_) if update => std::fs::write(path, &run.rendered).map_err(|e| format!("{name}: cannot write: {e}")),
        Some(diff) => Err(diff),
    }
}

/// Whether `UPDATE_SCENARIOS=1` asks to rewrite the expected outputs.
pub fn update_requested() -> bool {
    std::env::var("UPDATE_SCENARIOS").is_ok_and(|v| v.trim() == "1")
}

struct Runner {
    world: Option<Scripted>,
}

/// A command whose one argument is a node.
type NodeCommand = fn(&mut Scripted, NodeId) -> Result<(), String>;

fn node_arg(word: Option<&str>) -> Result<NodeId, String> {
    let word = word.ok_or("a node number is missing")?;
    word.parse().map_err(|_| format!("{word:?} is not a node number"))
}

fn count_arg(word: Option<&str>, default: u64) -> Result<u64, String> {
    word.map_or(Ok(default), |w| w.parse().map_err(|_| format!("{w:?} is not a count")))
}

fn key_arg<'a>(word: Option<&'a str>, what: &str) -> Result<&'a str, String> {
    word.ok_or_else(|| format!("{what} is missing"))
}

fn on_off(value: &str) -> Result<bool, String> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("{other:?}: say on or off")),
    }
}

fn parse_start(args: &[&str]) -> Result<ScriptSetup, String> {
    let mut setup = ScriptSetup {
        nodes: node_arg(args.first().copied())? as usize,
        seed: 0,
        pre_vote: true,
        thrifty: true,
        max_batch: 256,
        snapshot_every: None,
        bugs: PlantedBugs::default(),
        pool: None,
    };
    if !(1..=9).contains(&setup.nodes) {
        return Err("a scripted cluster has 1 to 9 nodes".to_string());
    }
    for arg in &args[1..] {
        let (key, value) = arg
            .split_once('=')
            .ok_or_else(|| format!("{arg:?}: expected key=value"))?;
        match key {
            "seed" => setup.seed = value.parse().map_err(|_| format!("{value:?} is not a seed"))?,
            "pre_vote" => setup.pre_vote = on_off(value)?,
            "thrifty" => setup.thrifty = on_off(value)?,
            "max_batch" => {
                setup.max_batch = value.parse().map_err(|_| format!("{value:?} is not a batch size"))?;
            }
            "snapshot_every" => {
                let every = value
                    .parse()
                    .map_err(|_| format!("{value:?} is not a number of slots"))?;
                setup.snapshot_every = Some(every);
            }
            "bugs" => setup.bugs = super::parse_bugs(value)?,
            "pool" => {
                let pool: usize = value
                    .parse()
                    .map_err(|_| format!("{value:?} is not a number of nodes"))?;
                if !(setup.nodes..=9).contains(&pool) {
                    return Err(format!("a pool holds the {} nodes and at most 9 in all", setup.nodes));
                }
                setup.pool = Some(pool);
            }
            other => return Err(format!("unknown start option {other:?}")),
        }
    }
    Ok(setup)
}

/// `A,B,..`: node numbers.
fn node_list(value: &str) -> Result<Vec<NodeId>, String> {
    value
        .split(',')
        .filter(|w| !w.is_empty())
        .map(|w| node_arg(Some(w)))
        .collect()
}

/// A `reconfigure` line: through which node, the members, the sources, and the
/// configuration the change is made against (`None`: the latest).
type Reconfigure = (NodeId, Vec<NodeId>, Vec<NodeId>, Option<u64>);

/// `reconfigure N members=A,B,.. [from=C,..] [prev=K]`.
fn parse_reconfigure(args: &[&str]) -> Result<Reconfigure, String> {
    let node = node_arg(args.first().copied())?;
    let (mut members, mut sources, mut prev) = (None, Vec::new(), None);
    for arg in args.iter().skip(1) {
        let (key, value) = arg
            .split_once('=')
            .ok_or_else(|| format!("{arg:?}: expected key=value"))?;
        match key {
            "members" => members = Some(node_list(value)?),
            "from" => sources = node_list(value)?,
            "prev" => {
                prev = Some(
                    value
                        .parse()
                        .map_err(|_| format!("{value:?} is not a configuration id"))?,
                )
            }
            other => return Err(format!("unknown reconfigure option {other:?} (members=, from=, prev=)")),
        }
    }
    let members = members.ok_or("`reconfigure N members=A,B,..`: the members are missing")?;
    if members.is_empty() {
        return Err("a configuration has at least one member".to_string());
    }
    Ok((node, members, sources, prev))
}

/// `FROM->TO [KIND[:SLOT]]`.
fn parse_filter(args: &[&str]) -> Result<Filter, String> {
    let link = args.first().ok_or("a link FROM->TO is missing")?;
    let (from, to) = link
        .split_once("->")
        .ok_or_else(|| format!("{link:?}: a link is FROM->TO"))?;
    let end = |s: &str| -> Result<Option<NodeId>, String> {
        if s == "*" {
            Ok(None)
        } else {
            node_arg(Some(s)).map(Some)
        }
    };
    let (kind, slot) = match args.get(1) {
        None | Some(&"*") => (None, None),
        Some(k) => {
            let (kind, slot) = match k.split_once(':') {
                Some((kind, slot)) => (kind, Some(slot.parse().map_err(|_| format!("{slot:?} is not a slot"))?)),
                None => (*k, None),
            };
            if !MESSAGE_KINDS.contains(&kind) {
                return Err(format!(
                    "unknown message kind {kind:?} (one of {})",
                    MESSAGE_KINDS.join(", ")
                ));
            }
            (Some(kind.to_string()), slot)
        }
    };
    if args.len() > 2 {
        return Err("a filter is FROM->TO [KIND[:SLOT]]".to_string());
    }
    Ok(Filter {
        from: end(from)?,
        to: end(to)?,
        kind,
        slot,
    })
}

fn parse_op(args: &[&str]) -> Result<ScriptOp, String> {
    let words = |n: usize| -> Result<(), String> {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!("`{}` takes {} argument(s)", args[0], n - 1))
        }
    };
    match args.first().copied() {
        Some("put") => {
            words(3)?;
            Ok(ScriptOp::Put {
                key: args[1].to_string(),
                value: args[2].to_string(),
            })
        }
        Some("cas") => {
            words(4)?;
            Ok(ScriptOp::Cas {
                key: args[1].to_string(),
                expected: (args[2] != "-").then(|| args[2].to_string()),
                new: args[3].to_string(),
            })
        }
        Some("get") => {
            words(2)?;
            Ok(ScriptOp::Get {
                key: args[1].to_string(),
            })
        }
        _ => Err("an operation is `put K V`, `cas K OLD NEW` or `get K`".to_string()),
    }
}

/// `session N open ttl=MS` / `session N close S`, `keepalive N S`, `lock N S NAME`,
/// `unlock N S NAME`, `cancel N S NAME`: the node and the request.
fn parse_lock_op(name: &str, args: &[&str]) -> Result<(NodeId, LockOp), String> {
    let node = node_arg(args.first().copied())?;
    let session = |k: usize| count_arg(Some(key_arg(args.get(k).copied(), "a session number")?), 0);
    let (op, words) = match (name, args.get(1).copied()) {
        ("session", Some("open")) => {
            let ttl = key_arg(args.get(2).copied(), "ttl=MS")?;
            let ttl_ms = ttl
                .strip_prefix("ttl=")
                .and_then(|ms| ms.parse().ok())
                .ok_or_else(|| format!("{ttl:?}: say ttl=MS"))?;
            (LockOp::Open { ttl_ms }, 3)
        }
        ("session", Some("close")) => (LockOp::Close { session: session(2)? }, 3),
        ("session", _) => return Err("`session N open ttl=MS` or `session N close S`".to_string()),
        ("keepalive", _) => (LockOp::KeepAlive { session: session(1)? }, 2),
        _ => {
            // `lock N S NAME` and the like: the session, then the lock's name.
            let session = session(1)?;
            let lock = key_arg(args.get(2).copied(), "a lock name")?.to_string();
            let op = match name {
                "lock" => LockOp::Lock { session, name: lock },
                "unlock" => LockOp::Unlock { session, name: lock },
                _ => LockOp::Cancel { session, name: lock },
            };
            (op, 3)
        }
    };
    if args.len() > words {
        return Err(format!("`{name}` takes {words} argument(s)"));
    }
    Ok((node, op))
}

impl Runner {
    fn execute(&mut self, command: &str) -> Result<Vec<String>, String> {
        let words: Vec<&str> = command.split_whitespace().collect();
        let (&name, args) = words.split_first().ok_or("an empty command")?;
        if name == "start" {
            if self.world.is_some() {
                return Err("the world has started already".to_string());
            }
            let world = World::scripted(&parse_start(args)?);
            let w = self.world.insert(world);
            return Ok(w.take_output());
        }
        let w = self.world.as_mut().ok_or("the first command is `start N`")?;
        if w.stopped() {
            return Ok(vec!["(the world stopped at a violation)".to_string()]);
        }
        let arg = |k: usize| args.get(k).copied();
        let no_more = |n: usize| -> Result<(), String> {
            if args.len() > n {
                Err(format!("`{name}` takes at most {n} argument(s)"))
            } else {
                Ok(())
            }
        };
        // The commands whose one argument is a node.
        let on_node: Option<NodeCommand> = match name {
            "campaign" => Some(Scripted::campaign),
            "crash" => Some(Scripted::crash),
            "restart" => Some(Scripted::restart),
            "log" => Some(Scripted::log),
            "acceptor" => Some(Scripted::acceptor),
            "disk" => Some(Scripted::disk),
            "locks" => Some(Scripted::locks),
            _ => None,
        };
        if let Some(command) = on_node {
            no_more(1)?;
            command(w, node_arg(arg(0))?)?;
            return Ok(w.take_output());
        }
        match name {
            "tick" => {
                no_more(1)?;
                w.tick(count_arg(arg(0), 1)?);
            }
            "deliver" => {
                no_more(0)?;
                w.deliver();
            }
            "propose" => {
                let node = node_arg(arg(0))?;
                w.submit(node, &parse_op(&args[1..])?, false)?;
            }
            "read" => {
                no_more(2)?;
                let node = node_arg(arg(0))?;
                let key = key_arg(arg(1), "a key")?.to_string();
                w.submit(node, &ScriptOp::Get { key }, true)?;
            }
            "resubmit" => {
                no_more(2)?;
                let client = count_arg(Some(key_arg(arg(0), "a client number")?), 0)?;
                w.resubmit(client, node_arg(arg(1))?)?;
            }
            "partition" => {
                let mut groups = vec![Vec::new()];
                for word in args {
                    for (k, part) in word.split('|').enumerate() {
                        if k > 0 {
                            groups.push(Vec::new());
                        }
                        if !part.is_empty() {
                            let last = groups.len() - 1;
                            groups[last].push(node_arg(Some(part))?);
                        }
                    }
                }
                if groups.len() < 2 || groups.iter().any(Vec::is_empty) {
                    return Err("a partition is two or more groups of nodes split by `|`".to_string());
                }
                w.partition(&groups)?;
            }
            "heal" => {
                no_more(0)?;
                w.heal();
            }
            "drop" => w.add_drop(parse_filter(args)?),
            "undrop" => {
                let f = if args.is_empty() {
                    None
                } else {
                    Some(parse_filter(args)?)
                };
                w.undrop(f.as_ref())?;
            }
            "hold" if arg(0) == Some("snapshot") => {
                no_more(2)?;
                w.hold_snapshots(node_arg(arg(1))?)?;
            }
            "release" if arg(0) == Some("snapshot") => {
                no_more(2)?;
                w.release_snapshots(node_arg(arg(1))?)?;
            }
            "hold" => w.add_hold(parse_filter(args)?),
            "release" => {
                let f = if args.is_empty() {
                    None
                } else {
                    Some(parse_filter(args)?)
                };
                w.release(f.as_ref())?;
            }
            "slow" => {
                no_more(2)?;
                let node = node_arg(arg(0))?;
                w.set_slow(node, count_arg(Some(key_arg(arg(1), "a number of ticks")?), 0)?)?;
            }
            "trace" => {
                let on = on_off(key_arg(arg(0), "on or off")?)?;
                let mut skip = Vec::new();
                for word in &args[1..] {
                    let kind = word
                        .strip_prefix('-')
                        .filter(|k| on && (MESSAGE_KINDS.contains(k) || LOCAL_KINDS.contains(k) || *k == "beacon"))
                        .ok_or_else(|| format!("{word:?}: `trace on` skips kinds written -KIND (or -beacon)"))?;
                    skip.push(kind.to_string());
                }
                w.set_trace(on, skip);
            }
            "status" => {
                no_more(0)?;
                w.status();
            }
            "members" => {
                no_more(0)?;
                w.members();
            }
            "reconfigure" => {
                let (node, members, sources, prev) = parse_reconfigure(args)?;
                w.reconfigure(node, &members, &sources, prev)?;
            }
            "local" => {
                no_more(2)?;
                w.local(node_arg(arg(0))?, key_arg(arg(1), "a key")?)?;
            }
            "session" | "keepalive" | "lock" | "unlock" | "cancel" => {
                let (node, op) = parse_lock_op(name, args)?;
                w.lock_request(node, &op)?;
            }
            other => return Err(format!("unknown command {other:?}")),
        }
        Ok(w.take_output())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = "# A leader is elected and answers one put.

start 3

campaign 1

deliver

propose 1 put x 1

deliver
> client 1 at node 1: put x=1 -> ok

local 1 x
> node 1 (applied 1) has x = 1
";

    #[test]
    fn sim_script_tiny_scenario_passes_and_renders_unchanged() {
        let run = run_script("tiny.txt", TINY).expect("runs");
        assert_eq!(run.mismatch, None);
        assert_eq!(run.rendered, TINY);
    }

    #[test]
    fn sim_script_changed_expectation_fails_with_a_diff_naming_file_and_line() {
        let wrong = TINY.replace("has x = 1", "has x = 2");
        let run = run_script("tiny.txt", &wrong).expect("runs");
        let diff = run.mismatch.expect("a mismatch");
        assert!(diff.contains("tiny.txt:14: `local 1 x`"), "{diff}");
        assert!(diff.contains("- node 1 (applied 1) has x = 2"), "{diff}");
        assert!(diff.contains("+ node 1 (applied 1) has x = 1"), "{diff}");
        // The rewrite puts the actual output back.
        assert_eq!(run.rendered, TINY);
    }

    #[test]
    fn sim_script_errors_name_file_and_line() {
        let err = run_script("bad.txt", "# x\n\nstart 3\n\nfrobnicate 2\n").expect_err("unknown command");
        assert!(err.starts_with("bad.txt:5: `frobnicate 2`"), "{err}");
        let err = run_script("bad.txt", "start 3\n").expect_err("no opening comment");
        assert!(err.starts_with("bad.txt:1:"), "{err}");
        let err = run_script("bad.txt", "# x\n> stray\n").expect_err("stray output");
        assert!(err.starts_with("bad.txt:2:"), "{err}");
        let err = run_script("bad.txt", "# x\n\nstart 3\n\ndrop 1->2 Acept\n").expect_err("bad kind");
        assert!(err.contains("unknown message kind"), "{err}");
    }

    #[test]
    fn sim_script_lock_and_snapshot_commands_check_their_arguments() {
        let err = |command: &str| {
            run_script("bad.txt", &format!("# x\n\nstart 3 snapshot_every=2\n\n{command}\n")).expect_err(command)
        };
        assert!(err("session 1 open ttl=soon").contains("say ttl=MS"));
        assert!(err("session 1 reopen").contains("`session N open ttl=MS`"));
        assert!(err("lock 1 1").contains("a lock name is missing"));
        assert!(err("keepalive 1 1 2").contains("takes 2 argument(s)"));
        assert!(err("release snapshot 1").contains("not held"));
        assert!(err("locks 4").contains("no node 4"));
        let err = run_script("bad.txt", "# x\n\nstart 3 snapshot_every=often\n").expect_err("bad interval");
        assert!(err.contains("not a number of slots"), "{err}");
    }

    #[test]
    fn sim_script_membership_commands_check_their_arguments() {
        let err = |start: &str, command: &str| {
            run_script("bad.txt", &format!("# x\n\n{start}\n\n{command}\n")).expect_err(command)
        };
        assert!(err("start 3 pool=2", "members").contains("a pool holds the 3 nodes"));
        assert!(err("start 3 pool=many", "members").contains("not a number of nodes"));
        assert!(err("start 3 pool=4", "reconfigure 1").contains("the members are missing"));
        assert!(err("start 3 pool=4", "reconfigure 1 members=").contains("at least one member"));
        assert!(err("start 3 pool=4", "reconfigure 1 members=1,5").contains("no node 5"));
        assert!(err("start 3 pool=4", "reconfigure 1 members=1,2 from=9").contains("no node 9"));
        assert!(err("start 3 pool=4", "reconfigure 1 members=1,2 prev=x").contains("not a configuration id"));
        assert!(err("start 3 pool=4", "reconfigure 1 members=1,2 to=3").contains("unknown reconfigure option"));
        assert!(err("start 3 pool=4", "members 2").contains("takes at most 0"));
    }

    #[test]
    fn sim_script_check_file_fails_then_update_rewrites_in_place() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("tiny.txt");
        let wrong = TINY.replace("put x=1 -> ok", "put x=1 -> failed");
        std::fs::write(&path, &wrong).expect("written");
        let err = check_file(&path, false).expect_err("the expectation is wrong");
        assert!(err.contains("tiny.txt:11: `deliver`"), "{err}");
        assert!(err.contains("- client 1 at node 1: put x=1 -> failed"), "{err}");
        assert!(err.contains("+ client 1 at node 1: put x=1 -> ok"), "{err}");
        check_file(&path, true).expect("rewritten");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), TINY);
        check_file(&path, false).expect("passes now");
    }

    #[test]
    fn sim_script_diff_marks_missing_and_extra_lines() {
        let e = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let d = diff_lines(&e(&["a", "b", "c"]), &e(&["a", "c", "d"]));
        assert_eq!(d, e(&["  a", "- b", "  c", "+ d"]));
        // A changed line reads as the expected one, then the actual one.
        assert_eq!(diff_lines(&e(&["x = 9"]), &e(&["x = 1"])), e(&["- x = 9", "+ x = 1"]));
    }
}
