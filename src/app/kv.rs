//! The replicated key-value store: get (range), put, delete, compare-and-swap and
//! etcd-style transactions, with etcd's revision bookkeeping (a store revision that
//! grows by one with every write, and per key its create and mod revisions and version)
//! so that the etcd v3 gateway can be served faithfully.
//!
//! **Representation.** The store is most of a node's resident memory, so each key costs
//! one heap allocation: an `Entry`, a boxed byte slice holding a 28-byte header (key
//! length, create and mod revisions, version), the key and the value. A write
//! replaces the whole entry (its value changes anyway); replies copy out into
//! [`KeyValue`]s. The earlier `BTreeMap<Vec<u8>, KeyValue>` held every key twice, in
//! three allocations and three `Vec` headers: with 12-byte keys and 128-byte values,
//! measured heap per key went from 391 bytes to 212; see the ignored
//! `kv_bytes_per_key` test.
//!
//! **Lookups.** The tree is keyed by a key's first 16 bytes, zero-padded, as one
//! big-endian `u128` (its *head*); under each head, a `Bucket` holds the entries that
//! share it, almost always one. Searching the tree compares numbers kept in its own
//! nodes instead of following a pointer to an entry's bytes at every step, and a put
//! is one search (the tree's `entry`), not a get and then a replace. On a store of
//! 100,000 twelve-byte keys, one put went from 1.8 µs to 0.6 µs and one get from 1.6 µs
//! to 0.75 µs (the ignored `kv_put_and_get_cost` test); the heap per key grew from 212
//! bytes to 242 (the tree's nodes hold 32 bytes per key instead of 16).
//!
//! The order is kept. A key shorter than 16 bytes is padded with zeros, so it shares
//! its head only with the keys that extend it by zero bytes, and whenever two keys'
//! heads differ the keys are in the order of their heads. Keys that agree in their
//! first 16 bytes (a keyspace under one long prefix) share a bucket that holds a set
//! ordered by the whole key, which is how the store kept every key before heads: such
//! keys are no slower than before (under `/registry/pods/default/`, put 1.2 µs against
//! 1.5, get 1.1 µs against 1.2).
//!
//! **Snapshots** are the revision and the entries' bytes, in key order, written
//! straight from the tree; restoring checks each entry and the order, and allocates
//! each entry once, at its exact size.

use super::Application;
use crate::error::Result;
use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, btree_map, btree_set};
use std::fmt;
use std::ops::{Bound, RangeBounds};

/// One key as stored, with etcd's bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    #[serde(with = "crate::messages::codec::bytes")]
    pub key: Vec<u8>,
    #[serde(with = "crate::messages::codec::bytes")]
    pub value: Vec<u8>,
    pub create_revision: u64,
    pub mod_revision: u64,
    /// Number of writes since the key was (re)created; 0 means absent.
    pub version: u64,
}

/// What a transaction compares.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    Value(#[serde(with = "crate::messages::codec::bytes")] Vec<u8>),
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
    #[serde(with = "crate::messages::codec::bytes")]
    pub key: Vec<u8>,
    pub op: CompareOp,
    pub target: CompareTarget,
}

/// A command of the store. Key ranges follow etcd: an empty `range_end` means the key
/// alone, `range_end == [0]` means every key from `key` on, otherwise `key..range_end`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvCommand {
    Range {
        #[serde(with = "crate::messages::codec::bytes")]
        key: Vec<u8>,
        #[serde(with = "crate::messages::codec::bytes")]
        range_end: Vec<u8>,
        limit: u64,
    },
    Put {
        #[serde(with = "crate::messages::codec::bytes")]
        key: Vec<u8>,
        #[serde(with = "crate::messages::codec::bytes")]
        value: Vec<u8>,
    },
    Delete {
        #[serde(with = "crate::messages::codec::bytes")]
        key: Vec<u8>,
        #[serde(with = "crate::messages::codec::bytes")]
        range_end: Vec<u8>,
    },
    /// Sets `key` to `new` if its value is `expected` (`None`: if it is absent).
    Cas {
        #[serde(with = "crate::messages::codec::bytes")]
        key: Vec<u8>,
        #[serde(with = "crate::messages::codec::bytes::option")]
        expected: Option<Vec<u8>>,
        #[serde(with = "crate::messages::codec::bytes")]
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

/// One stored key, as a single heap allocation: a fixed little-endian header, then the
/// key, then the value.
///
/// | bytes        | field             |
/// |--------------|-------------------|
/// | `0..4`       | key length (u32)  |
/// | `4..12`      | create revision   |
/// | `12..20`     | mod revision      |
/// | `20..28`     | version           |
/// | `28..28+len` | key               |
/// | rest         | value             |
///
/// The bytes are always well formed: built by [`Entry::new`] or checked by
/// [`Entry::from_bytes`].
#[derive(Clone)]
struct Entry {
    bytes: Box<[u8]>,
}

/// Header bytes before the key.
const HEADER: usize = 28;

impl Entry {
    fn new(key: &[u8], value: &[u8], create_revision: u64, mod_revision: u64, version: u64) -> Self {
        let key_len = u32::try_from(key.len()).expect("a key is shorter than 4 GiB (frames are capped far below)");
        let mut bytes = Vec::with_capacity(HEADER + key.len() + value.len());
        bytes.extend_from_slice(&key_len.to_le_bytes());
        bytes.extend_from_slice(&create_revision.to_le_bytes());
        bytes.extend_from_slice(&mod_revision.to_le_bytes());
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(key);
        bytes.extend_from_slice(value);
        Entry {
            bytes: bytes.into_boxed_slice(),
        }
    }

    /// An entry from its stored bytes (a snapshot's), if they are well formed.
    fn from_bytes(bytes: Box<[u8]>) -> Option<Self> {
        let key_len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
        (bytes.len() >= HEADER && bytes.len() - HEADER >= key_len).then_some(Entry { bytes })
    }

    fn u64_at(&self, at: usize) -> u64 {
        let mut word = [0; 8];
        word.copy_from_slice(&self.bytes[at..at + 8]);
        u64::from_le_bytes(word)
    }

    fn key_end(&self) -> usize {
        let mut word = [0; 4];
        word.copy_from_slice(&self.bytes[..4]);
        HEADER + u32::from_le_bytes(word) as usize
    }

    fn create_revision(&self) -> u64 {
        self.u64_at(4)
    }

    fn mod_revision(&self) -> u64 {
        self.u64_at(12)
    }

    fn version(&self) -> u64 {
        self.u64_at(20)
    }

    fn key(&self) -> &[u8] {
        &self.bytes[HEADER..self.key_end()]
    }

    fn value(&self) -> &[u8] {
        &self.bytes[self.key_end()..]
    }

    /// The reply form, copying key and value.
    fn to_key_value(&self) -> KeyValue {
        KeyValue {
            key: self.key().to_vec(),
            value: self.value().to_vec(),
            create_revision: self.create_revision(),
            mod_revision: self.mod_revision(),
            version: self.version(),
        }
    }

    /// The reply form of an entry leaving the store, given its key already as a `Vec`
    /// (the command's): the value reuses the entry's own allocation.
    fn into_key_value(self, key: Vec<u8>) -> KeyValue {
        debug_assert_eq!(key.as_slice(), self.key());
        let (create_revision, mod_revision, version) = (self.create_revision(), self.mod_revision(), self.version());
        let key_end = self.key_end();
        let mut value = self.bytes.into_vec();
        value.drain(..key_end);
        KeyValue {
            key,
            value,
            create_revision,
            mod_revision,
            version,
        }
    }
}

/// Entries of one bucket are ordered, compared and borrowed (as `[u8]`) by the key
/// alone, so a bucket's set can be searched with a plain key slice.
impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(other.key())
    }
}

impl Borrow<[u8]> for Entry {
    fn borrow(&self) -> &[u8] {
        self.key()
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("key", &self.key())
            .field("value", &self.value())
            .field("create_revision", &self.create_revision())
            .field("mod_revision", &self.mod_revision())
            .field("version", &self.version())
            .finish()
    }
}

/// In a snapshot an entry is its stored bytes, header included, as one byte string:
/// restoring it is one allocation of exactly the right size.
impl Serialize for Entry {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.bytes)
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let bytes = crate::messages::codec::bytes::deserialize(deserializer)?.into_boxed_slice();
        Entry::from_bytes(bytes).ok_or_else(|| de::Error::custom("malformed key-value entry"))
    }
}

/// A key's first 16 bytes, zero-padded, as a big-endian number: where the store's tree
/// files it. If two keys' heads differ, the keys are ordered as their heads.
fn head(key: &[u8]) -> u128 {
    let mut bytes = [0; 16];
    let n = key.len().min(16);
    bytes[..n].copy_from_slice(&key[..n]);
    u128::from_be_bytes(bytes)
}

/// The entries whose keys share one head: almost always one. Keys that agree in their
/// first 16 bytes (say, every key under one long prefix) go into a set of their own,
/// ordered by the whole key, as the store was before heads: such a keyspace costs one
/// more tree level, not a list to walk.
#[derive(Clone, Debug)]
enum Bucket {
    One(Entry),
    /// At least two.
    #[expect(
        clippy::box_collection,
        reason = "boxed, a bucket takes 16 bytes in the tree's nodes, not 24"
    )]
    Many(Box<BTreeSet<Entry>>),
}

const _: () = assert!(
    std::mem::size_of::<Bucket>() == 16,
    "a bucket is one fat pointer's size"
);

/// The entries of one bucket in a key range.
enum BucketRange<'a> {
    One(Option<&'a Entry>),
    Many(btree_set::Range<'a, Entry>),
}

impl<'a> Iterator for BucketRange<'a> {
    type Item = &'a Entry;

    fn next(&mut self) -> Option<&'a Entry> {
        match self {
            BucketRange::One(e) => e.take(),
            BucketRange::Many(range) => range.next(),
        }
    }
}

impl Bucket {
    /// The entries with keys within `bounds`, in key order.
    fn range<'a>(&'a self, bounds: (Bound<&[u8]>, Bound<&[u8]>)) -> BucketRange<'a> {
        match self {
            Bucket::One(e) => BucketRange::One(RangeBounds::<[u8]>::contains(&bounds, e.key()).then_some(e)),
            Bucket::Many(set) => BucketRange::Many(set.range::<[u8], _>(bounds)),
        }
    }

    /// The entry with the highest key.
    fn last(&self) -> Option<&Entry> {
        match self {
            Bucket::One(e) => Some(e),
            Bucket::Many(set) => set.last(),
        }
    }

    fn get(&self, key: &[u8]) -> Option<&Entry> {
        match self {
            Bucket::One(e) => (e.key() == key).then_some(e),
            Bucket::Many(set) => set.get(key),
        }
    }

    /// Adds an entry whose key is not here yet.
    fn add(&mut self, e: Entry) {
        match self {
            Bucket::One(_) => {
                let Bucket::One(old) = std::mem::replace(self, Bucket::Many(Box::default())) else {
                    unreachable!("matched Bucket::One above")
                };
                *self = Bucket::Many(Box::new(BTreeSet::from([old, e])));
            }
            Bucket::Many(set) => {
                let added = set.insert(e);
                debug_assert!(added, "Bucket::add is given new keys only");
            }
        }
    }

    /// Stores the entry `make` builds from the one it replaces (if any); returns that
    /// one.
    fn put(&mut self, key: &[u8], make: impl FnOnce(Option<&Entry>) -> Entry) -> Option<Entry> {
        match self {
            // The key itself: replaced.
            Bucket::One(e) if e.key() == key => {
                let new = make(Some(e));
                Some(std::mem::replace(e, new))
            }
            // Another key with the same head: now two.
            Bucket::One(_) => {
                self.add(make(None));
                None
            }
            // Several: replaced, or added.
            Bucket::Many(set) => {
                let new = make(set.get(key));
                set.replace(new)
            }
        }
    }
}

/// The store: keys in order, and the revision of the last write.
///
/// Each key is one `Entry`: one heap allocation holding bookkeeping, key and value. The
/// tree files entries by their keys' heads (see the module's docs).
#[derive(Clone, Debug)]
pub struct KvStore {
    data: BTreeMap<u128, Bucket>,
    /// How many entries the buckets hold.
    len: usize,
    revision: u64,
}

/// Equal stores hold the same keys with the same values and bookkeeping, at the same
/// revision.
impl PartialEq for KvStore {
    fn eq(&self, other: &Self) -> bool {
        self.revision == other.revision
            && self.len == other.len
            && self.entries().zip(other.entries()).all(|(a, b)| a.bytes == b.bytes)
    }
}

impl Eq for KvStore {}

/// A snapshot is `(revision, entries in key order)`, written straight from the tree
/// (no copy of the store is built first).
impl Serialize for KvStore {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        struct Entries<'a>(&'a KvStore);
        impl Serialize for Entries<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
                // The length goes first, so it is counted, not taken from the iterator.
                let mut seq = serializer.serialize_seq(Some(self.0.len))?;
                for e in self.0.entries() {
                    seq.serialize_element(e)?;
                }
                seq.end()
            }
        }
        (self.revision, Entries(self)).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for KvStore {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        /// Entries, which must come in strictly increasing key order (as written),
        /// gathered into buckets as they come.
        struct Sorted(Vec<(u128, Bucket)>, usize);
        impl<'de> Deserialize<'de> for Sorted {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
                struct Visit;
                impl<'de> Visitor<'de> for Visit {
                    type Value = Sorted;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("key-value entries in key order")
                    }
                    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Sorted, A::Error> {
                        // The length prefix is untrusted: cap what it may reserve.
                        let mut buckets: Vec<(u128, Bucket)> =
                            Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
                        let mut len = 0;
                        while let Some(e) = seq.next_element::<Entry>()? {
                            let last = buckets.last().and_then(|(_, b)| b.last());
                            if last.is_some_and(|last| last.key() >= e.key()) {
                                return Err(de::Error::custom("entries out of key order"));
                            }
                            let at = head(e.key());
                            match buckets.last_mut() {
                                Some((h, b)) if *h == at => b.add(e),
                                _ => buckets.push((at, Bucket::One(e))),
                            }
                            len += 1;
                        }
                        Ok(Sorted(buckets, len))
                    }
                }
                deserializer.deserialize_seq(Visit)
            }
        }
        let (revision, Sorted(buckets, len)) = <(u64, Sorted)>::deserialize(deserializer)?;
        // Already sorted: `from_iter`'s sort is one linear pass, and the tree is then
        // built bottom-up with full nodes.
        Ok(KvStore {
            data: buckets.into_iter().collect(),
            len,
            revision,
        })
    }
}

impl Default for KvStore {
    fn default() -> Self {
        // etcd starts at revision 1 with an empty store.
        KvStore {
            data: BTreeMap::new(),
            len: 0,
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
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry, in key order.
    fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.data
            .values()
            .flat_map(|b| b.range((Bound::Unbounded, Bound::Unbounded)))
    }

    fn get(&self, key: &[u8]) -> Option<&Entry> {
        self.data.get(&head(key)).and_then(|b| b.get(key))
    }

    /// The stored keys in `key..range_end` (etcd's range rules), in key order. A
    /// client may send a range_end at or below the key: that range is empty (and must
    /// not reach `BTreeMap::range`, which panics on reversed bounds).
    fn matching<'a>(&'a self, key: &'a [u8], range_end: &'a [u8]) -> impl Iterator<Item = &'a Entry> + 'a {
        let valid = range_end.is_empty() || range_end == [0] || range_end > key;
        // The buckets whose heads the range touches; in each, the keys in the range.
        let (heads, keys) = match range_end {
            [] => (
                (Bound::Included(head(key)), Bound::Included(head(key))),
                (Bound::Included(key), Bound::Included(key)),
            ),
            [0] => (
                (Bound::Included(head(key)), Bound::Unbounded),
                (Bound::Included(key), Bound::Unbounded),
            ),
            end => (
                (Bound::Included(head(key)), Bound::Included(head(end))),
                (Bound::Included(key), Bound::Excluded(end)),
            ),
        };
        valid
            .then(|| self.data.range(heads))
            .into_iter()
            .flatten()
            .flat_map(move |(_, b)| b.range(keys))
    }

    fn range(&self, key: &[u8], range_end: &[u8], limit: u64) -> KvResult {
        let mut kvs = Vec::new();
        let mut count = 0u64;
        for entry in self.matching(key, range_end) {
            count += 1;
            if limit == 0 || (kvs.len() as u64) < limit {
                kvs.push(entry.to_key_value());
            }
        }
        let more = (kvs.len() as u64) < count;
        KvResult::Range { kvs, count, more }
    }

    fn compare(&self, c: &Compare) -> bool {
        let entry = self.get(&c.key);
        let ord = match (&c.target, entry) {
            (CompareTarget::Value(_), None) => return false,
            (CompareTarget::Value(v), Some(e)) => e.value().cmp(v.as_slice()),
            (CompareTarget::Version(v), e) => e.map_or(0, Entry::version).cmp(v),
            (CompareTarget::CreateRevision(r), e) => e.map_or(0, Entry::create_revision).cmp(r),
            (CompareTarget::ModRevision(r), e) => e.map_or(0, Entry::mod_revision).cmp(r),
        };
        match c.op {
            CompareOp::Equal => ord.is_eq(),
            CompareOp::NotEqual => ord.is_ne(),
            CompareOp::Greater => ord.is_gt(),
            CompareOp::Less => ord.is_lt(),
        }
    }

    /// Writes at revision `rev` (the caller bumps the store revision once per command):
    /// one new allocation for the entry; the old entry comes back out, not copied.
    fn put_at(&mut self, key: &[u8], value: &[u8], rev: u64) -> Option<Entry> {
        let make = |prev: Option<&Entry>| {
            let (create_revision, version) = prev.map_or((rev, 1), |p| (p.create_revision(), p.version() + 1));
            Entry::new(key, value, create_revision, rev, version)
        };
        let prev = match self.data.entry(head(key)) {
            btree_map::Entry::Vacant(at) => {
                at.insert(Bucket::One(make(None)));
                None
            }
            btree_map::Entry::Occupied(mut at) => at.get_mut().put(key, make),
        };
        if prev.is_none() {
            self.len += 1;
        }
        prev
    }

    /// Removes one key; returns its entry.
    fn take(&mut self, key: &[u8]) -> Option<Entry> {
        let btree_map::Entry::Occupied(mut at) = self.data.entry(head(key)) else {
            return None;
        };
        let taken = match at.get_mut() {
            // The key alone under its head: the bucket goes.
            Bucket::One(e) if e.key() == key => match at.remove() {
                Bucket::One(e) => e,
                Bucket::Many(_) => unreachable!("matched Bucket::One above"),
            },
            Bucket::One(_) => return None,
            // One of several: one fewer, and a single one left is a `One` again.
            Bucket::Many(set) => {
                let taken = set.take(key)?;
                if set.len() == 1
                    && let Some(last) = set.pop_first()
                {
                    *at.get_mut() = Bucket::One(last);
                }
                taken
            }
        };
        self.len -= 1;
        Some(taken)
    }

    fn delete_range(&mut self, key: Vec<u8>, range_end: &[u8]) -> Vec<KeyValue> {
        if range_end.is_empty() {
            // A single key: no walk, and the command's key becomes the reply's.
            return self.take(&key).map(|e| e.into_key_value(key)).into_iter().collect();
        }
        let keys: Vec<Vec<u8>> = self.matching(&key, range_end).map(|e| e.key().to_vec()).collect();
        keys.into_iter()
            .filter_map(|k| self.take(&k).map(|e| e.into_key_value(k)))
            .collect()
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
                    prev: self.put_at(&key, &value, rev).map(|e| e.into_key_value(key)),
                }
            }
            // A delete writes only if a key was there.
            KvCommand::Delete { key, range_end } => {
                let deleted = self.delete_range(key, &range_end);
                *wrote |= !deleted.is_empty();
                KvResult::Delete { deleted }
            }
            // Compare-and-swap: the value (or absence) must match.
            KvCommand::Cas { key, expected, new } => {
                let current = self.get(&key);
                if current.map(Entry::value) == expected.as_deref() {
                    *wrote = true;
                    let prev = self.put_at(&key, &new, rev);
                    let (create_revision, version) = prev.map_or((rev, 1), |p| (p.create_revision(), p.version() + 1));
                    KvResult::Cas {
                        succeeded: true,
                        current: Some(KeyValue {
                            key,
                            value: new,
                            create_revision,
                            mod_revision: rev,
                            version,
                        }),
                    }
                } else {
                    KvResult::Cas {
                        succeeded: false,
                        current: current.map(Entry::to_key_value),
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

    fn write_snapshot(&self, w: &mut dyn std::io::Write) -> Result<()> {
        super::write_encoded(self, w)
    }

    fn restore(bytes: &[u8]) -> Result<Self> {
        super::restore_encoded(bytes, "key-value")
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
        let copy = KvStore::restore(&kv.snapshot().expect("snapshot")).expect("restore");
        assert_eq!(copy, kv);
        assert!(KvStore::restore(b"\xff\xff garbage").is_err());
    }

    /// Many keys, every kind of write, then a snapshot: the restored store is equal and
    /// answers every command exactly as the original does, revisions included.
    #[test]
    fn kv_many_keys_behave_the_same_after_restore() {
        let mut kv = KvStore::new();
        let key = |i: u32| format!("k{i:05}").into_bytes();
        for i in 0..5_000u32 {
            kv.apply(KvCommand::put(
                key(i),
                format!("value-{i}").repeat(1 + (i % 7) as usize),
            ));
        }
        for i in (0..5_000u32).step_by(3) {
            kv.apply(KvCommand::put(key(i), format!("again-{i}")));
        }
        for i in (0..5_000u32).step_by(11) {
            kv.apply(KvCommand::delete(key(i)));
        }
        kv.apply(KvCommand::Delete {
            key: key(4_000),
            range_end: key(4_100),
        });
        kv.apply(KvCommand::put(key(4_050), "back"));
        kv.apply(KvCommand::put("", "empty key"));
        kv.apply(KvCommand::put("no value", ""));
        kv.apply(KvCommand::cas(key(7), Some(b"value-7".to_vec()), "swapped"));

        let bytes = kv.snapshot().expect("snapshot");
        let mut copy = KvStore::restore(&bytes).expect("restore");
        assert_eq!(copy, kv);
        assert_eq!((copy.len(), copy.revision()), (kv.len(), kv.revision()));
        assert_eq!(
            copy.snapshot().expect("snapshot"),
            bytes,
            "a restored store snapshots to the same bytes"
        );

        let everything = KvCommand::Range {
            key: vec![0],
            range_end: vec![0],
            limit: 0,
        };
        assert_eq!(copy.read(&everything), kv.read(&everything));
        let commands = [
            KvCommand::get(key(3)),
            KvCommand::Range {
                key: key(100),
                range_end: key(200),
                limit: 10,
            },
            KvCommand::put(key(3), "new"),
            KvCommand::put(key(11), "recreated"),
            KvCommand::cas(key(4), Some(b"value-4".repeat(5)), "cas"),
            KvCommand::cas(key(5), Some(b"wrong".to_vec()), "cas"),
            KvCommand::Delete {
                key: key(2_000),
                range_end: key(2_050),
            },
            KvCommand::Txn {
                compare: vec![
                    Compare {
                        key: key(3),
                        op: CompareOp::Greater,
                        target: CompareTarget::Version(1),
                    },
                    Compare {
                        key: key(6),
                        op: CompareOp::NotEqual,
                        target: CompareTarget::ModRevision(2 + 6),
                    },
                ],
                success: vec![
                    KvCommand::put(key(6), "txn"),
                    KvCommand::get(key(6)),
                    KvCommand::delete(key(9)),
                ],
                failure: vec![KvCommand::get(key(6))],
            },
            KvCommand::Range {
                key: vec![0],
                range_end: vec![0],
                limit: 0,
            },
        ];
        for command in commands {
            assert_eq!(copy.apply(command.clone()), kv.apply(command));
        }
        assert_eq!(copy, kv);
    }

    #[test]
    fn kv_restore_rejects_malformed_entries() {
        let fails_with =
            |bytes: &[u8], why: &str| matches!(KvStore::restore(bytes), Err(e) if e.to_string().contains(why));
        let mut kv = KvStore::new();
        kv.apply(KvCommand::put("a", "1"));
        kv.apply(KvCommand::put("b", "2"));
        let entries: Vec<&Entry> = kv.entries().collect();
        // Out of key order.
        let swapped = crate::messages::codec::encode(&(kv.revision, vec![entries[1], entries[0]])).expect("encode");
        assert!(fails_with(&swapped, "out of key order"));
        // Duplicate key.
        let twice = crate::messages::codec::encode(&(kv.revision, vec![entries[0], entries[0]])).expect("encode");
        assert!(fails_with(&twice, "out of key order"));
        // A key length running past the entry's bytes, and a truncated header.
        let mut long = entries[0].bytes.to_vec();
        long[..4].copy_from_slice(&100u32.to_le_bytes());
        let bad = crate::messages::codec::encode(&(kv.revision, vec![Bytes(&long)])).expect("encode");
        assert!(fails_with(&bad, "malformed key-value entry"));
        let short = crate::messages::codec::encode(&(kv.revision, vec![Bytes(&long[..HEADER - 1])])).expect("encode");
        assert!(fails_with(&short, "malformed key-value entry"));
        // And the well-formed list restores.
        let good = crate::messages::codec::encode(&(kv.revision, vec![entries[0], entries[1]])).expect("encode");
        assert_eq!(KvStore::restore(&good).expect("restore"), kv);
    }

    /// A byte string, for hand-made snapshots.
    struct Bytes<'a>(&'a [u8]);

    impl Serialize for Bytes<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
            serializer.serialize_bytes(self.0)
        }
    }

    /// Keys that share a head (the first 16 bytes, zero-padded): trailing zeros, keys
    /// that are prefixes of others, long keys alike in their first 16 bytes. Random
    /// puts, deletes and ranges against a plain ordered map give the same answers, in
    /// the same order, compare-and-swaps find the same values, and the store restored
    /// from a snapshot holds the same.
    #[test]
    fn kv_keys_sharing_a_head_keep_their_order() {
        let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        // 16 bytes of "a", then 0..4 bytes out of {0, 1, 'a'}; or a short key of them.
        let key = |next: &mut dyn FnMut(u64) -> u64| {
            let mut k = if next(2) == 0 {
                vec![b'a'; 16]
            } else {
                vec![b'a'; next(3) as usize]
            };
            for _ in 0..next(4) {
                k.push([0, 1, b'a'][next(3) as usize]);
            }
            k
        };
        let mut kv = KvStore::new();
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for step in 0..3_000u32 {
            let (k, end) = (key(&mut next), key(&mut next));
            match next(5) {
                0 | 1 => {
                    let value = step.to_le_bytes().to_vec();
                    let prev = kv.apply(KvCommand::put(k.clone(), value.clone()));
                    let KvResult::Put { prev } = prev.result else {
                        panic!("a put answers Put")
                    };
                    assert_eq!(prev.map(|p| p.value), model.insert(k, value), "step {step}");
                }
                2 => {
                    let deleted = kv.apply(KvCommand::Delete {
                        key: k.clone(),
                        range_end: end.clone(),
                    });
                    let KvResult::Delete { deleted } = deleted.result else {
                        panic!("a delete answers Delete")
                    };
                    let gone: Vec<Vec<u8>> = model_range(&model, &k, &end).into_iter().map(|(k, _)| k).collect();
                    for g in &gone {
                        model.remove(g);
                    }
                    assert_eq!(
                        deleted.into_iter().map(|d| d.key).collect::<Vec<_>>(),
                        gone,
                        "step {step}"
                    );
                }
                3 => {
                    // Compare-and-swap, expecting what the model holds or a wrong value.
                    let expected = if next(2) == 0 {
                        model.get(&k).cloned()
                    } else {
                        Some(b"wrong".to_vec())
                    };
                    let value = step.to_le_bytes().to_vec();
                    let r = kv.apply(KvCommand::cas(k.clone(), expected.clone(), value.clone()));
                    let KvResult::Cas { succeeded, .. } = r.result else {
                        panic!("a cas answers Cas")
                    };
                    assert_eq!(succeeded, model.get(&k) == expected.as_ref(), "step {step}");
                    if succeeded {
                        model.insert(k, value);
                    }
                }
                _ => {
                    let r = kv
                        .read(&KvCommand::Range {
                            key: k.clone(),
                            range_end: end.clone(),
                            limit: 0,
                        })
                        .expect("read-only");
                    let KvResult::Range { kvs, .. } = r.result else {
                        panic!("a range answers Range")
                    };
                    let got: Vec<(Vec<u8>, Vec<u8>)> = kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
                    assert_eq!(got, model_range(&model, &k, &end), "step {step}: {k:?}..{end:?}");
                }
            }
            assert_eq!(kv.len(), model.len(), "step {step}");
        }
        let all = |kv: &KvStore| {
            kv.entries()
                .map(|e| (e.key().to_vec(), e.value().to_vec()))
                .collect::<Vec<_>>()
        };
        assert_eq!(all(&kv), model.clone().into_iter().collect::<Vec<_>>());
        let copy = KvStore::restore(&kv.snapshot().expect("snapshot")).expect("restore");
        assert_eq!(copy, kv);
        assert_eq!(all(&copy), all(&kv));
    }

    /// What etcd's range rules select from a plain ordered map.
    fn model_range(model: &BTreeMap<Vec<u8>, Vec<u8>>, key: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        model
            .iter()
            .filter(|(k, _)| match end {
                [] => k.as_slice() == key,
                [0] => k.as_slice() >= key,
                end => k.as_slice() >= key && k.as_slice() < end,
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
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

    /// Resident cost of one key: loads 1,000,000 keys shaped like the benchmark's
    /// (12-byte keys, 128-byte values) and prints the heap bytes in use (glibc's
    /// `mallinfo2`, chunk headers included) and the growth of the resident set, per key.
    /// Run alone: `cargo test --lib kv_bytes_per_key -- --ignored --nocapture`.
    /// Measures one put, one get and restoring one key on a store of 100,000 keys,
    /// random keys, for short keys and for keys under one long prefix. Run by hand:
    /// `cargo test --release --lib kv_put_and_get_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "measures time; run by hand"]
    fn kv_put_and_get_cost() {
        for prefix in ["", "/registry/pods/default/"] {
            let key = |i: u64| format!("{prefix}key{i:09}").into_bytes();
            let mut kv = KvStore::new();
            for i in 0..100_000 {
                kv.apply(KvCommand::put(key(i), vec![b'v'; 128]));
            }
            let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
            let mut next = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng % 100_000
            };
            const N: u32 = 300_000;
            let puts: Vec<KvCommand> = (0..N).map(|_| KvCommand::put(key(next()), vec![b'w'; 128])).collect();
            let started = std::time::Instant::now();
            for put in puts {
                std::hint::black_box(kv.apply(put));
            }
            let put = started.elapsed() / N;
            let gets: Vec<KvCommand> = (0..N).map(|_| KvCommand::get(key(next()))).collect();
            let started = std::time::Instant::now();
            for get in &gets {
                assert!(kv.read(get).and_then(|r| r.value().map(<[u8]>::len)) == Some(128));
            }
            let get = started.elapsed() / N;
            let bytes = kv.snapshot().expect("snapshot");
            let started = std::time::Instant::now();
            let copy = KvStore::restore(&bytes).expect("restore");
            let restore = started.elapsed() / 100_000;
            assert_eq!(copy, kv);
            println!("keys {prefix:?}key000000000: put {put:?}, get {get:?}, restore {restore:?} a key");
        }
    }

    #[test]
    #[ignore = "loads a million keys; run by hand to measure memory"]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn kv_bytes_per_key() {
        fn heap() -> u64 {
            // SAFETY: mallinfo2 only reads the allocator's counters.
            let m = unsafe { libc::mallinfo2() };
            (m.uordblks + m.hblkhd) as u64
        }
        fn rss() -> u64 {
            let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
            let pages: u64 = statm
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse().ok())
                .expect("rss");
            // SAFETY: sysconf has no preconditions.
            pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
        }
        const N: u64 = 1_000_000;
        let (heap0, rss0) = (heap(), rss());
        let mut kv = KvStore::new();
        for i in 0..N {
            kv.apply(KvCommand::put(format!("k{i:011}"), vec![b'v'; 128]));
        }
        let (heap1, rss1) = (heap(), rss());
        let raw = N * (12 + 128);
        println!(
            "{N} keys, raw {raw} bytes: heap {} bytes/key, rss {} bytes/key",
            (heap1 - heap0) / N,
            (rss1.saturating_sub(rss0)) / N
        );
        assert_eq!(kv.len() as u64, N);
        // A restored store is built bottom-up with full tree nodes: smaller still.
        let bytes = kv.snapshot().expect("snapshot");
        drop(kv);
        let heap2 = heap();
        let copy = KvStore::restore(&bytes).expect("restore");
        println!(
            "snapshot {} bytes/key; restored: heap {} bytes/key",
            bytes.len() as u64 / N,
            (heap() - heap2) / N
        );
        assert_eq!(copy.len() as u64, N);
    }
}
