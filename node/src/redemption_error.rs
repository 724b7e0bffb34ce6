//! What a step of a cross-brand redemption ([`crate::redemption`]) refuses or fails with: one
//! variant per answer a client or partner can act on, mapped to an HTTP status and a stable
//! code in [`crate::problem`] (and nowhere else). The steps know nothing of HTTP; the partner's
//! answers they pass on are classified here as [`Refusal`]s.
//!
//! It is a module of its own, below `problem`, because `redemption` itself sits above the
//! shared state and the request plumbing, which know `problem`.

use ledger::agreement::AgreementError;
use ledger::quote::QuoteError;
use ledger::state::StateError;
use ledger::statement::StatementError;
use ledger::types::{BrandId, EntryId};

use loyalty_wire::ErrorCode;

use crate::sequencer::SubmitError;
use crate::views::ReadError;

/// How a partner refused a step, as this node passes it on (spec/api.md, "Partner
/// refusals"): its conflict, its refusal of the request, or its failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The partner's state does not allow the step (its 404 or 409, as the step reads them).
    Conflict,
    /// The partner refused the request itself.
    Invalid,
    /// The partner failed (a 5xx, or an answer no step expects).
    Failed,
}

/// Why a step of a redemption did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RedemptionError {
    // The request.
    #[error("{0}")]
    InvalidBody(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("ids starting with \"sys.\" are reserved for the node")]
    ReservedId,
    #[error("a redemption id has at most {max} characters")]
    RedemptionIdTooLong { max: usize },
    #[error("a refund id has at most {max} characters")]
    RefundIdTooLong { max: usize },
    #[error("{0}")]
    IdConflict(String),

    // What this node does not have.
    #[error("no quote {0}")]
    UnknownQuote(EntryId),
    /// No agreement that the request names or implies, in this node's log.
    #[error("{0}")]
    UnknownAgreement(String),
    /// A partner's quote or commit names an agreement this node never logged.
    #[error("{0}")]
    AgreementNotHere(String),
    #[error("{0}")]
    UnknownRedemption(String),
    /// No partner of that name (pinned, where the step needs its key).
    #[error("{0}")]
    UnknownPartner(String),
    /// The brand a step must verify is not a pinned partner.
    #[error("{0}")]
    PartnerNotPinned(String),
    /// Rates of a brand that is not a pinned partner (so nothing of it is verified).
    #[error("{0} is not a pinned partner, so nothing of it is verified")]
    PartnerUnpinned(BrandId),
    /// A partner without a verified mirror to reconcile against.
    #[error("{0} is not pinned, so nothing of it is verified")]
    MirrorUnpinned(BrandId),
    #[error("the partnership with {0} is frozen by evidence")]
    PartnerFrozen(BrandId),

    // Agreements.
    #[error("{0} is not a party to these terms")]
    NotAParty(BrandId),
    #[error("the sender is not the other party of these terms")]
    SenderNotAParty,
    #[error("this brand's operator has not approved these terms (yet)")]
    AgreementNotApproved,
    #[error("{0}")]
    AgreementTermsDiffer(&'static str),
    #[error(transparent)]
    Agreement(AgreementError),

    // Quotes and holds.
    #[error("{0}")]
    QuoteDirectionNotAgreed(String),
    #[error("{0}")]
    NoRateCard(String),
    #[error("{0}")]
    NoFxRate(String),
    #[error(transparent)]
    Quote(QuoteError),
    #[error("{0}")]
    QuoteExpired(&'static str),
    #[error("{0}")]
    QuoteOutOfBounds(String),
    #[error("{0}")]
    HoldOutOfBounds(String),
    #[error("the quote must be the sender's, for points of this brand")]
    QuoteWrongParties,
    #[error("{0}")]
    QuoteMismatch(String),
    #[error("the preimage does not match the hold's condition")]
    ConditionNotMet,
    #[error("{0}")]
    HoldNotOpen(String),
    #[error("prepare first")]
    NotPrepared,
    #[error("{0}")]
    CreditLimitExceeded(String),

    // Refunds.
    #[error("redemption {0} is not committed; void it instead")]
    NotCommitted(EntryId),
    #[error("{0}")]
    RefundExceedsObligation(String),

    // Statements and reconciliation.
    #[error("{0}")]
    PeriodOpen(String),
    #[error("{0}")]
    StatementDisagreed(String),
    #[error("{0}")]
    StatementBadSignature(String),
    #[error("not a settlement period")]
    StatementPeriodInvalid,
    #[error(transparent)]
    Statement(StatementError),
    /// A report would read more lines than it may (`StateError::TooManyLines`).
    #[error(transparent)]
    TooManyLines(StateError),

    // The partner's answer.
    #[error(
        "{partner} could not be reached; retry {what} with the same request (every step is idempotent)"
    )]
    PartnerUnavailable {
        partner: BrandId,
        what: &'static str,
    },
    #[error("{partner} refused {what}: {partner_code}: {partner_detail}")]
    PartnerRefused {
        partner: BrandId,
        what: &'static str,
        refusal: Refusal,
        /// The partner's own stable code.
        partner_code: ErrorCode,
        partner_detail: String,
    },
    /// The partner answered something that does not verify or is not what was asked.
    #[error("{0}")]
    PartnerBadAnswer(String),

    // This node.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A failure of this node (storage, encoding) whose cause is logged, never answered.
    #[error("{0}")]
    Internal(String),
}

impl RedemptionError {
    /// A failure of this node with its cause (logged when answered).
    pub fn internal(cause: impl std::fmt::Display) -> RedemptionError {
        RedemptionError::Internal(cause.to_string())
    }

    /// A partner's refusal of `what`, passed on with the code and detail of its `answer`.
    pub fn refused(
        partner: &BrandId,
        what: &'static str,
        refusal: Refusal,
        answer: &[u8],
    ) -> RedemptionError {
        let v: serde_json::Value = serde_json::from_slice(answer).unwrap_or_default();
        RedemptionError::PartnerRefused {
            partner: partner.clone(),
            what,
            refusal,
            partner_code: v["code"]
                .as_str()
                .map_or(ErrorCode::PartnerRefused, ErrorCode::parse),
            partner_detail: v["detail"].as_str().unwrap_or("").to_owned(),
        }
    }
}
