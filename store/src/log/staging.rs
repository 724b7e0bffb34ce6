//! What the log reads through while batches are staged and not yet written
//! ([`super::Log::stage_linked`]): the state records and tree hashes of every staged batch,
//! above the store. The next batch is built on top of them, so it can be applied while the
//! batch before it is being made durable; once that commit lands ([`super::Log::landed`]),
//! the store answers the same and the batch's layer goes.
//!
//! Invariants: a key read here answers what the store will answer once every staged batch is
//! written (the latest staged value, a deletion hiding the stored one); the layers hold only
//! batches not landed (at most the pipeline's depth, each at most [`super::BATCH_WRITES_MAX`]
//! writes), so they stay bounded.

use std::collections::BTreeMap;
use std::sync::Arc;

use foldhash::HashMap;
use std::sync::Mutex;

use ledger::merkle::{Hash, HashReader, MerkleError};
use ledger::state::records::KeyValues;
use ledger::state::RecordSource;

use crate::store::{CommitBatch, StateWrites, Store};

/// The store seen through the batches staged above it.
pub(crate) struct Staging {
    store: Store,
    layers: Mutex<Layers>,
}

/// Records and hashes of the staged batches.
#[derive(Default)]
struct Layers {
    /// Each staged batch's state writes, shared with the batch itself (not copied: a batch of
    /// 500 earns writes about 2,000 records), in key order, tagged with the log size after
    /// the batch; oldest first, so a later batch's value replaces an earlier one's.
    records: Vec<(u64, StateWrites)>,
    hashes: HashMap<(u8, u64), Hash>,
    /// The tree hashes each staged batch added, by its tag: removed when it lands.
    hash_keys: Vec<(u64, Vec<(u8, u64)>)>,
}

impl Layers {
    /// The latest staged write of `key`: `Some(None)` for a deletion, `None` if no staged
    /// batch wrote it.
    fn get(&self, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.records.iter().rev().find_map(|(_, writes)| {
            writes
                .binary_search_by(|(k, _)| k.as_slice().cmp(key))
                .ok()
                .map(|i| &writes[i].1)
        })
    }
}

impl Staging {
    pub(crate) fn over(store: Store) -> Staging {
        Staging {
            store,
            layers: Mutex::default(),
        }
    }

    fn layers(&self) -> std::sync::MutexGuard<'_, Layers> {
        self.layers.lock().expect("staging lock")
    }

    /// Puts the records and hashes of `batch`, staged with tag `size`, above the store. Its
    /// state writes are shared, not copied; writes not in strictly ascending key order (never
    /// from [`ledger::state::State::take_changes`]) are put in order first, the last write of
    /// a key winning.
    pub(crate) fn stage(&self, size: u64, batch: &CommitBatch) {
        let writes = if batch.state.windows(2).all(|w| w[0].0 < w[1].0) {
            batch.state.clone()
        } else {
            let sorted: BTreeMap<_, _> = batch.state.iter().cloned().collect();
            Arc::new(sorted.into_iter().collect())
        };
        let mut layers = self.layers();
        layers.records.push((size, writes));
        let mut keys = Vec::with_capacity(batch.hashes.len());
        for &(level, index, hash) in &batch.hashes {
            layers.hashes.insert((level, index), hash);
            keys.push((level, index));
        }
        layers.hash_keys.push((size, keys));
    }

    /// Drops what the batch staged with tag `size` wrote: the store holds it now (and a later
    /// batch's writes still shadow it while they are staged).
    pub(crate) fn land(&self, size: u64) {
        let mut layers = self.layers();
        layers.records.retain(|(tag, _)| *tag != size);
        let Layers {
            hashes, hash_keys, ..
        } = &mut *layers;
        hash_keys.retain(|(tag, keys)| {
            if *tag == size {
                for k in keys {
                    hashes.remove(k);
                }
            }
            *tag != size
        });
    }

    /// Drops every staged batch: none of them will be written (a write failed, and the
    /// reader of the staging reloads from the store).
    pub(crate) fn clear(&self) {
        *self.layers() = Layers::default();
    }

    /// Whether nothing is staged.
    pub(crate) fn is_empty(&self) -> bool {
        let layers = self.layers();
        layers.records.is_empty() && layers.hash_keys.is_empty()
    }

    /// The staged records with keys in `start..end`, ascending (the latest staged write of
    /// each key).
    fn staged_range(&self, start: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        if start >= end {
            return Vec::new();
        }
        let layers = self.layers();
        let mut merged: BTreeMap<&[u8], &Option<Vec<u8>>> = BTreeMap::new();
        for (_, writes) in &layers.records {
            let from = writes.partition_point(|(k, _)| k.as_slice() < start);
            let to = writes.partition_point(|(k, _)| k.as_slice() < end);
            for (k, v) in &writes[from..to] {
                merged.insert(k, v);
            }
        }
        merged
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v.clone()))
            .collect()
    }
}

/// The first `limit` records of `stored` (one ordered page of the store, read with `staged.len()`
/// more than `limit`) with `staged` (the same range's staged records, in the same order)
/// above it. `before(a, b)`: whether key `a` comes first in the page's order.
///
/// Complete: if the store's page was cut short, each staged deletion hides at most one of its
/// records, so at least `limit` of them survive, and a staged record beyond the page's last key
/// sorts after all of them and falls outside the first `limit`.
fn merge(
    stored: KeyValues,
    staged: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    limit: usize,
    before: impl Fn(&[u8], &[u8]) -> bool,
) -> KeyValues {
    let mut out = Vec::with_capacity(limit.min(stored.len() + staged.len()));
    let mut stored = stored.into_iter().peekable();
    let mut staged = staged.into_iter().peekable();
    while out.len() < limit {
        let take_staged = match (stored.peek(), staged.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some((a, _)), Some((b, _))) => {
                if a == b {
                    stored.next();
                    true
                } else {
                    before(b, a)
                }
            }
        };
        if take_staged {
            if let Some((k, Some(v))) = staged.next() {
                out.push((k, v));
            }
        } else if let Some(kv) = stored.next() {
            out.push(kv);
        }
    }
    out
}

impl RecordSource for Staging {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        if let Some(v) = self.layers().get(key) {
            return Ok(v.clone());
        }
        RecordSource::get(&self.store, key)
    }

    fn range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<KeyValues, String> {
        let staged = self.staged_range(start, end);
        if staged.is_empty() {
            return self.store.range(start, end, limit);
        }
        let stored = self.store.range(start, end, limit + staged.len())?;
        Ok(merge(stored, staged, limit, |a, b| a < b))
    }

    fn range_rev(&self, start: &[u8], end: &[u8], limit: usize) -> Result<KeyValues, String> {
        let mut staged = self.staged_range(start, end);
        if staged.is_empty() {
            return self.store.range_rev(start, end, limit);
        }
        staged.reverse();
        let stored = self.store.range_rev(start, end, limit + staged.len())?;
        Ok(merge(stored, staged, limit, |a, b| a > b))
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, String> {
        let mut out: Vec<Option<Option<Vec<u8>>>> = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        {
            let layers = self.layers();
            for k in keys {
                let staged = layers.get(k).cloned();
                if staged.is_none() {
                    missing.push(k.clone());
                }
                out.push(staged);
            }
        }
        let mut stored = if missing.is_empty() {
            Vec::new()
        } else {
            self.store.get_many(&missing)?
        }
        .into_iter();
        Ok(out
            .into_iter()
            .map(|staged| staged.unwrap_or_else(|| stored.next().flatten()))
            .collect())
    }
}

impl HashReader for Staging {
    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, MerkleError> {
        if let Some(h) = self.layers().hashes.get(&(level, index)) {
            return Ok(*h);
        }
        self.store.subtree_hash(level, index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
        (k.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    fn staged(k: &str, v: Option<&str>) -> (Vec<u8>, Option<Vec<u8>>) {
        (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec()))
    }

    #[test]
    fn staged_records_replace_hide_and_join_a_page() {
        let stored = vec![kv("a", "1"), kv("b", "1"), kv("c", "1"), kv("d", "1")];
        let above = vec![
            staged("a", None),
            staged("bb", Some("2")),
            staged("c", Some("2")),
        ];
        let got = merge(stored, above, 3, |a, b| a < b);
        assert_eq!(got, vec![kv("b", "1"), kv("bb", "2"), kv("c", "2")]);
    }

    #[test]
    fn a_staged_record_beyond_a_cut_page_is_left_out() {
        // The store's page (limit 2 + 1 staged) stops at "c"; "z" must not jump the keys after.
        let stored = vec![kv("a", "1"), kv("b", "1"), kv("c", "1")];
        let got = merge(stored, vec![staged("z", Some("2"))], 2, |a, b| a < b);
        assert_eq!(got, vec![kv("a", "1"), kv("b", "1")]);
    }

    #[test]
    fn descending_pages_merge_in_their_own_order() {
        let stored = vec![kv("d", "1"), kv("c", "1"), kv("a", "1")];
        let above = vec![
            staged("e", Some("2")),
            staged("c", None),
            staged("b", Some("2")),
        ];
        let got = merge(stored, above, 10, |a, b| a > b);
        assert_eq!(
            got,
            vec![kv("e", "2"), kv("d", "1"), kv("b", "2"), kv("a", "1")]
        );
    }

    /// Two staged batches writing the same keys (the later one's writes out of order): a read
    /// answers the later batch's write while both are staged, and still once the earlier one
    /// lands; nothing staged remains once both land.
    #[test]
    fn the_latest_staged_write_of_a_key_is_read_until_its_batch_lands() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let staging = Staging::over(store);
        let batch = |writes: Vec<(Vec<u8>, Option<Vec<u8>>)>| CommitBatch {
            state: writes.into(),
            ..CommitBatch::default()
        };
        staging.stage(
            1,
            &batch(vec![
                staged("a", Some("1")),
                staged("b", Some("1")),
                staged("c", Some("1")),
            ]),
        );
        staging.stage(
            2,
            &batch(vec![
                staged("c", None),
                staged("b", Some("2")),
                staged("b", Some("3")),
            ]),
        );
        let get = |k: &str| RecordSource::get(&staging, k.as_bytes()).unwrap();
        let value = |v: &str| Some(v.as_bytes().to_vec());
        assert_eq!(get("a"), value("1"));
        assert_eq!(get("b"), value("3"));
        assert_eq!(get("c"), None);
        let range = staging.staged_range(b"a", b"z");
        assert_eq!(
            range,
            vec![
                staged("a", Some("1")),
                staged("b", Some("3")),
                staged("c", None)
            ]
        );
        let many = staging
            .get_many(&[b"c".to_vec(), b"a".to_vec(), b"d".to_vec()])
            .unwrap();
        assert_eq!(many, vec![None, value("1"), None]);
        staging.land(1);
        assert_eq!((get("a"), get("b")), (None, value("3")));
        staging.land(2);
        assert_eq!(get("b"), None);
        assert!(staging.is_empty());
    }
}
