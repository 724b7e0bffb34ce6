//! Durable storage on RocksDB (spec/protocol.md §6).
//!
//! Column families:
//! - `entries`: big-endian u64 index -> canonical entry bytes;
//! - `subtrees`: big-endian u64 index of the subtree's last leaf || level byte -> 32-byte hash
//!   of a complete subtree, written in ascending key order (see `subtrees`; a store of an
//!   earlier release, with `tree` keyed level first, is moved to it at open);
//! - `state`: state records (see [`ledger::state::record_prefix`]), read on demand by the state
//!   machine through [`ledger::state::RecordSource`]; a whole-key bloom filter makes the probe
//!   for an id never used cost no disk read;
//! - `history`: member id || 0x00 || big-endian u64 index -> empty (a member's entries);
//! - `checkpoints`: big-endian u64 tree size -> signed checkpoint note text;
//! - `local`: the node's own records that are not part of the log (API keys, ...).
//!
//! Invariants: a [`CommitBatch`] is written as one RocksDB `WriteBatch` with a synced WAL, so
//! entries, tree hashes, state records and history of a batch become durable together or not
//! at all. Checkpoints are written only after the batch they cover is durable. While a
//! [`LocalObserver`] is set, node-local writes ([`Store::local_put`], [`Store::local_write`])
//! are serialized with each other and the observer sees each one, in the order RocksDB
//! applied them, before the write returns.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType,
    Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};

use ledger::merkle::{Hash, HashReader, MerkleError};
use ledger::types::MemberId;

mod subtrees;

const CF_ENTRIES: &str = "entries";
const CF_TREE: &str = subtrees::CF;
const CF_STATE: &str = "state";
const CF_HISTORY: &str = "history";
const CF_CHECKPOINTS: &str = "checkpoints";
const CF_LOCAL: &str = "local";
const CFS: [&str; 6] = [
    CF_ENTRIES,
    CF_TREE,
    CF_STATE,
    CF_HISTORY,
    CF_CHECKPOINTS,
    CF_LOCAL,
];

/// The most entries one history page returns.
pub const HISTORY_PAGE_MAX: usize = 1000;
/// The most entries one range read returns.
pub const ENTRIES_PAGE_MAX: usize = 1000;

/// A storage failure. The caller cannot fix it by changing its input.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rocksdb: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("corrupt store: {0}")]
    Corrupt(String),
}

/// State records to put (`Some`) or delete (`None`), in key order when a state drained them.
pub type StateWrites = Arc<Vec<(Vec<u8>, Option<Vec<u8>>)>>;

/// Everything one committed batch writes.
#[derive(Debug, Default)]
pub struct CommitBatch {
    /// `(index, canonical bytes)` of the new entries.
    pub entries: Vec<(u64, Vec<u8>)>,
    /// `(level, index, hash)` of the subtrees completed by the new entries.
    pub hashes: Vec<(u8, u64, Hash)>,
    /// State records to put (`Some`) or delete (`None`); shared, so that the log reads a
    /// staged batch's records without copying them (`log::staging`).
    pub state: StateWrites,
    /// `(member, index)` pairs for the member history index.
    pub history: Vec<(MemberId, u64)>,
    /// A signed checkpoint `(size, note)` written in the same batch (mirrors store the
    /// partner's checkpoint atomically with the entries it covers).
    pub checkpoint: Option<(u64, String)>,
    /// Node-local records written in the same batch.
    pub local: Vec<(Vec<u8>, Vec<u8>)>,
}

/// RocksDB's estimates of the memory one store holds, in bytes ([`Store::memory_use`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUse {
    /// Blocks in the block cache (data, index and filter), against its capacity.
    pub block_cache: u64,
    /// The part of it pinned (by readers in flight, and the pinned index and filter blocks).
    pub block_cache_pinned: u64,
    /// Memtables of every column family: the active ones, and those not yet flushed or still
    /// held by a reader.
    pub memtables: u64,
    /// Table readers of the open SST files, outside the block cache.
    pub table_readers: u64,
}

/// A stored key and value.
pub type Record = (Vec<u8>, Vec<u8>);

/// How much memory one store may use. Index and filter blocks live in the block cache, so
/// the two budgets bound RocksDB's memory whatever the size of the data.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The LRU block cache (data, index and filter blocks), in bytes.
    pub block_cache_bytes: usize,
    /// All memtables of all column families together, in bytes (unless `shared_memtables`).
    pub memtable_bytes: usize,
    /// Memtables shared with other stores under one budget, in place of `memtable_bytes`.
    pub shared_memtables: Option<SharedMemtables>,
    /// The state's cache of records read by key again and again (members, lots, holds), in
    /// bytes ([`ledger::state::State::open_cached`]; 0: none).
    pub record_cache_bytes: usize,
    /// The most SST files RocksDB keeps open at once (it closes the least recently used
    /// beyond); bounds the store's file descriptors whatever the size of the data.
    pub max_open_files: u32,
}

impl Default for StoreConfig {
    /// 256 MiB of block cache and 128 MiB of memtables.
    fn default() -> Self {
        StoreConfig {
            block_cache_bytes: 256 << 20,
            memtable_bytes: 128 << 20,
            shared_memtables: None,
            record_cache_bytes: 64 << 20,
            max_open_files: 512,
        }
    }
}

/// One memtable budget for several stores (RocksDB's `WriteBufferManager`): a store that
/// writes while the stores' memtables together pass the budget flushes. Each column family's
/// memtable may grow to a quarter of the budget, so one store writing much (a partner's mirror
/// catching up) uses what the others leave: larger memtables, fewer and larger flushes, and
/// less of the compaction that rewrites level 1 for every few small flushes (measured: see
/// README "Auditors and mirrors").
#[derive(Clone)]
pub struct SharedMemtables {
    manager: rocksdb::WriteBufferManager,
    bytes: usize,
}

impl SharedMemtables {
    /// A budget of `bytes` for the memtables of every store opened with it.
    pub fn new(bytes: usize) -> SharedMemtables {
        SharedMemtables {
            manager: rocksdb::WriteBufferManager::new_write_buffer_manager(bytes, false),
            bytes,
        }
    }

    /// The budget, in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What the stores' memtables hold now, in bytes.
    pub fn usage(&self) -> usize {
        self.manager.get_usage()
    }
}

impl std::fmt::Debug for SharedMemtables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMemtables")
            .field("bytes", &self.bytes)
            .field("usage", &self.usage())
            .finish()
    }
}

/// Sees every node-local write of a store (a standby's replication of node-local records,
/// node/src/ha/local/). Not called for [`CommitBatch::local`], which only mirrors use for
/// their own progress.
pub trait LocalObserver: Send + Sync {
    /// `records` (`None` deletes) were just written durably, as one batch. Called while every
    /// other node-local write of the store waits, so calls come in the order of the writes.
    fn written(&self, records: &[(Vec<u8>, Option<Vec<u8>>)]);
}

/// A handle on the RocksDB store; cheap to clone and safe to share between threads.
#[derive(Clone)]
pub struct Store {
    db: Arc<DB>,
    record_cache_bytes: usize,
    observer: Arc<Mutex<Option<Arc<dyn LocalObserver>>>>,
    /// Subtree hashes read or written lately (bounded; shared by the store's clones).
    hashes: Arc<Mutex<subtrees::HashCache>>,
}

/// The options of column family `name`, from the store's `base`: its table format and its
/// compression.
///
/// - The entries (and the checkpoints and local records) are LZ4-compressed at every level:
///   their keys ascend, so their files move down the levels without being rewritten.
/// - The state and the members' histories are written in random key order and rewritten by
///   every compaction on the way down. Only the last level, which holds most of the data, is
///   compressed; the levels above it, rewritten often, are not, so that compactions spend
///   their CPU merging instead of compressing and decompressing (the catching-up node's
///   compactions took a third of its two cores, profiled).
/// - The tree's values are hashes, which do not compress: it is not compressed.
/// - Only the state and the local records, read by key and often for keys that are absent (an
///   earning's new id), have bloom filters. The entries and the tree are read by keys that
///   exist, each in one file (their files do not overlap), and the histories and checkpoints
///   only by range, which no whole-key filter serves: their filters were built by every flush
///   and compaction, stored, and pinned in the block cache for level 0, for no read.
/// - The histories merge their level-0 files into the level below sixteen at a time, not
///   four ([`HISTORY_L0_FILES`]). Their keys (member, index) are random, so every flushed file
///   overlaps the whole level below, and each merge rewrites all of it: on a log of 126M
///   entries that level held 16M history keys, rewritten for every 1.3M flushed (in one
///   profiled batch round on that log, the histories' compactions took 9.8 of the 13.8 s of
///   compaction CPU, 5.1 s of it in that merge). Sixteen files rewrite it a quarter as
///   often. Nothing on the write path reads the histories; a history page seeks in each
///   level-0 file, at most [`HISTORY_L0_FILES`] * 3 of them.
fn cf_options(name: &str, base: &Options, tables: &Tables) -> Options {
    let mut opts = base.clone();
    if name == CF_HISTORY {
        opts.set_level_zero_file_num_compaction_trigger(HISTORY_L0_FILES);
        opts.set_level_zero_slowdown_writes_trigger(HISTORY_L0_FILES * 2);
        opts.set_level_zero_stop_writes_trigger(HISTORY_L0_FILES * 3);
    }
    if name == CF_STATE || name == CF_HISTORY {
        opts.set_compression_type(DBCompressionType::None);
        opts.set_bottommost_compression_type(DBCompressionType::Lz4);
    } else if name == CF_TREE || name == subtrees::CF_LEVEL_FIRST {
        opts.set_compression_type(DBCompressionType::None);
    }
    if name == CF_STATE || name == CF_LOCAL {
        opts.set_block_based_table_factory(&tables.filtered);
    } else {
        opts.set_block_based_table_factory(&tables.plain);
    }
    opts
}

/// The level-0 files of the histories merged together into the level below (RocksDB's
/// default, used by the other column families, is 4); writes slow down at twice as many and
/// stop at three times as many.
const HISTORY_L0_FILES: i32 = 16;

/// The two table formats of a store, over one block cache: with and without bloom filters.
struct Tables {
    filtered: BlockBasedOptions,
    plain: BlockBasedOptions,
}

impl Tables {
    /// Index and filter blocks live in the block cache (so the budget bounds them), and are
    /// partitioned into small blocks with a pinned top level: a whole-file filter of a big
    /// SST is larger than a cache shard, so it would be read from disk again on every
    /// lookup (measured: 1,400 writes/s once the state passed 2M members).
    fn over(cache: &Cache) -> Tables {
        let table = |filter: bool| {
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(cache);
            if filter {
                table.set_bloom_filter(10.0, false);
                table.set_partition_filters(true);
            }
            table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
            table.set_metadata_block_size(4096);
            table.set_cache_index_and_filter_blocks(true);
            table.set_pin_top_level_index_and_filter(true);
            table.set_pin_l0_filter_and_index_blocks_in_cache(true);
            table
        };
        Tables {
            filtered: table(true),
            plain: table(false),
        }
    }
}

fn be(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

fn history_key(member: &MemberId, index: u64) -> Vec<u8> {
    let mut k = member.as_str().as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

fn read_be(bytes: &[u8]) -> Result<u64, StoreError> {
    let a: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("key of {} bytes, not 8", bytes.len())))?;
    Ok(u64::from_be_bytes(a))
}

impl Store {
    /// Opens (creating if missing) the store in `dir` with the default memory budget.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, StoreConfig::default())
    }

    /// Opens (creating if missing) the store in `dir` within the memory budget `config`.
    pub fn open_with(dir: &Path, config: StoreConfig) -> Result<Store, StoreError> {
        Store::open_migrating(dir, config, &mut |_| {})
    }

    /// As [`Store::open_with`], calling `progress` with the tree hashes moved so far while a
    /// store of an earlier release is moved to this release's tree layout (once; see
    /// spec/protocol.md §6).
    pub fn open_migrating(
        dir: &Path,
        config: StoreConfig,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Store, StoreError> {
        let cache = Cache::new_lru_cache(config.block_cache_bytes);
        let tables = Tables::over(&cache);
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_keep_log_file_num(4);
        // Write-ahead log files are reused instead of created: a synced write then overwrites
        // blocks already written, inside the file's size, so `fdatasync` writes the data and
        // flushes the device, without also writing the inode and the allocation's metadata
        // (profiled: two of the four waits of every synced commit on ext4). Recovery stays
        // point in time: a reused file's old records carry an older log number and end the
        // replay. The logs are bounded to the memtable budget, so that the column families
        // written rarely (checkpoints, local records) are flushed and free their old logs for
        // reuse; RocksDB's default bound is four times every memtable, 1.5 GiB here.
        opts.set_recycle_log_file_num(4);
        let memtables = match &config.shared_memtables {
            Some(shared) => {
                opts.set_write_buffer_manager(&shared.manager);
                shared.bytes
            }
            None => {
                opts.set_db_write_buffer_size(config.memtable_bytes);
                config.memtable_bytes
            }
        };
        opts.set_max_total_wal_size(memtables as u64);
        opts.set_block_based_table_factory(&tables.filtered);
        opts.set_max_open_files(config.max_open_files.clamp(16, i32::MAX as u32) as i32);
        opts.set_write_buffer_size((memtables / 4).max(1 << 20));
        // The state deletes in runs (a member's oldest qualifying earnings, spent and expired
        // lots, resolved due-index keys); a deleted key stays a tombstone that every range read
        // over it steps across until compaction drops it. An SST file in which half of any
        // 10,000 consecutive entries are deletions is marked for compaction at once.
        opts.add_compact_on_deletion_collector_factory(10_000, 5_000, 0.5);
        // A bloom filter over each memtable's whole keys (2 % of the memtable budget): an
        // earn's id is new, so its lookup misses; without the filter it searched the skip list
        // of every memtable before the SST files' filters answered.
        opts.set_memtable_whole_key_filtering(true);
        opts.set_memtable_prefix_bloom_ratio(0.02);
        // A store of an earlier release has its tree hashes in another column family.
        let level_first = DB::list_cf(&opts, dir)
            .map(|cfs| cfs.iter().any(|n| n == subtrees::CF_LEVEL_FIRST))
            .unwrap_or(false);
        let cfs = CFS
            .iter()
            .chain(level_first.then_some(&subtrees::CF_LEVEL_FIRST))
            .map(|n| ColumnFamilyDescriptor::new(*n, cf_options(n, &opts, &tables)))
            .collect::<Vec<_>>();
        let mut db = DB::open_cf_descriptors(&opts, dir, cfs)?;
        if level_first {
            subtrees::migrate(&mut db, progress)?;
        }
        Ok(Store {
            db: Arc::new(db),
            record_cache_bytes: config.record_cache_bytes,
            observer: Arc::new(Mutex::new(None)),
            hashes: Arc::default(),
        })
    }

    /// The state whose committed records are this store's, with the record cache of the
    /// store's budget; loads the small global part only.
    pub fn open_state(&self) -> Result<ledger::state::State, ledger::state::RecordError> {
        ledger::state::State::open_cached(Arc::new(self.clone()), self.record_cache_bytes)
    }

    /// As [`Store::open_state`], reading through `source` (this store seen through what is
    /// staged above it), with this store's record cache budget.
    pub fn open_state_over(
        &self,
        source: Arc<dyn ledger::state::RecordSource>,
    ) -> Result<ledger::state::State, ledger::state::RecordError> {
        ledger::state::State::open_cached(source, self.record_cache_bytes)
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created at open")
    }

    /// Writes `batch` atomically and waits until it is on stable storage (synced WAL).
    ///
    /// Keys go into the `WriteBatch` in ascending order per column family (a stable sort, so
    /// a key written twice keeps its last value): RocksDB's memtable skip list then inserts
    /// each key next to the previous one instead of searching from the top, which was the
    /// node's largest user-space cost under write load (profiled, see README "Performance").
    pub fn commit(&self, batch: &CommitBatch) -> Result<(), StoreError> {
        self.commit_opt(batch, true)
    }

    /// As [`Store::commit`], without waiting for stable storage: the batch is still written
    /// whole or not at all, and becomes durable with the next synced write (RocksDB syncs its
    /// log in order). For a batch whose loss in a crash is repaired at the next open (a
    /// standby applying a batch that a synced record says is committed).
    pub fn commit_unsynced(&self, batch: &CommitBatch) -> Result<(), StoreError> {
        self.commit_opt(batch, false)
    }

    fn commit_opt(&self, batch: &CommitBatch, sync: bool) -> Result<(), StoreError> {
        // Leaf hashes are not stored: each is the hash of the entry beside it
        // ([`Store::subtree_hash`] computes it).
        let mut hashes: Vec<([u8; 9], &Hash)> = batch
            .hashes
            .iter()
            .filter(|(level, ..)| *level > 0)
            .map(|(level, index, hash)| {
                subtrees::key(*level, *index)
                    .map(|k| (k, hash))
                    .ok_or_else(|| StoreError::Corrupt(format!("no subtree {level}/{index}")))
            })
            .collect::<Result<_, _>>()?;
        hashes.sort_by_key(|h| h.0);
        let mut records: Vec<&(Vec<u8>, Option<Vec<u8>>)> = batch.state.iter().collect();
        records.sort_by(|a, b| a.0.cmp(&b.0));
        let mut history: Vec<Vec<u8>> = batch
            .history
            .iter()
            .map(|(m, i)| history_key(m, *i))
            .collect();
        history.sort_unstable();
        let mut wb = WriteBatch::default();
        let (entries, tree, state, history_cf) = (
            self.cf(CF_ENTRIES),
            self.cf(CF_TREE),
            self.cf(CF_STATE),
            self.cf(CF_HISTORY),
        );
        for (i, bytes) in &batch.entries {
            wb.put_cf(entries, be(*i), bytes);
        }
        for (k, hash) in &hashes {
            wb.put_cf(tree, k, hash);
        }
        for (k, v) in records {
            match v {
                Some(v) => wb.put_cf(state, k, v),
                None => wb.delete_cf(state, k),
            }
        }
        for k in &history {
            wb.put_cf(history_cf, k, b"");
        }
        if let Some((size, note)) = &batch.checkpoint {
            wb.put_cf(self.cf(CF_CHECKPOINTS), be(*size), note.as_bytes());
        }
        for (k, v) in &batch.local {
            wb.put_cf(self.cf(CF_LOCAL), k, v);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(wb, &wo)?;
        // Written: the receipts of the batch read these first.
        let mut cache = self.hashes.lock().expect("hash cache lock");
        for (level, index, hash) in &batch.hashes {
            cache.insert(*level, *index, *hash);
        }
        Ok(())
    }

    /// Stores the signed checkpoint of tree size `size`. Written without waiting for sync:
    /// a lost checkpoint is re-signed (identically, Ed25519 being deterministic) at open.
    pub fn put_checkpoint(&self, size: u64, note: &str, sync: bool) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db
            .put_cf_opt(self.cf(CF_CHECKPOINTS), be(size), note.as_bytes(), &wo)?;
        Ok(())
    }

    /// The latest stored checkpoint: `(size, note text)`.
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        let mut it = self
            .db
            .iterator_cf(self.cf(CF_CHECKPOINTS), IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(kv) => {
                let (k, v) = kv?;
                let text = String::from_utf8(v.to_vec())
                    .map_err(|_| StoreError::Corrupt("checkpoint is not UTF-8".into()))?;
                Ok(Some((read_be(&k)?, text)))
            }
        }
    }

    /// The entry at `index`, if stored.
    pub fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_ENTRIES), be(index))?)
    }

    /// Entries `start..end` (at most [`ENTRIES_PAGE_MAX`]), in order.
    pub fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let end = end.min(start.saturating_add(ENTRIES_PAGE_MAX as u64));
        let mut out = Vec::with_capacity((end.saturating_sub(start)) as usize);
        let it = self.db.iterator_cf(
            self.cf(CF_ENTRIES),
            IteratorMode::From(&be(start), Direction::Forward),
        );
        for kv in it {
            let (k, v) = kv?;
            let i = read_be(&k)?;
            if i >= end {
                break;
            }
            if i != start + out.len() as u64 {
                return Err(StoreError::Corrupt(format!("entry {i} follows a gap")));
            }
            out.push(v.to_vec());
        }
        Ok(out)
    }

    /// The leaf hashes of entries `start..end` (at most [`ENTRIES_PAGE_MAX`]), in order: the
    /// hashes of the stored entries, which are all the tree keeps of its leaves.
    pub fn leaf_hashes(&self, start: u64, end: u64) -> Result<Vec<Hash>, StoreError> {
        Ok(self
            .entries(start, end)?
            .iter()
            .map(|e| ledger::merkle::leaf_hash(e))
            .collect())
    }

    /// The index of the last stored entry plus one (0 for an empty log).
    pub fn entries_end(&self) -> Result<u64, StoreError> {
        let mut it = self.db.iterator_cf(self.cf(CF_ENTRIES), IteratorMode::End);
        match it.next() {
            None => Ok(0),
            Some(kv) => Ok(read_be(&kv?.0)? + 1),
        }
    }

    /// A state record by key.
    pub fn state_record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_STATE), key)?)
    }

    /// State records with keys in `start..end`, in key order, at most `limit`.
    pub fn state_range(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        if start >= end || limit == 0 {
            return Ok(out);
        }
        let it = self.db.iterator_cf(
            self.cf(CF_STATE),
            IteratorMode::From(start, Direction::Forward),
        );
        for kv in it {
            let (k, v) = kv?;
            if &k[..] >= end {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// State records with keys in `start..end`, in descending key order, at most `limit`.
    pub fn state_range_rev(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        if start >= end || limit == 0 {
            return Ok(out);
        }
        // Seeks to the last key at or before `end`; `end` itself is outside the range.
        let it = self.db.iterator_cf(
            self.cf(CF_STATE),
            IteratorMode::From(end, Direction::Reverse),
        );
        for kv in it {
            let (k, v) = kv?;
            if &k[..] >= end {
                continue;
            }
            if &k[..] < start {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Writes state records (`None` deletes) as one synced batch, outside a log commit: for
    /// the one-time migration of a store's records.
    pub fn state_write(&self, records: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<(), StoreError> {
        let mut wb = WriteBatch::default();
        let cf = self.cf(CF_STATE);
        for (k, v) in records {
            match v {
                Some(v) => wb.put_cf(cf, k, v),
                None => wb.delete_cf(cf, k),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(wb, &wo)?;
        Ok(())
    }

    /// The integer property `name` of column family `cf` (0 when RocksDB has none).
    fn property(&self, cf: &str, name: &str) -> u64 {
        self.db
            .property_int_value_cf(self.cf(cf), name)
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// The integer property `name` summed over the store's column families.
    fn property_sum(&self, name: &str) -> u64 {
        CFS.iter().map(|n| self.property(n, name)).sum()
    }

    /// Whether RocksDB has no compaction running or waiting, in any column family: a store
    /// just written in bulk compacts for minutes after, and reads measured meanwhile share
    /// the disk and the cores with it (benchmarks wait for this).
    pub fn compactions_settled(&self) -> bool {
        CFS.iter().all(|n| {
            self.property(n, "rocksdb.compaction-pending") == 0
                && self.property(n, "rocksdb.num-running-compactions") == 0
        })
    }

    /// What RocksDB holds in memory for this store, by its own estimates (for the node's
    /// metrics: the process's resident memory should be about these plus the record cache).
    pub fn memory_use(&self) -> MemoryUse {
        // The block cache is shared by the store's column families (not the default one,
        // which RocksDB opens with a cache of its own): ask one of them.
        MemoryUse {
            block_cache: self.property(CF_STATE, "rocksdb.block-cache-usage"),
            block_cache_pinned: self.property(CF_STATE, "rocksdb.block-cache-pinned-usage"),
            memtables: self.property_sum("rocksdb.size-all-mem-tables"),
            table_readers: self.property_sum("rocksdb.estimate-table-readers-mem"),
        }
    }

    /// Approximate bytes of live data on disk (SST files), for reports.
    pub fn disk_bytes(&self) -> u64 {
        self.property_sum("rocksdb.total-sst-files-size")
    }

    /// State records whose key starts with `prefix`, in key order, at most `limit`.
    pub fn state_scan(&self, prefix: &[u8], limit: usize) -> Result<Vec<Record>, StoreError> {
        self.scan(CF_STATE, prefix, prefix, limit)
    }

    /// As [`Store::state_scan`], starting at key `from` (at or after `prefix`): the next page
    /// of a scan whose last key was `k` starts at `k` followed by a zero byte.
    pub fn state_scan_from(
        &self,
        prefix: &[u8],
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.scan(CF_STATE, prefix, from, limit)
    }

    /// Records of column family `cf` whose key starts with `prefix`, from key `from`, in key
    /// order, at most `limit`.
    fn scan(
        &self,
        cf: &str,
        prefix: &[u8],
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let it = self
            .db
            .iterator_cf(self.cf(cf), IteratorMode::From(from, Direction::Forward));
        let mut out = Vec::new();
        for kv in it {
            let (k, v) = kv?;
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Indexes of a member's entries, ascending, from `after` (exclusive; `None` for the
    /// start), at most `limit` (capped at [`HISTORY_PAGE_MAX`]).
    pub fn history(
        &self,
        member: &MemberId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        let limit = limit.min(HISTORY_PAGE_MAX);
        let mut prefix = member.as_str().as_bytes().to_vec();
        prefix.push(0);
        let start = match after {
            Some(a) => history_key(member, a.saturating_add(1)),
            None => prefix.clone(),
        };
        let mut out = Vec::new();
        let it = self.db.iterator_cf(
            self.cf(CF_HISTORY),
            IteratorMode::From(&start, Direction::Forward),
        );
        for kv in it {
            let (k, _) = kv?;
            if !k.starts_with(&prefix) || out.len() >= limit {
                break;
            }
            out.push(read_be(&k[prefix.len()..])?);
        }
        Ok(out)
    }

    /// The index of a member's last entry before `before`, if any: one reverse seek, whatever
    /// the member's history.
    pub fn last_history_before(
        &self,
        member: &MemberId,
        before: u64,
    ) -> Result<Option<u64>, StoreError> {
        let Some(last) = before.checked_sub(1) else {
            return Ok(None);
        };
        let mut prefix = member.as_str().as_bytes().to_vec();
        prefix.push(0);
        let key = history_key(member, last);
        let mut it = self.db.iterator_cf(
            self.cf(CF_HISTORY),
            IteratorMode::From(&key, Direction::Reverse),
        );
        match it.next() {
            Some(kv) => {
                let (k, _) = kv?;
                if k.starts_with(&prefix) {
                    Ok(Some(read_be(&k[prefix.len()..])?))
                } else {
                    Ok(None)
                }
            }
            None => Ok(None),
        }
    }

    /// Writes a consistent copy of the whole store to `dir` (a RocksDB checkpoint; hard links
    /// where the file system allows). Safe while the store is being written.
    pub fn backup(&self, dir: &Path) -> Result<(), StoreError> {
        let cp = rocksdb::checkpoint::Checkpoint::new(&self.db)?;
        cp.create_checkpoint(dir)?;
        Ok(())
    }

    /// Checkpoints stored for sizes greater than `after` (or all), ascending, at most `limit`.
    pub fn checkpoints(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        let start = after.map_or(0, |a| a.saturating_add(1));
        let it = self.db.iterator_cf(
            self.cf(CF_CHECKPOINTS),
            IteratorMode::From(&be(start), Direction::Forward),
        );
        let mut out = Vec::new();
        for kv in it.take(limit) {
            let (k, v) = kv?;
            let text = String::from_utf8(v.to_vec())
                .map_err(|_| StoreError::Corrupt("checkpoint is not UTF-8".into()))?;
            out.push((read_be(&k)?, text));
        }
        Ok(out)
    }

    /// A node-local record (not part of the log).
    pub fn local_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_LOCAL), key)?)
    }

    /// Writes a node-local record durably (synced).
    pub fn local_put(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.local_write(&[(key.to_vec(), Some(value.to_vec()))])
    }

    /// Sets (or, with `None`, removes) the observer of node-local writes.
    pub fn observe_local(&self, observer: Option<Arc<dyn LocalObserver>>) {
        *self.observer.lock().expect("observer lock") = observer;
    }

    /// Writes several node-local records (`None` deletes) as one synced batch.
    pub fn local_write(&self, records: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<(), StoreError> {
        let observer = self.observer.lock().expect("observer lock");
        let Some(o) = observer.as_ref() else {
            // Without an observer, writes need no order among themselves.
            drop(observer);
            return self.local_write_unobserved(records);
        };
        self.local_write_unobserved(records)?;
        o.written(records);
        Ok(())
    }

    /// As [`Store::local_write`], unseen by the observer: for the records a standby receives
    /// or keeps for itself.
    pub fn local_write_unobserved(
        &self,
        records: &[(Vec<u8>, Option<Vec<u8>>)],
    ) -> Result<(), StoreError> {
        let mut wb = WriteBatch::default();
        let cf = self.cf(CF_LOCAL);
        for (k, v) in records {
            match v {
                Some(v) => wb.put_cf(cf, k, v),
                None => wb.delete_cf(cf, k),
            }
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(wb, &wo)?;
        Ok(())
    }

    /// Node-local records whose key starts with `prefix`, in key order, at most `limit`.
    pub fn local_scan(&self, prefix: &[u8], limit: usize) -> Result<Vec<Record>, StoreError> {
        self.local_scan_from(prefix, prefix, limit)
    }

    /// As [`Store::local_scan`], starting at key `from` (at or after `prefix`).
    pub fn local_scan_from(
        &self,
        prefix: &[u8],
        from: &[u8],
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        self.scan(CF_LOCAL, prefix, from, limit)
    }

    /// Flushes memtables and syncs the WAL, for a clean shutdown.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_wal(true)?;
        for cf in CFS {
            self.db.flush_cf(self.cf(cf))?;
        }
        Ok(())
    }
}

impl ledger::state::RecordSource for Store {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        self.state_record(key).map_err(|e| e.to_string())
    }

    fn range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Record>, String> {
        self.state_range(start, end, limit)
            .map_err(|e| e.to_string())
    }

    fn range_rev(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<Record>, String> {
        self.state_range_rev(start, end, limit)
            .map_err(|e| e.to_string())
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, String> {
        debug_assert!(keys.windows(2).all(|w| w[0] <= w[1]), "keys in order");
        self.db
            .batched_multi_get_cf(self.cf(CF_STATE), keys, true)
            .into_iter()
            .map(|r| r.map(|v| v.map(|v| v.to_vec())).map_err(|e| e.to_string()))
            .collect()
    }
}

impl HashReader for Store {
    /// A leaf's hash (level 0) is the hash of its entry, read from the entries; the hashes of
    /// larger subtrees are stored (spec/protocol.md §6).
    fn subtree_hash(&self, level: u8, index: u64) -> Result<Hash, MerkleError> {
        if let Some(h) = self
            .hashes
            .lock()
            .expect("hash cache lock")
            .get(level, index)
        {
            return Ok(h);
        }
        if level == 0 {
            let entry = self
                .db
                .get_pinned_cf(self.cf(CF_ENTRIES), be(index))
                .map_err(|e| MerkleError::Storage(e.to_string()))?
                .ok_or(MerkleError::MissingHash { level, index })?;
            return Ok(ledger::merkle::leaf_hash(&entry));
        }
        let key = subtrees::key(level, index).ok_or(MerkleError::MissingHash { level, index })?;
        let v = self
            .db
            .get_pinned_cf(self.cf(CF_TREE), key)
            .map_err(|e| MerkleError::Storage(e.to_string()))?
            .ok_or(MerkleError::MissingHash { level, index })?;
        let h: Hash = v
            .as_ref()
            .try_into()
            .map_err(|_| MerkleError::Storage(format!("hash {level}/{index} is not 32 bytes")))?;
        self.hashes
            .lock()
            .expect("hash cache lock")
            .insert(level, index, h);
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_use_counts_what_is_written_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let empty = store.memory_use();
        let puts: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..2_000u32)
            .map(|i| (format!("k{i}").into_bytes(), Some(vec![7; 100])))
            .collect();
        store.state_write(&puts).unwrap();
        assert!(store.memory_use().memtables > empty.memtables + 200_000);
        store.flush().unwrap();
        assert_eq!(store.state_record(b"k7").unwrap(), Some(vec![7; 100]));
        let after = store.memory_use();
        assert!(
            after.block_cache >= 4096 && after.table_readers > 0,
            "{after:?}"
        );
    }

    #[test]
    fn entries_are_compressed_at_every_level_and_the_state_only_at_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let on_disk = |cf: &str| -> (usize, Vec<i32>) {
            let files = store.db.live_files().unwrap();
            let of_cf = files.iter().filter(|f| f.column_family_name == cf);
            (
                of_cf.clone().map(|f| f.size).sum(),
                of_cf.map(|f| f.level).collect(),
            )
        };
        let compact = || {
            store
                .db
                .compact_range_cf(store.cf(CF_STATE), None::<&[u8]>, None::<&[u8]>)
        };
        // A megabyte of very compressible state records, twice, and as much of entries.
        let batch = |round: u8| CommitBatch {
            entries: (0..1_000u64)
                .map(|i| (u64::from(round) * 1_000 + i, vec![b'e'; 1_000]))
                .collect(),
            state: (0..1_000u32)
                .map(|i| (format!("k{i:04}").into_bytes(), Some(vec![round; 1_000])))
                .collect::<Vec<_>>()
                .into(),
            ..CommitBatch::default()
        };
        // RocksDB counts a column family's only level as its last: the first flushed file is
        // moved down as it is, so the levels are filled once before the check.
        store.commit(&batch(1)).unwrap();
        store.flush().unwrap();
        compact();
        store.commit(&batch(2)).unwrap();
        store.flush().unwrap();
        let (entries, _) = on_disk(CF_ENTRIES);
        assert!(
            entries < 100_000,
            "entries flushed compressed: {entries} bytes"
        );
        let (state, levels) = on_disk(CF_STATE);
        assert!(levels.contains(&0), "{levels:?}");
        assert!(
            state > 1_000_000,
            "state flushed uncompressed: {state} bytes"
        );
        // Compacted to the last level, the state is compressed.
        compact();
        let (state, levels) = on_disk(CF_STATE);
        assert!(
            state < 100_000,
            "state compacted compressed: {state} bytes at {levels:?}"
        );
        assert!(levels.iter().all(|&l| l > 0), "{levels:?}");
        assert_eq!(store.state_record(b"k0999").unwrap(), Some(vec![2; 1_000]));
    }

    #[test]
    fn histories_merge_sixteen_level_zero_files_and_the_state_four() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let level0 = |cf: &str| {
            let files = store.db.live_files().unwrap();
            files
                .iter()
                .filter(|f| f.column_family_name == cf && f.level == 0)
                .count()
        };
        let member: MemberId = "m1".parse().unwrap();
        for round in 0..8u64 {
            store
                .commit(&CommitBatch {
                    state: vec![(format!("k{round}").into_bytes(), Some(vec![1]))].into(),
                    history: vec![(member.clone(), round)],
                    ..CommitBatch::default()
                })
                .unwrap();
            store.flush().unwrap();
        }
        store
            .db
            .wait_for_compact(&rocksdb::WaitForCompactOptions::default())
            .unwrap();
        assert_eq!(level0(CF_HISTORY), 8, "history files kept at level 0");
        assert!(level0(CF_STATE) < 4, "state files merged down");
        let page = store.history(&member, None, 100).unwrap();
        assert_eq!(page.len(), 8, "{page:?}");
    }

    #[test]
    fn leaf_hashes_are_not_stored_but_read_from_the_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let entries: Vec<Vec<u8>> = (0..5u8).map(|i| vec![b'e', i]).collect();
        let leaves: Vec<Hash> = entries
            .iter()
            .map(|e| ledger::merkle::leaf_hash(e))
            .collect();
        let pair = |i: usize| ledger::merkle::node_hash(&leaves[i], &leaves[i + 1]);
        store
            .commit(&CommitBatch {
                entries: entries
                    .iter()
                    .cloned()
                    .enumerate()
                    .map(|(i, e)| (i as u64, e))
                    .collect(),
                hashes: (0..5u64)
                    .map(|i| (0, i, leaves[i as usize]))
                    .chain([(1, 0, pair(0)), (1, 1, pair(2))])
                    .collect(),
                ..CommitBatch::default()
            })
            .unwrap();
        let stored: Vec<u8> = store
            .db
            .iterator_cf(store.cf(CF_TREE), IteratorMode::Start)
            .map(|kv| kv.unwrap().0[8])
            .collect();
        assert_eq!(stored, vec![1, 1], "only the two level-1 hashes are stored");
        // Read back from a store that never saw them (no cache of what it wrote).
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        for (i, leaf) in leaves.iter().enumerate() {
            assert_eq!(store.subtree_hash(0, i as u64).unwrap(), *leaf);
        }
        assert_eq!(store.subtree_hash(1, 1).unwrap(), pair(2));
        assert!(matches!(
            store.subtree_hash(0, 5),
            Err(MerkleError::MissingHash { level: 0, index: 5 })
        ));
        assert_eq!(store.leaf_hashes(1, 4).unwrap(), leaves[1..4].to_vec());
    }

    #[test]
    fn a_members_last_entry_before_a_size_is_one_seek_and_never_another_members() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b, c): (MemberId, MemberId, MemberId) = (
            "a".parse().unwrap(),
            "b".parse().unwrap(),
            "c".parse().unwrap(),
        );
        // b's entries are 3, 5, 7, ...; a's and c's sort around them.
        let mut history: Vec<(MemberId, u64)> =
            (0..500u64).map(|i| (b.clone(), 3 + 2 * i)).collect();
        history.push((a.clone(), 2));
        history.push((c.clone(), 1));
        store
            .commit(&CommitBatch {
                history,
                ..CommitBatch::default()
            })
            .unwrap();
        let last = |m: &MemberId, before| store.last_history_before(m, before).unwrap();
        assert_eq!(last(&b, 0), None);
        assert_eq!(last(&b, 3), None);
        assert_eq!(last(&b, 4), Some(3));
        assert_eq!(last(&b, 6), Some(5));
        assert_eq!(last(&b, u64::MAX), Some(3 + 2 * 499));
        assert_eq!(last(&a, 2), None);
        assert_eq!(last(&a, 3), Some(2));
        assert_eq!(last(&c, u64::MAX), Some(1));
        assert_eq!(last(&"d".parse().unwrap(), u64::MAX), None);
    }

    #[test]
    fn only_the_state_and_the_local_records_are_written_with_filters() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let member: MemberId = "m1".parse().unwrap();
        store
            .commit(&CommitBatch {
                entries: (0..100u64).map(|i| (i, vec![b'e'; 100])).collect(),
                hashes: (0..50u64).map(|i| (1, i, [7; 32])).collect(),
                state: (0..100u32)
                    .map(|i| (format!("k{i:04}").into_bytes(), Some(vec![1; 10])))
                    .collect::<Vec<_>>()
                    .into(),
                history: (0..100u64).map(|i| (member.clone(), i)).collect(),
                checkpoint: Some((100, "note".into())),
                local: vec![(b"pin".to_vec(), b"key".to_vec())],
            })
            .unwrap();
        store.flush().unwrap();
        let filter_bytes = |cf: &str| -> u64 {
            let props = store
                .db
                .property_value_cf(store.cf(cf), "rocksdb.aggregated-table-properties")
                .unwrap()
                .unwrap_or_default();
            let entries = props
                .split(';')
                .find_map(|p| p.trim().strip_prefix("# entries="))
                .and_then(|v| v.trim().parse::<u64>().ok());
            assert!(entries.unwrap_or(0) > 0, "{cf} flushed nothing: {props}");
            props
                .split(';')
                .find_map(|p| p.trim().strip_prefix("filter block size="))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no filter size for {cf}: {props}"))
        };
        for cf in [CF_STATE, CF_LOCAL] {
            assert!(filter_bytes(cf) > 0, "{cf} has no filter");
        }
        for cf in [CF_ENTRIES, CF_TREE, CF_HISTORY, CF_CHECKPOINTS] {
            assert_eq!(filter_bytes(cf), 0, "{cf} has a filter");
        }
        // Reads by key still find what is there and miss what is not.
        assert_eq!(store.state_record(b"k0042").unwrap(), Some(vec![1; 10]));
        assert_eq!(store.state_record(b"k9999").unwrap(), None);
        assert_eq!(store.entry(99).unwrap(), Some(vec![b'e'; 100]));
        assert_eq!(store.entry(100).unwrap(), None);
    }

    #[test]
    fn stores_sharing_memtables_count_them_in_one_budget_and_flush_within_it() {
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let budget = 8 << 20;
        let shared = SharedMemtables::new(budget);
        let config = StoreConfig {
            shared_memtables: Some(shared.clone()),
            ..StoreConfig::default()
        };
        let a = Store::open_with(a_dir.path(), config.clone()).unwrap();
        let b = Store::open_with(b_dir.path(), config).unwrap();
        // RocksDB counts memtable memory by the arena blocks it allocates; a value larger than
        // a block gets one of its own, so it shows in the shared count at once.
        let before = shared.usage();
        b.state_write(&[(b"b".to_vec(), Some(vec![1; 1_000_000]))])
            .unwrap();
        assert!(shared.usage() >= before + 1_000_000, "{shared:?}");
        // 40 MB through an 8 MiB budget: flushed on the way, never far above it.
        let mut peak = 0;
        for round in 0..40u32 {
            let puts: Vec<(Vec<u8>, Option<Vec<u8>>)> = (0..1_000u32)
                .map(|i| (format!("k{round}-{i}").into_bytes(), Some(vec![7; 1_000])))
                .collect();
            a.state_write(&puts).unwrap();
            peak = peak.max(shared.usage());
        }
        assert!(peak <= 2 * budget, "peak {peak} of {budget}");
        assert_eq!(a.state_record(b"k0-0").unwrap(), Some(vec![7; 1_000]));
        assert_eq!(a.state_record(b"k39-999").unwrap(), Some(vec![7; 1_000]));
        assert_eq!(b.state_record(b"b").unwrap(), Some(vec![1; 1_000_000]));
    }

    #[test]
    fn state_ranges_read_both_ways_within_their_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let puts: Vec<(Vec<u8>, Option<Vec<u8>>)> = [&b"a"[..], b"b", b"bb", b"c", b"d"]
            .iter()
            .map(|k| (k.to_vec(), Some(k.to_vec())))
            .collect();
        store.state_write(&puts).unwrap();
        let keys = |r: Vec<Record>| r.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        let v = |ks: &[&[u8]]| ks.iter().map(|k| k.to_vec()).collect::<Vec<_>>();
        assert_eq!(
            keys(store.state_range(b"b", b"d", 10).unwrap()),
            v(&[b"b", b"bb", b"c"])
        );
        // Newest first; `end` itself (present) is outside, `start` inside.
        assert_eq!(
            keys(store.state_range_rev(b"b", b"d", 10).unwrap()),
            v(&[b"c", b"bb", b"b"])
        );
        assert_eq!(
            keys(store.state_range_rev(b"b", b"d", 2).unwrap()),
            v(&[b"c", b"bb"])
        );
        // An end past every key, and an end between keys.
        assert_eq!(
            keys(store.state_range_rev(b"", b"z", 1).unwrap()),
            v(&[b"d"])
        );
        assert_eq!(
            keys(store.state_range_rev(b"", b"bc", 2).unwrap()),
            v(&[b"bb", b"b"])
        );
        assert!(store.state_range_rev(b"c", b"c", 5).unwrap().is_empty());
        assert!(store.state_range_rev(b"0", b"a", 5).unwrap().is_empty());
    }
}
