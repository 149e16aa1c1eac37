//! Durable state of a node, under the node's data directory.
//!
//! | file                                     | holds                                         | written by     | synced          |
//! |------------------------------------------|-----------------------------------------------|----------------|-----------------|
//! | `acceptor.wal.<base>`                    | every promise and acceptance, in order        | acceptor       | before replies  |
//! | `decided.wal.<base>`                     | decided values, batch by batch                | learner        | before a snapshot is installed |
//! | `acceptor.wal.lock`, `decided.wal.lock`  | nothing: `flock`ed by the instance writing the log | that log  | never           |
//! | `ballot`                                 | highest ballot this node used                 | leader-elector | before use (fdatasync, rename, directory sync) |
//! | `snapshot.bin`                           | state machine snapshot (replaced by rename)   | state machine  | before the rename, off its thread |
//! | `membership`                             | the cluster's name and the latest configuration this node applied | state machine's host | before the roles hear of it (fdatasync, rename, directory sync) |
//!
//! The `membership` file is what a restarted node starts from instead of the config
//! file's `[[nodes]]` ([`Storage::load_membership`]): once a StopSign changed the members,
//! the config file describes the cluster as it was, not as it is. It is written like the
//! ballot: CRC-32, then the encoding, into a temporary file that is synced and renamed.
//!
//! The two logs are [`Wal`]s: appends, a CRC per record, a torn tail cut off on
//! recovery, in segment files of 8 MiB named by the logical offset they start at
//! (`<base>` is 16 hex digits). The acceptor appends its writes, then one `fdatasync`
//! per group covers every reply that waited for it. The learner's log is synced only
//! before a snapshot (the slots a snapshot covers must stay servable to lagging peers):
//! decided values are durable at the acceptors, so a lost tail above the snapshot is
//! learned again (fetched from a peer, or recovered by the next leader's phase 1).
//!
//! Once a durable snapshot covers the slots below some slot, both logs give back the
//! segments that hold nothing else still needed ([`acceptor_log::AcceptorLog::compact`],
//! [`decided_log::DecidedLog::compact`]); their indexes forget those slots, so neither
//! disk nor memory grows with the history. A data directory from before segments has
//! plain `acceptor.wal` and `decided.wal` files: each becomes its log's segment at base
//! 0 when the log opens.
//!
//! The ballot used to live in sled, whose `flush` makes writes durable with
//! `sync_file_range` (no device cache flush, no metadata): after a power cut a node
//! could have forgotten a ballot it campaigned with and used it again. sled is no longer
//! a dependency. A data directory from then that has its `sled` directory but no
//! `ballot` file is refused at start (see [`Storage::load_ballot`]); one with both was
//! run by a build that read sled and campaigned above its ballot, so its file holds the
//! higher one.

use crate::error::{Error, Result};
use crate::messages::codec;
use crate::messages::{Ballot, Configuration};
pub mod acceptor_log;
pub mod decided_log;
pub mod failpoint;
pub mod snapshot;
pub mod wal;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use wal::Wal;

/// The elector's ballot and the state machine's snapshot, each a file.
#[derive(Clone)]
pub struct Storage {
    pub(crate) dir: PathBuf,
}

pub(crate) const SNAPSHOT: &str = "snapshot.bin";
pub(crate) const DECIDED: &str = "decided.wal";
const BALLOT: &str = "ballot";
const MEMBERSHIP: &str = "membership";
/// Where data directories from before kept the ballot (no longer read).
const LEGACY_SLED: &str = "sled";

impl Storage {
    /// Opens (or creates) the data directory `dir`, removing temporary files a crash
    /// left behind. (Two instances on one directory are kept apart by the logs' locks.)
    pub fn open(dir: &Path) -> Result<Storage> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Storage(format!("cannot create {}: {e}", dir.display())))?;
        remove_temporaries(dir);
        Ok(Storage { dir: dir.to_path_buf() })
    }

    /// The highest ballot this node used, from its file (zero in a new data directory).
    ///
    /// A data directory of the older layout, with a `sled` directory and no `ballot`
    /// file, is refused: its ballot is in sled, which this build cannot read, and
    /// starting from a lower ballot could make the node use one of its ballots again.
    pub fn load_ballot(&self) -> Result<Ballot> {
        let path = self.dir.join(BALLOT);
        match std::fs::read(&path) {
            Ok(bytes) => decode_ballot(&bytes).ok_or_else(|| {
                Error::Storage(format!(
                    "{} is damaged (bad checksum or length); the node cannot know which ballots it used",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match self.dir.join(LEGACY_SLED) {
                sled if sled.exists() => Err(Error::Storage(format!(
                    "{} is a data directory of an older layout: this node's ballot is in {}, \
                     which this build no longer reads, and there is no {}. Starting without that \
                     ballot could make the node use a ballot again, which is unsafe, so it does \
                     not start. To carry the ballot over, run this node once more with a build \
                     that reads sled/ and writes the ballot file (commits 207de24 to 87d6973) \
                     until it has campaigned once (\"campaigning\" in its log) and so written {}; \
                     then start this build, and remove {} once it runs",
                    self.dir.display(),
                    sled.display(),
                    path.display(),
                    path.display(),
                    sled.display(),
                ))),
                _ => Ok(Ballot::ZERO),
            },
            Err(e) => Err(Error::Storage(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// Makes `b` the ballot [`Storage::load_ballot`] returns, durably before it returns
    /// (a [`ReplacingFile`]: written aside, synced, renamed over the old one). Blocking
    /// for about a millisecond; the elector calls it once per campaign.
    pub fn save_ballot(&self, b: Ballot) -> Result<()> {
        let payload = codec::encode(&b)?;
        self.write_file(BALLOT, |w| {
            w.write_all(&crc32fast::hash(&payload).to_le_bytes())?;
            w.write_all(&payload)
        })?
        .install()
        .map(drop)
    }

    /// The cluster's name and the latest configuration this node applied, from the
    /// `membership` file (`None`: no configuration was ever applied here, the node starts
    /// from its config file or joins). A damaged file is an error: starting from the
    /// config file instead could make a removed node a member again.
    pub fn load_membership(&self) -> Result<Option<(String, Configuration)>> {
        let path = self.dir.join(MEMBERSHIP);
        match std::fs::read(&path) {
            Ok(bytes) => checked_decode(&bytes).map(Some).ok_or_else(|| {
                Error::Storage(format!(
                    "{} is damaged (bad checksum or length); the node cannot know the cluster's \
                     latest configuration (restore the file from a backup, or wipe the data \
                     directory and add the node again)",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Storage(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// Makes `config` (of cluster `cluster`) what [`Storage::load_membership`] returns,
    /// durably before it returns (written aside, synced, renamed, directory synced). Rare:
    /// once per configuration change.
    pub fn save_membership(&self, cluster: &str, config: &Configuration) -> Result<()> {
        let payload = codec::encode(&(cluster, config))?;
        self.write_file(MEMBERSHIP, |w| {
            w.write_all(&crc32fast::hash(&payload).to_le_bytes())?;
            w.write_all(&payload)
        })?
        .install()
        .map(drop)
    }

    /// The latest snapshot, if one was taken.
    pub fn load_snapshot(&self) -> Result<Option<Vec<u8>>> {
        match std::fs::read(self.dir.join(SNAPSHOT)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Storage(format!("cannot read the snapshot: {e}"))),
        }
    }

    /// Writes a new snapshot, what `write` writes, to a temporary file (into the page
    /// cache; no sync). [`ReplacingFile::install`] then makes it durable and puts it in
    /// place of the current one; until then a crash leaves the current one.
    pub fn write_snapshot(&self, write: impl FnOnce(&mut BufWriter<&File>) -> Result<()>) -> Result<ReplacingFile> {
        let file = self.write_file(SNAPSHOT, |_| Ok(()))?;
        let mut w = BufWriter::with_capacity(1 << 20, &file.file);
        write(&mut w)?;
        w.flush().map_err(|e| file.error("write", e))?;
        drop(w);
        Ok(file)
    }

    /// A temporary file beside `name`, holding what `write` writes, to replace `name`
    /// when installed. If writing fails, or the file is dropped uninstalled, it is
    /// removed.
    fn write_file(
        &self,
        name: &'static str,
        write: impl FnOnce(&mut &File) -> std::io::Result<()>,
    ) -> Result<ReplacingFile> {
        // A name of its own: a node restarted in the same process (tests) must not write
        // into the file an earlier instance is still installing.
        let tmp = self.dir.join(unique_tmp(name));
        let file = ReplacingFile {
            file: File::create(&tmp).map_err(|e| Error::Storage(format!("{name}: create: {e}")))?,
            tmp,
            dir: self.dir.clone(),
            name,
            installed: false,
        };
        let mut f = &file.file;
        write(&mut f).map_err(|e| file.error("write", e))?;
        Ok(file)
    }
}

/// Removes temporary snapshot files a crash left behind (they were never installed).
/// This also keeps a node restarted in the same process safe from its earlier
/// instance: an install still running from before finds its file gone and fails,
/// instead of renaming an older snapshot over one the new instance installs.
fn remove_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if (name.starts_with(SNAPSHOT) || name.starts_with(BALLOT) || name.starts_with(MEMBERSHIP))
            && name.ends_with(".tmp")
            && let Err(e) = std::fs::remove_file(entry.path())
        {
            tracing::warn!(file = %name, error = %e, "cannot remove an unfinished temporary file");
        }
    }
}

/// `<name>.<pid>-<n>.tmp`, a name no other writer in this process uses.
fn unique_tmp(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{name}.{}-{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A ballot as stored (see [`Storage::save_ballot`]): the CRC-32 of its encoding, then
/// the encoding.
fn decode_ballot(bytes: &[u8]) -> Option<Ballot> {
    checked_decode(bytes)
}

/// A value stored as the CRC-32 of its encoding, then the encoding (the ballot and
/// membership files); `None` if the checksum or the encoding is wrong.
fn checked_decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    let (crc, payload) = bytes.split_first_chunk::<4>()?;
    (u32::from_le_bytes(*crc) == crc32fast::hash(payload))
        .then(|| codec::decode(payload).ok())
        .flatten()
}

/// A file written beside the one it replaces (a snapshot, the ballot, the membership), not yet durable
/// nor in place. Dropped uninstalled (or when installing fails), it removes itself.
pub struct ReplacingFile {
    file: File,
    tmp: PathBuf,
    dir: PathBuf,
    name: &'static str,
    installed: bool,
}

impl ReplacingFile {
    /// Makes the file durable and puts it in place (fdatasync, rename, directory sync);
    /// returns its size in bytes. Blocking, for milliseconds on a large snapshot: call
    /// it off an actor's thread.
    pub fn install(mut self) -> Result<u64> {
        self.file.sync_data().map_err(|e| self.error("fdatasync", e))?;
        let size = self.file.metadata().map_err(|e| self.error("stat", e))?.len();
        if self.name == SNAPSHOT {
            failpoint::hit("snapshot-write");
        }
        std::fs::rename(&self.tmp, self.dir.join(self.name)).map_err(|e| self.error("rename", e))?;
        self.installed = true;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.error("sync directory", e))?;
        Ok(size)
    }

    fn error(&self, what: &str, e: std::io::Error) -> Error {
        Error::Storage(format!("{}: {what}: {e}", self.name))
    }
}

impl Drop for ReplacingFile {
    fn drop(&mut self) {
        if !self.installed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The record at `offset`, decoded, or `cache`'s copy if it holds that record: reading
/// a batch's slots one by one decodes its record once.
pub(crate) fn record_at<'c, T: serde::de::DeserializeOwned>(
    wal: &Wal,
    offset: u64,
    cache: &'c mut Option<(u64, T)>,
) -> Result<&'c T> {
    let record = match cache.take() {
        Some((at, record)) if at == offset => record,
        _ => codec::decode_local(&wal.read_at(offset)?)?,
    };
    Ok(&cache.insert((offset, record)).1)
}

#[cfg(test)]
mod tests {
    use super::acceptor_log::AcceptorLog;
    use super::decided_log::DecidedLog;
    use super::*;
    use crate::messages::{Command, RequestId, Slot, Value};
    use crate::roles::ready::AcceptorWrite;
    use std::collections::BTreeMap;

    fn reopen(dir: &Path) -> Storage {
        Storage::open(dir).expect("reopen")
    }

    /// The temporary snapshot files in `dir`.
    fn temporaries(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .expect("read dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    fn snapshot_of(s: &Storage, bytes: &'static [u8]) -> ReplacingFile {
        s.write_snapshot(|w| w.write_all(bytes).map_err(|e| Error::Storage(e.to_string())))
            .expect("write snapshot")
    }

    #[test]
    fn storage_snapshot_installs_in_place_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Storage::open(dir.path()).expect("open");
        assert_eq!(snapshot_of(&s, b"first").install().expect("install"), 5);
        assert_eq!(s.load_snapshot().expect("load").as_deref(), Some(&b"first"[..]));
        // Dropped uninstalled, or failing to be written: gone, the installed one kept.
        drop(snapshot_of(&s, b"second"));
        let failed = s.write_snapshot(|_| Err(Error::Storage("disk full".into())));
        assert!(failed.is_err());
        assert_eq!(temporaries(dir.path()), Vec::<String>::new());
        assert_eq!(s.load_snapshot().expect("load").as_deref(), Some(&b"first"[..]));
    }

    #[test]
    fn storage_snapshot_install_from_before_a_reopen_fails_without_replacing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Storage::open(dir.path()).expect("open");
        snapshot_of(&s, b"installed").install().expect("install");
        let late = snapshot_of(&s, b"from the earlier instance");
        drop(s);
        // The node restarts in the same process while its earlier instance's install has
        // not run yet: the reopen removes that file, so the late install cannot rename
        // an older snapshot over whatever the new instance installs.
        let s = reopen(dir.path());
        assert_eq!(temporaries(dir.path()), Vec::<String>::new());
        assert!(late.install().is_err(), "its file is gone");
        assert_eq!(s.load_snapshot().expect("load").as_deref(), Some(&b"installed"[..]));
    }

    #[test]
    fn storage_ballot_is_a_file_and_an_old_sled_directory_without_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Storage::open(dir.path()).expect("open");
        assert_eq!(s.load_ballot().expect("none yet"), Ballot::ZERO);
        s.save_ballot(Ballot::new(4, 2)).expect("save");
        s.save_ballot(Ballot::new(5, 2)).expect("save");
        assert_eq!(temporaries(dir.path()), Vec::<String>::new(), "no temporary file left");
        assert!(
            !dir.path().join(LEGACY_SLED).exists(),
            "a new data directory has no sled"
        );
        let s = reopen(dir.path());
        assert_eq!(s.load_ballot().expect("load"), Ballot::new(5, 2));

        // A data directory from before, run since by a build that wrote the file: the
        // file holds the higher ballot, and it counts.
        std::fs::create_dir(dir.path().join(LEGACY_SLED)).expect("sled dir");
        assert_eq!(s.load_ballot().expect("load"), Ballot::new(5, 2));

        // Its ballot only in sled: refused, saying what to do, never a ballot of zero.
        let old = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(old.path().join(LEGACY_SLED)).expect("sled dir");
        let e = Storage::open(old.path())
            .expect("open")
            .load_ballot()
            .expect_err("sled only");
        let e = e.to_string();
        for says in ["older layout", "sled", "ballot", "unsafe", "87d6973"] {
            assert!(e.contains(says), "{says:?} missing in {e}");
        }

        // A damaged file is an error, not a ballot of zero.
        let mut bytes = std::fs::read(dir.path().join(BALLOT)).expect("read");
        bytes[4] ^= 1;
        std::fs::write(dir.path().join(BALLOT), &bytes).expect("write");
        let e = s.load_ballot().expect_err("damaged");
        assert!(e.to_string().contains("damaged"), "{e}");
        std::fs::write(dir.path().join(BALLOT), &bytes[..3]).expect("write");
        assert!(s.load_ballot().is_err(), "too short");
    }

    #[test]
    fn storage_membership_file_round_trips_and_a_damaged_one_is_refused() {
        use crate::messages::Member;
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Storage::open(dir.path()).expect("open");
        assert_eq!(s.load_membership().expect("none yet"), None);
        let member = |port: u16| Member {
            peer_addr: format!("127.0.0.1:{port}"),
            http_addr: format!("127.0.0.1:{}", port + 100),
        };
        let first = Configuration::initial([(1, member(7101)), (2, member(7102))].into_iter().collect());
        let mut second = first.clone();
        second.id = 1;
        second.start = 42;
        second.members.insert(4, member(7104));
        s.save_membership("c1", &first).expect("save");
        s.save_membership("c1", &second).expect("save");
        assert_eq!(temporaries(dir.path()), Vec::<String>::new(), "no temporary file left");
        let s = reopen(dir.path());
        assert_eq!(
            s.load_membership().expect("load"),
            Some(("c1".to_string(), second)),
            "the latest one"
        );

        // A damaged file is an error naming it, not "no configuration".
        let path = dir.path().join(MEMBERSHIP);
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&path, &bytes).expect("write");
        let e = s.load_membership().expect_err("damaged").to_string();
        assert!(e.contains("membership") && e.contains("damaged"), "{e}");
        std::fs::write(&path, &bytes[..2]).expect("write");
        assert!(s.load_membership().is_err(), "too short");
    }

    #[test]
    fn storage_state_round_trips_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let value = Value::Command(Command {
            id: RequestId { client: 1, seq: 1 },
            ack_below: 0,
            payload: vec![7],
        });
        {
            let s = Storage::open(dir.path()).expect("open");
            let mut acceptor = AcceptorLog::open(dir.path(), drop).expect("acceptor log");
            let (mut decided, _) = DecidedLog::open(dir.path(), 0).expect("decided log");
            acceptor
                .append(&AcceptorWrite {
                    promised: Some(Ballot::new(3, 2)),
                    accepted: vec![
                        (0, Ballot::new(1, 2), value.clone()),
                        (9, Ballot::new(1, 1), Value::Noop),
                    ],
                })
                .expect("append");
            acceptor
                .append(&AcceptorWrite {
                    promised: None,
                    accepted: vec![(0, Ballot::new(3, 2), value.clone())],
                })
                .expect("append");
            acceptor.take_pending().write_and_sync().expect("sync");
            decided
                .append(&[(0, value.clone()), (1, Value::Noop), (5, Value::Noop)])
                .expect("log");
            assert_eq!(decided.get(1, &mut None).expect("read"), Some(Value::Noop));
            assert_eq!(
                decided.get(2, &mut None).expect("read"),
                None,
                "a hole between two runs"
            );
            s.save_ballot(Ballot::new(4, 2)).expect("ballot");
        }
        let s = reopen(dir.path());
        let mut writes = Vec::new();
        let log = AcceptorLog::open(dir.path(), |w| writes.push(w)).expect("acceptor log");
        let promised = writes.iter().filter_map(|w| w.promised).max().unwrap_or(Ballot::ZERO);
        let accepted: BTreeMap<Slot, (Ballot, Value)> = writes
            .into_iter()
            .flat_map(|w| w.accepted)
            .map(|(s, b, v)| (s, (b, v)))
            .collect();
        assert_eq!(
            log.read(0, &mut None).expect("read"),
            value,
            "the latest acceptance of slot 0"
        );
        assert_eq!(log.read(9, &mut None).expect("read"), Value::Noop);
        assert_eq!(promised, Ballot::new(3, 2));
        assert_eq!(
            accepted.get(&0),
            Some(&(Ballot::new(3, 2), value.clone())),
            "the later acceptance wins"
        );
        assert_eq!(accepted.get(&9), Some(&(Ballot::new(1, 1), Value::Noop)));
        assert_eq!(accepted.len(), 2);
        let (decided, log) = DecidedLog::open(dir.path(), 1).expect("decided log");
        assert_eq!(
            log.keys().copied().collect::<Vec<_>>(),
            vec![1, 5],
            "slots below `from` stay on disk"
        );
        assert_eq!(decided.get(0, &mut None).expect("read"), Some(value.clone()));
        assert_eq!(decided.read_all().expect("read").len(), 3);
        assert_eq!(s.load_ballot().expect("ballot"), Ballot::new(4, 2));
    }

    #[test]
    fn storage_logs_of_a_data_directory_from_before_segments_open_as_their_first_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = AcceptorWrite {
            promised: Some(Ballot::new(2, 1)),
            accepted: vec![(0, Ballot::new(2, 1), Value::Noop)],
        };
        {
            let mut acceptor = AcceptorLog::open(dir.path(), drop).expect("acceptor log");
            acceptor.append(&write).expect("append");
            acceptor.take_pending().write_and_sync().expect("sync");
            let (mut decided, _) = DecidedLog::open(dir.path(), 0).expect("decided log");
            decided.append(&[(0, Value::Noop), (1, Value::Noop)]).expect("append");
        }
        // What a build of before left: the logs as plain files.
        for name in [acceptor_log::ACCEPTOR, DECIDED] {
            let segment = dir.path().join(format!("{name}.0000000000000000"));
            std::fs::rename(segment, dir.path().join(name)).expect("rename");
        }
        let mut writes = Vec::new();
        let acceptor = AcceptorLog::open(dir.path(), |w| writes.push(w)).expect("acceptor log");
        assert_eq!(writes, vec![write]);
        assert_eq!(acceptor.read(0, &mut None).expect("read"), Value::Noop);
        let (_, values) = DecidedLog::open(dir.path(), 0).expect("decided log");
        assert_eq!(values.len(), 2);
        for name in [acceptor_log::ACCEPTOR, DECIDED] {
            assert!(!dir.path().join(name).exists(), "{name} became a segment");
            assert!(dir.path().join(format!("{name}.0000000000000000")).exists());
        }
    }
}
