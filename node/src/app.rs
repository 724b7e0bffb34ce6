//! The shared state of every route and the request plumbing the routes share: the JSON body
//! extractor whose rejections are problem details, API-key authorization, path parameters.
//!
//! Invariant: this module knows no route; every route module builds on it.

use std::sync::Arc;

use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::de::DeserializeOwned;

use ledger::store::Store;
use ledger::types::EntryId;

use crate::config::Config;
use crate::keys::{KeyRecord, Keys, Scope};
use crate::metrics::Metrics;
use crate::problem::{from_json_rejection, ApiError};
use crate::sequencer::{Sequencer, Shared};

/// Everything a handler may use.
pub struct App {
    pub config: Config,
    pub store: Store,
    pub sequencer: Sequencer,
    pub shared: Arc<Shared>,
    pub keys: Keys,
    pub metrics: Arc<Metrics>,
    pub verifier_key: String,
    pub federation: Arc<crate::federation::Federation>,
    /// The global request admission (concurrency, sender before body, deadlines).
    pub admission: crate::admission::Admission,
    /// The guard against forward jumps of the system clock.
    pub clock: Arc<crate::clock::ClockGuard>,
}

pub type AppState = State<Arc<App>>;

/// JSON body extractor whose rejections are problem details.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(r) => Err(from_json_rejection(r)),
        }
    }
}

/// Checks the bearer key and its scope.
pub fn authorize(app: &App, headers: &HeaderMap, scope: Scope) -> Result<KeyRecord, ApiError> {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "an API key is required: Authorization: Bearer <key>",
            )
        })?;
    let record = app.keys.authenticate(key.trim()).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "unknown or revoked API key",
        )
    })?;
    if !record.allows(scope) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this key lacks the {scope:?} scope").to_lowercase(),
        ));
    }
    Ok(record)
}

/// Parses a path segment into a domain type, or `invalid_parameter`.
pub fn parse_param<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e: T::Err| ApiError::bad_parameter(format!("{what}: {e}")))
}

/// Refuses ids a client may not choose: those under the node's reserved `sys.` prefix.
pub fn check_id(id: &EntryId) -> Result<(), ApiError> {
    if id.as_str().starts_with("sys.") {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reserved_id",
            "ids starting with \"sys.\" are reserved for the node",
        ));
    }
    Ok(())
}
