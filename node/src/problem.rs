//! RFC 9457 problem details: the one place where every error becomes an HTTP status and a
//! stable machine-readable `code` (spec/api.md, "Error codes").

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use ledger::log::WriteError;
use ledger::state::StateError;

/// An error answer: status, stable code and a human-readable detail.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub retry_after_s: Option<u32>,
}

/// The problem-details body (RFC 9457) with the project's `code` extension.
#[derive(Debug, Serialize, ToSchema)]
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
    pub code: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            detail: detail.into(),
            retry_after_s: None,
        }
    }

    pub fn bad_body(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", detail)
    }

    pub fn bad_parameter(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", detail)
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, detail)
    }

    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    pub fn overloaded() -> ApiError {
        ApiError {
            retry_after_s: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the write queue is full; retry later",
            )
        }
    }

    pub fn not_ready() -> ApiError {
        ApiError {
            retry_after_s: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
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
            code: self.code.into(),
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
        let status = match &e {
            StateError::UnknownMember(_)
            | StateError::UnknownAuthorisation(_)
            | StateError::UnknownAgreement(_)
            | StateError::UnknownHold(_)
            | StateError::UnknownRedemption(_)
            | StateError::UnknownLot { .. }
            | StateError::UnknownObligation { .. } => StatusCode::NOT_FOUND,
            StateError::DuplicateId(..)
            | StateError::HoldNotOpen { .. }
            | StateError::AuthorisationUsed { .. }
            | StateError::AgreementExists { .. }
            | StateError::QuoteExpired { .. }
            | StateError::ObligationExists { .. }
            | StateError::CreditLimitExceeded { .. }
            | StateError::AuthorisationExpired { .. }
            | StateError::HoldExpired { .. }
            | StateError::RefundExists { .. }
            | StateError::RefundExceedsObligation { .. }
            | StateError::RefundNeedsPartner(_)
            | StateError::TooManyRefunds { .. }
            | StateError::StatementExists { .. }
            | StateError::StatementPeriod(_)
            | StateError::StatementMismatch { .. } => StatusCode::CONFLICT,
            StateError::TimeNotIncreasing { .. } | StateError::IndexNotNext { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> ApiError {
        match e {
            WriteError::IdConflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "id_conflict", e.to_string())
            }
            WriteError::State(s) => s.into(),
            WriteError::TooLarge { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "entry_too_large",
                e.to_string(),
            ),
        }
    }
}

/// Maps axum's body and path rejections to problem details.
pub fn from_json_rejection(r: axum::extract::rejection::JsonRejection) -> ApiError {
    use axum::extract::rejection::JsonRejection as J;
    match r {
        J::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        J::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the request body exceeds the limit",
        ),
        other => ApiError::bad_body(other.body_text()),
    }
}
