//! Signed notes, transparency-log checkpoints and witness cosignatures.
//!
//! This module implements, byte for byte, the formats of the C2SP specifications
//! `c2sp.org/signed-note`, `c2sp.org/tlog-checkpoint` and the Ed25519 flavour of
//! `c2sp.org/tlog-cosignature`, as used by the federated loyalty ledger (see
//! `spec/checkpoint.md` in the repository for the exact project profile).
//!
//! # Invariants
//!
//! * Every [`SignedNote`] returned by [`SignedNote::parse`] satisfies
//!   `note.to_string() == input`: parsing is strict (canonical base64, exactly one
//!   space after the key name, no control characters other than `'\n'`), so there is
//!   only one byte string for each parsed value.
//! * The note text of a parsed note is non-empty, ends in `'\n'`, is at most
//!   [`MAX_NOTE_SIZE`] bytes and contains no ASCII control character other than `'\n'`;
//!   a parsed note carries between 1 and [`MAX_SIGNATURES`] signature lines.
//! * A [`NoteVerifier`] always holds a valid key name, a supported signature type, a
//!   valid Ed25519 point, and a key ID equal to
//!   `SHA-256(name || 0x0A || type || public key)[:4]`.
//! * A [`Checkpoint`] returned by [`Checkpoint::parse_text`] satisfies
//!   `Checkpoint::parse_text(&cp.to_text()) == Ok(cp)` and vice versa for the text.
//! * Signature checks never consult the clock: cosignature timestamps are returned to
//!   the caller, who decides on freshness.
//! * No function in this module panics on untrusted input; every rejection is a
//!   [`NoteError`] or [`CheckpointError`] variant.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};

/// Largest signed note, in bytes (text, blank line and signature lines), that
/// [`SignedNote::parse`] accepts: 1 MiB.
pub const MAX_NOTE_SIZE: usize = 1 << 20;

/// Largest number of signature lines that [`SignedNote::parse`] accepts. The C2SP
/// spec requires accepting at least 16.
pub const MAX_SIGNATURES: usize = 100;

/// The prefix of every signature line: U+2014 EM DASH followed by a space.
pub const SIGNATURE_LINE_PREFIX: &str = "\u{2014} ";

/// The header line (with its newline) that starts every `cosignature/v1` signed message.
pub const COSIGNATURE_V1_HEADER: &str = "cosignature/v1\n";

/// Largest timestamp a `cosignature/v1` may carry (2^63 - 1), per c2sp.org/tlog-cosignature.
pub const MAX_COSIGNATURE_TIME: u64 = i64::MAX as u64;

const ED25519_SIGNATURE_LEN: usize = 64;
const COSIGNATURE_V1_LEN: usize = 8 + ED25519_SIGNATURE_LEN;

// ---------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------

/// Errors from parsing, signing and verifying signed notes and keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The input does not follow the signed-note grammar; `reason` says which rule failed.
    #[error("malformed note: {reason}")]
    Malformed {
        /// A fixed, human-readable description of the violated rule.
        reason: &'static str,
    },
    /// The note (or note text) is larger than the limit.
    #[error("note is {size} bytes, more than the limit of {max}")]
    TooLarge {
        /// Size of the rejected input in bytes.
        size: usize,
        /// The limit, [`MAX_NOTE_SIZE`].
        max: usize,
    },
    /// The note has (or would have) more signature lines than the limit.
    #[error("note has more than {max} signature lines")]
    TooManySignatures {
        /// The limit, [`MAX_SIGNATURES`].
        max: usize,
    },
    /// The input bytes are not valid UTF-8.
    #[error("note is not valid UTF-8")]
    NotUtf8,
    /// A key name is empty or contains whitespace or `'+'`.
    #[error("invalid key name {name:?}")]
    InvalidKeyName {
        /// The rejected name.
        name: String,
    },
    /// A verifier key string does not follow `<name>+<hex id>+<base64 key>`.
    #[error("malformed verifier key: {reason}")]
    MalformedVerifierKey {
        /// A fixed, human-readable description of the violated rule.
        reason: &'static str,
    },
    /// A verifier key string names a key ID that is not the hash of its name and key.
    #[error("verifier key id {} does not match the key (expected {})", hex::encode(.claimed), hex::encode(.computed))]
    KeyIdMismatch {
        /// The key ID written in the string.
        claimed: [u8; 4],
        /// The key ID computed from name, type and public key.
        computed: [u8; 4],
    },
    /// A key uses a signature type byte this module does not implement.
    #[error("unsupported signature type 0x{0:02x}")]
    UnsupportedSignatureType(u8),
    /// An operation needs a key of one signature type but was given another.
    #[error("wrong signature type: expected {expected:?}, got {got:?}")]
    WrongSignatureType {
        /// The type the operation needs.
        expected: SignatureType,
        /// The type of the key given.
        got: SignatureType,
    },
    /// A signature's name and key ID do not belong to the verifier it was checked with.
    #[error("signature by {name}+{} is not from this verifier's key", hex::encode(.key_id))]
    UnknownKey {
        /// Key name on the signature line.
        name: String,
        /// Key ID on the signature line.
        key_id: [u8; 4],
    },
    /// A signature claims a known key (name and key ID match) but does not verify.
    #[error("invalid signature by {name}+{}", hex::encode(.key_id))]
    BadSignature {
        /// Key name on the signature line.
        name: String,
        /// Key ID on the signature line.
        key_id: [u8; 4],
    },
    /// None of the note's signatures is from a known key.
    #[error("note has no signature from a known key")]
    NoVerifiedSignatures,
    /// Two notes to be merged have different texts.
    #[error("notes have different texts")]
    TextMismatch,
}

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
// Keys
// ---------------------------------------------------------------------------------

/// A signed-note signature type identifier byte that this module implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureType {
    /// `0x01`: Ed25519 over the note text (c2sp.org/signed-note).
    Ed25519,
    /// `0x04`: timestamped Ed25519 witness cosignature (c2sp.org/tlog-cosignature).
    CosignatureV1,
}

impl SignatureType {
    /// The identifier byte of this type.
    pub const fn to_byte(self) -> u8 {
        match self {
            SignatureType::Ed25519 => 0x01,
            SignatureType::CosignatureV1 => 0x04,
        }
    }

    /// The type for an identifier byte, or `None` if this module does not implement it.
    pub const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0x01 => Some(SignatureType::Ed25519),
            0x04 => Some(SignatureType::CosignatureV1),
            _ => None,
        }
    }

    /// Length of the signature bytes that follow the key ID on a signature line:
    /// 64 for Ed25519, 8 (timestamp) + 64 for `cosignature/v1`.
    pub const fn signature_len(self) -> usize {
        match self {
            SignatureType::Ed25519 => ED25519_SIGNATURE_LEN,
            SignatureType::CosignatureV1 => COSIGNATURE_V1_LEN,
        }
    }
}

/// Whether `name` is a valid key name: non-empty, no Unicode whitespace, no `'+'`.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

fn check_key_name(name: &str) -> Result<(), NoteError> {
    if is_valid_key_name(name) {
        Ok(())
    } else {
        Err(NoteError::InvalidKeyName {
            name: name.to_owned(),
        })
    }
}

/// The key ID `SHA-256(name || 0x0A || type byte || public key)[:4]`.
pub fn key_id(name: &str, signature_type: SignatureType, public_key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', signature_type.to_byte()]);
    h.update(public_key);
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn verifier_key_string(name: &str, ty: SignatureType, id: [u8; 4], pk: &[u8; 32]) -> String {
    let mut material = Vec::with_capacity(33);
    material.push(ty.to_byte());
    material.extend_from_slice(pk);
    format!("{name}+{}+{}", hex::encode(id), BASE64.encode(material))
}

/// Checks that `text` can be the text of a signed note: non-empty, ends in `'\n'`,
/// at most [`MAX_NOTE_SIZE`] bytes, no ASCII control characters other than `'\n'`.
pub fn validate_note_text(text: &str) -> Result<(), NoteError> {
    if text.len() > MAX_NOTE_SIZE {
        return Err(NoteError::TooLarge {
            size: text.len(),
            max: MAX_NOTE_SIZE,
        });
    }
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed {
            reason: "note text does not end with a newline",
        });
    }
    if has_control_chars(text) {
        return Err(NoteError::Malformed {
            reason: "note contains an ASCII control character other than newline",
        });
    }
    Ok(())
}

fn has_control_chars(s: &str) -> bool {
    s.bytes().any(|b| b < 0x20 && b != b'\n')
}

/// The message a `cosignature/v1` signs: `"cosignature/v1\ntime <t>\n"` followed by the
/// checkpoint note text (including its final newline, excluding signature lines).
pub fn cosignature_message(checkpoint_text: &str, time_unix_s: u64) -> String {
    format!("{COSIGNATURE_V1_HEADER}time {time_unix_s}\n{checkpoint_text}")
}

/// A signer of notes with an Ed25519 key (signature type `0x01`); logs use it to sign
/// checkpoints. The name is always a valid key name.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    key_id: [u8; 4],
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret key.
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &hex::encode(self.key_id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A signer named `name` with `key`; fails with [`NoteError::InvalidKeyName`] if the
    /// name is empty or contains whitespace or `'+'`.
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let key_id = key_id(name, SignatureType::Ed25519, key.verifying_key().as_bytes());
        Ok(NoteSigner {
            name: name.to_owned(),
            key,
            key_id,
        })
    }

    /// A signer from a 32-byte RFC 8032 secret seed (deterministic).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        Self::new(name, SigningKey::from_bytes(seed))
    }

    /// A signer with a fresh key drawn from `rng` (for example `rand_core::OsRng`).
    pub fn generate<R: CryptoRngCore + ?Sized>(name: &str, rng: &mut R) -> Result<Self, NoteError> {
        Self::new(name, SigningKey::generate(rng))
    }

    /// The key name (for a log, its origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key ID, `SHA-256(name || 0x0A || 0x01 || public key)[:4]`.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The verifier key string `<name>+<hex id>+<base64(0x01 || public key)>`.
    pub fn verifier_key_string(&self) -> String {
        verifier_key_string(
            &self.name,
            SignatureType::Ed25519,
            self.key_id,
            &self.public_key(),
        )
    }

    /// The verifier for this signer's signatures.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            signature_type: SignatureType::Ed25519,
            key: self.key.verifying_key(),
        }
    }

    /// Signs the bytes of `text` (the note text, including its final newline). The
    /// result verifies with [`NoteSigner::verifier`] for exactly this text. It does not
    /// check that `text` is a valid note text; use [`SignedNote::sign`] for that.
    pub fn sign(&self, text: &str) -> NoteSignature {
        let sig = self.key.sign(text.as_bytes());
        NoteSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            signature: sig.to_bytes().to_vec(),
        }
    }
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

/// A public key that verifies note signatures (type `0x01`) or cosignatures (type
/// `0x04`). Every value holds a valid name, a valid Ed25519 point and a key ID that
/// matches the hash of name, type and key.
#[derive(Clone, Debug)]
pub struct NoteVerifier {
    name: String,
    key_id: [u8; 4],
    signature_type: SignatureType,
    key: VerifyingKey,
}

impl PartialEq for NoteVerifier {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.key_id == other.key_id
            && self.signature_type == other.signature_type
            && self.key.as_bytes() == other.key.as_bytes()
    }
}

impl Eq for NoteVerifier {}

impl std::hash::Hash for NoteVerifier {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.key_id.hash(state);
        self.signature_type.hash(state);
        self.key.as_bytes().hash(state);
    }
}

impl NoteVerifier {
    /// Parses a verifier key string `<name>+<8 lowercase hex digits>+<base64(type ||
    /// 32-byte key)>`. Rejects invalid names, non-canonical hex or base64, unknown types,
    /// keys that are not valid Ed25519 points, and key IDs that do not match the key.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let (name, rest) = s.split_once('+').ok_or(NoteError::MalformedVerifierKey {
            reason: "missing '+' after the key name",
        })?;
        check_key_name(name)?;
        let (id_hex, key_b64) = rest
            .split_once('+')
            .ok_or(NoteError::MalformedVerifierKey {
                reason: "missing '+' after the key id",
            })?;
        if id_hex.len() != 8
            || !id_hex
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(NoteError::MalformedVerifierKey {
                reason: "key id is not 8 lowercase hex digits",
            });
        }
        let mut claimed = [0u8; 4];
        hex::decode_to_slice(id_hex, &mut claimed).map_err(|_| {
            NoteError::MalformedVerifierKey {
                reason: "key id is not 8 lowercase hex digits",
            }
        })?;
        let material = BASE64
            .decode(key_b64)
            .map_err(|_| NoteError::MalformedVerifierKey {
                reason: "key is not canonical padded base64",
            })?;
        let (&type_byte, pk) = material
            .split_first()
            .ok_or(NoteError::MalformedVerifierKey {
                reason: "key is empty",
            })?;
        let signature_type = SignatureType::from_byte(type_byte)
            .ok_or(NoteError::UnsupportedSignatureType(type_byte))?;
        let pk: [u8; 32] = pk.try_into().map_err(|_| NoteError::MalformedVerifierKey {
            reason: "Ed25519 public key is not 32 bytes",
        })?;
        let computed = key_id(name, signature_type, &pk);
        if computed != claimed {
            return Err(NoteError::KeyIdMismatch { claimed, computed });
        }
        let key = VerifyingKey::from_bytes(&pk).map_err(|_| NoteError::MalformedVerifierKey {
            reason: "not a valid Ed25519 public key",
        })?;
        Ok(NoteVerifier {
            name: name.to_owned(),
            key_id: computed,
            signature_type,
            key,
        })
    }

    /// A verifier from its parts; the key ID is computed. Fails on an invalid name or a
    /// public key that is not a valid Ed25519 point.
    pub fn from_public_key(
        name: &str,
        signature_type: SignatureType,
        public_key: &[u8; 32],
    ) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let key =
            VerifyingKey::from_bytes(public_key).map_err(|_| NoteError::MalformedVerifierKey {
                reason: "not a valid Ed25519 public key",
            })?;
        Ok(NoteVerifier {
            name: name.to_owned(),
            key_id: key_id(name, signature_type, public_key),
            signature_type,
            key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key ID.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The signature type this key verifies.
    pub fn signature_type(&self) -> SignatureType {
        self.signature_type
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Whether `sig`'s name and key ID are this key's (so this key must verify it).
    pub fn matches(&self, sig: &NoteSignature) -> bool {
        sig.name == self.name && sig.key_id == self.key_id
    }

    /// Verifies `sig` over the note text `text` with this key: an Ed25519 signature for a
    /// `0x01` key, a `cosignature/v1` (any timestamp up to 2^63-1) for a `0x04` key.
    /// Fails with [`NoteError::UnknownKey`] if the signature is not from this key's name
    /// and ID, and with [`NoteError::BadSignature`] if it does not verify. Uses strict
    /// Ed25519 verification (no small-order keys or non-canonical encodings).
    pub fn verify(&self, text: &str, sig: &NoteSignature) -> Result<(), NoteError> {
        match self.signature_type {
            SignatureType::Ed25519 => {
                self.check_matches(sig)?;
                self.check_ed25519(text.as_bytes(), &sig.signature, sig)
            }
            SignatureType::CosignatureV1 => self.verify_cosignature(text, sig).map(|_| ()),
        }
    }

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

    fn check_matches(&self, sig: &NoteSignature) -> Result<(), NoteError> {
        if self.matches(sig) {
            Ok(())
        } else {
            Err(NoteError::UnknownKey {
                name: sig.name.clone(),
                key_id: sig.key_id,
            })
        }
    }

    fn check_ed25519(
        &self,
        msg: &[u8],
        sig_bytes: &[u8],
        sig: &NoteSignature,
    ) -> Result<(), NoteError> {
        let bad = || NoteError::BadSignature {
            name: sig.name.clone(),
            key_id: sig.key_id,
        };
        let signature = Signature::from_slice(sig_bytes).map_err(|_| bad())?;
        self.key.verify_strict(msg, &signature).map_err(|_| bad())
    }
}

impl FromStr for NoteVerifier {
    type Err = NoteError;

    /// Same as [`NoteVerifier::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NoteVerifier::parse(s)
    }
}

impl fmt::Display for NoteVerifier {
    /// Writes the verifier key string; `NoteVerifier::parse` of it returns an equal value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&verifier_key_string(
            &self.name,
            self.signature_type,
            self.key_id,
            self.key.as_bytes(),
        ))
    }
}

// ---------------------------------------------------------------------------------
// Signed notes
// ---------------------------------------------------------------------------------

/// One signature line: `— <name> <base64(key_id || signature)>`. For a cosignature
/// `signature` is `timestamp (8 bytes BE) || Ed25519 signature`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NoteSignature {
    /// Key name of the signer.
    pub name: String,
    /// Key ID of the signer.
    pub key_id: [u8; 4],
    /// Signature bytes after the key ID (at least one byte on a parsed line).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// Parses one signature line without its trailing newline. Strict: exact prefix,
    /// valid name, one space, canonical padded base64 of at least 5 bytes.
    pub fn parse_line(line: &str) -> Result<Self, NoteError> {
        let rest = line
            .strip_prefix(SIGNATURE_LINE_PREFIX)
            .ok_or(NoteError::Malformed {
                reason: "signature line does not start with em dash and space",
            })?;
        let (name, b64) = rest.split_once(' ').ok_or(NoteError::Malformed {
            reason: "signature line has no space after the key name",
        })?;
        check_key_name(name)?;
        if b64.is_empty() {
            return Err(NoteError::Malformed {
                reason: "signature line has an empty signature",
            });
        }
        let bytes = BASE64.decode(b64).map_err(|_| NoteError::Malformed {
            reason: "signature is not canonical padded base64",
        })?;
        match bytes.split_first_chunk::<4>() {
            Some((id, sig)) if !sig.is_empty() => Ok(NoteSignature {
                name: name.to_owned(),
                key_id: *id,
                signature: sig.to_vec(),
            }),
            _ => Err(NoteError::Malformed {
                reason: "signature is shorter than key id plus one byte",
            }),
        }
    }

    /// The signature line including its trailing newline.
    pub fn to_line(&self) -> String {
        let mut payload = Vec::with_capacity(4 + self.signature.len());
        payload.extend_from_slice(&self.key_id);
        payload.extend_from_slice(&self.signature);
        format!(
            "{SIGNATURE_LINE_PREFIX}{} {}\n",
            self.name,
            BASE64.encode(payload)
        )
    }
}

/// A signed note: a text and its signature lines, in order. Parsing does not verify
/// signatures; use [`verify_note`] (and never act on the text before that succeeds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedNote {
    /// The note text, ending in `'\n'` (without the blank separator line).
    pub text: String,
    /// The signature lines in order of appearance (duplicates are kept as written).
    pub signatures: Vec<NoteSignature>,
}

impl SignedNote {
    /// Signs a valid note text with each of `signers`, in order.
    pub fn sign(text: &str, signers: &[&NoteSigner]) -> Result<Self, NoteError> {
        validate_note_text(text)?;
        if signers.is_empty() {
            return Err(NoteError::Malformed {
                reason: "a note needs at least one signature",
            });
        }
        if signers.len() > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                max: MAX_SIGNATURES,
            });
        }
        Ok(SignedNote {
            text: text.to_owned(),
            signatures: signers.iter().map(|s| s.sign(text)).collect(),
        })
    }

    /// Parses a signed note from bytes; rejects non-UTF-8 input with [`NoteError::NotUtf8`]
    /// (after the size check), then as [`SignedNote::parse`].
    pub fn parse_bytes(bytes: &[u8]) -> Result<Self, NoteError> {
        if bytes.len() > MAX_NOTE_SIZE {
            return Err(NoteError::TooLarge {
                size: bytes.len(),
                max: MAX_NOTE_SIZE,
            });
        }
        let s = std::str::from_utf8(bytes).map_err(|_| NoteError::NotUtf8)?;
        Self::parse(s)
    }

    /// Parses a signed note. Accepts exactly the strings produced by `to_string` of a
    /// note with a valid text and 1..=[`MAX_SIGNATURES`] valid signature lines; the
    /// text/signature split is at the last blank line. Does not verify signatures.
    pub fn parse(note: &str) -> Result<Self, NoteError> {
        if note.len() > MAX_NOTE_SIZE {
            return Err(NoteError::TooLarge {
                size: note.len(),
                max: MAX_NOTE_SIZE,
            });
        }
        if has_control_chars(note) {
            return Err(NoteError::Malformed {
                reason: "note contains an ASCII control character other than newline",
            });
        }
        let split = note.rfind("\n\n").ok_or(NoteError::Malformed {
            reason: "missing blank line before the signatures",
        })?;
        let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
        if sigs.is_empty() {
            return Err(NoteError::Malformed {
                reason: "note has no signature lines",
            });
        }
        let body = sigs.strip_suffix('\n').ok_or(NoteError::Malformed {
            reason: "last signature line does not end with a newline",
        })?;
        let mut signatures = Vec::new();
        for line in body.split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(NoteError::TooManySignatures {
                    max: MAX_SIGNATURES,
                });
            }
            signatures.push(NoteSignature::parse_line(line)?);
        }
        Ok(SignedNote {
            text: text.to_owned(),
            signatures,
        })
    }

    /// Adds the signatures of `other` (which must have the same text) that are not yet
    /// present by name and key ID; returns how many were added. On error `self` is
    /// unchanged; the result stays within [`MAX_SIGNATURES`] and [`MAX_NOTE_SIZE`].
    pub fn add_signatures(&mut self, other: &SignedNote) -> Result<usize, NoteError> {
        if self.text != other.text {
            return Err(NoteError::TextMismatch);
        }
        let mut seen: HashSet<(String, [u8; 4])> = self
            .signatures
            .iter()
            .map(|s| (s.name.clone(), s.key_id))
            .collect();
        let new: Vec<&NoteSignature> = other
            .signatures
            .iter()
            .filter(|s| seen.insert((s.name.clone(), s.key_id)))
            .collect();
        if self.signatures.len() + new.len() > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                max: MAX_SIGNATURES,
            });
        }
        let size = self.to_string().len() + new.iter().map(|s| s.to_line().len()).sum::<usize>();
        if size > MAX_NOTE_SIZE {
            return Err(NoteError::TooLarge {
                size,
                max: MAX_NOTE_SIZE,
            });
        }
        let added = new.len();
        self.signatures.extend(new.into_iter().cloned());
        Ok(added)
    }

    /// Appends one signature (for example a cosignature) unless one with the same name
    /// and key ID is present; returns whether it was added.
    pub fn push_signature(&mut self, sig: NoteSignature) -> Result<bool, NoteError> {
        let other = SignedNote {
            text: self.text.clone(),
            signatures: vec![sig],
        };
        Ok(self.add_signatures(&other)? == 1)
    }
}

impl fmt::Display for SignedNote {
    /// Writes `text`, a blank line and the signature lines. For any parsed note this
    /// reproduces the parsed bytes exactly.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)?;
        f.write_str("\n")?;
        for s in &self.signatures {
            f.write_str(&s.to_line())?;
        }
        Ok(())
    }
}

/// Verifies `note` against the known keys and returns the distinct known keys that
/// signed it validly, in `verifiers` order. Signatures whose name and key ID match no
/// known key are ignored (per C2SP); a signature that matches a known key but does not
/// verify fails the whole note with [`NoteError::BadSignature`]; a note with no
/// signature from a known key fails with [`NoteError::NoVerifiedSignatures`].
pub fn verify_note<'a>(
    note: &SignedNote,
    verifiers: &'a [NoteVerifier],
) -> Result<Vec<&'a NoteVerifier>, NoteError> {
    validate_note_text(&note.text)?;
    let mut signed = vec![false; verifiers.len()];
    for sig in &note.signatures {
        for (i, v) in verifiers.iter().enumerate() {
            if v.matches(sig) {
                v.verify(&note.text, sig)?;
                signed[i] = true;
            }
        }
    }
    let mut out: Vec<&NoteVerifier> = Vec::new();
    for (v, ok) in verifiers.iter().zip(signed) {
        if ok && !out.contains(&v) {
            out.push(v);
        }
    }
    if out.is_empty() {
        return Err(NoteError::NoVerifiedSignatures);
    }
    Ok(out)
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
/// ([`NoteError::BadSignature`]); lines from unknown keys are ignored. Fails with
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

// ---------------------------------------------------------------------------------
// Test vectors
// ---------------------------------------------------------------------------------

/// Deterministic test vectors for `spec/vectors/checkpoint.json`.
///
/// Keys come from fixed seeds `SHA-256("loyalty-ledger checkpoint vectors v1 " || key
/// name)`; Ed25519 signing is deterministic, so [`vectors::generate`] always returns
/// the same document.
pub mod vectors {
    use super::*;
    use serde_json::{Map, Value};

    /// The fixed secret seed of the vector key named `name`.
    pub fn seed(name: &str) -> [u8; 32] {
        Sha256::digest(format!("loyalty-ledger checkpoint vectors v1 {name}")).into()
    }

    struct Case {
        origin: &'static str,
        size: u64,
        root: [u8; 32],
        extensions: &'static [&'static str],
        witnesses: &'static [(&'static str, u64)],
    }

    fn cases() -> Vec<Case> {
        let brand_a = "loyalty.example/brand-a";
        let brand_b = "loyalty.example/brand-b";
        vec![
            Case {
                origin: brand_a,
                size: 0,
                root: Sha256::digest(b"").into(),
                extensions: &[],
                witnesses: &[],
            },
            Case {
                // One empty leaf: the RFC 6962 leaf hash SHA-256(0x00).
                origin: brand_a,
                size: 1,
                root: Sha256::digest([0u8]).into(),
                extensions: &[],
                witnesses: &[],
            },
            Case {
                origin: brand_a,
                size: 12345,
                root: Sha256::digest(b"vector root 12345").into(),
                extensions: &[],
                witnesses: &[],
            },
            Case {
                // 2^53 - 1: the largest size every JSON reader represents exactly.
                origin: brand_b,
                size: 9_007_199_254_740_991,
                root: Sha256::digest(b"vector root large").into(),
                extensions: &[],
                witnesses: &[],
            },
            Case {
                origin: brand_b,
                size: 77,
                root: Sha256::digest(b"vector root 77").into(),
                extensions: &["loyalty.example/ext/epoch 42"],
                witnesses: &[],
            },
            Case {
                origin: brand_a,
                size: 42,
                root: Sha256::digest(b"vector root 42").into(),
                extensions: &[],
                witnesses: &[("witness.example/w1", 1_700_000_000)],
            },
        ]
    }

    /// The vector document: a JSON array of objects with keys `origin`, `size`,
    /// `root_b64`, `verifier_key`, `note` and, for cosigned cases, `cosigners` (witness
    /// verifier key strings). Keys are inserted in sorted order so the serialization is
    /// the same with or without serde_json's `preserve_order` feature.
    pub fn generate() -> Value {
        let mut out = Vec::new();
        for case in cases() {
            // Fixed, valid names: construction cannot fail.
            let log = NoteSigner::from_seed(case.origin, &seed(case.origin))
                .expect("vector log names are valid key names");
            let cp = Checkpoint {
                origin: case.origin.to_owned(),
                size: case.size,
                root: case.root,
                extensions: case.extensions.iter().map(|s| (*s).to_owned()).collect(),
            };
            let mut note = sign_checkpoint(&cp, &log).expect("vector checkpoints are valid");
            let mut cosigners = Vec::new();
            for (name, time) in case.witnesses {
                let w = CosignatureSigner::from_seed(name, &seed(name))
                    .expect("vector witness names are valid key names");
                let sig = w
                    .cosign(&note.text, *time)
                    .expect("vector texts and times are valid");
                note.signatures.push(sig);
                cosigners.push(Value::String(w.verifier_key_string()));
            }
            let mut obj = Map::new();
            if !cosigners.is_empty() {
                obj.insert("cosigners".into(), Value::Array(cosigners));
            }
            obj.insert("note".into(), Value::String(note.to_string()));
            obj.insert("origin".into(), Value::String(cp.origin.clone()));
            obj.insert("root_b64".into(), Value::String(BASE64.encode(cp.root)));
            obj.insert("size".into(), Value::from(cp.size));
            obj.insert(
                "verifier_key".into(),
                Value::String(log.verifier_key_string()),
            );
            out.push(Value::Object(obj));
        }
        Value::Array(out)
    }

    /// The file contents: [`generate`] pretty-printed (2-space indent) plus a final newline.
    pub fn render() -> String {
        let mut s = serde_json::to_string_pretty(&generate())
            .expect("serializing a serde_json::Value cannot fail");
        s.push('\n');
        s
    }

    /// Verifies every case of a vector document: parses the verifier key, opens the note
    /// with it, compares origin, size and root, checks the note re-serializes to the same
    /// bytes, and (when `cosigners` is present) requires every listed cosigner's
    /// cosignature. Returns a message naming the first failing case.
    pub fn check(doc: &Value) -> Result<(), String> {
        let cases = doc.as_array().ok_or("document is not a JSON array")?;
        if cases.is_empty() {
            return Err("document has no cases".into());
        }
        for (i, case) in cases.iter().enumerate() {
            check_case(case).map_err(|e| format!("case {i}: {e}"))?;
        }
        Ok(())
    }

    fn field<'v>(case: &'v Value, key: &str) -> Result<&'v str, String> {
        case.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("missing string field {key:?}"))
    }

    fn check_case(case: &Value) -> Result<(), String> {
        let origin = field(case, "origin")?;
        let root_b64 = field(case, "root_b64")?;
        let note_text = field(case, "note")?;
        let size = case
            .get("size")
            .and_then(Value::as_u64)
            .ok_or("missing integer field \"size\"")?;
        let log = NoteVerifier::parse(field(case, "verifier_key")?)
            .map_err(|e| format!("verifier_key: {e}"))?;
        let (cp, note) = open_checkpoint(note_text, &log).map_err(|e| format!("note: {e}"))?;
        if cp.origin != origin {
            return Err(format!("origin {:?} != {:?}", cp.origin, origin));
        }
        if cp.size != size {
            return Err(format!("size {} != {}", cp.size, size));
        }
        if BASE64.encode(cp.root) != root_b64 {
            return Err("root_b64 does not match the note".into());
        }
        if note.to_string() != note_text {
            return Err("note does not re-serialize to the same bytes".into());
        }
        if let Some(list) = case.get("cosigners") {
            let list = list.as_array().ok_or("\"cosigners\" is not an array")?;
            let witnesses = list
                .iter()
                .map(|v| {
                    let s = v.as_str().ok_or("cosigner is not a string")?;
                    NoteVerifier::parse(s).map_err(|e| format!("cosigner {s:?}: {e}"))
                })
                .collect::<Result<Vec<_>, String>>()?;
            let policy = WitnessPolicy {
                log,
                quorum: witnesses.len(),
                witnesses,
            };
            verify_cosigned_checkpoint(note_text, &policy).map_err(|e| format!("cosigned: {e}"))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_SKEY_B64: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                           then you don't know what your problem is.\n";
    const GO_SIG_LINE: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    fn signer(name: &str) -> NoteSigner {
        NoteSigner::from_seed(name, &vectors::seed(name)).unwrap()
    }

    fn cosigner(name: &str) -> CosignatureSigner {
        CosignatureSigner::from_seed(name, &vectors::seed(name)).unwrap()
    }

    fn malformed(reason: &'static str) -> NoteError {
        NoteError::Malformed { reason }
    }

    fn cp_malformed(reason: &'static str) -> CheckpointError {
        CheckpointError::Malformed { reason }
    }

    fn sample_checkpoint(origin: &str) -> Checkpoint {
        Checkpoint {
            origin: origin.to_owned(),
            size: 10,
            root: Sha256::digest(b"root").into(),
            extensions: vec![],
        }
    }

    /// A signed checkpoint note for `log`, cosigned by `witnesses` at time 1000 + i.
    fn cosigned_note(log: &NoteSigner, witnesses: &[&CosignatureSigner]) -> String {
        let mut note = sign_checkpoint(&sample_checkpoint(log.name()), log).unwrap();
        for (i, w) in witnesses.iter().enumerate() {
            let sig = w.cosign(&note.text, 1000 + i as u64).unwrap();
            assert!(note.push_signature(sig).unwrap());
        }
        note.to_string()
    }

    // ----- known answers ---------------------------------------------------------

    #[test]
    fn go_sumdb_note_known_answer() {
        let v = NoteVerifier::parse(GO_VKEY).unwrap();
        assert_eq!(v.name(), "PeterNeumann");
        assert_eq!(v.key_id(), [0xc7, 0x4f, 0x20, 0xa3]);
        assert_eq!(v.to_string(), GO_VKEY);
        let msg = format!("{GO_TEXT}\n{GO_SIG_LINE}");
        let note = SignedNote::parse(&msg).unwrap();
        assert_eq!(note.text, GO_TEXT);
        assert_eq!(note.to_string(), msg);
        assert_eq!(
            verify_note(&note, std::slice::from_ref(&v)).unwrap(),
            vec![&v]
        );

        // The Go private key "PRIVATE+KEY+PeterNeumann+c74f20a3+<base64(0x01 || seed)>".
        let skey = BASE64.decode(GO_SKEY_B64).unwrap();
        assert_eq!(skey[0], 0x01);
        let seed: [u8; 32] = skey[1..].try_into().unwrap();
        let s = NoteSigner::from_seed("PeterNeumann", &seed).unwrap();
        assert_eq!(s.verifier_key_string(), GO_VKEY);
        assert_eq!(SignedNote::sign(GO_TEXT, &[&s]).unwrap().to_string(), msg);
    }

    #[test]
    fn c2sp_signed_note_example_verifies() {
        let v = NoteVerifier::parse(
            "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        )
        .unwrap();
        let msg = "This is an example message.\n\n\u{2014} example.com/foo \
                   Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
        let note = SignedNote::parse(msg).unwrap();
        assert_eq!(verify_note(&note, &[v]).unwrap().len(), 1);
    }

    // ----- keys ------------------------------------------------------------------

    #[test]
    fn verifier_key_round_trip_and_id() {
        let s = signer("loyalty.example/brand-a");
        let vk = s.verifier_key_string();
        let v: NoteVerifier = vk.parse().unwrap();
        assert_eq!(v, s.verifier());
        assert_eq!(v.to_string(), vk);
        assert_eq!(v.signature_type(), SignatureType::Ed25519);
        assert_eq!(v.public_key(), s.public_key());
        let mut pre = b"loyalty.example/brand-a\n\x01".to_vec();
        pre.extend_from_slice(&s.public_key());
        assert_eq!(v.key_id(), Sha256::digest(&pre)[..4]);
        assert_eq!(vk.split('+').nth(1).unwrap(), hex::encode(v.key_id()));

        let c = cosigner("witness.example/w1");
        let cv = NoteVerifier::parse(&c.verifier_key_string()).unwrap();
        assert_eq!(cv, c.verifier());
        assert_eq!(cv.signature_type(), SignatureType::CosignatureV1);
        let mut pre = b"witness.example/w1\n\x04".to_vec();
        pre.extend_from_slice(&c.public_key());
        assert_eq!(cv.key_id(), Sha256::digest(&pre)[..4]);
        assert_eq!(
            NoteVerifier::from_public_key(c.name(), SignatureType::CosignatureV1, &c.public_key())
                .unwrap(),
            cv
        );
        // Same name and key, different type: different key IDs.
        let same = CosignatureSigner::from_seed("x", &[7; 32]).unwrap();
        let same_log = NoteSigner::from_seed("x", &[7; 32]).unwrap();
        assert_ne!(same.key_id(), same_log.key_id());
    }

    #[test]
    fn verifier_key_rejections() {
        let good = GO_VKEY;
        let key_b64 = "ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
        let cases: Vec<(String, NoteError)> = vec![
            (
                "".into(),
                NoteError::MalformedVerifierKey {
                    reason: "missing '+' after the key name",
                },
            ),
            (
                "PeterNeumann".into(),
                NoteError::MalformedVerifierKey {
                    reason: "missing '+' after the key name",
                },
            ),
            (
                "PeterNeumann+c74f20a3".into(),
                NoteError::MalformedVerifierKey {
                    reason: "missing '+' after the key id",
                },
            ),
            (
                format!("+c74f20a3+{key_b64}"),
                NoteError::InvalidKeyName { name: "".into() },
            ),
            (
                format!("Peter Neumann+c74f20a3+{key_b64}"),
                NoteError::InvalidKeyName {
                    name: "Peter Neumann".into(),
                },
            ),
            (
                format!("PeterNeumann+C74F20A3+{key_b64}"),
                NoteError::MalformedVerifierKey {
                    reason: "key id is not 8 lowercase hex digits",
                },
            ),
            (
                format!("PeterNeumann+c74f20a+{key_b64}"),
                NoteError::MalformedVerifierKey {
                    reason: "key id is not 8 lowercase hex digits",
                },
            ),
            (
                format!("PeterNeumann+c74f20a30+{key_b64}"),
                NoteError::MalformedVerifierKey {
                    reason: "key id is not 8 lowercase hex digits",
                },
            ),
            (
                format!("PeterNeumann+c74f20g3+{key_b64}"),
                NoteError::MalformedVerifierKey {
                    reason: "key id is not 8 lowercase hex digits",
                },
            ),
            (
                "PeterNeumann+c74f20a3+".into(),
                NoteError::MalformedVerifierKey {
                    reason: "key is empty",
                },
            ),
            (
                "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T".into(),
                NoteError::MalformedVerifierKey {
                    reason: "key is not canonical padded base64",
                },
            ),
            (
                "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW=".into(),
                NoteError::MalformedVerifierKey {
                    reason: "key is not canonical padded base64",
                },
            ),
            // From the Go tests: this one has non-canonical base64 trailing bits (Go accepts them).
            (
                "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==".into(),
                NoteError::MalformedVerifierKey {
                    reason: "key is not canonical padded base64",
                },
            ),
            // Unknown algorithm, with adjusted key hash (Go tests).
            (
                "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW".into(),
                NoteError::UnsupportedSignatureType(0x65),
            ),
            (
                format!("PeterNeumann+c74f20a4+{key_b64}"),
                NoteError::KeyIdMismatch {
                    claimed: [0xc7, 0x4f, 0x20, 0xa4],
                    computed: [0xc7, 0x4f, 0x20, 0xa3],
                },
            ),
            (
                format!("PeterNeumanm+c74f20a3+{key_b64}"),
                NoteError::KeyIdMismatch {
                    claimed: [0xc7, 0x4f, 0x20, 0xa3],
                    computed: key_id(
                        "PeterNeumanm",
                        SignatureType::Ed25519,
                        &NoteVerifier::parse(good).unwrap().public_key(),
                    ),
                },
            ),
        ];
        for (s, want) in cases {
            assert_eq!(NoteVerifier::parse(&s), Err(want), "input {s:?}");
        }
        // Wrong key length with a matching key ID (key ID over the whole material).
        for len in [31usize, 33] {
            let material: Vec<u8> = std::iter::once(1u8)
                .chain(std::iter::repeat_n(5, len))
                .collect();
            let mut h = Sha256::new();
            h.update(b"k\n");
            h.update(&material);
            let s = format!(
                "k+{}+{}",
                hex::encode(&h.finalize()[..4]),
                BASE64.encode(&material)
            );
            assert_eq!(
                NoteVerifier::parse(&s),
                Err(NoteError::MalformedVerifierKey {
                    reason: "Ed25519 public key is not 32 bytes"
                })
            );
        }
        // A 32-byte string that is not a valid Ed25519 point, with a matching key ID.
        let mut bad_pk = [0u8; 32];
        bad_pk[0] = 2;
        bad_pk[31] = 0x80;
        let mut found = None;
        for y in 2u8..=255 {
            bad_pk[0] = y;
            if VerifyingKey::from_bytes(&bad_pk).is_err() {
                found = Some(bad_pk);
                break;
            }
        }
        let pk = found.expect("some y coordinate is not on the curve");
        let id = key_id("k", SignatureType::Ed25519, &pk);
        let mut material = vec![1u8];
        material.extend_from_slice(&pk);
        let s = format!("k+{}+{}", hex::encode(id), BASE64.encode(material));
        assert_eq!(
            NoteVerifier::parse(&s),
            Err(NoteError::MalformedVerifierKey {
                reason: "not a valid Ed25519 public key"
            })
        );
    }

    #[test]
    fn signer_name_rejections() {
        for name in ["", "a b", "a+b", "a\tb", "a\u{a0}b", "a\nb", "a\u{2003}b"] {
            assert_eq!(
                NoteSigner::from_seed(name, &[1; 32]).unwrap_err(),
                NoteError::InvalidKeyName { name: name.into() }
            );
            assert!(CosignatureSigner::from_seed(name, &[1; 32]).is_err());
        }
        assert!(NoteSigner::generate("fresh.example/k", &mut rand_core::OsRng).is_ok());
        assert!(CosignatureSigner::generate("fresh.example/w", &mut rand_core::OsRng).is_ok());
        let dbg = format!("{:?}", signer("a"));
        assert!(dbg.contains("NoteSigner") && !dbg.contains("key:"));
    }

    // ----- notes -------------------------------------------------------------------

    #[test]
    fn note_round_trip_and_verify() {
        let a = signer("a.example/a");
        let b = signer("b.example/b");
        let text = "line one\n\nline three after a blank line\n";
        let note = SignedNote::sign(text, &[&a, &b]).unwrap();
        let s = note.to_string();
        assert!(s.starts_with(text));
        assert!(s.contains("\n\n\u{2014} a.example/a "));
        let parsed = SignedNote::parse(&s).unwrap();
        assert_eq!(parsed, note);
        assert_eq!(SignedNote::parse_bytes(s.as_bytes()).unwrap(), note);
        let vs = [a.verifier(), b.verifier()];
        assert_eq!(verify_note(&parsed, &vs).unwrap(), vec![&vs[0], &vs[1]]);
        // Only one known key: the other signature is ignored.
        assert_eq!(verify_note(&parsed, &vs[1..]).unwrap(), vec![&vs[1]]);
        // Duplicated verifier in the list is reported once.
        let dup = [a.verifier(), a.verifier()];
        assert_eq!(verify_note(&parsed, &dup).unwrap().len(), 1);
        // No known key at all.
        assert_eq!(
            verify_note(&parsed, &[signer("c").verifier()]),
            Err(NoteError::NoVerifiedSignatures)
        );
        assert_eq!(
            verify_note(&parsed, &[]),
            Err(NoteError::NoVerifiedSignatures)
        );
    }

    #[test]
    fn note_parse_rejections() {
        let a = signer("a");
        let good = SignedNote::sign("hello\n", &[&a]).unwrap().to_string();
        let line = good.strip_prefix("hello\n\n").unwrap().to_owned();
        let b64 = line
            .strip_prefix("\u{2014} a ")
            .unwrap()
            .trim_end()
            .to_owned();
        let cases: Vec<(String, NoteError)> = vec![
            (
                "".into(),
                malformed("missing blank line before the signatures"),
            ),
            (
                "hello\n".into(),
                malformed("missing blank line before the signatures"),
            ),
            (
                format!("hello\n{line}"),
                malformed("missing blank line before the signatures"),
            ),
            ("hello\n\n".into(), malformed("note has no signature lines")),
            (
                good.trim_end_matches('\n').to_owned(),
                malformed("last signature line does not end with a newline"),
            ),
            // A trailing blank line makes the last blank line the separator: no signatures.
            (
                format!("hello\n\n{line}\n"),
                malformed("note has no signature lines"),
            ),
            (
                format!("hello\n\n{line}{line}x\n"),
                malformed("signature line does not start with em dash and space"),
            ),
            (
                format!("hello\n\n- a {b64}\n"),
                malformed("signature line does not start with em dash and space"),
            ),
            (
                format!("hello\n\n\u{2014}a {b64}\n"),
                malformed("signature line does not start with em dash and space"),
            ),
            (
                format!("hello\n\n\u{2014} a{b64}\n"),
                malformed("signature line has no space after the key name"),
            ),
            (
                format!("hello\n\n\u{2014}  a {b64}\n"),
                NoteError::InvalidKeyName { name: "".into() },
            ),
            (
                format!("hello\n\n\u{2014} a+b {b64}\n"),
                NoteError::InvalidKeyName { name: "a+b".into() },
            ),
            (
                "hello\n\n\u{2014} a \n".into(),
                malformed("signature line has an empty signature"),
            ),
            (
                format!("hello\n\n\u{2014} a  {b64}\n"),
                malformed("signature is not canonical padded base64"),
            ),
            (
                format!("hello\n\n\u{2014} a {b64} \n"),
                malformed("signature is not canonical padded base64"),
            ),
            (
                format!("hello\n\n\u{2014} a {}\n", b64.trim_end_matches('=')),
                malformed("signature is not canonical padded base64"),
            ),
            (
                format!("hello\n\n\u{2014} a {}\n", b64.replace('=', "")),
                malformed("signature is not canonical padded base64"),
            ),
            (
                "hello\n\n\u{2014} a !!!!\n".into(),
                malformed("signature is not canonical padded base64"),
            ),
            (
                "hello\n\n\u{2014} a AAAAAA==\n".into(),
                malformed("signature is shorter than key id plus one byte"),
            ),
            (
                format!("hel\rlo\n\n{line}"),
                malformed("note contains an ASCII control character other than newline"),
            ),
            (
                format!("hello\n\n{}\r\n", line.trim_end()),
                malformed("note contains an ASCII control character other than newline"),
            ),
            (
                format!("hel\0lo\n\n{line}"),
                malformed("note contains an ASCII control character other than newline"),
            ),
            (
                format!("hel\tlo\n\n{line}"),
                malformed("note contains an ASCII control character other than newline"),
            ),
        ];
        for (s, want) in cases {
            assert_eq!(SignedNote::parse(&s), Err(want), "input {s:?}");
        }
        // A blank line between signature lines moves the split: the first signature line
        // becomes part of the text (per the "last blank line" rule) and no longer verifies.
        let shifted = SignedNote::parse(&format!("hello\n\n{line}\n{line}")).unwrap();
        assert_eq!(shifted.text, format!("hello\n\n{line}"));
        assert_eq!(
            verify_note(&shifted, &[a.verifier()]),
            Err(NoteError::BadSignature {
                name: "a".into(),
                key_id: a.key_id()
            })
        );
        // Non-canonical trailing bits in the base64 signature.
        let mut chars: Vec<char> = b64.chars().collect();
        let last = chars.len() - 2; // character before the single '='
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let idx = alphabet.find(chars[last]).unwrap();
        chars[last] = alphabet.as_bytes()[idx ^ 1] as char;
        let noncanon: String = chars.into_iter().collect();
        assert_eq!(
            SignedNote::parse(&format!("hello\n\n\u{2014} a {noncanon}\n")),
            Err(malformed("signature is not canonical padded base64"))
        );
        // Non-UTF-8.
        let mut bytes = good.clone().into_bytes();
        bytes[1] = 0xff;
        assert_eq!(SignedNote::parse_bytes(&bytes), Err(NoteError::NotUtf8));
        // Size limit.
        let big = format!("{}\n\n{line}", "x".repeat(MAX_NOTE_SIZE));
        assert_eq!(
            SignedNote::parse(&big),
            Err(NoteError::TooLarge {
                size: big.len(),
                max: MAX_NOTE_SIZE
            })
        );
        assert!(matches!(
            SignedNote::parse_bytes(big.as_bytes()),
            Err(NoteError::TooLarge { .. })
        ));
        // Signature count limit: MAX_SIGNATURES accepted, one more rejected.
        let many = format!("hello\n\n{}", line.repeat(MAX_SIGNATURES));
        assert_eq!(
            SignedNote::parse(&many).unwrap().signatures.len(),
            MAX_SIGNATURES
        );
        let too_many = format!("hello\n\n{}", line.repeat(MAX_SIGNATURES + 1));
        assert_eq!(
            SignedNote::parse(&too_many),
            Err(NoteError::TooManySignatures {
                max: MAX_SIGNATURES
            })
        );
    }

    #[test]
    fn note_text_rules_for_signing() {
        let a = signer("a");
        assert_eq!(
            SignedNote::sign("no newline", &[&a]),
            Err(malformed("note text does not end with a newline"))
        );
        assert_eq!(
            SignedNote::sign("", &[&a]),
            Err(malformed("note text does not end with a newline"))
        );
        assert_eq!(
            SignedNote::sign("a\u{7}\n", &[&a]),
            Err(malformed(
                "note contains an ASCII control character other than newline"
            ))
        );
        assert_eq!(
            SignedNote::sign("a\n", &[]),
            Err(malformed("a note needs at least one signature"))
        );
        // DEL is not a control character below U+0020: allowed by signed-note.
        assert!(SignedNote::sign("a\u{7f}\n", &[&a]).is_ok());
    }

    #[test]
    fn signature_by_other_key_with_same_name() {
        let real = signer("loyalty.example/brand-a");
        let impostor = NoteSigner::from_seed("loyalty.example/brand-a", &[9; 32]).unwrap();
        assert_ne!(real.key_id(), impostor.key_id());
        let text = "hello\n";
        let forged = SignedNote::sign(text, &[&impostor]).unwrap();
        let parsed = SignedNote::parse(&forged.to_string()).unwrap();
        // Different key ID: an unknown key, ignored, so nothing verifies.
        assert_eq!(
            verify_note(&parsed, &[real.verifier()]),
            Err(NoteError::NoVerifiedSignatures)
        );
        assert_eq!(
            real.verifier().verify(text, &parsed.signatures[0]),
            Err(NoteError::UnknownKey {
                name: real.name().into(),
                key_id: impostor.key_id()
            })
        );
        // Impostor signature relabelled with the real key ID: known key, bad signature.
        let mut relabelled = parsed.clone();
        relabelled.signatures[0].key_id = real.key_id();
        let reparsed = SignedNote::parse(&relabelled.to_string()).unwrap();
        assert_eq!(
            verify_note(&reparsed, &[real.verifier()]),
            Err(NoteError::BadSignature {
                name: real.name().into(),
                key_id: real.key_id()
            })
        );
        // Same key ID but other name: unknown, ignored alongside a valid signature.
        let mut both = SignedNote::sign(text, &[&real]).unwrap();
        let mut other_name = both.signatures[0].clone();
        other_name.name = "someone.else".into();
        both.signatures.push(other_name);
        assert_eq!(verify_note(&both, &[real.verifier()]).unwrap().len(), 1);
    }

    #[test]
    fn tampered_text_and_signature() {
        let a = signer("a");
        let note = SignedNote::sign("pay 10 points\n", &[&a]).unwrap();
        let s = note.to_string().replace("10", "99");
        let parsed = SignedNote::parse(&s).unwrap();
        let bad = NoteError::BadSignature {
            name: "a".into(),
            key_id: a.key_id(),
        };
        assert_eq!(verify_note(&parsed, &[a.verifier()]), Err(bad.clone()));
        // A bad signature from a known key fails the note even if another is valid.
        let mut two = note.clone();
        let mut broken = note.signatures[0].clone();
        broken.signature[0] ^= 1;
        two.signatures.push(broken.clone());
        assert_eq!(verify_note(&two, &[a.verifier()]), Err(bad.clone()));
        // Wrong signature length for the type.
        broken.signature.pop();
        assert_eq!(a.verifier().verify(&note.text, &broken), Err(bad));
    }

    #[test]
    fn merging_signatures() {
        let a = signer("a");
        let b = signer("b");
        let text = "merge me\n";
        let mut n1 = SignedNote::sign(text, &[&a]).unwrap();
        let n2 = SignedNote::sign(text, &[&b, &a]).unwrap();
        assert_eq!(n1.add_signatures(&n2), Ok(1));
        assert_eq!(n1.signatures.len(), 2);
        assert_eq!(n1.add_signatures(&n2), Ok(0));
        assert_eq!(
            verify_note(&n1, &[a.verifier(), b.verifier()])
                .unwrap()
                .len(),
            2
        );
        let other = SignedNote::sign("other\n", &[&b]).unwrap();
        assert_eq!(n1.add_signatures(&other), Err(NoteError::TextMismatch));
        assert_eq!(n1.signatures.len(), 2);
        assert_eq!(n1.push_signature(a.sign(text)), Ok(false));
        // Limit on the number of signatures, with self unchanged on error.
        let mut full = SignedNote::sign(text, &[&a]).unwrap();
        for i in 0..MAX_SIGNATURES - 1 {
            let s = NoteSigner::from_seed(&format!("k{i}"), &[3; 32]).unwrap();
            assert_eq!(full.push_signature(s.sign(text)), Ok(true));
        }
        let extra = SignedNote::sign(text, &[&b]).unwrap();
        assert_eq!(
            full.add_signatures(&extra),
            Err(NoteError::TooManySignatures {
                max: MAX_SIGNATURES
            })
        );
        assert_eq!(full.signatures.len(), MAX_SIGNATURES);
        assert_eq!(SignedNote::parse(&full.to_string()).unwrap(), full);
    }

    // ----- checkpoints -------------------------------------------------------------

    #[test]
    fn checkpoint_text_round_trip() {
        let cps = [
            Checkpoint {
                origin: "o".into(),
                size: 0,
                root: Sha256::digest(b"").into(),
                extensions: vec![],
            },
            Checkpoint {
                origin: "loyalty.example/brand-a".into(),
                size: u64::MAX,
                root: [0xff; 32],
                extensions: vec![],
            },
            Checkpoint {
                origin: "o with space é".into(),
                size: 10,
                root: [1; 32],
                extensions: vec!["ext one".into(), "— two".into()],
            },
        ];
        for cp in cps {
            let t = cp.to_text();
            assert_eq!(Checkpoint::parse_text(&t).unwrap(), cp);
        }
        let t =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let cp = Checkpoint::parse_text(t).unwrap();
        assert_eq!(cp.size, 20_852_163);
        assert_eq!(cp.to_text(), t);
        assert_eq!(
            Checkpoint::parse_text(
                "o\n18446744073709551615\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"
            )
            .unwrap()
            .size,
            u64::MAX
        );
    }

    #[test]
    fn checkpoint_parse_rejections() {
        let root = BASE64.encode([7u8; 32]);
        let cases: Vec<(String, CheckpointError)> = vec![
            (
                "".into(),
                malformed("note text does not end with a newline").into(),
            ),
            (
                format!("o\n1\n{root}"),
                malformed("note text does not end with a newline").into(),
            ),
            (
                "o\n1\n".into(),
                cp_malformed("checkpoint has fewer than three lines"),
            ),
            (
                "o\n".into(),
                cp_malformed("checkpoint has fewer than three lines"),
            ),
            (format!("\n1\n{root}\n"), cp_malformed("origin is empty")),
            (
                format!("o\u{85}x\n1\n{root}\n"),
                cp_malformed("origin contains a control character"),
            ),
            (
                format!("o\u{7f}\n1\n{root}\n"),
                cp_malformed("origin contains a control character"),
            ),
            (
                format!("o\r\n1\n{root}\n"),
                malformed("note contains an ASCII control character other than newline").into(),
            ),
            (
                format!("o\n\n{root}\n"),
                cp_malformed("tree size is not a decimal number"),
            ),
            (
                format!("o\n+1\n{root}\n"),
                cp_malformed("tree size is not a decimal number"),
            ),
            (
                format!("o\n-1\n{root}\n"),
                cp_malformed("tree size is not a decimal number"),
            ),
            (
                format!("o\n 1\n{root}\n"),
                cp_malformed("tree size is not a decimal number"),
            ),
            (
                format!("o\n1 \n{root}\n"),
                cp_malformed("tree size is not a decimal number"),
            ),
            (
                format!("o\n0x1\n{root}\n"),
                cp_malformed("tree size is not a decimal number"),
            ),
            (
                format!("o\n１\n{root}\n"),
                cp_malformed("tree size is not a decimal number"),
            ),
            (
                format!("o\n01\n{root}\n"),
                cp_malformed("tree size has a leading zero"),
            ),
            (
                format!("o\n00\n{root}\n"),
                cp_malformed("tree size has a leading zero"),
            ),
            (
                format!("o\n18446744073709551616\n{root}\n"),
                cp_malformed("tree size does not fit in 64 bits"),
            ),
            ("o\n1\n\n".into(), cp_malformed("root hash is not 32 bytes")),
            (
                format!("o\n1\n{}\n", root.trim_end_matches('=')),
                cp_malformed("root hash is not canonical padded base64"),
            ),
            (
                format!("o\n1\n{root} \n"),
                cp_malformed("root hash is not canonical padded base64"),
            ),
            (
                format!("o\n1\n{}\n", BASE64.encode([0xffu8; 32]).replace('/', "_")),
                cp_malformed("root hash is not canonical padded base64"),
            ),
            (
                "o\n1\nBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwd=\n".into(),
                cp_malformed("root hash is not canonical padded base64"),
            ),
            (
                format!("o\n1\n{}\n", BASE64.encode([7u8; 31])),
                cp_malformed("root hash is not 32 bytes"),
            ),
            (
                format!("o\n1\n{}\n", BASE64.encode([7u8; 33])),
                cp_malformed("root hash is not 32 bytes"),
            ),
            (
                format!("o\n1\n{}\n", BASE64.encode([7u8; 64])),
                cp_malformed("root hash is not 32 bytes"),
            ),
            (
                format!("o\n1\n{root}\n\n"),
                cp_malformed("extension line is empty"),
            ),
            (
                format!("o\n1\n{root}\next\n\n"),
                cp_malformed("extension line is empty"),
            ),
            (
                format!("o\n1\n{root}\next\u{9f}\n"),
                cp_malformed("extension line contains a control character"),
            ),
        ];
        for (s, want) in cases {
            assert_eq!(Checkpoint::parse_text(&s), Err(want), "input {s:?}");
        }
        let invalid = Checkpoint {
            origin: "a\nb".into(),
            ..sample_checkpoint("x")
        };
        assert_eq!(
            invalid.validate(),
            Err(cp_malformed("origin contains a control character"))
        );
        let log = signer("a\nb".split('\n').next().unwrap());
        assert_eq!(
            sign_checkpoint(&invalid, &log),
            Err(cp_malformed("origin contains a control character"))
        );
    }

    #[test]
    fn open_checkpoint_round_trip_and_tampering() {
        let log = signer("loyalty.example/brand-a");
        let v = log.verifier();
        let cp = Checkpoint {
            extensions: vec!["ext".into()],
            ..sample_checkpoint(log.name())
        };
        let note = sign_checkpoint(&cp, &log).unwrap().to_string();
        let (got, parsed) = open_checkpoint(&note, &v).unwrap();
        assert_eq!(got, cp);
        assert_eq!(parsed.to_string(), note);

        let bad = CheckpointError::Note(NoteError::BadSignature {
            name: log.name().into(),
            key_id: log.key_id(),
        });
        // Tampered size.
        let t = note.replacen("\n10\n", "\n11\n", 1);
        assert_ne!(t, note);
        assert_eq!(open_checkpoint(&t, &v), Err(bad.clone()));
        // Tampered root.
        let root_b64 = BASE64.encode(cp.root);
        let t = note.replacen(&root_b64, &BASE64.encode([0u8; 32]), 1);
        assert_eq!(open_checkpoint(&t, &v), Err(bad.clone()));
        // Tampered extension.
        let t = note.replacen("ext\n", "exu\n", 1);
        assert_eq!(open_checkpoint(&t, &v), Err(bad));
        // Malformed tampering is reported as such.
        let t = note.replacen("\n10\n", "\n010\n", 1);
        assert_eq!(
            open_checkpoint(&t, &v),
            Err(cp_malformed("tree size has a leading zero"))
        );
        // Only signed by someone else.
        let other = signer("loyalty.example/brand-a-other");
        let t = SignedNote::sign(&cp.to_text(), &[&other])
            .unwrap()
            .to_string();
        assert_eq!(
            open_checkpoint(&t, &v),
            Err(CheckpointError::MissingLogSignature {
                origin: log.name().into()
            })
        );
        // A cosigner key cannot be the log key.
        let w = cosigner("w");
        assert_eq!(
            open_checkpoint(&note, &w.verifier()),
            Err(NoteError::WrongSignatureType {
                expected: SignatureType::Ed25519,
                got: SignatureType::CosignatureV1
            }
            .into())
        );
    }

    #[test]
    fn origin_mismatch() {
        let log = signer("loyalty.example/brand-a");
        let cp = sample_checkpoint("loyalty.example/brand-b");
        let mismatch = CheckpointError::OriginMismatch {
            expected: "loyalty.example/brand-a".into(),
            got: "loyalty.example/brand-b".into(),
        };
        assert_eq!(sign_checkpoint(&cp, &log), Err(mismatch.clone()));
        // Validly signed by the log key, but over another origin.
        let note = SignedNote::sign(&cp.to_text(), &[&log])
            .unwrap()
            .to_string();
        assert_eq!(open_checkpoint(&note, &log.verifier()), Err(mismatch));
    }

    // ----- cosignatures ------------------------------------------------------------

    #[test]
    fn cosignature_round_trip_and_format() {
        let log = signer("loyalty.example/brand-a");
        let w = cosigner("witness.example/w1");
        let note = sign_checkpoint(&sample_checkpoint(log.name()), &log).unwrap();
        let sig = w.cosign(&note.text, 1_679_315_147).unwrap();
        assert_eq!(sig.signature.len(), 72);
        assert_eq!(sig.signature[..8], 1_679_315_147u64.to_be_bytes());
        // The signature is plain Ed25519 over the cosignature/v1 message.
        let msg = format!("cosignature/v1\ntime 1679315147\n{}", note.text);
        assert_eq!(cosignature_message(&note.text, 1_679_315_147), msg);
        let ed = Signature::from_slice(&sig.signature[8..]).unwrap();
        assert!(VerifyingKey::from_bytes(&w.public_key())
            .unwrap()
            .verify_strict(msg.as_bytes(), &ed)
            .is_ok());
        let wv = w.verifier();
        assert_eq!(wv.verify_cosignature(&note.text, &sig), Ok(1_679_315_147));
        assert_eq!(wv.verify(&note.text, &sig), Ok(()));
        // A cosignature survives the note text round trip.
        let line = sig.to_line();
        assert_eq!(
            NoteSignature::parse_line(line.trim_end_matches('\n')).unwrap(),
            sig
        );
        // A log key cannot verify cosignatures.
        assert_eq!(
            log.verifier().verify_cosignature(&note.text, &sig),
            Err(NoteError::WrongSignatureType {
                expected: SignatureType::CosignatureV1,
                got: SignatureType::Ed25519
            })
        );
        // Time limits and text rules.
        assert!(w.cosign(&note.text, MAX_COSIGNATURE_TIME).is_ok());
        assert_eq!(
            w.cosign(&note.text, MAX_COSIGNATURE_TIME + 1),
            Err(malformed("cosignature timestamp exceeds 2^63-1"))
        );
        assert_eq!(
            w.cosign("no newline", 1),
            Err(malformed("note text does not end with a newline"))
        );
        // An Ed25519 note signature by the same key is not a cosignature.
        let plain =
            NoteSigner::new(w.name(), SigningKey::from_bytes(&vectors::seed(w.name()))).unwrap();
        let mut s = plain.sign(&note.text);
        s.key_id = w.key_id();
        assert!(wv.verify_cosignature(&note.text, &s).is_err());
    }

    #[test]
    fn cosignature_with_wrong_timestamp() {
        let log = signer("loyalty.example/brand-a");
        let w = cosigner("witness.example/w1");
        let note = sign_checkpoint(&sample_checkpoint(log.name()), &log).unwrap();
        let sig = w.cosign(&note.text, 1000).unwrap();
        let bad = NoteError::BadSignature {
            name: w.name().into(),
            key_id: w.key_id(),
        };
        let mut wrong = sig.clone();
        wrong.signature[..8].copy_from_slice(&1001u64.to_be_bytes());
        assert_eq!(
            w.verifier().verify_cosignature(&note.text, &wrong),
            Err(bad.clone())
        );
        // Timestamp above 2^63-1 is rejected before verification.
        let mut huge = sig.clone();
        huge.signature[..8].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(
            w.verifier().verify_cosignature(&note.text, &huge),
            Err(bad.clone())
        );
        // Through the policy check too.
        let mut n = note.clone();
        n.signatures.push(wrong);
        let policy = WitnessPolicy {
            log: log.verifier(),
            witnesses: vec![w.verifier()],
            quorum: 1,
        };
        assert_eq!(
            verify_cosigned_checkpoint(&n.to_string(), &policy),
            Err(bad.into())
        );
        // Cosignature over another checkpoint.
        let other = Checkpoint {
            size: 11,
            ..sample_checkpoint(log.name())
        };
        let mut n = note.clone();
        n.signatures.push(w.cosign(&other.to_text(), 1000).unwrap());
        assert!(matches!(
            verify_cosigned_checkpoint(&n.to_string(), &policy),
            Err(CheckpointError::Note(NoteError::BadSignature { .. }))
        ));
    }

    #[test]
    fn witness_quorum() {
        let log = signer("loyalty.example/brand-a");
        let w1 = cosigner("witness.example/w1");
        let w2 = cosigner("witness.example/w2");
        let w3 = cosigner("witness.example/w3");
        let stranger = cosigner("witness.example/stranger");
        let note = cosigned_note(&log, &[&w1, &stranger, &w2]);

        let two = WitnessPolicy {
            log: log.verifier(),
            witnesses: vec![w1.verifier(), w2.verifier()],
            quorum: 2,
        };
        let ok = verify_cosigned_checkpoint(&note, &two).unwrap();
        assert_eq!(ok.checkpoint, sample_checkpoint(log.name()));
        assert_eq!(
            ok.cosignatures,
            vec![
                WitnessCosignature {
                    witness: w1.verifier(),
                    timestamp: 1000
                },
                WitnessCosignature {
                    witness: w2.verifier(),
                    timestamp: 1002
                },
            ]
        );
        assert_eq!(ok.note.to_string(), note);

        let three = WitnessPolicy {
            log: log.verifier(),
            witnesses: vec![w1.verifier(), w2.verifier(), w3.verifier()],
            quorum: 3,
        };
        assert_eq!(
            verify_cosigned_checkpoint(&note, &three),
            Err(CheckpointError::QuorumNotMet { got: 2, need: 3 })
        );
        // Duplicated witnesses count once.
        let dup = WitnessPolicy {
            log: log.verifier(),
            witnesses: vec![w1.verifier(), w1.verifier()],
            quorum: 2,
        };
        assert_eq!(
            verify_cosigned_checkpoint(&note, &dup),
            Err(CheckpointError::QuorumNotMet { got: 1, need: 2 })
        );
        // Duplicated cosignature lines count once.
        let mut n = SignedNote::parse(&note).unwrap();
        let again = w1.cosign(&n.text, 5000).unwrap();
        n.signatures.push(again);
        let v = verify_cosigned_checkpoint(&n.to_string(), &dup);
        assert_eq!(v, Err(CheckpointError::QuorumNotMet { got: 1, need: 2 }));
        let one = WitnessPolicy { quorum: 1, ..dup };
        let v = verify_cosigned_checkpoint(&n.to_string(), &one).unwrap();
        assert_eq!(
            v.cosignatures,
            vec![WitnessCosignature {
                witness: w1.verifier(),
                timestamp: 5000
            }]
        );
        // Quorum 0 needs only the log signature.
        let none = WitnessPolicy {
            log: log.verifier(),
            witnesses: vec![],
            quorum: 0,
        };
        assert!(verify_cosigned_checkpoint(&note, &none)
            .unwrap()
            .cosignatures
            .is_empty());
        // A log key listed as a witness is a policy error.
        let wrong = WitnessPolicy {
            log: log.verifier(),
            witnesses: vec![log.verifier()],
            quorum: 1,
        };
        assert_eq!(
            verify_cosigned_checkpoint(&note, &wrong),
            Err(CheckpointError::InvalidPolicy {
                reason: "witness key is not a cosignature/v1 (0x04) key"
            })
        );
        // Without the log signature, cosignatures are worthless.
        let mut n = SignedNote::parse(&note).unwrap();
        n.signatures.remove(0);
        assert_eq!(
            verify_cosigned_checkpoint(&n.to_string(), &two),
            Err(CheckpointError::MissingLogSignature {
                origin: log.name().into()
            })
        );
    }

    #[test]
    fn merge_cosignatures_from_several_witnesses() {
        let log = signer("loyalty.example/brand-a");
        let w1 = cosigner("witness.example/w1");
        let w2 = cosigner("witness.example/w2");
        let base = sign_checkpoint(&sample_checkpoint(log.name()), &log).unwrap();
        let mut from_w1 = base.clone();
        from_w1
            .push_signature(w1.cosign(&base.text, 10).unwrap())
            .unwrap();
        let mut from_w2 = base.clone();
        from_w2
            .push_signature(w2.cosign(&base.text, 20).unwrap())
            .unwrap();
        let mut merged = from_w1.clone();
        assert_eq!(merged.add_signatures(&from_w2), Ok(1));
        let policy = WitnessPolicy {
            log: log.verifier(),
            witnesses: vec![w1.verifier(), w2.verifier()],
            quorum: 2,
        };
        let v = verify_cosigned_checkpoint(&merged.to_string(), &policy).unwrap();
        assert_eq!(v.cosignatures.len(), 2);
    }

    // ----- vectors -----------------------------------------------------------------

    #[test]
    fn vectors_are_deterministic_and_check() {
        let doc = vectors::generate();
        assert_eq!(doc, vectors::generate());
        vectors::check(&doc).unwrap();
        let cases = doc.as_array().unwrap();
        assert_eq!(cases[0]["size"], 0);
        assert_eq!(cases[0]["root_b64"], BASE64.encode(Sha256::digest(b"")));
        assert!(cases.iter().any(|c| c.get("cosigners").is_some()));
        let rendered = vectors::render();
        assert!(rendered.ends_with("}\n]\n"));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&rendered).unwrap(),
            doc
        );

        let path = std::env::var("CHECKPOINT_VECTORS_PATH").unwrap_or_else(|_| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../spec/vectors/checkpoint.json"
            )
            .to_owned()
        });
        if std::env::var("UPDATE_VECTORS").as_deref() == Ok("1") {
            std::fs::write(&path, &rendered).unwrap();
        } else if let Ok(existing) = std::fs::read_to_string(&path) {
            assert_eq!(
                existing, rendered,
                "{path} is stale; rerun with UPDATE_VECTORS=1"
            );
        }
    }

    #[test]
    fn vector_check_detects_tampering() {
        let doc = vectors::generate();
        let mut d = doc.clone();
        d[0]["size"] = serde_json::json!(1);
        assert!(vectors::check(&d).unwrap_err().starts_with("case 0: size"));
        let mut d = doc.clone();
        d[1]["origin"] = serde_json::json!("x");
        assert!(vectors::check(&d).is_err());
        let mut d = doc.clone();
        d[2]["root_b64"] = serde_json::json!(BASE64.encode([0u8; 32]));
        assert!(vectors::check(&d).is_err());
        let mut d = doc.clone();
        d[3]["verifier_key"] =
            serde_json::json!(signer("loyalty.example/brand-b-x").verifier_key_string());
        assert!(vectors::check(&d).is_err());
        let i = doc
            .as_array()
            .unwrap()
            .iter()
            .position(|c| c.get("cosigners").is_some())
            .unwrap();
        let mut d = doc.clone();
        d[i]["cosigners"] =
            serde_json::json!([cosigner("witness.example/other").verifier_key_string()]);
        assert!(vectors::check(&d).unwrap_err().contains("quorum"));
        assert!(vectors::check(&serde_json::json!({})).is_err());
        assert!(vectors::check(&serde_json::json!([])).is_err());
        assert!(vectors::check(&serde_json::json!([{}])).is_err());
    }

    // ----- properties --------------------------------------------------------------

    fn text_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec("[ -~\u{e9}\u{2014}\u{1f600}]{0,24}", 1..5)
            .prop_map(|lines| lines.iter().map(|l| format!("{l}\n")).collect())
    }

    proptest! {
        #[test]
        fn prop_note_round_trip(text in text_strategy(), nsig in 1usize..4, seed in any::<[u8; 32]>()) {
            let signers: Vec<NoteSigner> = (0..nsig)
                .map(|i| NoteSigner::from_seed(&format!("k{i}.example/x"), &seed).unwrap())
                .collect();
            let refs: Vec<&NoteSigner> = signers.iter().collect();
            let note = SignedNote::sign(&text, &refs).unwrap();
            let s = note.to_string();
            let parsed = SignedNote::parse(&s).unwrap();
            prop_assert_eq!(&parsed, &note);
            prop_assert_eq!(parsed.to_string(), s);
            let vs: Vec<NoteVerifier> = signers.iter().map(NoteSigner::verifier).collect();
            prop_assert_eq!(verify_note(&parsed, &vs).unwrap().len(), nsig);
        }

        #[test]
        fn prop_single_byte_mutation_fails(
            text in text_strategy(),
            seed in any::<[u8; 32]>(),
            idx in any::<prop::sample::Index>(),
            delta in 1u8..=255,
        ) {
            let s = NoteSigner::from_seed("k.example/x", &seed).unwrap();
            let mut bytes = SignedNote::sign(&text, &[&s]).unwrap().to_string().into_bytes();
            let i = idx.index(bytes.len());
            bytes[i] = bytes[i].wrapping_add(delta);
            let result = SignedNote::parse_bytes(&bytes)
                .and_then(|n| verify_note(&n, &[s.verifier()]).map(|_| ()));
            prop_assert!(result.is_err());
        }

        #[test]
        fn prop_checkpoint_round_trip_and_mutation(
            origin in "[!-*,-~]{1,20}",
            size in any::<u64>(),
            root in any::<[u8; 32]>(),
            exts in prop::collection::vec("[ -~]{1,16}", 0..3),
            idx in any::<prop::sample::Index>(),
            delta in 1u8..=255,
        ) {
            let cp = Checkpoint { origin: origin.clone(), size, root, extensions: exts };
            prop_assert_eq!(Checkpoint::parse_text(&cp.to_text()).unwrap(), cp.clone());
            let log = NoteSigner::from_seed(&origin, &root).unwrap();
            let w = CosignatureSigner::from_seed("w.example/w", &root).unwrap();
            let mut note = sign_checkpoint(&cp, &log).unwrap();
            note.push_signature(w.cosign(&note.text, size >> 1).unwrap()).unwrap();
            let s = note.to_string();
            let policy = WitnessPolicy { log: log.verifier(), witnesses: vec![w.verifier()], quorum: 1 };
            let v = verify_cosigned_checkpoint(&s, &policy).unwrap();
            prop_assert_eq!(&v.checkpoint, &cp);
            prop_assert_eq!(v.cosignatures[0].timestamp, size >> 1);
            let mut bytes = s.into_bytes();
            let i = idx.index(bytes.len());
            bytes[i] = bytes[i].wrapping_add(delta);
            if let Ok(m) = String::from_utf8(bytes) {
                prop_assert!(verify_cosigned_checkpoint(&m, &policy).is_err());
            }
        }
    }
}
