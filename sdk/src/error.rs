//! The SDK's errors: what a caller can act on.
//!
//! Invariant: an [`Error::Api`] always carries the node's stable `code` (spec/api.md, "Error
//! codes") parsed into an [`ErrorCode`]; callers branch on the code, never on `detail`.

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

/// The stable error codes of spec/api.md, "Error codes" (the wire crate's, shared with the
/// node); a code this SDK version does not know is kept verbatim as [`ErrorCode::Other`].
pub use loyalty_wire::ErrorCode;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_string() {
        for code in ErrorCode::ALL {
            assert_eq!(&ErrorCode::parse(code.as_str()), code);
        }
        // Every code of spec/api.md is known, `unknown_lot` too (it was `Other` before the
        // SDK shared the node's codes); a newer node's code is kept verbatim.
        assert_eq!(ErrorCode::parse("unknown_lot"), ErrorCode::UnknownLot);
        assert_eq!(
            ErrorCode::parse("a_newer_nodes_code"),
            ErrorCode::Other("a_newer_nodes_code".into())
        );
        assert_eq!(
            ErrorCode::Other("a_newer_nodes_code".into()).as_str(),
            "a_newer_nodes_code"
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
        let e = Error::from_problem(404, br#"{"code":"unknown_widget","detail":"no widget"}"#);
        assert_eq!(e.code(), Some(&ErrorCode::Other("unknown_widget".into())));
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
