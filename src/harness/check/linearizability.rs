//! # A linearizability checker for client histories
//!
//! A history is what the clients saw: for every operation, its input, the time it was
//! invoked, and either its response and the time that came, or nothing (the request
//! timed out, the node died, the server answered 503). The history is *linearizable*
//! (Herlihy & Wing 1990) if every operation can be given one instant between its
//! invocation and its response at which it takes effect, such that executing the
//! operations one at a time in the order of those instants, on one copy of a sequential
//! *model* of the service, produces exactly the responses the clients saw. An operation
//! without a response may take effect at any instant after its invocation, or never.
//!
//! ## The search
//!
//! The checker is of the kind Porcupine (Anish Athalye's checker in Go) made practical;
//! the code here is written from the papers, not copied:
//!
//! * **Wing & Gong** (1993, *Testing and verifying concurrent objects*): walk the
//!   history's events in time order. Any operation whose invocation comes before the
//!   first response not yet accounted for is a candidate to take effect next; try one
//!   (step the model; if the model refuses the recorded output, try the next candidate),
//!   remove it from the history, and start again from the front. Reaching a response
//!   whose operation has not taken effect means the choices so far were wrong:
//!   backtrack, undo the last choice, and try the candidate after it. The history is
//!   linearizable once every operation with a response has taken effect. The events
//!   live in a doubly linked list, so taking an operation out and putting it back
//!   (dancing links) costs O(1).
//! * **Lowe** (2017, *Testing for linearizability*): the same set of operations taken in
//!   two different orders often leaves the model in the same state, and from there the
//!   rest of the search is the same. A cache of (set of operations taken, as a bitset;
//!   model state) pairs already explored cuts those repeats, which turns the search from
//!   factorial to, in practice, close to linear on histories of real systems.
//! * **Partitioning** (Porcupine, and Lowe's "compositionality" (Herlihy & Wing
//!   §3.3)): a history of a service of independent objects (keys, locks) is
//!   linearizable if and only if the sub-history of each object is. The model says
//!   which object an operation touches ([`Model::partition`]) and each partition is
//!   searched on its own: many small searches instead of one exponential one.
//!
//! Operations without a response are handled as Porcupine does, by giving them no
//! response event at all: they never block the walk (no response to reach), they may be
//! taken at any point after their invocation, and the search is done without them once
//! every operation that did answer has taken effect ("never" is the same as "after
//! everything else"). Operations known to have completed at a time but whose output was
//! not observed (`ret` set, `output` `None`) must take effect inside their interval, with
//! whatever output the model computes.
//!
//! ## Budgets
//!
//! The search is exponential in the worst case (it is NP-complete, Gibbons & Korach
//! 1997). A [`Budget`] bounds the model steps and the wall-clock time; a partition that
//! exhausts it is reported as [`Verdict::Unknown`], never as a pass.
//!
//! ## The smallest failing window
//!
//! A partition that fails is shrunk before it is reported, with two reductions that are
//! both sound (whatever window they produce, the window failing implies the whole
//! history fails):
//!
//! 1. *The shortest failing prefix in time.* Cutting the history at time `T` keeps the
//!    operations invoked by `T`, and forgets the responses of those still running at
//!    `T` (they become operations without a response). Any linearization of the whole
//!    history, cut at `T`, is one of the cut history, so failing is monotone in `T`: a
//!    binary search over the response times finds the earliest moment at which the
//!    history was already not linearizable.
//! 2. *Trimming the front.* If the model can stand for "any state at all"
//!    ([`Model::any_state`]), the operations before a quiet moment (one at which no
//!    operation with a response is running) are dropped and the rest is checked from
//!    that any-state; the latest quiet moment that still fails gives the window. It is
//!    sound because everything that finished before a quiet moment precedes, in every
//!    linearization, everything that answered after it, so some concrete state stands
//!    between them. Operations without a response from before the moment stay (they may
//!    take effect later).
//!
//! The report prints the window's operations in invocation order, with the longest
//! order of them the search managed to linearize and the model state it got stuck in.

use std::collections::HashSet;
use std::fmt::{self, Debug, Write as _};
use std::hash::Hash;
use std::time::{Duration, Instant};

// ------------------------------------------------------------------------------------
// Histories and models.

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// Who invoked it (for the report only).
    pub client: u64,
    pub input: I,
    /// When it was invoked (any unit, one clock for the whole history).
    pub call: u64,
    /// When its response came; `None`: it never came (a timeout, a crash, a 503), so
    /// the operation may take effect at any time after `call`, or never.
    pub ret: Option<u64>,
    /// What it answered; `None` with `ret` set: it completed by `ret` but its output
    /// was not observed. Ignored when `ret` is `None`.
    pub output: Option<O>,
}

impl<I, O> Operation<I, O> {
    /// An operation that answered `output` at `ret`.
    pub fn done(client: u64, input: I, call: u64, ret: u64, output: O) -> Self {
        Operation {
            client,
            input,
            call,
            ret: Some(ret),
            output: Some(output),
        }
    }

    /// An operation that never answered.
    pub fn unknown(client: u64, input: I, call: u64) -> Self {
        Operation {
            client,
            input,
            call,
            ret: None,
            output: None,
        }
    }

    /// True if the operation must take effect (it completed).
    pub fn required(&self) -> bool {
        self.ret.is_some()
    }

    fn observed(&self) -> Option<&O> {
        if self.ret.is_some() { self.output.as_ref() } else { None }
    }
}

/// A sequential specification of the service.
pub trait Model {
    type Input: Clone + Debug;
    type Output: Clone + Debug;
    type State: Clone + Eq + Hash + Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Executes `input` in `state`. With `Some(output)`, returns the new state if the
    /// model could have answered `output`, `None` if not. With `None` (the output was
    /// not observed), returns the state the operation leads to; it should always be
    /// `Some`.
    fn step(&self, state: &Self::State, input: &Self::Input, output: Option<&Self::Output>) -> Option<Self::State>;

    /// The independent object an operation touches (a key, a lock name). Operations of
    /// different partitions are checked separately. The default is one partition.
    fn partition(&self, _input: &Self::Input) -> String {
        String::new()
    }

    /// A state that stands for every state, if the model can express one (then every
    /// step from it must accept whatever some concrete state would accept). Used to
    /// trim a failing window from the front; `None` (the default) keeps the front.
    fn any_state(&self) -> Option<Self::State> {
        None
    }

    /// True if the operation never changes the state: such operations without a
    /// response are dropped before the search.
    fn is_read_only(&self, _input: &Self::Input) -> bool {
        false
    }

    /// One operation, readably.
    fn describe(&self, input: &Self::Input, output: Option<&Self::Output>) -> String {
        match output {
            Some(o) => format!("{input:?} -> {o:?}"),
            None => format!("{input:?} -> ?"),
        }
    }

    /// One state, readably.
    fn describe_state(&self, state: &Self::State) -> String {
        format!("{state:?}")
    }
}

// ------------------------------------------------------------------------------------
// Budgets and verdicts.

/// How much search a check may spend (over all its partitions, shrinking included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Model steps, at most.
    pub max_steps: u64,
    /// Wall-clock time, at most.
    pub max_time: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            max_steps: 20_000_000,
            max_time: Duration::from_secs(20),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable,
    /// The budget ran out before the search could decide.
    Unknown,
}

/// The outcome of one partition.
#[derive(Clone, Debug)]
pub struct PartitionResult {
    pub partition: String,
    pub operations: usize,
    pub verdict: Verdict,
    pub steps: u64,
}

/// Why a history is not linearizable: the smallest failing window of one partition.
#[derive(Clone, Debug)]
pub struct Violation {
    pub partition: String,
    /// Indices into the checked history of the window's operations, in invocation order.
    pub window: Vec<usize>,
    /// Operations of the partition (for scale).
    pub partition_len: usize,
    /// True if the window was checked from "any state" (its front was trimmed).
    pub from_any_state: bool,
    /// The cut time: responses after it were forgotten.
    pub cut: u64,
    /// The readable story.
    pub text: String,
}

/// The outcome of a check.
#[derive(Clone, Debug)]
pub struct CheckResult {
    pub verdict: Verdict,
    pub partitions: Vec<PartitionResult>,
    /// The first failing partition, shrunk.
    pub violation: Option<Violation>,
    pub operations: usize,
    pub steps: u64,
    pub elapsed: Duration,
}

impl CheckResult {
    pub fn is_linearizable(&self) -> bool {
        self.verdict == Verdict::Linearizable
    }
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unknown: Vec<&str> = self
            .partitions
            .iter()
            .filter(|p| p.verdict == Verdict::Unknown)
            .map(|p| p.partition.as_str())
            .collect();
        write!(
            f,
            "{:?}: {} operations in {} partitions, {} model steps, {:.2?}",
            self.verdict,
            self.operations,
            self.partitions.len(),
            self.steps,
            self.elapsed
        )?;
        if !unknown.is_empty() {
            write!(f, "; budget exhausted on partitions {unknown:?}")?;
        }
        if let Some(v) = &self.violation {
            write!(f, "\n{}", v.text)?;
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------
// The search.

struct Meter {
    steps: u64,
    max_steps: u64,
    deadline: Instant,
}

impl Meter {
    fn new(budget: Budget) -> Self {
        Meter {
            steps: 0,
            max_steps: budget.max_steps,
            deadline: Instant::now() + budget.max_time,
        }
    }

    /// Counts one step; false once the budget is spent.
    fn tick(&mut self) -> bool {
        self.steps += 1;
        if self.steps > self.max_steps {
            return false;
        }
        // The clock is read now and then: it is slower than a model step.
        !(self.steps.is_multiple_of(1024) && Instant::now() >= self.deadline)
    }

    fn spent(&self) -> bool {
        self.steps > self.max_steps || Instant::now() >= self.deadline
    }
}

/// What one search found.
enum Search<S> {
    Ok,
    /// Not linearizable; the longest linearized order (indices into the searched
    /// operations) and the state after it.
    Illegal {
        deepest: Vec<usize>,
        state: S,
    },
    OutOfBudget,
}

#[derive(Clone, Copy)]
enum Event {
    Call(usize),
    Return(usize),
}

/// A set of operation indices.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}

/// The Wing & Gong search with Lowe's cache over `ops` (one partition), from `init`.
fn search<M: Model>(
    model: &M,
    ops: &[&Operation<M::Input, M::Output>],
    init: M::State,
    meter: &mut Meter,
) -> Search<M::State> {
    let n = ops.len();
    // The events, in time order; an invocation before a response at the same time (the
    // two operations overlap, which is the lenient reading).
    let mut events: Vec<(u64, u8, usize, Event)> = Vec::with_capacity(2 * n);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.call, 0, i, Event::Call(i)));
        if let Some(ret) = op.ret {
            events.push((ret.max(op.call), 1, i, Event::Return(i)));
        }
    }
    events.sort_by_key(|&(t, kind, i, _)| (t, kind, i));
    // A doubly linked list over the events; node 0 is the head sentinel, event k is
    // node k + 1, and NIL ends the list.
    const NIL: usize = usize::MAX;
    let len = events.len() + 1;
    let mut next: Vec<usize> = (1..=len).map(|k| if k == len { NIL } else { k }).collect();
    let mut prev: Vec<usize> = (0..len).map(|k| if k == 0 { NIL } else { k - 1 }).collect();
    let mut call_node = vec![NIL; n];
    let mut ret_node = vec![NIL; n];
    for (k, &(_, _, _, e)) in events.iter().enumerate() {
        match e {
            Event::Call(i) => call_node[i] = k + 1,
            Event::Return(i) => ret_node[i] = k + 1,
        }
    }
    let event_at = |node: usize| events[node - 1].3;
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, node: usize| {
        let (p, q) = (prev[node], next[node]);
        next[p] = q;
        if q != NIL {
            prev[q] = p;
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, node: usize| {
        let (p, q) = (prev[node], next[node]);
        next[p] = node;
        if q != NIL {
            prev[q] = node;
        }
    };

    let mut remaining = ops.iter().filter(|op| op.required()).count();
    let mut state = init;
    let mut taken = Bits::new(n);
    let mut cache: HashSet<(Bits, M::State)> = HashSet::new();
    // (call node of the operation taken, state before it)
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut deepest: (Vec<usize>, M::State) = (Vec::new(), state.clone());
    let mut cur = next[0];
    while remaining > 0 {
        if cur == NIL {
            // Cannot happen: a required operation not taken keeps its response in the
            // list, and the walk stops there. Treat it as a dead end all the same.
            break;
        }
        match event_at(cur) {
            Event::Call(i) => {
                if !meter.tick() {
                    return Search::OutOfBudget;
                }
                let op = ops[i];
                let moved = model.step(&state, &op.input, op.observed()).and_then(|s| {
                    let mut t = taken.clone();
                    t.set(i);
                    cache.insert((t, s.clone())).then_some(s)
                });
                if let Some(s) = moved {
                    taken.set(i);
                    stack.push((cur, std::mem::replace(&mut state, s)));
                    unlink(&mut next, &mut prev, cur);
                    if ret_node[i] != NIL {
                        unlink(&mut next, &mut prev, ret_node[i]);
                    }
                    if op.required() {
                        remaining -= 1;
                    }
                    if stack.len() > deepest.0.len() {
                        deepest = (
                            stack.iter().map(|&(node, _)| op_of(event_at(node))).collect(),
                            state.clone(),
                        );
                    }
                    cur = next[0];
                } else {
                    cur = next[cur];
                }
            }
            Event::Return(_) => {
                // An operation that answered here has not taken effect: undo the last
                // choice and try the candidate after it.
                let Some((node, before)) = stack.pop() else {
                    return Search::Illegal {
                        deepest: deepest.0,
                        state: deepest.1,
                    };
                };
                let i = op_of(event_at(node));
                state = before;
                taken.clear(i);
                if ret_node[i] != NIL {
                    relink(&mut next, &mut prev, ret_node[i]);
                }
                relink(&mut next, &mut prev, node);
                if ops[i].required() {
                    remaining += 1;
                }
                cur = next[node];
            }
        }
    }
    if remaining == 0 {
        Search::Ok
    } else {
        Search::Illegal {
            deepest: deepest.0,
            state: deepest.1,
        }
    }
}

fn op_of(e: Event) -> usize {
    match e {
        Event::Call(i) | Event::Return(i) => i,
    }
}

// ------------------------------------------------------------------------------------
// Checking a history.

/// Checks `history` against `model` within `budget`.
pub fn check<M: Model>(model: &M, history: &[Operation<M::Input, M::Output>], budget: Budget) -> CheckResult {
    let start = Instant::now();
    let mut meter = Meter::new(budget);
    // Partition, in order of first appearance; drop read-only operations that never
    // answered (they cannot matter).
    let mut parts: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, op) in history.iter().enumerate() {
        if !op.required() && model.is_read_only(&op.input) {
            continue;
        }
        let key = model.partition(&op.input);
        match parts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(i),
            None => parts.push((key, vec![i])),
        }
    }
    let mut results = Vec::new();
    let mut violation = None;
    let mut verdict = Verdict::Linearizable;
    for (key, idx) in &parts {
        let before = meter.steps;
        let ops: Vec<&Operation<M::Input, M::Output>> = idx.iter().map(|&i| &history[i]).collect();
        let v = match search(model, &ops, model.init(), &mut meter) {
            Search::Ok => Verdict::Linearizable,
            Search::Illegal { .. } => Verdict::NotLinearizable,
            Search::OutOfBudget => Verdict::Unknown,
        };
        results.push(PartitionResult {
            partition: key.clone(),
            operations: idx.len(),
            verdict: v,
            steps: meter.steps - before,
        });
        match v {
            Verdict::NotLinearizable => {
                verdict = Verdict::NotLinearizable;
                if violation.is_none() {
                    // Shrinking gets a budget of its own, as large as the check's.
                    let mut shrink_meter = Meter::new(budget);
                    violation = Some(shrink(model, history, key, idx, &mut shrink_meter));
                    meter.steps += shrink_meter.steps;
                }
            }
            Verdict::Unknown if verdict == Verdict::Linearizable => verdict = Verdict::Unknown,
            _ => {}
        }
        if meter.spent() && verdict != Verdict::NotLinearizable {
            // Nothing left to decide the rest with.
            verdict = Verdict::Unknown;
            if v != Verdict::Unknown {
                results.push(PartitionResult {
                    partition: "(the partitions not checked)".into(),
                    operations: 0,
                    verdict: Verdict::Unknown,
                    steps: 0,
                });
            }
            break;
        }
    }
    CheckResult {
        verdict,
        partitions: results,
        violation,
        operations: history.len(),
        steps: meter.steps,
        elapsed: start.elapsed(),
    }
}

/// An operation of model `M`.
type OpOf<M> = Operation<<M as Model>::Input, <M as Model>::Output>;
/// Operations with their indices in the checked history.
type Indexed<M> = Vec<(usize, OpOf<M>)>;

/// The partition `idx` of `history` (which fails), shrunk to its smallest failing window.
fn shrink<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    key: &str,
    idx: &[usize],
    meter: &mut Meter,
) -> Violation {
    // 1. The earliest cut time at which the partition already fails.
    let mut rets: Vec<u64> = idx.iter().filter_map(|&i| history[i].ret).collect();
    rets.sort_unstable();
    rets.dedup();
    let cut_at = |t: u64| -> Indexed<M> {
        idx.iter()
            .filter(|&&i| history[i].call <= t)
            .map(|&i| {
                let mut op = history[i].clone();
                if op.ret.is_some_and(|r| r > t) {
                    op.ret = None;
                    op.output = None;
                }
                (i, op)
            })
            .filter(|(_, op)| op.required() || !model.is_read_only(&op.input))
            .collect()
    };
    let fails = |ops: &[(usize, OpOf<M>)], init: M::State, meter: &mut Meter| {
        let refs: Vec<&Operation<M::Input, M::Output>> = ops.iter().map(|(_, op)| op).collect();
        matches!(search(model, &refs, init, meter), Search::Illegal { .. })
    };
    let full_cut = rets.last().copied().unwrap_or(0);
    // Invariant: the cut at rets[hi] fails (the last one is the whole partition, less
    // operations without a response invoked after every response, which cannot matter).
    let (mut lo, mut hi) = (0usize, rets.len().saturating_sub(1));
    if !rets.is_empty() && fails(&cut_at(rets[0]), model.init(), meter) {
        hi = 0;
    } else {
        while hi > lo + 1 {
            let mid = lo + (hi - lo) / 2;
            if fails(&cut_at(rets[mid]), model.init(), meter) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
    }
    let cut = rets.get(hi).copied().unwrap_or(full_cut);
    let mut window = cut_at(cut);
    if !fails(&window, model.init(), meter) {
        // Only when the budget ran out while shrinking: report the whole partition.
        window = idx.iter().map(|&i| (i, history[i].clone())).collect();
    }
    window.sort_by_key(|(i, op)| (op.call, *i));

    // 2. Trim the front at quiet moments, checking from any state.
    let mut from_any = false;
    if let Some(any) = model.any_state() {
        let mut best: Option<Indexed<M>> = None;
        // Quiet moments: the invocations of required operations that no required
        // operation straddles.
        let mut taus: Vec<u64> = window
            .iter()
            .filter(|(_, op)| op.required())
            .map(|(_, op)| op.call)
            .collect();
        taus.dedup();
        for tau in taus {
            let straddled = window
                .iter()
                .any(|(_, op)| op.ret.is_some_and(|r| op.call < tau && tau <= r));
            let dropped = window.iter().filter(|(_, op)| op.ret.is_some_and(|r| r < tau)).count();
            if straddled || dropped == 0 {
                continue;
            }
            let rest: Indexed<M> = window
                .iter()
                .filter(|(_, op)| op.ret.is_none_or(|r| r >= tau))
                .cloned()
                .collect();
            if fails(&rest, any.clone(), meter) {
                best = Some(rest);
            } else {
                break;
            }
        }
        if let Some(rest) = best {
            window = rest;
            from_any = true;
        }
    }

    // 3. The story: the window, and how far the search got.
    let init = if from_any {
        model.any_state().unwrap_or_else(|| model.init())
    } else {
        model.init()
    };
    let refs: Vec<&Operation<M::Input, M::Output>> = window.iter().map(|(_, op)| op).collect();
    let deepest = match search(model, &refs, init.clone(), meter) {
        Search::Illegal { deepest, state } => Some((deepest, state)),
        _ => None,
    };
    let mut text = String::new();
    let _ = writeln!(
        text,
        "NOT LINEARIZABLE: partition {key:?} ({} operations); smallest failing window: {} operations{}, responses after t={cut} forgotten",
        idx.len(),
        window.len(),
        if from_any {
            ", from any initial state (the operations before it trimmed)"
        } else {
            ", from the initial state"
        },
    );
    let _ = writeln!(text, "  window (invocation order; `..?` never answered):");
    for (n, (i, op)) in window.iter().enumerate() {
        let span = match op.ret {
            Some(r) => format!("{}..{}", op.call, r),
            None => format!("{}..?", op.call),
        };
        let _ = writeln!(
            text,
            "    #{n:<3} op {i:<5} client {:<4} {span:>24}  {}",
            op.client,
            model.describe(&op.input, op.observed())
        );
    }
    match deepest {
        Some((order, state)) => {
            let _ = writeln!(
                text,
                "  start: {}\n  longest linearizable order ({} of {}): {}",
                model.describe_state(&init),
                order.len(),
                window.len(),
                if order.is_empty() {
                    "none".to_string()
                } else {
                    order.iter().map(|k| format!("#{k}")).collect::<Vec<_>>().join(" ")
                }
            );
            let _ = writeln!(
                text,
                "  stuck in state {}: no remaining operation can take effect next",
                model.describe_state(&state)
            );
        }
        None => {
            let _ = writeln!(text, "  (the budget ran out while explaining the window)");
        }
    }
    Violation {
        partition: key.to_string(),
        window: window.iter().map(|(i, _)| *i).collect(),
        partition_len: idx.len(),
        from_any_state: from_any,
        cut,
        text,
    }
}

// ------------------------------------------------------------------------------------
// The key-value register.

/// An operation on the key-value store, as the checker sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvInput {
    Get {
        key: Vec<u8>,
    },
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
    /// Set `key` to `new` if it holds `expected` (`None`: if absent).
    Cas {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    },
}

impl KvInput {
    pub fn key(&self) -> &[u8] {
        match self {
            KvInput::Get { key } | KvInput::Put { key, .. } | KvInput::Delete { key } | KvInput::Cas { key, .. } => key,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// A get's answer (`None`: absent).
    Got(Option<Vec<u8>>),
    Put,
    /// A delete; did it delete something?
    Deleted(bool),
    /// A compare-and-swap; did it swap?
    Cas(bool),
}

/// One key's value, or "any value" (the state the front-trimmed window starts in).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Register {
    Any,
    Is(Option<Vec<u8>>),
}

/// Per key, a register with get, put, delete and compare-and-swap.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvModel;

fn text(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

fn opt_text(v: &Option<Vec<u8>>) -> String {
    v.as_deref().map_or("absent".to_string(), text)
}

impl Model for KvModel {
    type Input = KvInput;
    type Output = KvOutput;
    type State = Register;

    fn init(&self) -> Register {
        Register::Is(None)
    }

    fn any_state(&self) -> Option<Register> {
        Some(Register::Any)
    }

    fn partition(&self, input: &KvInput) -> String {
        String::from_utf8_lossy(input.key()).into_owned()
    }

    fn is_read_only(&self, input: &KvInput) -> bool {
        matches!(input, KvInput::Get { .. })
    }

    fn step(&self, state: &Register, input: &KvInput, output: Option<&KvOutput>) -> Option<Register> {
        use Register::{Any, Is};
        match (input, output) {
            (KvInput::Get { .. }, None) => Some(state.clone()),
            (KvInput::Get { .. }, Some(KvOutput::Got(v))) => match state {
                Any => Some(Is(v.clone())),
                Is(x) => (x == v).then(|| state.clone()),
            },
            (KvInput::Put { value, .. }, None | Some(KvOutput::Put)) => Some(Is(Some(value.clone()))),
            (KvInput::Delete { .. }, None) => Some(Is(None)),
            (KvInput::Delete { .. }, Some(KvOutput::Deleted(deleted))) => match state {
                Any => Some(Is(None)),
                Is(x) => (x.is_some() == *deleted).then_some(Is(None)),
            },
            (KvInput::Cas { expected, new, .. }, None) => match state {
                Any => Some(Any),
                Is(x) if x == expected => Some(Is(Some(new.clone()))),
                Is(_) => Some(state.clone()),
            },
            (KvInput::Cas { expected, new, .. }, Some(KvOutput::Cas(swapped))) => match (state, swapped) {
                (Any, true) => Some(Is(Some(new.clone()))),
                // Any value but `expected`: "any" is close enough (it only admits more).
                (Any, false) => Some(Any),
                (Is(x), true) => (x == expected).then(|| Is(Some(new.clone()))),
                (Is(x), false) => (x != expected).then(|| state.clone()),
            },
            _ => None,
        }
    }

    fn describe(&self, input: &KvInput, output: Option<&KvOutput>) -> String {
        let op = match input {
            KvInput::Get { key } => format!("get {}", text(key)),
            KvInput::Put { key, value } => format!("put {} = {}", text(key), text(value)),
            KvInput::Delete { key } => format!("delete {}", text(key)),
            KvInput::Cas { key, expected, new } => {
                format!("cas {} from {} to {}", text(key), opt_text(expected), text(new))
            }
        };
        let out = match output {
            None => "?".to_string(),
            Some(KvOutput::Got(v)) => opt_text(v),
            Some(KvOutput::Put) => "ok".to_string(),
            Some(KvOutput::Deleted(d)) => if *d { "deleted" } else { "absent" }.to_string(),
            Some(KvOutput::Cas(s)) => if *s { "swapped" } else { "failed" }.to_string(),
        };
        format!("{op} -> {out}")
    }

    fn describe_state(&self, state: &Register) -> String {
        match state {
            Register::Any => "any value".to_string(),
            Register::Is(v) => opt_text(v),
        }
    }
}

/// The simulator's history ([`crate::harness::sim::RunReport::history`]) in the checker's terms.
/// An answer the simulator marks as an error is treated as no answer.
pub fn from_sim(history: &[crate::harness::sim::OpRecord]) -> Vec<Operation<KvInput, KvOutput>> {
    use crate::harness::sim::{OpInput, OpOutput};
    history
        .iter()
        .map(|r| {
            let input = match &r.input {
                OpInput::Get { key } => KvInput::Get { key: key.clone() },
                OpInput::Put { key, value } => KvInput::Put {
                    key: key.clone(),
                    value: value.clone(),
                },
                OpInput::Cas { key, expected, new } => KvInput::Cas {
                    key: key.clone(),
                    expected: expected.clone(),
                    new: new.clone(),
                },
            };
            let output = match &r.output {
                Some(OpOutput::Got(v)) => Some(KvOutput::Got(v.clone())),
                Some(OpOutput::Put) => Some(KvOutput::Put),
                Some(OpOutput::Cas(s)) => Some(KvOutput::Cas(*s)),
                Some(OpOutput::Error(_) | OpOutput::Unknown) | None => None,
            };
            match (output, r.completed_us) {
                (Some(o), Some(ret)) => Operation::done(r.client, input, r.invoked_us, ret, o),
                _ => Operation::unknown(r.client, input, r.invoked_us),
            }
        })
        .collect()
}

// ------------------------------------------------------------------------------------
// The owner-aware FIFO lock.

/// An operation on the lock service, as the checker sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LockInput {
    /// Take `name` for `session`, or join its queue.
    Acquire { name: String, session: u64 },
    /// Let go of `name`.
    Release { name: String, session: u64 },
}

impl LockInput {
    pub fn name(&self) -> &str {
        match self {
            LockInput::Acquire { name, .. } | LockInput::Release { name, .. } => name,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LockOutput {
    /// The session holds the lock with this fencing token.
    Granted {
        token: u64,
    },
    /// The lock is held by another session; this one waits in line.
    Queued,
    /// A try-lock gave up: held by another session, and this one left the line.
    GaveUp,
    Released,
    /// Release by a session that does not hold the lock.
    NotHolder,
}

/// One lock: its holder (with its token once a client has seen it), the sessions
/// waiting in order, and the highest token seen for it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LockState {
    pub holder: Option<(u64, Option<u64>)>,
    pub queue: Vec<u64>,
    pub floor: u64,
}

/// Per lock name: granted at once if free, else queued; granted to waiters in FIFO
/// order as holders release; only the holder may release; fencing tokens strictly
/// increase. Tokens come from one counter shared by every lock, so they may skip.
/// Session expiry is not modelled (use sessions that outlive the history).
///
/// A blocking acquire that waited in line takes effect twice (it joins the line when it
/// is invoked, and is granted later): record it as two operations over the same
/// interval, the acquire with its answer and an acquire whose output was not observed
/// (`ret` set, `output` `None`), which stands for joining the line.
#[derive(Clone, Copy, Debug, Default)]
pub struct LockModel;

impl LockModel {
    fn grant(mut s: LockState, session: u64, token: Option<u64>) -> Option<LockState> {
        if let Some(t) = token {
            if t <= s.floor {
                return None;
            }
            s.floor = t;
        }
        s.holder = Some((session, token));
        s.queue.retain(|&w| w != session);
        Some(s)
    }

    fn release(mut s: LockState) -> LockState {
        s.holder = None;
        if !s.queue.is_empty() {
            let next = s.queue.remove(0);
            s.holder = Some((next, None));
        }
        s
    }
}

impl Model for LockModel {
    type Input = LockInput;
    type Output = LockOutput;
    type State = LockState;

    fn init(&self) -> LockState {
        LockState::default()
    }

    fn partition(&self, input: &LockInput) -> String {
        input.name().to_string()
    }

    fn step(&self, state: &LockState, input: &LockInput, output: Option<&LockOutput>) -> Option<LockState> {
        let holder = state.holder.map(|(h, _)| h);
        match (input, output) {
            (LockInput::Acquire { session, .. }, Some(LockOutput::Granted { token })) => match state.holder {
                Some((h, Some(t))) if h == *session => (t == *token).then(|| state.clone()),
                Some((h, None)) if h == *session => Self::grant(state.clone(), *session, Some(*token)),
                Some(_) => None,
                None => Self::grant(state.clone(), *session, Some(*token)),
            },
            (LockInput::Acquire { session, .. }, Some(LockOutput::Queued)) => match holder {
                Some(h) if h != *session => {
                    let mut s = state.clone();
                    if !s.queue.contains(session) {
                        s.queue.push(*session);
                    }
                    Some(s)
                }
                _ => None,
            },
            (LockInput::Acquire { session, .. }, Some(LockOutput::GaveUp)) => match holder {
                Some(h) if h != *session => {
                    let mut s = state.clone();
                    s.queue.retain(|w| w != session);
                    Some(s)
                }
                _ => None,
            },
            (LockInput::Acquire { session, .. }, None) => match holder {
                Some(h) if h == *session => Some(state.clone()),
                None => Self::grant(state.clone(), *session, None),
                Some(_) => {
                    let mut s = state.clone();
                    if !s.queue.contains(session) {
                        s.queue.push(*session);
                    }
                    Some(s)
                }
            },
            (LockInput::Release { session, .. }, Some(LockOutput::Released)) => {
                (holder == Some(*session)).then(|| Self::release(state.clone()))
            }
            (LockInput::Release { session, .. }, Some(LockOutput::NotHolder)) => {
                (holder != Some(*session)).then(|| state.clone())
            }
            (LockInput::Release { session, .. }, None) => Some(if holder == Some(*session) {
                Self::release(state.clone())
            } else {
                state.clone()
            }),
            _ => None,
        }
    }

    fn describe(&self, input: &LockInput, output: Option<&LockOutput>) -> String {
        let op = match input {
            LockInput::Acquire { name, session } => format!("acquire {name:?} by session {session}"),
            LockInput::Release { name, session } => format!("release {name:?} by session {session}"),
        };
        let out = match output {
            None => "?".to_string(),
            Some(LockOutput::Granted { token }) => format!("granted, token {token}"),
            Some(LockOutput::Queued) => "queued".to_string(),
            Some(LockOutput::GaveUp) => "gave up".to_string(),
            Some(LockOutput::Released) => "released".to_string(),
            Some(LockOutput::NotHolder) => "not the holder".to_string(),
        };
        format!("{op} -> {out}")
    }

    fn describe_state(&self, s: &LockState) -> String {
        let holder = match s.holder {
            None => "free".to_string(),
            Some((h, Some(t))) => format!("held by session {h} (token {t})"),
            Some((h, None)) => format!("held by session {h} (token not yet seen)"),
        };
        format!("{holder}, queue {:?}, highest token seen {}", s.queue, s.floor)
    }
}
