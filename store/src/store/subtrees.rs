//! The layout of the Merkle tree's stored subtree hashes (spec/protocol.md §6), and the
//! one-time move of a store written by an earlier release to it.
//!
//! A complete subtree `(level, index)` is keyed by the index of its last leaf, then its
//! level: `be64(((index + 1) << level) - 1) || level`. A subtree is complete, and written,
//! in the batch that appends its last leaf, so keys are written in ascending order, like
//! the entries' keys: every flushed file of the column family covers a key range after all
//! earlier ones, and RocksDB moves files down the levels without rewriting them. The
//! earlier layout (`level || be64(index)`, column family `tree`) put every level's keys in
//! every file, so each compaction rewrote the whole column family below (the largest of a
//! store: two hashes per entry).

use std::collections::BinaryHeap;

use foldhash::HashMap;
use std::time::{Duration, Instant};

use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};

use super::StoreError;
use ledger::merkle::Hash;

/// The column family of subtree hashes in this layout.
pub(crate) const CF: &str = "subtrees";
/// The column family of the layout before (`level || be64(index)`), moved at open.
pub(crate) const CF_LEVEL_FIRST: &str = "tree";
/// Hashes moved per write while migrating.
const MIGRATE_BATCH: usize = 65_536;

/// The key of the complete subtree `(level, index)`; `None` for a subtree whose last leaf
/// would lie beyond the largest index (no tree has it).
pub(crate) fn key(level: u8, index: u64) -> Option<[u8; 9]> {
    if level >= 64 {
        return None;
    }
    let last = ((u128::from(index) + 1) << level) - 1;
    let last = u64::try_from(last).ok()?;
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&last.to_be_bytes());
    k[8] = level;
    Some(k)
}

/// Subtree hashes held per generation of a [`HashCache`].
pub(crate) const CACHED_PER_GENERATION: usize = 32_768;

/// The subtree hashes a store read or wrote lately, in two generations of at most
/// [`CACHED_PER_GENERATION`] each (about 4 MiB in all): when the young one is full it becomes
/// the old one and the old one is dropped; a hash found in the old one moves to the young one.
/// A complete subtree's hash never changes, so a held hash is never stale.
///
/// Every receipt of a write proves its entry against the new checkpoint: about `log2(size)`
/// hashes, the low ones written by the same batch and the high ones (the big subtrees on the
/// left of the tree) shared by every receipt. On a log of 52M entries those reads missed
/// RocksDB's block cache and took half of the HTTP workers' time; here they are a lookup.
#[derive(Debug, Default)]
pub(crate) struct HashCache {
    young: HashMap<(u8, u64), Hash>,
    old: HashMap<(u8, u64), Hash>,
}

impl HashCache {
    pub(crate) fn get(&mut self, level: u8, index: u64) -> Option<Hash> {
        if let Some(h) = self.young.get(&(level, index)) {
            return Some(*h);
        }
        let h = self.old.remove(&(level, index))?;
        self.insert(level, index, h);
        Some(h)
    }

    pub(crate) fn insert(&mut self, level: u8, index: u64, hash: Hash) {
        if self.young.len() >= CACHED_PER_GENERATION {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert((level, index), hash);
    }

    /// The hashes held (both generations).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

/// Moves every hash of the column family `tree` (the layout before) to `subtrees`, in the
/// new keys' order, then drops `tree`. Calls `progress` with the hashes moved so far, at
/// most every few seconds and at the end. Cut off by a crash, it starts again at the next
/// open (the old column family is dropped only once the new one is durable).
pub(crate) fn migrate(db: &mut DB, progress: &mut dyn FnMut(u64)) -> Result<(), StoreError> {
    let moved = {
        let old = db
            .cf_handle(CF_LEVEL_FIRST)
            .ok_or_else(|| StoreError::Corrupt("no column family to migrate".into()))?;
        let new = db
            .cf_handle(CF)
            .ok_or_else(|| StoreError::Corrupt("no subtrees column family".into()))?;
        // One cursor per level (at most 64); the next hash written is the smallest new key
        // among their heads.
        let mut levels = Vec::new();
        let mut heads = BinaryHeap::new();
        for level in 0..64u8 {
            let mut it = db.iterator_cf(old, IteratorMode::From(&[level], Direction::Forward));
            if let Some(head) = next_at(&mut it, level)? {
                heads.push(std::cmp::Reverse((head.0, levels.len())));
                levels.push((level, it, head.1));
            }
        }
        let mut wb = WriteBatch::default();
        let mut moved = 0u64;
        let mut reported = Instant::now();
        while let Some(std::cmp::Reverse((k, i))) = heads.pop() {
            let (level, it, hash) = &mut levels[i];
            wb.put_cf(new, k, &*hash);
            if let Some(head) = next_at(it, *level)? {
                *hash = head.1;
                heads.push(std::cmp::Reverse((head.0, i)));
            }
            if wb.len() >= MIGRATE_BATCH {
                moved += wb.len() as u64;
                db.write(std::mem::take(&mut wb))?;
                if reported.elapsed() >= Duration::from_secs(5) {
                    progress(moved);
                    reported = Instant::now();
                }
            }
        }
        moved += wb.len() as u64;
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        db.write_opt(wb, &wo)?;
        db.flush_cf(new)?;
        moved
    };
    db.drop_cf(CF_LEVEL_FIRST)?;
    progress(moved);
    Ok(())
}

/// A hash with its key in this layout.
type Moved = ([u8; 9], Vec<u8>);

/// The next hash of `level` under the old layout, with its new key.
fn next_at(
    it: &mut rocksdb::DBIteratorWithThreadMode<'_, DB>,
    level: u8,
) -> Result<Option<Moved>, StoreError> {
    let Some(item) = it.next() else {
        return Ok(None);
    };
    let (k, v) = item?;
    if k.first() != Some(&level) {
        return Ok(None);
    }
    let index: [u8; 8] = k[1..]
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("tree key of {} bytes, not 9", k.len())))?;
    let new = key(level, u64::from_be_bytes(index))
        .ok_or_else(|| StoreError::Corrupt(format!("subtree {level}/{index:?} out of range")))?;
    Ok(Some((new, v.to_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn the_hash_cache_is_bounded_and_keeps_what_is_read_again() {
        let mut c = HashCache::default();
        let h = |i: u64| {
            let mut h = [0u8; 32];
            h[..8].copy_from_slice(&i.to_be_bytes());
            h
        };
        c.insert(20, 1, h(1));
        for i in 0..3 * CACHED_PER_GENERATION as u64 {
            c.insert(0, i, h(i));
            // A hash read again and again (a big subtree every receipt needs) stays.
            assert_eq!(c.get(20, 1), Some(h(1)));
            assert!(c.len() <= 2 * CACHED_PER_GENERATION);
        }
        let last = 3 * CACHED_PER_GENERATION as u64 - 1;
        assert_eq!(c.get(0, last), Some(h(last)));
        assert_eq!(c.get(0, 0), None);
    }

    #[test]
    fn keys_follow_completion_order() {
        // The subtrees completed by appending leaves 0..64, in the order they complete.
        let mut written = Vec::new();
        for leaf in 0u64..64 {
            let mut level = 0u8;
            loop {
                written.push(key(level, leaf >> level).unwrap());
                if (leaf >> level) & 1 == 0 {
                    break;
                }
                level += 1;
            }
        }
        assert!(
            written.windows(2).all(|w| w[0] < w[1]),
            "ascending, distinct"
        );
        assert_eq!(key(0, 5).unwrap()[..8], 5u64.to_be_bytes());
        assert_eq!(key(3, 1).unwrap()[..8], 15u64.to_be_bytes());
        assert_eq!(key(3, 1).unwrap()[8], 3);
        // The largest subtrees a tree can hold, and none beyond.
        assert!(key(63, 0).is_some() && key(63, 1).is_some() && key(63, 2).is_none());
        assert!(key(0, u64::MAX).is_some() && key(1, u64::MAX >> 1).is_some());
        assert!(key(1, 1 << 63).is_none());
        assert!(key(64, 0).is_none());
    }
}
