//! The payee's side of a cross-brand redemption (spec/redemption.md §3): prepare (step 3),
//! status, void and commit, each a request of the redeeming brand's client that this node
//! carries to the payer by a signed peer request.
//!
//! The redeeming brand (payee, B) keeps a random preimage for the redemption (durably, before it
//! sends anything), and asks the member's brand (payer, A), by a signed peer request, to hold the
//! quoted points under the hash of that preimage and the member's spend authorisation. A checks
//! the quote against its own log (the agreement, the rate card and FX rate in force at the
//! quote's time, the amount recomputed) and logs the hold; B verifies A's receipt.
//!
//! Invariants: B keeps the preimage durably before it sends anything; it accepts only answers
//! that verify against A's pinned key and are for the entry it asked for; every step is
//! idempotent by redemption id, so a client retries any of them after a crash or a timeout.

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use ledger::entry::{EntryKind, HexHash};
use ledger::receipt::Receipt;
use ledger::types::{EntryId, LogTime};
use ledger_store::log::{receipt_from_store, Write};

pub use loyalty_wire::redemption::{Committed, PrepareBody, Prepared};

use super::redeem::*;
use crate::app::App;
use crate::federation::client::{PeerClient, PeerError, Reply};
use crate::federation::sync::RESPONSE_BYTES_MAX;
use crate::redemption_error::{RedemptionError, Refusal};

const SECRET_PREFIX: &[u8] = b"redemption-secret/";

/// What the payee keeps about a redemption it prepared (node-local, synced).
#[derive(Debug, Serialize, Deserialize)]
struct PreparedLocally {
    /// The preimage, hex; revealed only to commit.
    secret: String,
    expires_at: LogTime,
    authorisation: EntryId,
}

/// The payee's side of prepare: keeps the secret, asks the payer to hold, verifies the receipt.
pub(super) async fn prepare(
    app: &App,
    id: EntryId,
    b: PrepareBody,
) -> Result<Prepared, RedemptionError> {
    let (quote, payer) = quote_and_payer(app, &id)?;
    let now = crate::sequencer::now();
    if !quote.is_live(now) {
        return Err(RedemptionError::QuoteExpired(
            "the quote expired; ask for a new one",
        ));
    }
    let fed = &app.federation;
    // The secret and the hold's terms first, durably: a retry (after a crash or a timeout)
    // sends the identical request, and this node can still commit what it prepared.
    let key = [SECRET_PREFIX, id.as_str().as_bytes()].concat();
    // Concurrent first prepares of one redemption must agree on one secret.
    let secret_guard = fed.prepare_lock.lock().await;
    let prepared: PreparedLocally = match app
        .store
        .local_get(&key)
        .map_err(RedemptionError::internal)?
    {
        Some(v) => serde_json::from_slice(&v).map_err(RedemptionError::internal)?,
        None => {
            let mut secret = [0u8; 32];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
            let hold_ms = b
                .hold_ms
                .unwrap_or(HOLD_TTL_MAX_MS)
                .min(HOLD_TTL_MAX_MS)
                .min(quote.expires_at.get().saturating_sub(now.get()))
                .max(1);
            let p = PreparedLocally {
                secret: hex::encode(secret),
                expires_at: LogTime::new(now.get() + hold_ms).map_err(RedemptionError::internal)?,
                authorisation: b.authorisation.clone(),
            };
            app.store
                .local_put(
                    &key,
                    &serde_json::to_vec(&p).map_err(RedemptionError::internal)?,
                )
                .map_err(RedemptionError::internal)?;
            p
        }
    };
    if prepared.authorisation != b.authorisation {
        return Err(RedemptionError::IdConflict(
            "this redemption was prepared with another authorisation".into(),
        ));
    }
    drop(secret_guard);
    let secret = hex::decode(&prepared.secret).map_err(RedemptionError::internal)?;
    let condition = HexHash(Sha256::digest(&secret).into());
    let expires_at = prepared.expires_at;
    let req = PrepareRequest {
        quote: quote.clone(),
        authorisation: b.authorisation,
        condition,
        expires_at,
    };
    crate::fault::point("payee_secret_stored");
    let body = serde_json::to_vec(&req).map_err(RedemptionError::internal)?;
    let Ok(Reply {
        status,
        body: answer,
    }) = PeerClient::new(fed, &payer)
        .post_json(PEER_PREPARE_PATH, body)
        .await
    else {
        return Err(unreachable(&payer, "the redemption"));
    };
    match status {
        StatusCode::OK => {}
        s if s.is_client_error() => {
            return Err(refused(&payer, "the hold", Refusal::Invalid, &answer))
        }
        _ => return Err(refused(&payer, "the hold", Refusal::Failed, &answer)),
    }
    let receipt: Receipt =
        serde_json::from_slice(&answer).map_err(|_| bad_answer("not a receipt"))?;
    let verified = receipt
        .verify(payer.verifier.as_ref().expect("pinned"))
        .map_err(|e| bad_answer(e.to_string()))?;
    let expected = hold_of(&req);
    if verified.entry.id != id || verified.entry.kind != expected {
        return Err(bad_answer("the partner's receipt is for another entry"));
    }
    Ok(Prepared {
        redemption: id.to_string(),
        payer: quote.payer.to_string(),
        hold: receipt,
    })
}

/// Asks the payer for the status of redemption `id` (or to void it) and verifies every receipt
/// against its pinned key.
pub(super) async fn ask_payer(
    app: &App,
    id: &EntryId,
    void: bool,
) -> Result<RedemptionStatus, RedemptionError> {
    let (_, payer) = quote_and_payer(app, id)?;
    let fed = &app.federation;
    let path = if void {
        format!("{PEER_REDEMPTIONS}{id}/void")
    } else {
        format!("{PEER_REDEMPTIONS}{id}")
    };
    let client = PeerClient::new(fed, &payer);
    let (status, answer) = if void {
        match client.post_json(&path, Vec::new()).await {
            Ok(r) => (Some(r.status), r.body),
            Err(_) => (None, Vec::new()),
        }
    } else {
        match client.get(&path, RESPONSE_BYTES_MAX).await {
            Ok(b) => (Some(StatusCode::OK), b),
            // Only the payer's own 404 means it holds nothing (any other failure of the GET is
            // an unreachable payer, as before).
            Err(PeerError::Status(StatusCode::NOT_FOUND)) => {
                (Some(StatusCode::NOT_FOUND), Vec::new())
            }
            Err(_) => (None, Vec::new()),
        }
    };
    match status {
        Some(StatusCode::OK) => {}
        Some(StatusCode::NOT_FOUND) => {
            return Err(RedemptionError::UnknownRedemption(format!(
                "{} holds nothing for {id}",
                payer.brand
            )))
        }
        Some(StatusCode::CONFLICT) => {
            // The payer's refusal, told as this node's own `hold_not_open`.
            let refusal = refused(&payer, "it", Refusal::Conflict, &answer);
            return Err(RedemptionError::HoldNotOpen(refusal.to_string()));
        }
        Some(_) => return Err(refused(&payer, "it", Refusal::Failed, &answer)),
        None => return Err(unreachable(&payer, "the redemption")),
    }
    let s: RedemptionStatus =
        serde_json::from_slice(&answer).map_err(|_| bad_answer("not a status"))?;
    let key = payer.verifier.as_ref().expect("pinned");
    let bad = |m: String| bad_answer(m);
    let hold = s.hold.verify(key).map_err(|e| bad(e.to_string()))?;
    if hold.entry.id != *id {
        return Err(bad("the hold receipt is for another entry".into()));
    }
    if let Some(r) = &s.resolution {
        r.verify(key).map_err(|e| bad(e.to_string()))?;
    }
    Ok(s)
}

/// The payee's side of commit: reveals the preimage to the payer, verifies its receipts, and
/// logs the receivable. Safe to retry after a crash or a timeout.
pub(super) async fn commit(app: &App, id: EntryId) -> Result<Committed, RedemptionError> {
    let (quote, payer) = quote_and_payer(app, &id)?;
    let key = [SECRET_PREFIX, id.as_str().as_bytes()].concat();
    let prepared: PreparedLocally = serde_json::from_slice(
        &app.store
            .local_get(&key)
            .map_err(RedemptionError::internal)?
            .ok_or(RedemptionError::NotPrepared)?,
    )
    .map_err(RedemptionError::internal)?;
    let fed = &app.federation;
    let req = CommitRequest {
        preimage: ledger::entry::HexBytes(
            hex::decode(&prepared.secret).map_err(RedemptionError::internal)?,
        ),
        quote: quote.clone(),
    };
    let body = serde_json::to_vec(&req).map_err(RedemptionError::internal)?;
    let path = format!("{PEER_REDEMPTIONS}{id}/commit");
    let Ok(Reply {
        status,
        body: answer,
    }) = PeerClient::new(fed, &payer).post_json(&path, body).await
    else {
        return Err(unreachable(&payer, "the redemption"));
    };
    match status {
        StatusCode::OK => {}
        StatusCode::CONFLICT => {
            return Err(refused(&payer, "the commit", Refusal::Conflict, &answer))
        }
        _ => return Err(refused(&payer, "the commit", Refusal::Invalid, &answer)),
    }
    let bad = |m: String| bad_answer(m);
    let receipts: PayerCommit =
        serde_json::from_slice(&answer).map_err(|_| bad("not commit receipts".into()))?;
    let key = payer.verifier.as_ref().expect("pinned");
    let post = receipts.post.verify(key).map_err(|e| bad(e.to_string()))?;
    let payable = receipts
        .payable
        .verify(key)
        .map_err(|e| bad(e.to_string()))?;
    let expected = EntryKind::Obligation(ledger::entry::Obligation {
        side: ledger::entry::ObligationSide::Payable,
        quote: quote.clone(),
        counterpart: None,
    });
    if payable.entry.kind != expected
        || !matches!(&post.entry.kind, EntryKind::Post(p) if p.hold == id)
    {
        return Err(bad("the payer's receipts are for other entries".into()));
    }
    crate::fault::point("payee_commit_answered");
    let counterpart = ledger::entry::Counterpart {
        index: ledger::types::LogIndex::new(receipts.payable.index)
            .map_err(RedemptionError::internal)?,
        leaf_hash: HexHash(ledger::merkle::leaf_hash(receipts.payable.entry.as_bytes())),
        time: payable.entry.time,
    };
    let committed = app
        .sequencer
        .submit(Write {
            id: obligation_id(&id)?,
            kind: EntryKind::Obligation(ledger::entry::Obligation {
                side: ledger::entry::ObligationSide::Receivable,
                quote: quote.clone(),
                counterpart: Some(counterpart),
            }),
        })
        .await?;
    let receivable = receipt_from_store(
        &app.store,
        committed.index,
        committed.checkpoint.size,
        &committed.checkpoint.note,
    )
    .map_err(RedemptionError::internal)?;
    Ok(Committed {
        redemption: id.to_string(),
        amount_minor: quote.amount_minor,
        currency: quote.currency.to_string(),
        payer: receipts,
        receivable,
    })
}
