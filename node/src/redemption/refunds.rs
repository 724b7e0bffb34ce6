//! Refunds of committed cross-brand redemptions (spec/redemption.md §3 step 7).
//!
//! The redeeming brand (payee, B) decides a refund of (part of) a committed
//! redemption and asks the member's brand (payer, A), by a signed peer request, to log its side:
//! A logs `obligation_refund {side: payable}`, which returns the points to the member and takes
//! the refund's share off what A owes B (the cumulative rule of `ledger::value::refund_minor`),
//! and answers with the receipt. B verifies it against A's pinned key and logs
//! `obligation_refund {side: receivable}` naming A's entry. B keeps the refund it is working on
//! durably before it asks, and finishes it before it starts another of the same redemption, so
//! both logs hold the refunds in one order (the cumulative rule depends on it).
//!
//! Invariants: every step is idempotent by refund id; nothing the payer sends is logged before
//! its signature verifies against the pinned key.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Json;
use sha2::{Digest, Sha256};

use ledger::entry::{Counterpart, EntryKind, HexHash, ObligationRefund, ObligationSide};
use ledger::log::{receipt_from_store, Write};
use ledger::receipt::Receipt;
use ledger::state::{record_prefix, AgreementState, ObligationState};
use ledger::types::{BrandId, EntryId, LogIndex};

pub use loyalty_wire::redemption::{RefundRequest, Refunded};
use loyalty_wire::ErrorCode;

use super::redeem::{bad_answer, quote_and_payer, refused, unprocessable, unreachable};
use crate::app::{authorize, check_id, parse_param, ApiJson, App, AppState};
use crate::federation::client::{PeerClient, Reply};
use crate::federation::{peer, Partner};
use crate::keys::Scope;
use crate::problem::ApiError;
use crate::views::store_record;

/// Where the payee keeps the refund it is working on, per payer and redemption (node-local).
const PENDING_PREFIX: &[u8] = b"refund-pending/";

/// The peer route of the payer for refunds: `/v1/peer/redemptions/{id}/refunds`.
const PEER_REDEMPTIONS: &str = "/v1/peer/redemptions/";

/// The longest refund id.
pub const REFUND_ID_LEN_MAX: usize = 96;

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
            ErrorCode::RefundIdTooLong,
            format!("a refund id has at most {REFUND_ID_LEN_MAX} characters"),
        ));
    }
    Ok(())
}

pub(super) fn receipt_at(app: &App, index: u64) -> Result<Receipt, ApiError> {
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
            ErrorCode::UnknownRedemption,
            format!("no committed redemption {id} for {}", sender.brand),
        )
    })?;
    if let Some(r) = o.refunds.iter().find(|r| r.refund == req.refund) {
        if r.points != req.points.get() {
            return Err(conflict(
                ErrorCode::IdConflict,
                format!("refund {} was logged with {} points", req.refund, r.points),
            ));
        }
        return Ok(Json(receipt_at(&app, r.index.get())?));
    }
    let total = o.quote.points.get();
    let refunded = o.refunded_points();
    if req.points.get() > total - refunded {
        return Err(conflict(
            ErrorCode::RefundExceedsObligation,
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
                Err(e) if e.code == ErrorCode::PartnerRefused => {
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
            ErrorCode::NotCommitted,
            format!("redemption {id} is not committed; void it instead"),
        )
    })?;
    match rec.refunds.iter().find(|r| r.refund == req.refund) {
        Some(r) if r.points != req.points.get() => {
            return Err(conflict(
                ErrorCode::IdConflict,
                format!("refund {} was logged with {} points", req.refund, r.points),
            ))
        }
        Some(_) => {}
        None => {
            let left = rec.quote.points.get() - rec.refunded_points();
            if req.points.get() > left {
                return Err(conflict(
                    ErrorCode::RefundExceedsObligation,
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

pub(super) fn conflict(code: ErrorCode, detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, detail)
}
