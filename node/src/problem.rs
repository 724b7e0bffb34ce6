//! RFC 9457 problem details: the one place where every error becomes an HTTP status and a
//! stable machine-readable `code` (spec/api.md, "Error codes").

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use ledger::state::StateError;
use ledger_store::log::WriteError;

use loyalty_wire::ErrorCode;

pub use loyalty_wire::Problem;

use crate::admission::AdmissionError;
use crate::clock::WritesHeld;
use crate::federation::peer::PeerRequestError;
use crate::federation::witness::WitnessError;
use crate::federation::PartnerError;
use crate::keys::KeyError;
use crate::redemption_error::{RedemptionError, Refusal};
use crate::sequencer::SubmitError;
use crate::views::ReadError;

/// The one code -> status table (spec/api.md, "Error codes"; the tests below check that
/// the two are the same): every stable code the node answers with, by status.
/// [`ApiError::new`] asserts (in debug builds) that the pair it builds is in this table. A code
/// is under one status, except the five spec/api.md names (`partner_refused`, `unknown_partner`,
/// `unknown_agreement`, `partner_unpinned`, `agreement_not_a_party`).
pub const ERROR_CODES: &[(u16, &[ErrorCode])] = &[
    (400, &[ErrorCode::InvalidBody, ErrorCode::InvalidParameter]),
    (
        401,
        &[
            ErrorCode::Unauthenticated,
            ErrorCode::PeerUnsigned,
            ErrorCode::UnknownPeer,
            ErrorCode::PeerBadSignature,
            ErrorCode::PeerStale,
            ErrorCode::PeerReplayed,
        ],
    ),
    (
        403,
        &[
            ErrorCode::Forbidden,
            ErrorCode::PartnerFrozen,
            ErrorCode::BadCheckpointSignature,
            ErrorCode::AgreementNotAParty,
        ],
    ),
    (
        404,
        &[
            ErrorCode::UnknownMember,
            ErrorCode::UnknownAuthorisation,
            ErrorCode::UnknownAgreement,
            ErrorCode::UnknownQuote,
            ErrorCode::UnknownRedemption,
            ErrorCode::UnknownHold,
            ErrorCode::UnknownLot,
            ErrorCode::UnknownPartner,
            ErrorCode::UnknownLog,
            ErrorCode::NotMirrored,
            ErrorCode::NotFound,
        ],
    ),
    (408, &[ErrorCode::BodyTimeout]),
    (
        409,
        &[
            ErrorCode::IdConflict,
            ErrorCode::HoldNotOpen,
            ErrorCode::HoldExpired,
            ErrorCode::QuoteExpired,
            ErrorCode::ObligationExists,
            ErrorCode::AgreementExists,
            ErrorCode::CreditLimitExceeded,
            ErrorCode::AuthorisationUsed,
            ErrorCode::AuthorisationExpired,
            ErrorCode::AgreementNotApproved,
            ErrorCode::AgreementTermsDiffer,
            ErrorCode::PartnerKeyPinned,
            ErrorCode::PartnerUnpinned,
            ErrorCode::NoTierPolicy,
            ErrorCode::NotPrepared,
            ErrorCode::NotCommitted,
            ErrorCode::RefundExceedsObligation,
            ErrorCode::PeriodOpen,
            ErrorCode::StatementDisagreed,
            ErrorCode::PartnerRefused,
        ],
    ),
    (413, &[ErrorCode::BodyTooLarge]),
    (415, &[ErrorCode::UnsupportedMediaType]),
    (
        422,
        &[
            ErrorCode::TooManyItems,
            ErrorCode::DuplicateId,
            ErrorCode::EntryTooLarge,
            ErrorCode::InsufficientPoints,
            ErrorCode::BalanceOverflow,
            ErrorCode::HoldExpiryNotInFuture,
            ErrorCode::ConditionNotMet,
            ErrorCode::PreimageRequired,
            ErrorCode::UnexpectedPreimage,
            ErrorCode::RefundExceedsRedemption,
            ErrorCode::RateCardInPast,
            ErrorCode::TooManyRates,
            ErrorCode::FxSameCurrency,
            ErrorCode::AuthorisationRequired,
            ErrorCode::AuthorisationExpiryNotInFuture,
            ErrorCode::AuthorisationWrongMember,
            ErrorCode::AuthorisationWrongPayee,
            ErrorCode::AuthorisationExceeded,
            ErrorCode::AgreementNotAParty,
            ErrorCode::AgreementInvalidTerms,
            ErrorCode::AgreementBadSignature,
            ErrorCode::AgreementUnpinnedKey,
            ErrorCode::QuoteDirectionNotAgreed,
            ErrorCode::AgreementNotYetValid,
            ErrorCode::NoRateCard,
            ErrorCode::NoFxRate,
            ErrorCode::ZeroAmount,
            ErrorCode::Overflow,
            ErrorCode::FxMismatch,
            ErrorCode::ReservedId,
            ErrorCode::InvalidPartner,
            ErrorCode::TooManyPartners,
            ErrorCode::InconsistentCheckpoint,
            ErrorCode::AttestationTierMismatch,
            ErrorCode::AttestationTierChangeDue,
            ErrorCode::AttestationValidUntilNotInFuture,
            ErrorCode::AttestationTooLong,
            ErrorCode::AttestationWrongBrand,
            ErrorCode::AttestationBadReceipt,
            ErrorCode::AttestationInvalidPolicy,
            ErrorCode::AttestationBadCosignature,
            ErrorCode::AttestationQuorum,
            ErrorCode::AttestationNotAttestation,
            ErrorCode::AttestationMismatch,
            ErrorCode::AttestationExpired,
            ErrorCode::RedemptionIdTooLong,
            ErrorCode::RefundIdTooLong,
            ErrorCode::QuoteOutOfBounds,
            ErrorCode::HoldOutOfBounds,
            ErrorCode::UnknownPartner,
            ErrorCode::PartnerRefused,
            ErrorCode::QuoteMismatch,
            ErrorCode::QuoteWrongParties,
            ErrorCode::RefundNeedsPartner,
            ErrorCode::UnknownObligation,
            ErrorCode::RefundExists,
            ErrorCode::TooManyRefunds,
            ErrorCode::RefundAmountMismatch,
            ErrorCode::StatementBadSignature,
            ErrorCode::StatementPeriodInvalid,
            ErrorCode::StatementExists,
            ErrorCode::StatementMismatch,
            ErrorCode::StatementInvalidTerms,
            ErrorCode::StatementInvalidPeriod,
            ErrorCode::StatementPeriodOutOfRange,
            ErrorCode::StatementTooManyLines,
            ErrorCode::TooManyLines,
            ErrorCode::StatementInvalidLine,
            ErrorCode::StatementDuplicateLine,
            ErrorCode::StatementOverflow,
            ErrorCode::UnknownAgreement,
            ErrorCode::PartnerUnpinned,
            ErrorCode::ExpireAmountMismatch,
            ErrorCode::LotNotExpired,
            ErrorCode::TierFromMismatch,
            ErrorCode::TierNotDue,
            ErrorCode::QuoteIdMismatch,
            ErrorCode::QuoteAgreementMismatch,
            ErrorCode::ObligationAgreementMismatch,
            ErrorCode::ObligationCounterpartMissing,
            ErrorCode::ObligationCounterpartUnexpected,
            ErrorCode::ObligationHoldMismatch,
            ErrorCode::TooManyAgreements,
            ErrorCode::AgreementMissingSignature,
            ErrorCode::AgreementDuplicateSignature,
            ErrorCode::AgreementMalformedSignature,
            ErrorCode::FeeOutOfRange,
            ErrorCode::DivisionByZero,
            ErrorCode::ScaleTooLarge,
            ErrorCode::QuoteBadLifetime,
        ],
    ),
    (429, &[ErrorCode::PeerRateLimited]),
    (
        500,
        &[
            ErrorCode::Internal,
            ErrorCode::TimeNotIncreasing,
            ErrorCode::IndexNotNext,
        ],
    ),
    (
        502,
        &[
            ErrorCode::PartnerUnavailable,
            ErrorCode::PartnerBadAnswer,
            ErrorCode::PartnerRefused,
        ],
    ),
    (
        503,
        &[
            ErrorCode::Overloaded,
            ErrorCode::NotReady,
            ErrorCode::Timeout,
            ErrorCode::ClockJump,
            // node/src/ha/refusal.rs
            ErrorCode::RestoreRefused,
        ],
    ),
];

/// Whether `code` with `status` is a pair of [`ERROR_CODES`].
pub fn is_documented(code: &ErrorCode, status: StatusCode) -> bool {
    ERROR_CODES
        .iter()
        .any(|(s, codes)| *s == status.as_u16() && codes.contains(code))
}

/// An error answer: status, stable code and a human-readable detail.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub detail: String,
    pub retry_after_s: Option<u32>,
    /// For `partner_refused`: the partner's own stable code (spec/api.md, "Partner refusals").
    pub partner_code: Option<ErrorCode>,
}

impl ApiError {
    /// An error with `status` and `code`, a pair of [`ERROR_CODES`] (asserted in debug builds,
    /// so every test that meets an error checks the table).
    pub fn new(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> ApiError {
        debug_assert!(
            is_documented(&code, status),
            "{} {code} is not in the code -> status table (node::problem::ERROR_CODES, spec/api.md)",
            status.as_u16()
        );
        ApiError {
            status,
            code,
            detail: detail.into(),
            retry_after_s: None,
            partner_code: None,
        }
    }

    pub fn bad_body(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidBody, detail)
    }

    pub fn bad_parameter(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidParameter, detail)
    }

    pub fn not_found(code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, detail)
    }

    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "internal error",
        )
    }

    pub fn overloaded() -> ApiError {
        ApiError {
            retry_after_s: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Overloaded,
                "the write queue is full; retry later",
            )
        }
    }

    pub fn not_ready() -> ApiError {
        ApiError {
            retry_after_s: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::NotReady,
                "the node is not ready",
            )
        }
    }
}

fn title(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

impl ApiError {
    /// The problem-details body of this error (also used inside multi-write answers).
    pub fn problem(&self) -> Problem {
        Problem {
            type_: format!("urn:loyalty:problem:{}", self.code),
            title: title(self.status).into(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.clone(),
            partner_code: self.partner_code.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.problem();
        let mut r = (self.status, axum::Json(body)).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after_s {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

impl From<StateError> for ApiError {
    fn from(e: StateError) -> ApiError {
        ApiError::new(state_status(&e), ErrorCode::parse(e.code()), e.to_string())
    }
}

/// The status of each refusal of the state machine (spec/api.md, "Error codes"), every variant
/// named: a new variant does not compile until it is given one here.
fn state_status(e: &StateError) -> StatusCode {
    use StateError as E;
    match e {
        E::UnknownMember { .. }
        | E::UnknownAuthorisation { .. }
        | E::UnknownAgreement { .. }
        | E::UnknownHold { .. }
        | E::UnknownRedemption { .. }
        | E::UnknownLot { .. } => StatusCode::NOT_FOUND,
        E::HoldNotOpen { .. }
        | E::AuthorisationUsed { .. }
        | E::AgreementExists { .. }
        | E::QuoteExpired { .. }
        | E::ObligationExists { .. }
        | E::CreditLimitExceeded { .. }
        | E::AuthorisationExpired { .. }
        | E::HoldExpired { .. }
        | E::RefundExceedsObligation { .. }
        | E::NoTierPolicy => StatusCode::CONFLICT,
        E::TimeNotIncreasing { .. } | E::IndexNotNext { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        E::DuplicateId { .. }
        | E::InsufficientPoints { .. }
        | E::BalanceOverflow
        | E::HoldExpiryNotInFuture { .. }
        | E::ConditionNotMet
        | E::PreimageRequired
        | E::UnexpectedPreimage
        | E::RefundExceedsRedemption { .. }
        | E::LotNotExpired { .. }
        | E::ExpireAmountMismatch { .. }
        | E::TierFromMismatch { .. }
        | E::TierNotDue { .. }
        | E::RateCardInPast
        | E::FxSameCurrency { .. }
        | E::TooManyRates { .. }
        | E::AttestationTierMismatch { .. }
        | E::AttestationTierChangeDue { .. }
        | E::AttestationValidUntilNotInFuture { .. }
        | E::AttestationTooLong { .. }
        | E::AuthorisationExpiryNotInFuture { .. }
        | E::AuthorisationWrongMember { .. }
        | E::AuthorisationWrongPayee { .. }
        | E::AuthorisationExceeded { .. }
        | E::Agreement { .. }
        | E::TooManyAgreements { .. }
        | E::QuoteIdMismatch { .. }
        | E::QuoteAgreementMismatch { .. }
        | E::ObligationCounterpartMissing
        | E::ObligationCounterpartUnexpected
        | E::ObligationAgreementMismatch { .. }
        | E::ObligationHoldMismatch { .. }
        | E::UnknownObligation { .. }
        | E::RefundExists { .. }
        | E::TooManyRefunds { .. }
        | E::RefundAmountMismatch { .. }
        | E::RefundNeedsPartner { .. }
        | E::StatementPeriod { .. }
        | E::StatementExists { .. }
        | E::StatementSignature { .. }
        | E::StatementUncomputable { .. }
        | E::StatementMismatch { .. }
        | E::TooManyLines { .. }
        // The state machine could not read a record it needed (`storage_failure`).
        | E::Storage { .. } => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> ApiError {
        match e {
            WriteError::IdConflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::IdConflict, e.to_string())
            }
            WriteError::State(s) => s.into(),
            WriteError::TooLarge { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::EntryTooLarge,
                e.to_string(),
            ),
            // A chain is the node's own (a commit's post and payable): a handler answers the
            // refused write's error, so these reach a client only if the node is wrong.
            WriteError::LinkedWriteFailed { .. } | WriteError::ChainTooLong { .. } => {
                ApiError::internal(e)
            }
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> ApiError {
        match e {
            SubmitError::NotReady => ApiError::not_ready(),
            SubmitError::Overloaded => ApiError::overloaded(),
            SubmitError::Refused(w) => w.into(),
            SubmitError::Failed(cause) => ApiError::internal(cause),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> ApiError {
        ApiError::internal(e)
    }
}

impl From<AdmissionError> for ApiError {
    /// Every refusal of the request guard (`crate::guard`), by name.
    fn from(e: AdmissionError) -> ApiError {
        use AdmissionError as E;
        use ErrorCode as C;
        use StatusCode as S;
        let (status, code, retry_after_s) = match e {
            E::Busy => (S::SERVICE_UNAVAILABLE, C::Overloaded, Some(1)),
            E::Timeout => (S::SERVICE_UNAVAILABLE, C::Timeout, None),
            E::BodyTimeout => (S::REQUEST_TIMEOUT, C::BodyTimeout, None),
            E::BodyTooLarge => (S::PAYLOAD_TOO_LARGE, C::BodyTooLarge, None),
            E::BodyUnreadable => (S::BAD_REQUEST, C::InvalidBody, None),
            E::Unauthenticated => (S::UNAUTHORIZED, C::Unauthenticated, None),
        };
        ApiError {
            retry_after_s,
            ..ApiError::new(status, code, e.to_string())
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> ApiError {
        match e {
            KeyError::Invalid(m) => ApiError::bad_body(m),
            KeyError::Unknown(_) => ApiError::not_found(ErrorCode::NotFound, e.to_string()),
            KeyError::Store(s) => ApiError::internal(s),
        }
    }
}

impl From<PartnerError> for ApiError {
    fn from(e: PartnerError) -> ApiError {
        use ErrorCode as C;
        use PartnerError as E;
        use StatusCode as S;
        match e {
            E::Invalid(m) => ApiError::new(S::UNPROCESSABLE_ENTITY, C::InvalidPartner, m),
            E::KeyPinned(_) => ApiError::new(S::CONFLICT, C::PartnerKeyPinned, e.to_string()),
            E::Unknown(_) => ApiError::not_found(C::UnknownPartner, e.to_string()),
            E::TooMany => ApiError::new(S::UNPROCESSABLE_ENTITY, C::TooManyPartners, e.to_string()),
            E::Internal(m) => ApiError::internal(m),
        }
    }
}

impl From<WritesHeld> for ApiError {
    fn from(e: WritesHeld) -> ApiError {
        ApiError {
            retry_after_s: Some(60),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::ClockJump,
                e.to_string(),
            )
        }
    }
}

impl From<PeerRequestError> for ApiError {
    /// Every refusal of a peer request, by name (spec/federation.md §2).
    fn from(e: PeerRequestError) -> ApiError {
        use ErrorCode as C;
        use PeerRequestError as E;
        use StatusCode as S;
        let (status, code) = match e {
            E::Unsigned(_) | E::Malformed(_) => (S::UNAUTHORIZED, C::PeerUnsigned),
            E::UnknownPeer(_) => (S::UNAUTHORIZED, C::UnknownPeer),
            E::BadSignature(_) => (S::UNAUTHORIZED, C::PeerBadSignature),
            E::Stale { .. } => (S::UNAUTHORIZED, C::PeerStale),
            E::Replayed => (S::UNAUTHORIZED, C::PeerReplayed),
            E::RateLimited => (S::TOO_MANY_REQUESTS, C::PeerRateLimited),
            E::Frozen(_) => (S::FORBIDDEN, C::PartnerFrozen),
            E::InvalidBody { .. } => (S::BAD_REQUEST, C::InvalidBody),
            E::Internal(cause) => return ApiError::internal(cause),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<WitnessError> for ApiError {
    /// Every refusal of the witness, by name (spec/federation.md §4).
    fn from(e: WitnessError) -> ApiError {
        use ErrorCode as C;
        use StatusCode as S;
        use WitnessError as E;
        let (status, code) = match e {
            E::InvalidBody(_) => (S::BAD_REQUEST, C::InvalidBody),
            E::UnknownLog { .. } => (S::NOT_FOUND, C::UnknownLog),
            E::BadSignature(_) => (S::FORBIDDEN, C::BadCheckpointSignature),
            E::PartnerFrozen(_) => (S::FORBIDDEN, C::PartnerFrozen),
            E::Inconsistent(_) => (S::UNPROCESSABLE_ENTITY, C::InconsistentCheckpoint),
            E::Internal(cause) => return ApiError::internal(cause),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<RedemptionError> for ApiError {
    /// Every refusal of a redemption step, by name (spec/api.md, "Error codes"; the codes a
    /// partner's refusal may carry are in "Partner refusals").
    fn from(e: RedemptionError) -> ApiError {
        use ErrorCode as C;
        use RedemptionError as E;
        use StatusCode as S;
        let answer = |status: StatusCode, code: ErrorCode, e: &RedemptionError| {
            ApiError::new(status, code, e.to_string())
        };
        match e {
            E::InvalidBody(_) => answer(S::BAD_REQUEST, C::InvalidBody, &e),
            E::InvalidParameter(_) => answer(S::BAD_REQUEST, C::InvalidParameter, &e),
            E::ReservedId => answer(S::UNPROCESSABLE_ENTITY, C::ReservedId, &e),
            E::RedemptionIdTooLong { .. } => {
                answer(S::UNPROCESSABLE_ENTITY, C::RedemptionIdTooLong, &e)
            }
            E::RefundIdTooLong { .. } => answer(S::UNPROCESSABLE_ENTITY, C::RefundIdTooLong, &e),
            E::IdConflict(_) => answer(S::CONFLICT, C::IdConflict, &e),
            E::UnknownQuote(_) => answer(S::NOT_FOUND, C::UnknownQuote, &e),
            E::UnknownAgreement(_) => answer(S::NOT_FOUND, C::UnknownAgreement, &e),
            E::AgreementNotHere(_) => answer(S::UNPROCESSABLE_ENTITY, C::UnknownAgreement, &e),
            E::UnknownRedemption(_) => answer(S::NOT_FOUND, C::UnknownRedemption, &e),
            E::UnknownPartner(_) => answer(S::NOT_FOUND, C::UnknownPartner, &e),
            E::PartnerNotPinned(_) => answer(S::UNPROCESSABLE_ENTITY, C::UnknownPartner, &e),
            E::PartnerUnpinned(_) => answer(S::UNPROCESSABLE_ENTITY, C::PartnerUnpinned, &e),
            E::MirrorUnpinned(_) => answer(S::CONFLICT, C::PartnerUnpinned, &e),
            E::PartnerFrozen(_) => answer(S::FORBIDDEN, C::PartnerFrozen, &e),
            E::NotAParty(_) => answer(S::UNPROCESSABLE_ENTITY, C::AgreementNotAParty, &e),
            E::SenderNotAParty => answer(S::FORBIDDEN, C::AgreementNotAParty, &e),
            E::AgreementNotApproved => answer(S::CONFLICT, C::AgreementNotApproved, &e),
            E::AgreementTermsDiffer(_) => answer(S::CONFLICT, C::AgreementTermsDiffer, &e),
            E::Agreement(ref a) => answer(S::UNPROCESSABLE_ENTITY, C::parse(a.code()), &e),
            E::QuoteDirectionNotAgreed(_) => {
                answer(S::UNPROCESSABLE_ENTITY, C::QuoteDirectionNotAgreed, &e)
            }
            E::NoRateCard(_) => answer(S::UNPROCESSABLE_ENTITY, C::NoRateCard, &e),
            E::NoFxRate(_) => answer(S::UNPROCESSABLE_ENTITY, C::NoFxRate, &e),
            E::Quote(ref q) => answer(S::UNPROCESSABLE_ENTITY, C::parse(q.code()), &e),
            E::QuoteExpired(_) => answer(S::CONFLICT, C::QuoteExpired, &e),
            E::QuoteOutOfBounds(_) => answer(S::UNPROCESSABLE_ENTITY, C::QuoteOutOfBounds, &e),
            E::HoldOutOfBounds(_) => answer(S::UNPROCESSABLE_ENTITY, C::HoldOutOfBounds, &e),
            E::QuoteWrongParties => answer(S::UNPROCESSABLE_ENTITY, C::QuoteWrongParties, &e),
            E::QuoteMismatch(_) => answer(S::UNPROCESSABLE_ENTITY, C::QuoteMismatch, &e),
            E::ConditionNotMet => answer(S::UNPROCESSABLE_ENTITY, C::ConditionNotMet, &e),
            E::HoldNotOpen(_) => answer(S::CONFLICT, C::HoldNotOpen, &e),
            E::NotPrepared => answer(S::CONFLICT, C::NotPrepared, &e),
            E::CreditLimitExceeded(_) => answer(S::CONFLICT, C::CreditLimitExceeded, &e),
            E::NotCommitted(_) => answer(S::CONFLICT, C::NotCommitted, &e),
            E::RefundExceedsObligation(_) => answer(S::CONFLICT, C::RefundExceedsObligation, &e),
            E::PeriodOpen(_) => answer(S::CONFLICT, C::PeriodOpen, &e),
            E::StatementDisagreed(_) => answer(S::CONFLICT, C::StatementDisagreed, &e),
            E::StatementBadSignature(_) => {
                answer(S::UNPROCESSABLE_ENTITY, C::StatementBadSignature, &e)
            }
            E::StatementPeriodInvalid => {
                answer(S::UNPROCESSABLE_ENTITY, C::StatementPeriodInvalid, &e)
            }
            E::Statement(ref st) => answer(S::UNPROCESSABLE_ENTITY, C::parse(st.code()), &e),
            E::TooManyLines(s) => s.into(),
            E::PartnerUnavailable { .. } => answer(S::BAD_GATEWAY, C::PartnerUnavailable, &e),
            E::PartnerRefused {
                refusal,
                ref partner_code,
                ..
            } => {
                let status = match refusal {
                    Refusal::Conflict => S::CONFLICT,
                    Refusal::Invalid => S::UNPROCESSABLE_ENTITY,
                    Refusal::Failed => S::BAD_GATEWAY,
                };
                ApiError {
                    partner_code: Some(partner_code.clone()),
                    ..answer(status, C::PartnerRefused, &e)
                }
            }
            E::PartnerBadAnswer(_) => answer(S::BAD_GATEWAY, C::PartnerBadAnswer, &e),
            E::Submit(s) => s.into(),
            E::Read(r) => r.into(),
            E::Internal(cause) => ApiError::internal(cause),
        }
    }
}

/// Maps axum's body and path rejections to problem details.
pub fn from_json_rejection(r: axum::extract::rejection::JsonRejection) -> ApiError {
    use axum::extract::rejection::JsonRejection as J;
    match r {
        J::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "expected Content-Type: application/json",
        ),
        J::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::BodyTooLarge,
            "the request body exceeds the limit",
        ),
        other => ApiError::bad_body(other.body_text()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use ledger::entry::ObligationSide;
    use ledger::types::{EntryId, LogIndex};

    use super::*;

    /// The codes spec/api.md allows under more than one status, each explained there.
    const SEVERAL_STATUSES: [&str; 5] = [
        "partner_refused",
        "unknown_partner",
        "unknown_agreement",
        "partner_unpinned",
        "agreement_not_a_party",
    ];

    fn api_md() -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/api.md");
        std::fs::read_to_string(path).expect("spec/api.md")
    }

    /// Every `(status, code)` of the "Error codes" table of spec/api.md.
    fn spec_table(text: &str) -> BTreeSet<(u16, String)> {
        let table = &text[text.find("| status | codes |").expect("the table")..];
        let mut pairs = BTreeSet::new();
        for line in table.lines().skip(2) {
            let Some(row) = line.strip_prefix("| ") else {
                break;
            };
            let (status, codes) = row.split_once(" | ").expect("| status | codes |");
            let status: u16 = status.parse().expect("a status");
            // Codes are the backquoted snake_case words (not `ENTRY_BYTES_MAX` or `Retry-After`).
            for (i, part) in codes.split('`').enumerate() {
                if i % 2 == 1 && part.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                    pairs.insert((status, part.to_owned()));
                }
            }
        }
        pairs
    }

    fn node_table() -> BTreeSet<(u16, String)> {
        ERROR_CODES
            .iter()
            .flat_map(|(s, codes)| codes.iter().map(|c| (*s, c.as_str().to_owned())))
            .collect()
    }

    #[test]
    fn every_submit_error_has_its_status_and_code() {
        let cases = [
            (SubmitError::NotReady, 503, "not_ready", Some(1)),
            (SubmitError::Overloaded, 503, "overloaded", Some(1)),
            (
                SubmitError::Failed("disk full".into()),
                500,
                "internal",
                None,
            ),
            (
                SubmitError::Refused(WriteError::IdConflict {
                    id: "e1".parse().unwrap(),
                    index: 4,
                }),
                409,
                "id_conflict",
                None,
            ),
            (
                SubmitError::Refused(WriteError::State(StateError::NoTierPolicy)),
                409,
                "no_tier_policy",
                None,
            ),
        ];
        for (e, status, code, retry) in cases {
            let what = format!("{e:?}");
            let a = ApiError::from(e);
            assert_eq!(
                (a.status.as_u16(), a.code.as_str(), a.retry_after_s),
                (status, code, retry),
                "{what}"
            );
        }
        // The cause of a failed commit is logged, never answered.
        assert_eq!(
            ApiError::from(SubmitError::Failed("disk full".into())).detail,
            "internal error"
        );
    }

    #[test]
    fn the_spec_error_table_and_the_nodes_are_the_same_both_ways() {
        let spec = spec_table(&api_md());
        let node = node_table();
        let only_spec: Vec<_> = spec.difference(&node).collect();
        let only_node: Vec<_> = node.difference(&spec).collect();
        assert!(
            only_spec.is_empty(),
            "in spec/api.md, not in ERROR_CODES: {only_spec:?}"
        );
        assert!(
            only_node.is_empty(),
            "in ERROR_CODES, not in spec/api.md: {only_node:?}"
        );
    }

    #[test]
    fn a_code_has_one_status_except_the_documented_five() {
        let mut seen: Vec<(&str, u16)> = Vec::new();
        for (status, codes) in ERROR_CODES {
            for code in codes.iter().map(ErrorCode::as_str) {
                if let Some((_, other)) = seen.iter().find(|(c, _)| *c == code) {
                    assert!(
                        SEVERAL_STATUSES.contains(&code),
                        "{code} is under {other} and {status}"
                    );
                }
                seen.push((code, *status));
            }
        }
        for code in SEVERAL_STATUSES {
            assert!(
                seen.iter().filter(|(c, _)| *c == code).count() > 1,
                "{code} has one status now: drop it from the exceptions in spec/api.md"
            );
        }
    }

    /// Every "`<status> <code>`" the routes table names agrees with the code table.
    #[test]
    fn every_status_and_code_named_in_the_routes_is_in_the_table() {
        let text = api_md();
        let routes = &text[..text.find("## Error codes").expect("the section")];
        let mut named = 0;
        for (i, part) in routes.split('`').enumerate() {
            let Some((status, code)) = part.split_once(' ') else {
                continue;
            };
            // Error answers only (`200 ok` is /healthz's body).
            let (Ok(status @ 400..), true) = (
                status.parse::<u16>(),
                i % 2 == 1 && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            ) else {
                continue;
            };
            let status = StatusCode::from_u16(status).expect("a status");
            assert!(
                is_documented(&ErrorCode::parse(code), status),
                "spec/api.md names `{} {code}`, which the code table does not have",
                status.as_u16()
            );
            named += 1;
        }
        assert!(named > 20, "only {named} statuses found in the routes");
    }

    #[test]
    fn state_machine_refusals_answer_422_as_the_spec_says() {
        let id = |s: &str| s.parse::<EntryId>().unwrap();
        let index = LogIndex::new(3).unwrap();
        let refusals = [
            StateError::DuplicateId(id("e-1"), index),
            StateError::RefundExists {
                redemption: id("r-1"),
                refund: id("f-1"),
                index,
            },
            StateError::RefundNeedsPartner(id("r-1")),
            StateError::TooManyRefunds {
                redemption: id("r-1"),
                max: 64,
            },
            StateError::StatementExists {
                agreement: id("a-1"),
                period: 2,
                index,
            },
            StateError::StatementPeriod("not ended"),
            StateError::StatementMismatch {
                expected: Box::new("{}".into()),
            },
            StateError::UnknownObligation {
                side: ObligationSide::Payable,
                payer: "brand-a".parse().unwrap(),
                redemption: id("r-1"),
            },
        ];
        for e in refusals {
            let code = e.code();
            let api = ApiError::from(e);
            assert_eq!(api.status, StatusCode::UNPROCESSABLE_ENTITY, "{code}");
            assert_eq!(api.code, code);
        }
        let conflict = ApiError::from(StateError::HoldNotOpen {
            id: id("h-1"),
            status: "posted",
        });
        assert_eq!(conflict.status, StatusCode::CONFLICT);
    }

    #[test]
    fn redemption_refusals_answer_their_status_code_and_message() {
        let id = |s: &str| s.parse::<EntryId>().unwrap();
        let brand = |s: &str| s.parse::<ledger::types::BrandId>().unwrap();
        use RedemptionError as E;
        let cases = [
            (E::InvalidBody("give exactly one".into()), 400, "invalid_body", "give exactly one"),
            (E::ReservedId, 422, "reserved_id", "ids starting with \"sys.\" are reserved for the node"),
            (E::RedemptionIdTooLong { max: 96 }, 422, "redemption_id_too_long", "a redemption id has at most 96 characters"),
            (E::UnknownQuote(id("r-1")), 404, "unknown_quote", "no quote r-1"),
            (E::UnknownAgreement("no agreement a-1".into()), 404, "unknown_agreement", "no agreement a-1"),
            (E::AgreementNotHere("no agreement a-1 here".into()), 422, "unknown_agreement", "no agreement a-1 here"),
            (E::UnknownPartner("no partner b".into()), 404, "unknown_partner", "no partner b"),
            (E::PartnerNotPinned("b is not pinned".into()), 422, "unknown_partner", "b is not pinned"),
            (E::PartnerUnpinned(brand("b")), 422, "partner_unpinned", "b is not a pinned partner, so nothing of it is verified"),
            (E::MirrorUnpinned(brand("b")), 409, "partner_unpinned", "b is not pinned, so nothing of it is verified"),
            (E::NotAParty(brand("b")), 422, "agreement_not_a_party", "b is not a party to these terms"),
            (E::SenderNotAParty, 403, "agreement_not_a_party", "the sender is not the other party of these terms"),
            (E::QuoteExpired("the quote expired"), 409, "quote_expired", "the quote expired"),
            (E::NotPrepared, 409, "not_prepared", "prepare first"),
            (E::NotCommitted(id("r-1")), 409, "not_committed", "redemption r-1 is not committed; void it instead"),
            (E::HoldNotOpen("voided".into()), 409, "hold_not_open", "voided"),
            (E::StatementPeriodInvalid, 422, "statement_period_invalid", "not a settlement period"),
            (E::PartnerUnavailable { partner: brand("b"), what: "the refund" }, 502, "partner_unavailable",
                "b could not be reached; retry the refund with the same request (every step is idempotent)"),
            (E::PartnerBadAnswer("not a receipt".into()), 502, "partner_bad_answer", "not a receipt"),
            (E::Submit(SubmitError::Overloaded), 503, "overloaded", "the write queue is full; retry later"),
            (E::internal("disk full"), 500, "internal", "internal error"),
        ];
        for (e, status, code, detail) in cases {
            let what = format!("{e:?}");
            let a = ApiError::from(e);
            assert_eq!(
                (
                    a.status.as_u16(),
                    a.code.as_str(),
                    a.detail.as_str(),
                    a.partner_code
                ),
                (status, code, detail, None),
                "{what}"
            );
        }
        let answer = br#"{"code":"too_many_refunds","detail":"64 at most"}"#;
        for (refusal, status) in [
            (Refusal::Conflict, 409),
            (Refusal::Invalid, 422),
            (Refusal::Failed, 502),
        ] {
            let a = ApiError::from(RedemptionError::refused(
                &brand("b"),
                "the refund",
                refusal,
                answer,
            ));
            assert_eq!(
                (a.status.as_u16(), a.code.as_str()),
                (status, "partner_refused")
            );
            assert_eq!(
                a.detail,
                "b refused the refund: too_many_refunds: 64 at most"
            );
            assert_eq!(a.partner_code, Some(ErrorCode::TooManyRefunds));
        }
    }

    #[test]
    fn peer_witness_and_clock_refusals_answer_their_status_and_code() {
        let b: ledger::types::BrandId = "b".parse().unwrap();
        use PeerRequestError as P;
        let peer = [
            (P::Unsigned("loyalty-peer"), 401, "peer_unsigned"),
            (P::Malformed("loyalty-peer-time"), 401, "peer_unsigned"),
            (P::UnknownPeer(b.clone()), 401, "unknown_peer"),
            (P::BadSignature(b.clone()), 401, "peer_bad_signature"),
            (
                P::Stale {
                    time_ms: 1,
                    skew_ms: 2,
                    now_ms: 3,
                },
                401,
                "peer_stale",
            ),
            (P::Replayed, 401, "peer_replayed"),
            (P::RateLimited, 429, "peer_rate_limited"),
            (P::Frozen(b.clone()), 403, "partner_frozen"),
            (
                P::InvalidBody {
                    what: "statement".into(),
                    detail: "eof".into(),
                },
                400,
                "invalid_body",
            ),
            (P::Internal("bad key".into()), 500, "internal"),
        ];
        for (e, status, code) in peer {
            let what = format!("{e:?}");
            let a = ApiError::from(e);
            assert_eq!(
                (a.status.as_u16(), a.code.as_str()),
                (status, code),
                "{what}"
            );
        }
        assert_eq!(
            ApiError::from(P::Unsigned("loyalty-peer")).detail,
            "a peer request needs the loyalty-peer header (spec/federation.md §2)"
        );
        use WitnessError as W;
        let witness = [
            (W::InvalidBody("no `old` line".into()), 400, "invalid_body"),
            (
                W::UnknownLog {
                    origin: "x".into(),
                    partner: b.clone(),
                },
                404,
                "unknown_log",
            ),
            (W::PartnerFrozen(b), 403, "partner_frozen"),
            (W::Internal("disk".into()), 500, "internal"),
        ];
        for (e, status, code) in witness {
            let what = format!("{e:?}");
            let a = ApiError::from(e);
            assert_eq!(
                (a.status.as_u16(), a.code.as_str()),
                (status, code),
                "{what}"
            );
        }
        use AdmissionError as A;
        let admission = [
            (A::Busy, 503, "overloaded", Some(1)),
            (A::Timeout, 503, "timeout", None),
            (A::BodyTimeout, 408, "body_timeout", None),
            (A::BodyTooLarge, 413, "body_too_large", None),
            (A::BodyUnreadable, 400, "invalid_body", None),
            (A::Unauthenticated, 401, "unauthenticated", None),
        ];
        for (e, status, code, retry) in admission {
            let a = ApiError::from(e);
            assert_eq!(
                (a.status.as_u16(), a.code.as_str(), a.retry_after_s),
                (status, code, retry),
                "{e:?}"
            );
        }
        let held = ApiError::from(WritesHeld);
        assert_eq!(
            (held.status.as_u16(), held.code.as_str(), held.retry_after_s),
            (503, "clock_jump", Some(60))
        );
    }

    #[test]
    fn key_and_partner_errors_answer_their_status_code_and_message() {
        let b: ledger::types::BrandId = "b".parse().unwrap();
        let cases = [
            (
                ApiError::from(KeyError::Invalid("empty name".into())),
                400,
                "invalid_body",
                "empty name",
            ),
            (
                ApiError::from(KeyError::Unknown("k1".into())),
                404,
                "not_found",
                "no key k1",
            ),
            (
                ApiError::from(PartnerError::Invalid("bad url".into())),
                422,
                "invalid_partner",
                "bad url",
            ),
            (
                ApiError::from(PartnerError::KeyPinned(b.clone())),
                409,
                "partner_key_pinned",
                "partner b has a pinned key and a mirror; rotating keys is an operator procedure",
            ),
            (
                ApiError::from(PartnerError::Unknown(b)),
                404,
                "unknown_partner",
                "no partner b",
            ),
            (
                ApiError::from(PartnerError::TooMany),
                422,
                "too_many_partners",
                "at most 64 partners",
            ),
            (
                ApiError::from(PartnerError::Internal("disk".into())),
                500,
                "internal",
                "internal error",
            ),
        ];
        for (a, status, code, detail) in cases {
            assert_eq!(
                (a.status.as_u16(), a.code.as_str(), a.detail.as_str()),
                (status, code, detail)
            );
        }
    }

    #[test]
    fn a_partner_refusal_carries_the_partners_code_and_no_other_problem_does() {
        let refused = ApiError {
            partner_code: Some(ErrorCode::TooManyRefunds),
            ..ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::PartnerRefused,
                "brand-a refused the refund",
            )
        };
        let body = serde_json::to_value(refused.problem()).unwrap();
        assert_eq!(body["code"], "partner_refused");
        assert_eq!(body["partner_code"], "too_many_refunds");
        let plain = serde_json::to_value(ApiError::overloaded().problem()).unwrap();
        assert!(plain.get("partner_code").is_none(), "{plain}");
    }
}
