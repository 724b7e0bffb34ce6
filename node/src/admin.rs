//! Admin routes: API keys, and the clock guard's state and confirmation.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use loyalty_wire::{CreateKeyRequest, CreatedKey, KeyInfo, KeyList, RevokedKey};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::{authorize, scope, ApiJson, App, AppState, Authorized};
use crate::clock::ClockStatus;
use crate::keys::Scope;
use crate::problem::ApiError;
use crate::sequencer::now;

/// The admin routes: API keys and the clock guard.
pub fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
        .routes(routes!(confirm))
        .routes(routes!(status))
}

#[utoipa::path(post, path = "/v1/admin/keys", request_body = CreateKeyRequest,
    responses((status = 200, body = CreatedKey)), tag = "admin")]
pub async fn create_key(
    State(app): AppState,
    headers: HeaderMap,
    ApiJson(b): ApiJson<CreateKeyRequest>,
) -> Result<Json<CreatedKey>, ApiError> {
    authorize(&app, &headers, Scope::Admin)?;
    let (key, r) = app.keys.create(&b.name, &b.scopes, now().get())?;
    tracing::info!(key_id = %r.key_id, name = %r.name, "api key created");
    Ok(Json(CreatedKey {
        key_id: r.key_id,
        key,
        name: r.name,
        scopes: r.scopes,
    }))
}

#[utoipa::path(get, path = "/v1/admin/keys", responses((status = 200, body = KeyList)), tag = "admin")]
pub async fn list_keys(
    State(app): AppState,
    _: Authorized<scope::Admin>,
) -> Result<Json<KeyList>, ApiError> {
    let keys = app
        .keys
        .list()
        .into_iter()
        .map(|k| KeyInfo {
            key_id: k.key_id,
            name: k.name,
            scopes: k.scopes,
            created_at: k.created_at,
            revoked: k.revoked,
        })
        .collect();
    Ok(Json(KeyList { keys }))
}

#[utoipa::path(delete, path = "/v1/admin/keys/{key_id}", params(("key_id" = String, Path)),
    responses((status = 200, body = RevokedKey)), tag = "admin")]
pub async fn revoke_key(
    State(app): AppState,
    headers: HeaderMap,
    Path(key_id): Path<String>,
) -> Result<Json<RevokedKey>, ApiError> {
    authorize(&app, &headers, Scope::Admin)?;
    let r = app.keys.revoke(&key_id)?;
    tracing::info!(key_id = %r.key_id, "api key revoked");
    Ok(Json(RevokedKey {
        key_id: r.key_id,
        revoked: true,
    }))
}

/// `POST /v1/admin/clock/confirm` (scope `admin`): the operator checked the system clock; writes
/// resume at the current time.
#[utoipa::path(post, path = "/v1/admin/clock/confirm",
    responses((status = 200, body = ClockStatus)), tag = "admin")]
pub async fn confirm(
    State(app): AppState,
    _: Authorized<scope::Admin>,
) -> Result<Json<ClockStatus>, ApiError> {
    Ok(Json(app.clock.confirm()))
}

/// `GET /v1/admin/clock` (scope `admin`): the guard's state.
#[utoipa::path(get, path = "/v1/admin/clock",
    responses((status = 200, body = ClockStatus)), tag = "admin")]
pub async fn status(
    State(app): AppState,
    _: Authorized<scope::Admin>,
) -> Result<Json<ClockStatus>, ApiError> {
    Ok(Json(app.clock.status()))
}
