//! The log routes' answers: the log's key and time, entries, proofs, checkpoints
//! (spec/api.md).

use ledger::checkpoint::{NoteError, NoteVerifier};
use ledger::entry::HexHash;
use serde::{Deserialize, Serialize};

/// `GET /v1/log/key`: the node's own statement of its log key.
///
/// A verifier must pin the key it got out of band (from the brand's website, a partner's
/// config, ...); this answer is only a convenience to compare against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogKey {
    /// The log's origin (the key's name).
    pub origin: String,
    /// The C2SP verifier key string.
    pub verifier_key: String,
}

/// `GET /v1/log/time`: the node's log time (spec/api.md, "The node's log time").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogTimeView {
    /// The earliest log time the node's next entry can get. Choose a future `valid_from` or
    /// `expires_at` from it (plus a margin for the request's queueing), not from your clock.
    pub now: u64,
    /// The latest signed checkpoint's size.
    pub size: u64,
    /// The time of the latest entry under that checkpoint (`None` for an empty log).
    pub last_entry_time: Option<u64>,
}

impl LogKey {
    /// Parses the verifier key string.
    pub fn verifier(&self) -> Result<NoteVerifier, NoteError> {
        NoteVerifier::parse(&self.verifier_key)
    }
}

/// One entry of the log as served by `GET /v1/log/entries`: its canonical bytes as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Its index.
    pub index: u64,
    /// Its canonical bytes (UTF-8 JSON), verbatim.
    pub entry: String,
}

/// `GET /v1/log/entries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntries {
    /// Entries in index order.
    pub entries: Vec<LogEntry>,
}

/// `GET /v1/log/proof/inclusion`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The leaf index.
    pub index: u64,
    /// The tree size.
    pub size: u64,
    /// The RFC 6962 audit path.
    pub proof: Vec<HexHash>,
}

/// `GET /v1/log/proof/consistency`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// The old tree size.
    pub old: u64,
    /// The new tree size.
    pub new: u64,
    /// The RFC 6962 consistency path.
    pub proof: Vec<HexHash>,
}

/// One signed checkpoint as listed by `GET /v1/log/checkpoints`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointItem {
    /// The tree size the node says it signed.
    pub size: u64,
    /// The signed note (C2SP tlog-checkpoint), unverified.
    pub note: String,
}

/// `GET /v1/log/checkpoints`: one page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointPage {
    /// Checkpoints by increasing size.
    pub checkpoints: Vec<CheckpointItem>,
    /// Pass back as `cursor` for the next page; `None` at the end.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

