//! Receipts for writes (spec/protocol.md §5): the entry bytes, its index, an inclusion proof
//! and the signed checkpoint that covers it.
//!
//! Invariant: [`Receipt::verify`] succeeds only if the checkpoint is signed by the pinned log
//! key, the entry is canonical, and the inclusion proof places exactly these bytes at this
//! index in the tree the checkpoint commits to.

use serde::{Deserialize, Serialize};

use crate::checkpoint::{open_checkpoint, Checkpoint, CheckpointError, NoteVerifier};
use crate::entry::{Entry, EntryError};
use crate::merkle::{leaf_hash, verify_inclusion, Hash, MerkleError};

/// Proof that an entry is in a brand's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// Position of the entry in the log.
    pub index: u64,
    /// The entry's canonical bytes, as text (they are UTF-8 JSON).
    pub entry: String,
    /// RFC 6962 inclusion proof of the entry in the checkpoint's tree, hex hashes.
    pub inclusion_proof: Vec<String>,
    /// The signed checkpoint note the proof is against.
    pub checkpoint: String,
}

/// Why a receipt does not verify.
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("entry: {0}")]
    Entry(#[from] EntryError),
    #[error("inclusion proof: {0}")]
    Proof(#[from] MerkleError),
    #[error("malformed proof hash: {0}")]
    BadHash(String),
}

/// A receipt that verified: the decoded entry and the checkpoint covering it.
#[derive(Debug, Clone)]
pub struct VerifiedReceipt {
    pub index: u64,
    pub entry: Entry,
    pub checkpoint: Checkpoint,
}

impl Receipt {
    /// Verifies the receipt against the log's pinned verifier key.
    pub fn verify(&self, log_key: &NoteVerifier) -> Result<VerifiedReceipt, ReceiptError> {
        let (checkpoint, _) = open_checkpoint(&self.checkpoint, log_key)?;
        let entry = Entry::from_bytes(self.entry.as_bytes())?;
        let proof = self
            .inclusion_proof
            .iter()
            .map(|h| {
                hex::decode(h)
                    .ok()
                    .and_then(|b| Hash::try_from(b.as_slice()).ok())
                    .ok_or_else(|| ReceiptError::BadHash(h.clone()))
            })
            .collect::<Result<Vec<Hash>, _>>()?;
        verify_inclusion(
            &leaf_hash(self.entry.as_bytes()),
            self.index,
            checkpoint.size,
            &proof,
            &checkpoint.root,
        )?;
        Ok(VerifiedReceipt {
            index: self.index,
            entry,
            checkpoint,
        })
    }
}
