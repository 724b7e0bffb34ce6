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

use axum::http::StatusCode;
use sha2::{Digest, Sha256};

use ledger::entry::{Counterpart, EntryKind, HexHash, ObligationRefund, ObligationSide};
use ledger::receipt::Receipt;
use ledger::state::{record_prefix, AgreementState, ObligationState};
use ledger::types::{BrandId, EntryId, LogIndex};
use ledger_store::log::{receipt_from_store, Write};

pub use loyalty_wire::redemption::{RefundRequest, Refunded};

use super::redeem::{bad_answer, quote_and_payer, refused, unreachable};
use crate::app::App;
use crate::federation::client::{PeerClient, Reply};
use crate::federation::Partner;
use crate::redemption_error::{RedemptionError, Refusal};
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
) -> Result<EntryId, RedemptionError> {
    let h = Sha256::digest(format!("{other}\n{redemption}\n{refund}"));
    format!("sys.rfd.{}", &hex::encode(h)[..32])
        .parse()
        .map_err(RedemptionError::internal)
}

/// The node-local key of the refund the payee is working on for `payer`'s redemption `id`.
fn pending_key(payer: &BrandId, id: &EntryId) -> Vec<u8> {
    [PENDING_PREFIX, format!("{payer}/{id}").as_bytes()].concat()
}

/// A refund id a payee's app may choose: not reserved (`sys.`), and at most
/// [`REFUND_ID_LEN_MAX`] characters.
pub fn check_refund_id(id: &EntryId) -> Result<(), RedemptionError> {
    if crate::app::is_reserved_id(id) {
        return Err(RedemptionError::ReservedId);
    }
    if id.as_str().len() > REFUND_ID_LEN_MAX {
        return Err(RedemptionError::RefundIdTooLong {
            max: REFUND_ID_LEN_MAX,
        });
    }
    Ok(())
}

pub(super) fn receipt_at(app: &App, index: u64) -> Result<Receipt, RedemptionError> {
    let cp = app.shared.checkpoint();
    receipt_from_store(&app.store, index, cp.size, &cp.note).map_err(RedemptionError::internal)
}

/// The payer's side of a refund (a signed peer request of `sender`, the payee): logs the
/// payable side of the refund (the points go back to the member); its receipt.
pub(super) async fn payer_refund(
    app: &App,
    sender: &Partner,
    id: EntryId,
    req: RefundRequest,
) -> Result<Receipt, RedemptionError> {
    let fed = &app.federation;
    check_refund_id(&req.refund)?;
    // Refunds of this node are serialised: the cumulative rule reads the refunds logged before.
    let _guard = fed.payer_refund_lock.lock().await;
    let o: ObligationState = store_record(
        &app.store,
        record_prefix::OBLIGATION,
        &format!("payable/{}/{id}", fed.brand),
    )?
    .filter(|o: &ObligationState| o.quote.payee == sender.brand)
    .ok_or_else(|| {
        RedemptionError::UnknownRedemption(format!(
            "no committed redemption {id} for {}",
            sender.brand
        ))
    })?;
    if let Some(r) = o.refunds.iter().find(|r| r.refund == req.refund) {
        if r.points != req.points.get() {
            return Err(RedemptionError::IdConflict(format!(
                "refund {} was logged with {} points",
                req.refund, r.points
            )));
        }
        return receipt_at(app, r.index.get());
    }
    let total = o.quote.points.get();
    let refunded = o.refunded_points();
    if req.points.get() > total - refunded {
        return Err(RedemptionError::RefundExceedsObligation(format!(
            "{} of {total} points are refunded; {} more cannot be",
            refunded,
            req.points.get()
        )));
    }
    let a: AgreementState = store_record(
        &app.store,
        record_prefix::AGREEMENT,
        o.quote.agreement.as_str(),
    )?
    .ok_or_else(|| RedemptionError::internal("an obligation without its agreement"))?;
    let amount = ledger::value::refund_minor(
        o.quote.amount_minor,
        total,
        refunded,
        req.points.get(),
        a.agreement.terms.rounding,
    )
    .map_err(RedemptionError::internal)?;
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
    receipt_from_store(
        &app.store,
        committed.index,
        committed.checkpoint.size,
        &committed.checkpoint.note,
    )
    .map_err(RedemptionError::internal)
}

/// The payee's side of a refund: refunds `points` of committed redemption `id` on both sides.
/// Safe to retry with the same refund id after a crash or a timeout.
pub(super) async fn refund(
    app: &App,
    id: EntryId,
    req: RefundRequest,
) -> Result<Refunded, RedemptionError> {
    check_refund_id(&req.refund)?;
    let fed = &app.federation;
    // Quotes are logged only by the redeeming brand, so a quote here is this node's.
    let (_, payer) = quote_and_payer(app, &id)?;
    let _guard = fed.refund_lock.lock().await;
    let pending_key = pending_key(&payer.brand, &id);
    // A refund of this redemption that was started and not finished goes first, so both logs
    // hold the refunds in one order.
    if let Some(v) = app
        .store
        .local_get(&pending_key)
        .map_err(RedemptionError::internal)?
    {
        let pending: RefundRequest =
            serde_json::from_slice(&v).map_err(RedemptionError::internal)?;
        if pending.refund != req.refund {
            match refund_once(app, &payer, &id, &pending).await {
                Ok(_) => {}
                // The payer refused it for good, and its record is gone: go on with this one.
                Err(e @ RedemptionError::PartnerRefused { .. }) => {
                    tracing::warn!(redemption = %id, refund = %pending.refund, detail = %e, "pending refund refused by the payer; dropped");
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
    .ok_or_else(|| RedemptionError::NotCommitted(id.clone()))?;
    match rec.refunds.iter().find(|r| r.refund == req.refund) {
        Some(r) if r.points != req.points.get() => {
            return Err(RedemptionError::IdConflict(format!(
                "refund {} was logged with {} points",
                req.refund, r.points
            )))
        }
        Some(_) => {}
        None => {
            let left = rec.quote.points.get() - rec.refunded_points();
            if req.points.get() > left {
                return Err(RedemptionError::RefundExceedsObligation(format!(
                    "only {left} of the redemption's {} points are left to refund",
                    rec.quote.points
                )));
            }
            app.store
                .local_write(&[(
                    pending_key.clone(),
                    Some(serde_json::to_vec(&req).map_err(RedemptionError::internal)?),
                )])
                .map_err(RedemptionError::internal)?;
        }
    }
    refund_once(app, &payer, &id, &req).await
}

/// Asks the payer for its side of refund `req` (idempotent), verifies it, logs this brand's
/// side (idempotent), and clears the pending record.
async fn refund_once(
    app: &App,
    payer: &Partner,
    id: &EntryId,
    req: &RefundRequest,
) -> Result<Refunded, RedemptionError> {
    let fed = &app.federation;
    let body = serde_json::to_vec(req).map_err(RedemptionError::internal)?;
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
            .map_err(RedemptionError::internal)?;
    }
    match status {
        StatusCode::OK => {}
        s if s == StatusCode::CONFLICT || s == StatusCode::NOT_FOUND => {
            return Err(refused(payer, "the refund", Refusal::Conflict, &answer))
        }
        _ => return Err(refused(payer, "the refund", Refusal::Invalid, &answer)),
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
        index: LogIndex::new(receipt.index).map_err(RedemptionError::internal)?,
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
        .map_err(RedemptionError::internal)?;
    let rec: ObligationState = store_record(
        &app.store,
        record_prefix::OBLIGATION,
        &format!("receivable/{}/{id}", payer.brand),
    )?
    .ok_or_else(|| RedemptionError::internal("a refund without its obligation"))?;
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
        .map_err(RedemptionError::internal)?,
    })
}
