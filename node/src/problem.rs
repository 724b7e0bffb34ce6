//! RFC 9457 problem details: the one place where every error becomes an HTTP status and a
//! stable machine-readable `code` (spec/api.md, "Error codes").

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use ledger::log::WriteError;
use ledger::state::StateError;

use loyalty_wire::ErrorCode;

pub use loyalty_wire::Problem;

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
