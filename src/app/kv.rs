//! The replicated key-value store: get (range), put, delete, compare-and-swap and
//! etcd-style transactions, with etcd's revision bookkeeping (a store revision that
//! grows by one with every write, and per key its create and mod revisions and version)
//! so that the etcd v3 gateway can be served faithfully.

use super::Application;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Bound;

/// One key as stored, with etcd's bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub mod_revision: u64,
    /// Number of writes since the key was (re)created; 0 means absent.
    pub version: u64,
}

/// What a transaction compares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    Value(Vec<u8>),
    Version(u64),
    CreateRevision(u64),
    ModRevision(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Greater,
    Less,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub key: Vec<u8>,
    pub op: CompareOp,
    pub target: CompareTarget,
}

/// A command of the store. Key ranges follow etcd: an empty `range_end` means the key
/// alone, `range_end == [0]` means every key from `key` on, otherwise `key..range_end`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    Range {
        key: Vec<u8>,
        range_end: Vec<u8>,
        limit: u64,
    },
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
        range_end: Vec<u8>,
    },
    /// Sets `key` to `new` if its value is `expected` (`None`: if it is absent).
    Cas {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    },
    /// If every compare holds, runs `success`, else `failure`; atomically, as one revision.
    Txn {
        compare: Vec<Compare>,
        success: Vec<KvCommand>,
        failure: Vec<KvCommand>,
    },
}

impl KvCommand {
    pub fn get(key: impl Into<Vec<u8>>) -> Self {
        KvCommand::Range {
            key: key.into(),
            range_end: Vec::new(),
            limit: 0,
        }
    }
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        KvCommand::Put {
            key: key.into(),
            value: value.into(),
        }
    }
    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        KvCommand::Delete {
            key: key.into(),
            range_end: Vec::new(),
        }
    }
    pub fn cas(key: impl Into<Vec<u8>>, expected: Option<Vec<u8>>, new: impl Into<Vec<u8>>) -> Self {
        KvCommand::Cas {
            key: key.into(),
            expected,
            new: new.into(),
        }
    }
    fn is_read_only(&self) -> bool {
        match self {
            KvCommand::Range { .. } => true,
            KvCommand::Txn { success, failure, .. } => success.iter().chain(failure).all(KvCommand::is_read_only),
            _ => false,
        }
    }
}

/// The outcome of one command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvResult {
    Range {
        kvs: Vec<KeyValue>,
        count: u64,
        more: bool,
    },
    /// `prev` is the key as it was before the put.
    Put {
        prev: Option<KeyValue>,
    },
    Delete {
        deleted: Vec<KeyValue>,
    },
    /// `current` is the key after the command (the new value if it succeeded).
    Cas {
        succeeded: bool,
        current: Option<KeyValue>,
    },
    Txn {
        succeeded: bool,
        results: Vec<KvResult>,
        /// The store revision each result saw (etcd reports it per response).
        revisions: Vec<u64>,
    },
}

/// A reply: the outcome and the store's revision after the command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvReply {
    pub revision: u64,
    pub result: KvResult,
}

impl KvReply {
    /// The value of a single-key range (a get), if the key exists.
    pub fn value(&self) -> Option<&[u8]> {
        match &self.result {
            KvResult::Range { kvs, .. } => kvs.first().map(|kv| kv.value.as_slice()),
            _ => None,
        }
    }
}

/// The store: keys in order, and the revision of the last write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStore {
    data: BTreeMap<Vec<u8>, KeyValue>,
    revision: u64,
}

impl Default for KvStore {
    fn default() -> Self {
        // etcd starts at revision 1 with an empty store.
        KvStore {
            data: BTreeMap::new(),
            revision: 1,
        }
    }
}

impl KvStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn range_bounds<'a>(key: &'a [u8], range_end: &'a [u8]) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
        match range_end {
            [] => (Bound::Included(key), Bound::Included(key)),
            [0] => (Bound::Included(key), Bound::Unbounded),
            end => (Bound::Included(key), Bound::Excluded(end)),
        }
    }

    /// The stored keys in `key..range_end` (etcd's range rules), in key order. A
    /// client may send a range_end at or below the key: that range is empty (and must
    /// not reach `BTreeMap::range`, which panics on reversed bounds).
    fn matching<'a>(&'a self, key: &'a [u8], range_end: &'a [u8]) -> impl Iterator<Item = &'a KeyValue> + 'a {
        let valid = range_end.is_empty() || range_end == [0] || range_end > key;
        valid
            .then(|| {
                self.data
                    .range::<[u8], _>(Self::range_bounds(key, range_end))
                    .map(|(_, kv)| kv)
            })
            .into_iter()
            .flatten()
    }

    fn range(&self, key: &[u8], range_end: &[u8], limit: u64) -> KvResult {
        let mut kvs = Vec::new();
        let mut count = 0u64;
        for kv in self.matching(key, range_end) {
            count += 1;
            if limit == 0 || (kvs.len() as u64) < limit {
                kvs.push(kv.clone());
            }
        }
        let more = (kvs.len() as u64) < count;
        KvResult::Range { kvs, count, more }
    }

    fn compare(&self, c: &Compare) -> bool {
        let kv = self.data.get(&c.key);
        let ord = match (&c.target, kv) {
            (CompareTarget::Value(_), None) => return false,
            (CompareTarget::Value(v), Some(kv)) => kv.value.as_slice().cmp(v.as_slice()),
            (CompareTarget::Version(v), kv) => kv.map_or(0, |kv| kv.version).cmp(v),
            (CompareTarget::CreateRevision(r), kv) => kv.map_or(0, |kv| kv.create_revision).cmp(r),
            (CompareTarget::ModRevision(r), kv) => kv.map_or(0, |kv| kv.mod_revision).cmp(r),
        };
        match c.op {
            CompareOp::Equal => ord.is_eq(),
            CompareOp::NotEqual => ord.is_ne(),
            CompareOp::Greater => ord.is_gt(),
            CompareOp::Less => ord.is_lt(),
        }
    }

    /// Writes at revision `rev` (the caller bumps the store revision once per command).
    fn put_at(&mut self, key: Vec<u8>, value: Vec<u8>, rev: u64) -> Option<KeyValue> {
        let prev = self.data.get(&key).cloned();
        let (create_revision, version) = prev.as_ref().map_or((rev, 1), |p| (p.create_revision, p.version + 1));
        self.data.insert(
            key.clone(),
            KeyValue {
                key,
                value,
                create_revision,
                mod_revision: rev,
                version,
            },
        );
        prev
    }

    fn delete_range(&mut self, key: &[u8], range_end: &[u8]) -> Vec<KeyValue> {
        let keys: Vec<Vec<u8>> = self.matching(key, range_end).map(|kv| kv.key.clone()).collect();
        keys.iter().filter_map(|k| self.data.remove(k)).collect()
    }

    /// Runs one command at write revision `rev`; says whether it wrote anything.
    fn run(&mut self, cmd: KvCommand, rev: u64, wrote: &mut bool) -> KvResult {
        match cmd {
            // A read: nothing changes.
            KvCommand::Range { key, range_end, limit } => self.range(&key, &range_end, limit),
            // A put always writes.
            KvCommand::Put { key, value } => {
                *wrote = true;
                KvResult::Put {
                    prev: self.put_at(key, value, rev),
                }
            }
            // A delete writes only if a key was there.
            KvCommand::Delete { key, range_end } => {
                let deleted = self.delete_range(&key, &range_end);
                *wrote |= !deleted.is_empty();
                KvResult::Delete { deleted }
            }
            // Compare-and-swap: the value (or absence) must match.
            KvCommand::Cas { key, expected, new } => {
                let current = self.data.get(&key).map(|kv| &kv.value);
                if current == expected.as_ref() {
                    *wrote = true;
                    self.put_at(key.clone(), new, rev);
                    KvResult::Cas {
                        succeeded: true,
                        current: self.data.get(&key).cloned(),
                    }
                } else {
                    KvResult::Cas {
                        succeeded: false,
                        current: self.data.get(&key).cloned(),
                    }
                }
            }
            // A transaction: all compares decide which branch runs, all at one revision.
            KvCommand::Txn {
                compare,
                success,
                failure,
            } => {
                let succeeded = compare.iter().all(|c| self.compare(c));
                let branch = if succeeded { success } else { failure };
                let (mut results, mut revisions) = (Vec::new(), Vec::new());
                for op in branch {
                    results.push(self.run(op, rev, wrote));
                    // Like etcd: an op sees the txn's write revision once the txn has written.
                    revisions.push(if *wrote { rev } else { rev - 1 });
                }
                KvResult::Txn {
                    succeeded,
                    results,
                    revisions,
                }
            }
        }
    }
}

impl Application for KvStore {
    type Command = KvCommand;
    type Reply = KvReply;

    fn apply(&mut self, command: KvCommand) -> KvReply {
        let rev = self.revision + 1;
        let mut wrote = false;
        let result = self.run(command, rev, &mut wrote);
        if wrote {
            self.revision = rev;
        }
        KvReply {
            revision: self.revision,
            result,
        }
    }

    fn read(&self, command: &KvCommand) -> Option<KvReply> {
        if !command.is_read_only() {
            return None;
        }
        // A read-only command on a clone would be wasteful; run reads directly.
        let result = match command {
            KvCommand::Range { key, range_end, limit } => self.range(key, range_end, *limit),
            KvCommand::Txn {
                compare,
                success,
                failure,
            } => {
                let succeeded = compare.iter().all(|c| self.compare(c));
                let branch = if succeeded { success } else { failure };
                let results: Vec<KvResult> = branch.iter().filter_map(|op| self.read(op).map(|r| r.result)).collect();
                let revisions = vec![self.revision; results.len()];
                KvResult::Txn {
                    succeeded,
                    results,
                    revisions,
                }
            }
            _ => return None,
        };
        Some(KvReply {
            revision: self.revision,
            result,
        })
    }

    fn snapshot(&self) -> Vec<u8> {
        crate::codec::encode(self).unwrap_or_default()
    }

    fn restore(bytes: &[u8]) -> Result<Self> {
        crate::codec::decode_local(bytes).map_err(|e| Error::Storage(format!("key-value snapshot: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_put_get_delete_track_revisions() {
        let mut kv = KvStore::new();
        let r = kv.apply(KvCommand::put("a", "1"));
        assert_eq!(r.revision, 2);
        kv.apply(KvCommand::put("a", "2"));
        let got = kv.read(&KvCommand::get("a")).expect("a get is read-only");
        assert_eq!(got.value(), Some(&b"2"[..]));
        let KvResult::Range { kvs, .. } = got.result else {
            panic!("get answers a range")
        };
        assert_eq!((kvs[0].create_revision, kvs[0].mod_revision, kvs[0].version), (2, 3, 2));
        let d = kv.apply(KvCommand::delete("a"));
        assert_eq!(d.revision, 4);
        let none = kv.apply(KvCommand::delete("a"));
        assert_eq!(none.revision, 4, "deleting nothing does not bump the revision");
        assert_eq!(
            kv.read(&KvCommand::get("a"))
                .and_then(|r| r.value().map(<[u8]>::to_vec)),
            None
        );
    }

    #[test]
    fn kv_cas_succeeds_only_on_expected_value() {
        let mut kv = KvStore::new();
        let r = kv.apply(KvCommand::cas("k", None, "x"));
        assert!(matches!(r.result, KvResult::Cas { succeeded: true, .. }));
        let r = kv.apply(KvCommand::cas("k", None, "y"));
        assert!(matches!(r.result, KvResult::Cas { succeeded: false, .. }));
        let r = kv.apply(KvCommand::cas("k", Some(b"x".to_vec()), "y"));
        assert!(matches!(r.result, KvResult::Cas { succeeded: true, .. }));
        assert_eq!(
            kv.read(&KvCommand::get("k"))
                .and_then(|r| r.value().map(<[u8]>::to_vec)),
            Some(b"y".to_vec())
        );
    }

    #[test]
    fn kv_prefix_range_and_limit() {
        let mut kv = KvStore::new();
        for k in ["p/1", "p/2", "p/3", "q"] {
            kv.apply(KvCommand::put(k, "v"));
        }
        let r = kv
            .read(&KvCommand::Range {
                key: b"p/".to_vec(),
                range_end: b"p0".to_vec(),
                limit: 2,
            })
            .expect("read-only");
        let KvResult::Range { kvs, count, more } = r.result else {
            panic!("range")
        };
        assert_eq!((kvs.len(), count, more), (2, 3, true));
        let all = kv
            .read(&KvCommand::Range {
                key: vec![0],
                range_end: vec![0],
                limit: 0,
            })
            .expect("read-only");
        assert!(matches!(all.result, KvResult::Range { count: 4, .. }));
    }

    #[test]
    fn kv_txn_compares_choose_branch_at_one_revision() {
        let mut kv = KvStore::new();
        kv.apply(KvCommand::put("a", "1"));
        let txn = KvCommand::Txn {
            compare: vec![Compare {
                key: b"a".to_vec(),
                op: CompareOp::Equal,
                target: CompareTarget::Version(1),
            }],
            success: vec![KvCommand::put("a", "2"), KvCommand::put("b", "2")],
            failure: vec![KvCommand::get("a")],
        };
        let r = kv.apply(txn.clone());
        assert!(matches!(r.result, KvResult::Txn { succeeded: true, .. }));
        assert_eq!(r.revision, 3, "both puts of one txn share a revision");
        let r = kv.apply(txn);
        assert!(matches!(r.result, KvResult::Txn { succeeded: false, .. }));
        assert_eq!(r.revision, 3);
    }

    #[test]
    fn kv_snapshot_restores_identical_state() {
        let mut kv = KvStore::new();
        kv.apply(KvCommand::put("a", "1"));
        let copy = KvStore::restore(&kv.snapshot()).expect("restore");
        assert_eq!(copy, kv);
        assert!(KvStore::restore(b"\xff\xff garbage").is_err());
    }

    #[test]
    fn kv_reversed_range_is_empty_not_a_panic() {
        let mut kv = KvStore::new();
        kv.apply(KvCommand::put("m", "v"));
        let r = kv
            .read(&KvCommand::Range {
                key: b"z".to_vec(),
                range_end: b"a".to_vec(),
                limit: 0,
            })
            .expect("read-only");
        assert!(matches!(r.result, KvResult::Range { count: 0, .. }));
        let d = kv.apply(KvCommand::Delete {
            key: b"z".to_vec(),
            range_end: b"z".to_vec(),
        });
        assert!(matches!(d.result, KvResult::Delete { ref deleted } if deleted.is_empty()));
        assert_eq!(kv.len(), 1);
    }
}
