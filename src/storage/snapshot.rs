//! Snapshot transfer on disk: serving this node's durable `snapshot.bin` to a lagging
//! peer chunk by chunk, and receiving a peer's snapshot into a file of its own until the
//! state machine installs it.
//!
//! | file                          | holds                                   | written by | fate |
//! |-------------------------------|-----------------------------------------|------------|------|
//! | `snapshot.bin.incoming.tmp`   | the chunks of a snapshot being received | learner    | renamed to the next when complete |
//! | `snapshot.bin.received-<at>.tmp` | a received snapshot covering the slots below `at`, complete and checksummed | learner | checked, synced and renamed over `snapshot.bin` by the state machine |
//!
//! Both are temporaries: a node that restarts removes them (see [`super::Storage::open`])
//! and, if it still lags, asks for a snapshot again. Installing is atomic: until the
//! rename, `snapshot.bin` and the logs are the node's old, consistent state; after it,
//! the new snapshot, with the logs' records below it ignored.

use super::{SNAPSHOT, Storage, failpoint};
use crate::driver::SnapshotPiece;
use crate::error::{Error, Result};
use crate::messages::Slot;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;

const INCOMING: &str = "snapshot.bin.incoming.tmp";
/// The received snapshot covering the slots below `at`: named by its slot, so that a
/// later transfer never writes over one being installed.
fn received(at: Slot) -> String {
    format!("snapshot.bin.received-{at}.tmp")
}

/// The slot a snapshot covers up to, from its first bytes (the state machine writes the
/// applied index first, as a bincode varint).
pub fn snapshot_at(head: &[u8]) -> Result<Slot> {
    let (at, _): (Slot, usize) = bincode::serde::decode_from_slice(head, bincode::config::standard())
        .map_err(|e| Error::Storage(format!("snapshot: cannot read the slot it covers: {e}")))?;
    Ok(at)
}

/// This node's durable snapshot, open for serving: reopened whenever `snapshot.bin` is
/// replaced (a stat per chunk tells). The one it replaced stays open (its file is gone
/// from the directory but readable through the open descriptor) until the next
/// replacement, so a transfer in progress under load finishes instead of starting over
/// at every new snapshot.
#[derive(Default)]
pub struct SnapshotSource {
    open: Option<Served>,
    previous: Option<Served>,
}

struct Served {
    inode: u64,
    file: File,
    at: Slot,
    total: u64,
    crc: u32,
}

impl SnapshotSource {
    /// `max_bytes` bytes from `offset` of the snapshot covering the slots below `at` if
    /// it is the current `snapshot.bin` or the one it replaced; else the current one's
    /// (`None`: there is none).
    pub fn read(
        &mut self,
        storage: &Storage,
        at: Slot,
        offset: u64,
        max_bytes: usize,
    ) -> Result<Option<SnapshotPiece>> {
        let path = storage.dir.join(SNAPSHOT);
        let inode = match std::fs::metadata(&path) {
            Ok(m) => m.ino(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::Storage(format!("{}: stat: {e}", path.display()))),
        };
        if self.open.as_ref().is_none_or(|s| s.inode != inode) {
            let replaced = self.open.replace(Served::open(path)?);
            self.previous = replaced.or(self.previous.take());
        }
        let asked = self.previous.as_ref().filter(|p| p.at == at);
        let Some(s) = asked.or(self.open.as_ref()) else {
            return Ok(None);
        };
        let len = max_bytes.min(s.total.saturating_sub(offset) as usize);
        let mut data = vec![0; len];
        s.file
            .read_exact_at(&mut data, offset)
            .map_err(|e| Error::Storage(format!("snapshot: read at {offset}: {e}")))?;
        Ok(Some(SnapshotPiece {
            at: s.at,
            total: s.total,
            file_crc: s.crc,
            data,
        }))
    }
}

impl Served {
    /// Opens the snapshot and reads it once for its checksum and the slot it covers.
    fn open(path: PathBuf) -> Result<Served> {
        let fail = |what: &str, e: std::io::Error| Error::Storage(format!("{}: {what}: {e}", path.display()));
        let file = File::open(&path).map_err(|e| fail("open", e))?;
        let meta = file.metadata().map_err(|e| fail("stat", e))?;
        let (mut hasher, mut head, mut buf) = (crc32fast::Hasher::new(), Vec::new(), vec![0; 1 << 20]);
        let mut reader = &file;
        loop {
            let n = reader.read(&mut buf).map_err(|e| fail("read", e))?;
            if n == 0 {
                break;
            }
            if head.len() < 16 {
                head.extend_from_slice(&buf[..n.min(16)]);
            }
            hasher.update(&buf[..n]);
        }
        Ok(Served {
            inode: meta.ino(),
            at: snapshot_at(&head)?,
            total: meta.len(),
            crc: hasher.finalize(),
            file,
        })
    }
}

impl Storage {
    /// Writes `data` at `offset` of the snapshot being received; `fresh`: the first
    /// write of a new transfer, which empties the file first (chunks pulled from several
    /// sources arrive in any order, so offset 0 may come last). Not synced: the state
    /// machine syncs the whole before installing it.
    pub fn write_incoming(&self, offset: u64, data: &[u8], fresh: bool) -> Result<()> {
        let path = self.dir.join(INCOMING);
        let fail = |what: &str, e: std::io::Error| Error::Storage(format!("{}: {what}: {e}", path.display()));
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(fresh)
            .open(&path)
            .map_err(|e| fail("open", e))?;
        file.write_all_at(data, offset).map_err(|e| fail("write", e))
    }

    /// The snapshot being received, covering the slots below `at`, is complete: keep it
    /// for the state machine.
    pub fn finish_incoming(&self, at: Slot) -> Result<()> {
        std::fs::rename(self.dir.join(INCOMING), self.dir.join(received(at)))
            .map_err(|e| Error::Storage(format!("snapshot: cannot keep the received snapshot: {e}")))
    }

    /// Installs the received snapshot, which must cover the slots below `at` and pass
    /// `check` (the state machine restores it once, so that a snapshot it could not load
    /// never replaces the current one): syncs it, renames it over `snapshot.bin` and
    /// syncs the directory; returns its bytes. The file is read and synced through one
    /// handle, and renamed only if its name still names that file. Blocking (reads and
    /// syncs the whole snapshot): call it off an actor's thread.
    pub fn install_received(&self, at: Slot, check: impl FnOnce(&[u8]) -> Result<()>) -> Result<Vec<u8>> {
        let path = self.dir.join(received(at));
        let fail = |what: &str, e: std::io::Error| Error::Storage(format!("{}: {what}: {e}", path.display()));
        let mut file = File::open(&path).map_err(|e| fail("open", e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| fail("read", e))?;
        let covers = snapshot_at(&bytes)?;
        if covers != at {
            return Err(Error::Storage(format!(
                "the received snapshot covers the slots below {covers}, not {at}"
            )));
        }
        check(&bytes)?;
        file.sync_all().map_err(|e| fail("fdatasync", e))?;
        let synced = file.metadata().map_err(|e| fail("stat", e))?.ino();
        if std::fs::metadata(&path).map_err(|e| fail("stat", e))?.ino() != synced {
            return Err(Error::Storage(format!(
                "{}: replaced while it was installed",
                path.display()
            )));
        }
        failpoint::hit("snapshot-install");
        std::fs::rename(&path, self.dir.join(SNAPSHOT)).map_err(|e| fail("rename", e))?;
        failpoint::hit("snapshot-installed");
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail("sync directory", e))?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::codec;

    /// A snapshot as the state machine writes one: the slot first, then anything.
    fn snapshot(at: Slot, rest: &[u8]) -> Vec<u8> {
        let mut bytes = codec::encode(&at).expect("encode");
        bytes.extend_from_slice(rest);
        bytes
    }

    #[test]
    fn snapshot_served_in_chunks_is_received_and_installed_whole() {
        let (from, to) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let (src, dst) = (
            Storage::open(from.path()).expect("open"),
            Storage::open(to.path()).expect("open"),
        );
        let bytes = snapshot(70_000, &(0..5000u32).flat_map(|i| i.to_le_bytes()).collect::<Vec<_>>());
        std::fs::write(from.path().join(SNAPSHOT), &bytes).expect("write");
        std::fs::write(to.path().join(SNAPSHOT), snapshot(10, b"old")).expect("write");
        let mut source = SnapshotSource::default();
        let mut offset = 0;
        while offset < bytes.len() as u64 {
            let piece = source
                .read(&src, 70_000, offset, 1000)
                .expect("read")
                .expect("a snapshot");
            assert_eq!(
                (piece.at, piece.total, piece.file_crc),
                (70_000, bytes.len() as u64, crc32fast::hash(&bytes))
            );
            dst.write_incoming(offset, &piece.data, offset == 0).expect("write");
            offset += piece.data.len() as u64;
        }
        dst.finish_incoming(70_000).expect("finish");
        let ok = |_: &[u8]| Ok(());
        assert!(
            dst.install_received(69_999, ok).is_err(),
            "the slot it covers is checked"
        );
        let refused = dst.install_received(70_000, |_| Err(Error::Storage("cannot restore".into())));
        assert!(
            refused.is_err(),
            "a snapshot the state machine cannot load is not installed"
        );
        assert_eq!(dst.load_snapshot().expect("load"), Some(snapshot(10, b"old")));
        assert_eq!(dst.install_received(70_000, ok).expect("install"), bytes);
        assert_eq!(dst.load_snapshot().expect("load"), Some(bytes));
    }

    #[test]
    fn snapshot_chunks_from_several_sources_land_in_any_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(dir.path()).expect("open");
        // Leftovers of an earlier transfer go with the first write of a new one, wherever
        // it lands; later writes keep what came before them, offset 0 included.
        storage
            .write_incoming(0, b"an older, longer transfer", true)
            .expect("write");
        let bytes = snapshot(40, b"parallel migration");
        let chunks: Vec<(u64, &[u8])> = bytes.chunks(4).enumerate().map(|(i, c)| (4 * i as u64, c)).collect();
        let mut order: Vec<usize> = (0..chunks.len()).rev().collect();
        order.swap(0, 1);
        for (n, &i) in order.iter().enumerate() {
            storage.write_incoming(chunks[i].0, chunks[i].1, n == 0).expect("write");
        }
        storage.finish_incoming(40).expect("finish");
        assert_eq!(storage.install_received(40, |_| Ok(())).expect("install"), bytes);
    }

    #[test]
    fn snapshot_source_follows_a_replaced_snapshot_and_a_crash_leaves_the_old_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(dir.path()).expect("open");
        let mut source = SnapshotSource::default();
        assert_eq!(source.read(&storage, 5, 0, 10).expect("read"), None, "no snapshot yet");
        std::fs::write(dir.path().join(SNAPSHOT), snapshot(5, b"five")).expect("write");
        assert_eq!(source.read(&storage, 5, 0, 10).expect("read").map(|p| p.at), Some(5));
        // Replaced by rename, as the state machine does: a new ask gets the new one, a
        // transfer of the old one goes on from the old file.
        std::fs::write(dir.path().join("new"), snapshot(9, b"nine")).expect("write");
        std::fs::rename(dir.path().join("new"), dir.path().join(SNAPSHOT)).expect("rename");
        assert_eq!(source.read(&storage, 0, 0, 10).expect("read").map(|p| p.at), Some(9));
        let old = source.read(&storage, 5, 1, 10).expect("read").expect("the old one");
        assert_eq!((old.at, old.data), (5, snapshot(5, b"five")[1..].to_vec()));
        // Replaced again: the oldest is gone, its ask is offered the current one.
        std::fs::write(dir.path().join("new"), snapshot(12, b"twelve")).expect("write");
        std::fs::rename(dir.path().join("new"), dir.path().join(SNAPSHOT)).expect("rename");
        assert_eq!(source.read(&storage, 5, 1, 10).expect("read").map(|p| p.at), Some(12));
        assert_eq!(source.read(&storage, 9, 1, 10).expect("read").map(|p| p.at), Some(9));
        // A transfer cut by a crash: the restart removes it, the installed one stays.
        storage.write_incoming(0, b"partial", true).expect("write");
        drop(storage);
        let storage = Storage::open(dir.path()).expect("reopen");
        assert!(!dir.path().join(INCOMING).exists(), "removed at start");
        assert_eq!(storage.load_snapshot().expect("load"), Some(snapshot(12, b"twelve")));
    }
}
