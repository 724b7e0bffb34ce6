//! Cross-brand redemption (spec/redemption.md): agreements, quotes, prepare and commit between
//! payee and payer, refunds, statements and reconciliation. It builds on the partners, mirrors
//! and signed peer requests of [`crate::federation`], and logs its steps through the sequencer.
//!
//! Code map:
//! - [`agreements`]: approving and co-signing agreements with partners (spec/redemption.md §2);
//! - [`payer`]: the payer's bounds on a partner's quote times and hold expiry, and the digest
//!   of the prepared quote that a commit must match;
//! - [`quotes`]: quotes priced from a verified mirror and logged (spec/redemption.md §3);
//! - [`redeem`]: the prepare and commit steps between payee and payer (spec/redemption.md §3);
//! - [`settle`]: refunds and co-signed statements;
//! - [`reconcile`]: reconciliation reports from the own log and the verified mirror.

pub mod agreements;
pub mod payer;
pub mod quotes;
pub mod reconcile;
pub mod redeem;
pub mod settle;
