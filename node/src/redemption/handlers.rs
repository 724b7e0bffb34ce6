//! The redemption routes' handlers: each parses the request (body, path, API key or peer
//! signature), calls one step of [`super::quotes`], [`super::payee`], [`super::payer`],
//! [`super::refunds`], [`super::statements`], [`super::reconcile`] or [`super::agreements`],
//! and answers its result; a step's [`crate::redemption_error::RedemptionError`] becomes a problem in
//! [`crate::problem`]. This is the only file of `node::redemption` that knows the HTTP error
//! type (a test in [`super`] checks it).

use axum::body::Bytes;
use std::sync::Arc;

use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{header, HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;

use ledger::agreement::{AgreementTerms, SignedAgreement};
use ledger::receipt::Receipt;
use ledger::statement::{to_csv, SignedStatement};
use ledger::types::{BrandId, EntryId};
use serde::de::DeserializeOwned;

use super::agreements::{self, AgreementOutcome};
use super::payee::{self, Committed, PrepareBody, Prepared};
use super::payer;
use super::quotes::{self, QuoteAnswer, QuoteRequest};
use super::reconcile::{self, ReconcileQuery, ReportFormat};
use super::redeem::{CommitRequest, PayerCommit, PrepareRequest, RedemptionStatus};
use super::refunds::{self, RefundRequest, Refunded};
use super::statements::{self, LoggedStatement, StatementBody, StatementsQuery};
use crate::app::{authorize, parse_param, scope, ApiJson, App, AppState, Authorized, Param};
use crate::federation::{peer, Partner};
use crate::keys::Scope;
use crate::problem::ApiError;

#[utoipa::path(post, path = "/v1/redemptions/quote", request_body = QuoteRequest,
    responses((status = 200, body = QuoteAnswer)), tag = "redemption")]
pub async fn quote(
    State(app): AppState,
    headers: HeaderMap,
    ApiJson(b): ApiJson<QuoteRequest>,
) -> Result<Json<QuoteAnswer>, ApiError> {
    authorize(&app, &headers, Scope::Redeem)?;
    Ok(Json(quotes::quote(&app, b).await?))
}

#[utoipa::path(get, path = "/v1/redemptions/{redemption}/quote",
    params(("redemption" = String, Path)),
    responses((status = 200, body = QuoteAnswer)), tag = "redemption")]
pub async fn get_quote(
    State(app): AppState,
    _: Authorized<scope::Read>,
    Param(id): Param<EntryId>,
) -> Result<Json<QuoteAnswer>, ApiError> {
    Ok(Json(quotes::answer(&app, &id, None)?))
}

/// The payee's side: keeps the secret, asks the payer to hold, verifies the receipt.
#[utoipa::path(post, path = "/v1/redemptions/{redemption}/prepare", request_body = PrepareBody,
    params(("redemption" = String, Path)), responses((status = 200, body = Prepared)),
    tag = "redemption")]
pub async fn prepare(
    State(app): AppState,
    headers: HeaderMap,
    Path(redemption): Path<String>,
    ApiJson(b): ApiJson<PrepareBody>,
) -> Result<Json<Prepared>, ApiError> {
    authorize(&app, &headers, Scope::Redeem)?;
    let id: EntryId = parse_param("redemption", &redemption)?;
    Ok(Json(payee::prepare(&app, id, b).await?))
}

/// `GET /v1/redemptions/{redemption}/status` at the payee: the payer's answer, verified.
#[utoipa::path(get, path = "/v1/redemptions/{redemption}/status",
    params(("redemption" = String, Path)), responses((status = 200, body = RedemptionStatus)),
    tag = "redemption")]
pub async fn status(
    State(app): AppState,
    _: Authorized<scope::Read>,
    Param(id): Param<EntryId>,
) -> Result<Json<RedemptionStatus>, ApiError> {
    Ok(Json(payee::ask_payer(&app, &id, false).await?))
}

/// `POST /v1/redemptions/{redemption}/void` at the payee: cancels the hold at the payer.
#[utoipa::path(post, path = "/v1/redemptions/{redemption}/void",
    params(("redemption" = String, Path)), responses((status = 200, body = RedemptionStatus)),
    tag = "redemption")]
pub async fn void(
    State(app): AppState,
    headers: HeaderMap,
    Path(redemption): Path<String>,
) -> Result<Json<RedemptionStatus>, ApiError> {
    authorize(&app, &headers, Scope::Redeem)?;
    let id: EntryId = parse_param("redemption", &redemption)?;
    Ok(Json(payee::ask_payer(&app, &id, true).await?))
}

/// `POST /v1/redemptions/{redemption}/commit` at the payee: reveals the preimage to the payer,
/// verifies its receipts, and logs the receivable. Safe to retry after a crash or a timeout.
#[utoipa::path(post, path = "/v1/redemptions/{redemption}/commit",
    params(("redemption" = String, Path)), responses((status = 200, body = Committed)),
    tag = "redemption")]
pub async fn commit(
    State(app): AppState,
    headers: HeaderMap,
    Path(redemption): Path<String>,
) -> Result<Json<Committed>, ApiError> {
    authorize(&app, &headers, Scope::Redeem)?;
    let id: EntryId = parse_param("redemption", &redemption)?;
    Ok(Json(payee::commit(&app, id).await?))
}

/// The payer's side (signed peer request): checks the quote against its own log and holds.
pub async fn peer_prepare(
    State(app): AppState,
    PeerJson(sender, req): PeerJson<PrepareRequest>,
) -> Result<Json<Receipt>, ApiError> {
    Ok(Json(payer::prepare(&app, &sender, req).await?))
}

/// `GET /v1/peer/redemptions/{id}` at the payer (signed peer request from the payee).
pub async fn peer_status(
    State(app): AppState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<RedemptionStatus>, ApiError> {
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let sender = peer::verify(&app.federation, &method, path, &headers, b"")?;
    let id: EntryId = parse_param("redemption", &id)?;
    Ok(Json(payer::status_at_payer(&app, &id, &sender.brand)?))
}

/// `POST /v1/peer/redemptions/{id}/void` at the payer: the payee cancels; the hold is voided
/// (idempotent) unless it was posted.
pub async fn peer_void(
    State(app): AppState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<RedemptionStatus>, ApiError> {
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let sender = peer::verify(&app.federation, &method, path, &headers, &body)?;
    let id: EntryId = parse_param("redemption", &id)?;
    Ok(Json(payer::void(&app, &sender, id).await?))
}

/// `POST /v1/peer/redemptions/{id}/commit` at the payer (signed, from the payee): posts the hold
/// with the preimage and logs the payable obligation in the same batch.
pub async fn peer_commit(
    State(app): AppState,
    Path(id): Path<String>,
    PeerJson(sender, req): PeerJson<CommitRequest>,
) -> Result<Json<PayerCommit>, ApiError> {
    let id: EntryId = parse_param("redemption", &id)?;
    Ok(Json(payer::commit(&app, &sender, id, req).await?))
}

/// `POST /v1/peer/redemptions/{id}/refunds` at the payer (signed, from the payee): logs the
/// payable side of the refund (the points go back to the member) and answers with its receipt.
pub async fn peer_refund(
    State(app): AppState,
    Path(id): Path<String>,
    PeerJson(sender, req): PeerJson<RefundRequest>,
) -> Result<Json<Receipt>, ApiError> {
    let id: EntryId = parse_param("redemption", &id)?;
    Ok(Json(refunds::payer_refund(&app, &sender, id, req).await?))
}

/// `POST /v1/redemptions/{redemption}/refunds` at the redeeming brand (payee): refunds `points`
/// of a committed redemption on both sides. Safe to retry with the same refund id after a
/// crash or a timeout.
#[utoipa::path(post, path = "/v1/redemptions/{redemption}/refunds", request_body = RefundRequest,
    params(("redemption" = String, Path)), responses((status = 200, body = Refunded)),
    tag = "redemption")]
pub async fn refund(
    State(app): AppState,
    headers: HeaderMap,
    Path(redemption): Path<String>,
    ApiJson(req): ApiJson<RefundRequest>,
) -> Result<Json<Refunded>, ApiError> {
    authorize(&app, &headers, Scope::Redeem)?;
    let id: EntryId = parse_param("redemption", &redemption)?;
    Ok(Json(refunds::refund(&app, id, req).await?))
}

/// `POST /v1/statements/{partner}`: reconciles a settlement period that has ended with the
/// partner, and when every line matches, co-signs the statement with it and logs it on both
/// sides. Idempotent by agreement and period.
#[utoipa::path(post, path = "/v1/statements/{partner}", request_body = StatementBody,
    params(("partner" = String, Path)), responses((status = 200, body = LoggedStatement)),
    tag = "redemption")]
pub async fn cosign(
    State(app): AppState,
    headers: HeaderMap,
    Path(partner): Path<String>,
    ApiJson(b): ApiJson<StatementBody>,
) -> Result<Json<LoggedStatement>, ApiError> {
    authorize(&app, &headers, Scope::Admin)?;
    let brand: BrandId = parse_param("partner", &partner)?;
    Ok(Json(statements::cosign(&app, brand, b).await?))
}

/// `POST /v1/peer/statements` (signed): a partner's half-signed statement; answered with both
/// signatures, and logged, when this node's own reconciliation gives the same statement.
pub async fn peer_cosign(
    State(app): AppState,
    PeerJson(sender, half): PeerJson<SignedStatement>,
) -> Result<Json<SignedStatement>, ApiError> {
    Ok(Json(statements::peer_cosign(&app, &sender, half).await?))
}

/// `GET /v1/statements/{partner}`: every co-signed statement logged with the partner, by period.
#[utoipa::path(get, path = "/v1/statements/{partner}",
    params(("partner" = String, Path), StatementsQuery),
    responses((status = 200, body = Vec<LoggedStatement>)), tag = "redemption")]
pub async fn list(
    State(app): AppState,
    // The query is read first, then the key, then the partner (the order of the answers).
    Query(q): Query<StatementsQuery>,
    _: Authorized<scope::Read>,
    Param(brand): Param<BrandId>,
) -> Result<Json<Vec<LoggedStatement>>, ApiError> {
    Ok(Json(statements::list(
        &app,
        &brand,
        q.agreement.as_deref(),
    )?))
}

#[utoipa::path(get, path = "/v1/reconciliation/{partner}",
    params(("partner" = String, Path), ReconcileQuery),
    responses((status = 200, description = "ledger::statement::Reconciliation as JSON, or CSV")),
    tag = "redemption")]
pub async fn reconciliation(
    State(app): AppState,
    // The query is read first, then the key, then the partner (the order of the answers).
    Query(q): Query<ReconcileQuery>,
    _: Authorized<scope::Read>,
    Param(brand): Param<BrandId>,
) -> Result<Response, ApiError> {
    let (report, format) = reconcile::reconciliation(&app, brand, q).await?;
    Ok(match format {
        ReportFormat::Csv => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            to_csv(&report),
        )
            .into_response(),
        ReportFormat::Json => Json(report).into_response(),
    })
}

/// `POST /v1/admin/agreements`: this node's operator approves the terms. The node signs them,
/// keeps the approval, and sends it to the partner; if the partner approved the same terms,
/// both nodes log the co-signed agreement.
#[utoipa::path(post, path = "/v1/admin/agreements",
    request_body(content = Object, description = "ledger::agreement::AgreementTerms"),
    responses((status = 200, body = AgreementOutcome)), tag = "federation")]
pub async fn approve(
    State(app): AppState,
    headers: HeaderMap,
    ApiJson(terms): ApiJson<AgreementTerms>,
) -> Result<Json<AgreementOutcome>, ApiError> {
    authorize(&app, &headers, Scope::Admin)?;
    Ok(Json(agreements::approve(&app, terms).await?))
}

/// `POST /v1/peer/agreements` (signed peer request): the partner's signed approval. Answered
/// with the co-signed agreement, logged here, when this node's operator approved the same terms.
pub async fn peer_approval(
    State(app): AppState,
    PeerJson(sender, theirs): PeerJson<SignedAgreement>,
) -> Result<Json<SignedAgreement>, ApiError> {
    Ok(Json(
        agreements::peer_approval(&app, &sender, theirs).await?,
    ))
}

/// A signed peer request: its sender, verified as the peer rules say ([`peer::verify_json`]:
/// signature over method, path and body, time, nonce), and its body parsed as `T`. Refused
/// as they refuse it; a body the node's limits refuse, as axum's `Bytes` refuses it.
pub struct PeerJson<T>(pub Arc<Partner>, pub T);

/// A peer request body, named in a refusal of it.
pub trait PeerBody: DeserializeOwned {
    const WHAT: &'static str;
}

impl PeerBody for PrepareRequest {
    const WHAT: &'static str = "prepare request";
}

impl PeerBody for CommitRequest {
    const WHAT: &'static str = "commit request";
}

impl PeerBody for RefundRequest {
    const WHAT: &'static str = "refund request";
}

impl PeerBody for SignedStatement {
    const WHAT: &'static str = "statement";
}

impl PeerBody for SignedAgreement {
    const WHAT: &'static str = "signed agreement";
}

impl<T: PeerBody> FromRequest<Arc<App>> for PeerJson<T> {
    type Rejection = Response;
    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, Response> {
        let (method, uri, headers) = (
            req.method().clone(),
            req.uri().clone(),
            req.headers().clone(),
        );
        let body = Bytes::from_request(req, app)
            .await
            .map_err(IntoResponse::into_response)?;
        peer::verify_json(&app.federation, &method, &uri, &headers, &body, T::WHAT)
            .map(|(sender, body)| PeerJson(sender, body))
            .map_err(|e| ApiError::from(e).into_response())
    }
}
