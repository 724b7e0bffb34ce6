//! The cross-brand redemption routes' bodies and answers (spec/redemption.md): agreements,
//! quotes, prepare, status, commit, refunds and statements.
//!
//! Their fields are those the node has always written (ids, brands and currencies as
//! strings); giving them the ledger's newtypes is left for after the redemption handlers'
//! errors move to domain errors (issue 15, item 3).
//!
//! Not re-exported at the crate root: [`RefundRequest`] here is a refund at a partner, not
//! the write route's [`crate::RefundRequest`].

use ledger::agreement::SignedAgreement;
use ledger::quote::Quote;
use ledger::receipt::Receipt;
use ledger::statement::SignedStatement;
use ledger::types::{BrandId, EntryId, MemberId, Points};
use serde::{Deserialize, Serialize};

/// What became of an approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct AgreementOutcome {
    /// `logged` (both signed; logged here) or `pending` (the partner has not approved yet).
    pub status: String,
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub agreement: SignedAgreement,
    /// The receipt of the agreement entry in this node's log, once logged.
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub receipt: Option<Receipt>,
}

/// `POST /v1/redemptions/quote`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = QuoteBody))]
pub struct QuoteRequest {
    /// The redemption's id (also the quote's).
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub redemption: EntryId,
    /// The agreement under which the payer's points are redeemed here.
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub agreement: EntryId,
    /// The member's brand.
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub payer: BrandId,
    /// The member, by the payer's pseudonymous id.
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub member: MemberId,
    /// The value of this many points …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<u64>))]
    pub points: Option<Points>,
    /// … or the points for this price, in minor units of the settlement currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_minor: Option<u64>,
    /// How long the quote holds (default 5 minutes, at most 24 hours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

/// A logged quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct QuoteAnswer {
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub quote: Quote,
    /// Whether it can still be used now.
    pub live: bool,
    /// The receipt of the `quote` entry.
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub receipt: Receipt,
}

/// `POST /v1/redemptions/{redemption}/prepare` at the payee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct PrepareBody {
    /// The member's spend authorisation at the payer for this brand.
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub authorisation: EntryId,
    /// How long the payer holds the points (default and most: until the quote expires, at
    /// most an hour).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_ms: Option<u64>,
}

/// The payer's hold, as the payee verified it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Prepared {
    pub redemption: String,
    pub payer: String,
    /// The receipt of the hold in the payer's log, verified against its pinned key.
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub hold: Receipt,
}

/// A redemption as the payer's log shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct RedemptionStatus {
    pub redemption: String,
    /// `open`, `posted` or `voided`, by the payer's log (an open hold past `expires_at` is
    /// released by the payer with a `void` at its own log time).
    pub status: String,
    pub points: u64,
    /// The payer's log time from which the hold can no longer be posted.
    pub expires_at: u64,
    /// Receipt of the hold.
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub hold: Receipt,
    /// Receipt of the entry that posted or voided it.
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub resolution: Option<Receipt>,
}

/// The payer's receipts for a commit: the post of the hold and the payable obligation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct PayerCommit {
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub post: Receipt,
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub payable: Receipt,
}

/// A committed redemption as the payee reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Committed {
    pub redemption: String,
    /// What the payer owes this brand, in minor units of `currency`.
    pub amount_minor: u64,
    pub currency: String,
    /// The payer's receipts (verified against its pinned key).
    pub payer: PayerCommit,
    /// The receipt of this brand's `receivable` obligation.
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub receivable: Receipt,
}

/// A refund: its id (chosen by the payee's app) and the points it returns to the member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct RefundRequest {
    /// The refund's id; a retry with the same id and points is answered from the logs.
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub refund: EntryId,
    /// Points returned to the member: at most what is left of the redemption.
    #[cfg_attr(feature = "utoipa", schema(value_type = u64, minimum = 1))]
    pub points: Points,
}

/// A refund as the payee reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Refunded {
    pub redemption: String,
    pub refund: String,
    pub points: u64,
    /// What the refund takes off the payer's obligation, in minor units of `currency` (0 when
    /// the cumulative rule rounds it away; a later refund catches up).
    pub amount_minor: u64,
    pub currency: String,
    /// Points of the redemption refunded so far, this refund included.
    pub refunded_points: u64,
    /// The payer's `obligation_refund` receipt (verified against its pinned key).
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub payer: Receipt,
    /// The receipt of this brand's `obligation_refund` (receivable side).
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub receivable: Receipt,
}

/// A co-signed statement as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct LoggedStatement {
    /// The settlement period's number.
    pub period: u64,
    /// The statement with both brands' signatures.
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub statement: SignedStatement,
    /// The receipt of the `statement` entry in this node's log.
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub receipt: Receipt,
}
