//! The auditor's verification of a whole log, from public data only.
//!
//! [`verify_log`] downloads every entry and every checkpoint of a node and checks, with
//! nothing but the pinned log key:
//! - every checkpoint's signature (C2SP signed note by the pinned key, origin = key name);
//! - that the entries, hashed into an RFC 6962 tree ([`MemoryTree`]), give exactly the root
//!   of every checkpoint at its size. Since all checkpoints are roots of *one* recomputed
//!   tree, this also proves every checkpoint consistent with every other;
//! - that every entry is canonical ([`Entry::from_bytes`]), that log times strictly
//!   increase, and that replaying the entries from index 0 through [`State::apply`] succeeds
//!   and keeps [`State::check_invariants`] (checked periodically and at the end);
//! - a consistency proof served by the node between the resumed-from (or first non-empty)
//!   checkpoint and the latest, so that the node's proof service is checked too;
//! - with a witness policy ([`VerifyOptions::witness_policy`]): that the node's latest
//!   cosigned checkpoint (`GET /v1/checkpoint/cosigned`, spec/federation.md §4) is signed by
//!   the pinned key and cosigned by a quorum of the policy's witnesses, and that its root is
//!   the recomputed root at its size. Only then does the log count as verified; the summary
//!   says up to which size it is witnessed.
//!
//! Resuming: a run can start from a checkpoint saved by an earlier successful run
//! ([`Summary::checkpoint_note`]). There is no state snapshot, so the state is still
//! replayed from index 0; what resuming adds is the proof that the log the node serves now
//! *extends* the one verified before: the recomputed root at the saved size must equal the
//! saved root, and the node's consistency proof from the saved checkpoint to the latest must
//! verify. A log that shrank, or whose prefix changed, is reported as a failure.
//!
//! On failure the error names the first bad index: for an entry, its index; for a
//! checkpoint, its size (the checkpoint is what the log claims right before that index).
//! When entries do not match a checkpoint's root, the first differing entry is found by
//! binary search with consistency proofs against the latest checkpoint; each proof that
//! verifies proves a prefix of the served entries part of the signed log.
//!
//! The replay is CPU-bound and runs on the calling task; call it from a task that may
//! block, or on a runtime with spare workers.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use ledger::checkpoint::{
    open_checkpoint, verify_cosigned_checkpoint, Checkpoint, CheckpointError, NoteVerifier,
    SignedNote, WitnessPolicy,
};
use ledger::entry::{Entry, EntryError};
use ledger::merkle::{verify_consistency, MemoryTree, MerkleError};
use ledger::state::{InvariantViolation, State, StateError};
use ledger::types::{AccountId, LogIndex, LogTime};

use crate::client::Client;
use crate::error::Error;
use crate::types::{CheckpointItem, LogEntry, LOG_ENTRIES_PAGE_MAX, PAGE_LIMIT_MAX};

/// Default number of entries between two progress reports.
pub const PROGRESS_EVERY_DEFAULT: u64 = 10_000;
/// Default number of entries between two full invariant checks.
pub const INVARIANTS_EVERY_DEFAULT: u64 = 100_000;
/// Most consistency proofs fetched to locate the first bad entry (enough for 2^64 entries).
const LOCATE_PROOFS_MAX: u32 = 70;

/// How far a verification run has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Entries verified and replayed so far.
    pub entries_verified: u64,
    /// Entries to verify (the latest checkpoint's size).
    pub entries_total: u64,
    /// Signed checkpoints verified so far.
    pub checkpoints_checked: u64,
    /// Time since the run began.
    pub elapsed: Duration,
}

/// A progress callback of [`verify_log`].
pub type ProgressFn = Box<dyn FnMut(&Progress) + Send>;

/// Writes a replay's changed records (`(key, None)`: delete) into its store.
pub type FlushFn = Box<dyn FnMut(Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), String> + Send>;

/// Where the replay keeps its state when it must not be held in memory: a [`State`] over a
/// store of the caller's (`State::open` over a RocksDB directory, `loyalty verify --disk`),
/// and how its changed records reach that store.
pub struct ReplayStore {
    /// The replay's state, over the caller's (empty) store.
    pub state: State,
    /// Writes changed records (`None`: delete) into the store the state reads.
    pub flush: FlushFn,
    /// Entries between two flushes (at least 1): the records held in memory are those the
    /// entries since the last flush changed.
    pub flush_every: u64,
}

/// Options of [`verify_log`].
pub struct VerifyOptions {
    /// A checkpoint note saved by an earlier run; the log must extend it.
    pub resume_from: Option<String>,
    /// Called every `progress_every` entries and once at the end.
    pub progress: Option<ProgressFn>,
    /// Entries between two progress reports (at least 1).
    pub progress_every: u64,
    /// Entries between two full invariant checks (at least 1); they are also checked at
    /// the end.
    pub invariants_every: u64,
    /// Entries fetched per request, 1 to [`LOG_ENTRIES_PAGE_MAX`].
    pub page_size: u64,
    /// Witnesses the log must be cosigned by: when set, the node's latest cosigned checkpoint
    /// must meet it (see the module documentation). Its `log` key must be the pinned key.
    pub witness_policy: Option<WitnessPolicy>,
    /// Replay into this store instead of memory, for logs whose state is larger than memory.
    pub replay_store: Option<ReplayStore>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            resume_from: None,
            progress: None,
            progress_every: PROGRESS_EVERY_DEFAULT,
            invariants_every: INVARIANTS_EVERY_DEFAULT,
            page_size: LOG_ENTRIES_PAGE_MAX,
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
            .field("page_size", &self.page_size)
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
    /// Entries verified and replayed (the latest checkpoint's size).
    pub entries: u64,
    /// Signed checkpoints verified (listed ones, the latest, and the saved one).
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
    /// The size of the saved checkpoint the run resumed from, if any.
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

/// The node's checkpoints, fetched page by page as the verification advances.
struct CheckpointFeed {
    queue: VecDeque<CheckpointItem>,
    cursor: Option<String>,
    done: bool,
    last_size: Option<u64>,
}

impl CheckpointFeed {
    /// Fetches pages until the queue reaches beyond `size` or the list ends.
    async fn fill_beyond(&mut self, client: &Client, size: u64) -> Result<(), VerifyError> {
        while !self.done && self.last_size.is_none_or(|s| s <= size) {
            let page = client
                .checkpoints(self.cursor.as_deref(), Some(PAGE_LIMIT_MAX))
                .await?;
            for item in page.checkpoints.iter() {
                if let Some(last) = self.last_size {
                    if item.size < last {
                        return Err(invalid(
                            item.size,
                            Failure::CheckpointListing(format!(
                                "size {} is listed after size {last}",
                                item.size
                            )),
                        ));
                    }
                }
                self.last_size = Some(item.size);
            }
            let progressed = !page.checkpoints.is_empty();
            self.queue.extend(page.checkpoints);
            match page.next_cursor {
                Some(c) if progressed && self.cursor.as_ref() != Some(&c) => self.cursor = Some(c),
                Some(_) => {
                    return Err(Error::Decode(
                        "the checkpoint list's cursor did not advance".into(),
                    )
                    .into())
                }
                None => self.done = true,
            }
        }
        Ok(())
    }
}

struct Run<'a> {
    client: &'a Client,
    key: &'a NoteVerifier,
    latest: Checkpoint,
    saved: Option<Checkpoint>,
    tree: MemoryTree,
    state: State,
    checked: u64,
    first_non_empty: Option<Checkpoint>,
}

impl Run<'_> {
    /// Whether the first `m` recomputed leaves are proven a prefix of the latest tree.
    async fn prefix_proven(&self, m: u64) -> Result<bool, Error> {
        let root = self
            .tree
            .root_at(m)
            .map_err(|e| Error::Decode(e.to_string()))?;
        if m == 0 {
            return Ok(true);
        }
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
        let (mut good, mut bad) = (0u64, hi);
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
        let root = self
            .tree
            .root()
            .map_err(|e| invalid(cp.size, Failure::Merkle(e)))?;
        if root != cp.root {
            return Err(self.root_failure(cp.size, saved).await);
        }
        self.checked += 1;
        if cp.size > 0 && self.first_non_empty.is_none() {
            self.first_non_empty = Some(cp.clone());
        }
        Ok(())
    }

    /// Verifies every checkpoint of size `size` (listed, saved, latest).
    async fn check_checkpoints_at(
        &mut self,
        size: u64,
        feed: &mut CheckpointFeed,
    ) -> Result<(), VerifyError> {
        while let Some(item) = feed.queue.front() {
            if item.size > size {
                break;
            }
            let item = feed.queue.pop_front().expect("peeked");
            if item.size < size {
                // Sizes are checked to be non-decreasing, so this is unreachable unless the
                // list started below where the run looked; such a checkpoint is skipped.
                continue;
            }
            let cp = match open_checkpoint(&item.note, self.key) {
                Ok((cp, _)) => cp,
                Err(error) => {
                    return Err(invalid(size, Failure::CheckpointSignature { size, error }))
                }
            };
            if cp.size != item.size {
                return Err(invalid(
                    size.min(cp.size),
                    Failure::CheckpointListing(format!(
                        "a checkpoint listed as size {} signs size {}",
                        item.size, cp.size
                    )),
                ));
            }
            self.check_root(&cp, false).await?;
        }
        if let Some(saved) = self.saved.clone().filter(|s| s.size == size) {
            self.check_root(&saved, true).await?;
        }
        if size == self.latest.size {
            let latest = self.latest.clone();
            self.check_root(&latest, false).await?;
        }
        Ok(())
    }
}

async fn fetch_page(client: Client, start: u64, end: u64) -> Result<Vec<LogEntry>, Error> {
    client.log_entries(start, end).await
}

/// Verifies the whole log of the node behind `client` against the pinned log key; see the
/// module documentation for what is checked. Needs a Tokio runtime.
pub async fn verify_log(
    client: &Client,
    pinned_key: &NoteVerifier,
    mut options: VerifyOptions,
) -> Result<Summary, VerifyError> {
    let started = Instant::now();
    if options.page_size == 0 || options.page_size > LOG_ENTRIES_PAGE_MAX {
        return Err(VerifyError::Options(format!(
            "page_size must be 1 to {LOG_ENTRIES_PAGE_MAX}"
        )));
    }
    if let Some(p) = &options.witness_policy {
        if &p.log != pinned_key {
            return Err(VerifyError::Options(
                "the witness policy's log key is not the pinned key".into(),
            ));
        }
    }
    let progress_every = options.progress_every.max(1);
    let invariants_every = options.invariants_every.max(1);
    let saved = match &options.resume_from {
        Some(note) => Some(
            open_checkpoint(note, pinned_key)
                .map_err(VerifyError::SavedCheckpoint)?
                .0,
        ),
        None => None,
    };
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
    let mut run = Run {
        client,
        key: pinned_key,
        latest: latest.clone(),
        saved: saved.clone(),
        tree: MemoryTree::new(),
        state: match options.replay_store.as_mut() {
            Some(r) => std::mem::take(&mut r.state),
            None => State::for_replay(),
        },
        // Counted by `check_root`, the latest and the saved checkpoint included.
        checked: 0,
        first_non_empty: None,
    };
    let mut feed = CheckpointFeed {
        queue: VecDeque::new(),
        cursor: None,
        done: false,
        last_size: None,
    };
    let mut report = |run: &Run<'_>, done: u64| {
        if let Some(cb) = options.progress.as_mut() {
            cb(&Progress {
                entries_verified: done,
                entries_total: target,
                checkpoints_checked: run.checked,
                elapsed: started.elapsed(),
            });
        }
    };

    let mut index = 0u64;
    let mut previous_time: Option<LogTime> = None;
    let page_end = |start: u64| (start + options.page_size).min(target);
    let mut next = (target > 0).then(|| tokio::spawn(fetch_page(client.clone(), 0, page_end(0))));
    feed.fill_beyond(client, 0).await?;
    run.check_checkpoints_at(0, &mut feed).await?;
    while let Some(handle) = next.take() {
        let page = handle
            .await
            .map_err(|e| Error::Decode(format!("entry fetch task failed: {e}")))??;
        let end = page_end(index);
        if page.is_empty() {
            return Err(run.entry_failure(index, Failure::MissingEntry).await);
        }
        let fetched_end = index + page.len() as u64;
        if fetched_end < target {
            next = Some(tokio::spawn(fetch_page(
                client.clone(),
                fetched_end,
                page_end(fetched_end),
            )));
        }
        feed.fill_beyond(client, end).await?;
        for item in page {
            if item.index != index {
                return Err(invalid(index, Failure::UnexpectedIndex { got: item.index }));
            }
            if index >= target {
                return Err(invalid(index, Failure::UnexpectedIndex { got: item.index }));
            }
            let bytes = item.entry.as_bytes();
            run.tree
                .push(bytes)
                .map_err(|e| invalid(index, Failure::Merkle(e)))?;
            let entry = match Entry::from_bytes(bytes) {
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
            if let Err(e) = run.state.apply(at, &entry) {
                return Err(run.entry_failure(index, Failure::Replay(e)).await);
            }
            index += 1;
            if let Some(r) = options.replay_store.as_mut() {
                if index % r.flush_every.max(1) == 0 || index == target {
                    (r.flush)(run.state.take_changes()).map_err(VerifyError::Storage)?;
                }
            }
            if index % invariants_every == 0 {
                if let Err(v) = run.state.check_invariants() {
                    return Err(run.entry_failure(index - 1, Failure::Invariant(v)).await);
                }
            }
            if index % progress_every == 0 {
                report(&run, index);
            }
            run.check_checkpoints_at(index, &mut feed).await?;
        }
    }
    if index != target {
        return Err(run.entry_failure(index, Failure::MissingEntry).await);
    }
    if let Err(v) = run.state.check_invariants() {
        return Err(invalid(target.saturating_sub(1), Failure::Invariant(v)));
    }
    // The node's own consistency proof, from the resumed-from (or first non-empty)
    // checkpoint to the latest.
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
            let root = run
                .tree
                .root_at(cp.size)
                .map_err(|e| invalid(cp.size, Failure::Merkle(e)))?;
            if root != cp.root {
                return Err(run.root_failure(cp.size, false).await);
            }
            run.checked += 1;
            Some(witnessed)
        }
        None => None,
    };
    report(&run, index);
    Ok(Summary {
        entries: target,
        checkpoints_checked: run.checked,
        members: run.state.member_count() as usize,
        system_balances: run.state.system_accounts().clone(),
        elapsed: started.elapsed(),
        checkpoint: latest,
        checkpoint_note: latest_note,
        resumed_from: saved.map(|s| s.size),
        witnessed,
    })
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
    use ledger::entry::{Earn, EntryKind, Refund};
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
        let options = VerifyOptions {
            page_size: 3,
            ..options
        };
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
}
