//! The shared state of every route and the request plumbing the routes share: the JSON body
//! extractor whose rejections are problem details, API-key authorization ([`authorize`], or
//! the [`Authorized`] extractor), path parameters ([`parse_param`], or the [`Param`] extractor).
//!
//! Invariant: this module knows no route; every route module builds on it.

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;

use ledger::types::EntryId;
use ledger_store::store::Store;

use loyalty_wire::ErrorCode;

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
                ErrorCode::Unauthenticated,
                "an API key is required: Authorization: Bearer <key>",
            )
        })?;
    let record = app.keys.authenticate(key.trim()).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthenticated,
            "unknown or revoked API key",
        )
    })?;
    if !record.allows(scope) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
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

/// A scope a route requires, as a type: the parameter of [`Authorized`].
pub trait RequiredScope {
    const SCOPE: Scope;
}

/// The scopes as types, for [`Authorized`].
pub mod scope {
    use super::{RequiredScope, Scope};

    /// [`Scope::Read`].
    pub struct Read;
    /// [`Scope::Earn`].
    pub struct Earn;
    /// [`Scope::Redeem`].
    pub struct Redeem;
    /// [`Scope::Admin`].
    pub struct Admin;

    impl RequiredScope for Read {
        const SCOPE: Scope = Scope::Read;
    }
    impl RequiredScope for Earn {
        const SCOPE: Scope = Scope::Earn;
    }
    impl RequiredScope for Redeem {
        const SCOPE: Scope = Scope::Redeem;
    }
    impl RequiredScope for Admin {
        const SCOPE: Scope = Scope::Admin;
    }
}

/// A request whose bearer API key is known, unrevoked and holds the scope `S`; refused with
/// the problem [`authorize`] returns. Extractors run in the order of a handler's arguments, so
/// a handler that must check the key before something else lists this first.
pub struct Authorized<S>(pub KeyRecord, PhantomData<S>);

impl<S: RequiredScope> FromRequestParts<Arc<App>> for Authorized<S> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        authorize(app, &parts.headers, S::SCOPE).map(|key| Authorized(key, PhantomData))
    }
}

/// The one path parameter of a route, parsed into a domain type; refused as
/// [`parse_param`] refuses it, naming the parameter as the route does (`{member}`: "member").
pub struct Param<T>(pub T);

impl<S: Send + Sync, T: std::str::FromStr> FromRequestParts<S> for Param<T>
where
    T::Err: std::fmt::Display,
{
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        // The value as `Path<String>` reads it (percent-decoded, UTF-8, or its rejection).
        let Path(value) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let name = RawPathParams::from_request_parts(parts, state)
            .await
            .ok()
            .and_then(|p| p.iter().next().map(|(name, _)| name.to_owned()))
            .unwrap_or_default();
        parse_param(&name, &value)
            .map(Param)
            .map_err(IntoResponse::into_response)
    }
}

/// Whether a client may not choose `id`: it is under the node's reserved `sys.` prefix.
pub fn is_reserved_id(id: &EntryId) -> bool {
    id.as_str().starts_with("sys.")
}

/// Refuses ids a client may not choose ([`is_reserved_id`]).
pub fn check_id(id: &EntryId) -> Result<(), ApiError> {
    if is_reserved_id(id) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::ReservedId,
            "ids starting with \"sys.\" are reserved for the node",
        ));
    }
    Ok(())
}
