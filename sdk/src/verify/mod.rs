//! The auditor's verification of a whole log, from public data only.
//!
//! [`verify_log`] streams every entry and every checkpoint of a node and checks, with nothing
//! but the pinned log key:
//! - every checkpoint's signature (C2SP signed note by the pinned key, origin = key name);
//! - that the entries, hashed into an RFC 6962 tree, give exactly the root of every checkpoint
//!   at its size. Since all checkpoints are roots of *one* recomputed tree, this also proves
//!   every checkpoint consistent with every other;
//! - that every entry is canonical ([`ledger::entry::Entry::from_bytes`]), that log times strictly increase,
//!   and that replaying the entries in order through [`State::apply`] succeeds and keeps
//!   [`State::check_invariants`] (at the end, and every [`VerifyOptions::invariants_every`]
//!   entries when asked);
//! - a consistency proof served by the node between the resumed-from (or first non-empty)
//!   checkpoint and the latest, so that the node's proof service is checked too;
//! - with a witness policy ([`VerifyOptions::witness_policy`]): that the node's latest
//!   cosigned checkpoint (`GET /v1/checkpoint/cosigned`, spec/federation.md §4) is signed by
//!   the pinned key and cosigned by a quorum of the policy's witnesses, and that its root is
//!   the recomputed root at its size (or, when it is older than a resumed audit, that it is
//!   consistent with the latest). Only then does the log count as verified; the summary says
//!   up to which size it is witnessed.
//!
//! How it runs ([`pipeline`]): C2SP entry bundles are fetched ahead with bounded concurrency,
//! framed, hashed and decoded on a pool of worker threads (one per core), and replayed in
//! order by the calling task; the checkpoint list is fetched ahead and its signatures checked
//! on the same pool. The tree is kept in compact form ([`Frontier`]), and the leaves since the
//! last point proven part of the latest checkpoint (at most [`PROVE_EVERY`]), so memory does
//! not grow with the log; with a [`ReplayStore`] the state lives in the caller's store too.
//!
//! Resuming, two ways:
//! - **an audit that resumes** ([`ReplayStore::resume`], `loyalty verify --state DIR`): the
//!   replayed state and an [`AuditPoint`] (size, compact tree, latest checkpoint seen) are
//!   saved together as the run goes. The next run checks the new latest checkpoint against
//!   the one seen (same size: same root; larger: the node's consistency proof; smaller: the
//!   log shrank) and then fetches, checks and replays only the new entries;
//! - from a saved checkpoint note only ([`VerifyOptions::resume_from`]): there is no state,
//!   so the log is replayed from index 0, and the run proves that it extends the saved
//!   checkpoint (the recomputed root at the saved size must equal the saved root).
//!
//! A log that shrank, or whose prefix changed, is reported as a failure.
//!
//! On failure the error names the first bad index: for an entry, its index; for a
//! checkpoint, its size (the checkpoint is what the log claims right before that index).
//! When entries do not match a checkpoint's root, the first differing entry is found by
//! binary search with consistency proofs against the latest checkpoint, from the last point
//! proven part of it; each proof that verifies proves a prefix of the served entries part of
//! the signed log.
//!
//! The replay is CPU-bound and runs on the calling task; call it from a task that may
//! block, or on a runtime with spare workers.

mod frontier;
pub mod pipeline;
mod point;

#[cfg(feature = "disk")]
pub mod disk;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use ledger::checkpoint::{open_checkpoint, Checkpoint, CheckpointError, NoteVerifier, SignedNote};
use ledger::entry::{Entry, EntryError};
use ledger::merkle::{verify_consistency, Hash, MerkleError};
use ledger::state::{InvariantViolation, State, StateError};
use ledger::types::{AccountId, LogIndex, LogTime};
use ledger::witness::{verify_cosigned_checkpoint, WitnessPolicy};

use crate::client::Client;
use crate::error::Error;

pub use frontier::Frontier;
use pipeline::{CheckpointStream, EntryStream, ListedCheckpoint, Pool};
pub use point::{AuditPoint, PointError, AUDIT_POINT_V1};

/// Default number of entries between two progress reports.
pub const PROGRESS_EVERY_DEFAULT: u64 = 10_000;
/// Default number of entries between two saves of a resumable audit's state.
pub const FLUSH_EVERY_DEFAULT: u64 = 65_536;
/// Most entries replayed before they are proven part of the latest signed checkpoint (a
/// consistency proof is asked for then): bounds the leaves kept to locate a bad entry.
pub const PROVE_EVERY: u64 = 65_536;
/// Most consistency proofs fetched to locate the first bad entry (enough for 2^64 entries).
const LOCATE_PROOFS_MAX: u32 = 70;

/// How far a verification run has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Entries verified and replayed so far (those of earlier runs included).
    pub entries_verified: u64,
    /// Entries to verify (the latest checkpoint's size).
    pub entries_total: u64,
    /// Entries verified by earlier runs, where this one resumed.
    pub entries_at_start: u64,
    /// Signed checkpoints verified so far.
    pub checkpoints_checked: u64,
    /// Time since the run began.
    pub elapsed: Duration,
}

/// A progress callback of [`verify_log`].
pub type ProgressFn = Box<dyn FnMut(&Progress) + Send>;

/// Writes a replay's changed records (`(key, None)`: delete) and the point they bring the
/// audit to into its store, atomically and durably.
pub type FlushFn =
    Box<dyn FnMut(Vec<(Vec<u8>, Option<Vec<u8>>)>, &AuditPoint) -> Result<(), String> + Send>;

/// Where the replay keeps its state when it must not be held in memory or must outlive the
/// run: a [`State`] over a store of the caller's (`State::open` over a RocksDB directory,
/// `loyalty verify --state`), and how its changed records reach that store.
pub struct ReplayStore {
    /// The replay's state, over the caller's store: empty, or replayed to `resume`'s size.
    pub state: State,
    /// Writes changed records (`None`: delete) with the audit's point into the store the
    /// state reads, as one atomic, durable write.
    pub flush: FlushFn,
    /// Entries between two flushes (at least 1): the records held in memory are those the
    /// entries since the last flush changed. A flush happens at a point proven part of the
    /// latest checkpoint, so a point is never saved for entries not proven.
    pub flush_every: u64,
    /// The point saved with `state` by an earlier run: verify and replay only what follows.
    pub resume: Option<AuditPoint>,
    /// Called once after the last flush of a successful run (a disk store flushes its
    /// memtables there, so that the next run does not replay a write-ahead log at open).
    pub close: Option<CloseFn>,
}

/// See [`ReplayStore::close`].
pub type CloseFn = Box<dyn FnOnce() -> Result<(), String> + Send>;

/// Options of [`verify_log`].
pub struct VerifyOptions {
    /// A checkpoint note saved by an earlier run; the log must extend it.
    pub resume_from: Option<String>,
    /// Called every `progress_every` entries and once at the end.
    pub progress: Option<ProgressFn>,
    /// Entries between two progress reports (at least 1).
    pub progress_every: u64,
    /// Entries between two full invariant checks, each of which reads every record of the
    /// state; 0: only at the end of the run.
    pub invariants_every: u64,
    /// Whether to check every invariant at the end of the run (reads every record: for a
    /// resumed audit of a large state, this costs more than the new entries).
    pub invariants_at_end: bool,
    /// Worker threads that hash and decode entries and verify signatures; 0: one per core.
    pub workers: usize,
    /// Witnesses the log must be cosigned by: when set, the node's latest cosigned checkpoint
    /// must meet it (see the module documentation). Its `log` key must be the pinned key.
    pub witness_policy: Option<WitnessPolicy>,
    /// Replay into this store instead of memory, for logs whose state is larger than memory,
    /// and to resume from the point an earlier run saved there.
    pub replay_store: Option<ReplayStore>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            resume_from: None,
            progress: None,
            progress_every: PROGRESS_EVERY_DEFAULT,
            invariants_every: 0,
            invariants_at_end: true,
            workers: 0,
            witness_policy: None,
            replay_store: None,
        }
    }
}

impl fmt::Debug for VerifyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyOptions")
            .field("resume_from", &self.resume_from.is_some())
            .field("progress", &self.progress.is_some())
            .field("progress_every", &self.progress_every)
            .field("invariants_every", &self.invariants_every)
            .field("invariants_at_end", &self.invariants_at_end)
            .field("workers", &self.workers)
            .field(
                "witness_policy",
                &self
                    .witness_policy
                    .as_ref()
                    .map(|p| (p.witnesses.len(), p.quorum)),
            )
            .field("replay_store", &self.replay_store.is_some())
            .finish()
    }
}

/// What a successful verification established.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Entries verified and replayed (the latest checkpoint's size), earlier runs included.
    pub entries: u64,
    /// Entries this run fetched, checked and replayed.
    pub entries_replayed: u64,
    /// Signed checkpoints this run verified (listed ones, the latest, the saved one).
    pub checkpoints_checked: u64,
    /// Members in the replayed state.
    pub members: usize,
    /// The balance of every system account (`issued`, `redeemed`, `held`, ...) after the
    /// replay; with the members' balances they sum to zero.
    pub system_balances: BTreeMap<AccountId, i128>,
    /// How long the run took.
    pub elapsed: Duration,
    /// The latest checkpoint, verified.
    pub checkpoint: Checkpoint,
    /// The latest checkpoint's signed note: save it to resume from it next time.
    pub checkpoint_note: String,
    /// The size the run resumed from (a saved checkpoint's, or a saved audit's), if any.
    pub resumed_from: Option<u64>,
    /// With a witness policy: the cosigned checkpoint that met it.
    pub witnessed: Option<Witnessed>,
}

/// The cosigned checkpoint that met the witness policy of a [`verify_log`] run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witnessed {
    /// Its size: the log is witnessed up to here (the latest checkpoint may be larger).
    pub size: u64,
    /// The key names of the policy's witnesses that cosigned it, in policy order.
    pub cosigners: Vec<String>,
    /// The note, with its cosignatures.
    pub note: String,
}

/// Why a log fails verification at some index.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A checkpoint is malformed or not validly signed by the pinned key.
    #[error("the checkpoint of size {size} does not verify: {error}")]
    CheckpointSignature {
        /// The checkpoint's (claimed) size.
        size: u64,
        /// Why.
        error: CheckpointError,
    },
    /// The node's list of checkpoints contradicts itself.
    #[error("the checkpoint list is inconsistent: {0}")]
    CheckpointListing(String),
    /// The entries are in the latest signed tree but a signed checkpoint of this size has
    /// another root: the node signed two different histories.
    #[error("the signed checkpoint of size {size} does not match the log's entries")]
    RootMismatch {
        /// The checkpoint's size.
        size: u64,
    },
    /// The log no longer has the prefix a previous run verified and saved.
    #[error("the log no longer matches the saved checkpoint of size {size}: history was rewritten or the node equivocates")]
    SavedCheckpointMismatch {
        /// The saved checkpoint's size.
        size: u64,
    },
    /// The entry served at this index is not the one the signed log holds.
    #[error("the entry served is not the one the signed checkpoint of size {size} commits to")]
    NotInSignedTree {
        /// The size of the checkpoint the entry was checked against (the latest).
        size: u64,
    },
    /// The node does not serve an entry its checkpoint covers.
    #[error("the node does not serve this entry")]
    MissingEntry,
    /// The node served another index in this one's place.
    #[error("the node served entry {got} in this place")]
    UnexpectedIndex {
        /// The index it served.
        got: u64,
    },
    /// The entry's bytes are not a canonical entry.
    #[error("the entry does not decode: {0}")]
    Decode(EntryError),
    /// Log times must strictly increase.
    #[error("log time {got} is not after the previous entry's {previous}")]
    TimeNotIncreasing {
        /// The previous entry's time.
        previous: LogTime,
        /// This entry's time.
        got: LogTime,
    },
    /// The state machine refuses the entry.
    #[error("the entry does not replay: {0}")]
    Replay(StateError),
    /// An accounting invariant is broken after replaying up to this index.
    #[error(transparent)]
    Invariant(InvariantViolation),
    /// The latest checkpoint is smaller than the saved one.
    #[error("the log shrank: the saved checkpoint has size {saved}, the latest {latest}")]
    Rollback {
        /// The saved size.
        saved: u64,
        /// The latest size.
        latest: u64,
    },
    /// The node's consistency proof does not verify.
    #[error("the node's consistency proof from size {old} to {new} does not verify: {error}")]
    ConsistencyProof {
        /// The old size.
        old: u64,
        /// The new size.
        new: u64,
        /// Why.
        error: MerkleError,
    },
    /// The recomputed tree cannot grow (more than 2^64 entries).
    #[error("merkle: {0}")]
    Merkle(MerkleError),
}

impl Failure {
    /// What kind of failure this is, in a monitor's words: `fork` (two signed histories, or
    /// a log that no longer extends what was verified), `shrink`, `bad_entry` (an entry that
    /// is not the signed one, not canonical, or not served), `replay_mismatch` (the state
    /// machine refuses an entry or an invariant breaks), `bad_checkpoint` (a checkpoint that
    /// does not verify or a list that contradicts itself).
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::RootMismatch { .. }
            | Failure::SavedCheckpointMismatch { .. }
            | Failure::ConsistencyProof { .. } => "fork",
            Failure::Rollback { .. } => "shrink",
            Failure::NotInSignedTree { .. }
            | Failure::MissingEntry
            | Failure::UnexpectedIndex { .. }
            | Failure::Decode(_)
            | Failure::TimeNotIncreasing { .. }
            | Failure::Merkle(_) => "bad_entry",
            Failure::Replay(_) | Failure::Invariant(_) => "replay_mismatch",
            Failure::CheckpointSignature { .. } | Failure::CheckpointListing(_) => "bad_checkpoint",
        }
    }
}

/// Why [`verify_log`] did not produce a [`Summary`].
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The log is invalid; `index` is the first bad index.
    #[error("the log fails verification at index {index}: {reason}")]
    Invalid {
        /// The first index at which the log fails.
        index: u64,
        /// Why.
        reason: Failure,
    },
    /// The saved checkpoint to resume from is malformed or not signed by the pinned key.
    #[error("the saved checkpoint is not usable: {0}")]
    SavedCheckpoint(CheckpointError),
    /// The saved audit to resume from does not fit the pinned key or its own state.
    #[error(transparent)]
    SavedPoint(#[from] PointError),
    /// The node's latest cosigned checkpoint does not meet the witness policy (too few
    /// cosignatures, or one that does not verify): the log is not verified.
    #[error("the log is not witnessed as the policy requires: {0}")]
    NotWitnessed(CheckpointError),
    /// The node could not be asked (network, HTTP error, undecodable answer).
    #[error("fetching from the node failed: {0}")]
    Node(#[from] Error),
    /// The options are invalid.
    #[error("invalid options: {0}")]
    Options(String),
    /// The replay's own store ([`VerifyOptions::replay_store`]) failed: nothing is known of
    /// the log past the entries replayed.
    #[error("the replay's store failed: {0}")]
    Storage(String),
}

impl VerifyError {
    /// The first bad index, when the log itself is invalid.
    pub fn first_bad_index(&self) -> Option<u64> {
        match self {
            VerifyError::Invalid { index, .. } => Some(*index),
            _ => None,
        }
    }
}

fn invalid(index: u64, reason: Failure) -> VerifyError {
    VerifyError::Invalid { index, reason }
}

/// The size a note claims, read without verifying it (for naming a bad checkpoint).
fn claimed_size(note: &str) -> Option<u64> {
    let n = SignedNote::parse(note).ok()?;
    Some(Checkpoint::parse_text(&n.text).ok()?.size)
}

/// A checkpoint checked when the tree reaches its size, besides the listed ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extra {
    /// The checkpoint saved by an earlier run (`resume_from`).
    Saved,
    /// The cosigned checkpoint that met the witness policy.
    Cosigned,
}

struct Run<'a> {
    client: &'a Client,
    latest: Checkpoint,
    /// The tree of the entries replayed so far.
    tree: Frontier,
    /// The tree at the last point proven part of the latest checkpoint.
    proven: Frontier,
    /// The leaves since `proven`, to locate a bad entry.
    since_proven: Vec<Hash>,
    state: State,
    checked: u64,
    first_non_empty: Option<Checkpoint>,
    /// The next listed checkpoint not yet reached.
    next_listed: Option<ListedCheckpoint>,
    /// The largest size listed so far.
    last_listed: Option<u64>,
    /// Whether the checkpoint list has ended.
    listed_done: bool,
    /// Checkpoints to check at their sizes besides the listed ones, by size.
    extras: Vec<(Checkpoint, Extra)>,
}

impl Run<'_> {
    /// Over a store (`--state`), reads the records `entries` will read together beforehand;
    /// in memory it does nothing. A failure is the store's, as in the replay.
    fn prefetch(
        &mut self,
        entries: &[Result<(Entry, Hash), EntryError>],
    ) -> Result<(), VerifyError> {
        let writes = entries
            .iter()
            .filter_map(|e| e.as_ref().ok())
            .map(|(e, _)| (&e.id, &e.kind));
        self.state
            .prefetch(writes)
            .map_err(|e| VerifyError::Storage(e.to_string()))
    }

    fn push(&mut self, index: u64, leaf: Hash) -> Result<(), VerifyError> {
        self.tree
            .push(leaf)
            .map_err(|e| invalid(index, Failure::Merkle(e)))?;
        self.since_proven.push(leaf);
        Ok(())
    }

    fn mark_proven(&mut self) {
        self.proven = self.tree.clone();
        self.since_proven.clear();
    }

    /// The root of the first `m` leaves, `proven.size() <= m <= tree.size()`.
    fn root_at(&self, m: u64) -> Hash {
        if m == self.tree.size() {
            return self.tree.root();
        }
        let mut f = self.proven.clone();
        for leaf in &self.since_proven[..(m - self.proven.size()) as usize] {
            f.push(*leaf).expect("a prefix of a tree that grew");
        }
        f.root()
    }

    /// Whether the first `m` recomputed leaves are proven a prefix of the latest tree.
    async fn prefix_proven(&self, m: u64) -> Result<bool, Error> {
        if m <= self.proven.size() {
            return Ok(true);
        }
        let root = self.root_at(m);
        if m == self.latest.size {
            return Ok(root == self.latest.root);
        }
        let proof = self.client.consistency_proof(m, self.latest.size).await?;
        let hashes: Vec<_> = proof.proof.iter().map(|h| h.0).collect();
        Ok(verify_consistency(m, self.latest.size, &root, &self.latest.root, &hashes).is_ok())
    }

    /// The first of the leaves `0..hi` that is not proven part of the latest signed tree,
    /// or `None` when all are (or the node cannot prove anything).
    async fn first_unproven(&self, hi: u64) -> Option<u64> {
        if self.prefix_proven(hi).await.ok()? {
            return None;
        }
        let (mut good, mut bad) = (self.proven.size(), hi);
        let mut asked = 0;
        while bad - good > 1 && asked < LOCATE_PROOFS_MAX {
            let mid = good + (bad - good) / 2;
            asked += 1;
            if self.prefix_proven(mid).await.ok()? {
                good = mid;
            } else {
                bad = mid;
            }
        }
        Some(good)
    }

    /// Reports a failure found at entry `index`, unless an earlier entry is already not part
    /// of the signed log.
    async fn entry_failure(&self, index: u64, reason: Failure) -> VerifyError {
        let hi = (index + 1).min(self.tree.size());
        if hi <= self.proven.size() {
            return invalid(index, reason);
        }
        match self.first_unproven(hi).await {
            Some(m) if m < index => invalid(
                m,
                Failure::NotInSignedTree {
                    size: self.latest.size,
                },
            ),
            _ => invalid(index, reason),
        }
    }

    /// Reports a checkpoint of size `size` whose root differs from the recomputed one.
    async fn root_failure(&self, size: u64, saved: bool) -> VerifyError {
        match self.first_unproven(size).await {
            Some(m) => invalid(
                m,
                Failure::NotInSignedTree {
                    size: self.latest.size,
                },
            ),
            None if saved => invalid(size, Failure::SavedCheckpointMismatch { size }),
            None => invalid(size, Failure::RootMismatch { size }),
        }
    }

    /// Compares a verified checkpoint with the recomputed tree (whose size it has).
    async fn check_root(&mut self, cp: &Checkpoint, saved: bool) -> Result<(), VerifyError> {
        debug_assert_eq!(cp.size, self.tree.size());
        if self.tree.root() != cp.root {
            return Err(self.root_failure(cp.size, saved).await);
        }
        self.checked += 1;
        if cp.size > 0 && self.first_non_empty.is_none() {
            self.first_non_empty = Some(cp.clone());
        }
        Ok(())
    }

    /// Whether a checkpoint is to be checked at `size` (listed, extra, latest).
    fn due_at(&self, size: u64) -> bool {
        size == self.latest.size
            || (self.next_listed.is_none() && !self.listed_done)
            || self
                .next_listed
                .as_ref()
                .is_some_and(|c| c.listed_size <= size)
            || self.extras.first().is_some_and(|(cp, _)| cp.size == size)
    }

    /// Verifies every checkpoint of size `size` (listed, saved, cosigned, latest).
    async fn check_checkpoints_at(
        &mut self,
        size: u64,
        feed: &mut CheckpointStream,
    ) -> Result<(), VerifyError> {
        loop {
            let item = match self.next_listed.take() {
                Some(item) => item,
                None if self.listed_done => break,
                None => match feed.next().await? {
                    Some(item) => item,
                    None => {
                        self.listed_done = true;
                        break;
                    }
                },
            };
            if let Some(last) = self.last_listed {
                if item.listed_size < last {
                    return Err(invalid(
                        item.listed_size,
                        Failure::CheckpointListing(format!(
                            "size {} is listed after size {last}",
                            item.listed_size
                        )),
                    ));
                }
            }
            if item.listed_size > size {
                self.next_listed = Some(item);
                break;
            }
            self.last_listed = Some(item.listed_size);
            if item.listed_size < size {
                // Sizes are checked to be non-decreasing, so this is unreachable unless the
                // list started below where the run looked; such a checkpoint is skipped.
                continue;
            }
            let cp = match item.checkpoint {
                Ok(cp) => cp,
                Err(error) => {
                    return Err(invalid(size, Failure::CheckpointSignature { size, error }))
                }
            };
            if cp.size != item.listed_size {
                return Err(invalid(
                    size.min(cp.size),
                    Failure::CheckpointListing(format!(
                        "a checkpoint listed as size {} signs size {}",
                        item.listed_size, cp.size
                    )),
                ));
            }
            self.check_root(&cp, false).await?;
        }
        while self.extras.first().is_some_and(|(cp, _)| cp.size == size) {
            let (cp, extra) = self.extras.remove(0);
            self.check_root(&cp, extra == Extra::Saved).await?;
        }
        if size == self.latest.size {
            let latest = self.latest.clone();
            self.check_root(&latest, false).await?;
            self.mark_proven();
        }
        Ok(())
    }

    /// Proves the entries replayed so far part of the latest checkpoint with the node's
    /// consistency proof (or finds the first that is not).
    async fn prove_prefix(&mut self) -> Result<(), VerifyError> {
        let size = self.tree.size();
        if size == self.proven.size() {
            return Ok(());
        }
        if !self.prefix_proven(size).await? {
            let at = self.first_unproven(size).await.unwrap_or(size - 1);
            return Err(invalid(
                at,
                Failure::NotInSignedTree {
                    size: self.latest.size,
                },
            ));
        }
        self.mark_proven();
        Ok(())
    }
}

/// Checks that the checkpoint a resumed audit saw is a prefix of the latest one.
async fn check_extends(
    client: &Client,
    seen: &Checkpoint,
    latest: &Checkpoint,
) -> Result<(), VerifyError> {
    if latest.size < seen.size {
        return Err(invalid(
            latest.size,
            Failure::Rollback {
                saved: seen.size,
                latest: latest.size,
            },
        ));
    }
    if latest.size == seen.size {
        if latest.root != seen.root {
            return Err(invalid(
                seen.size,
                Failure::SavedCheckpointMismatch { size: seen.size },
            ));
        }
        return Ok(());
    }
    if seen.size == 0 {
        return Ok(());
    }
    let proof = client.consistency_proof(seen.size, latest.size).await?;
    let hashes: Vec<_> = proof.proof.iter().map(|h| h.0).collect();
    verify_consistency(seen.size, latest.size, &seen.root, &latest.root, &hashes).map_err(|error| {
        invalid(
            seen.size,
            Failure::ConsistencyProof {
                old: seen.size,
                new: latest.size,
                error,
            },
        )
    })
}

/// Verifies the whole log of the node behind `client` against the pinned log key (or, with
/// a [`ReplayStore::resume`] point, what it added since); see the module documentation for
/// what is checked. Needs a Tokio runtime.
pub async fn verify_log(
    client: &Client,
    pinned_key: &NoteVerifier,
    mut options: VerifyOptions,
) -> Result<Summary, VerifyError> {
    let started = Instant::now();
    check_options(&options, pinned_key)?;
    let resume = options.replay_store.as_ref().and_then(|r| r.resume.clone());
    let progress_every = options.progress_every.max(1);
    let saved = match &options.resume_from {
        Some(note) => Some(
            open_checkpoint(note, pinned_key)
                .map_err(VerifyError::SavedCheckpoint)?
                .0,
        ),
        None => None,
    };
    let (tree, seen) = match &resume {
        Some(point) => {
            let (tree, seen) = point.open(pinned_key)?;
            (tree, Some(seen))
        }
        None => (Frontier::new(), None),
    };
    let start = tree.size();
    let state = match options.replay_store.as_mut() {
        Some(r) => std::mem::take(&mut r.state),
        None => State::for_replay(),
    };
    if state.size() != start {
        return Err(VerifyError::Storage(format!(
            "the replay's state holds {} entries but the saved point {start}",
            state.size()
        )));
    }
    // Fetched before the latest checkpoint, so that an honest node's is never larger.
    let cosigned = match &options.witness_policy {
        Some(policy) => Some(fetch_cosigned(client, pinned_key, policy).await?),
        None => None,
    };
    let latest_note = client.checkpoint_note().await?;
    let latest = match open_checkpoint(&latest_note, pinned_key) {
        Ok((cp, _)) => cp,
        Err(error) => {
            let size = claimed_size(&latest_note).unwrap_or(0);
            return Err(invalid(size, Failure::CheckpointSignature { size, error }));
        }
    };
    let target = latest.size;
    if let Some(s) = &saved {
        if s.size > target {
            return Err(invalid(
                target,
                Failure::Rollback {
                    saved: s.size,
                    latest: target,
                },
            ));
        }
    }
    if let Some(seen) = &seen {
        check_extends(client, seen, &latest).await?;
    }
    let mut extras: Vec<(Checkpoint, Extra)> = Vec::new();
    if let Some(s) = &saved {
        extras.push((s.clone(), Extra::Saved));
    }
    let witnessed = match cosigned {
        Some((cp, witnessed)) => {
            if cp.size > target {
                return Err(invalid(
                    target,
                    Failure::CheckpointListing(format!(
                        "the cosigned checkpoint has size {}, beyond the latest {target}",
                        cp.size
                    )),
                ));
            }
            if cp.size > start || start == 0 {
                extras.push((cp, Extra::Cosigned));
            } else {
                // Older than what an earlier run verified: it must be a prefix of the latest.
                check_extends(client, &cp, &latest)
                    .await
                    .map_err(|e| match e {
                        VerifyError::Invalid { .. } => {
                            invalid(cp.size, Failure::RootMismatch { size: cp.size })
                        }
                        other => other,
                    })?;
            }
            Some(witnessed)
        }
        None => None,
    };
    extras.sort_by_key(|(cp, _)| cp.size);
    let pool = match options.workers {
        0 => Pool::per_core(),
        n => Pool::new(n),
    };
    let flush_every = options
        .replay_store
        .as_ref()
        .map_or(u64::MAX, |r| r.flush_every.max(1));
    let prove_every = PROVE_EVERY.min(flush_every);
    let mut run = Run {
        client,
        latest: latest.clone(),
        proven: tree.clone(),
        tree,
        since_proven: Vec::new(),
        state,
        // Counted by `check_root`, the latest and the saved checkpoint included.
        checked: 0,
        first_non_empty: None,
        next_listed: None,
        last_listed: None,
        listed_done: false,
        extras,
    };
    let mut feed = CheckpointStream::start(
        client.clone(),
        pool.clone(),
        pinned_key.clone(),
        (start > 0).then_some(start),
    );
    let mut progress = options.progress.take();
    let mut replay_store = options.replay_store.take();
    let mut report = |run: &Run<'_>, done: u64| {
        if let Some(cb) = progress.as_mut() {
            cb(&Progress {
                entries_verified: done,
                entries_total: target,
                entries_at_start: start,
                checkpoints_checked: run.checked,
                elapsed: started.elapsed(),
            });
        }
    };
    let mut flushed_at = start;
    let flush = |run: &mut Run<'_>,
                 replay_store: &mut Option<ReplayStore>,
                 flushed_at: &mut u64|
     -> Result<(), VerifyError> {
        if let Some(r) = replay_store.as_mut() {
            debug_assert_eq!(run.proven.size(), run.tree.size());
            let point = AuditPoint::new(pinned_key, &run.tree, &latest_note);
            (r.flush)(run.state.take_changes(), &point).map_err(VerifyError::Storage)?;
            *flushed_at = run.tree.size();
        }
        Ok(())
    };

    let mut index = start;
    let mut previous_time: Option<LogTime> = run.state.last_time();
    if start == 0 {
        run.check_checkpoints_at(0, &mut feed).await?;
    }
    let mut entries = EntryStream::start(client.clone(), pool.clone(), start, target);
    while index < target {
        let bundle = match entries.next().await {
            Some(Ok(b)) => b,
            Some(Err(e)) if e.error.status() == Some(404) => {
                return Err(run.entry_failure(e.first, Failure::MissingEntry).await)
            }
            Some(Err(e)) => return Err(e.error.into()),
            None => return Err(run.entry_failure(index, Failure::MissingEntry).await),
        };
        if bundle.start != index {
            return Err(invalid(
                index,
                Failure::UnexpectedIndex { got: bundle.start },
            ));
        }
        let short = bundle.short;
        run.prefetch(&bundle.entries)?;
        for (leaf, decoded) in bundle.leaves.into_iter().zip(bundle.entries) {
            run.push(index, leaf)?;
            let (entry, intent) = match decoded {
                Ok(e) => e,
                Err(e) => return Err(run.entry_failure(index, Failure::Decode(e)).await),
            };
            if let Some(previous) = previous_time {
                if entry.time <= previous {
                    let reason = Failure::TimeNotIncreasing {
                        previous,
                        got: entry.time,
                    };
                    return Err(run.entry_failure(index, reason).await);
                }
            }
            previous_time = Some(entry.time);
            let at = LogIndex::new(index).expect("every u64 is a log index");
            if let Err(e) = run.state.apply_with_intent(at, &entry, &intent) {
                return Err(run.entry_failure(index, Failure::Replay(e)).await);
            }
            index += 1;
            if options.invariants_every > 0 && index % options.invariants_every == 0 {
                if let Err(v) = run.state.check_invariants() {
                    return Err(run.entry_failure(index - 1, Failure::Invariant(v)).await);
                }
            }
            if index % progress_every == 0 {
                report(&run, index);
            }
            if run.due_at(index) {
                run.check_checkpoints_at(index, &mut feed).await?;
            }
            if index < target && run.since_proven.len() as u64 >= prove_every {
                run.prove_prefix().await?;
                if index - flushed_at >= flush_every {
                    flush(&mut run, &mut replay_store, &mut flushed_at)?;
                }
            }
        }
        if short && index < target {
            return Err(run.entry_failure(index, Failure::MissingEntry).await);
        }
    }
    drop(entries);
    drop(feed);
    if options.invariants_at_end {
        if let Err(v) = run.state.check_invariants() {
            return Err(invalid(target.saturating_sub(1), Failure::Invariant(v)));
        }
    }
    // The node's own consistency proof, from the resumed-from (or first non-empty)
    // checkpoint to the latest; a resumed audit had its proof from the checkpoint it saw.
    if seen.is_none() {
        if let Some(old) = saved.clone().or(run.first_non_empty.clone()) {
            if old.size > 0 && old.size < target {
                let proof = client.consistency_proof(old.size, target).await?;
                let hashes: Vec<_> = proof.proof.iter().map(|h| h.0).collect();
                if let Err(error) =
                    verify_consistency(old.size, target, &old.root, &latest.root, &hashes)
                {
                    return Err(invalid(
                        old.size,
                        Failure::ConsistencyProof {
                            old: old.size,
                            new: target,
                            error,
                        },
                    ));
                }
            }
        }
    }
    flush(&mut run, &mut replay_store, &mut flushed_at)?;
    if let Some(close) = replay_store.as_mut().and_then(|r| r.close.take()) {
        close().map_err(VerifyError::Storage)?;
    }
    report(&run, index);
    let summary = Summary {
        entries: target,
        entries_replayed: target - start,
        checkpoints_checked: run.checked,
        members: run.state.member_count() as usize,
        system_balances: run.state.system_accounts().clone(),
        elapsed: started.elapsed(),
        checkpoint: latest,
        checkpoint_note: latest_note,
        resumed_from: saved.map(|s| s.size).or((start > 0).then_some(start)),
        witnessed,
    };
    let state = std::mem::take(&mut run.state);
    if replay_store.is_some() {
        // The state reads the caller's store: it is let go here, so that no thread of ours
        // still closes a database while the caller (a process returning from `main`) exits.
        drop(state);
    } else {
        free_in_background(state);
    }
    Ok(summary)
}

/// Refuses options that contradict each other.
fn check_options(options: &VerifyOptions, pinned_key: &NoteVerifier) -> Result<(), VerifyError> {
    if let Some(p) = &options.witness_policy {
        if &p.log != pinned_key {
            return Err(VerifyError::Options(
                "the witness policy's log key is not the pinned key".into(),
            ));
        }
    }
    let resume = options
        .replay_store
        .as_ref()
        .and_then(|r| r.resume.as_ref());
    if resume.is_some() && options.resume_from.is_some() {
        return Err(VerifyError::Options(
            "resume either from a saved audit or from a saved checkpoint, not both".into(),
        ));
    }
    Ok(())
}

/// Frees a replayed state on a thread of its own, so that the answer does not wait for it: a
/// replay in memory holds a record per id, member, lot and qualifying earning, and freeing
/// tens of millions of them took a twentieth of a 10M-entry audit (profiled). Only for a
/// state in memory: one over a store would close its database on that thread, and a process
/// exiting meanwhile destroys what RocksDB's closing still uses (CI saw `pthread lock:
/// Invalid argument` and an abort when `loyalty monitor --once` returned).
fn free_in_background(state: State) {
    std::thread::spawn(move || drop(state));
}

/// Fetches the node's latest cosigned checkpoint and checks it against the witness policy.
async fn fetch_cosigned(
    client: &Client,
    pinned_key: &NoteVerifier,
    policy: &WitnessPolicy,
) -> Result<(Checkpoint, Witnessed), VerifyError> {
    let c = client.cosigned_checkpoint().await?;
    // A note the log key did not sign is a bad checkpoint; a signed one without the
    // cosignatures the policy asks for is not witnessed.
    if let Err(error) = open_checkpoint(&c.note, pinned_key) {
        let size = claimed_size(&c.note).unwrap_or(c.size);
        return Err(invalid(size, Failure::CheckpointSignature { size, error }));
    }
    let v = verify_cosigned_checkpoint(&c.note, policy).map_err(VerifyError::NotWitnessed)?;
    let witnessed = Witnessed {
        size: v.checkpoint.size,
        cosigners: v
            .cosignatures
            .iter()
            .map(|w| w.witness.name().to_owned())
            .collect(),
        note: c.note,
    };
    Ok((v.checkpoint, witnessed))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::fake_node::federation::witness;
    use crate::fake_node::{sample_entries, serve, sign_at, signer, FakeLog};
    use ledger::checkpoint::{NoteSignature, NoteSigner};
    use ledger::entry::{Earn, Entry, EntryKind, Refund};
    use ledger::merkle::MemoryTree;
    use ledger::types::Points;

    const SIZES: &[u64] = &[0, 3, 5, 8, 10];

    fn honest() -> FakeLog {
        FakeLog::new(&signer(), &sample_entries(), SIZES)
    }

    async fn run(
        log: FakeLog,
        options: VerifyOptions,
    ) -> (Result<Summary, VerifyError>, Arc<FakeLog>) {
        let log = Arc::new(log);
        let url = serve(log.clone().router()).await;
        let client = Client::new(&url, None).unwrap();
        (
            verify_log(&client, &signer().verifier(), options).await,
            log,
        )
    }

    fn text(e: &Entry) -> String {
        String::from_utf8(e.to_bytes()).unwrap()
    }

    #[tokio::test]
    async fn an_honest_log_verifies() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let options = VerifyOptions {
            progress: Some(Box::new(move |p: &Progress| {
                s.lock().unwrap().push(p.entries_verified)
            })),
            progress_every: 4,
            invariants_every: 2,
            ..VerifyOptions::default()
        };
        let (summary, log) = run(honest(), options).await;
        let summary = summary.unwrap();
        assert_eq!(summary.entries, 10);
        // Five listed checkpoints and the latest.
        assert_eq!(summary.checkpoints_checked, 6);
        assert_eq!(summary.members, 3);
        assert_eq!(summary.system_balances[&AccountId::Issued], -225);
        assert_eq!(summary.checkpoint.size, 10);
        assert_eq!(summary.resumed_from, None);
        assert_eq!(*seen.lock().unwrap(), vec![4, 8, 10]);
        // The consistency proof from the first non-empty checkpoint (size 3) was checked.
        assert_eq!(log.consistency_requests.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_empty_log_verifies() {
        let (summary, _) = run(FakeLog::new(&signer(), &[], &[0]), VerifyOptions::default()).await;
        let summary = summary.unwrap();
        assert_eq!(summary.entries, 0);
        assert_eq!(summary.checkpoints_checked, 2);
    }

    #[tokio::test]
    async fn a_tampered_entry_is_found_at_its_index() {
        // Entry 1 earns 60 instead of 50: it still decodes and replays, but the root of the
        // checkpoint of size 3 no longer matches; the first bad index is 1.
        let mut log = honest();
        let mut e = sample_entries()[1].clone();
        e.kind = EntryKind::Earn(Earn {
            member: "m2".parse().unwrap(),
            points: Points::new(60).unwrap(),
            qualifying: true,
        });
        log.served[1] = text(&e);
        let (result, _) = run(log, VerifyOptions::default()).await;
        let err = result.unwrap_err();
        assert_eq!(err.first_bad_index(), Some(1), "{err}");
        assert!(matches!(
            err,
            VerifyError::Invalid {
                reason: Failure::NotInSignedTree { size: 10 },
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_tampered_entry_that_breaks_replay_later_is_still_found_at_its_index() {
        // Entry 6 refunds 10 of redemption e-2; served as a refund of 40, more than the 30
        // redeemed, it fails replay at once. A tampered entry 2 (redeem 90) makes the hold
        // at 3 fail replay; the first bad index is still 2.
        let mut log = honest();
        let mut e = sample_entries()[6].clone();
        e.kind = EntryKind::Refund(Refund {
            redemption: "e-2".parse().unwrap(),
            points: Points::new(40).unwrap(),
        });
        log.served[6] = text(&e);
        let (result, _) = run(log, VerifyOptions::default()).await;
        assert_eq!(result.unwrap_err().first_bad_index(), Some(6));

        let mut log = honest();
        let mut e = sample_entries()[2].clone();
        e.kind = EntryKind::Redeem(ledger::entry::Redeem {
            member: "m1".parse().unwrap(),
            points: Points::new(90).unwrap(),
        });
        log.served[2] = text(&e);
        let (result, _) = run(log, VerifyOptions::default()).await;
        let err = result.unwrap_err();
        assert_eq!(err.first_bad_index(), Some(2), "{err}");
    }

    #[tokio::test]
    async fn a_non_canonical_entry_is_refused_at_its_index() {
        let mut log = honest();
        log.served[4] = log.served[4].replacen("{", "{ ", 1);
        let (result, _) = run(log, VerifyOptions::default()).await;
        let err = result.unwrap_err();
        assert_eq!(err.first_bad_index(), Some(4), "{err}");
        assert!(matches!(
            err,
            VerifyError::Invalid {
                reason: Failure::Decode(_),
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_bad_checkpoint_signature_is_reported_at_its_size() {
        let mut log = honest();
        let s = signer();
        let other = NoteSigner::from_seed(ORIGIN_FOR_TESTS, &[9; 32]).unwrap();
        let note = ledger::checkpoint::SignedNote::parse(&log.checkpoints[2].1).unwrap();
        // The right name and key id, but a signature made by another key.
        let forged = NoteSignature {
            name: s.name().to_owned(),
            key_id: s.key_id(),
            signature: other.sign(&note.text).signature,
        };
        let forged = ledger::checkpoint::SignedNote {
            text: note.text.clone(),
            signatures: vec![forged],
        };
        log.checkpoints[2].1 = forged.to_string();
        let (result, _) = run(log, VerifyOptions::default()).await;
        let err = result.unwrap_err();
        assert_eq!(err.first_bad_index(), Some(5), "{err}");
        assert!(matches!(
            err,
            VerifyError::Invalid {
                reason: Failure::CheckpointSignature { size: 5, .. },
                ..
            }
        ));
    }

    const ORIGIN_FOR_TESTS: &str = crate::fake_node::ORIGIN;

    #[tokio::test]
    async fn a_signed_checkpoint_of_another_history_is_reported() {
        // The node signed a checkpoint of size 5 over different entries (equivocation).
        let mut log = honest();
        let mut fork = sample_entries();
        fork[4].id = "p-forked".parse().unwrap();
        let fork = FakeLog::new(&signer(), &fork, &[5]);
        log.checkpoints[2].1 = fork.checkpoints[0].1.clone();
        let (result, _) = run(log, VerifyOptions::default()).await;
        let err = result.unwrap_err();
        assert_eq!(err.first_bad_index(), Some(5), "{err}");
        assert!(matches!(
            err,
            VerifyError::Invalid {
                reason: Failure::RootMismatch { size: 5 },
                ..
            }
        ));
    }

    #[tokio::test]
    async fn resuming_from_a_saved_checkpoint_proves_consistency() {
        let saved = honest().checkpoints[1].1.clone();
        let options = VerifyOptions {
            resume_from: Some(saved),
            ..VerifyOptions::default()
        };
        let (summary, log) = run(honest(), options).await;
        let summary = summary.unwrap();
        assert_eq!(summary.resumed_from, Some(3));
        assert_eq!(summary.checkpoints_checked, 7);
        assert_eq!(log.consistency_requests.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn resuming_from_a_checkpoint_of_a_rewritten_history_fails() {
        let mut fork = sample_entries();
        fork[1].id = "e-rewritten".parse().unwrap();
        let saved = FakeLog::new(&signer(), &fork, &[3]).checkpoints[0]
            .1
            .clone();
        let options = VerifyOptions {
            resume_from: Some(saved),
            ..VerifyOptions::default()
        };
        let (result, _) = run(honest(), options).await;
        let err = result.unwrap_err();
        assert_eq!(err.first_bad_index(), Some(3), "{err}");
        assert!(matches!(
            err,
            VerifyError::Invalid {
                reason: Failure::SavedCheckpointMismatch { size: 3 },
                ..
            }
        ));
    }

    #[tokio::test]
    async fn resuming_from_a_larger_checkpoint_reports_a_rollback() {
        let mut longer = sample_entries();
        longer.push(Entry {
            time: LogTime::new(2000).unwrap(),
            id: "e-10".parse().unwrap(),
            kind: EntryKind::Earn(Earn {
                member: "m9".parse().unwrap(),
                points: Points::new(1).unwrap(),
                qualifying: true,
            }),
        });
        let saved = FakeLog::new(&signer(), &longer, &[]).latest;
        let options = VerifyOptions {
            resume_from: Some(saved),
            ..VerifyOptions::default()
        };
        let (result, _) = run(honest(), options).await;
        let err = result.unwrap_err();
        assert!(matches!(
            err,
            VerifyError::Invalid {
                index: 10,
                reason: Failure::Rollback {
                    saved: 11,
                    latest: 10
                }
            }
        ));
    }

    #[tokio::test]
    async fn a_saved_checkpoint_signed_by_another_key_is_refused() {
        let other = NoteSigner::from_seed(ORIGIN_FOR_TESTS, &[9; 32]).unwrap();
        let mut tree = MemoryTree::new();
        tree.push(b"x").unwrap();
        let options = VerifyOptions {
            resume_from: Some(sign_at(&other, &tree, 1)),
            ..VerifyOptions::default()
        };
        let (result, _) = run(honest(), options).await;
        assert!(matches!(result, Err(VerifyError::SavedCheckpoint(_))));
    }

    fn witnessed_by(quorum: usize) -> VerifyOptions {
        let policy = crate::federation::witness_policy(
            signer().verifier(),
            &[witness(1).verifier(), witness(2).verifier()],
            quorum,
        )
        .unwrap();
        VerifyOptions {
            witness_policy: Some(policy),
            ..VerifyOptions::default()
        }
    }

    #[tokio::test]
    async fn a_log_cosigned_by_a_quorum_is_witnessed() {
        let mut log = honest();
        log.cosign(&signer(), 8, &[witness(1), witness(2)]);
        let (summary, _) = run(log, witnessed_by(2)).await;
        let summary = summary.unwrap();
        let w = summary.witnessed.unwrap();
        assert_eq!(w.size, 8);
        assert_eq!(
            w.cosigners,
            vec!["example.com/witness-1", "example.com/witness-2"]
        );
        // The cosigned checkpoint counts as one more checked checkpoint.
        assert_eq!(summary.checkpoints_checked, 7);
    }

    #[tokio::test]
    async fn a_log_without_a_quorum_of_cosignatures_is_not_verified() {
        let mut log = honest();
        log.cosign(&signer(), 10, &[witness(1)]);
        let (result, _) = run(log, witnessed_by(2)).await;
        assert!(
            matches!(
                result,
                Err(VerifyError::NotWitnessed(CheckpointError::QuorumNotMet {
                    got: 1,
                    need: 2
                }))
            ),
            "{result:?}"
        );
        // A node that serves no cosigned checkpoint cannot be verified as witnessed.
        let (result, _) = run(honest(), witnessed_by(1)).await;
        assert!(matches!(result, Err(VerifyError::Node(_))), "{result:?}");
    }

    #[tokio::test]
    async fn a_cosigned_checkpoint_of_another_history_is_reported() {
        let mut fork = sample_entries();
        fork[4].id = "p-forked".parse().unwrap();
        let mut forked = FakeLog::new(&signer(), &fork, &[]);
        forked.cosign(&signer(), 5, &[witness(1), witness(2)]);
        let mut log = honest();
        log.cosigned = forked.cosigned.take();
        let (result, _) = run(log, witnessed_by(2)).await;
        let err = result.unwrap_err();
        assert!(
            matches!(
                err,
                VerifyError::Invalid {
                    index: 5,
                    reason: Failure::RootMismatch { size: 5 }
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_witness_policy_for_another_log_is_refused() {
        let other = NoteSigner::from_seed(ORIGIN_FOR_TESTS, &[9; 32]).unwrap();
        let options = VerifyOptions {
            witness_policy: Some(WitnessPolicy {
                log: other.verifier(),
                witnesses: vec![],
                quorum: 0,
            }),
            ..VerifyOptions::default()
        };
        let (result, _) = run(honest(), options).await;
        assert!(matches!(result, Err(VerifyError::Options(_))), "{result:?}");
    }

    #[tokio::test]
    async fn a_node_that_withholds_entries_is_reported() {
        let mut log = honest();
        log.served.truncate(7);
        let (result, _) = run(log, VerifyOptions::default()).await;
        let err = result.unwrap_err();
        assert_eq!(err.first_bad_index(), Some(7), "{err}");
    }

    /// An audit store in memory: the records and the point, as `loyalty verify --state`
    /// keeps them in RocksDB.
    #[derive(Clone, Default)]
    struct Saved {
        records: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>,
        point: Arc<Mutex<Option<AuditPoint>>>,
        flushes: Arc<Mutex<u32>>,
    }

    impl Saved {
        fn store(&self, flush_every: u64) -> ReplayStore {
            let records = self.records.lock().unwrap().clone();
            let state = State::from_records(records).unwrap();
            let me = self.clone();
            ReplayStore {
                state,
                flush: Box::new(move |changes, point| {
                    let mut r = me.records.lock().unwrap();
                    for (k, v) in changes {
                        match v {
                            Some(v) => r.insert(k, v),
                            None => r.remove(&k),
                        };
                    }
                    *me.point.lock().unwrap() = Some(point.clone());
                    *me.flushes.lock().unwrap() += 1;
                    Ok(())
                }),
                flush_every,
                resume: self.point.lock().unwrap().clone(),
                close: None,
            }
        }

        fn size(&self) -> Option<u64> {
            self.point.lock().unwrap().as_ref().map(|p| p.size)
        }
    }

    fn prefix(n: usize, sizes: &[u64]) -> FakeLog {
        FakeLog::new(&signer(), &sample_entries()[..n], sizes)
    }

    fn with_store(saved: &Saved, flush_every: u64) -> VerifyOptions {
        VerifyOptions {
            replay_store: Some(saved.store(flush_every)),
            ..VerifyOptions::default()
        }
    }

    #[tokio::test]
    async fn a_resumed_audit_replays_only_the_new_entries() {
        let saved = Saved::default();
        let (first, _) = run(prefix(6, &[0, 3, 5, 6]), with_store(&saved, 100)).await;
        let first = first.unwrap();
        assert_eq!((first.entries, first.entries_replayed), (6, 6));
        assert_eq!(saved.size(), Some(6));

        // The log grew by four entries: one consistency proof from the checkpoint seen, and
        // only the four new entries fetched, checked and replayed.
        let (second, log) = run(honest(), with_store(&saved, 100)).await;
        let second = second.unwrap();
        assert_eq!((second.entries, second.entries_replayed), (10, 4));
        assert_eq!(second.resumed_from, Some(6));
        assert_eq!(log.consistency_requests.load(Ordering::SeqCst), 1);
        assert_eq!(saved.size(), Some(10));
        // The same state as a replay from scratch.
        let (full, _) = run(honest(), VerifyOptions::default()).await;
        let full = full.unwrap();
        assert_eq!(second.system_balances, full.system_balances);
        assert_eq!(second.members, full.members);

        // Nothing new: nothing replayed, and the state stays as it was.
        let (third, _) = run(honest(), with_store(&saved, 100)).await;
        let third = third.unwrap();
        assert_eq!((third.entries, third.entries_replayed), (10, 0));
        assert_eq!(third.system_balances, full.system_balances);
    }

    #[tokio::test]
    async fn a_state_over_the_callers_store_is_let_go_before_the_answer() {
        // A caller that exits when the audit returns must not find the store still being
        // closed on another thread (RocksDB aborts when the process exits under it).
        let source = Arc::new(BTreeMap::<Vec<u8>, Vec<u8>>::new());
        let held = Arc::downgrade(&source);
        let store = ReplayStore {
            state: State::open(source).unwrap(),
            flush: Box::new(|_, _| Ok(())),
            flush_every: 100,
            resume: None,
            close: None,
        };
        let options = VerifyOptions {
            replay_store: Some(store),
            ..VerifyOptions::default()
        };
        let (result, _) = run(honest(), options).await;
        assert_eq!(result.unwrap().entries_replayed, 10);
        assert_eq!(held.strong_count(), 0, "the store is still held");
    }

    #[tokio::test]
    async fn a_resumed_audit_refuses_a_log_that_forked_or_shrank() {
        let mut forked = sample_entries();
        forked[4].id = "p-forked".parse().unwrap();
        let saved = Saved::default();
        run(prefix(6, &[0, 3, 6]), with_store(&saved, 100))
            .await
            .0
            .unwrap();

        // The same size with another root.
        let fork6 = FakeLog::new(&signer(), &forked[..6], &[6]);
        let err = run(fork6, with_store(&saved, 100)).await.0.unwrap_err();
        assert!(
            matches!(
                &err,
                VerifyError::Invalid {
                    index: 6,
                    reason: r @ Failure::SavedCheckpointMismatch { size: 6 }
                } if r.kind() == "fork"
            ),
            "{err}"
        );
        // A larger log that does not extend the one verified: no consistency proof holds.
        let fork10 = FakeLog::new(&signer(), &forked, &[]);
        let err = run(fork10, with_store(&saved, 100)).await.0.unwrap_err();
        assert!(
            matches!(
                &err,
                VerifyError::Invalid {
                    index: 6,
                    reason: r @ Failure::ConsistencyProof { old: 6, new: 10, .. }
                } if r.kind() == "fork"
            ),
            "{err}"
        );
        // A smaller one.
        let err = run(prefix(5, &[5]), with_store(&saved, 100))
            .await
            .0
            .unwrap_err();
        assert!(
            matches!(
                &err,
                VerifyError::Invalid {
                    index: 5,
                    reason: r @ Failure::Rollback { saved: 6, latest: 5 }
                } if r.kind() == "shrink"
            ),
            "{err}"
        );
        // None of these moved the saved audit.
        assert_eq!(saved.size(), Some(6));
        let (ok, _) = run(honest(), with_store(&saved, 100)).await;
        assert_eq!(ok.unwrap().entries_replayed, 4);
    }

    #[tokio::test]
    async fn an_interrupted_audit_resumes_from_its_last_proven_point() {
        // Entry 7 is not canonical: the run stops there, having saved (every two entries,
        // each time after a consistency proof) a point no further than the entries proven.
        let mut bad = honest();
        bad.served[7] = bad.served[7].replacen("{", "{ ", 1);
        let saved = Saved::default();
        let err = run(bad, with_store(&saved, 2)).await.0.unwrap_err();
        assert_eq!(err.first_bad_index(), Some(7), "{err}");
        let at = saved
            .size()
            .expect("a point was saved before the bad entry");
        assert!((2..=7).contains(&at), "saved at {at}");
        assert!(*saved.flushes.lock().unwrap() >= 2);

        // Served honestly again, the audit resumes there and agrees with a full replay.
        let (resumed, _) = run(honest(), with_store(&saved, 2)).await;
        let resumed = resumed.unwrap();
        assert_eq!(resumed.entries_replayed, 10 - at);
        let (full, _) = run(honest(), VerifyOptions::default()).await;
        assert_eq!(resumed.system_balances, full.unwrap().system_balances);
    }

    #[tokio::test]
    async fn a_saved_audit_of_another_log_key_is_refused() {
        let saved = Saved::default();
        run(prefix(6, &[6]), with_store(&saved, 100))
            .await
            .0
            .unwrap();
        let other = NoteSigner::from_seed(ORIGIN_FOR_TESTS, &[9; 32]).unwrap();
        let log = Arc::new(FakeLog::new(&other, &sample_entries(), &[]));
        let url = serve(log.router()).await;
        let client = Client::new(&url, None).unwrap();
        let r = verify_log(&client, &other.verifier(), with_store(&saved, 100)).await;
        assert!(matches!(r, Err(VerifyError::SavedPoint(_))), "{r:?}");
    }
}
