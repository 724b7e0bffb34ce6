//! Signed notes: the format of the C2SP specification `c2sp.org/signed-note`, byte for byte
//! (keys, key IDs, verifier key strings, signature lines, notes), as used by the federated
//! loyalty ledger (see `spec/checkpoint.md` in the repository for the exact project profile).
//!
//! In scope: Ed25519 (`0x01`) signers and verifiers of any note text, strict parsing and
//! printing of notes, merging of signature lines. Out of scope: what a note's text means
//! ([`crate::checkpoint`]), the `cosignature/v1` message and its signer
//! ([`crate::cosignature`]), which keys a client trusts ([`crate::witness`]).
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
//! * Signature checks never consult the clock.
//! * No function in this module panics on untrusted input; every rejection is a
//!   [`NoteError`] variant.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};

/// Length of a `cosignature/v1` signature (c2sp.org/tlog-cosignature): an 8-byte timestamp and
/// an Ed25519 signature. The note parser checks it; the cosignature module makes and reads it.
pub(crate) const COSIGNATURE_V1_LEN: usize = 8 + ED25519_SIGNATURE_LEN;

/// Largest signed note, in bytes (text, blank line and signature lines), that
/// [`SignedNote::parse`] accepts: 1 MiB.
pub const MAX_NOTE_SIZE: usize = 1 << 20;

/// Largest number of signature lines that [`SignedNote::parse`] accepts. The C2SP
/// spec requires accepting at least 16.
pub const MAX_SIGNATURES: usize = 100;

/// The prefix of every signature line: U+2014 EM DASH followed by a space.
pub const SIGNATURE_LINE_PREFIX: &str = "\u{2014} ";

pub(crate) const ED25519_SIGNATURE_LEN: usize = 64;

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

pub(crate) fn check_key_name(name: &str) -> Result<(), NoteError> {
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

pub(crate) fn verifier_key_string(
    name: &str,
    ty: SignatureType,
    id: [u8; 4],
    pk: &[u8; 32],
) -> String {
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

/// A public key that verifies note signatures (type `0x01`) or cosignatures (type
/// `0x04`). Every value holds a valid name, a valid Ed25519 point and a key ID that
/// matches the hash of name, type and key.
#[derive(Clone, Debug)]
pub struct NoteVerifier {
    // Crate-visible so that `cosignature` can build its cosigners' verifiers; every
    // constructor keeps the invariants above.
    pub(crate) name: String,
    pub(crate) key_id: [u8; 4],
    pub(crate) signature_type: SignatureType,
    pub(crate) key: VerifyingKey,
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

    pub(crate) fn check_matches(&self, sig: &NoteSignature) -> Result<(), NoteError> {
        if self.matches(sig) {
            Ok(())
        } else {
            Err(NoteError::UnknownKey {
                name: sig.name.clone(),
                key_id: sig.key_id,
            })
        }
    }

    pub(crate) fn check_ed25519(
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
