//! A brand's durable, signed log: the state machine, the Merkle tree and the store together
//! (spec/protocol.md §6).
//!
//! Invariants:
//! - one [`Log`] is the only writer of its store;
//! - [`Log::append`] returns only after the batch is durable (one synced `WriteBatch`, which
//!   also holds the checkpoint it signs), and that checkpoint covers exactly the durable
//!   entries, never more;
//! - a batch of [`Log::stage_linked`] is applied on top of the staged batches before it (read
//!   through `log::staging`) and becomes the log's checkpoint only when handed back to
//!   [`Log::landed`], in the order staged, after its write succeeded;
//! - after a failed write the `Log` refuses further writes (its memory may be ahead of the
//!   disk) until it is reopened, which reloads the durable state;
//! - [`Log::open`] refuses a store whose entries, tree, state and checkpoint disagree;
//! - a linked chain of writes ([`Log::append_linked_with`]) is applied all or none within one
//!   batch: either every write of it succeeds and its entries are those the writes would log
//!   unlinked, or none of its entries is in the batch and no state change of it remains.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use crate::store::{CommitBatch, Store, StoreConfig, StoreError};
use ledger::checkpoint::{
    open_checkpoint, sign_checkpoint, Checkpoint, CheckpointError, NoteSigner,
};
use ledger::entry::{Entry, EntryKind, ENTRY_BYTES_MAX};
use ledger::merkle::{self, Hash, MemoryTree, MerkleError, PendingHashes};
use ledger::receipt::Receipt;
use ledger::state::{legacy, record_prefix, records, RecordError, State, StateError};
use ledger::types::{EntryId, LogIndex, LogTime, MAX_TIME_MS};

pub(crate) mod staging;
use staging::Staging;

/// The most writes one [`Log::append`] call accepts.
pub const BATCH_WRITES_MAX: usize = 8192;

/// The most writes one linked chain holds ([`Log::append_linked_with`]).
pub const LINKED_WRITES_MAX: usize = 64;

/// A write asked of the log: an idempotency id and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub id: EntryId,
    pub kind: EntryKind,
}

/// What became of one write of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Logged now, at this index.
    Appended(u64),
    /// The same id with the same body was logged before, at this index; nothing new logged.
    Existing(u64),
    /// Refused; nothing logged.
    Refused(WriteError),
}

/// Why one write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The id was used before by an entry with a different body.
    #[error("id {id} was used by entry {index} with a different body")]
    IdConflict { id: EntryId, index: u64 },
    /// The accounting rules refuse it.
    #[error(transparent)]
    State(#[from] StateError),
    /// Its entry would be longer than [`ENTRY_BYTES_MAX`], so no reader could decode it.
    #[error("the entry would be {size} bytes, more than the limit of {max}")]
    TooLarge { size: usize, max: usize },
    /// Another write of its linked chain, `refused`, was refused, so nothing of the chain was
    /// logged (TigerBeetle's `linked_event_failed`).
    #[error(
        "write {refused} of the same linked chain was refused; nothing of the chain was logged"
    )]
    LinkedWriteFailed { refused: EntryId },
    /// Its linked chain holds more than [`LINKED_WRITES_MAX`] writes; nothing of it was logged.
    #[error("a linked chain holds at most {max} writes, not {len}")]
    ChainTooLong { len: usize, max: usize },
}

/// A failure of the log itself (storage, corruption); not the caller's input.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("merkle: {0}")]
    Merkle(#[from] MerkleError),
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("the store is inconsistent: {0}")]
    Inconsistent(String),
    #[error("a previous write failed; reopen the log")]
    Poisoned,
    /// A synchronous append was asked while staged batches had not landed.
    #[error("batches are staged and not written yet")]
    Staged,
    #[error("a batch holds at most {BATCH_WRITES_MAX} writes")]
    BatchTooLarge,
    /// The chains of a batch are not ascending, disjoint, non-empty ranges of its writes;
    /// nothing was applied and the log is still usable.
    #[error("invalid linked chains: {0}")]
    InvalidChains(String),
    #[error("no entry at index {0}")]
    NoSuchEntry(u64),
    #[error("state storage: {0}")]
    State(StateError),
    /// A [`CommitGate`] refused the batch (the node lost its leadership, or the coordination
    /// store could not be reached): nothing of it was answered.
    #[error("the commit was refused: {0}")]
    Fenced(String),
}

/// A batch about to be committed (or just committed): what a replica needs to store it and
/// the coordination store needs to record it.
pub struct Prepared<'a> {
    /// Index of the batch's first entry.
    pub start: u64,
    /// `(index, canonical bytes)` of the batch's entries, in order.
    pub entries: &'a [(u64, Vec<u8>)],
    /// Log size after the batch.
    pub size: u64,
    /// Merkle root after the batch.
    pub root: Hash,
    /// The signed checkpoint note of `size` and `root` (Ed25519 is deterministic: the note
    /// stored after the commit is this one).
    pub note: String,
}

/// Asked by [`Log::append_with`] around the local commit of a batch. `before_commit` runs
/// after the batch is built and its checkpoint signed in memory but before anything is stored;
/// `after_commit` runs once the batch and its checkpoint are durable, before the caller may
/// publish or answer. Either refusing poisons the log.
pub trait CommitGate {
    fn before_commit(&mut self, batch: &Prepared<'_>) -> Result<(), String>;
    fn after_commit(&mut self, batch: &Prepared<'_>) -> Result<(), String>;
}

/// The gate of a node without a standby: it lets every commit through.
pub struct NoGate;

impl CommitGate for NoGate {
    fn before_commit(&mut self, _: &Prepared<'_>) -> Result<(), String> {
        Ok(())
    }
    fn after_commit(&mut self, _: &Prepared<'_>) -> Result<(), String> {
        Ok(())
    }
}

/// How far the migration of a store of an earlier release got, reported while a log opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migrated {
    /// Tree hashes moved to this release's layout (spec/protocol.md §6).
    TreeHashes(u64),
    /// State records converted from JSON ([`migrate`]).
    StateRecords(u64),
}

/// State records converted per synced batch while migrating a store.
pub const MIGRATE_CHUNK: usize = 10_000;

/// Converts the state records of a store written by a release before 0.2 (JSON records) to
/// the current layout (spec/protocol.md §6), in synced chunks of [`MIGRATE_CHUNK`] records,
/// calling `progress` with the records done after each. The meta record is converted last,
/// so a migration cut off by a crash is taken up again (from the start, skipping what is
/// done) at the next open. Returns whether anything was migrated.
pub fn migrate(store: &Store, progress: &mut dyn FnMut(u64)) -> Result<bool, LogError> {
    let Some(meta) = store.state_record(record_prefix::META)? else {
        return Ok(false);
    };
    if !legacy::is_legacy(&meta) {
        return Ok(false);
    }
    let policies = store.state_record(record_prefix::POLICIES)?;
    let agreements = store.state_range(
        record_prefix::AGREEMENT,
        &records::prefix_end(record_prefix::AGREEMENT),
        ledger::state::AGREEMENTS_MAX + 1,
    )?;
    let mut cx = legacy::context(
        policies.as_deref(),
        agreements.iter().map(|(k, v)| (&k[..], &v[..])),
    )?;
    let end = vec![0xff; 8];
    let mut from = Vec::new();
    let mut done = 0u64;
    loop {
        let page = store.state_range(&from, &end, MIGRATE_CHUNK)?;
        let mut writes = Vec::new();
        for (k, v) in &page {
            writes.extend(legacy::convert(&mut cx, k, v)?);
        }
        store.state_write(&writes)?;
        done += page.len() as u64;
        progress(done);
        match page.last() {
            Some((k, _)) if page.len() == MIGRATE_CHUNK => from = records::after(k),
            _ => break,
        }
    }
    store.state_write(&legacy::finish(&cx, &meta)?)?;
    Ok(true)
}

/// Checks that `chains` are ascending, disjoint, non-empty ranges within `len` writes.
fn check_chains(chains: &[Range<usize>], len: usize) -> Result<(), LogError> {
    let mut next = 0;
    for c in chains {
        if c.start < next || c.start >= c.end || c.end > len {
            return Err(LogError::InvalidChains(format!(
                "{c:?} (after {next}, of {len} writes)"
            )));
        }
        next = c.end;
    }
    Ok(())
}

/// Why [`apply_one`] did not apply an entry.
enum ApplyError {
    Refused(StateError),
    Log(LogError),
}

/// Applies one entry to the state and adds it to the batch being built (its leaf hash is
/// added when the batch is complete, [`Log::append_linked_with`]).
/// `id_unused`: the caller has just found the entry's id unused on `state`.
fn apply_one(
    state: &mut State,
    entry: &Entry,
    bytes: Vec<u8>,
    batch: &mut CommitBatch,
    id_unused: bool,
) -> Result<(), ApplyError> {
    let index = state.size();
    let idx = LogIndex::new(index).expect("u64 index");
    let applied = if id_unused {
        state.apply_unused_id(idx, entry)
    } else {
        state.apply(idx, entry)
    };
    match applied {
        Ok(applied) => {
            if let Some(m) = applied.member {
                batch.history.push((m, index));
            }
            batch.entries.push((index, bytes));
            Ok(())
        }
        Err(e @ StateError::Storage(_)) => Err(ApplyError::Log(LogError::State(e))),
        Err(e) => Err(ApplyError::Refused(e)),
    }
}

/// The brand's log, open for writing.
pub struct Log {
    store: Store,
    /// The store seen through the batches staged and not landed: what the state reads.
    staging: Arc<Staging>,
    state: State,
    signer: NoteSigner,
    checkpoint: Checkpoint,
    checkpoint_note: String,
    /// Entries durable: the log's size but for the batches staged and not landed.
    durable: u64,
    poisoned: bool,
}

/// What an applied batch writes: the index of its first entry, and its entries, history keys
/// and local records (state changes not drained yet).
type Built = (u64, CommitBatch);

/// A batch applied and signed by [`Log::stage_linked`], to be written by [`Staged::write`]
/// (on any thread, in the order staged) and then handed back to [`Log::landed`].
pub struct Staged {
    batch: CommitBatch,
    start: u64,
    size: u64,
    checkpoint: Checkpoint,
    note: String,
}

impl Staged {
    /// The log's size once this batch is written.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The signed checkpoint note of that size.
    pub fn note(&self) -> &str {
        &self.note
    }

    /// Writes the batch with its checkpoint as one synced `WriteBatch`, into the log's store
    /// (`store`: a clone of [`Log::store`]). Every batch staged before it must have been
    /// written first.
    pub fn write(&self, store: &Store) -> Result<(), StoreError> {
        store.commit(&self.batch)
    }
}

impl Log {
    /// Opens (or creates) the log in `dir`, signing checkpoints with `signer` (whose name is
    /// the log's origin), with the default memory budget. See [`Log::open_with`].
    pub fn open(dir: &Path, signer: NoteSigner) -> Result<Log, LogError> {
        Log::open_with(dir, signer, StoreConfig::default(), &mut |_| {})
    }

    /// Opens (or creates) the log in `dir` within the memory budget `config`. Migrates a
    /// store of an older release first (its tree hashes, [`Store::open_migrating`], then its
    /// state records, [`migrate`], reporting each to `progress`). Loads only the
    /// small global part of the state, so opening takes the same time at any size; then
    /// checks that the stored entries, tree, state and last checkpoint agree.
    pub fn open_with(
        dir: &Path,
        signer: NoteSigner,
        config: StoreConfig,
        progress: &mut dyn FnMut(Migrated),
    ) -> Result<Log, LogError> {
        let store = Store::open_migrating(dir, config, &mut |n| progress(Migrated::TreeHashes(n)))?;
        migrate(&store, &mut |n| progress(Migrated::StateRecords(n)))?;
        let staging = Arc::new(Staging::over(store.clone()));
        let state = store.open_state_over(staging.clone())?;
        let size = state.size();
        let end = store.entries_end()?;
        if end != size {
            return Err(LogError::Inconsistent(format!(
                "state covers {size} entries but {end} are stored"
            )));
        }
        let root = merkle::root(size, &store)?;
        if size > 0 {
            // The last entries from the first of the last pair that shares a parent (two or
            // three, read together): that pair must hash to the parent stored with it (the tree
            // stores no leaf hash: a leaf's is its entry's).
            let from = if size >= 2 { (size / 2 - 1) * 2 } else { 0 };
            let tail = store.entries(from, size)?;
            if tail.len() as u64 != size - from {
                return Err(LogError::NoSuchEntry(from + tail.len() as u64));
            }
            let last = &tail[tail.len() - 1];
            if size >= 2 {
                let parent =
                    merkle::node_hash(&merkle::leaf_hash(&tail[0]), &merkle::leaf_hash(&tail[1]));
                if parent != merkle::HashReader::subtree_hash(&store, 1, from / 2)? {
                    return Err(LogError::Inconsistent(
                        "the last entries do not match the stored tree".into(),
                    ));
                }
            }
            let entry = Entry::from_bytes(last)
                .map_err(|e| LogError::Inconsistent(format!("last entry: {e}")))?;
            if Some(entry.time) != state.last_time() {
                return Err(LogError::Inconsistent(
                    "the last entry's time differs from the state's".into(),
                ));
            }
        }
        let verifier = signer.verifier();
        let latest = store.latest_checkpoint()?;
        // Ed25519 is deterministic: a checkpoint already stored for this size is exactly the
        // one signed below, so it is written only when missing (lost in a crash, or new log).
        let stored = latest.as_ref().map(|(s, _)| *s) == Some(size);
        if let Some((cp_size, note)) = latest {
            let (cp, _) = open_checkpoint(&note, &verifier)?;
            if cp.size != cp_size || cp.size > size {
                return Err(LogError::Inconsistent(format!(
                    "checkpoint of size {} is ahead of the {size} durable entries",
                    cp.size
                )));
            }
            if cp.root != merkle::root(cp.size, &store)? {
                return Err(LogError::Inconsistent(format!(
                    "checkpoint of size {} does not match the stored tree",
                    cp.size
                )));
            }
        }
        let mut log = Log {
            store,
            staging,
            state,
            signer,
            checkpoint: Checkpoint {
                origin: String::new(),
                size: 0,
                root: merkle::empty_root(),
                extensions: Vec::new(),
            },
            checkpoint_note: String::new(),
            durable: size,
            poisoned: false,
        };
        log.sign(size, root, !stored, true)?;
        Ok(log)
    }

    /// Signs the checkpoint of the first `size` entries; stores it when `write` (with a synced
    /// WAL when `sync`).
    fn sign(&mut self, size: u64, root: Hash, write: bool, sync: bool) -> Result<(), LogError> {
        let cp = Checkpoint {
            origin: self.signer.name().to_owned(),
            size,
            root,
            extensions: Vec::new(),
        };
        let note = sign_checkpoint(&cp, &self.signer)?.to_string();
        if write {
            self.store.put_checkpoint(size, &note, sync)?;
        }
        self.checkpoint = cp;
        self.checkpoint_note = note;
        Ok(())
    }

    /// The checkpoint of the first `size` entries with root `root` and its signed note, not
    /// stored.
    fn note_for(&self, size: u64, root: Hash) -> Result<(Checkpoint, String), LogError> {
        let cp = Checkpoint {
            origin: self.signer.name().to_owned(),
            size,
            root,
            extensions: Vec::new(),
        };
        let note = sign_checkpoint(&cp, &self.signer)?.to_string();
        Ok((cp, note))
    }

    /// The log's origin (its signing key's name).
    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// The C2SP verifier key of the log.
    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key_string()
    }

    /// Number of entries: the durable ones and those of the batches staged and not landed
    /// ([`Log::durable_size`] without them).
    pub fn size(&self) -> u64 {
        self.state.size()
    }

    /// Number of durable entries.
    pub fn durable_size(&self) -> u64 {
        self.durable
    }

    /// The state after every applied batch (staged ones included).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The store, for reads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The latest signed checkpoint note.
    pub fn checkpoint_note(&self) -> &str {
        &self.checkpoint_note
    }

    /// The latest checkpoint.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The time the next entry gets when the clock reads `now`: `now`, or one millisecond
    /// after the last entry if the clock is behind.
    pub fn next_time(&self, now: LogTime) -> LogTime {
        match self.state.last_time() {
            Some(last) if now <= last => {
                LogTime::new((last.get() + 1).min(MAX_TIME_MS)).unwrap_or(LogTime::MAX)
            }
            _ => now,
        }
    }

    /// Appends a batch of writes as one durable commit and one signed checkpoint.
    ///
    /// Each write is checked in order against the state left by the writes before it. A write
    /// whose id was used before with the same body yields [`Outcome::Existing`]; one with the
    /// same id and another body, or one the rules refuse, yields [`Outcome::Refused`] and
    /// leaves no trace. Returns after the accepted entries are on stable storage.
    pub fn append(&mut self, writes: &[Write], now: LogTime) -> Result<Vec<Outcome>, LogError> {
        self.append_linked_with(writes, &[], now, &mut NoGate)
    }

    /// As [`Log::append`], with `gate` asked before and after the local commit (a node with a
    /// standby replicates the batch and moves the commit point there, see [`CommitGate`]).
    /// When the gate refuses, nothing of the batch is stored or signed into the store, the
    /// log is poisoned (its memory is ahead of the disk) and [`LogError::Fenced`] is returned.
    pub fn append_with(
        &mut self,
        writes: &[Write],
        now: LogTime,
        gate: &mut dyn CommitGate,
    ) -> Result<Vec<Outcome>, LogError> {
        self.append_linked_with(writes, &[], now, gate)
    }

    /// As [`Log::append`], with the writes in each range of `chains` linked: a chain is
    /// applied all or none (spec/protocol.md §6, "Linked writes"). See
    /// [`Log::append_linked_with`].
    pub fn append_linked(
        &mut self,
        writes: &[Write],
        chains: &[Range<usize>],
        now: LogTime,
    ) -> Result<Vec<Outcome>, LogError> {
        self.append_linked_with(writes, chains, now, &mut NoGate)
    }

    /// As [`Log::append_with`], with the writes in each range of `chains` (ascending,
    /// disjoint, non-empty ranges of indexes into `writes`, else [`LogError::InvalidChains`]
    /// before anything is applied) linked into a chain, applied all or none (spec/protocol.md
    /// §6, "Linked writes"), as TigerBeetle's linked events: its writes are applied in order;
    /// when one is refused, everything the chain's earlier writes (and the tier changes they
    /// caused) did is undone, none of its entries is in the batch, the refused write's outcome
    /// is its error and every other write of the chain gets [`WriteError::LinkedWriteFailed`].
    /// A chain of more than [`LINKED_WRITES_MAX`] writes is refused whole
    /// ([`WriteError::ChainTooLong`]). A write found logged before ([`Outcome::Existing`])
    /// does not break its chain. Writes outside the chains are applied alone, as by
    /// [`Log::append`]. When the whole chain succeeds, its entries are exactly those its
    /// writes would log unlinked.
    pub fn append_linked_with(
        &mut self,
        writes: &[Write],
        chains: &[Range<usize>],
        now: LogTime,
        gate: &mut dyn CommitGate,
    ) -> Result<Vec<Outcome>, LogError> {
        if self.durable != self.size() {
            return Err(LogError::Staged);
        }
        let (outcomes, built) = self.apply_batch(writes, chains, now)?;
        let Some((start, batch)) = built else {
            return Ok(outcomes);
        };
        if let Err(e) = self.commit(start, batch, gate) {
            self.poisoned = true;
            return Err(e);
        }
        Ok(outcomes)
    }

    /// As [`Log::append_linked`], but returns once the batch is applied and its checkpoint
    /// signed, before anything is written: the caller writes the batch ([`Staged::write`],
    /// on another thread if it likes) while the log applies the next ones on top of it, and
    /// hands it back to [`Log::landed`] once written. Nothing of a staged batch may be
    /// answered before then. `None`: the batch logs nothing (every write answered `existing`
    /// or was refused); its answers still wait for the batches staged before it. A failed
    /// write leaves the log's memory ahead of its disk: [`Log::poison`] it.
    pub fn stage_linked(
        &mut self,
        writes: &[Write],
        chains: &[Range<usize>],
        now: LogTime,
    ) -> Result<(Vec<Outcome>, Option<Staged>), LogError> {
        let (outcomes, built) = self.apply_batch(writes, chains, now)?;
        let Some((start, batch)) = built else {
            return Ok((outcomes, None));
        };
        match self.prepare(start, batch) {
            Ok(staged) => {
                self.staging.stage(staged.size, &staged.batch);
                Ok((outcomes, Some(staged)))
            }
            Err(e) => {
                self.poisoned = true;
                Err(e)
            }
        }
    }

    /// Takes back a batch of [`Log::stage_linked`] once [`Staged::write`] succeeded: its
    /// checkpoint becomes the log's. Batches land in the order they were staged.
    pub fn landed(&mut self, staged: Staged) -> Result<(), LogError> {
        if staged.start != self.durable {
            self.poisoned = true;
            return Err(LogError::Inconsistent(format!(
                "batch from entry {} landed with {} entries durable",
                staged.start, self.durable
            )));
        }
        self.staging.land(staged.size);
        self.durable = staged.size;
        debug_assert!(self.durable < self.size() || self.staging.is_empty());
        self.checkpoint = staged.checkpoint;
        self.checkpoint_note = staged.note;
        Ok(())
    }

    /// Refuses every further write: a staged batch could not be written, so the log's memory
    /// is ahead of its disk until it is reopened.
    pub fn poison(&mut self) {
        self.poisoned = true;
    }

    /// Applies a batch in memory: its outcomes, and, when it logs anything, the index of its
    /// first entry and what it writes (state changes not drained yet).
    fn apply_batch(
        &mut self,
        writes: &[Write],
        chains: &[Range<usize>],
        now: LogTime,
    ) -> Result<(Vec<Outcome>, Option<Built>), LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned);
        }
        if writes.len() > BATCH_WRITES_MAX {
            return Err(LogError::BatchTooLarge);
        }
        check_chains(chains, writes.len())?;
        // The records the batch reads by key, read from the store together beforehand (a
        // failure here applied nothing: the log stays usable).
        self.state
            .prefetch(writes.iter().map(|w| (&w.id, &w.kind)))
            .map_err(|e| LogError::State(e.into()))?;
        let start = self.state.size();
        let mut batch = CommitBatch::default();
        let mut outcomes = Vec::with_capacity(writes.len());
        let mut chains = chains.iter().peekable();
        while outcomes.len() < writes.len() {
            let i = outcomes.len();
            let applied = match chains.next_if(|c| c.start == i) {
                Some(c) => self.apply_chain(&writes[c.clone()], now, &mut batch),
                None => self
                    .apply_write(&writes[i], now, &mut batch)
                    .map(|o| vec![o]),
            };
            match applied {
                Ok(o) => outcomes.extend(o),
                Err(e) => {
                    self.poisoned = true;
                    return Err(e);
                }
            }
        }
        if batch.entries.is_empty() {
            // Nothing to commit (every write answered `existing` or was refused): what was
            // read ahead goes now, as it would with the batch's changes.
            self.state.drop_read_ahead();
            return Ok((outcomes, None));
        }
        Ok((outcomes, Some((start, batch))))
    }

    /// Applies one write on top of the batch being built: its outcome, and on success its
    /// entry (and the tier change an earning makes due) added to `batch`. A [`LogError`]
    /// leaves the state unusable (the caller poisons the log).
    fn apply_write(
        &mut self,
        w: &Write,
        now: LogTime,
        batch: &mut CommitBatch,
    ) -> Result<Outcome, LogError> {
        if let Some(r) = self.state.id_record(&w.id).map_err(LogError::State)? {
            return Ok(if r.intent == w.kind.intent_digest() {
                Outcome::Existing(r.index.get())
            } else {
                Outcome::Refused(WriteError::IdConflict {
                    id: w.id.clone(),
                    index: r.index.get(),
                })
            });
        }
        let index = self.state.size();
        let entry = Entry {
            time: self.next_time(now),
            id: w.id.clone(),
            kind: w.kind.clone(),
        };
        // Every reader refuses an entry above the limit (spec/protocol.md §2), so the log
        // must never hold one: check before the state machine sees it.
        let bytes = entry.to_bytes();
        if bytes.len() > ENTRY_BYTES_MAX {
            return Ok(Outcome::Refused(WriteError::TooLarge {
                size: bytes.len(),
                max: ENTRY_BYTES_MAX,
            }));
        }
        match apply_one(&mut self.state, &entry, bytes, batch, true) {
            Ok(()) => {}
            Err(ApplyError::Refused(e)) => return Ok(Outcome::Refused(e.into())),
            Err(ApplyError::Log(e)) => return Err(e),
        }
        // An earning that lifts the member's tier is followed by the tier change in the
        // same commit (spec/protocol.md §4.6: upgrade at once), so that no read or
        // attestation after the earn's answer sees the old tier.
        if let EntryKind::Earn(e) = &w.kind {
            let at = self.next_time(now);
            let due = self
                .state
                .tier_change_due(&e.member, at)
                .map_err(LogError::State)?;
            if let Some(change) = due {
                let entry = Entry {
                    time: at,
                    id: format!("sys.tier.{index}")
                        .parse()
                        .expect("system ids are valid entry ids"),
                    kind: EntryKind::TierChange(change),
                };
                let bytes = entry.to_bytes();
                match apply_one(&mut self.state, &entry, bytes, batch, false) {
                    Ok(()) | Err(ApplyError::Refused(_)) => {}
                    Err(ApplyError::Log(e)) => return Err(e),
                }
            }
        }
        Ok(Outcome::Appended(index))
    }

    /// Applies a linked chain of writes all or none (see [`Log::append_linked_with`]), under a
    /// savepoint of the state: the cost of undoing it is that of the chain, not of the state.
    fn apply_chain(
        &mut self,
        chain: &[Write],
        now: LogTime,
        batch: &mut CommitBatch,
    ) -> Result<Vec<Outcome>, LogError> {
        if chain.len() > LINKED_WRITES_MAX {
            let refused = WriteError::ChainTooLong {
                len: chain.len(),
                max: LINKED_WRITES_MAX,
            };
            return Ok(vec![Outcome::Refused(refused); chain.len()]);
        }
        let (entries, history) = (batch.entries.len(), batch.history.len());
        self.state.savepoint();
        let mut outcomes = Vec::with_capacity(chain.len());
        for w in chain {
            let outcome = match self.apply_write(w, now, batch) {
                Ok(o) => o,
                Err(e) => {
                    self.state.rollback_to_savepoint();
                    return Err(e);
                }
            };
            if let Outcome::Refused(e) = outcome {
                self.state.rollback_to_savepoint();
                batch.entries.truncate(entries);
                batch.history.truncate(history);
                let failed = Outcome::Refused(WriteError::LinkedWriteFailed {
                    refused: w.id.clone(),
                });
                let mut all = vec![failed; chain.len()];
                all[outcomes.len()] = Outcome::Refused(e);
                return Ok(all);
            }
            outcomes.push(outcome);
        }
        self.state.release_savepoint();
        Ok(outcomes)
    }

    /// Commits the entries of `batch` (the log was `start` entries long before them) with
    /// their subtree hashes and the state's changes as one synced write, then stores and uses
    /// the checkpoint covering them; `gate` is asked before and after. An error leaves the
    /// log's memory ahead of its disk (the caller poisons it).
    fn commit(
        &mut self,
        start: u64,
        batch: CommitBatch,
        gate: &mut dyn CommitGate,
    ) -> Result<(), LogError> {
        let staged = self.prepare(start, batch)?;
        let prepared = Prepared {
            start,
            entries: &staged.batch.entries,
            size: staged.size,
            root: staged.checkpoint.root,
            note: staged.note.clone(),
        };
        gate.before_commit(&prepared).map_err(LogError::Fenced)?;
        // The checkpoint is written with the batch, so it is durable exactly when the batch is.
        self.store.commit(&staged.batch)?;
        gate.after_commit(&prepared).map_err(LogError::Fenced)?;
        self.durable = staged.size;
        self.checkpoint = staged.checkpoint;
        self.checkpoint_note = staged.note;
        Ok(())
    }

    /// Hashes the entries of `batch` (the log was `start` entries long before them) into the
    /// tree, drains the state's changes into it and signs the checkpoint covering it, which
    /// the batch also carries (to be stored with it).
    fn prepare(&mut self, start: u64, mut batch: CommitBatch) -> Result<Staged, LogError> {
        let size = self.state.size();
        debug_assert_eq!(size, start + batch.entries.len() as u64);
        let mut pending = PendingHashes::new(&*self.staging, start);
        for (_, bytes) in &batch.entries {
            pending.push(merkle::leaf_hash(bytes))?;
        }
        let root = pending.root()?;
        batch.hashes = pending.into_writes();
        batch.state = self.state.take_changes().into();
        let (checkpoint, note) = self.note_for(size, root)?;
        batch.checkpoint = Some((size, note.clone()));
        Ok(Staged {
            batch,
            start,
            size,
            checkpoint,
            note,
        })
    }

    /// A receipt for the entry at `index` against the latest checkpoint.
    pub fn receipt(&self, index: u64) -> Result<Receipt, LogError> {
        receipt_from_store(
            &self.store,
            index,
            self.checkpoint.size,
            &self.checkpoint_note,
        )
    }

    /// Replays the whole stored log from index 0 and checks that it yields exactly the live
    /// state and the checkpoint's root. Costs a full read; for audits and tests.
    pub fn verify_replay(&self) -> Result<(), LogError> {
        let mut state = State::for_replay();
        let mut tree = MemoryTree::new();
        let size = self.state.size();
        let mut i = 0;
        while i < size {
            let page = self.store.entries(i, size)?;
            if page.is_empty() {
                return Err(LogError::NoSuchEntry(i));
            }
            for bytes in page {
                let entry = Entry::from_bytes(&bytes)
                    .map_err(|e| LogError::Inconsistent(format!("entry {i}: {e}")))?;
                state
                    .apply(LogIndex::new(i).expect("u64"), &entry)
                    .map_err(|e| LogError::Inconsistent(format!("entry {i} replays: {e}")))?;
                tree.push(&bytes)?;
                i += 1;
            }
        }
        state
            .check_invariants()
            .map_err(|v| LogError::Inconsistent(v.to_string()))?;
        if state != self.state {
            return Err(LogError::Inconsistent(
                "replay differs from the live state".into(),
            ));
        }
        if tree.root()? != self.checkpoint.root || self.checkpoint.size != size {
            return Err(LogError::Inconsistent(
                "replayed tree differs from the checkpoint".into(),
            ));
        }
        Ok(())
    }
}

/// A receipt for entry `index` from any store, against a checkpoint of size `size`.
pub fn receipt_from_store(
    store: &Store,
    index: u64,
    size: u64,
    checkpoint_note: &str,
) -> Result<Receipt, LogError> {
    if index >= size {
        return Err(LogError::NoSuchEntry(index));
    }
    let bytes = store.entry(index)?.ok_or(LogError::NoSuchEntry(index))?;
    let entry = String::from_utf8(bytes)
        .map_err(|_| LogError::Inconsistent(format!("entry {index} is not UTF-8")))?;
    let proof = merkle::inclusion_proof(index, size, store)?;
    Ok(Receipt {
        index,
        entry,
        inclusion_proof: proof.iter().map(hex32).collect(),
        checkpoint: checkpoint_note.to_owned(),
    })
}

/// A hash in lowercase hex, written through a fixed buffer (`hex::encode` goes char by char
/// through an iterator: 3 % of the HTTP workers' time, one receipt's proof being about 20
/// hashes).
fn hex32(hash: &Hash) -> String {
    let mut buf = [0u8; 64];
    hex::encode_to_slice(hash, &mut buf).expect("64 hex digits for 32 bytes");
    String::from_utf8(buf.to_vec()).expect("hex digits are ASCII")
}
