//! Transparency-log checkpoints: the format of the C2SP specification
//! `c2sp.org/tlog-checkpoint`, byte for byte, as used by the federated loyalty ledger (see
//! `spec/checkpoint.md` in the repository for the exact project profile).
//!
//! The C2SP specifications this ledger implements each have their own module:
//! [`crate::note`] (`c2sp.org/signed-note`), this one (`c2sp.org/tlog-checkpoint`),
//! [`crate::cosignature`] (`c2sp.org/tlog-cosignature`), [`crate::witness`] (witness
//! policies) and [`crate::tiles`] (`c2sp.org/tlog-tiles`). This module re-exports the items
//! of the first four, so `ledger::checkpoint::*` names the whole signed-checkpoint stack.
//!
//! # Invariants
//!
//! * A [`Checkpoint`] returned by [`Checkpoint::parse_text`] satisfies
//!   `Checkpoint::parse_text(&cp.to_text()) == Ok(cp)` and vice versa for the text.
//! * Signature checks never consult the clock.
//! * No function in this module panics on untrusted input; every rejection is a
//!   [`CheckpointError`] variant.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

pub use crate::cosignature::*;
pub use crate::note::*;

/// Errors from parsing, signing and verifying checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The signed note around the checkpoint, or a key, was rejected.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// The checkpoint body does not follow c2sp.org/tlog-checkpoint; `reason` says why.
    #[error("malformed checkpoint: {reason}")]
    Malformed {
        /// A fixed, human-readable description of the violated rule.
        reason: &'static str,
    },
    /// The checkpoint's origin line differs from the log key's name.
    #[error("checkpoint origin {got:?} does not match the log key name {expected:?}")]
    OriginMismatch {
        /// The log key's name (the expected origin).
        expected: String,
        /// The origin line of the checkpoint.
        got: String,
    },
    /// The note carries no signature by the log's key.
    #[error("checkpoint is not signed by the log key {origin:?}")]
    MissingLogSignature {
        /// The log key's name.
        origin: String,
    },
    /// The witness policy itself is unusable (for example, a witness key of the wrong type).
    #[error("invalid witness policy: {reason}")]
    InvalidPolicy {
        /// A fixed, human-readable description of the problem.
        reason: &'static str,
    },
    /// Fewer distinct policy witnesses than the quorum produced a valid cosignature.
    #[error("witness quorum not met: {got} of {need} cosignatures")]
    QuorumNotMet {
        /// Number of distinct policy witnesses with a valid cosignature.
        got: usize,
        /// The policy's quorum.
        need: usize,
    },
}

// ---------------------------------------------------------------------------------
// Checkpoints
// ---------------------------------------------------------------------------------

/// A transparency-log checkpoint (c2sp.org/tlog-checkpoint): the note text
/// `<origin>\n<size>\n<base64 root>\n` followed by optional extension lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    /// The log's origin (equal to the log key's name); non-empty, no control characters.
    pub origin: String,
    /// Number of leaves in the tree.
    pub size: u64,
    /// RFC 6962 Merkle tree root hash.
    pub root: [u8; 32],
    /// Extension lines, without their newlines; each non-empty, no control characters.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// Checks the field rules: origin and extension lines non-empty and free of control
    /// characters (including newline).
    pub fn validate(&self) -> Result<(), CheckpointError> {
        if self.origin.is_empty() {
            return Err(CheckpointError::Malformed {
                reason: "origin is empty",
            });
        }
        if self.origin.chars().any(char::is_control) {
            return Err(CheckpointError::Malformed {
                reason: "origin contains a control character",
            });
        }
        for ext in &self.extensions {
            if ext.is_empty() {
                return Err(CheckpointError::Malformed {
                    reason: "extension line is empty",
                });
            }
            if ext.chars().any(char::is_control) {
                return Err(CheckpointError::Malformed {
                    reason: "extension line contains a control character",
                });
            }
        }
        Ok(())
    }

    /// The checkpoint note text. For a checkpoint that passes [`Checkpoint::validate`],
    /// `Checkpoint::parse_text` of the result returns an equal checkpoint.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        );
        for ext in &self.extensions {
            s.push_str(ext);
            s.push('\n');
        }
        s
    }

    /// Parses a checkpoint note text strictly: at least three newline-terminated lines;
    /// decimal size without sign or leading zeros that fits in u64; root exactly 32
    /// bytes of canonical padded base64; non-empty origin and extension lines without
    /// control characters.
    pub fn parse_text(text: &str) -> Result<Self, CheckpointError> {
        validate_note_text(text)?;
        let body = text.strip_suffix('\n').ok_or(CheckpointError::Malformed {
            reason: "text does not end with a newline",
        })?;
        let mut lines = body.split('\n');
        let missing = CheckpointError::Malformed {
            reason: "checkpoint has fewer than three lines",
        };
        let origin = lines.next().ok_or(missing.clone())?;
        let size = lines.next().ok_or(missing.clone())?;
        let root = lines.next().ok_or(missing)?;
        let cp = Checkpoint {
            origin: origin.to_owned(),
            size: parse_size(size)?,
            root: parse_root(root)?,
            extensions: lines.map(str::to_owned).collect(),
        };
        cp.validate()?;
        Ok(cp)
    }
}

fn parse_size(s: &str) -> Result<u64, CheckpointError> {
    let bad = |reason| CheckpointError::Malformed { reason };
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("tree size is not a decimal number"));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(bad("tree size has a leading zero"));
    }
    s.parse::<u64>()
        .map_err(|_| bad("tree size does not fit in 64 bits"))
}

fn parse_root(s: &str) -> Result<[u8; 32], CheckpointError> {
    let bytes = BASE64.decode(s).map_err(|_| CheckpointError::Malformed {
        reason: "root hash is not canonical padded base64",
    })?;
    bytes.try_into().map_err(|_| CheckpointError::Malformed {
        reason: "root hash is not 32 bytes",
    })
}

/// Signs a checkpoint with the log's key. Fails if the checkpoint is invalid or its
/// origin is not the signer's name (in C2SP the log key's name is the origin).
pub fn sign_checkpoint(
    cp: &Checkpoint,
    signer: &NoteSigner,
) -> Result<SignedNote, CheckpointError> {
    cp.validate()?;
    if cp.origin != signer.name() {
        return Err(CheckpointError::OriginMismatch {
            expected: signer.name().to_owned(),
            got: cp.origin.clone(),
        });
    }
    Ok(SignedNote::sign(&cp.to_text(), &[signer])?)
}

/// Parses a signed checkpoint note and returns the checkpoint and the note only if the
/// note carries a valid signature by `origin_verifier` (an Ed25519 `0x01` key) and the
/// origin line equals the verifier's name. Other signatures are not checked (unknown
/// keys are ignored). Errors: [`CheckpointError::Note`] for a malformed note, wrong key
/// type or invalid log signature, [`CheckpointError::Malformed`],
/// [`CheckpointError::OriginMismatch`], [`CheckpointError::MissingLogSignature`].
pub fn open_checkpoint(
    note_text: &str,
    origin_verifier: &NoteVerifier,
) -> Result<(Checkpoint, SignedNote), CheckpointError> {
    if origin_verifier.signature_type() != SignatureType::Ed25519 {
        return Err(NoteError::WrongSignatureType {
            expected: SignatureType::Ed25519,
            got: origin_verifier.signature_type(),
        }
        .into());
    }
    let note = SignedNote::parse(note_text)?;
    let cp = Checkpoint::parse_text(&note.text)?;
    if cp.origin != origin_verifier.name() {
        return Err(CheckpointError::OriginMismatch {
            expected: origin_verifier.name().to_owned(),
            got: cp.origin,
        });
    }
    match verify_note(&note, std::slice::from_ref(origin_verifier)) {
        Ok(_) => Ok((cp, note)),
        Err(NoteError::NoVerifiedSignatures) => Err(CheckpointError::MissingLogSignature {
            origin: origin_verifier.name().to_owned(),
        }),
        Err(e) => Err(e.into()),
    }
}
