//! The SDK's errors: what a caller can act on.
//!
//! Invariant: an [`Error::Api`] always carries the node's stable `code` (spec/api.md, "Error
//! codes") parsed into an [`ErrorCode`]; callers branch on the code, never on `detail`.

use std::fmt;

use ledger::entry::EntryError;
use ledger::receipt::ReceiptError;
use serde::Deserialize;

/// Longest part of a non-JSON error body kept in [`Error::Api::detail`], in bytes.
pub const ERROR_DETAIL_BYTES_MAX: usize = 512;

/// Everything a call of the SDK can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The node answered with an RFC 9457 problem (or another non-success status).
    #[error("the node answered {status} {code}: {detail}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The stable machine-readable code.
        code: ErrorCode,
        /// A human-readable explanation; not stable, do not parse it.
        detail: String,
        /// For [`ErrorCode::PartnerRefused`]: the partner's own code (the problem document's
        /// `partner_code`, spec/api.md "Partner refusals"), e.g. `hold_not_open`,
        /// `credit_limit_exceeded`, `too_many_refunds`. `None` for every other code.
        partner_code: Option<ErrorCode>,
    },
    /// The request did not reach the node, or its answer did not arrive (connection refused,
    /// reset, timed out, TLS failure), after every retry the policy allowed.
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    /// The node answered, but a receipt or signature it sent does not verify, or the receipt
    /// is for another entry than the one asked for. The node must not be trusted for this
    /// write; retrying with the same id is safe.
    #[error("verification failed: {0}")]
    Verification(#[from] VerificationError),
    /// The node answered success with a body that is not what spec/api.md describes.
    #[error("cannot decode the node's answer: {0}")]
    Decode(String),
    /// The request or the client's configuration is invalid; nothing was sent.
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl Error {
    /// The node's error code, for [`Error::Api`].
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// For a `partner_refused` answer, the partner's own code: what to act on when a
    /// cross-brand call is refused by the member's brand.
    pub fn partner_code(&self) -> Option<&ErrorCode> {
        match self {
            Error::Api { partner_code, .. } => partner_code.as_ref(),
            _ => None,
        }
    }

    /// The HTTP status, for [`Error::Api`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Decodes an error answer: a problem-details body gives the code and detail; any other
    /// body gives [`ErrorCode::Other`] named after the status and the start of the body.
    pub fn from_problem(status: u16, body: &[u8]) -> Error {
        #[derive(Deserialize)]
        struct Problem {
            code: String,
            #[serde(default)]
            detail: Option<String>,
            #[serde(default)]
            title: Option<String>,
            #[serde(default)]
            partner_code: Option<String>,
        }
        match serde_json::from_slice::<Problem>(body) {
            Ok(p) => Error::Api {
                status,
                code: ErrorCode::parse(&p.code),
                detail: p.detail.or(p.title).unwrap_or_default(),
                partner_code: p.partner_code.as_deref().map(ErrorCode::parse),
            },
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let mut end = text.len().min(ERROR_DETAIL_BYTES_MAX);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                Error::Api {
                    status,
                    code: ErrorCode::Other(format!("http_{status}")),
                    detail: text[..end].trim().to_owned(),
                    partner_code: None,
                }
            }
        }
    }
}

/// Why a receipt was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerificationError {
    /// The receipt's checkpoint signature, entry encoding or inclusion proof does not verify
    /// against the pinned log key.
    #[error(transparent)]
    Receipt(#[from] ReceiptError),
    /// The receipt's entry is not a canonical entry.
    #[error("the receipt's entry does not decode: {0}")]
    Entry(#[from] EntryError),
    /// The receipt is valid but for another entry than the one asked for.
    #[error("the receipt's entry has {field} {got}, but the request asked for {expected}")]
    Mismatch {
        /// Which part differs: `index`, `id`, `type` or `body`.
        field: &'static str,
        /// What the request asked for.
        expected: String,
        /// What the receipt holds.
        got: String,
    },
    /// A checkpoint or note does not verify against the pinned log key.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] ledger::checkpoint::CheckpointError),
    /// An operation needs a pinned log key and the client has none.
    #[error("no log verifier key is pinned")]
    NoPinnedKey,
    /// A tier attestation does not verify (spec/federation.md §6).
    #[error("attestation: {0}")]
    Attestation(#[from] ledger::attestation::AttestationError),
}

/// The stable error codes of spec/api.md, "Error codes".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 400: malformed JSON, unknown or missing field, wrong type, out-of-range value.
    InvalidBody,
    /// 400: a path or query parameter is invalid.
    InvalidParameter,
    /// 401: no key, unknown key, revoked key.
    Unauthenticated,
    /// 403: the key lacks the route's scope.
    Forbidden,
    /// 404: the member has never held points.
    UnknownMember,
    /// 404: no hold with that id.
    UnknownHold,
    /// 404: no redemption with that id.
    UnknownRedemption,
    /// 404: nothing at that path.
    NotFound,
    /// 409: the id was used before by a write with another body.
    IdConflict,
    /// 409: the hold is already posted or voided.
    HoldNotOpen,
    /// 409: the hold has expired.
    HoldExpired,
    /// 413: the body exceeds 64 KiB.
    BodyTooLarge,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 422: the member has fewer available points than asked.
    InsufficientPoints,
    /// 422: the member's balance would exceed 2^53-1 points.
    BalanceOverflow,
    /// 422: a hold must expire after the time it is logged.
    HoldExpiryNotInFuture,
    /// 422: the preimage does not match the hold's condition.
    ConditionNotMet,
    /// 422: the hold has a condition and no preimage was given.
    PreimageRequired,
    /// 422: the hold has no condition and a preimage was given.
    UnexpectedPreimage,
    /// 422: the refund exceeds what is left of the redemption.
    RefundExceedsRedemption,
    /// 422: a rate card must not be valid from before it is logged.
    RateCardInPast,
    /// 422: ids starting with `sys.` are reserved for the node.
    ReservedId,
    /// 500: the node failed internally.
    Internal,
    /// 503: the write queue is full; retry after the `Retry-After` delay.
    Overloaded,
    /// 503: the node is starting or stopping.
    NotReady,
    /// 503: the write was not committed in time; retrying with the same id is safe.
    Timeout,
    /// 408: the request body did not arrive within the node's body timeout; nothing was done.
    BodyTimeout,
    /// 503: the node's system clock jumped forward and writes are stopped until its operator
    /// confirms the time.
    ClockJump,
    /// 409: a partner's pinned key cannot be replaced through the API.
    PartnerKeyPinned,
    /// 403: evidence froze the partnership (spec/federation.md §5).
    PartnerFrozen,
    /// 422: the attestation's statement is about another brand than expected.
    AttestationWrongBrand,
    /// 422: the attestation's receipt does not verify against the brand's key.
    AttestationBadReceipt,
    /// 422: the witness policy is unusable.
    AttestationInvalidPolicy,
    /// 422: a witness cosignature on the attestation's checkpoint does not verify.
    AttestationBadCosignature,
    /// 422: too few witnesses cosigned the attestation's checkpoint.
    AttestationQuorum,
    /// 422: the receipt is not for a `tier_attestation` entry.
    AttestationNotAttestation,
    /// 422: the statement differs from the logged attestation.
    AttestationMismatch,
    /// 422: the attestation's `valid_until` has passed.
    AttestationExpired,
    /// 409, 422 or 502: a partner refused a cross-brand call; [`Error::partner_code`] says why.
    PartnerRefused,
    /// 502: the partner could not be reached; retry the same request.
    PartnerUnavailable,
    /// 502: the partner's answer does not verify or is not what was asked.
    PartnerBadAnswer,
    /// 409: the payer's open obligation to the payee would exceed the agreement's credit limit.
    CreditLimitExceeded,
    /// 409: the refund exceeds what is left of the redemption.
    RefundExceedsObligation,
    /// 422: the redemption has had the most refunds it can have.
    TooManyRefunds,
    /// A code this SDK version does not know, verbatim.
    Other(String),
}

const CODES: &[(&str, ErrorCode)] = &[
    ("invalid_body", ErrorCode::InvalidBody),
    ("invalid_parameter", ErrorCode::InvalidParameter),
    ("unauthenticated", ErrorCode::Unauthenticated),
    ("forbidden", ErrorCode::Forbidden),
    ("unknown_member", ErrorCode::UnknownMember),
    ("unknown_hold", ErrorCode::UnknownHold),
    ("unknown_redemption", ErrorCode::UnknownRedemption),
    ("not_found", ErrorCode::NotFound),
    ("id_conflict", ErrorCode::IdConflict),
    ("hold_not_open", ErrorCode::HoldNotOpen),
    ("hold_expired", ErrorCode::HoldExpired),
    ("body_too_large", ErrorCode::BodyTooLarge),
    ("unsupported_media_type", ErrorCode::UnsupportedMediaType),
    ("insufficient_points", ErrorCode::InsufficientPoints),
    ("balance_overflow", ErrorCode::BalanceOverflow),
    (
        "hold_expiry_not_in_future",
        ErrorCode::HoldExpiryNotInFuture,
    ),
    ("condition_not_met", ErrorCode::ConditionNotMet),
    ("preimage_required", ErrorCode::PreimageRequired),
    ("unexpected_preimage", ErrorCode::UnexpectedPreimage),
    (
        "refund_exceeds_redemption",
        ErrorCode::RefundExceedsRedemption,
    ),
    ("rate_card_in_past", ErrorCode::RateCardInPast),
    ("reserved_id", ErrorCode::ReservedId),
    ("internal", ErrorCode::Internal),
    ("overloaded", ErrorCode::Overloaded),
    ("not_ready", ErrorCode::NotReady),
    ("timeout", ErrorCode::Timeout),
    ("body_timeout", ErrorCode::BodyTimeout),
    ("clock_jump", ErrorCode::ClockJump),
    ("partner_key_pinned", ErrorCode::PartnerKeyPinned),
    ("partner_frozen", ErrorCode::PartnerFrozen),
    ("attestation_wrong_brand", ErrorCode::AttestationWrongBrand),
    ("attestation_bad_receipt", ErrorCode::AttestationBadReceipt),
    (
        "attestation_invalid_policy",
        ErrorCode::AttestationInvalidPolicy,
    ),
    (
        "attestation_bad_cosignature",
        ErrorCode::AttestationBadCosignature,
    ),
    ("attestation_quorum", ErrorCode::AttestationQuorum),
    (
        "attestation_not_attestation",
        ErrorCode::AttestationNotAttestation,
    ),
    ("attestation_mismatch", ErrorCode::AttestationMismatch),
    ("attestation_expired", ErrorCode::AttestationExpired),
    ("partner_refused", ErrorCode::PartnerRefused),
    ("partner_unavailable", ErrorCode::PartnerUnavailable),
    ("partner_bad_answer", ErrorCode::PartnerBadAnswer),
    ("credit_limit_exceeded", ErrorCode::CreditLimitExceeded),
    (
        "refund_exceeds_obligation",
        ErrorCode::RefundExceedsObligation,
    ),
    ("too_many_refunds", ErrorCode::TooManyRefunds),
];

impl ErrorCode {
    /// The code for a `code` string; unknown strings become [`ErrorCode::Other`].
    pub fn parse(s: &str) -> ErrorCode {
        CODES
            .iter()
            .find(|(name, _)| *name == s)
            .map_or_else(|| ErrorCode::Other(s.to_owned()), |(_, c)| c.clone())
    }

    /// The code as the node writes it.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::Other(s) => s,
            known => CODES
                .iter()
                .find(|(_, c)| c == known)
                .map_or("other", |(name, _)| name),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_string() {
        for (name, code) in CODES {
            assert_eq!(&ErrorCode::parse(name), code);
            assert_eq!(code.as_str(), *name);
        }
        assert_eq!(
            ErrorCode::parse("unknown_lot"),
            ErrorCode::Other("unknown_lot".into())
        );
        assert_eq!(
            ErrorCode::Other("unknown_lot".into()).as_str(),
            "unknown_lot"
        );
    }

    #[test]
    fn every_attestation_error_code_is_known() {
        use ledger::attestation::AttestationError as A;
        use ledger::checkpoint::CheckpointError;
        let t = ledger::types::LogTime::new(1).unwrap();
        let policy = CheckpointError::InvalidPolicy { reason: "x" };
        let all = [
            A::WrongBrand {
                expected: "a".parse().unwrap(),
                got: "b".parse().unwrap(),
            },
            A::BadReceipt(ReceiptError::BadHash("x".into())),
            A::InvalidPolicy(policy.clone()),
            A::BadCosignature(policy),
            A::Quorum { got: 0, need: 1 },
            A::NotAttestation { type_name: "earn" },
            A::Mismatch { field: "tier" },
            A::Expired {
                valid_until: t,
                now: t,
            },
        ];
        for e in all {
            let code = ErrorCode::parse(e.code());
            assert!(!matches!(code, ErrorCode::Other(_)), "{}", e.code());
        }
    }

    #[test]
    fn problem_details_decode_into_code_and_detail() {
        let body = br#"{"type":"urn:loyalty:problem:insufficient_points","title":"Unprocessable Entity","status":422,"detail":"insufficient points: 5 available, 10 requested","code":"insufficient_points"}"#;
        match Error::from_problem(422, body) {
            Error::Api {
                status,
                code,
                detail,
                partner_code,
            } => {
                assert_eq!(partner_code, None);
                assert_eq!(status, 422);
                assert_eq!(code, ErrorCode::InsufficientPoints);
                assert_eq!(detail, "insufficient points: 5 available, 10 requested");
            }
            other => panic!("unexpected {other:?}"),
        }
        let e = Error::from_problem(503, br#"{"code":"overloaded","status":503}"#);
        assert_eq!(e.code(), Some(&ErrorCode::Overloaded));
        assert_eq!(e.status(), Some(503));
    }

    #[test]
    fn a_partner_refusal_exposes_the_partners_code() {
        let body = br#"{"type":"urn:loyalty:problem:partner_refused","title":"Unprocessable Entity","status":422,"detail":"brand-a refused the refund: too_many_refunds: 64 refunds","code":"partner_refused","partner_code":"too_many_refunds"}"#;
        let e = Error::from_problem(422, body);
        assert_eq!(e.code(), Some(&ErrorCode::PartnerRefused));
        assert_eq!(e.partner_code(), Some(&ErrorCode::TooManyRefunds));
        let e = Error::from_problem(
            409,
            br#"{"code":"partner_refused","partner_code":"a_new_code"}"#,
        );
        assert_eq!(
            e.partner_code(),
            Some(&ErrorCode::Other("a_new_code".into()))
        );
        let e = Error::from_problem(409, br#"{"code":"hold_not_open"}"#);
        assert_eq!(e.partner_code(), None);
    }

    #[test]
    fn unknown_codes_and_non_json_bodies_are_kept() {
        let e = Error::from_problem(404, br#"{"code":"unknown_lot","detail":"no lot"}"#);
        assert_eq!(e.code(), Some(&ErrorCode::Other("unknown_lot".into())));
        let e = Error::from_problem(502, b"<html>Bad gateway</html>");
        match e {
            Error::Api { code, detail, .. } => {
                assert_eq!(code, ErrorCode::Other("http_502".into()));
                assert_eq!(detail, "<html>Bad gateway</html>");
            }
            other => panic!("unexpected {other:?}"),
        }
        let long = "é".repeat(1000);
        let Error::Api { detail, .. } = Error::from_problem(500, long.as_bytes()) else {
            panic!()
        };
        assert!(detail.len() <= ERROR_DETAIL_BYTES_MAX);
    }
}
