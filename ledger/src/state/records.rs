//! Where the state machine keeps its records (spec/protocol.md §6, informative): the key
//! layout, the versioned binary encoding, the [`RecordSource`] trait a storage engine
//! implements, and `Records`, the state machine's view of one source with the writes of the
//! batch being built on top.
//!
//! Invariants:
//! - every record value starts with its format byte ([`FORMAT_BINARY`] or [`FORMAT_JSON`]);
//!   a value of another format is refused as corrupt, never guessed at;
//! - keys are `prefix ‖ name`, where a name is made of ids (which never hold `/` or `0x00`),
//!   `0x00` separators and big-endian integers, so that one member's lots, one member's
//!   qualifying earnings and each due-index are contiguous, ordered key ranges;
//! - `Records::range` (and `Records::range_rev`, newest key first) returns exactly the keys
//!   in its range that a full merge of the source and the pending writes would, in order, at
//!   most `limit` of them; fewer than `limit` means the range holds no more.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::HashMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::types::{EntryId, LogIndex, LogTime, MemberId};

/// The first byte of a record in the compact binary encoding (postcard, spec/protocol.md §6).
pub const FORMAT_BINARY: u8 = 0x01;
/// The first byte of a record kept as JSON in an envelope: the rare, cross-brand records whose
/// types are the log's own JSON (quotes, obligations, agreements, policies).
pub const FORMAT_JSON: u8 = 0x02;

/// The most records one `Records::range` call reads from the source in one page.
pub const RANGE_PAGE_MAX: usize = 1024;

/// Records as `(key, value)` pairs, in the order a range read returns them.
pub type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

/// A store of committed state records, read by key or by ordered key range.
///
/// The node implements it over RocksDB; [`MemorySource`] over a map. Errors are storage
/// failures (I/O, corruption): the caller cannot fix them by changing its input.
pub trait RecordSource: Send + Sync {
    /// The record under `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String>;
    /// Records with keys in `start..end`, ascending, at most `limit`.
    fn range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<KeyValues, String>;
    /// Records with keys in `start..end`, descending (the last key first), at most `limit`.
    fn range_rev(&self, start: &[u8], end: &[u8], limit: usize) -> Result<KeyValues, String>;
    /// The records under `keys` (given in ascending order), in that order: what `get` would
    /// answer for each. A store overrides it to look the keys up together (RocksDB's
    /// `MultiGet` shares the index and filter work of keys that sort together).
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, String> {
        keys.iter().map(|k| self.get(k)).collect()
    }
}

/// A [`RecordSource`] over an ordered map, for tests and in-memory tools.
pub type MemorySource = BTreeMap<Vec<u8>, Vec<u8>>;

/// A record key held in memory: inline up to 32 bytes (every key of the layout whose ids are
/// short), so that a search of the map compares keys without reading memory elsewhere (with a
/// separate allocation per key, those reads were a replay's largest cost: profiled, `loyalty
/// verify` of 10M entries).
pub(crate) type MemoryKey = smallvec::SmallVec<[u8; 32]>;

/// The records of a state held in memory.
pub(crate) type MemoryMap = BTreeMap<MemoryKey, Vec<u8>>;

impl<K> RecordSource for BTreeMap<K, Vec<u8>>
where
    K: std::borrow::Borrow<[u8]> + Ord + Send + Sync,
{
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        Ok(BTreeMap::get(self, key).cloned())
    }

    fn range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<KeyValues, String> {
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(BTreeMap::range::<[u8], _>(
            self,
            (
                std::ops::Bound::Included(start),
                std::ops::Bound::Excluded(end),
            ),
        )
        .take(limit)
        .map(|(k, v)| (k.borrow().to_vec(), v.clone()))
        .collect())
    }

    fn range_rev(&self, start: &[u8], end: &[u8], limit: usize) -> Result<KeyValues, String> {
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(BTreeMap::range::<[u8], _>(
            self,
            (
                std::ops::Bound::Included(start),
                std::ops::Bound::Excluded(end),
            ),
        )
        .rev()
        .take(limit)
        .map(|(k, v)| (k.borrow().to_vec(), v.clone()))
        .collect())
    }
}

/// A storage failure met while reading a record; the state that met it must be rebuilt from
/// its source before it is used again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state storage: {0}")]
pub struct StorageError(pub String);

/// The records of a state: either all in memory, or a source with the pending writes of the
/// batch being built on top of it.
#[derive(Clone)]
pub(crate) enum Records {
    /// Every record in a map; the keys written since the last drain are remembered (unless
    /// `changed` is `None`: a replay nobody stores) so that [`Records::take_changes`] can hand
    /// them to a store.
    Memory {
        map: MemoryMap,
        changed: Option<BTreeSet<Vec<u8>>>,
    },
    /// Committed records in `source`; writes not yet committed in `pending` (`None`: deleted);
    /// committed records read ahead for the batch being built in `prefetched` (`None`: known
    /// absent), dropped when the batch is drained; and a bounded `cache` of committed records
    /// that are read by key again and again (see [`RecordCache`]).
    Source {
        source: Arc<dyn RecordSource>,
        pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        prefetched: HashMap<Vec<u8>, Option<Vec<u8>>>,
        cache: RecordCache,
    },
}

/// Committed records that are read by key again and again (members, lots, holds and the other
/// records named by an id a later entry refers to; not ids, qualifying earnings or due-index
/// keys, which are written once and read by range or never), at most `budget` bytes of keys,
/// values and their bookkeeping.
///
/// Two generations: records go into `young`; when `young` holds half the budget it becomes
/// `old` and the previous `old` is dropped. A read finds `young` first. So the cache holds at
/// most the budget, keeps what was used in the last half-budget of traffic, and costs O(1) a
/// read or write with no list to maintain.
///
/// Invariants: every record held equals the committed record under its key (or the record a
/// drained batch is about to commit: [`Records::take_changes`] passes every drained write
/// through, a delete removing the key from both generations); a key in `young` shadows the
/// same key in `old`; it holds only keys it keeps ([`RecordCache::keeps`]).
#[derive(Clone, Default)]
pub(crate) struct RecordCache {
    young: HashMap<Vec<u8>, Vec<u8>>,
    old: HashMap<Vec<u8>, Vec<u8>>,
    young_bytes: usize,
    budget: usize,
}

/// Slots the map of records read ahead keeps allocated between batches (a batch of the
/// largest size reads a few records per write; a bigger one is given back).
const PREFETCHED_KEPT_CAPACITY: usize = 16_384;

/// What one cached record is counted for beyond its key and value: its hash table slot (two
/// vector headers, 48 bytes, in a table between half and seven eighths full) and the
/// allocator's header and rounding of its two heap blocks. Counted as 64 before, the cache
/// held about 1.5 times its budget.
const CACHE_OVERHEAD_BYTES: usize = 128;

impl RecordCache {
    fn new(budget: usize) -> RecordCache {
        RecordCache {
            budget,
            ..RecordCache::default()
        }
    }

    /// Whether records under `key` are worth keeping: those read by key again.
    fn keeps(key: &[u8]) -> bool {
        const KEPT: [&[u8]; 8] = [
            prefix::MEMBER,
            prefix::LOT,
            prefix::HOLD,
            prefix::REDEMPTION,
            prefix::AUTHORISATION,
            prefix::QUOTE,
            prefix::OBLIGATION,
            prefix::PERIOD_TOTALS,
        ];
        KEPT.iter().any(|p| key.starts_with(p))
    }

    /// The record held under `key`. A key the cache does not keep ([`RecordCache::keeps`]:
    /// ids, qualifying earnings, due-indexes) is not looked up: each lookup of the two large
    /// tables costs cache misses, and an earn's id was looked up three times (profiled: a
    /// twentieth of the sequencer's CPU went to this cache's lookups).
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        if !Self::keeps(key) {
            return None;
        }
        self.young
            .get(key)
            .or_else(|| self.old.get(key))
            .map(Vec::as_slice)
    }

    /// Keeps `value` under `key`. A copy of the key left in `old` is shadowed by `young` and
    /// goes when `old` does (each generation stays within half the budget): not removing it
    /// saves two lookups per write, the cache's most frequent operation.
    fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) {
        debug_assert!(Self::keeps(&key), "a key the cache does not keep: {key:?}");
        let size = key.len() + value.len() + CACHE_OVERHEAD_BYTES;
        if size > self.budget / 2 {
            self.remove(&key);
            return;
        }
        if self.young_bytes + size > self.budget / 2 {
            self.old = std::mem::take(&mut self.young);
            self.young_bytes = 0;
        }
        let key_len = key.len();
        if let Some(replaced) = self.young.insert(key, value) {
            self.young_bytes -= key_len + replaced.len() + CACHE_OVERHEAD_BYTES;
        }
        self.young_bytes += size;
    }

    fn remove(&mut self, key: &[u8]) {
        if !Self::keeps(key) {
            return;
        }
        if let Some(v) = self.young.remove(key) {
            self.young_bytes -= key.len() + v.len() + CACHE_OVERHEAD_BYTES;
        }
        self.old.remove(key);
    }

    /// The bytes held (both generations), for tests.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        let count = |m: &HashMap<Vec<u8>, Vec<u8>>| {
            m.iter()
                .map(|(k, v)| k.len() + v.len() + CACHE_OVERHEAD_BYTES)
                .sum::<usize>()
        };
        count(&self.young) + count(&self.old)
    }
}

impl Default for Records {
    fn default() -> Self {
        Records::Memory {
            map: MemoryMap::new(),
            changed: Some(BTreeSet::new()),
        }
    }
}

impl Records {
    /// Records in memory whose changes nobody collects.
    pub(crate) fn untracked() -> Records {
        Records::Memory {
            map: MemoryMap::new(),
            changed: None,
        }
    }

    /// Records over `source`, keeping at most `cache_bytes` of committed records in memory
    /// ([`RecordCache`]; 0: none).
    pub(crate) fn over(source: Arc<dyn RecordSource>, cache_bytes: usize) -> Records {
        Records::Source {
            source,
            pending: BTreeMap::new(),
            prefetched: HashMap::default(),
            cache: RecordCache::new(cache_bytes),
        }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.with(key, <[u8]>::to_vec)
    }

    /// The record under `key`, handed to `f`: without a copy when it is held here (in memory
    /// or pending), which is every read of a replay in memory.
    pub(crate) fn with<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, StorageError> {
        match self {
            Records::Memory { map, .. } => Ok(BTreeMap::get(map, key).map(|v| f(v))),
            Records::Source {
                source,
                pending,
                prefetched,
                cache,
            } => {
                if let Some(v) = pending.get(key) {
                    return Ok(v.as_deref().map(f));
                }
                if let Some(v) = prefetched.get(key) {
                    return Ok(v.as_deref().map(f));
                }
                if let Some(v) = cache.get(key) {
                    return Ok(Some(f(v)));
                }
                Ok(source.get(key).map_err(StorageError)?.as_deref().map(f))
            }
        }
    }

    /// Reads the committed records under `keys` ahead, together, so that the reads of the
    /// batch being built find them in memory: records worth caching go to the cache, the
    /// others (and the keys found absent) are kept until the batch is drained. Keys written in
    /// this batch or already in memory are skipped. In memory it does nothing.
    pub(crate) fn prefetch(&mut self, mut keys: Vec<Vec<u8>>) -> Result<(), StorageError> {
        let Records::Source {
            source,
            pending,
            prefetched,
            cache,
        } = self
        else {
            return Ok(());
        };
        keys.retain(|k| {
            !pending.contains_key(k) && !prefetched.contains_key(k) && cache.get(k).is_none()
        });
        if keys.is_empty() {
            return Ok(());
        }
        keys.sort_unstable();
        keys.dedup();
        let values = source.get_many(&keys).map_err(StorageError)?;
        if values.len() != keys.len() {
            return Err(StorageError(format!(
                "{} records read for {} keys",
                values.len(),
                keys.len()
            )));
        }
        for (k, v) in keys.into_iter().zip(values) {
            match v {
                Some(v) if RecordCache::keeps(&k) => cache.insert(k, v),
                v => {
                    prefetched.insert(k, v);
                }
            }
        }
        Ok(())
    }

    /// Forgets the records read ahead that the cache does not keep (what
    /// [`Records::take_changes`] does with them), for a batch that ends with nothing to
    /// drain: without this they would pile up over batches that append nothing.
    pub(crate) fn drop_read_ahead(&mut self) {
        if let Records::Source { prefetched, .. } = self {
            prefetched.clear();
            prefetched.shrink_to(PREFETCHED_KEPT_CAPACITY);
        }
    }

    /// The records read ahead and held until the batch is drained (0 in memory).
    pub(crate) fn read_ahead_len(&self) -> usize {
        match self {
            Records::Memory { .. } => 0,
            Records::Source { prefetched, .. } => prefetched.len(),
        }
    }

    pub(crate) fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        match self {
            Records::Memory { map, changed } => {
                if let Some(c) = changed {
                    c.insert(key.clone());
                }
                map.insert(MemoryKey::from_slice(&key), value);
            }
            Records::Source { pending, .. } => {
                pending.insert(key, Some(value));
            }
        }
    }

    pub(crate) fn delete(&mut self, key: Vec<u8>) {
        match self {
            Records::Memory { map, changed } => {
                if map.remove(key.as_slice()).is_some() {
                    if let Some(c) = changed {
                        c.insert(key);
                    }
                }
            }
            Records::Source { pending, .. } => {
                pending.insert(key, None);
            }
        }
    }

    /// Records with keys in `start..end`, ascending, at most `limit` (see the invariants).
    pub(crate) fn range(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        match self {
            Records::Memory { map, .. } => {
                RecordSource::range(map, start, end, limit).map_err(StorageError)
            }
            Records::Source {
                source, pending, ..
            } => {
                if start >= end {
                    return Ok(Vec::new());
                }
                let bounds = (
                    std::ops::Bound::Included(start),
                    std::ops::Bound::Excluded(end),
                );
                let local: Vec<(&Vec<u8>, &Option<Vec<u8>>)> =
                    pending.range::<[u8], _>(bounds).collect();
                let deleted = local.iter().filter(|(_, v)| v.is_none()).count();
                let want = limit.saturating_add(deleted);
                let committed = source.range(start, end, want).map_err(StorageError)?;
                // A full page may stop before the range's end: pending writes past its last
                // key could sort after committed keys not read, so they wait for a later call.
                let full = committed.len() >= want;
                let bound = committed.last().map(|(k, _)| k.clone());
                let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = committed.into_iter().collect();
                for (k, v) in local {
                    if full && bound.as_ref().is_some_and(|b| k > b) {
                        break;
                    }
                    match v {
                        Some(v) => merged.insert(k.clone(), v.clone()),
                        None => merged.remove(k),
                    };
                }
                Ok(merged.into_iter().take(limit).collect())
            }
        }
    }

    /// Records with keys in `start..end`, descending, at most `limit` (see the invariants).
    pub(crate) fn range_rev(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        match self {
            Records::Memory { map, .. } => {
                RecordSource::range_rev(map, start, end, limit).map_err(StorageError)
            }
            Records::Source {
                source, pending, ..
            } => {
                if start >= end {
                    return Ok(Vec::new());
                }
                let bounds = (
                    std::ops::Bound::Included(start),
                    std::ops::Bound::Excluded(end),
                );
                let local: Vec<(&Vec<u8>, &Option<Vec<u8>>)> =
                    pending.range::<[u8], _>(bounds).rev().collect();
                let deleted = local.iter().filter(|(_, v)| v.is_none()).count();
                let want = limit.saturating_add(deleted);
                let committed = source.range_rev(start, end, want).map_err(StorageError)?;
                // As in `range`, mirrored: a full page may stop above the range's start, so
                // pending writes below its last (smallest) key wait for a later call.
                let full = committed.len() >= want;
                let bound = committed.last().map(|(k, _)| k.clone());
                let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = committed.into_iter().collect();
                for (k, v) in local {
                    if full && bound.as_ref().is_some_and(|b| k < b) {
                        break;
                    }
                    match v {
                        Some(v) => merged.insert(k.clone(), v.clone()),
                        None => merged.remove(k),
                    };
                }
                Ok(merged.into_iter().rev().take(limit).collect())
            }
        }
    }

    /// Every record with a key starting with `prefix`, in order (unbounded: invariant checks
    /// and tests only).
    pub(crate) fn all_with_prefix(&self, prefix: &[u8]) -> Result<KeyValues, StorageError> {
        let end = prefix_end(prefix);
        let mut out = Vec::new();
        let mut from = prefix.to_vec();
        loop {
            let page = self.range(&from, &end, RANGE_PAGE_MAX)?;
            let n = page.len();
            if let Some((k, _)) = page.last() {
                from = after(k);
            }
            out.extend(page);
            if n < RANGE_PAGE_MAX {
                return Ok(out);
            }
        }
    }

    /// Drains the writes not yet handed to a store, as `(key, Some(value))` puts and
    /// `(key, None)` deletes, in key order.
    pub(crate) fn take_changes(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        match self {
            Records::Memory { map, changed } => changed
                .as_mut()
                .map(std::mem::take)
                .unwrap_or_default()
                .into_iter()
                .map(|k| {
                    let v = BTreeMap::get(map, k.as_slice()).cloned();
                    (k, v)
                })
                .collect(),
            Records::Source {
                pending,
                prefetched,
                cache,
                ..
            } => {
                prefetched.clear();
                prefetched.shrink_to(PREFETCHED_KEPT_CAPACITY);
                let changes: Vec<(Vec<u8>, Option<Vec<u8>>)> =
                    std::mem::take(pending).into_iter().collect();
                // The cache follows every drained write: the batch is committed next, or the
                // state is rebuilt from its store (a failed commit poisons it). Without a
                // budget it holds nothing to follow.
                let follow = if cache.budget > 0 { &changes[..] } else { &[] };
                for (k, v) in follow {
                    match v {
                        Some(v) if RecordCache::keeps(k) => cache.insert(k.clone(), v.clone()),
                        _ => cache.remove(k),
                    }
                }
                changes
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn has_changes(&self) -> bool {
        match self {
            Records::Memory { changed, .. } => changed.as_ref().is_some_and(|c| !c.is_empty()),
            Records::Source { pending, .. } => !pending.is_empty(),
        }
    }
}

/// What one key held in [`Records`] before a write, so that the write can be undone
/// ([`Records::restore`]).
#[derive(Clone)]
pub(crate) enum Prior {
    /// In memory: the key's value, and whether it was among the changes not yet drained.
    Memory {
        value: Option<Vec<u8>>,
        changed: bool,
    },
    /// Over a source: the key's pending write (`None`: none pending).
    Pending(Option<Option<Vec<u8>>>),
}

impl Records {
    /// What `key` holds now, to be given back to [`Records::restore`] after a write.
    fn prior(&self, key: &[u8]) -> Prior {
        match self {
            Records::Memory { map, changed } => Prior::Memory {
                value: BTreeMap::get(map, key).cloned(),
                changed: changed.as_ref().is_some_and(|c| c.contains(key)),
            },
            Records::Source { pending, .. } => Prior::Pending(pending.get(key).cloned()),
        }
    }

    /// Puts `key` back as `prior` found it.
    fn restore(&mut self, key: Vec<u8>, prior: Prior) {
        match (self, prior) {
            (
                Records::Memory { map, changed },
                Prior::Memory {
                    value,
                    changed: was,
                },
            ) => {
                if let Some(c) = changed {
                    if was {
                        c.insert(key.clone());
                    } else {
                        c.remove(&key);
                    }
                }
                match value {
                    Some(v) => map.insert(MemoryKey::from_slice(&key), v),
                    None => map.remove(key.as_slice()),
                };
            }
            (Records::Source { pending, .. }, Prior::Pending(p)) => {
                match p {
                    Some(v) => pending.insert(key, v),
                    None => pending.remove(&key),
                };
            }
            // A prior is only taken from, and given back to, the same records.
            _ => unreachable!("a prior restored to records of another kind"),
        }
    }
}

/// [`Records`] whose writes since [`JournaledRecords::begin`] can be undone
/// ([`JournaledRecords::rollback`]): the record part of a [`super::State`] savepoint (a linked
/// chain of writes, spec/protocol.md §6, "Linked writes").
///
/// Invariants: while a journal is open, every put and delete first records the key's prior
/// content, so the journal holds one prior per write made since `begin` and rolling back
/// restores every key, in reverse order, to what it held at `begin` (pending writes and the
/// list of changes included); changes are never drained while a journal is open.
#[derive(Clone, Default)]
pub(crate) struct JournaledRecords {
    records: Records,
    journal: Option<Vec<(Vec<u8>, Prior)>>,
}

impl From<Records> for JournaledRecords {
    fn from(records: Records) -> Self {
        JournaledRecords {
            records,
            journal: None,
        }
    }
}

impl std::ops::Deref for JournaledRecords {
    type Target = Records;
    fn deref(&self) -> &Records {
        &self.records
    }
}

impl JournaledRecords {
    // The reads of [`Records`], ahead of the [`RecordSource`] methods of the same names.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.records.get(key)
    }

    pub(crate) fn range(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<KeyValues, StorageError> {
        self.records.range(start, end, limit)
    }

    pub(crate) fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        if let Some(j) = &mut self.journal {
            j.push((key.clone(), self.records.prior(&key)));
        }
        self.records.put(key, value);
    }

    pub(crate) fn delete(&mut self, key: Vec<u8>) {
        if let Some(j) = &mut self.journal {
            j.push((key.clone(), self.records.prior(&key)));
        }
        self.records.delete(key);
    }

    /// As [`Records::prefetch`]: reads ahead change no record, so nothing is journaled.
    pub(crate) fn prefetch(&mut self, keys: Vec<Vec<u8>>) -> Result<(), StorageError> {
        self.records.prefetch(keys)
    }

    /// As [`Records::drop_read_ahead`].
    pub(crate) fn drop_read_ahead(&mut self) {
        self.records.drop_read_ahead()
    }

    /// As [`Records::read_ahead_len`].
    pub(crate) fn read_ahead_len(&self) -> usize {
        self.records.read_ahead_len()
    }

    /// Starts recording how to undo the writes from now on.
    pub(crate) fn begin(&mut self) {
        assert!(self.journal.is_none(), "a journal is already open");
        self.journal = Some(Vec::new());
    }

    /// Keeps the writes since [`JournaledRecords::begin`] and closes the journal.
    pub(crate) fn release(&mut self) {
        self.journal = None;
    }

    /// Undoes every write since [`JournaledRecords::begin`] and closes the journal.
    pub(crate) fn rollback(&mut self) {
        let journal = self.journal.take().unwrap_or_default();
        for (key, prior) in journal.into_iter().rev() {
            self.records.restore(key, prior);
        }
    }

    /// As [`Records::take_changes`]; never while a journal is open.
    pub(crate) fn take_changes(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        assert!(
            self.journal.is_none(),
            "changes drained while a journal is open"
        );
        self.records.take_changes()
    }
}

impl RecordSource for JournaledRecords {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        RecordSource::get(&self.records, key)
    }

    fn range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<KeyValues, String> {
        RecordSource::range(&self.records, start, end, limit)
    }

    fn range_rev(&self, start: &[u8], end: &[u8], limit: usize) -> Result<KeyValues, String> {
        RecordSource::range_rev(&self.records, start, end, limit)
    }
}

impl RecordSource for Records {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        Records::get(self, key).map_err(|e| e.0)
    }

    fn range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<KeyValues, String> {
        Records::range(self, start, end, limit).map_err(|e| e.0)
    }

    fn range_rev(&self, start: &[u8], end: &[u8], limit: usize) -> Result<KeyValues, String> {
        Records::range_rev(self, start, end, limit).map_err(|e| e.0)
    }
}

/// The smallest key after every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; 64]
}

/// The smallest key after `key`.
pub fn after(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

/// Encodes `v` in the binary format.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // One buffer, the format byte first (no second allocation and copy of the body).
    let mut out = Vec::with_capacity(64);
    out.push(FORMAT_BINARY);
    postcard::to_extend(v, out).expect("state records always serialize")
}

/// Decodes a binary record.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (v, rest) = postcard::take_from_bytes(binary_body(bytes)?).map_err(|e| e.to_string())?;
    // A record is exactly what `encode` wrote: bytes after it are damage, not data.
    if !rest.is_empty() {
        return Err(format!("{} bytes after the record", rest.len()));
    }
    Ok(v)
}

/// A binary record's value after its format byte.
pub fn binary_body(bytes: &[u8]) -> Result<&[u8], String> {
    match bytes.split_first() {
        Some((&FORMAT_BINARY, rest)) => Ok(rest),
        Some((b, _)) => Err(format!("record format {b:#04x}, not binary")),
        None => Err("empty record".into()),
    }
}

/// Encodes `v` as JSON in an envelope.
pub fn encode_json<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_JSON];
    out.extend(serde_json::to_vec(v).expect("state records always serialize"));
    out
}

/// Decodes a JSON record in an envelope.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match bytes.split_first() {
        Some((&FORMAT_JSON, rest)) => serde_json::from_slice(rest).map_err(|e| e.to_string()),
        Some((b, _)) => Err(format!("record format {b:#04x}, not JSON")),
        None => Err("empty record".into()),
    }
}

/// Key prefixes of state records (spec/protocol.md §6). The first group is what the
/// release before 0.2 also wrote (with JSON values, without a format byte); the rest are new.
pub mod prefix {
    /// The state's size and last log time.
    pub const META: &[u8] = b"s";
    /// Policies in force (tier, expiry, rate cards, FX rates).
    pub const POLICIES: &[u8] = b"p";
    /// `a/<account>`: a system account's balance.
    pub const ACCOUNT: &[u8] = b"a/";
    /// `m/<member>`: a member's summary (balance, pending, tier, counters).
    pub const MEMBER: &[u8] = b"m/";
    /// `h/<hold id>`.
    pub const HOLD: &[u8] = b"h/";
    /// `r/<redemption id>`.
    pub const REDEMPTION: &[u8] = b"r/";
    /// `i/<entry id>`: the entry that used an id (idempotency).
    pub const ID: &[u8] = b"i/";
    /// `au/<authorisation id>`.
    pub const AUTHORISATION: &[u8] = b"au/";
    /// `ag/<agreement id>`.
    pub const AGREEMENT: &[u8] = b"ag/";
    /// `qu/<redemption id>`.
    pub const QUOTE: &[u8] = b"qu/";
    /// `ob/<side>/<payer>/<redemption>`.
    pub const OBLIGATION: &[u8] = b"ob/";
    /// `l/<member> 0x00 <expiry u64 BE, 2^64-1 for never> <lot index u64 BE>`: a lot's
    /// remaining points; a member's lots sort soonest-expiring first.
    pub const LOT: &[u8] = b"l/";
    /// `q/<member> 0x00 <log time u64 BE>`: points of a qualifying earning.
    pub const QUALIFYING: &[u8] = b"q/";
    /// `op/<agreement id>`: the agreement's open payable total (i64).
    pub const OPEN_PAYABLE: &[u8] = b"op/";
    /// `ol/<agreement id> 0x00 <line time u64 BE> <entry index u64 BE>`: one statement line
    /// of the agreement; the value names the obligation (and the refund, for a refund line).
    pub const LINE: &[u8] = b"ol/";
    /// `ot/<agreement id>`: the agreement's line totals (count, obligations and refunds per
    /// direction), all time and open (outside the periods a logged statement settled).
    pub const TOTALS: &[u8] = b"ot/";
    /// `pt/<agreement id> 0x00 <settlement period u64 BE>`: the line totals of one settlement
    /// period of the agreement (only periods with lines have one).
    pub const PERIOD_TOTALS: &[u8] = b"pt/";
    /// `xl/<expiry u64 BE> <member> 0x00 <lot index u64 BE>`: a lot that expires.
    pub const DUE_LOT: &[u8] = b"xl/";
    /// `xh/<expiry u64 BE> <hold id>`: an open hold.
    pub const DUE_HOLD: &[u8] = b"xh/";
    /// `xt/<time u64 BE> <member>`: the time a member's tier lapses under the policy in force
    /// when the member last changed.
    pub const DUE_TIER: &[u8] = b"xt/";
}

fn key(prefix: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // Sized once: every apply builds several keys, and growing each one part by part was a
    // tenth of a replay's time (profiled, `loyalty verify`). Eight spare bytes let
    // `lots_from` append its bound without growing again.
    let len = prefix.len() + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut k = Vec::with_capacity(len + 8);
    k.extend_from_slice(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// The key of a record named by one string (`prefix ‖ name`).
pub fn named(prefix: &[u8], name: &str) -> Vec<u8> {
    key(prefix, &[name.as_bytes()])
}

/// Where a lot sorts among its member's lots: by expiry (never last), then by index.
pub fn lot_key(member: &MemberId, expires_at: Option<LogTime>, lot: LogIndex) -> Vec<u8> {
    key(
        prefix::LOT,
        &[
            member.as_str().as_bytes(),
            &[0],
            &expires_at.map_or(u64::MAX, LogTime::get).to_be_bytes(),
            &lot.get().to_be_bytes(),
        ],
    )
}

/// The start of a member's lots that expire after `t` (or of all their lots when `None`).
pub fn lots_from(member: &MemberId, expiring_after: Option<LogTime>) -> Vec<u8> {
    let mut k = key(prefix::LOT, &[member.as_str().as_bytes(), &[0]]);
    if let Some(t) = expiring_after {
        k.extend_from_slice(&(t.get().saturating_add(1)).to_be_bytes());
    }
    k
}

/// The end of a member's lots.
pub fn lots_end(member: &MemberId) -> Vec<u8> {
    key(prefix::LOT, &[member.as_str().as_bytes(), &[1]])
}

/// Reads a lot key's `(expiry, index)`.
pub fn parse_lot_key(k: &[u8]) -> Option<(Option<LogTime>, LogIndex)> {
    let n = k.len();
    if n < 16 {
        return None;
    }
    let e = u64::from_be_bytes(k[n - 16..n - 8].try_into().ok()?);
    let i = u64::from_be_bytes(k[n - 8..].try_into().ok()?);
    let e = if e == u64::MAX {
        None
    } else {
        Some(LogTime::new(e).ok()?)
    };
    Some((e, LogIndex::new(i).ok()?))
}

/// A qualifying earning's key.
pub fn qualifying_key(member: &MemberId, t: LogTime) -> Vec<u8> {
    key(
        prefix::QUALIFYING,
        &[member.as_str().as_bytes(), &[0], &t.get().to_be_bytes()],
    )
}

/// The start of a member's qualifying earnings at or after log time `t`.
pub fn qualifying_from(member: &MemberId, t: u64) -> Vec<u8> {
    key(
        prefix::QUALIFYING,
        &[member.as_str().as_bytes(), &[0], &t.to_be_bytes()],
    )
}

/// The log time in a qualifying earning's key.
pub fn qualifying_time(key: &[u8]) -> Option<u64> {
    key.len()
        .checked_sub(8)
        .and_then(|i| key[i..].try_into().ok())
        .map(u64::from_be_bytes)
}

/// The end of a member's qualifying earnings.
pub fn qualifying_end(member: &MemberId) -> Vec<u8> {
    key(prefix::QUALIFYING, &[member.as_str().as_bytes(), &[1]])
}

/// A statement line's key in the agreement's line index.
pub fn line_key(agreement: &EntryId, time: LogTime, index: LogIndex) -> Vec<u8> {
    key(
        prefix::LINE,
        &[
            agreement.as_str().as_bytes(),
            &[0],
            &time.get().to_be_bytes(),
            &index.get().to_be_bytes(),
        ],
    )
}

/// The start of an agreement's lines at or after log time `t`.
pub fn lines_from(agreement: &EntryId, t: u64) -> Vec<u8> {
    key(
        prefix::LINE,
        &[agreement.as_str().as_bytes(), &[0], &t.to_be_bytes()],
    )
}

/// The end of an agreement's lines.
pub fn lines_end(agreement: &EntryId) -> Vec<u8> {
    key(prefix::LINE, &[agreement.as_str().as_bytes(), &[1]])
}

/// Reads a line key's `(time, index)`.
pub fn parse_line_key(k: &[u8]) -> Option<(LogTime, LogIndex)> {
    let n = k.len();
    if n < 16 {
        return None;
    }
    let time = u64::from_be_bytes(k[n - 16..n - 8].try_into().ok()?);
    let index = u64::from_be_bytes(k[n - 8..].try_into().ok()?);
    Some((LogTime::new(time).ok()?, LogIndex::new(index).ok()?))
}

/// The key of settlement period `k`'s line totals of an agreement; also the start of its
/// periods from `k` on.
pub fn period_totals_key(agreement: &EntryId, k: u64) -> Vec<u8> {
    key(
        prefix::PERIOD_TOTALS,
        &[agreement.as_str().as_bytes(), &[0], &k.to_be_bytes()],
    )
}

/// The end of an agreement's period totals.
pub fn period_totals_end(agreement: &EntryId) -> Vec<u8> {
    key(
        prefix::PERIOD_TOTALS,
        &[agreement.as_str().as_bytes(), &[1]],
    )
}

/// Reads a period totals key's `(agreement, period)`.
pub fn parse_period_totals_key(k: &[u8]) -> Option<(EntryId, u64)> {
    let rest = k.strip_prefix(prefix::PERIOD_TOTALS)?;
    let n = rest.len();
    if n < 10 || rest[n - 9] != 0 {
        return None;
    }
    let period = u64::from_be_bytes(rest[n - 8..].try_into().ok()?);
    let agreement = std::str::from_utf8(&rest[..n - 9]).ok()?.parse().ok()?;
    Some((agreement, period))
}

/// The due-index key of a lot's expiry.
pub fn due_lot_key(expires_at: LogTime, member: &MemberId, lot: LogIndex) -> Vec<u8> {
    key(
        prefix::DUE_LOT,
        &[
            &expires_at.get().to_be_bytes(),
            member.as_str().as_bytes(),
            &[0],
            &lot.get().to_be_bytes(),
        ],
    )
}

/// Reads a lot due-index key's `(expiry, member, lot)`.
pub fn parse_due_lot_key(k: &[u8]) -> Option<(LogTime, MemberId, LogIndex)> {
    let rest = k.strip_prefix(prefix::DUE_LOT)?;
    if rest.len() < 8 + 1 + 1 + 8 {
        return None;
    }
    let e = u64::from_be_bytes(rest[..8].try_into().ok()?);
    let n = rest.len();
    let member = std::str::from_utf8(&rest[8..n - 9]).ok()?.parse().ok()?;
    let lot = u64::from_be_bytes(rest[n - 8..].try_into().ok()?);
    Some((LogTime::new(e).ok()?, member, LogIndex::new(lot).ok()?))
}

/// The due-index key of an open hold's expiry.
pub fn due_hold_key(expires_at: LogTime, hold: &EntryId) -> Vec<u8> {
    key(
        prefix::DUE_HOLD,
        &[&expires_at.get().to_be_bytes(), hold.as_str().as_bytes()],
    )
}

/// Reads a hold due-index key's `(expiry, hold)`.
pub fn parse_due_hold_key(k: &[u8]) -> Option<(LogTime, EntryId)> {
    let rest = k.strip_prefix(prefix::DUE_HOLD)?;
    if rest.len() < 9 {
        return None;
    }
    let e = u64::from_be_bytes(rest[..8].try_into().ok()?);
    let id = std::str::from_utf8(&rest[8..]).ok()?.parse().ok()?;
    Some((LogTime::new(e).ok()?, id))
}

/// The due-index key of the time a member's tier lapses.
pub fn due_tier_key(at: LogTime, member: &MemberId) -> Vec<u8> {
    key(
        prefix::DUE_TIER,
        &[&at.get().to_be_bytes(), member.as_str().as_bytes()],
    )
}

/// Reads a tier due-index key's `(time, member)`.
pub fn parse_due_tier_key(k: &[u8]) -> Option<(LogTime, MemberId)> {
    let rest = k.strip_prefix(prefix::DUE_TIER)?;
    if rest.len() < 9 {
        return None;
    }
    let e = u64::from_be_bytes(rest[..8].try_into().ok()?);
    let m = std::str::from_utf8(&rest[8..]).ok()?.parse().ok()?;
    Some((LogTime::new(e).ok()?, m))
}

/// The end of a due-index's keys due at or before `t`.
pub fn due_end(prefix: &[u8], t: LogTime) -> Vec<u8> {
    key(prefix, &[&(t.get().saturating_add(1)).to_be_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn over(source: Arc<dyn RecordSource>) -> Records {
        Records::over(source, 0)
    }

    fn src(pairs: &[(&[u8], &[u8])]) -> Arc<dyn RecordSource> {
        Arc::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect::<MemorySource>(),
        )
    }

    #[test]
    fn a_binary_record_with_bytes_after_it_is_refused() {
        let good = encode(&(7u64, String::from("m1")));
        assert_eq!(decode::<(u64, String)>(&good).unwrap(), (7, "m1".into()));
        let mut bad = good.clone();
        bad.push(0);
        assert!(decode::<(u64, String)>(&bad).is_err());
        assert!(decode::<(u64, String)>(&good[..good.len() - 1]).is_err());
        assert!(decode::<(u64, String)>(&[]).is_err());
    }

    #[test]
    fn range_merges_pending_writes_over_the_source() {
        let mut r = over(src(&[
            (b"a", b"1"),
            (b"b", b"2"),
            (b"c", b"3"),
            (b"d", b"4"),
        ]));
        r.delete(b"b".to_vec());
        r.put(b"bb".to_vec(), b"x".to_vec());
        r.put(b"c".to_vec(), b"9".to_vec());
        let all = r.range(b"a", b"z", 10).unwrap();
        let keys: Vec<&[u8]> = all.iter().map(|(k, _)| &k[..]).collect();
        assert_eq!(keys, vec![&b"a"[..], b"bb", b"c", b"d"]);
        assert_eq!(all[2].1, b"9");
        // A short page is exact: deletions do not make it end early, and pending writes past
        // the committed page are not mistaken for the next keys.
        let page = r.range(b"a", b"z", 2).unwrap();
        let keys: Vec<&[u8]> = page.iter().map(|(k, _)| &k[..]).collect();
        assert_eq!(keys, vec![&b"a"[..], b"bb"]);
        let page = r.range(&after(b"bb"), b"z", 2).unwrap();
        let keys: Vec<&[u8]> = page.iter().map(|(k, _)| &k[..]).collect();
        assert_eq!(keys, vec![&b"c"[..], b"d"]);
    }

    #[test]
    fn range_pages_never_skip_a_committed_key() {
        let mut r = over(src(&[(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]));
        r.put(b"e".to_vec(), b"5".to_vec());
        // The source's page ends at "a"; "e" must not come before "b" and "c".
        let page = r.range(b"a", b"z", 1).unwrap();
        assert_eq!(page, vec![(b"a".to_vec(), b"1".to_vec())]);
        let rest = r.all_with_prefix(b"").unwrap();
        let keys: Vec<&[u8]> = rest.iter().map(|(k, _)| &k[..]).collect();
        assert_eq!(keys, vec![&b"a"[..], b"b", b"c", b"e"]);
    }

    #[test]
    fn reverse_ranges_merge_pending_writes_and_page_without_skipping() {
        let mut r = over(src(&[
            (b"a", b"1"),
            (b"b", b"2"),
            (b"c", b"3"),
            (b"d", b"4"),
        ]));
        r.delete(b"c".to_vec());
        r.put(b"bb".to_vec(), b"x".to_vec());
        r.put(b"a".to_vec(), b"9".to_vec());
        let keys = |v: Vec<(Vec<u8>, Vec<u8>)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        let all = r.range_rev(b"a", b"z", 10).unwrap();
        assert_eq!(all.last().unwrap().1, b"9");
        assert_eq!(
            keys(all),
            vec![b"d".to_vec(), b"bb".to_vec(), b"b".to_vec(), b"a".to_vec()]
        );
        // Page by page, newest first, each page ending where the next starts.
        let mut got = Vec::new();
        let mut end = b"z".to_vec();
        loop {
            let page = r.range_rev(b"a", &end, 1).unwrap();
            match page.first() {
                Some((k, _)) => end = k.clone(),
                None => break,
            }
            got.extend(keys(page));
        }
        assert_eq!(
            got,
            vec![b"d".to_vec(), b"bb".to_vec(), b"b".to_vec(), b"a".to_vec()]
        );
        // A committed page that stops above a pending write does not let the write jump
        // ahead of committed keys not read yet.
        let mut r = over(src(&[(b"b", b"2"), (b"c", b"3"), (b"d", b"4")]));
        r.put(b"a".to_vec(), b"1".to_vec());
        assert_eq!(
            keys(r.range_rev(b"a", b"z", 1).unwrap()),
            vec![b"d".to_vec()]
        );
        let m: MemorySource = [
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), b"2".to_vec()),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            keys(RecordSource::range_rev(&m, b"a", b"b", 5).unwrap()),
            vec![b"a".to_vec()]
        );
    }

    #[test]
    fn records_refuse_an_unknown_format() {
        assert!(decode::<u64>(&[0x7b, 0x7d]).is_err());
        assert!(decode::<u64>(&[]).is_err());
        assert_eq!(decode::<u64>(&encode(&7u64)), Ok(7));
        assert_eq!(decode_json::<u64>(&encode_json(&7u64)), Ok(7));
        assert!(decode_json::<u64>(&encode(&7u64)).is_err());
    }

    #[test]
    fn lot_keys_sort_soonest_expiring_first_never_last() {
        let m: MemberId = "alice".parse().unwrap();
        let t = |v| LogTime::new(v).unwrap();
        let i = |v| LogIndex::new(v).unwrap();
        let a = lot_key(&m, Some(t(5)), i(9));
        let b = lot_key(&m, Some(t(6)), i(1));
        let c = lot_key(&m, None, i(0));
        assert!(a < b && b < c);
        assert!(lots_from(&m, None) <= a && c < lots_end(&m));
        assert!(lots_from(&m, Some(t(5))) > a && lots_from(&m, Some(t(5))) <= b);
        assert_eq!(parse_lot_key(&a), Some((Some(t(5)), i(9))));
        assert_eq!(parse_lot_key(&c), Some((None, i(0))));
        // Another member whose id extends this one's never falls inside its range.
        let other: MemberId = "alice2".parse().unwrap();
        let o = lot_key(&other, Some(t(1)), i(1));
        assert!(o >= lots_end(&m) || o < lots_from(&m, None));
        let d = due_lot_key(t(7), &m, i(3));
        assert_eq!(parse_due_lot_key(&d), Some((t(7), m.clone(), i(3))));
        assert!(d < due_end(prefix::DUE_LOT, t(7)) && d >= due_end(prefix::DUE_LOT, t(6)));
    }

    #[test]
    fn the_record_cache_holds_its_budget_and_the_newest_value() {
        let k = |s: &str| named(prefix::MEMBER, s);
        let mut c = RecordCache::new(1600);
        for i in 0..200u32 {
            c.insert(k(&format!("m{i}")), vec![i as u8; 20]);
            assert!(c.bytes() <= 1600, "{} bytes", c.bytes());
        }
        // The newest records are kept, the oldest dropped.
        assert_eq!(c.get(&k("m199")), Some(&[199u8; 20][..]));
        assert_eq!(c.get(&k("m0")), None);
        // A key written again answers its newest value, in whichever generation it was.
        // (Five records of this size fill a generation: five more turn it over exactly once.)
        c.insert(k("a"), b"1".to_vec());
        for i in 0..5u32 {
            c.insert(k(&format!("n{i}")), vec![0; 20]);
        }
        assert_eq!(
            c.get(&k("a")),
            Some(&b"1"[..]),
            "still held, in the old generation"
        );
        c.insert(k("a"), b"2".to_vec());
        assert_eq!(c.get(&k("a")), Some(&b"2"[..]));
        for i in 0..5u32 {
            c.insert(k(&format!("o{i}")), vec![0; 20]);
        }
        assert_eq!(
            c.get(&k("a")),
            Some(&b"2"[..]),
            "the newest value, in the old generation"
        );
        // A removed key is gone from both generations.
        c.remove(&k("a"));
        assert_eq!(c.get(&k("a")), None);
        // A record larger than half the budget is not kept (and drops what it replaces).
        c.insert(k("b"), b"1".to_vec());
        assert_eq!(c.get(&k("b")), Some(&b"1"[..]));
        c.insert(k("b"), vec![0; 700]);
        assert_eq!(c.get(&k("b")), None);
        // Without a budget nothing is kept.
        let mut none = RecordCache::new(0);
        none.insert(k("a"), b"1".to_vec());
        assert_eq!(none.get(&k("a")), None);
        assert!(RecordCache::keeps(&k("a")) && !RecordCache::keeps(&named(prefix::ID, "e1")));
    }
}
