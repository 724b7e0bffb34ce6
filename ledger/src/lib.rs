//! The pure core of the open loyalty ledger.
//!
//! Code map (see also the README's architecture section):
//! - [`types`]: domain newtypes parsed at the boundary (`MemberId`, `Points`, `LogTime`, ...).
//! - [`encoding`]: RFC 8785 canonical JSON, integers only.
//! - [`entry`]: the entry envelope and every entry type.
//! - [`money`]: ISO 4217 currencies and exact decimals.
//! - [`value`]: exact valuation of points in fiat minor units, rounded once (spec/protocol.md §8).
//! - [`merkle`]: the RFC 6962 Merkle tree, proofs and their verification.
//! - [`checkpoint`]: C2SP checkpoints (`c2sp.org/tlog-checkpoint`); it re-exports [`note`] (signed
//!   notes), [`cosignature`] (witness cosignatures) and [`witness`] (witness policies), one module
//!   per C2SP specification.
//! - [`tiles`]: C2SP tile paths and entry bundles (`c2sp.org/tlog-tiles`).
//! - [`state`] and [`tier`]: the accounting state machine.
//! - [`receipt`]: receipts for writes and their verification.
//! - [`agreement`]: co-signed terms between two brands (spec/redemption.md §2).
//! - [`quote`]: locked quotes for cross-brand redemption (spec/redemption.md §3).
//! - [`statement`]: settlement statements and their reconciliation (spec/redemption.md §4).
//! - [`attestation`]: tier attestations of spec/federation.md §6 and their offline verification.
//! - Durable storage is the `ledger_store` crate's (store/): the RocksDB store, the `Log` that
//!   ties it all together, and the verified mirror of a partner's log (spec/federation.md §3).
//!
//! Architecture invariant: nothing in this crate does network I/O or reads the clock; time
//! enters as a value. The node and the auditor's replay run the same state machine.

pub mod agreement;
pub mod attestation;
pub mod checkpoint;
pub mod checkpoint_vectors;
pub mod cosignature;
pub mod encoding;
pub mod entry;
pub mod merkle;
pub mod money;
pub mod note;
pub mod quote;
pub mod receipt;
pub mod state;
pub mod statement;
pub mod tier;
pub mod tiles;
pub mod types;
pub mod value;
pub mod witness;
