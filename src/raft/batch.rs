//! Commands into log entries at the leader: the glue's group commit.
//!
//! **Why.** openraft 0.9 runs the log's IO inside its core task: a `client_write` becomes
//! one entry, and the core appends it and *waits for that append to be flushed* before
//! it takes the next message (`RaftCore::append_to_log` awaits the `LogFlushed`
//! callback). Entries proposed one per command are therefore synced one per command at
//! the leader, one after the other, whatever the log store batches: at 64 clients the
//! leader did 1.00 `fdatasync` per put and the followers 0.04 (their AppendEntries
//! carry what the leader appended meanwhile). The Paxos engine's proposer gathers the
//! commands that arrive while a batch is out into the next `Accept`; this module does
//! the same for openraft, in front of it: a log entry carries a batch of commands
//! ([`CommandBatch`]), and applying it answers each command in order.
//!
//! **How.** [`Batcher::write`] queues a command and waits for its reply. One task takes
//! what is queued (up to [`MAX_BATCH_COMMANDS`] commands and a byte budget) and hands
//! it to openraft as one entry; then, before it cuts the next batch, it waits until the
//! log store acknowledged an append to openraft (the leader's entry is durable and the
//! core is free for the next one: [`super::log_store::LogCloser::acknowledged`]), or
//! the batch ended, or [`MAX_HOLD`] passed. So at one client each command goes at once
//! (no wait added), and under load a batch holds what arrived during one append's sync.
//! Replication and commit are openraft's, untouched: a batch is one entry, durable on a
//! quorum before it commits, and each command is answered only from its applied entry.
//!
//! **Failures.** A batch's commands share its fate: leadership lost while it was in
//! flight, a timeout, a stopped node: every command of it gets an unknown outcome
//! (`Error::Unavailable`), as a single command did; a command whose entry applied gets
//! its own reply (or its own rejection).
//!
//! **Left out.** No batching at a follower (a forwarded command joins the leader's
//! batches), no pipelining limit beyond the wait above (openraft's core queues batches
//! in order).

use super::types::{ApplyReply, CommandBatch, EncodedCommand, Raft};
use crate::error::{Error, Result};
use crate::messages::NodeId;
use openraft::error::{ClientWriteError, RaftError};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// Most commands in one log entry (the Paxos proposer's default `max_batch`).
pub const MAX_BATCH_COMMANDS: usize = 256;

/// Longest wait for the previous batch's append before the next batch goes anyway.
pub const MAX_HOLD: Duration = Duration::from_millis(20);

/// Where a command's reply goes.
type ReplyTx = oneshot::Sender<Result<Vec<u8>>>;

/// A queued command and where its reply goes.
struct Queued {
    command: Vec<u8>,
    reply: ReplyTx,
}

/// The leader's door into openraft for commands (see the module docs).
pub struct Batcher {
    queue: mpsc::UnboundedSender<Queued>,
    /// The requests' time limit (for the error message).
    timeout: Duration,
}

/// How a whole batch failed (every command of it gets the same error).
#[derive(Clone)]
enum Failure {
    LeadershipChanged,
    Api(String),
    Stopped,
    Timeout(Duration),
}

impl Failure {
    fn error(&self, node: NodeId) -> Error {
        match self {
            Failure::LeadershipChanged => Error::Unavailable(format!(
                "node {node}: leadership changed while the command was in flight; its outcome is unknown"
            )),
            Failure::Api(why) => Error::Unavailable(format!("node {node}: {why}")),
            Failure::Stopped => Error::Stopped,
            Failure::Timeout(after) => Error::Unavailable(format!(
                "node {node}: the command was not committed within {after:?}; its outcome is unknown"
            )),
        }
    }
}

impl Batcher {
    /// Starts the batching task on `handle`. `acknowledged` is the log store's counter
    /// of acknowledged appends; `max_bytes` bounds a batch's commands (a single larger
    /// command still goes, alone); `timeout` bounds one batch's write.
    pub fn start(
        node: NodeId,
        raft: Raft,
        acknowledged: watch::Receiver<u64>,
        max_bytes: usize,
        timeout: Duration,
        handle: &tokio::runtime::Handle,
    ) -> Batcher {
        let (queue, rx) = mpsc::unbounded_channel();
        handle.spawn(run(node, raft, rx, acknowledged, max_bytes, timeout));
        Batcher { queue, timeout }
    }

    /// Replicates `command` in a batch and answers its reply, or an error by `deadline`.
    pub async fn write(&self, node: NodeId, command: Vec<u8>, deadline: Instant) -> Result<Vec<u8>> {
        let (reply, rx) = oneshot::channel();
        self.queue.send(Queued { command, reply }).map_err(|_| Error::Stopped)?;
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(Error::Stopped),
            Err(_) => Err(Failure::Timeout(self.timeout).error(node)),
        }
    }
}

/// The batching task: cut a batch, hand it over, wait for its append, again.
async fn run(
    node: NodeId,
    raft: Raft,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    mut acknowledged: watch::Receiver<u64>,
    max_bytes: usize,
    timeout: Duration,
) {
    let mut carry: Option<Queued> = None;
    loop {
        let first = match carry.take() {
            Some(q) => q,
            None => match rx.recv().await {
                Some(q) => q,
                None => return,
            },
        };
        let mut bytes = first.command.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_COMMANDS {
            let Ok(q) = rx.try_recv() else { break };
            if bytes + q.command.len() > max_bytes {
                carry = Some(q);
                break;
            }
            bytes += q.command.len();
            batch.push(q);
        }
        acknowledged.borrow_and_update();
        let mut written = tokio::spawn(write_batch(node, raft.clone(), batch, timeout));
        tokio::select! {
            _ = acknowledged.changed() => {}
            _ = &mut written => {}
            _ = tokio::time::sleep(MAX_HOLD) => {}
        }
    }
}

/// Proposes one batch as one entry and answers each of its commands.
async fn write_batch(node: NodeId, raft: Raft, batch: Vec<Queued>, timeout: Duration) {
    let (commands, replies): (Vec<EncodedCommand>, Vec<ReplyTx>) =
        batch.into_iter().map(|q| (EncodedCommand(q.command), q.reply)).unzip();
    let n = commands.len();
    let outcome = match tokio::time::timeout(timeout, raft.client_write(CommandBatch(commands))).await {
        Ok(Ok(written)) => Ok(written.data.0),
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => Err(Failure::LeadershipChanged),
        Ok(Err(RaftError::APIError(e))) => Err(Failure::Api(e.to_string())),
        Ok(Err(RaftError::Fatal(e))) => {
            tracing::warn!(node, error = %e, "raft: client write on a stopped node");
            Err(Failure::Stopped)
        }
        Err(_) => Err(Failure::Timeout(timeout)),
    };
    match outcome {
        Ok(answers) if answers.len() == n => {
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(match answer {
                    ApplyReply::Reply(bytes) => Ok(bytes),
                    ApplyReply::Rejected(why) => Err(Error::InvalidInput(why)),
                });
            }
        }
        Ok(answers) => {
            let why = format!("a batch of {n} commands answered {} replies", answers.len());
            tracing::error!(node, "raft: {why}");
            for reply in replies {
                let _ = reply.send(Err(Error::Protocol(why.clone())));
            }
        }
        Err(failure) => {
            for reply in replies {
                let _ = reply.send(Err(failure.error(node)));
            }
        }
    }
}
