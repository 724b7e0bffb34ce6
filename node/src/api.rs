//! The write routes (spec/api.md): earns, redemptions, adjustments, holds, authorisations,
//! refunds and policies. Handlers parse, call one core function, map the error.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use ledger::entry::{
    Adjust, Direction, Earn, EntryKind, ExpiryPolicy, FxRate, HexBytes, HexHash, Hold, Post,
    RateCard, Redeem, Refund, SpendAuthorisation, Tier, TierPolicy, Void,
};
use ledger::log::{receipt_from_store, Write};
use ledger::money::{Currency, Decimal};
use ledger::receipt::Receipt;
use ledger::types::{BrandId, DurationMs, EntryId, LogTime, MemberId, Points};

use crate::keys::Scope;
use crate::problem::ApiError;

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

/// Answer to a write: whether it was logged now, and its receipt.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WriteResponse {
    /// `appended` (logged now) or `existing` (the same write was logged before).
    pub status: String,
    #[schema(value_type = Object)]
    pub receipt: Receipt,
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
        status: committed.status.as_str().into(),
        receipt,
    }))
}

/// `POST /v1/members/{member}/earn`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EarnBody {
    #[schema(value_type = String)]
    pub id: EntryId,
    #[schema(value_type = u64, minimum = 1)]
    pub points: Points,
    /// Whether the points count towards tiers (default true).
    #[serde(default)]
    pub qualifying: Option<bool>,
}

#[utoipa::path(post, path = "/v1/members/{member}/earn", request_body = EarnBody,
    params(("member" = String, Path)), responses((status = 200, body = WriteResponse)), tag = "writes")]
pub async fn earn(
    State(app): AppState,
    headers: HeaderMap,
    Path(member): Path<String>,
    ApiJson(b): ApiJson<EarnBody>,
) -> Result<Json<WriteResponse>, ApiError> {
    authorize(&app, &headers, Scope::Earn)?;
    let member: MemberId = parse_param("member", &member)?;
    let kind = EntryKind::Earn(Earn {
        member,
        points: b.points,
        qualifying: b.qualifying.unwrap_or(true),
    });
    submit(&app, b.id, kind).await
}

/// Most earns in one `POST /v1/earns` request.
pub const EARNS_PER_REQUEST_MAX: usize = 500;

/// One earn of a `POST /v1/earns` request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EarnItem {
    #[schema(value_type = String)]
    pub member: MemberId,
    #[schema(value_type = String)]
    pub id: EntryId,
    #[schema(value_type = u64, minimum = 1)]
    pub points: Points,
    /// Whether the points count towards tiers (default true).
    #[serde(default)]
    pub qualifying: Option<bool>,
}

/// `POST /v1/earns`: up to [`EARNS_PER_REQUEST_MAX`] earns, committed in one synced batch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EarnsBody {
    pub earns: Vec<EarnItem>,
}

/// The outcome of one earn of a `POST /v1/earns` request, in request order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EarnOutcome {
    /// `appended`, `existing` (the same earn was logged before under this id) or `refused`.
    pub status: String,
    /// The entry's log index (not for `refused`); its receipt is
    /// `GET /v1/log/entries/{index}/receipt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// Why this earn was refused (the others are unaffected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub problem: Option<serde_json::Value>,
}

/// Answer to `POST /v1/earns`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EarnsResponse {
    /// The signed checkpoint that covers every appended or existing earn of the request.
    pub checkpoint: String,
    /// Its tree size.
    pub size: u64,
    pub results: Vec<EarnOutcome>,
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
            "too_many_items",
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
                "duplicate_id",
                format!("the id {} appears twice in this request", e.id),
            ));
        }
    }
    let writes: Vec<Write> = b
        .earns
        .into_iter()
        .map(|e| Write {
            id: e.id,
            kind: EntryKind::Earn(Earn {
                member: e.member,
                points: e.points,
                qualifying: e.qualifying.unwrap_or(true),
            }),
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
            Ok(c) => EarnOutcome {
                status: c.status.as_str().into(),
                index: Some(c.index),
                problem: None,
            },
            Err(e) => {
                let e = ApiError::from(e);
                EarnOutcome {
                    status: if e.status.is_server_error() {
                        "failed"
                    } else {
                        "refused"
                    }
                    .into(),
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

/// `POST /v1/members/{member}/redeem`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemBody {
    #[schema(value_type = String)]
    pub id: EntryId,
    #[schema(value_type = u64, minimum = 1)]
    pub points: Points,
}

#[utoipa::path(post, path = "/v1/members/{member}/redeem", request_body = RedeemBody,
    params(("member" = String, Path)), responses((status = 200, body = WriteResponse)), tag = "writes")]
pub async fn redeem(
    State(app): AppState,
    headers: HeaderMap,
    Path(member): Path<String>,
    ApiJson(b): ApiJson<RedeemBody>,
) -> Result<Json<WriteResponse>, ApiError> {
    authorize(&app, &headers, Scope::Redeem)?;
    let member: MemberId = parse_param("member", &member)?;
    submit(
        &app,
        b.id,
        EntryKind::Redeem(Redeem {
            member,
            points: b.points,
        }),
    )
    .await
}

/// `POST /v1/members/{member}/adjust`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustBody {
    #[schema(value_type = String)]
    pub id: EntryId,
    #[schema(value_type = u64, minimum = 1)]
    pub points: Points,
    /// `credit` or `debit`.
    #[schema(value_type = String)]
    pub direction: Direction,
    pub reason: String,
}

#[utoipa::path(post, path = "/v1/members/{member}/adjust", request_body = AdjustBody,
    params(("member" = String, Path)), responses((status = 200, body = WriteResponse)), tag = "writes")]
pub async fn adjust(
    State(app): AppState,
    headers: HeaderMap,
    Path(member): Path<String>,
    ApiJson(b): ApiJson<AdjustBody>,
) -> Result<Json<WriteResponse>, ApiError> {
    authorize(&app, &headers, Scope::Admin)?;
    let member: MemberId = parse_param("member", &member)?;
    let kind = EntryKind::Adjust(Adjust {
        member,
        points: b.points,
        direction: b.direction,
        reason: b.reason,
    });
    kind.validate()
        .map_err(|e| ApiError::bad_body(e.to_string()))?;
    submit(&app, b.id, kind).await
}

/// `POST /v1/members/{member}/holds`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    #[schema(value_type = String)]
    pub id: EntryId,
    #[schema(value_type = u64, minimum = 1)]
    pub points: Points,
    /// Log time (ms) from which the hold can no longer be posted.
    #[schema(value_type = u64)]
    pub expires_at: LogTime,
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub payee: Option<BrandId>,
    /// Hex SHA-256 of the preimage that posting must reveal.
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub condition: Option<HexHash>,
    /// The spend authorisation (its id) the member's brand issued for `payee`; required when
    /// there is a payee.
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub authorisation: Option<EntryId>,
}

#[utoipa::path(post, path = "/v1/members/{member}/holds", request_body = HoldBody,
    params(("member" = String, Path)), responses((status = 200, body = WriteResponse)), tag = "writes")]
pub async fn hold(
    State(app): AppState,
    headers: HeaderMap,
    Path(member): Path<String>,
    ApiJson(b): ApiJson<HoldBody>,
) -> Result<Json<WriteResponse>, ApiError> {
    authorize(&app, &headers, Scope::Redeem)?;
    let member: MemberId = parse_param("member", &member)?;
    if b.payee.is_some() && b.authorisation.is_none() {
        // DESIGN §6: without a spend authorisation no partner can touch a member's points.
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "authorisation_required",
            "a hold for a partner (payee) must name the member's spend authorisation",
        ));
    }
    if b.payee.is_some() {
        // The partner resolves it through the redemption routes, which derive ids from it.
        crate::redemption::redeem::check_redemption_id(&b.id)?;
    }
    let kind = EntryKind::Hold(Hold {
        member,
        points: b.points,
        expires_at: b.expires_at,
        payee: b.payee,
        condition: b.condition,
        authorisation: b.authorisation,
    });
    submit(&app, b.id, kind).await
}

/// `POST /v1/members/{member}/authorisations`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorisationBody {
    /// The authorisation's id (a hold names it).
    #[schema(value_type = String)]
    pub id: EntryId,
    /// The only partner brand that may hold the points.
    #[schema(value_type = String)]
    pub payee: BrandId,
    #[schema(value_type = u64, minimum = 1)]
    pub max_points: Points,
    /// Log time from which it can no longer be used.
    #[schema(value_type = u64)]
    pub expires_at: LogTime,
}

#[utoipa::path(post, path = "/v1/members/{member}/authorisations", request_body = AuthorisationBody,
    params(("member" = String, Path)), responses((status = 200, body = WriteResponse)), tag = "writes")]
pub async fn authorise(
    State(app): AppState,
    headers: HeaderMap,
    Path(member): Path<String>,
    ApiJson(b): ApiJson<AuthorisationBody>,
) -> Result<Json<WriteResponse>, ApiError> {
    authorize(&app, &headers, Scope::Redeem)?;
    let member: MemberId = parse_param("member", &member)?;
    let kind = EntryKind::SpendAuthorisation(SpendAuthorisation {
        member,
        payee: b.payee,
        max_points: b.max_points,
        expires_at: b.expires_at,
    });
    submit(&app, b.id, kind).await
}

/// `POST /v1/holds/{hold}/post`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostBody {
    #[schema(value_type = String)]
    pub id: EntryId,
    /// Hex preimage of the hold's condition.
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    pub preimage: Option<HexBytes>,
}

#[utoipa::path(post, path = "/v1/holds/{hold}/post", request_body = PostBody,
    params(("hold" = String, Path)), responses((status = 200, body = WriteResponse)), tag = "writes")]
pub async fn post_hold(
    State(app): AppState,
    headers: HeaderMap,
    Path(hold): Path<String>,
    ApiJson(b): ApiJson<PostBody>,
) -> Result<Json<WriteResponse>, ApiError> {
    authorize(&app, &headers, Scope::Redeem)?;
    let hold: EntryId = parse_param("hold", &hold)?;
    submit(
        &app,
        b.id,
        EntryKind::Post(Post {
            hold,
            preimage: b.preimage,
        }),
    )
    .await
}

/// `POST /v1/holds/{hold}/void`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoidBody {
    #[schema(value_type = String)]
    pub id: EntryId,
}

#[utoipa::path(post, path = "/v1/holds/{hold}/void", request_body = VoidBody,
    params(("hold" = String, Path)), responses((status = 200, body = WriteResponse)), tag = "writes")]
pub async fn void_hold(
    State(app): AppState,
    headers: HeaderMap,
    Path(hold): Path<String>,
    ApiJson(b): ApiJson<VoidBody>,
) -> Result<Json<WriteResponse>, ApiError> {
    authorize(&app, &headers, Scope::Redeem)?;
    let hold: EntryId = parse_param("hold", &hold)?;
    submit(&app, b.id, EntryKind::Void(Void { hold })).await
}

/// `POST /v1/redemptions/{redemption}/refund`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    #[schema(value_type = String)]
    pub id: EntryId,
    #[schema(value_type = u64, minimum = 1)]
    pub points: Points,
}

#[utoipa::path(post, path = "/v1/redemptions/{redemption}/refund", request_body = RefundBody,
    params(("redemption" = String, Path)), responses((status = 200, body = WriteResponse)), tag = "writes")]
pub async fn refund(
    State(app): AppState,
    headers: HeaderMap,
    Path(redemption): Path<String>,
    ApiJson(b): ApiJson<RefundBody>,
) -> Result<Json<WriteResponse>, ApiError> {
    authorize(&app, &headers, Scope::Redeem)?;
    let redemption: EntryId = parse_param("redemption", &redemption)?;
    submit(
        &app,
        b.id,
        EntryKind::Refund(Refund {
            redemption,
            points: b.points,
        }),
    )
    .await
}

/// `PUT /v1/policy/tiers`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TiersBody {
    #[schema(value_type = String)]
    pub id: EntryId,
    #[schema(value_type = Vec<Object>)]
    pub tiers: Vec<Tier>,
    #[schema(value_type = u64)]
    pub window_ms: DurationMs,
    #[schema(value_type = u64)]
    pub grace_ms: DurationMs,
}

#[utoipa::path(put, path = "/v1/policy/tiers", request_body = TiersBody,
    responses((status = 200, body = WriteResponse)), tag = "policy")]
pub async fn set_tiers(
    State(app): AppState,
    headers: HeaderMap,
    ApiJson(b): ApiJson<TiersBody>,
) -> Result<Json<WriteResponse>, ApiError> {
    authorize(&app, &headers, Scope::Admin)?;
    let kind = EntryKind::TierPolicy(TierPolicy {
        tiers: b.tiers,
        window_ms: b.window_ms,
        grace_ms: b.grace_ms,
    });
    kind.validate()
        .map_err(|e| ApiError::bad_body(e.to_string()))?;
    submit(&app, b.id, kind).await
}

/// `PUT /v1/policy/expiry`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpiryBody {
    #[schema(value_type = String)]
    pub id: EntryId,
    /// Lot lifetime; omit for points that never expire.
    #[schema(value_type = Option<u64>)]
    #[serde(default)]
    pub lot_lifetime_ms: Option<DurationMs>,
}

#[utoipa::path(put, path = "/v1/policy/expiry", request_body = ExpiryBody,
    responses((status = 200, body = WriteResponse)), tag = "policy")]
pub async fn set_expiry(
    State(app): AppState,
    headers: HeaderMap,
    ApiJson(b): ApiJson<ExpiryBody>,
) -> Result<Json<WriteResponse>, ApiError> {
    authorize(&app, &headers, Scope::Admin)?;
    let kind = EntryKind::ExpiryPolicy(ExpiryPolicy {
        lot_lifetime_ms: b.lot_lifetime_ms,
    });
    kind.validate()
        .map_err(|e| ApiError::bad_body(e.to_string()))?;
    submit(&app, b.id, kind).await
}

/// `PUT /v1/policy/rate-card`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateCardBody {
    #[schema(value_type = String)]
    pub id: EntryId,
    /// ISO 4217 code with a minor unit.
    #[schema(value_type = String)]
    pub currency: Currency,
    /// Exact decimal string, e.g. "0.0125".
    #[schema(value_type = String)]
    pub point_value: Decimal,
    #[schema(value_type = u64)]
    pub valid_from: LogTime,
}

#[utoipa::path(put, path = "/v1/policy/rate-card", request_body = RateCardBody,
    responses((status = 200, body = WriteResponse)), tag = "policy")]
pub async fn set_rate_card(
    State(app): AppState,
    headers: HeaderMap,
    ApiJson(b): ApiJson<RateCardBody>,
) -> Result<Json<WriteResponse>, ApiError> {
    authorize(&app, &headers, Scope::Admin)?;
    let kind = EntryKind::RateCard(RateCard {
        currency: b.currency,
        point_value: b.point_value,
        valid_from: b.valid_from,
    });
    submit(&app, b.id, kind).await
}

/// `PUT /v1/policy/fx-rate`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FxRateBody {
    #[schema(value_type = String)]
    pub id: EntryId,
    #[schema(value_type = String)]
    pub from: Currency,
    #[schema(value_type = String)]
    pub to: Currency,
    /// Units of `to` per one unit of `from`, an exact decimal string.
    #[schema(value_type = String)]
    pub rate: Decimal,
    #[schema(value_type = u64)]
    pub valid_from: LogTime,
}

#[utoipa::path(put, path = "/v1/policy/fx-rate", request_body = FxRateBody,
    responses((status = 200, body = WriteResponse)), tag = "policy")]
pub async fn set_fx_rate(
    State(app): AppState,
    headers: HeaderMap,
    ApiJson(b): ApiJson<FxRateBody>,
) -> Result<Json<WriteResponse>, ApiError> {
    authorize(&app, &headers, Scope::Admin)?;
    let kind = EntryKind::FxRate(FxRate {
        from: b.from,
        to: b.to,
        rate: b.rate,
        valid_from: b.valid_from,
    });
    submit(&app, b.id, kind).await
}
