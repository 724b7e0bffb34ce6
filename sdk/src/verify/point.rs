//! What a resumable audit keeps between runs besides the replayed state: how far it verified
//! and what it saw of the log.
//!
//! Invariants: `frontier` is the compact tree of exactly the first `size` entries, every one
//! of them proven part of the log that `seen_note` signs (`seen_note`'s size is at least
//! `size`); it is written in the same atomic batch as the state records replayed to `size`.

use ledger::checkpoint::{open_checkpoint, Checkpoint, NoteVerifier};
use ledger::merkle::Hash;
use serde::{Deserialize, Serialize};

use super::frontier::Frontier;

/// The version of [`AuditPoint`]'s encoding.
pub const AUDIT_POINT_V1: u32 = 1;

/// How far an audit got: saved with the replayed state, read back to resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPoint {
    /// Encoding version ([`AUDIT_POINT_V1`]).
    pub v: u32,
    /// The pinned log key the audit verified against (C2SP verifier key).
    pub log_key: String,
    /// Entries verified and replayed.
    pub size: u64,
    /// The compact tree of those entries: hex roots of its perfect subtrees, left to right.
    pub frontier: Vec<String>,
    /// The latest signed checkpoint the audit saw; the log must extend it next time.
    pub seen_note: String,
}

/// Why a saved point cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("the saved audit point is not usable: {0}")]
pub struct PointError(pub String);

impl AuditPoint {
    /// The point after verifying `tree`'s entries of the log whose latest signed note was
    /// `seen_note`.
    pub fn new(key: &NoteVerifier, tree: &Frontier, seen_note: &str) -> AuditPoint {
        AuditPoint {
            v: AUDIT_POINT_V1,
            log_key: key.to_string(),
            size: tree.size(),
            frontier: tree.hashes().iter().map(hex::encode).collect(),
            seen_note: seen_note.to_owned(),
        }
    }

    /// The canonical bytes stored (JSON).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a point serialises")
    }

    /// Parses stored bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<AuditPoint, PointError> {
        let p: AuditPoint =
            serde_json::from_slice(bytes).map_err(|e| PointError(format!("undecodable: {e}")))?;
        if p.v != AUDIT_POINT_V1 {
            return Err(PointError(format!("unknown version {}", p.v)));
        }
        Ok(p)
    }

    /// Checks the point against the pinned key and returns its tree and the checkpoint seen.
    pub fn open(&self, key: &NoteVerifier) -> Result<(Frontier, Checkpoint), PointError> {
        if self.log_key != key.to_string() {
            return Err(PointError(format!(
                "it was saved for the log key {}, not this one",
                self.log_key
            )));
        }
        let hashes = self
            .frontier
            .iter()
            .map(|h| {
                hex::decode(h)
                    .ok()
                    .and_then(|b| Hash::try_from(b).ok())
                    .ok_or_else(|| PointError("a frontier hash is not 32 bytes of hex".into()))
            })
            .collect::<Result<Vec<Hash>, _>>()?;
        let tree = Frontier::from_parts(self.size, hashes)
            .ok_or_else(|| PointError("the frontier does not fit the size".into()))?;
        let (seen, _) = open_checkpoint(&self.seen_note, key)
            .map_err(|e| PointError(format!("the checkpoint seen does not verify: {e}")))?;
        if seen.size < self.size || (seen.size == self.size && seen.root != tree.root()) {
            return Err(PointError(
                "the checkpoint seen does not cover the verified entries".into(),
            ));
        }
        Ok((tree, seen))
    }
}
