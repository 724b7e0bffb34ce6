//! The log routes' answers: the log's key and time, entries, proofs, checkpoints
//! (spec/api.md).

use ledger::checkpoint::{NoteError, NoteVerifier};
use ledger::entry::HexHash;
use serde::{Deserialize, Serialize};

/// The log's identity (`GET /v1/log/key`): the node's own statement of its log key.
///
/// A verifier must pin the key it got out of band (from the brand's website, a partner's
/// config, ...); this answer is only a convenience to compare against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(description = "The log's identity."))]
pub struct LogKey {
    pub origin: String,
    /// C2SP verifier key `name+hexid+base64key`.
    pub verifier_key: String,
}

impl LogKey {
    /// Parses the verifier key string.
    pub fn verifier(&self) -> Result<NoteVerifier, NoteError> {
        NoteVerifier::parse(&self.verifier_key)
    }
}

/// The node's log time, for clients that must choose a future one (spec/api.md, "The node's
/// log time").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct LogTimeView {
    /// The earliest log time the next entry can get: the node's clock, or one more than the
    /// latest entry's time when the clock has not passed it. A `valid_from` or `expires_at`
    /// chosen from it needs a margin for the request's own queueing.
    pub now: u64,
    /// The latest signed checkpoint's size.
    pub size: u64,
    /// The time of the latest entry under that checkpoint (`null` for an empty log).
    pub last_entry_time: Option<u64>,
}

/// One raw entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = RawEntry))]
pub struct LogEntry {
    pub index: u64,
    /// Canonical entry bytes as text.
    pub entry: String,
}

/// Entries of a range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = Entries))]
pub struct LogEntries {
    pub entries: Vec<LogEntry>,
}

/// An inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct InclusionProof {
    pub index: u64,
    pub size: u64,
    #[cfg_attr(feature = "utoipa", schema(value_type = Vec<String>))]
    pub proof: Vec<HexHash>,
}

/// A consistency proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct ConsistencyProof {
    pub old: u64,
    pub new: u64,
    #[cfg_attr(feature = "utoipa", schema(value_type = Vec<String>))]
    pub proof: Vec<HexHash>,
}

/// One signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct CheckpointItem {
    pub size: u64,
    pub note: String,
}

/// A page of checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = Checkpoints))]
pub struct CheckpointPage {
    pub checkpoints: Vec<CheckpointItem>,
    pub next_cursor: Option<String>,
}
