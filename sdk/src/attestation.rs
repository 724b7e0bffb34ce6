//! Tier attestations (spec/federation.md §6), verified offline.
//!
//! An [`Attestation`] is what `POST /v1/members/{member}/attestation` answers (see
//! [`crate::Client::attestation`]): a brand's [`Statement`] "member M holds tier T until U"
//! and the receipt of the `tier_attestation` entry that makes it, under a checkpoint cosigned
//! by the brand's witnesses. [`verify`] checks it with nothing but the brand's pinned key and
//! the verifier's own witness policy (built with [`witness_policy`]); it is the ledger's
//! [`ledger::attestation::verify`], so the node and every client decide alike.

pub use ledger::attestation::{
    verify, witness_key_from_log_key, Attestation, AttestationError, Statement, VerifiedAttestation,
};

pub use crate::federation::witness_policy;

use crate::error::Error;

/// Largest attestation document [`from_json`] reads, in bytes: a checkpoint note of at most
/// 1 MiB, an entry of at most 16 KiB and an inclusion proof fit with room to spare.
pub const ATTESTATION_BYTES_MAX: usize = 2 * 1024 * 1024;

/// Decodes an attestation document (the JSON of spec/federation.md §6), refusing unknown
/// fields and documents over [`ATTESTATION_BYTES_MAX`]. Decoding proves nothing: call
/// [`verify`].
pub fn from_json(bytes: &[u8]) -> Result<Attestation, Error> {
    if bytes.len() > ATTESTATION_BYTES_MAX {
        return Err(Error::Invalid(format!(
            "an attestation is at most {ATTESTATION_BYTES_MAX} bytes, not {}",
            bytes.len()
        )));
    }
    serde_json::from_slice(bytes).map_err(|e| Error::Invalid(format!("not an attestation: {e}")))
}
