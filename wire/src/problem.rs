//! Error answers: the stable error codes and the RFC 9457 problem document that carries them
//! (spec/api.md, "Error codes").
//!
//! Invariant: [`ErrorCode`] has one variant per code of spec/api.md's table and no other (a
//! test reads the table); a code this version does not know is kept verbatim as
//! [`ErrorCode::Other`], so a newer node's code does not break an older client.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $code:literal,)*) => {
        /// A stable machine-readable error code (spec/api.md, "Error codes"): what a caller
        /// acts on. It travels as its snake_case string (`insufficient_points`), and its `Debug`
        /// form is that string too (`Other("...")` for an unknown one), so logs and error
        /// messages show the code as the API writes it.
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
            /// A code this version does not know, verbatim.
            Other(String),
        }

        impl ErrorCode {
            /// Every known code, in the order of spec/api.md's table.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code for a `code` string; unknown strings become [`ErrorCode::Other`].
            pub fn parse(s: &str) -> ErrorCode {
                match s {
                    $($code => ErrorCode::$variant,)*
                    other => ErrorCode::Other(other.to_owned()),
                }
            }

            /// The code as it is written on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                    ErrorCode::Other(s) => s,
                }
            }
        }
    };
}

error_codes! {
    /// 400: malformed JSON, unknown or missing field, wrong type, out-of-range value.
    InvalidBody = "invalid_body",
    /// 400: a path or query parameter is invalid.
    InvalidParameter = "invalid_parameter",
    /// 401: no key, unknown key, revoked key.
    Unauthenticated = "unauthenticated",
    /// 401 (spec/api.md, "Error codes").
    PeerUnsigned = "peer_unsigned",
    /// 401 (spec/api.md, "Error codes").
    UnknownPeer = "unknown_peer",
    /// 401 (spec/api.md, "Error codes").
    PeerBadSignature = "peer_bad_signature",
    /// 401 (spec/api.md, "Error codes").
    PeerStale = "peer_stale",
    /// 401 (spec/api.md, "Error codes").
    PeerReplayed = "peer_replayed",
    /// 403: the key lacks the route's scope.
    Forbidden = "forbidden",
    /// 403: evidence froze the partnership (spec/federation.md §5).
    PartnerFrozen = "partner_frozen",
    /// 403 (spec/api.md, "Error codes").
    BadCheckpointSignature = "bad_checkpoint_signature",
    /// 403 or 422 (spec/api.md, "Error codes").
    AgreementNotAParty = "agreement_not_a_party",
    /// 404: the member has never held points.
    UnknownMember = "unknown_member",
    /// 404 (spec/api.md, "Error codes").
    UnknownAuthorisation = "unknown_authorisation",
    /// 404 or 422 (spec/api.md, "Error codes").
    UnknownAgreement = "unknown_agreement",
    /// 404 (spec/api.md, "Error codes").
    UnknownQuote = "unknown_quote",
    /// 404: no redemption with that id.
    UnknownRedemption = "unknown_redemption",
    /// 404: no hold with that id.
    UnknownHold = "unknown_hold",
    /// 404 (spec/api.md, "Error codes").
    UnknownLot = "unknown_lot",
    /// 404 or 422 (spec/api.md, "Error codes").
    UnknownPartner = "unknown_partner",
    /// 404 (spec/api.md, "Error codes").
    UnknownLog = "unknown_log",
    /// 404 (spec/api.md, "Error codes").
    NotMirrored = "not_mirrored",
    /// 404: nothing at that path.
    NotFound = "not_found",
    /// 408: the request body did not arrive within the node's body timeout; nothing was done.
    BodyTimeout = "body_timeout",
    /// 409: the id was used before by a write with another body.
    IdConflict = "id_conflict",
    /// 409: the hold is already posted or voided.
    HoldNotOpen = "hold_not_open",
    /// 409: the hold has expired.
    HoldExpired = "hold_expired",
    /// 409 (spec/api.md, "Error codes").
    QuoteExpired = "quote_expired",
    /// 409 (spec/api.md, "Error codes").
    ObligationExists = "obligation_exists",
    /// 409 (spec/api.md, "Error codes").
    AgreementExists = "agreement_exists",
    /// 409: the payer's open obligation to the payee would exceed the agreement's credit limit.
    CreditLimitExceeded = "credit_limit_exceeded",
    /// 409 (spec/api.md, "Error codes").
    AuthorisationUsed = "authorisation_used",
    /// 409 (spec/api.md, "Error codes").
    AuthorisationExpired = "authorisation_expired",
    /// 409 (spec/api.md, "Error codes").
    AgreementNotApproved = "agreement_not_approved",
    /// 409 (spec/api.md, "Error codes").
    AgreementTermsDiffer = "agreement_terms_differ",
    /// 409: a partner's pinned key cannot be replaced through the API.
    PartnerKeyPinned = "partner_key_pinned",
    /// 409 or 422 (spec/api.md, "Error codes").
    PartnerUnpinned = "partner_unpinned",
    /// 409 (spec/api.md, "Error codes").
    NoTierPolicy = "no_tier_policy",
    /// 409 (spec/api.md, "Error codes").
    NotPrepared = "not_prepared",
    /// 409 (spec/api.md, "Error codes").
    NotCommitted = "not_committed",
    /// 409: the refund exceeds what is left of the redemption.
    RefundExceedsObligation = "refund_exceeds_obligation",
    /// 409 (spec/api.md, "Error codes").
    PeriodOpen = "period_open",
    /// 409 (spec/api.md, "Error codes").
    StatementDisagreed = "statement_disagreed",
    /// 409, 422 or 502: a partner refused a cross-brand call; the problem's `partner_code` says why.
    PartnerRefused = "partner_refused",
    /// 413: the body exceeds 64 KiB.
    BodyTooLarge = "body_too_large",
    /// 415: the body is not `application/json`.
    UnsupportedMediaType = "unsupported_media_type",
    /// 422 (spec/api.md, "Error codes").
    TooManyItems = "too_many_items",
    /// 422 (spec/api.md, "Error codes").
    DuplicateId = "duplicate_id",
    /// 422 (spec/api.md, "Error codes").
    EntryTooLarge = "entry_too_large",
    /// 422: the member has fewer available points than asked.
    InsufficientPoints = "insufficient_points",
    /// 422: the member's balance would exceed 2^53-1 points.
    BalanceOverflow = "balance_overflow",
    /// 422: a hold must expire after the time it is logged.
    HoldExpiryNotInFuture = "hold_expiry_not_in_future",
    /// 422: the preimage does not match the hold's condition.
    ConditionNotMet = "condition_not_met",
    /// 422: the hold has a condition and no preimage was given.
    PreimageRequired = "preimage_required",
    /// 422: the hold has no condition and a preimage was given.
    UnexpectedPreimage = "unexpected_preimage",
    /// 422: the refund exceeds what is left of the redemption.
    RefundExceedsRedemption = "refund_exceeds_redemption",
    /// 422: a rate card must not be valid from before it is logged.
    RateCardInPast = "rate_card_in_past",
    /// 422 (spec/api.md, "Error codes").
    TooManyRates = "too_many_rates",
    /// 422 (spec/api.md, "Error codes").
    FxSameCurrency = "fx_same_currency",
    /// 422 (spec/api.md, "Error codes").
    AuthorisationRequired = "authorisation_required",
    /// 422 (spec/api.md, "Error codes").
    AuthorisationExpiryNotInFuture = "authorisation_expiry_not_in_future",
    /// 422 (spec/api.md, "Error codes").
    AuthorisationWrongMember = "authorisation_wrong_member",
    /// 422 (spec/api.md, "Error codes").
    AuthorisationWrongPayee = "authorisation_wrong_payee",
    /// 422 (spec/api.md, "Error codes").
    AuthorisationExceeded = "authorisation_exceeded",
    /// 422 (spec/api.md, "Error codes").
    AgreementInvalidTerms = "agreement_invalid_terms",
    /// 422 (spec/api.md, "Error codes").
    AgreementBadSignature = "agreement_bad_signature",
    /// 422 (spec/api.md, "Error codes").
    AgreementUnpinnedKey = "agreement_unpinned_key",
    /// 422 (spec/api.md, "Error codes").
    QuoteDirectionNotAgreed = "quote_direction_not_agreed",
    /// 422 (spec/api.md, "Error codes").
    AgreementNotYetValid = "agreement_not_yet_valid",
    /// 422 (spec/api.md, "Error codes").
    NoRateCard = "no_rate_card",
    /// 422 (spec/api.md, "Error codes").
    NoFxRate = "no_fx_rate",
    /// 422 (spec/api.md, "Error codes").
    ZeroAmount = "zero_amount",
    /// 422 (spec/api.md, "Error codes").
    Overflow = "overflow",
    /// 422 (spec/api.md, "Error codes").
    FxMismatch = "fx_mismatch",
    /// 422: ids starting with `sys.` are reserved for the node.
    ReservedId = "reserved_id",
    /// 422 (spec/api.md, "Error codes").
    InvalidPartner = "invalid_partner",
    /// 422 (spec/api.md, "Error codes").
    TooManyPartners = "too_many_partners",
    /// 422 (spec/api.md, "Error codes").
    InconsistentCheckpoint = "inconsistent_checkpoint",
    /// 422 (spec/api.md, "Error codes").
    AttestationTierMismatch = "attestation_tier_mismatch",
    /// 422 (spec/api.md, "Error codes").
    AttestationTierChangeDue = "attestation_tier_change_due",
    /// 422 (spec/api.md, "Error codes").
    AttestationValidUntilNotInFuture = "attestation_valid_until_not_in_future",
    /// 422 (spec/api.md, "Error codes").
    AttestationTooLong = "attestation_too_long",
    /// 422: the attestation's statement is about another brand than expected.
    AttestationWrongBrand = "attestation_wrong_brand",
    /// 422: the attestation's receipt does not verify against the brand's key.
    AttestationBadReceipt = "attestation_bad_receipt",
    /// 422: the witness policy is unusable.
    AttestationInvalidPolicy = "attestation_invalid_policy",
    /// 422: a witness cosignature on the attestation's checkpoint does not verify.
    AttestationBadCosignature = "attestation_bad_cosignature",
    /// 422: too few witnesses cosigned the attestation's checkpoint.
    AttestationQuorum = "attestation_quorum",
    /// 422: the receipt is not for a `tier_attestation` entry.
    AttestationNotAttestation = "attestation_not_attestation",
    /// 422: the statement differs from the logged attestation.
    AttestationMismatch = "attestation_mismatch",
    /// 422: the attestation's `valid_until` has passed.
    AttestationExpired = "attestation_expired",
    /// 422 (spec/api.md, "Error codes").
    RedemptionIdTooLong = "redemption_id_too_long",
    /// 422 (spec/api.md, "Error codes").
    RefundIdTooLong = "refund_id_too_long",
    /// 422 (spec/api.md, "Error codes").
    QuoteOutOfBounds = "quote_out_of_bounds",
    /// 422 (spec/api.md, "Error codes").
    HoldOutOfBounds = "hold_out_of_bounds",
    /// 422 (spec/api.md, "Error codes").
    QuoteMismatch = "quote_mismatch",
    /// 422 (spec/api.md, "Error codes").
    QuoteWrongParties = "quote_wrong_parties",
    /// 422 (spec/api.md, "Error codes").
    RefundNeedsPartner = "refund_needs_partner",
    /// 422 (spec/api.md, "Error codes").
    UnknownObligation = "unknown_obligation",
    /// 422 (spec/api.md, "Error codes").
    RefundExists = "refund_exists",
    /// 422: the redemption has had the most refunds it can have.
    TooManyRefunds = "too_many_refunds",
    /// 422 (spec/api.md, "Error codes").
    RefundAmountMismatch = "refund_amount_mismatch",
    /// 422 (spec/api.md, "Error codes").
    StatementBadSignature = "statement_bad_signature",
    /// 422 (spec/api.md, "Error codes").
    StatementPeriodInvalid = "statement_period_invalid",
    /// 422 (spec/api.md, "Error codes").
    StatementExists = "statement_exists",
    /// 422 (spec/api.md, "Error codes").
    StatementMismatch = "statement_mismatch",
    /// 422 (spec/api.md, "Error codes").
    StatementInvalidTerms = "statement_invalid_terms",
    /// 422 (spec/api.md, "Error codes").
    StatementInvalidPeriod = "statement_invalid_period",
    /// 422 (spec/api.md, "Error codes").
    StatementPeriodOutOfRange = "statement_period_out_of_range",
    /// 422 (spec/api.md, "Error codes").
    StatementTooManyLines = "statement_too_many_lines",
    /// 422 (spec/api.md, "Error codes").
    TooManyLines = "too_many_lines",
    /// 422 (spec/api.md, "Error codes").
    StatementInvalidLine = "statement_invalid_line",
    /// 422 (spec/api.md, "Error codes").
    StatementDuplicateLine = "statement_duplicate_line",
    /// 422 (spec/api.md, "Error codes").
    StatementOverflow = "statement_overflow",
    /// 422 (spec/api.md, "Error codes").
    ExpireAmountMismatch = "expire_amount_mismatch",
    /// 422 (spec/api.md, "Error codes").
    LotNotExpired = "lot_not_expired",
    /// 422 (spec/api.md, "Error codes").
    TierFromMismatch = "tier_from_mismatch",
    /// 422 (spec/api.md, "Error codes").
    TierNotDue = "tier_not_due",
    /// 422 (spec/api.md, "Error codes").
    QuoteIdMismatch = "quote_id_mismatch",
    /// 422 (spec/api.md, "Error codes").
    QuoteAgreementMismatch = "quote_agreement_mismatch",
    /// 422 (spec/api.md, "Error codes").
    ObligationAgreementMismatch = "obligation_agreement_mismatch",
    /// 422 (spec/api.md, "Error codes").
    ObligationCounterpartMissing = "obligation_counterpart_missing",
    /// 422 (spec/api.md, "Error codes").
    ObligationCounterpartUnexpected = "obligation_counterpart_unexpected",
    /// 422 (spec/api.md, "Error codes").
    ObligationHoldMismatch = "obligation_hold_mismatch",
    /// 422 (spec/api.md, "Error codes").
    TooManyAgreements = "too_many_agreements",
    /// 422 (spec/api.md, "Error codes").
    AgreementMissingSignature = "agreement_missing_signature",
    /// 422 (spec/api.md, "Error codes").
    AgreementDuplicateSignature = "agreement_duplicate_signature",
    /// 422 (spec/api.md, "Error codes").
    AgreementMalformedSignature = "agreement_malformed_signature",
    /// 422 (spec/api.md, "Error codes").
    FeeOutOfRange = "fee_out_of_range",
    /// 422 (spec/api.md, "Error codes").
    DivisionByZero = "division_by_zero",
    /// 422 (spec/api.md, "Error codes").
    ScaleTooLarge = "scale_too_large",
    /// 422 (spec/api.md, "Error codes").
    QuoteBadLifetime = "quote_bad_lifetime",
    /// 429 (spec/api.md, "Error codes").
    PeerRateLimited = "peer_rate_limited",
    /// 500: the node failed internally.
    Internal = "internal",
    /// 500 (spec/api.md, "Error codes").
    TimeNotIncreasing = "time_not_increasing",
    /// 500 (spec/api.md, "Error codes").
    IndexNotNext = "index_not_next",
    /// 502: the partner could not be reached; retry the same request.
    PartnerUnavailable = "partner_unavailable",
    /// 502: the partner's answer does not verify or is not what was asked.
    PartnerBadAnswer = "partner_bad_answer",
    /// 503: the write queue is full; retry after the `Retry-After` delay.
    Overloaded = "overloaded",
    /// 503: the node is starting or stopping.
    NotReady = "not_ready",
    /// 503: the write was not committed in time; retrying with the same id is safe.
    Timeout = "timeout",
    /// 503: the node's system clock jumped forward and writes are stopped until its operator
    /// confirms the time.
    ClockJump = "clock_jump",
    /// 503 (spec/api.md, "Error codes").
    RestoreRefused = "restore_refused",
}

impl ErrorCode {
    /// Whether this is a code of spec/api.md (not [`ErrorCode::Other`]).
    pub fn is_known(&self) -> bool {
        !matches!(self, ErrorCode::Other(_))
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::Other(s) => f.debug_tuple("Other").field(s).finish(),
            known => f.write_str(known.as_str()),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl FromStr for ErrorCode {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(ErrorCode::parse(s))
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(ErrorCode::parse(&s))
    }
}

/// The problem-details body (RFC 9457) with the project's `code` extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct Problem {
    /// `urn:loyalty:problem:<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Short summary of the problem class.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What exactly went wrong.
    pub detail: String,
    /// Stable machine-readable code.
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub code: ErrorCode,
    /// For `partner_refused` only: the partner's own stable code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<String>))]
    pub partner_code: Option<ErrorCode>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_code_round_trips_through_its_string() {
        for code in ErrorCode::ALL {
            assert_eq!(&ErrorCode::parse(code.as_str()), code);
            assert!(code.is_known());
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(&serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
        let new = ErrorCode::parse("a_newer_nodes_code");
        assert_eq!(new, ErrorCode::Other("a_newer_nodes_code".into()));
        assert_eq!(new.as_str(), "a_newer_nodes_code");
        assert!(!new.is_known());
        assert_eq!(format!("{:?}", ErrorCode::HoldNotOpen), "hold_not_open");
        assert_eq!(format!("{new:?}"), r#"Other("a_newer_nodes_code")"#);
    }

    /// The codes of spec/api.md's "Error codes" table: the backquoted snake_case words of
    /// its rows.
    fn spec_codes() -> BTreeSet<String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/api.md");
        let text = std::fs::read_to_string(path).expect("spec/api.md");
        let table = &text[text.find("| status | codes |").expect("the table")..];
        let mut codes = BTreeSet::new();
        for line in table.lines().skip(2) {
            let Some(row) = line.strip_prefix("| ") else {
                break;
            };
            let (_, list) = row.split_once(" | ").expect("| status | codes |");
            for (i, part) in list.split('`').enumerate() {
                if i % 2 == 1 && part.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
                    codes.insert(part.to_owned());
                }
            }
        }
        codes
    }

    #[test]
    fn the_enum_has_exactly_the_codes_of_the_spec() {
        let spec = spec_codes();
        let known: BTreeSet<String> = ErrorCode::ALL
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect();
        assert_eq!(known.len(), ErrorCode::ALL.len(), "a code is listed twice");
        let only_spec: Vec<_> = spec.difference(&known).collect();
        let only_enum: Vec<_> = known.difference(&spec).collect();
        assert!(
            only_spec.is_empty(),
            "in spec/api.md, not in ErrorCode: {only_spec:?}"
        );
        assert!(
            only_enum.is_empty(),
            "in ErrorCode, not in spec/api.md: {only_enum:?}"
        );
    }

    #[test]
    fn a_problem_document_keeps_its_member_order_and_omits_a_missing_partner_code() {
        let p = Problem {
            type_: "urn:loyalty:problem:partner_refused".into(),
            title: "Unprocessable Entity".into(),
            status: 422,
            detail: "brand-a refused the refund".into(),
            code: ErrorCode::PartnerRefused,
            partner_code: Some(ErrorCode::TooManyRefunds),
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"type":"urn:loyalty:problem:partner_refused","title":"Unprocessable Entity","status":422,"detail":"brand-a refused the refund","code":"partner_refused","partner_code":"too_many_refunds"}"#
        );
        let plain = Problem {
            partner_code: None,
            ..p
        };
        assert!(!serde_json::to_string(&plain)
            .unwrap()
            .contains("partner_code"));
    }
}
