//! Admission of requests (issue 13, item 4): one global concurrency limit with a bounded wait,
//! the API key checked from the headers before a body is read, a deadline on reading the body,
//! and a deadline on the whole request.
//!
//! Invariants: at most `limits.concurrency_max` requests are served at once over every route
//! together; a request waits at most `limits.queue_wait_ms` for a slot, then gets 503
//! `overloaded` with `Retry-After`; no byte of a request body is read before its sender is
//! known (a valid API key, or the headers of a pinned partner's signed request), and a body
//! not received within `limits.body_timeout_ms` is refused with 408 `body_timeout`.

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use loyalty_wire::ErrorCode;

use crate::app::{App, AppState};

// The admission state, at the path other modules have used.
pub use crate::admission::Admission;
use crate::problem::ApiError;

/// Routes that bypass the concurrency limit: cheap, bodiless, and what an operator needs to
/// see while the node is overloaded.
fn is_operational(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Routes whose requests are signed by a partner (spec/federation.md §2) rather than carrying
/// an API key.
pub fn is_peer_route(path: &str) -> bool {
    path.starts_with("/v1/peer/") || path == "/v1/witness/add-checkpoint"
}

/// Whether a request of this method may carry a body the node reads.
fn has_body(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The middleware: slot, sender, body, deadline; in that order.
pub async fn admit(State(app): AppState, req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let adm = &app.admission;
    if path.as_deref().is_some_and(is_operational) {
        return next.run(req).await;
    }
    let permit = match tokio::time::timeout(adm.queue_wait, adm.slots.clone().acquire_owned()).await
    {
        Ok(Ok(p)) => p,
        _ => {
            app.metrics.admission_refused.inc();
            return busy().into_response();
        }
    };
    if app.clock.is_held()
        && has_body(req.method())
        && path.as_deref() != Some(crate::clock::CONFIRM_PATH)
    {
        return crate::clock::ClockGuard::refusal().into_response();
    }
    let req = if has_body(req.method()) && path.is_some() {
        if let Err(e) = check_sender(&app, path.as_deref().unwrap_or(""), &req) {
            return e.into_response();
        }
        match read_body(adm, req).await {
            Ok(r) => r,
            Err(e) => return e.into_response(),
        }
    } else {
        req
    };
    let answer = match tokio::time::timeout(adm.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Timeout,
            "the request took too long",
        )
        .into_response(),
    };
    drop(permit);
    answer
}

/// 503 `overloaded` with `Retry-After`: every slot stayed taken for the whole wait.
fn busy() -> ApiError {
    ApiError {
        retry_after_s: Some(1),
        ..ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Overloaded,
            "the node is serving as many requests as it allows; retry later",
        )
    }
}

/// Knows the sender from the headers alone: an unrevoked API key, or the well-formed headers
/// of a request signed by a pinned partner (the signature itself covers the body and is
/// checked by the route). The scope is still checked by the route.
fn check_sender(app: &App, path: &str, req: &Request) -> Result<(), ApiError> {
    let headers = req.headers();
    if is_peer_route(path) {
        let h = crate::federation::peer::parse_headers(headers)?;
        if app
            .federation
            .partner(&h.sender)
            .is_none_or(|p| p.verifier.is_none())
        {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::UnknownPeer,
                format!("{} is not a pinned partner of this node", h.sender),
            ));
        }
        return Ok(());
    }
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match key.and_then(|k| app.keys.authenticate(k.trim())) {
        Some(_) => Ok(()),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthenticated,
            "an API key is required: Authorization: Bearer <key>",
        )),
    }
}

/// Reads the whole body within the body deadline and the size limit, and puts it back.
async fn read_body(adm: &Admission, req: Request) -> Result<Request, ApiError> {
    let (parts, body) = req.into_parts();
    let limit = adm.body_bytes_max;
    let bytes =
        match tokio::time::timeout(adm.body_timeout, axum::body::to_bytes(body, limit)).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    ErrorCode::BodyTimeout,
                    "the request body was not received in time",
                ))
            }
            Ok(Err(e)) => {
                let too_large = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                    || e.into_inner().is::<http_body_util::LengthLimitError>();
                return Err(if too_large {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        ErrorCode::BodyTooLarge,
                        "the request body exceeds the limit",
                    )
                } else {
                    ApiError::bad_body("the request body could not be read")
                });
            }
            Ok(Ok(b)) => b,
        };
    Ok(Request::from_parts(parts, Body::from(bytes)))
}
