//! Refunds of committed cross-brand redemptions and co-signed settlement statements
//! (spec/redemption.md §3 step 7 and §4.3).
//!
//! **Refund.** The redeeming brand (payee, B) decides a refund of (part of) a committed
//! redemption and asks the member's brand (payer, A), by a signed peer request, to log its side:
//! A logs `obligation_refund {side: payable}`, which returns the points to the member and takes
//! the refund's share off what A owes B (the cumulative rule of `ledger::value::refund_minor`),
//! and answers with the receipt. B verifies it against A's pinned key and logs
//! `obligation_refund {side: receivable}` naming A's entry. B keeps the refund it is working on
//! durably before it asks, and finishes it before it starts another of the same redemption, so
//! both logs hold the refunds in one order (the cumulative rule depends on it).
//!
//! **Statement.** For a settlement period of an agreement that has ended, a node reconciles its
//! own log against its verified mirror of the partner; only when every line matches does it sign
//! the statement and send it, as a signed peer request, to the partner, which does the same from
//! its side, signs the identical statement and logs it; the initiator then logs the same
//! co-signed entry. Each log's state machine checks the statement against its own lines again.
//!
//! Invariants: every step is idempotent (by refund id; by agreement and period); nothing a
//! partner sends is logged before its signature verifies against the pinned key (and, for a
//! statement, the key the agreement names).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Json;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use ledger::entry::{Counterpart, Entry, EntryKind, HexHash, ObligationRefund, ObligationSide};
use ledger::log::{receipt_from_store, Write};
use ledger::receipt::Receipt;
use ledger::state::{record_prefix, AgreementState, ObligationState};
use ledger::statement::{self, period_bounds, SignedStatement};
use ledger::types::{BrandId, EntryId, LogIndex, Points};

use super::reconcile::{agreement_with, mirror_of, report};
use super::redeem::{
    bad_answer, quote_and_payer, refusal_status, refused, unprocessable, unreachable,
};
use crate::app::{authorize, check_id, parse_param, ApiJson, App, AppState};
use crate::federation::client::{PeerClient, Reply};
use crate::federation::{peer, Partner};
use crate::keys::Scope;
use crate::problem::ApiError;
use crate::reads::store_record;

/// Where the payee keeps the refund it is working on, per payer and redemption (node-local).
const PENDING_PREFIX: &[u8] = b"refund-pending/";
/// The peer route of the payer for refunds: `/v1/peer/redemptions/{id}/refunds`.
const PEER_REDEMPTIONS: &str = "/v1/peer/redemptions/";
/// The peer route for statements.
pub const PEER_STATEMENTS_PATH: &str = "/v1/peer/statements";
/// The longest refund id.
pub const REFUND_ID_LEN_MAX: usize = 96;

fn conflict(code: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, detail)
}

/// The id of a refund's entry in one log: `sys.rfd.` and 32 hex digits of
/// SHA-256(other brand, redemption, refund), so it fits whatever the ids' lengths.
fn refund_entry_id(
    other: &BrandId,
    redemption: &EntryId,
    refund: &EntryId,
) -> Result<EntryId, ApiError> {
    let h = Sha256::digest(format!("{other}\n{redemption}\n{refund}"));
    format!("sys.rfd.{}", &hex::encode(h)[..32])
        .parse()
        .map_err(ApiError::internal)
}

/// The node-local key of the refund the payee is working on for `payer`'s redemption `id`.
fn pending_key(payer: &BrandId, id: &EntryId) -> Vec<u8> {
    [PENDING_PREFIX, format!("{payer}/{id}").as_bytes()].concat()
}

/// A refund id a payee's app may choose: not reserved (`sys.`), and at most
/// [`REFUND_ID_LEN_MAX`] characters.
pub fn check_refund_id(id: &EntryId) -> Result<(), ApiError> {
    check_id(id)?;
    if id.as_str().len() > REFUND_ID_LEN_MAX {
        return Err(unprocessable(
            "refund_id_too_long",
            format!("a refund id has at most {REFUND_ID_LEN_MAX} characters"),
        ));
    }
    Ok(())
}

/// A refund: its id (chosen by the payee's app) and the points it returns to the member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// The refund's id; a retry with the same id and points is answered from the logs.
    #[schema(value_type = String)]
    pub refund: EntryId,
    /// Points returned to the member: at most what is left of the redemption.
    #[schema(value_type = u64, minimum = 1)]
    pub points: Points,
}

/// A refund as the payee reports it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Refunded {
    pub redemption: String,
    pub refund: String,
    pub points: u64,
    /// What the refund takes off the payer's obligation, in minor units of `currency` (0 when
    /// the cumulative rule rounds it away; a later refund catches up).
    pub amount_minor: u64,
    pub currency: String,
    /// Points of the redemption refunded so far, this refund included.
    pub refunded_points: u64,
    /// The payer's `obligation_refund` receipt (verified against its pinned key).
    #[schema(value_type = Object)]
    pub payer: Receipt,
    /// The receipt of this brand's `obligation_refund` (receivable side).
    #[schema(value_type = Object)]
    pub receivable: Receipt,
}

fn receipt_at(app: &App, index: u64) -> Result<Receipt, ApiError> {
    let cp = app.shared.checkpoint();
    receipt_from_store(&app.store, index, cp.size, &cp.note).map_err(ApiError::internal)
}

/// `POST /v1/peer/redemptions/{id}/refunds` at the payer (signed, from the payee): logs the
/// payable side of the refund (the points go back to the member) and answers with its receipt.
pub async fn peer_refund(
    State(app): AppState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Receipt>, ApiError> {
    let fed = &app.federation;
    let (sender, req): (_, RefundRequest) =
        peer::verify_json(fed, &method, &uri, &headers, &body, "refund request")?;
    let id: EntryId = parse_param("redemption", &id)?;
    check_refund_id(&req.refund)?;
    // Refunds and commits of this node are serialised: the cumulative rule reads the refunds
    // logged before.
    let _guard = fed.commit_lock.lock().await;
    let o: ObligationState = store_record(
        &app.store,
        record_prefix::OBLIGATION,
        &format!("payable/{}/{id}", fed.brand),
    )?
    .filter(|o: &ObligationState| o.quote.payee == sender.brand)
    .ok_or_else(|| {
        ApiError::not_found(
            "unknown_redemption",
            format!("no committed redemption {id} for {}", sender.brand),
        )
    })?;
    if let Some(r) = o.refunds.iter().find(|r| r.refund == req.refund) {
        if r.points != req.points.get() {
            return Err(conflict(
                "id_conflict",
                format!("refund {} was logged with {} points", req.refund, r.points),
            ));
        }
        return Ok(Json(receipt_at(&app, r.index.get())?));
    }
    let total = o.quote.points.get();
    let refunded = o.refunded_points();
    if req.points.get() > total - refunded {
        return Err(conflict(
            "refund_exceeds_obligation",
            format!(
                "{} of {total} points are refunded; {} more cannot be",
                refunded,
                req.points.get()
            ),
        ));
    }
    let a: AgreementState = store_record(
        &app.store,
        record_prefix::AGREEMENT,
        o.quote.agreement.as_str(),
    )?
    .ok_or_else(|| ApiError::internal("an obligation without its agreement"))?;
    let amount = ledger::value::refund_minor(
        o.quote.amount_minor,
        total,
        refunded,
        req.points.get(),
        a.agreement.terms.rounding,
    )
    .map_err(ApiError::internal)?;
    let committed = app
        .sequencer
        .submit(Write {
            id: refund_entry_id(&sender.brand, &id, &req.refund)?,
            kind: EntryKind::ObligationRefund(ObligationRefund {
                side: ObligationSide::Payable,
                payer: fed.brand.clone(),
                redemption: id.clone(),
                refund: req.refund.clone(),
                points: req.points,
                amount_minor: amount,
                counterpart: None,
            }),
        })
        .await?;
    crate::fault::point("payer_refund_logged");
    tracing::info!(redemption = %id, refund = %req.refund, points = req.points.get(), amount, "refunded");
    Ok(Json(
        receipt_from_store(
            &app.store,
            committed.index,
            committed.checkpoint.size,
            &committed.checkpoint.note,
        )
        .map_err(ApiError::internal)?,
    ))
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
    check_refund_id(&req.refund)?;
    let fed = &app.federation;
    // Quotes are logged only by the redeeming brand, so a quote here is this node's.
    let (_, payer) = quote_and_payer(&app, &id)?;
    let _guard = fed.refund_lock.lock().await;
    let pending_key = pending_key(&payer.brand, &id);
    // A refund of this redemption that was started and not finished goes first, so both logs
    // hold the refunds in one order.
    if let Some(v) = app
        .store
        .local_get(&pending_key)
        .map_err(ApiError::internal)?
    {
        let pending: RefundRequest = serde_json::from_slice(&v).map_err(ApiError::internal)?;
        if pending.refund != req.refund {
            match refund_once(&app, &payer, &id, &pending).await {
                Ok(_) => {}
                // The payer refused it for good, and its record is gone: go on with this one.
                Err(e) if e.code == "partner_refused" => {
                    tracing::warn!(redemption = %id, refund = %pending.refund, detail = %e.detail, "pending refund refused by the payer; dropped");
                }
                Err(e) => return Err(e),
            }
        }
    }
    let rec: ObligationState = store_record(
        &app.store,
        record_prefix::OBLIGATION,
        &format!("receivable/{}/{id}", payer.brand),
    )?
    .ok_or_else(|| {
        conflict(
            "not_committed",
            format!("redemption {id} is not committed; void it instead"),
        )
    })?;
    match rec.refunds.iter().find(|r| r.refund == req.refund) {
        Some(r) if r.points != req.points.get() => {
            return Err(conflict(
                "id_conflict",
                format!("refund {} was logged with {} points", req.refund, r.points),
            ))
        }
        Some(_) => {}
        None => {
            let left = rec.quote.points.get() - rec.refunded_points();
            if req.points.get() > left {
                return Err(conflict(
                    "refund_exceeds_obligation",
                    format!(
                        "only {left} of the redemption's {} points are left to refund",
                        rec.quote.points
                    ),
                ));
            }
            app.store
                .local_write(&[(
                    pending_key.clone(),
                    Some(serde_json::to_vec(&req).map_err(ApiError::internal)?),
                )])
                .map_err(ApiError::internal)?;
        }
    }
    refund_once(&app, &payer, &id, &req).await.map(Json)
}

/// Asks the payer for its side of refund `req` (idempotent), verifies it, logs this brand's
/// side (idempotent), and clears the pending record.
async fn refund_once(
    app: &App,
    payer: &Partner,
    id: &EntryId,
    req: &RefundRequest,
) -> Result<Refunded, ApiError> {
    let fed = &app.federation;
    let body = serde_json::to_vec(req).map_err(ApiError::internal)?;
    let path = format!("{PEER_REDEMPTIONS}{id}/refunds");
    let Ok(Reply {
        status,
        body: answer,
    }) = PeerClient::new(fed, payer).post_json(&path, body).await
    else {
        return Err(unreachable(payer, "the refund"));
    };
    let pending_key = pending_key(&payer.brand, id);
    if status.is_client_error() {
        // A definite refusal: the payer logged nothing, so nothing is pending any more.
        app.store
            .local_write(&[(pending_key.clone(), None)])
            .map_err(ApiError::internal)?;
    }
    match status {
        StatusCode::OK => {}
        s if s == StatusCode::CONFLICT || s == StatusCode::NOT_FOUND => {
            return Err(refused(payer, "the refund", StatusCode::CONFLICT, &answer))
        }
        _ => {
            return Err(refused(
                payer,
                "the refund",
                StatusCode::UNPROCESSABLE_ENTITY,
                &answer,
            ))
        }
    }
    let receipt: Receipt =
        serde_json::from_slice(&answer).map_err(|_| bad_answer("not a receipt"))?;
    let key = payer.verifier.as_ref().expect("pinned");
    let verified = receipt.verify(key).map_err(|e| bad_answer(e.to_string()))?;
    let amount = match &verified.entry.kind {
        EntryKind::ObligationRefund(r)
            if r.side == ObligationSide::Payable
                && r.payer == payer.brand
                && &r.redemption == id
                && r.refund == req.refund
                && r.points == req.points
                && r.counterpart.is_none() =>
        {
            r.amount_minor
        }
        _ => return Err(bad_answer("the payer's receipt is for another entry")),
    };
    crate::fault::point("payee_refund_answered");
    let counterpart = Counterpart {
        index: LogIndex::new(receipt.index).map_err(ApiError::internal)?,
        leaf_hash: HexHash(ledger::merkle::leaf_hash(receipt.entry.as_bytes())),
        time: verified.entry.time,
    };
    let committed = app
        .sequencer
        .submit(Write {
            id: refund_entry_id(&payer.brand, id, &req.refund)?,
            kind: EntryKind::ObligationRefund(ObligationRefund {
                side: ObligationSide::Receivable,
                payer: payer.brand.clone(),
                redemption: id.clone(),
                refund: req.refund.clone(),
                points: req.points,
                amount_minor: amount,
                counterpart: Some(counterpart),
            }),
        })
        .await?;
    app.store
        .local_write(&[(pending_key, None)])
        .map_err(ApiError::internal)?;
    let rec: ObligationState = store_record(
        &app.store,
        record_prefix::OBLIGATION,
        &format!("receivable/{}/{id}", payer.brand),
    )?
    .ok_or_else(|| ApiError::internal("a refund without its obligation"))?;
    Ok(Refunded {
        redemption: id.to_string(),
        refund: req.refund.to_string(),
        points: req.points.get(),
        amount_minor: amount,
        currency: rec.quote.currency.to_string(),
        refunded_points: rec.refunded_points(),
        payer: receipt,
        receivable: receipt_from_store(
            &app.store,
            committed.index,
            committed.checkpoint.size,
            &committed.checkpoint.note,
        )
        .map_err(ApiError::internal)?,
    })
}

// ---------------------------------------------------------------------------------------
// Statements.
// ---------------------------------------------------------------------------------------

/// `POST /v1/statements/{partner}`: the settlement period to co-sign.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatementBody {
    /// The agreement (optional when there is exactly one with the partner).
    #[serde(default)]
    pub agreement: Option<String>,
    /// The settlement period's number `k`: `[origin + k·period_ms, origin + (k+1)·period_ms)`.
    /// Give this or `at`.
    #[serde(default)]
    pub period: Option<u64>,
    /// Any log time (ms) in the period, instead of its number.
    #[serde(default)]
    pub at: Option<u64>,
}

/// A co-signed statement as logged.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LoggedStatement {
    /// The settlement period's number.
    pub period: u64,
    /// The statement with both brands' signatures.
    #[schema(value_type = Object)]
    pub statement: SignedStatement,
    /// The receipt of the `statement` entry in this node's log.
    #[schema(value_type = Object)]
    pub receipt: Receipt,
}

/// The entry id of the statement of `agreement` for period `k`, the same in both logs.
fn statement_entry_id(agreement: &EntryId, k: u64) -> Result<EntryId, ApiError> {
    format!("sys.stmt.{k}.{agreement}").parse().or_else(|_| {
        let h = Sha256::digest(agreement.as_str());
        format!("sys.stmt.{k}.{}", &hex::encode(h)[..32])
            .parse()
            .map_err(ApiError::internal)
    })
}

/// The statement entry this node logged for `agreement` and period `k`, with its receipt.
pub(crate) fn logged(
    app: &App,
    a: &AgreementState,
    k: u64,
) -> Result<Option<LoggedStatement>, ApiError> {
    let Some(index) = a.statements.get(&k) else {
        return Ok(None);
    };
    let receipt = receipt_at(app, index.get())?;
    let entry = Entry::from_bytes(receipt.entry.as_bytes()).map_err(ApiError::internal)?;
    let EntryKind::Statement(statement) = entry.kind else {
        return Err(ApiError::internal("a statement index names another entry"));
    };
    Ok(Some(LoggedStatement {
        period: k,
        statement,
        receipt,
    }))
}

fn refresh(app: &App, a: &AgreementState) -> Result<AgreementState, ApiError> {
    store_record(
        &app.store,
        record_prefix::AGREEMENT,
        a.agreement.terms.agreement.as_str(),
    )?
    .ok_or_else(|| ApiError::internal("the agreement vanished"))
}

/// Reconciles the period from this node's side; the statement only when every line matches.
async fn agreed_statement(
    app: &App,
    partner: &BrandId,
    a: &AgreementState,
    period: statement::Period,
) -> Result<statement::Statement, ApiError> {
    let store = app.store.clone();
    let mirror = mirror_of(app, partner)?;
    let terms = a.agreement.terms.clone();
    let r = tokio::task::spawn_blocking(move || report(&store, &mirror, &terms, period))
        .await
        .map_err(ApiError::internal)??;
    if !r.agreed {
        use ledger::statement::LineStatus as S;
        return Err(conflict(
            "statement_disagreed",
            format!(
                "the lines of {} do not all match: {} matched, {} missing here, {} missing at {partner}, {} differ in amount, {} cut off; see GET /v1/reconciliation/{partner}?agreement={}&from={}&to={} (a mirror that has not caught up yet also shows as missing)",
                period,
                r.count(S::Matched),
                r.count(S::MissingOurs),
                r.count(S::MissingTheirs),
                r.count(S::AmountDiffers),
                r.count(S::CutOff),
                a.agreement.terms.agreement,
                period.from(),
                period.to(),
            ),
        ));
    }
    Ok(r.ours)
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
    let fed = &app.federation;
    let p = fed
        .partner(&brand)
        .filter(|p| p.verifier.is_some())
        .ok_or_else(|| {
            ApiError::not_found("unknown_partner", format!("no pinned partner {brand}"))
        })?;
    let a = agreement_with(&app.store, &fed.brand, &brand, b.agreement.as_deref())?;
    let terms = &a.agreement.terms;
    let k = match (b.period, b.at) {
        (Some(k), None) => k,
        (None, Some(t)) => ledger::types::LogTime::new(t)
            .ok()
            .and_then(|t| terms.period_of(t))
            .ok_or_else(|| ApiError::bad_body("`at` is before the agreement's first period"))?,
        _ => return Err(ApiError::bad_body("give exactly one of `period` and `at`")),
    };
    let period = period_bounds(terms, k).map_err(|e| ApiError::bad_body(e.to_string()))?;
    // No lock across the partner's answer: two nodes that start at once both send, both sign
    // the same deterministic bytes, and the same entry under the same id is logged once.
    if let Some(done) = logged(&app, &refresh(&app, &a)?, k)? {
        return Ok(Json(done));
    }
    if crate::sequencer::now() < period.to() {
        return Err(conflict(
            "period_open",
            format!("settlement period {k} {period} has not ended"),
        ));
    }
    let ours = agreed_statement(&app, &brand, &a, period).await?;
    let mine = statement::sign(&ours, &fed.brand, &fed.signing_key, &app.verifier_key);
    let half = SignedStatement {
        statement: ours.clone(),
        signatures: vec![mine.clone()],
    };
    let body = serde_json::to_vec(&half).map_err(ApiError::internal)?;
    let Ok(Reply {
        status,
        body: answer,
    }) = PeerClient::new(fed, &p)
        .post_json(PEER_STATEMENTS_PATH, body)
        .await
    else {
        return Err(unreachable(&p, "the statement"));
    };
    if status != StatusCode::OK {
        return Err(refused(
            &p,
            "the statement",
            refusal_status(status),
            &answer,
        ));
    }
    let signed: SignedStatement =
        serde_json::from_slice(&answer).map_err(|_| bad_answer("not a signed statement"))?;
    if signed.statement != ours
        || !signed.signatures.contains(&mine)
        || signed.verify(&a.agreement).is_err()
    {
        return Err(bad_answer(
            "the partner's statement is not ours with both valid signatures",
        ));
    }
    {
        // A statement changes the open payables the commit path checks the credit limit
        // against, so it is logged under the same lock as commits and refunds.
        let _guard = fed.commit_lock.lock().await;
        app.sequencer
            .submit(Write {
                id: statement_entry_id(&terms.agreement, k)?,
                kind: EntryKind::Statement(signed),
            })
            .await?;
    }
    tracing::info!(partner = %brand, agreement = %terms.agreement, period = k, "statement co-signed");
    logged(&app, &refresh(&app, &a)?, k)?
        .map(Json)
        .ok_or_else(|| ApiError::internal("the statement was not kept"))
}

/// `POST /v1/peer/statements` (signed): a partner's half-signed statement; answered with both
/// signatures, and logged, when this node's own reconciliation gives the same statement.
pub async fn peer_cosign(
    State(app): AppState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<SignedStatement>, ApiError> {
    let fed = &app.federation;
    let (sender, half): (_, SignedStatement) =
        peer::verify_json(fed, &method, &uri, &headers, &body, "statement")?;
    let a = agreement_with(
        &app.store,
        &fed.brand,
        &sender.brand,
        Some(half.statement.agreement.as_str()),
    )?;
    let terms = &a.agreement.terms;
    half.verify_signature_of(&a.agreement, &sender.brand)
        .map_err(|e| unprocessable("statement_bad_signature", e.to_string()))?;
    let k = half
        .statement
        .period
        .settlement_index(terms)
        .ok_or_else(|| unprocessable("statement_period_invalid", "not a settlement period"))?;
    if let Some(done) = logged(&app, &refresh(&app, &a)?, k)? {
        return Ok(Json(done.statement));
    }
    if crate::sequencer::now() < half.statement.period.to() {
        return Err(conflict(
            "period_open",
            format!(
                "settlement period {k} {} has not ended by this brand's clock",
                half.statement.period
            ),
        ));
    }
    let ours = agreed_statement(&app, &sender.brand, &a, half.statement.period).await?;
    if ours != half.statement {
        return Err(conflict(
            "statement_disagreed",
            "the statement differs from the one this brand computes",
        ));
    }
    let mine = statement::sign(&ours, &fed.brand, &fed.signing_key, &app.verifier_key);
    let theirs = half
        .signatures
        .iter()
        .find(|s| s.brand == sender.brand)
        .cloned()
        .expect("verified above");
    let mut signatures = vec![theirs, mine];
    signatures.sort_by_key(|s| terms.brands.iter().position(|b| *b == s.brand));
    let signed = SignedStatement {
        statement: ours,
        signatures,
    };
    {
        // As in `cosign`: under the commit lock, for the credit limit's sake.
        let _guard = fed.commit_lock.lock().await;
        app.sequencer
            .submit(Write {
                id: statement_entry_id(&terms.agreement, k)?,
                kind: EntryKind::Statement(signed.clone()),
            })
            .await?;
    }
    tracing::info!(partner = %sender.brand, agreement = %terms.agreement, period = k, "statement co-signed");
    Ok(Json(signed))
}

/// `?agreement=`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StatementsQuery {
    /// The agreement (optional when there is exactly one with the partner).
    pub agreement: Option<String>,
}

/// `GET /v1/statements/{partner}`: every co-signed statement logged with the partner, by period.
#[utoipa::path(get, path = "/v1/statements/{partner}",
    params(("partner" = String, Path), StatementsQuery),
    responses((status = 200, body = Vec<LoggedStatement>)), tag = "redemption")]
pub async fn list(
    State(app): AppState,
    headers: HeaderMap,
    Path(partner): Path<String>,
    Query(q): Query<StatementsQuery>,
) -> Result<Json<Vec<LoggedStatement>>, ApiError> {
    authorize(&app, &headers, Scope::Read)?;
    let brand: BrandId = parse_param("partner", &partner)?;
    let a = agreement_with(
        &app.store,
        &app.federation.brand,
        &brand,
        q.agreement.as_deref(),
    )?;
    let mut out = Vec::new();
    for k in a.statements.keys() {
        out.extend(logged(&app, &a, *k)?);
    }
    Ok(Json(out))
}
