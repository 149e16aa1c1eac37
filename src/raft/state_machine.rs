//! The application under openraft: [`RaftStateMachine`] and [`RaftSnapshotBuilder`]
//! driving any [`Application`].
//!
//! **Job.** Apply committed entries to the application in log order and answer what
//! applying answered; take and install snapshots; start a restarted node from its last
//! snapshot.
//!
//! - A normal entry carries a batch of the application's commands encoded
//!   ([`super::types::CommandBatch`]): each decoded, applied with [`Application::apply`]
//!   in the batch's order, its reply encoded ([`ApplyReply::Reply`]), the replies in
//!   the same order ([`ApplyReplies`]). A command that does not decode is
//!   skipped alike on every replica ([`ApplyReply::Rejected`]); the node's door never
//!   proposes one, so only a foreign leader could.
//! - Blank and membership entries only move `last_applied` (and the membership).
//! - **Snapshots**: the application's [`Application::snapshot`] with the snapshot's meta
//!   (last log id, membership) in the file `raft.snapshot` of the data directory,
//!   written atomically (temporary file, `fsync`, rename, directory `fsync`) with a
//!   CRC of the state. Installing one from the leader restores the application and
//!   keeps the file; a restarted node starts from it, and openraft re-applies the
//!   committed log after it. A snapshot file that fails its check stops the open.
//!
//! **Invariant.** The application, `last_applied` and the membership change together
//! under one lock, so a snapshot or a local read always sees a state that is exactly
//! the log applied up to `last_applied`.
//!
//! **Left out.** The snapshot is built in memory (the application's bytes, then the
//! file), not streamed; client deduplication (a command is proposed once, see
//! [`super::node`], so none is needed here).

use super::types::{
    ApplyReplies, ApplyReply, EncodedCommand, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::app::Application;
use crate::error::{Error, Result};
use crate::messages::{NodeId, codec};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The snapshot's file in the data directory.
pub const SNAPSHOT_FILE: &str = "raft.snapshot";

/// The application and how far the log has been applied to it.
pub struct Applied<A> {
    pub app: A,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    /// The meta of the snapshot in the file, if any.
    pub snapshot: Option<SnapshotMeta>,
    /// Snapshots built by this process (makes snapshot ids unique).
    built: u64,
}

/// What the state machine store, its snapshot builders and the node's door share.
pub struct Shared<A> {
    node: NodeId,
    dir: PathBuf,
    state: Mutex<Applied<A>>,
    /// One snapshot file write at a time.
    writing: tokio::sync::Mutex<()>,
}

impl<A> Shared<A> {
    pub fn lock(&self) -> MutexGuard<'_, Applied<A>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The state machine openraft owns.
pub struct StateMachineStore<A> {
    shared: Arc<Shared<A>>,
}

/// Builds a snapshot of the state machine (openraft runs it beside the applies).
pub struct SnapshotBuilder<A> {
    shared: Arc<Shared<A>>,
}

/// The snapshot file's content.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    crc: u32,
    #[serde(with = "crate::messages::codec::bytes")]
    state: Vec<u8>,
}

fn sm_error(verb: ErrorVerb, message: impl ToString) -> StorageError {
    StorageIOError::new(ErrorSubject::StateMachine, verb, AnyError::error(message)).into()
}

fn snapshot_error(meta: Option<&SnapshotMeta>, verb: ErrorVerb, message: impl ToString) -> StorageError {
    let subject = ErrorSubject::Snapshot(meta.map(SnapshotMeta::signature));
    StorageIOError::new(subject, verb, AnyError::error(message)).into()
}

impl<A: Application + Default> StateMachineStore<A> {
    /// The state machine of `dir`: from its snapshot file if there is one, else empty.
    pub fn open(dir: &Path, node: NodeId) -> Result<StateMachineStore<A>> {
        let path = dir.join(SNAPSHOT_FILE);
        let mut applied = Applied {
            app: A::default(),
            last_applied: None,
            membership: StoredMembership::default(),
            snapshot: None,
            built: 0,
        };
        match std::fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Storage(format!("cannot read {}: {e}", path.display()))),
            Ok(bytes) => {
                let file: SnapshotFile = codec::decode_local(&bytes)
                    .map_err(|e| Error::Storage(format!("{} does not decode: {e}", path.display())))?;
                if crc32fast::hash(&file.state) != file.crc {
                    return Err(Error::Storage(format!(
                        "{}: the state fails its checksum (damaged file)",
                        path.display()
                    )));
                }
                applied.app = A::restore(&file.state)?;
                applied.last_applied = file.meta.last_log_id;
                applied.membership = file.meta.last_membership.clone();
                applied.snapshot = Some(file.meta);
            }
        }
        Ok(StateMachineStore {
            shared: Arc::new(Shared {
                node,
                dir: dir.to_path_buf(),
                state: Mutex::new(applied),
                writing: tokio::sync::Mutex::new(()),
            }),
        })
    }
}

impl<A> StateMachineStore<A> {
    /// What the node's door reads the application through.
    pub fn shared(&self) -> Arc<Shared<A>> {
        self.shared.clone()
    }
}

/// Writes the snapshot file atomically: temporary file, fsync, rename, directory fsync.
fn write_snapshot_file(dir: &Path, meta: &SnapshotMeta, state: Vec<u8>) -> Result<Vec<u8>> {
    let file = SnapshotFile {
        meta: meta.clone(),
        crc: crc32fast::hash(&state),
        state,
    };
    let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
    let path = dir.join(SNAPSHOT_FILE);
    let fail = |what: &str, p: &Path, e: std::io::Error| Error::Storage(format!("cannot {what} {}: {e}", p.display()));
    let mut out = std::fs::File::create(&tmp).map_err(|e| fail("create", &tmp, e))?;
    codec::encode_to_writer(&file, &mut std::io::BufWriter::new(&mut out))?;
    out.flush().map_err(|e| fail("write", &tmp, e))?;
    out.sync_all().map_err(|e| fail("sync", &tmp, e))?;
    drop(out);
    std::fs::rename(&tmp, &path).map_err(|e| fail("rename", &tmp, e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail("sync the directory", dir, e))?;
    Ok(file.state)
}

/// Reads the state bytes of the snapshot file back.
fn read_snapshot_file(dir: &Path) -> Result<(SnapshotMeta, Vec<u8>)> {
    let path = dir.join(SNAPSHOT_FILE);
    let bytes = std::fs::read(&path).map_err(|e| Error::Storage(format!("cannot read {}: {e}", path.display())))?;
    let file: SnapshotFile =
        codec::decode_local(&bytes).map_err(|e| Error::Storage(format!("{} does not decode: {e}", path.display())))?;
    if crc32fast::hash(&file.state) != file.crc {
        return Err(Error::Storage(format!(
            "{}: the state fails its checksum",
            path.display()
        )));
    }
    Ok((file.meta, file.state))
}

/// Runs blocking file IO off the runtime's workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Storage(format!("snapshot IO task failed: {e}")))?
}

impl<A: Application> Shared<A> {
    /// Applies one entry (the lock held).
    fn apply_one(applied: &mut Applied<A>, entry: Entry) -> ApplyReplies {
        applied.last_applied = Some(entry.log_id);
        match entry.payload {
            EntryPayload::Blank => ApplyReplies::default(),
            EntryPayload::Membership(m) => {
                applied.membership = StoredMembership::new(Some(entry.log_id), m);
                ApplyReplies::default()
            }
            EntryPayload::Normal(batch) => ApplyReplies(
                batch
                    .0
                    .iter()
                    .map(|command| Shared::apply_command(applied, command))
                    .collect(),
            ),
        }
    }

    /// Applies one command of an entry's batch (the lock held).
    fn apply_command(applied: &mut Applied<A>, command: &EncodedCommand) -> ApplyReply {
        match codec::decode::<A::Command>(&command.0) {
            Err(e) => ApplyReply::Rejected(format!("the command does not decode: {e}")),
            Ok(command) => {
                let reply = applied.app.apply(command);
                match codec::encode(&reply) {
                    Ok(bytes) => ApplyReply::Reply(bytes),
                    Err(e) => ApplyReply::Rejected(format!("the reply does not encode: {e}")),
                }
            }
        }
    }

    /// Builds a snapshot of the current state and makes it the file's.
    async fn build(self: &Arc<Self>) -> Result<Snapshot<TypeConfig>, StorageError> {
        let _one = self.writing.lock().await;
        let (meta, state) = {
            let mut applied = self.lock();
            applied.built += 1;
            let state = applied
                .app
                .snapshot()
                .map_err(|e| snapshot_error(None, ErrorVerb::Write, e))?;
            let id = match &applied.last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, applied.built),
                None => format!("none-{}", applied.built),
            };
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership.clone(),
                snapshot_id: id,
            };
            (meta, state)
        };
        let dir = self.dir.clone();
        let written_meta = meta.clone();
        let state = blocking(move || write_snapshot_file(&dir, &written_meta, state))
            .await
            .map_err(|e| snapshot_error(Some(&meta), ErrorVerb::Write, e))?;
        {
            let mut applied = self.lock();
            let newer = applied
                .snapshot
                .as_ref()
                .is_none_or(|s| s.last_log_id <= meta.last_log_id);
            if newer {
                applied.snapshot = Some(meta.clone());
            }
        }
        tracing::debug!(node = self.node, snapshot = %meta, bytes = state.len(), "raft: snapshot built");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(state)),
        })
    }
}

impl<A: Application> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<A> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        self.shared.build().await
    }
}

impl<A: Application> RaftStateMachine<TypeConfig> for StateMachineStore<A> {
    type SnapshotBuilder = SnapshotBuilder<A>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = self.shared.lock();
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyReplies>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut applied = self.shared.lock();
        Ok(entries
            .into_iter()
            .map(|entry| Shared::apply_one(&mut applied, entry))
            .collect())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder<A> {
        SnapshotBuilder {
            shared: self.shared.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let state = snapshot.into_inner();
        let app = A::restore(&state).map_err(|e| snapshot_error(Some(meta), ErrorVerb::Read, e))?;
        let _one = self.shared.writing.lock().await;
        let dir = self.shared.dir.clone();
        let written_meta = meta.clone();
        blocking(move || write_snapshot_file(&dir, &written_meta, state))
            .await
            .map_err(|e| snapshot_error(Some(meta), ErrorVerb::Write, e))?;
        let mut applied = self.shared.lock();
        applied.app = app;
        applied.last_applied = meta.last_log_id;
        applied.membership = meta.last_membership.clone();
        applied.snapshot = Some(meta.clone());
        tracing::info!(node = self.shared.node, snapshot = %meta, "raft: snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let _one = self.shared.writing.lock().await;
        if self.shared.lock().snapshot.is_none() {
            return Ok(None);
        }
        let dir = self.shared.dir.clone();
        let (meta, state) = blocking(move || read_snapshot_file(&dir))
            .await
            .map_err(|e| sm_error(ErrorVerb::Read, e))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(state)),
        }))
    }
}
