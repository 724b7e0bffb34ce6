//! The write routes (spec/api.md): earns, redemptions, adjustments, holds, authorisations,
//! refunds and policies. Handlers parse, call one core function, map the error.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use ledger::entry::EntryKind;
use ledger::types::{EntryId, MemberId};
use ledger_store::log::{receipt_from_store, Write};
pub use loyalty_wire::{
    AdjustRequest, AuthoriseRequest, EarnAnswer, EarnItem, EarnRequest, EarnStatus, EarnsBody,
    EarnsResponse, HoldRequest, PostRequest, RedeemRequest, RefundRequest, SetExpiryRequest,
    SetFxRateRequest, SetRateCardRequest, SetTiersRequest, VoidRequest, WriteResponse,
    EARNS_PER_REQUEST_MAX,
};

use loyalty_wire::ErrorCode;

use crate::keys::Scope;
use crate::problem::ApiError;
use crate::sequencer::WriteStatus;

// The shared state and request plumbing, at the paths other modules have used.
pub use crate::app::{authorize, check_id, parse_param, ApiJson, App, AppState};

/// The write routes.
pub fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(earn))
        .routes(routes!(earn_many))
        .routes(routes!(redeem))
        .routes(routes!(adjust))
        .routes(routes!(hold))
        .routes(routes!(post_hold))
        .routes(routes!(void_hold))
        .routes(routes!(refund))
        .routes(routes!(set_tiers))
        .routes(routes!(set_expiry))
        .routes(routes!(set_rate_card))
        .routes(routes!(set_fx_rate))
        .routes(routes!(authorise))
}

/// Submits one write to the sequencer and answers with its receipt.
pub async fn submit(
    app: &App,
    id: EntryId,
    kind: EntryKind,
) -> Result<Json<WriteResponse>, ApiError> {
    check_id(&id)?;
    let committed = app.sequencer.submit(Write { id, kind }).await?;
    let receipt = receipt_from_store(
        &app.store,
        committed.index,
        committed.checkpoint.size,
        &committed.checkpoint.note,
    )
    .map_err(ApiError::internal)?;
    Ok(Json(WriteResponse {
        status: committed.status,
        receipt,
    }))
}

#[utoipa::path(post, path = "/v1/members/{member}/earn", request_body = EarnRequest,
    params(("member" = String, Path)), responses((status = 200, body = WriteResponse)), tag = "writes")]
pub async fn earn(
    State(app): AppState,
    headers: HeaderMap,
    Path(member): Path<String>,
    ApiJson(b): ApiJson<EarnRequest>,
) -> Result<Json<WriteResponse>, ApiError> {
    authorize(&app, &headers, Scope::Earn)?;
    let member: MemberId = parse_param("member", &member)?;
    let kind = b.entry_kind(&member);
    submit(&app, b.id, kind).await
}

/// The batch path: many earns in one request and one synced commit. The request is checked
/// as a whole first (size, ids, duplicates: any error refuses all of it and writes nothing);
/// then each earn is committed or refused on its own, like a single earn.
#[utoipa::path(post, path = "/v1/earns", request_body = EarnsBody,
    responses((status = 200, body = EarnsResponse)), tag = "writes")]
pub async fn earn_many(
    State(app): AppState,
    headers: HeaderMap,
    ApiJson(b): ApiJson<EarnsBody>,
) -> Result<Json<EarnsResponse>, ApiError> {
    authorize(&app, &headers, Scope::Earn)?;
    if b.earns.is_empty() || b.earns.len() > EARNS_PER_REQUEST_MAX {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::TooManyItems,
            format!(
                "a request holds 1 to {EARNS_PER_REQUEST_MAX} earns, not {}",
                b.earns.len()
            ),
        ));
    }
    let mut ids = std::collections::HashSet::with_capacity(b.earns.len());
    for e in &b.earns {
        check_id(&e.id)?;
        if !ids.insert(e.id.as_str()) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::DuplicateId,
                format!("the id {} appears twice in this request", e.id),
            ));
        }
    }
    let writes: Vec<Write> = b
        .earns
        .into_iter()
        .map(|e| Write {
            kind: e.entry_kind(),
            id: e.id,
        })
        .collect();
    let answers = app.sequencer.submit_together(writes).await?;
    // Every committed answer of one request carries the same batch's checkpoint; a refused
    // one carries none.
    let checkpoint = answers
        .iter()
        .find_map(|a| a.as_ref().ok().map(|c| c.checkpoint.clone()))
        .unwrap_or_else(|| app.shared.checkpoint());
    let results = answers
        .into_iter()
        .map(|a| match a {
            Ok(c) => EarnAnswer {
                status: match c.status {
                    WriteStatus::Appended => EarnStatus::Appended,
                    WriteStatus::Existing => EarnStatus::Existing,
                },
                index: Some(c.index),
                problem: None,
            },
            Err(e) => {
                let e = ApiError::from(e);
                EarnAnswer {
                    status: if e.status.is_server_error() {
                        EarnStatus::Failed
                    } else {
                        EarnStatus::Refused
                    },
                    index: None,
                    problem: serde_json::to_value(e.problem()).ok(),
                }
            }
        })
        .collect();
    Ok(Json(EarnsResponse {
        checkpoint: checkpoint.note.clone(),
        size: checkpoint.size,
        results,
    }))
}

#[utoipa::path(post, path = "/v1/members/{member}/redeem", request_body = RedeemRequest,
    params(("member" = String, Path)), responses((status = 200, body = WriteResponse)), tag = "writes")]
pub async fn redeem(
    State(app): AppState,
    headers: HeaderMap,
    Path(member): Path<String>,
    ApiJson(b): ApiJson<RedeemRequest>,
) -> Result<Json<WriteResponse>, ApiError> {
    authorize(&app, &headers, Scope::Redeem)?;
    let member: MemberId = parse_param("member", &member)?;
    let kind = b.entry_kind(&member);
    submit(&app, b.id, kind).await
}

#[utoipa::path(post, path = "/v1/members/{member}/adjust", request_body = AdjustRequest,
    params(("member" = String, Path)), responses((status = 200, body = WriteResponse)), tag = "writes")]
pub async fn adjust(
    State(app): AppState,
    headers: HeaderMap,
    Path(member): Path<String>,
    ApiJson(b): ApiJson<AdjustRequest>,
) -> Result<Json<WriteResponse>, ApiError> {
    authorize(&app, &headers, Scope::Admin)?;
    let member: MemberId = parse_param("member", &member)?;
    let kind = b.entry_kind(&member);
    kind.validate()
        .map_err(|e| ApiError::bad_body(e.to_string()))?;
    submit(&app, b.id, kind).await
}

#[utoipa::path(post, path = "/v1/members/{member}/holds", request_body = HoldRequest,
    params(("member" = String, Path)), responses((status = 200, body = WriteResponse)), tag = "writes")]
pub async fn hold(
    State(app): AppState,
    headers: HeaderMap,
    Path(member): Path<String>,
    ApiJson(b): ApiJson<HoldRequest>,
) -> Result<Json<WriteResponse>, ApiError> {
    authorize(&app, &headers, Scope::Redeem)?;
    let member: MemberId = parse_param("member", &member)?;
    if b.payee.is_some() && b.authorisation.is_none() {
        // DESIGN §6: without a spend authorisation no partner can touch a member's points.
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::AuthorisationRequired,
            "a hold for a partner (payee) must name the member's spend authorisation",
        ));
    }
    if b.payee.is_some() {
        // The partner resolves it through the redemption routes, which derive ids from it.
        crate::redemption::redeem::check_redemption_id(&b.id)?;
    }
    let kind = b.entry_kind(&member);
    submit(&app, b.id, kind).await
}

#[utoipa::path(post, path = "/v1/members/{member}/authorisations", request_body = AuthoriseRequest,
    params(("member" = String, Path)), responses((status = 200, body = WriteResponse)), tag = "writes")]
pub async fn authorise(
    State(app): AppState,
    headers: HeaderMap,
    Path(member): Path<String>,
    ApiJson(b): ApiJson<AuthoriseRequest>,
) -> Result<Json<WriteResponse>, ApiError> {
    authorize(&app, &headers, Scope::Redeem)?;
    let member: MemberId = parse_param("member", &member)?;
    let kind = b.entry_kind(&member);
    submit(&app, b.id, kind).await
}

#[utoipa::path(post, path = "/v1/holds/{hold}/post", request_body = PostRequest,
    params(("hold" = String, Path)), responses((status = 200, body = WriteResponse)), tag = "writes")]
pub async fn post_hold(
    State(app): AppState,
    headers: HeaderMap,
    Path(hold): Path<String>,
    ApiJson(b): ApiJson<PostRequest>,
) -> Result<Json<WriteResponse>, ApiError> {
    authorize(&app, &headers, Scope::Redeem)?;
    let hold: EntryId = parse_param("hold", &hold)?;
    let kind = b.entry_kind(&hold);
    submit(&app, b.id, kind).await
}

#[utoipa::path(post, path = "/v1/holds/{hold}/void", request_body = VoidRequest,
    params(("hold" = String, Path)), responses((status = 200, body = WriteResponse)), tag = "writes")]
pub async fn void_hold(
    State(app): AppState,
    headers: HeaderMap,
    Path(hold): Path<String>,
    ApiJson(b): ApiJson<VoidRequest>,
) -> Result<Json<WriteResponse>, ApiError> {
    authorize(&app, &headers, Scope::Redeem)?;
    let hold: EntryId = parse_param("hold", &hold)?;
    let kind = b.entry_kind(&hold);
    submit(&app, b.id, kind).await
}

#[utoipa::path(post, path = "/v1/redemptions/{redemption}/refund", request_body = RefundRequest,
    params(("redemption" = String, Path)), responses((status = 200, body = WriteResponse)), tag = "writes")]
pub async fn refund(
    State(app): AppState,
    headers: HeaderMap,
    Path(redemption): Path<String>,
    ApiJson(b): ApiJson<RefundRequest>,
) -> Result<Json<WriteResponse>, ApiError> {
    authorize(&app, &headers, Scope::Redeem)?;
    let redemption: EntryId = parse_param("redemption", &redemption)?;
    let kind = b.entry_kind(&redemption);
    submit(&app, b.id, kind).await
}

#[utoipa::path(put, path = "/v1/policy/tiers", request_body = SetTiersRequest,
    responses((status = 200, body = WriteResponse)), tag = "policy")]
pub async fn set_tiers(
    State(app): AppState,
    headers: HeaderMap,
    ApiJson(b): ApiJson<SetTiersRequest>,
) -> Result<Json<WriteResponse>, ApiError> {
    authorize(&app, &headers, Scope::Admin)?;
    let kind = b.entry_kind();
    kind.validate()
        .map_err(|e| ApiError::bad_body(e.to_string()))?;
    submit(&app, b.id, kind).await
}

#[utoipa::path(put, path = "/v1/policy/expiry", request_body = SetExpiryRequest,
    responses((status = 200, body = WriteResponse)), tag = "policy")]
pub async fn set_expiry(
    State(app): AppState,
    headers: HeaderMap,
    ApiJson(b): ApiJson<SetExpiryRequest>,
) -> Result<Json<WriteResponse>, ApiError> {
    authorize(&app, &headers, Scope::Admin)?;
    let kind = b.entry_kind();
    kind.validate()
        .map_err(|e| ApiError::bad_body(e.to_string()))?;
    submit(&app, b.id, kind).await
}

#[utoipa::path(put, path = "/v1/policy/rate-card", request_body = SetRateCardRequest,
    responses((status = 200, body = WriteResponse)), tag = "policy")]
pub async fn set_rate_card(
    State(app): AppState,
    headers: HeaderMap,
    ApiJson(b): ApiJson<SetRateCardRequest>,
) -> Result<Json<WriteResponse>, ApiError> {
    authorize(&app, &headers, Scope::Admin)?;
    let kind = b.entry_kind();
    submit(&app, b.id, kind).await
}

#[utoipa::path(put, path = "/v1/policy/fx-rate", request_body = SetFxRateRequest,
    responses((status = 200, body = WriteResponse)), tag = "policy")]
pub async fn set_fx_rate(
    State(app): AppState,
    headers: HeaderMap,
    ApiJson(b): ApiJson<SetFxRateRequest>,
) -> Result<Json<WriteResponse>, ApiError> {
    authorize(&app, &headers, Scope::Admin)?;
    let kind = b.entry_kind();
    submit(&app, b.id, kind).await
}
