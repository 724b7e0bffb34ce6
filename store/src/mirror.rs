//! A verified mirror of a partner's log (spec/federation.md §3).
//!
//! The mirror is a [`Store`] of its own (same column families as a brand's log) that only
//! ever holds entries proven to be a prefix of a checkpoint signed by the partner's pinned key,
//! replayed through the same [`State`] machine as the partner's node.
//!
//! Invariants:
//! - the accepted checkpoint verifies with the pinned key and its root equals the stored tree's;
//! - every stored entry decoded strictly and applied without error, in order;
//! - a chunk is stored (entries, tree hashes, state records, history and, when it completes the
//!   target, the checkpoint) as one synced batch, only after all its checks passed; a failed
//!   chunk leaves nothing behind;
//! - a chunk may be staged ([`Mirror::stage_checked`]) and replayed on top of the one before it
//!   while that one is being written; chunks land ([`Mirror::landed`]) in the order they were
//!   staged, and only what landed is [`Mirror::size`], proven by [`Mirror::root_at`] or
//!   accepted; a write that fails drops everything staged ([`Mirror::discard_staged`]);
//! - the mirror never accepts a checkpoint that is smaller than, forks from, or is not provably
//!   consistent with the one it accepted: such a checkpoint is reported as [`Misbehaviour`],
//!   the evidence a node stores.
//!
//! Nothing here does network I/O; the node fetches and this module judges.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::log::staging::Staging;
use crate::store::{CommitBatch, Store, StoreError};
use ledger::checkpoint::{open_checkpoint, Checkpoint, NoteVerifier};
use ledger::entry::Entry;
use ledger::merkle::{self, Hash, PendingHashes};
use ledger::state::State;
use ledger::types::LogIndex;

/// Most entries verified and stored as one chunk.
pub const CHUNK_ENTRIES_MAX: u64 = 16_384;
/// Local record holding the signed note the latest chunk was verified against.
const TARGET_KEY: &[u8] = b"mirror/target";

/// The checkpoint a mirror accepted last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub checkpoint: Checkpoint,
    pub note: String,
}

/// What a partner did that its signed history forbids. Each variant is evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Misbehaviour {
    /// A checkpoint that does not verify with the pinned key (or names another origin).
    #[error("checkpoint signature or origin does not verify: {reason}")]
    BadSignature { note: String, reason: String },
    /// A signed checkpoint smaller than one accepted before.
    #[error("signed tree size {new_size} is smaller than the accepted {accepted_size}")]
    Shrink {
        accepted_note: String,
        new_note: String,
        accepted_size: u64,
        new_size: u64,
    },
    /// Two signed checkpoints of the same size with different roots.
    #[error("two signed checkpoints of size {size} with different roots")]
    Fork {
        accepted_note: String,
        new_note: String,
        size: u64,
    },
    /// No valid consistency proof from the accepted checkpoint to the new one.
    #[error("checkpoint of size {new_size} is not consistent with the accepted {accepted_size}: {reason}")]
    Inconsistent {
        accepted_note: String,
        new_note: String,
        accepted_size: u64,
        new_size: u64,
        proof: Vec<String>,
        reason: String,
    },
    /// Entries whose hashes the signed root does not commit to.
    #[error("entries {start}..{end} do not match the signed root of size {size}")]
    BadEntries {
        note: String,
        size: u64,
        start: u64,
        end: u64,
        /// SHA-256 over the leaf hashes of what was served.
        served: String,
    },
    /// A committed entry that does not decode or that the rules refuse.
    #[error("entry {index} is invalid: {reason}")]
    InvalidEntry {
        note: String,
        index: u64,
        reason: String,
    },
}

impl Misbehaviour {
    /// The evidence kind (spec/federation.md §5).
    /// Whether the evidence proves misbehaviour to a third party on its own: two notes signed
    /// by the partner that contradict each other (with the mirror's verified entries), or a
    /// signed root committing to an entry the rules refuse. The other kinds record what this
    /// node was served, which an attacker on the network path could also have produced.
    pub fn proven(&self) -> bool {
        matches!(
            self,
            Misbehaviour::Fork { .. } | Misbehaviour::InvalidEntry { .. }
        )
    }

    /// The evidence kind (spec/federation.md §5).
    pub fn kind(&self) -> &'static str {
        match self {
            Misbehaviour::BadSignature { .. } => "bad_signature",
            Misbehaviour::Shrink { .. } => "shrink",
            Misbehaviour::Fork { .. } => "fork",
            Misbehaviour::Inconsistent { .. } => "inconsistent",
            Misbehaviour::BadEntries { .. } => "bad_entries",
            Misbehaviour::InvalidEntry { .. } => "invalid_entry",
        }
    }

    /// The signed notes the evidence consists of.
    pub fn notes(&self) -> Vec<String> {
        match self {
            Misbehaviour::BadSignature { note, .. }
            | Misbehaviour::BadEntries { note, .. }
            | Misbehaviour::InvalidEntry { note, .. } => vec![note.clone()],
            Misbehaviour::Shrink {
                accepted_note,
                new_note,
                ..
            }
            | Misbehaviour::Fork {
                accepted_note,
                new_note,
                ..
            }
            | Misbehaviour::Inconsistent {
                accepted_note,
                new_note,
                ..
            } => vec![accepted_note.clone(), new_note.clone()],
        }
    }
}

/// Why a mirror operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The partner misbehaved; this is evidence.
    #[error(transparent)]
    Misbehaviour(#[from] Misbehaviour),
    /// The caller asked for something out of order (not evidence, a bug or a race).
    #[error("{0}")]
    Usage(String),
    /// Storage or a corrupt mirror.
    #[error(transparent)]
    Log(#[from] crate::log::LogError),
}

impl From<crate::store::StoreError> for MirrorError {
    fn from(e: crate::store::StoreError) -> Self {
        MirrorError::Log(e.into())
    }
}

impl From<merkle::MerkleError> for MirrorError {
    fn from(e: merkle::MerkleError) -> Self {
        MirrorError::Log(e.into())
    }
}

/// A chunk's entries with what can be computed from their bytes alone: leaf hashes and strict
/// decodings. Building one needs no mirror, so it runs on other threads (and in parts, see
/// [`CheckedChunk::concat`]) while the previous chunk is replayed and stored; the mirror still
/// judges it in [`Mirror::append_checked`].
#[derive(Debug, Default)]
pub struct CheckedChunk {
    entries: Vec<Vec<u8>>,
    leaves: Vec<Hash>,
    /// The entry and its intent digest (its id record's), or why it does not decode.
    decoded: Vec<Result<(Entry, Hash), String>>,
}

impl CheckedChunk {
    /// Hashes and decodes `entries` (pure; CPU-bound).
    pub fn check(entries: Vec<Vec<u8>>) -> CheckedChunk {
        let leaves = entries.iter().map(|e| merkle::leaf_hash(e)).collect();
        let decoded = entries
            .iter()
            .map(|e| Entry::from_bytes_with_intent(e).map_err(|e| e.to_string()))
            .collect();
        CheckedChunk {
            entries,
            leaves,
            decoded,
        }
    }

    /// Consecutive parts, checked separately, as one chunk.
    pub fn concat(parts: Vec<CheckedChunk>) -> CheckedChunk {
        let mut all = CheckedChunk::default();
        for p in parts {
            all.entries.extend(p.entries);
            all.leaves.extend(p.leaves);
            all.decoded.extend(p.decoded);
        }
        all
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A verified copy of one partner's log.
pub struct Mirror {
    store: Store,
    /// The store with the chunks staged and not written yet above it: what the state and the
    /// tree read.
    staging: Arc<Staging>,
    /// The replayed state, staged chunks included.
    state: State,
    /// Entries on disk (the state's size once every staged chunk landed).
    durable: u64,
    /// Where the next chunk written must start: staged chunks are written in order, one at a
    /// time, whoever writes them.
    written: Arc<Mutex<u64>>,
    verifier: NoteVerifier,
    accepted: Option<Accepted>,
    /// The signed note the entries beyond `accepted` were verified against.
    target_note: Option<String>,
}

/// A chunk verified and replayed by [`Mirror::stage_checked`], staged above the mirror's store:
/// the next chunk can be replayed on top of it while [`StagedChunk::write`] makes it durable
/// (on another thread), after which [`Mirror::landed`] takes it back.
pub struct StagedChunk {
    store: Store,
    written: Arc<Mutex<u64>>,
    batch: CommitBatch,
    start: u64,
    end: u64,
    sync: bool,
    target_note: String,
    /// The target checkpoint, when this chunk completes it.
    completes: Option<Checkpoint>,
}

impl StagedChunk {
    /// Writes the chunk as one batch (synced unless it was staged unsynced). Needs no mirror.
    /// Refused unless the chunk staged before it was written (a chunk written out of order
    /// would put older state records over newer ones); waits while another chunk is written.
    pub fn write(&self) -> Result<(), MirrorError> {
        let order = self.written.clone();
        let mut written = order.lock().expect("mirror write lock");
        if *written != self.start {
            return Err(MirrorError::Usage(format!(
                "chunk {}..{} written after the chunk ending at {}",
                self.start, self.end, *written
            )));
        }
        let r: Result<(), StoreError> = if self.sync {
            self.store.commit(&self.batch)
        } else {
            self.store.commit_unsynced(&self.batch)
        };
        r?;
        *written = self.end;
        Ok(())
    }

    /// The index of the chunk's first entry.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The mirror's size once the chunk landed.
    pub fn end(&self) -> u64 {
        self.end
    }
}

impl Mirror {
    /// Opens (or creates) the mirror in `dir` for the log whose pinned key is `verifier`.
    /// Refuses a mirror whose stored entries, state, tree and checkpoint disagree, or whose
    /// checkpoint does not verify with `verifier` (a mirror of another key).
    pub fn open(dir: &Path, verifier: NoteVerifier) -> Result<Mirror, MirrorError> {
        Mirror::open_with(dir, verifier, crate::store::StoreConfig::default())
    }

    /// As [`Mirror::open`], within the memory budget `config`. The mirror's state is read on
    /// demand from its store, so a partner's members are never all held in memory.
    pub fn open_with(
        dir: &Path,
        verifier: NoteVerifier,
        config: crate::store::StoreConfig,
    ) -> Result<Mirror, MirrorError> {
        use crate::log::LogError;
        let store = Store::open_with(dir, config)?;
        crate::log::migrate(&store, &mut |_| {})?;
        let staging = Arc::new(Staging::over(store.clone()));
        let state = store
            .open_state_over(staging.clone())
            .map_err(LogError::from)?;
        let end = store.entries_end()?;
        if end != state.size() {
            return Err(LogError::Inconsistent(format!(
                "mirror state covers {} entries but {end} are stored",
                state.size()
            ))
            .into());
        }
        let accepted = match store.latest_checkpoint()? {
            None => None,
            Some((size, note)) => {
                let (cp, _) = open_checkpoint(&note, &verifier).map_err(|e| {
                    LogError::Inconsistent(format!("mirror checkpoint does not verify: {e}"))
                })?;
                if cp.size != size || cp.size > state.size() {
                    return Err(LogError::Inconsistent(format!(
                        "mirror checkpoint of size {} is ahead of {} entries",
                        cp.size,
                        state.size()
                    ))
                    .into());
                }
                if merkle::root(cp.size, &store)? != cp.root {
                    return Err(LogError::Inconsistent(
                        "mirror checkpoint does not match the stored tree".into(),
                    )
                    .into());
                }
                Some(Accepted {
                    checkpoint: cp,
                    note,
                })
            }
        };
        let target_note = store
            .local_get(TARGET_KEY)?
            .and_then(|v| String::from_utf8(v).ok());
        Ok(Mirror {
            durable: state.size(),
            written: Arc::new(Mutex::new(state.size())),
            store,
            staging,
            state,
            verifier,
            accepted,
            target_note,
        })
    }

    /// Entries verified and stored.
    pub fn size(&self) -> u64 {
        self.durable
    }

    /// Entries verified, staged chunks included: where the next chunk starts.
    pub fn verified_size(&self) -> u64 {
        self.state.size()
    }

    /// The replayed state of the partner's log at [`Mirror::verified_size`].
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The mirror's store, for reads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The pinned key.
    pub fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    /// The last accepted checkpoint.
    pub fn accepted(&self) -> Option<&Accepted> {
        self.accepted.as_ref()
    }

    fn accepted_parts(&self) -> (u64, Hash, String) {
        match &self.accepted {
            Some(a) => (a.checkpoint.size, a.checkpoint.root, a.note.clone()),
            None => (0, merkle::empty_root(), String::new()),
        }
    }

    /// Opens a fetched checkpoint note and judges it against the accepted one, before anything
    /// else is fetched. Returns the checkpoint when it is new and larger (the caller then needs
    /// a consistency proof, see [`Mirror::check_consistency`]); `Ok(None)` when it equals the
    /// accepted one.
    pub fn check_checkpoint(&self, note: &str) -> Result<Option<Checkpoint>, Misbehaviour> {
        let (cp, _) =
            open_checkpoint(note, &self.verifier).map_err(|e| Misbehaviour::BadSignature {
                note: note.to_owned(),
                reason: e.to_string(),
            })?;
        let (size, root, accepted_note) = self.accepted_parts();
        if cp.size < size {
            return Err(Misbehaviour::Shrink {
                accepted_note,
                new_note: note.to_owned(),
                accepted_size: size,
                new_size: cp.size,
            });
        }
        if cp.size == size {
            if cp.root != root {
                return Err(Misbehaviour::Fork {
                    accepted_note,
                    new_note: note.to_owned(),
                    size,
                });
            }
            return Ok(None);
        }
        Ok(Some(cp))
    }

    /// Checks the partner's consistency proof from the accepted checkpoint to `new` (whose
    /// note is `new_note`).
    pub fn check_consistency(
        &self,
        new: &Checkpoint,
        new_note: &str,
        proof: &[Hash],
    ) -> Result<(), Misbehaviour> {
        let (size, root, accepted_note) = self.accepted_parts();
        merkle::verify_consistency(size, new.size, &root, &new.root, proof).map_err(|e| {
            Misbehaviour::Inconsistent {
                accepted_note,
                new_note: new_note.to_owned(),
                accepted_size: size,
                new_size: new.size,
                proof: proof.iter().map(hex::encode).collect(),
                reason: e.to_string(),
            }
        })
    }

    /// Verifies `entries` as the next entries of the log committed to by `target` (whose
    /// signed note is `target_note`, already checked with [`Mirror::check_checkpoint`] and
    /// [`Mirror::check_consistency`]), replays them, and stores them as one synced batch.
    ///
    /// When the entries end before `target.size`, `proof_to_target` is the partner's
    /// consistency proof from the new size to `target.size`; when they end at it, the recomputed
    /// root must equal `target.root` and the checkpoint is stored with them.
    pub fn append_verified(
        &mut self,
        start: u64,
        entries: &[Vec<u8>],
        target: &Checkpoint,
        target_note: &str,
        proof_to_target: &[Hash],
    ) -> Result<(), MirrorError> {
        let chunk = CheckedChunk::check(entries.to_vec());
        self.append_checked(start, chunk, target, target_note, proof_to_target)
    }

    /// As [`Mirror::append_verified`], for entries whose leaf hashes and decodings were
    /// computed beforehand ([`CheckedChunk::check`], which needs no mirror and can run on
    /// other threads while the previous chunk is replayed and stored).
    pub fn append_checked(
        &mut self,
        start: u64,
        chunk: CheckedChunk,
        target: &Checkpoint,
        target_note: &str,
        proof_to_target: &[Hash],
    ) -> Result<(), MirrorError> {
        self.append_checked_with(
            start,
            chunk,
            target,
            target_note,
            proof_to_target,
            Vec::new(),
            true,
        )
    }

    /// As [`Mirror::append_verified`], writing the node-local records `local` in the same
    /// batch, synced or not (`sync`): a standby applies a batch a synced record of its own
    /// proves committed, and clears that record in the same write.
    #[allow(clippy::too_many_arguments)]
    pub fn append_verified_with(
        &mut self,
        start: u64,
        entries: &[Vec<u8>],
        target: &Checkpoint,
        target_note: &str,
        proof_to_target: &[Hash],
        local: Vec<(Vec<u8>, Vec<u8>)>,
        sync: bool,
    ) -> Result<(), MirrorError> {
        let chunk = CheckedChunk::check(entries.to_vec());
        self.append_checked_with(
            start,
            chunk,
            target,
            target_note,
            proof_to_target,
            local,
            sync,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn append_checked_with(
        &mut self,
        start: u64,
        chunk: CheckedChunk,
        target: &Checkpoint,
        target_note: &str,
        proof_to_target: &[Hash],
        local: Vec<(Vec<u8>, Vec<u8>)>,
        sync: bool,
    ) -> Result<(), MirrorError> {
        if self.durable != self.state.size() {
            return Err(MirrorError::Usage(
                "chunks are staged and not landed: append waits for them".into(),
            ));
        }
        let mut staged = self.stage_checked(start, chunk, target, target_note, proof_to_target)?;
        // Node-local records are not state: they are written with the chunk, never staged.
        staged.batch.local.extend(local);
        staged.sync = sync;
        if let Err(e) = staged.write() {
            self.discard_staged()?;
            return Err(e);
        }
        self.landed(staged)
    }

    /// Verifies and replays a chunk as [`Mirror::append_checked`] does, on top of the chunks
    /// staged before it, and stages it instead of writing it: the caller writes it
    /// ([`StagedChunk::write`], on any thread, after the chunks staged before it) and hands it
    /// back to [`Mirror::landed`], or calls [`Mirror::discard_staged`] if the write failed.
    /// Nothing of a staged chunk is [`Mirror::size`], proven or accepted before it landed.
    pub fn stage_checked(
        &mut self,
        start: u64,
        chunk: CheckedChunk,
        target: &Checkpoint,
        target_note: &str,
        proof_to_target: &[Hash],
    ) -> Result<StagedChunk, MirrorError> {
        let CheckedChunk {
            entries,
            leaves,
            decoded,
        } = chunk;
        if start != self.state.size() {
            return Err(MirrorError::Usage(format!(
                "chunk starts at {start} but the mirror holds {} entries",
                self.state.size()
            )));
        }
        let end = start + entries.len() as u64;
        if entries.is_empty()
            || end > target.size
            || entries.len() as u64 > CHUNK_ENTRIES_MAX
            || leaves.len() != entries.len()
            || decoded.len() != entries.len()
        {
            return Err(MirrorError::Usage(format!(
                "chunk {start}..{end} does not fit a target of size {} (at most {CHUNK_ENTRIES_MAX} entries)",
                target.size
            )));
        }
        if target.size < self.accepted_parts().0
            || open_checkpoint(target_note, &self.verifier)
                .map(|(cp, _)| &cp != target)
                .unwrap_or(true)
        {
            return Err(MirrorError::Usage(
                "target is not a checkpoint signed by the pinned key".into(),
            ));
        }
        // 1. The Merkle check: nothing is applied before the bytes are committed to.
        let mut pending = PendingHashes::new(&*self.staging, start);
        let mut served = sha2::Sha256::default();
        for leaf in &leaves {
            sha2::Digest::update(&mut served, leaf);
            pending.push(*leaf)?;
        }
        let root = pending.root()?;
        let ok = if end == target.size {
            root == target.root
        } else {
            merkle::verify_consistency(end, target.size, &root, &target.root, proof_to_target)
                .is_ok()
        };
        if !ok {
            return Err(Misbehaviour::BadEntries {
                note: target_note.to_owned(),
                size: target.size,
                start,
                end,
                served: hex::encode(sha2::Digest::finalize(served)),
            }
            .into());
        }
        // 2. The replay: the same state machine as the partner's node, its records read
        //    ahead together for the whole chunk.
        self.state
            .prefetch(
                decoded
                    .iter()
                    .filter_map(|e| e.as_ref().ok())
                    .map(|(e, _)| (&e.id, &e.kind)),
            )
            .map_err(|e| crate::log::LogError::State(e.into()))?;
        let mut batch = CommitBatch::default();
        batch.entries.reserve(entries.len());
        for (i, (bytes, entry)) in entries.into_iter().zip(decoded).enumerate() {
            let index = start + i as u64;
            let applied = entry.and_then(|(entry, intent)| {
                self.state
                    .apply_with_intent(LogIndex::new(index).expect("u64 index"), &entry, &intent)
                    .map_err(|e| e.to_string())
            });
            match applied {
                Ok(applied) => {
                    if let Some(m) = applied.member {
                        batch.history.push((m, index));
                    }
                    batch.entries.push((index, bytes));
                }
                Err(reason) => {
                    self.reload()?;
                    return Err(Misbehaviour::InvalidEntry {
                        note: target_note.to_owned(),
                        index,
                        reason,
                    }
                    .into());
                }
            }
        }
        // 3. One batch; the checkpoint with it when the chunk completes the target.
        batch.hashes = pending.into_writes();
        batch.state = self.state.take_changes().into();
        if end == target.size {
            batch.checkpoint = Some((target.size, target_note.to_owned()));
        }
        batch
            .local
            .push((TARGET_KEY.to_vec(), target_note.as_bytes().to_vec()));
        self.staging.stage(end, &batch);
        Ok(StagedChunk {
            store: self.store.clone(),
            written: self.written.clone(),
            batch,
            start,
            end,
            sync: true,
            target_note: target_note.to_owned(),
            completes: (end == target.size).then(|| target.clone()),
        })
    }

    /// Takes back a chunk of [`Mirror::stage_checked`] once [`StagedChunk::write`] succeeded:
    /// its entries count in [`Mirror::size`], and its target is accepted when it completes
    /// it. Chunks land in the order they were staged.
    pub fn landed(&mut self, staged: StagedChunk) -> Result<(), MirrorError> {
        if staged.start != self.durable || staged.end > self.state.size() {
            return Err(MirrorError::Usage(format!(
                "chunk {}..{} landed with {} entries stored and {} verified",
                staged.start,
                staged.end,
                self.durable,
                self.state.size()
            )));
        }
        self.staging.land(staged.end);
        self.durable = staged.end;
        self.target_note = Some(staged.target_note);
        if let Some(checkpoint) = staged.completes {
            self.accepted = Some(Accepted {
                checkpoint,
                note: self.target_note.clone().unwrap_or_default(),
            });
        }
        Ok(())
    }

    /// Drops every chunk staged and not landed (a write failed: the chunks staged after it
    /// were replayed on top of it) and reloads the state from the store.
    pub fn discard_staged(&mut self) -> Result<(), MirrorError> {
        // Taken first: a chunk being written lands on disk before what is staged goes.
        let order = self.written.clone();
        let mut written = order.lock().expect("mirror write lock");
        self.staging.clear();
        self.reload()?;
        self.durable = self.state.size();
        *written = self.durable;
        Ok(())
    }

    /// Accepts `target` (checked with [`Mirror::check_checkpoint`] and
    /// [`Mirror::check_consistency`]) when the mirror already holds its entries, verified
    /// against a larger signed checkpoint before a restart: its root must match the stored
    /// tree, or the two signed notes contradict each other (`fork`).
    pub fn accept_covered(
        &mut self,
        target: &Checkpoint,
        target_note: &str,
    ) -> Result<(), MirrorError> {
        if target.size > self.durable || target.size < self.accepted_parts().0 {
            return Err(MirrorError::Usage(
                "target does not cover the mirror".into(),
            ));
        }
        if merkle::root(target.size, &self.store)? != target.root {
            let other = self
                .target_note
                .clone()
                .unwrap_or_else(|| self.accepted_parts().2);
            return Err(Misbehaviour::Fork {
                accepted_note: other,
                new_note: target_note.to_owned(),
                size: target.size,
            }
            .into());
        }
        self.store.put_checkpoint(target.size, target_note, true)?;
        self.accepted = Some(Accepted {
            checkpoint: target.clone(),
            note: target_note.to_owned(),
        });
        Ok(())
    }

    /// The root of the first `size` verified entries (`None` beyond them).
    pub fn root_at(&self, size: u64) -> Result<Option<Hash>, MirrorError> {
        if size > self.durable {
            return Ok(None);
        }
        Ok(Some(merkle::root(size, &self.store)?))
    }

    /// The latest signed note the mirror verified entries against (accepted or in progress).
    pub fn latest_note(&self) -> Option<String> {
        self.target_note
            .clone()
            .or_else(|| self.accepted.as_ref().map(|a| a.note.clone()))
    }

    /// Pins another key on a mirror that holds nothing yet.
    pub fn repin(&mut self, verifier: NoteVerifier) -> Result<(), MirrorError> {
        if self.state.size() > 0 || self.accepted.is_some() {
            return Err(MirrorError::Usage(
                "a mirror holding entries cannot change its pinned key".into(),
            ));
        }
        self.verifier = verifier;
        Ok(())
    }

    /// Discards in-memory changes by reloading the state from the store and the chunks
    /// staged on it.
    fn reload(&mut self) -> Result<(), MirrorError> {
        self.state = self
            .store
            .open_state_over(self.staging.clone())
            .map_err(crate::log::LogError::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::checkpoint::{sign_checkpoint, NoteSigner};
    use ledger::entry::{Earn, EntryKind, Redeem};
    use ledger::merkle::MemoryTree;
    use ledger::types::LogTime;

    struct Partner {
        signer: NoteSigner,
        entries: Vec<Vec<u8>>,
        tree: MemoryTree,
    }

    impl Partner {
        fn new() -> Partner {
            Partner {
                signer: NoteSigner::from_seed("loyalty.example/p", &[7; 32]).unwrap(),
                entries: Vec::new(),
                tree: MemoryTree::new(),
            }
        }
        fn push(&mut self, kind: EntryKind) {
            let i = self.entries.len() as u64;
            let e = Entry {
                time: LogTime::new(1_000 + i).unwrap(),
                id: format!("e{i}").parse().unwrap(),
                kind,
            };
            let b = e.to_bytes();
            self.tree.push(&b).unwrap();
            self.entries.push(b);
        }
        fn earn(&mut self, n: usize) {
            for _ in 0..n {
                self.push(EntryKind::Earn(Earn {
                    member: "m1".parse().unwrap(),
                    points: ledger::types::Points::new(10).unwrap(),
                    qualifying: true,
                }));
            }
        }
        fn note(&self, size: u64) -> (Checkpoint, String) {
            let cp = Checkpoint {
                origin: self.signer.name().into(),
                size,
                root: self.tree.root_at(size).unwrap(),
                extensions: vec![],
            };
            let note = sign_checkpoint(&cp, &self.signer).unwrap().to_string();
            (cp, note)
        }
    }

    fn sync(m: &mut Mirror, p: &Partner, size: u64, chunk: u64) -> Result<(), MirrorError> {
        let (_, note) = p.note(size);
        let Some(cp) = m.check_checkpoint(&note)? else {
            return Ok(());
        };
        let old = m.accepted().map_or(0, |a| a.checkpoint.size);
        let proof = if old == 0 {
            vec![]
        } else {
            p.tree.consistency_proof(old, size).unwrap()
        };
        m.check_consistency(&cp, &note, &proof)?;
        while m.size() < size {
            let s = m.size();
            let e = (s + chunk).min(size);
            let proof = if e < size {
                p.tree.consistency_proof(e, size).unwrap()
            } else {
                vec![]
            };
            m.append_verified(s, &p.entries[s as usize..e as usize], &cp, &note, &proof)?;
        }
        Ok(())
    }

    #[test]
    fn honest_log_is_mirrored_in_chunks_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Partner::new();
        p.earn(50);
        let mut m = Mirror::open(dir.path(), p.signer.verifier()).unwrap();
        sync(&mut m, &p, 30, 7).unwrap();
        assert_eq!(m.size(), 30);
        p.earn(20);
        sync(&mut m, &p, 70, 16).unwrap();
        assert_eq!(m.accepted().unwrap().checkpoint.size, 70);
        let balance = m
            .state()
            .member(&"m1".parse().unwrap())
            .unwrap()
            .unwrap()
            .balance;
        drop(m);
        let m = Mirror::open(dir.path(), p.signer.verifier()).unwrap();
        assert_eq!(m.size(), 70);
        assert_eq!(
            m.state()
                .member(&"m1".parse().unwrap())
                .unwrap()
                .unwrap()
                .balance,
            balance
        );
        assert_eq!(balance, 700);
    }

    #[test]
    fn misbehaviour_is_detected_and_nothing_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Partner::new();
        p.earn(10);
        let mut m = Mirror::open(dir.path(), p.signer.verifier()).unwrap();
        sync(&mut m, &p, 10, 100).unwrap();

        // Shrink.
        let (_, small) = p.note(5);
        assert_eq!(m.check_checkpoint(&small).unwrap_err().kind(), "shrink");
        // Fork: same size, other history.
        let mut q = Partner::new();
        q.earn(9);
        q.push(EntryKind::Earn(Earn {
            member: "m2".parse().unwrap(),
            points: ledger::types::Points::new(1).unwrap(),
            qualifying: true,
        }));
        let (_, forked) = q.note(10);
        assert_eq!(m.check_checkpoint(&forked).unwrap_err().kind(), "fork");
        // Forged signature: another key, same origin.
        let forger = NoteSigner::from_seed("loyalty.example/p", &[8; 32]).unwrap();
        let cp = Checkpoint {
            origin: forger.name().into(),
            size: 11,
            root: [0; 32],
            extensions: vec![],
        };
        let forged = sign_checkpoint(&cp, &forger).unwrap().to_string();
        assert_eq!(
            m.check_checkpoint(&forged).unwrap_err().kind(),
            "bad_signature"
        );
        // Inconsistent: a larger tree that does not extend ours.
        q.earn(5);
        let (qcp, qnote) = q.note(15);
        // q is signed by the same key (same seed) — a real equivocation.
        let c = m.check_checkpoint(&qnote).unwrap().unwrap();
        let bad = m.check_consistency(&c, &qnote, &q.tree.consistency_proof(10, 15).unwrap());
        assert_eq!(bad.unwrap_err().kind(), "inconsistent");
        // Rewritten entries under an honest root.
        p.earn(5);
        let (cp, note) = p.note(15);
        let mut served = p.entries[10..15].to_vec();
        served[2] = q.entries[9].clone();
        let err = m.append_verified(10, &served, &cp, &note, &[]).unwrap_err();
        assert!(matches!(err, MirrorError::Misbehaviour(ref b) if b.kind() == "bad_entries"));
        assert_eq!(m.size(), 10);
        let _ = qcp;
        // An invalid entry under a valid signature.
        p.push(EntryKind::Redeem(Redeem {
            member: "nobody".parse().unwrap(),
            points: ledger::types::Points::new(1).unwrap(),
        }));
        let (cp, note) = p.note(16);
        let err = m
            .append_verified(10, &p.entries[10..16], &cp, &note, &[])
            .unwrap_err();
        assert!(matches!(err, MirrorError::Misbehaviour(ref b) if b.kind() == "invalid_entry"));
        assert_eq!(m.size(), 10);
        drop(m);
        let m = Mirror::open(dir.path(), p.signer.verifier()).unwrap();
        assert_eq!(m.size(), 10);
        assert_eq!(m.accepted().unwrap().checkpoint.size, 10);
    }

    #[test]
    fn a_chunk_checked_in_parts_is_appended_as_one_and_a_mismatched_one_is_refused() {
        let mut p = Partner::new();
        p.earn(9);
        let dir = tempfile::tempdir().unwrap();
        let mut m = Mirror::open(dir.path(), p.signer.verifier()).unwrap();
        let (_, note) = p.note(9);
        let cp = m.check_checkpoint(&note).unwrap().unwrap();
        let parts = vec![
            CheckedChunk::check(p.entries[..4].to_vec()),
            CheckedChunk::check(p.entries[4..].to_vec()),
        ];
        let whole = CheckedChunk::concat(parts);
        assert_eq!(whole.len(), 9);
        // A chunk whose parts do not line up is a caller's mistake, not evidence.
        let mut broken = CheckedChunk::check(p.entries.clone());
        broken.leaves.pop();
        assert!(matches!(
            m.append_checked(0, broken, &cp, &note, &[]),
            Err(MirrorError::Usage(_))
        ));
        assert_eq!(m.size(), 0);
        m.append_checked(0, whole, &cp, &note, &[]).unwrap();
        assert_eq!(m.size(), 9);
        assert_eq!(m.accepted().unwrap().checkpoint.size, 9);
    }

    /// Stages `p`'s entries `start..end` against the signed checkpoint of size `size`.
    fn stage(m: &mut Mirror, p: &Partner, start: u64, end: u64, size: u64) -> StagedChunk {
        let (cp, note) = p.note(size);
        let proof = if end < size {
            p.tree.consistency_proof(end, size).unwrap()
        } else {
            vec![]
        };
        let chunk = CheckedChunk::check(p.entries[start as usize..end as usize].to_vec());
        m.stage_checked(start, chunk, &cp, &note, &proof).unwrap()
    }

    fn balance(m: &Mirror, member: &str) -> u64 {
        m.state()
            .member(&member.parse().unwrap())
            .unwrap()
            .map_or(0, |s| s.balance)
    }

    #[test]
    fn a_chunk_is_replayed_on_the_one_staged_before_it_and_counts_once_it_landed() {
        let mut p = Partner::new();
        p.earn(30);
        let dir = tempfile::tempdir().unwrap();
        let mut m = Mirror::open(dir.path(), p.signer.verifier()).unwrap();
        let (_, note) = p.note(30);
        m.check_checkpoint(&note).unwrap().unwrap();
        let first = stage(&mut m, &p, 0, 10, 30);
        // The second chunk is replayed and hashed on top of the first, not written yet.
        let second = stage(&mut m, &p, 10, 25, 30);
        assert_eq!((m.size(), m.verified_size()), (0, 25));
        assert_eq!(balance(&m, "m1"), 250);
        // Nothing staged is proven or counted before it landed.
        assert_eq!(m.root_at(10).unwrap(), None);
        // Chunks are written in order only (a later one would put older records over newer).
        assert!(matches!(second.write(), Err(MirrorError::Usage(_))));
        first.write().unwrap();
        m.landed(first).unwrap();
        assert_eq!(m.size(), 10);
        assert_eq!(m.root_at(10).unwrap(), Some(p.tree.root_at(10).unwrap()));
        second.write().unwrap();
        m.landed(second).unwrap();
        let last = stage(&mut m, &p, 25, 30, 30);
        assert!(
            m.accepted().is_none(),
            "the target is accepted when its chunk lands"
        );
        last.write().unwrap();
        m.landed(last).unwrap();
        assert_eq!(m.accepted().unwrap().checkpoint.size, 30);
        drop(m);
        let m = Mirror::open(dir.path(), p.signer.verifier()).unwrap();
        assert_eq!((m.size(), balance(&m, "m1")), (30, 300));
    }

    #[test]
    fn a_failed_write_drops_every_chunk_staged_on_it() {
        let mut p = Partner::new();
        p.earn(30);
        let dir = tempfile::tempdir().unwrap();
        let mut m = Mirror::open(dir.path(), p.signer.verifier()).unwrap();
        let (_, note) = p.note(30);
        m.check_checkpoint(&note).unwrap().unwrap();
        let first = stage(&mut m, &p, 0, 10, 30);
        first.write().unwrap();
        m.landed(first).unwrap();
        // The second chunk's write "fails" (it is never written); the third was staged on it.
        let second = stage(&mut m, &p, 10, 20, 30);
        let third = stage(&mut m, &p, 20, 30, 30);
        m.discard_staged().unwrap();
        assert_eq!(
            (m.size(), m.verified_size(), balance(&m, "m1")),
            (10, 10, 100)
        );
        // The third cannot land on what is stored, and a synchronous append refuses to run
        // while chunks are staged.
        assert!(matches!(m.landed(third), Err(MirrorError::Usage(_))));
        drop(second);
        let again = stage(&mut m, &p, 10, 20, 30);
        let (cp, note) = p.note(30);
        let chunk = CheckedChunk::check(p.entries[20..30].to_vec());
        assert!(matches!(
            m.append_checked(20, chunk, &cp, &note, &[]),
            Err(MirrorError::Usage(_))
        ));
        again.write().unwrap();
        m.landed(again).unwrap();
        sync(&mut m, &p, 30, 16).unwrap();
        assert_eq!((m.size(), balance(&m, "m1")), (30, 300));
        drop(m);
        let m = Mirror::open(dir.path(), p.signer.verifier()).unwrap();
        assert_eq!((m.size(), balance(&m, "m1")), (30, 300));
    }

    #[test]
    fn an_invalid_entry_in_a_staged_chunk_keeps_the_chunk_staged_before_it() {
        let mut p = Partner::new();
        p.earn(10);
        p.push(EntryKind::Redeem(Redeem {
            member: "nobody".parse().unwrap(),
            points: ledger::types::Points::new(1).unwrap(),
        }));
        let dir = tempfile::tempdir().unwrap();
        let mut m = Mirror::open(dir.path(), p.signer.verifier()).unwrap();
        let (cp, note) = p.note(11);
        m.check_checkpoint(&note).unwrap().unwrap();
        let first = stage(&mut m, &p, 0, 8, 11);
        let chunk = CheckedChunk::check(p.entries[8..11].to_vec());
        let err = m.stage_checked(8, chunk, &cp, &note, &[]).err().unwrap();
        assert!(matches!(err, MirrorError::Misbehaviour(ref b) if b.kind() == "invalid_entry"));
        // The state is the first chunk's again, which still lands.
        assert_eq!((m.verified_size(), balance(&m, "m1")), (8, 80));
        first.write().unwrap();
        m.landed(first).unwrap();
        assert_eq!(m.size(), 8);
    }
}
