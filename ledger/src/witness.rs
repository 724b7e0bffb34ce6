//! Witness policies: which log and witnesses a client trusts, and the check that a checkpoint
//! is signed by the log and cosigned by a quorum of those witnesses (the client's side of
//! `c2sp.org/tlog-cosignature`).
//!
//! In scope: [`WitnessPolicy`] and [`verify_cosigned_checkpoint`]. Out of scope: the witness's
//! own HTTP protocol (`c2sp.org/tlog-witness`, `POST /add-checkpoint`, in the node), the
//! cosignature format ([`crate::cosignature`]).
//!
//! # Invariants
//!
//! * A cosignature that claims a policy witness but does not verify fails the checkpoint;
//!   cosignatures from keys outside the policy are ignored; a witness counts once however
//!   many times it cosigned.
//! * Nothing here reads the clock: cosignature timestamps are returned, not judged.

use crate::checkpoint::{open_checkpoint, Checkpoint, CheckpointError};
use crate::note::{NoteVerifier, SignatureType, SignedNote};

/// Which log and witnesses a client trusts: a checkpoint is accepted when it is signed
/// by `log` and cosigned by at least `quorum` distinct keys from `witnesses`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessPolicy {
    /// The log's Ed25519 (`0x01`) key; its name is the origin.
    pub log: NoteVerifier,
    /// Witness `cosignature/v1` (`0x04`) keys; duplicates count once.
    pub witnesses: Vec<NoteVerifier>,
    /// Minimum number of distinct witnesses that must have cosigned.
    pub quorum: usize,
}

/// One verified witness cosignature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessCosignature {
    /// The witness key (from the policy).
    pub witness: NoteVerifier,
    /// The cosignature's timestamp, seconds since the epoch (not checked for freshness).
    pub timestamp: u64,
}

/// A checkpoint that passed [`verify_cosigned_checkpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// The checkpoint, signed by the policy's log key.
    pub checkpoint: Checkpoint,
    /// The note as parsed (may include signatures from unknown keys).
    pub note: SignedNote,
    /// Distinct policy witnesses with a valid cosignature, in policy order; if a witness
    /// cosigned more than once, the latest timestamp is reported.
    pub cosignatures: Vec<WitnessCosignature>,
}

/// Opens a checkpoint note as [`open_checkpoint`] with `policy.log`, then verifies the
/// cosignatures of the policy's witnesses. A cosignature line that claims a policy
/// witness (name and key ID) but fails to verify is an error
/// ([`NoteError::BadSignature`](crate::note::NoteError::BadSignature)); lines from unknown keys are ignored. Fails with
/// [`CheckpointError::QuorumNotMet`] when fewer than `quorum` distinct witnesses
/// cosigned, and [`CheckpointError::InvalidPolicy`] if a witness key is not type `0x04`.
/// Cosignature timestamps are returned, not judged.
pub fn verify_cosigned_checkpoint(
    note_text: &str,
    policy: &WitnessPolicy,
) -> Result<VerifiedCheckpoint, CheckpointError> {
    if policy
        .witnesses
        .iter()
        .any(|w| w.signature_type() != SignatureType::CosignatureV1)
    {
        return Err(CheckpointError::InvalidPolicy {
            reason: "witness key is not a cosignature/v1 (0x04) key",
        });
    }
    let (checkpoint, note) = open_checkpoint(note_text, &policy.log)?;
    let mut cosignatures: Vec<WitnessCosignature> = Vec::new();
    for w in &policy.witnesses {
        if cosignatures.iter().any(|c| &c.witness == w) {
            continue;
        }
        let mut latest: Option<u64> = None;
        for sig in note.signatures.iter().filter(|s| w.matches(s)) {
            let t = w.verify_cosignature(&note.text, sig)?;
            latest = Some(latest.map_or(t, |l| l.max(t)));
        }
        if let Some(timestamp) = latest {
            cosignatures.push(WitnessCosignature {
                witness: w.clone(),
                timestamp,
            });
        }
    }
    if cosignatures.len() < policy.quorum {
        return Err(CheckpointError::QuorumNotMet {
            got: cosignatures.len(),
            need: policy.quorum,
        });
    }
    Ok(VerifiedCheckpoint {
        checkpoint,
        note,
        cosignatures,
    })
}
