//! Witness cosignatures: the Ed25519 `cosignature/v1` format of the C2SP specification
//! `c2sp.org/tlog-cosignature` (signature type `0x04` of `c2sp.org/signed-note`), byte for
//! byte; see `spec/checkpoint.md` in the repository for the project profile.
//!
//! In scope: the signed message, the cosigner, and the verification of one cosignature line
//! by a `0x04` [`NoteVerifier`]. Out of scope: the HTTP protocol by which a log asks a witness
//! to cosign (`c2sp.org/tlog-witness`, in the node), and which witnesses a client trusts and
//! how many it needs ([`crate::witness`]).
//!
//! # Invariants
//!
//! * A cosigner never reads the clock: the timestamp it commits to is given by the caller,
//!   and verification returns the timestamp to the caller, who decides on freshness.
//! * Timestamps above [`MAX_COSIGNATURE_TIME`] are neither produced nor accepted.

use std::fmt;

use ed25519_dalek::{Signer as _, SigningKey};
use rand_core::CryptoRngCore;

use crate::note::{
    check_key_name, key_id, validate_note_text, verifier_key_string, NoteError, NoteSignature,
    NoteVerifier, SignatureType, COSIGNATURE_V1_LEN,
};

/// The header line (with its newline) that starts every `cosignature/v1` signed message.
pub const COSIGNATURE_V1_HEADER: &str = "cosignature/v1\n";

/// Largest timestamp a `cosignature/v1` may carry (2^63 - 1), per c2sp.org/tlog-cosignature.
pub const MAX_COSIGNATURE_TIME: u64 = i64::MAX as u64;

/// The message a `cosignature/v1` signs: `"cosignature/v1\ntime <t>\n"` followed by the
/// checkpoint note text (including its final newline, excluding signature lines).
pub fn cosignature_message(checkpoint_text: &str, time_unix_s: u64) -> String {
    format!("{COSIGNATURE_V1_HEADER}time {time_unix_s}\n{checkpoint_text}")
}

/// A witness cosigner (signature type `0x04`, c2sp.org/tlog-cosignature, Ed25519).
/// Its signatures commit to a timestamp given by the caller; it never reads the clock.
#[derive(Clone)]
pub struct CosignatureSigner {
    name: String,
    key: SigningKey,
    key_id: [u8; 4],
}

impl fmt::Debug for CosignatureSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CosignatureSigner")
            .field("name", &self.name)
            .field("key_id", &hex::encode(self.key_id))
            .finish_non_exhaustive()
    }
}

impl CosignatureSigner {
    /// A cosigner named `name` with `key`; fails with [`NoteError::InvalidKeyName`] on a
    /// bad name. A key MUST NOT be shared between cosigners (the message does not commit
    /// to the name).
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let key_id = key_id(
            name,
            SignatureType::CosignatureV1,
            key.verifying_key().as_bytes(),
        );
        Ok(CosignatureSigner {
            name: name.to_owned(),
            key,
            key_id,
        })
    }

    /// A cosigner from a 32-byte RFC 8032 secret seed (deterministic).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        Self::new(name, SigningKey::from_bytes(seed))
    }

    /// A cosigner with a fresh key drawn from `rng` (for example `rand_core::OsRng`).
    pub fn generate<R: CryptoRngCore + ?Sized>(name: &str, rng: &mut R) -> Result<Self, NoteError> {
        Self::new(name, SigningKey::generate(rng))
    }

    /// The cosigner's key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key ID, `SHA-256(name || 0x0A || 0x04 || public key)[:4]`.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The verifier key string `<name>+<hex id>+<base64(0x04 || public key)>`.
    pub fn verifier_key_string(&self) -> String {
        verifier_key_string(
            &self.name,
            SignatureType::CosignatureV1,
            self.key_id,
            &self.public_key(),
        )
    }

    /// The verifier for this cosigner's cosignatures.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            signature_type: SignatureType::CosignatureV1,
            key: self.key.verifying_key(),
        }
    }

    /// Cosigns a checkpoint note text at `time_unix_s` (seconds since the epoch, given by
    /// the caller). The returned signature bytes are `timestamp (8 bytes, big-endian) ||
    /// Ed25519 signature` over [`cosignature_message`]. Fails if the text is not a valid
    /// note text or the time exceeds [`MAX_COSIGNATURE_TIME`]. It does not check that the
    /// text is a checkpoint: a witness must do that (and check consistency) first.
    pub fn cosign(
        &self,
        checkpoint_text: &str,
        time_unix_s: u64,
    ) -> Result<NoteSignature, NoteError> {
        validate_note_text(checkpoint_text)?;
        if time_unix_s > MAX_COSIGNATURE_TIME {
            return Err(NoteError::Malformed {
                reason: "cosignature timestamp exceeds 2^63-1",
            });
        }
        let msg = cosignature_message(checkpoint_text, time_unix_s);
        let sig = self.key.sign(msg.as_bytes());
        let mut bytes = Vec::with_capacity(COSIGNATURE_V1_LEN);
        bytes.extend_from_slice(&time_unix_s.to_be_bytes());
        bytes.extend_from_slice(&sig.to_bytes());
        Ok(NoteSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            signature: bytes,
        })
    }
}

impl NoteVerifier {
    /// Verifies a `cosignature/v1` over the checkpoint note text `text` and returns its
    /// timestamp (seconds since the epoch). The caller judges freshness. Fails with
    /// [`NoteError::WrongSignatureType`] for a `0x01` key, [`NoteError::UnknownKey`] if
    /// name or ID differ, [`NoteError::BadSignature`] if the signature (which covers the
    /// timestamp) does not verify or the timestamp exceeds 2^63-1.
    pub fn verify_cosignature(&self, text: &str, sig: &NoteSignature) -> Result<u64, NoteError> {
        if self.signature_type != SignatureType::CosignatureV1 {
            return Err(NoteError::WrongSignatureType {
                expected: SignatureType::CosignatureV1,
                got: self.signature_type,
            });
        }
        self.check_matches(sig)?;
        let bad = || NoteError::BadSignature {
            name: sig.name.clone(),
            key_id: sig.key_id,
        };
        if sig.signature.len() != COSIGNATURE_V1_LEN {
            return Err(bad());
        }
        let (ts, ed) = sig.signature.split_at(8);
        let ts: [u8; 8] = ts.try_into().map_err(|_| bad())?;
        let time = u64::from_be_bytes(ts);
        if time > MAX_COSIGNATURE_TIME {
            return Err(bad());
        }
        let msg = cosignature_message(text, time);
        self.check_ed25519(msg.as_bytes(), ed, sig)?;
        Ok(time)
    }
}
