//! The standby: a verified mirror of its own brand's log (the same [`Mirror`] code that
//! follows partners), in the node's own store, so that it can take over.
//!
//! It learns entries two ways. The primary ships every batch before committing it
//! ([`StandbyLog::receive`]); the standby checks the batch against the primary's signed note
//! and **stages** it (one synced record) before acknowledging. A staged batch is not yet
//! committed: it is applied to the mirror only once it is known committed: when the next
//! signed batch starts where it ends (the primary moves on only after the commit), when the
//! primary publishes a checkpoint covering it, or at takeover when the committed head in the
//! coordination store equals it. Besides, a pull loop catches up from the primary's public
//! log routes, as a partner's mirror does.
//!
//! Invariants:
//! - the mirror (what reads and tiles serve) only ever holds committed entries, each verified
//!   against a note signed by the brand's key and replayed by the state machine;
//! - an acknowledged batch is durable here (staged or applied) before the answer;
//! - a staged batch that the committed head does not cover is dropped, never applied.

use std::sync::Arc;

use ledger::checkpoint::{open_checkpoint, Checkpoint, NoteVerifier};
use ledger::merkle::{self, Hash, PendingHashes};
use ledger_store::mirror::{Mirror, MirrorError, CHUNK_ENTRIES_MAX};
use serde::Deserialize;

use super::{ReplicateAnswer, ReplicateBody};
use crate::sequencer::Shared;

/// Node-local record holding the staged batch.
const STAGED_KEY: &[u8] = b"ha/staged";
/// Node-local record holding a batch known committed and not yet applied (empty: none).
const PROVEN_KEY: &[u8] = b"ha/proven";

/// A batch acknowledged but not yet known committed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Staged {
    start: u64,
    entries: Vec<Vec<u8>>,
    note: String,
}

/// The staged record of an earlier release (JSON, entries as text), still read.
#[derive(Deserialize)]
struct StagedJson {
    start: u64,
    entries: Vec<String>,
    note: String,
}

impl Staged {
    fn end(&self) -> u64 {
        self.start + self.entries.len() as u64
    }

    /// The node-local record: the replication body's layout.
    fn encode(&self) -> Vec<u8> {
        ReplicateBody {
            epoch: 0,
            start: self.start,
            entries: self.entries.clone(),
            note: self.note.clone(),
        }
        .encode()
    }

    fn decode(bytes: &[u8]) -> Option<Staged> {
        if let Ok(b) = ReplicateBody::decode(bytes) {
            return Some(Staged {
                start: b.start,
                entries: b.entries,
                note: b.note,
            });
        }
        let j: StagedJson = serde_json::from_slice(bytes).ok()?;
        Some(Staged {
            start: j.start,
            entries: j.entries.into_iter().map(String::into_bytes).collect(),
            note: j.note,
        })
    }
}

/// Why a shipped batch was not staged.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The batch does not start where this standby stands (the answer says where it does).
    #[error("the batch starts at {start}, this standby holds {size}")]
    Position { start: u64, size: u64 },
    /// The batch is not what the brand's key signed.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Mirror(#[from] MirrorError),
}

/// The standby's log: the mirror plus at most one staged batch.
pub struct StandbyLog {
    mirror: Mirror,
    /// A batch known committed (the primary shipped the next one), applied to the mirror
    /// right after the answer ([`StandbyLog::apply_proven`]), off the primary's commit path.
    proven: Option<Staged>,
    staged: Option<Staged>,
    shared: Arc<Shared>,
}

fn root_hex(h: &Hash) -> String {
    hex::encode(h)
}

impl StandbyLog {
    /// Opens the node's store as a mirror of its own log (key `verifier`).
    pub fn open(
        dir: &std::path::Path,
        verifier: NoteVerifier,
        config: ledger_store::store::StoreConfig,
    ) -> Result<StandbyLog, MirrorError> {
        let mirror = Mirror::open_with(dir, verifier, config)?;
        let proven = match mirror.store().local_get(PROVEN_KEY)? {
            Some(v) if !v.is_empty() => Staged::decode(&v).filter(|s| s.start == mirror.size()),
            _ => None,
        };
        let (size, note) = mirror
            .accepted()
            .map(|a| (a.checkpoint.size, a.note.clone()))
            .unwrap_or((0, String::new()));
        let mut log = StandbyLog {
            mirror,
            proven,
            staged: None,
            shared: Shared::for_standby(size, note),
        };
        log.apply_proven()?;
        log.staged = match log.mirror.store().local_get(STAGED_KEY)? {
            Some(v) => Staged::decode(&v).filter(|s| s.start == log.mirror.size()),
            None => None,
        };
        Ok(log)
    }

    /// Applies the batch known committed, if any (unsynced: its record, synced before, brings
    /// it back after a crash), and publishes it.
    pub fn apply_proven(&mut self) -> Result<(), MirrorError> {
        let Some(p) = self.proven.take() else {
            return Ok(());
        };
        let clear = vec![(PROVEN_KEY.to_vec(), Vec::new())];
        let cp = match self.mirror.check_checkpoint(&p.note) {
            Ok(Some(cp)) => cp,
            Ok(None) => {
                self.mirror
                    .store()
                    .local_write(&[(PROVEN_KEY.to_vec(), None)])?;
                return Ok(());
            }
            Err(m) => {
                self.proven = Some(p);
                return Err(m.into());
            }
        };
        if let Err(e) =
            self.mirror
                .append_verified_with(p.start, &p.entries, &cp, &p.note, &[], clear, false)
        {
            self.proven = Some(p);
            return Err(e);
        }
        self.shared.set_checkpoint(cp.size, p.note.clone());
        Ok(())
    }

    /// What reads share (the latest committed checkpoint held).
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// The store, for reads.
    pub fn store(&self) -> ledger_store::store::Store {
        self.mirror.store().clone()
    }

    /// Entries held as committed.
    pub fn size(&self) -> u64 {
        self.mirror.size()
    }

    /// Where the staged batch ends, if one is staged.
    pub fn staged_end(&self) -> Option<u64> {
        self.staged.as_ref().map(Staged::end)
    }

    /// The root of the first `size` committed entries held.
    pub fn root_at(&self, size: u64) -> Result<Option<Hash>, MirrorError> {
        self.mirror.root_at(size)
    }

    fn answer(&self) -> ReplicateAnswer {
        ReplicateAnswer {
            size: self.mirror.size(),
            staged_end: self.staged_end(),
        }
    }

    fn open_note(&self, note: &str) -> Result<Checkpoint, ReceiveError> {
        open_checkpoint(note, self.mirror.verifier())
            .map(|(cp, _)| cp)
            .map_err(|e| ReceiveError::Invalid(format!("the note does not verify: {e}")))
    }

    /// The root over the committed entries followed by `more`.
    fn root_with(&self, more: &[&Vec<u8>]) -> Result<Hash, MirrorError> {
        let mut pending = PendingHashes::new(self.mirror.store(), self.mirror.size());
        for e in more {
            pending.push(merkle::leaf_hash(e))?;
        }
        Ok(pending.root()?)
    }

    /// Applies the staged batch to the mirror (it is known committed) and publishes it.
    fn apply_staged(&mut self) -> Result<(), MirrorError> {
        self.apply_proven()?;
        let Some(st) = self.staged.take() else {
            return Ok(());
        };
        let cp = match self.mirror.check_checkpoint(&st.note) {
            Ok(Some(cp)) => cp,
            Ok(None) => return Ok(()),
            Err(m) => return Err(m.into()),
        };
        self.mirror.append_verified_with(
            st.start,
            &st.entries,
            &cp,
            &st.note,
            &[],
            vec![(PROVEN_KEY.to_vec(), Vec::new())],
            true,
        )?;
        self.shared.set_checkpoint(cp.size, st.note.clone());
        Ok(())
    }

    fn stage(&mut self, st: Staged) -> Result<(), MirrorError> {
        self.mirror.store().local_put(STAGED_KEY, &st.encode())?;
        self.staged = Some(st);
        Ok(())
    }

    /// Checks a batch shipped by the primary and stages it durably; the answer says where the
    /// standby stands. A batch that starts where the staged one ends proves the staged one
    /// committed (the primary signs the next batch only after the commit), so it is applied
    /// first.
    pub fn receive(&mut self, body: &ReplicateBody) -> Result<ReplicateAnswer, ReceiveError> {
        self.apply_proven()?;
        let cp = self.open_note(&body.note)?;
        let n = body.entries.len() as u64;
        if n == 0 || n > CHUNK_ENTRIES_MAX || body.start.checked_add(n) != Some(cp.size) {
            return Err(ReceiveError::Invalid(format!(
                "a batch of {n} entries from {} does not end at the note's size {} (at most {CHUNK_ENTRIES_MAX})",
                body.start, cp.size
            )));
        }
        let size = self.mirror.size();
        let chained = self.staged.as_ref().filter(|s| s.end() == body.start);
        let next = Staged {
            start: body.start,
            entries: body.entries.clone(),
            note: body.note.clone(),
        };
        if let Some(st) = chained {
            let all: Vec<&Vec<u8>> = st.entries.iter().chain(&body.entries).collect();
            if self.root_with(&all)? != cp.root {
                return Err(ReceiveError::Invalid(
                    "the batch does not extend the staged one to the signed root".into(),
                ));
            }
            // The staged batch is known committed: recorded so, with this one staged, in one
            // synced write; it is applied after the answer ([`StandbyLog::apply_proven`]).
            let proven = self.staged.take().expect("chained");
            self.mirror
                .store()
                .local_write(&[
                    (PROVEN_KEY.to_vec(), Some(proven.encode())),
                    (STAGED_KEY.to_vec(), Some(next.encode())),
                ])
                .map_err(MirrorError::from)?;
            self.proven = Some(proven);
            self.staged = Some(next);
        } else if body.start == size {
            let all: Vec<&Vec<u8>> = body.entries.iter().collect();
            if self.root_with(&all)? != cp.root {
                return Err(ReceiveError::Invalid(
                    "the entries do not hash to the signed root".into(),
                ));
            }
            self.stage(next)?;
        } else {
            return Err(ReceiveError::Position {
                start: body.start,
                size,
            });
        }
        Ok(self.answer())
    }

    /// Where this standby stands.
    pub fn position(&self) -> ReplicateAnswer {
        self.answer()
    }

    /// Settles the staged batch against a committed head (`size`, `root` hex): applied when
    /// the head is exactly its end, dropped when the head does not cover it.
    pub fn settle(&mut self, size: u64, root: &str) -> Result<(), MirrorError> {
        self.apply_proven()?;
        let Some(st) = &self.staged else {
            return Ok(());
        };
        if st.end() == size {
            let all: Vec<&Vec<u8>> = st.entries.iter().collect();
            if root_hex(&self.root_with(&all)?) == root {
                return self.apply_staged();
            }
        }
        // Not exactly the committed head: either never committed (and it never will be, the
        // head moved on under another epoch) or covered by more; the pull fetches the rest.
        self.staged = None;
        self.mirror
            .store()
            .local_write(&[(STAGED_KEY.to_vec(), None)])?;
        Ok(())
    }

    /// Judges a checkpoint note the primary published: `Ok(None)` when nothing is to fetch
    /// (already held, or the staged batch was exactly it and is now applied), else the
    /// checkpoint and the accepted size a consistency proof must start from.
    pub fn judge(&mut self, note: &str) -> Result<Option<(Checkpoint, u64)>, MirrorError> {
        self.apply_proven()?;
        let Some(cp) = self.mirror.check_checkpoint(note)? else {
            return Ok(None);
        };
        if self.staged_end() == Some(cp.size) {
            self.settle(cp.size, &root_hex(&cp.root))?;
            if self.mirror.size() == cp.size {
                return Ok(None);
            }
        }
        let accepted = self.mirror.accepted().map_or(0, |a| a.checkpoint.size);
        Ok(Some((cp, accepted)))
    }

    /// Checks the consistency proof from the accepted checkpoint to `cp`.
    pub fn check_consistency(
        &self,
        cp: &Checkpoint,
        note: &str,
        proof: &[Hash],
    ) -> Result<(), MirrorError> {
        Ok(self.mirror.check_consistency(cp, note, proof)?)
    }

    /// Stores fetched committed entries from the mirror's size (see
    /// [`Mirror::append_verified`]) and publishes `cp` once they reach it.
    pub fn append_pulled(
        &mut self,
        entries: &[Vec<u8>],
        cp: &Checkpoint,
        note: &str,
        proof_to_target: &[Hash],
    ) -> Result<(), MirrorError> {
        self.apply_proven()?;
        let start = self.mirror.size();
        self.mirror
            .append_verified(start, entries, cp, note, proof_to_target)?;
        if self
            .staged
            .as_ref()
            .is_some_and(|s| s.start < self.mirror.size())
        {
            self.staged = None;
            self.mirror
                .store()
                .local_write(&[(STAGED_KEY.to_vec(), None)])?;
        }
        if self.mirror.size() == cp.size {
            self.shared.set_checkpoint(cp.size, note.to_owned());
        }
        Ok(())
    }

    /// Accepts `cp` for entries already held (verified against a larger note before).
    pub fn accept_covered(&mut self, cp: &Checkpoint, note: &str) -> Result<(), MirrorError> {
        self.apply_proven()?;
        self.mirror.accept_covered(cp, note)?;
        self.shared.set_checkpoint(cp.size, note.to_owned());
        Ok(())
    }
}
