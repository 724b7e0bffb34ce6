//! Client SDK and auditor tools for the open loyalty ledger.
//!
//! - [`Client`]: a typed async client of a brand node's HTTP API (spec/api.md), one method
//!   per route, with idempotent writes, bounded retries and receipt verification.
//! - [`verify::verify_log`]: the auditor's check of a whole log from public data: every
//!   checkpoint signature, the Merkle roots, and a full replay of the accounting state.
//! - Federation ([`federation`], [`attestation`]): partner status, mirrored members, evidence,
//!   cosigned checkpoints, and tier attestations verified offline against a witness policy.
//! - [`monitor::Monitor`]: follows logs continuously (as CT monitors do), a resumed audit
//!   of each per round, and alerts on a fork, a shrink, a bad entry or a replay mismatch.
//! - The `loyalty` command-line tool (feature `cli`, on by default) is a thin shell over both.
//!
//! The SDK depends on the pure `ledger` (on `ledger-store` only with `disk`): an app never builds C++;
//! it reuses the ledger's types ([`MemberId`], [`EntryId`], [`Points`], ...) so that values
//! the node would refuse cannot be built, and the ledger's own verification code.
//!
//! # Example
//!
//! ```no_run
//! use sdk::{Client, EarnRequest, NoteVerifier, Points};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // The log's verifier key, obtained out of band (from the brand, not from the node).
//! let log_key = NoteVerifier::parse("example.com/brand-a+3bd1a5c1+AR1oM5Rrs3mNMCMi3NeMWVkyFrIAdt1OB1qGpWrl4yWE")?;
//! let client = Client::builder("http://127.0.0.1:7700")
//!     .api_key("lk_...")
//!     .verifier(log_key)
//!     .build()?;
//!
//! let member = "m-8f3a9c".parse()?;
//! // Keep the id across retries of the same intended write: it makes them idempotent.
//! let id = sdk::new_entry_id();
//! let written = client.earn(&member, &EarnRequest::new(id, Points::new(250)?)).await?;
//! assert!(written.is_verified());
//! println!("logged at index {}", written.index);
//!
//! let m = client.member(&member).await?;
//! println!("{} has {} points", m.member, m.available);
//! # Ok(())
//! # }
//! ```
//!
//! # Errors
//!
//! Every call returns [`Error`]: [`Error::Api`] carries the node's stable [`ErrorCode`];
//! [`Error::Verification`] means a receipt did not prove the write asked for.

pub mod attestation;
pub mod client;
pub mod error;
pub mod federation;
pub mod id;
pub mod monitor;
pub mod receipt;
pub mod retry;
pub mod types;
pub mod verify;

#[cfg(test)]
mod fake_node;

pub use client::{Client, ClientBuilder};
pub use error::{Error, ErrorCode, VerificationError};
pub use federation::{
    witness_policy, AddPartnerRequest, AttestationVerdict, CosignedCheckpoint, Evidence,
    PartnerMember, PartnerStatus,
};
pub use id::{new_entry_id, new_entry_id_with_prefix};
pub use receipt::{check_receipt, WriteResult};
pub use retry::{AttemptFailure, RetryPolicy};
pub use types::*;
pub use verify::{verify_log, AuditPoint, ReplayStore, Summary, VerifyError, VerifyOptions};

pub use ledger::attestation::{Attestation, Statement};
pub use ledger::checkpoint::NoteVerifier;
pub use ledger::entry::{Direction, Entry, EntryKind, HexBytes, HexHash, Tier};
pub use ledger::money::{Currency, Decimal};
pub use ledger::receipt::Receipt;
pub use ledger::types::{
    BrandId, DurationMs, EntryId, LogIndex, LogTime, MemberId, Points, TierName,
};
pub use ledger::witness::WitnessPolicy;
