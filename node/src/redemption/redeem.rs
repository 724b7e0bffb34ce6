//! The prepare step of a cross-brand redemption (spec/redemption.md §3, step 3).
//!
//! The redeeming brand (payee, B) keeps a random preimage for the redemption (durably, before it
//! sends anything), and asks the member's brand (payer, A), by a signed peer request, to hold the
//! quoted points under the hash of that preimage and the member's spend authorisation. A checks
//! the quote against its own log (the agreement, the rate card and FX rate in force at the
//! quote's time, the amount recomputed) and logs the hold; B verifies A's receipt.
//!
//! Invariants: A holds points only for a pinned, unfrozen partner that is the quote's payee,
//! under an agreement A logged, with the member's unused authorisation for that partner (the
//! state machine enforces the authorisation), and at A's own valuation; every step is
//! idempotent by redemption id.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Json;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use ledger::entry::{EntryKind, HexHash, Hold};
use ledger::log::{receipt_from_store, Write, WriteError};
use ledger::quote::{make_quote, Ask, Pricing, Quote};
use ledger::receipt::Receipt;
use ledger::state::{record_prefix, AgreementState, QuoteState, StateError};
use ledger::types::{EntryId, LogTime};

use super::payer;
use super::quotes::policies_of;
use crate::app::{authorize, parse_param, ApiJson, App, AppState};
use crate::federation::client::{PeerClient, PeerError, Reply};
use crate::federation::sync::RESPONSE_BYTES_MAX;
use crate::federation::{peer, Partner};
use crate::keys::Scope;
use crate::problem::ApiError;
use crate::reads::store_record;
use crate::sequencer::SubmitError;

/// The peer route of the payer.
pub const PEER_PREPARE_PATH: &str = "/v1/peer/redemptions/prepare";
/// How long a hold lives, at most.
pub const HOLD_TTL_MAX_MS: u64 = 60 * 60 * 1000;
const SECRET_PREFIX: &[u8] = b"redemption-secret/";

/// What the payee asks the payer to hold.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrepareRequest {
    #[schema(value_type = Object)]
    pub quote: Quote,
    /// The member's spend authorisation for the payee.
    #[schema(value_type = String)]
    pub authorisation: EntryId,
    /// SHA-256 of the payee's secret preimage.
    #[schema(value_type = String)]
    pub condition: HexHash,
    /// Log time (of the payer) from which the hold can no longer be posted.
    #[schema(value_type = u64)]
    pub expires_at: LogTime,
}

/// What the payee keeps about a redemption it prepared (node-local, synced).
#[derive(Debug, Serialize, Deserialize)]
struct PreparedLocally {
    /// The preimage, hex; revealed only to commit.
    secret: String,
    expires_at: LogTime,
    authorisation: EntryId,
}

/// `POST /v1/redemptions/{redemption}/prepare` at the payee.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrepareBody {
    /// The member's spend authorisation at the payer for this brand.
    #[schema(value_type = String)]
    pub authorisation: EntryId,
    /// How long the payer holds the points (default and most: until the quote expires, at
    /// most an hour).
    #[serde(default)]
    pub hold_ms: Option<u64>,
}

/// The payer's hold, as the payee verified it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Prepared {
    pub redemption: String,
    pub payer: String,
    /// The receipt of the hold in the payer's log, verified against its pinned key.
    #[schema(value_type = Object)]
    pub hold: Receipt,
}

/// The logged quote of a redemption, and its payer, which must be a pinned partner.
pub(super) fn quote_and_payer(app: &App, id: &EntryId) -> Result<(Quote, Arc<Partner>), ApiError> {
    let q: QuoteState = store_record(&app.store, record_prefix::QUOTE, id.as_str())?
        .ok_or_else(|| ApiError::not_found("unknown_quote", format!("no quote {id}")))?;
    let payer = app
        .federation
        .partner(&q.quote.payer)
        .filter(|p| p.verifier.is_some())
        .ok_or_else(|| {
            unprocessable(
                "unknown_partner",
                format!("{} is not pinned", q.quote.payer),
            )
        })?;
    Ok((q.quote, payer))
}

/// The payer answered something that does not verify or is not what was asked.
pub(super) fn bad_answer(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "partner_bad_answer", detail)
}

/// The status of `partner_refused` for a partner's answer `partner` (spec/api.md, "Error
/// codes"): `409` for its 404 and 409, `422` for another 4xx, `502` otherwise.
pub(super) fn refusal_status(partner: StatusCode) -> StatusCode {
    match partner {
        StatusCode::NOT_FOUND | StatusCode::CONFLICT => StatusCode::CONFLICT,
        s if s.is_client_error() => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// A partner's refusal of `what`, passed on with its code, as `status`.
pub(super) fn refused(payer: &Partner, what: &str, status: StatusCode, answer: &[u8]) -> ApiError {
    let v: serde_json::Value = serde_json::from_slice(answer).unwrap_or_default();
    let partner_code = v["code"].as_str().unwrap_or("partner_refused");
    ApiError {
        partner_code: Some(partner_code.to_owned()),
        ..ApiError::new(
            status,
            "partner_refused",
            format!(
                "{} refused {what}: {partner_code}: {}",
                payer.brand,
                v["detail"].as_str().unwrap_or("")
            ),
        )
    }
}

/// A partner could not be reached about `what`.
pub(super) fn unreachable(partner: &Partner, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "partner_unavailable",
        format!(
            "{} could not be reached; retry {what} with the same request (every step is idempotent)",
            partner.brand
        ),
    )
}

pub(super) fn unprocessable(code: &'static str, detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
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
    let (quote, payer) = quote_and_payer(&app, &id)?;
    let now = crate::sequencer::now();
    if !quote.is_live(now) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "quote_expired",
            "the quote expired; ask for a new one",
        ));
    }
    let fed = &app.federation;
    // The secret and the hold's terms first, durably: a retry (after a crash or a timeout)
    // sends the identical request, and this node can still commit what it prepared.
    let key = [SECRET_PREFIX, id.as_str().as_bytes()].concat();
    // Concurrent first prepares of one redemption must agree on one secret.
    let secret_guard = fed.prepare_lock.lock().await;
    let prepared: PreparedLocally = match app.store.local_get(&key).map_err(ApiError::internal)? {
        Some(v) => serde_json::from_slice(&v).map_err(ApiError::internal)?,
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
                expires_at: LogTime::new(now.get() + hold_ms).map_err(ApiError::internal)?,
                authorisation: b.authorisation.clone(),
            };
            app.store
                .local_put(&key, &serde_json::to_vec(&p).map_err(ApiError::internal)?)
                .map_err(ApiError::internal)?;
            p
        }
    };
    if prepared.authorisation != b.authorisation {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "id_conflict",
            "this redemption was prepared with another authorisation",
        ));
    }
    drop(secret_guard);
    let secret = hex::decode(&prepared.secret).map_err(ApiError::internal)?;
    let condition = HexHash(Sha256::digest(&secret).into());
    let expires_at = prepared.expires_at;
    let req = PrepareRequest {
        quote: quote.clone(),
        authorisation: b.authorisation,
        condition,
        expires_at,
    };
    crate::fault::point("payee_secret_stored");
    let body = serde_json::to_vec(&req).map_err(ApiError::internal)?;
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
            return Err(refused(
                &payer,
                "the hold",
                StatusCode::UNPROCESSABLE_ENTITY,
                &answer,
            ))
        }
        _ => {
            return Err(refused(
                &payer,
                "the hold",
                StatusCode::BAD_GATEWAY,
                &answer,
            ))
        }
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
    Ok(Json(Prepared {
        redemption: id.to_string(),
        payer: quote.payer.to_string(),
        hold: receipt,
    }))
}

fn hold_of(req: &PrepareRequest) -> EntryKind {
    EntryKind::Hold(Hold {
        member: req.quote.member.clone(),
        points: req.quote.points,
        expires_at: req.expires_at,
        payee: Some(req.quote.payee.clone()),
        condition: Some(req.condition),
        authorisation: Some(req.authorisation.clone()),
    })
}

/// The payer's side (signed peer request): checks the quote against its own log and holds.
pub async fn peer_prepare(
    State(app): AppState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Receipt>, ApiError> {
    let fed = &app.federation;
    let (sender, req): (_, PrepareRequest) =
        peer::verify_json(fed, &method, &uri, &headers, &body, "prepare request")?;
    let q = &req.quote;
    check_redemption_id(&q.redemption)?;
    if q.payee != sender.brand || q.payer != fed.brand {
        return Err(unprocessable(
            "quote_wrong_parties",
            "the quote must be the sender's, for points of this brand",
        ));
    }
    // A retry of a logged hold is answered from the log (idempotent), whatever time it is now.
    let logged: Option<ledger::state::IdRecord> =
        store_record(&app.store, record_prefix::ID, q.redemption.as_str())?;
    if logged.is_none() {
        // Payer rules (spec/redemption.md §3.1): the payee's times, bounded by this clock.
        let now = crate::sequencer::now();
        payer::check_prepare_times(q, req.expires_at, now, fed.settings.peer_clock_skew_ms)?;
        check_valuation(&app, q, true)?;
    }
    {
        // The quote's digest is kept with the hold, so that only this quote can commit it; a
        // retry of a logged hold must carry the same quote (a hold logged before digests were
        // kept gets none now: its commit is re-priced field by field).
        let _guard = fed.payer_prepare_lock.lock().await;
        if logged.is_none() {
            payer::keep_quote_digest(&app.store, q)?;
        } else if payer::is_prepared_quote(&app.store, q)? == Some(false) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "id_conflict",
                "this redemption was prepared with another quote",
            ));
        }
    }
    let committed = app
        .sequencer
        .submit(Write {
            id: q.redemption.clone(),
            kind: hold_of(&req),
        })
        .await?;
    crate::fault::point("payer_hold_logged");
    let receipt = receipt_from_store(
        &app.store,
        committed.index,
        committed.checkpoint.size,
        &committed.checkpoint.note,
    )
    .map_err(ApiError::internal)?;
    tracing::info!(redemption = %q.redemption, partner = %sender.brand, points = q.points.get(),
        "points held for a partner");
    Ok(Json(receipt))
}

/// The payer recomputes the quote from its own log: same agreement, the rate card and FX rate
/// in force at the quote's time, the same amount.
fn check_valuation(app: &App, q: &Quote, require_live: bool) -> Result<(), ApiError> {
    let agreement: AgreementState =
        store_record(&app.store, record_prefix::AGREEMENT, q.agreement.as_str())?.ok_or_else(
            || {
                unprocessable(
                    "unknown_agreement",
                    format!("no agreement {} here", q.agreement),
                )
            },
        )?;
    let terms = &agreement.agreement.terms;
    let policies = policies_of(app, &app.federation.brand)?;
    let (card_index, card) = policies.rate_card_at(None, q.quoted_at).ok_or_else(|| {
        unprocessable(
            "quote_mismatch",
            "no rate card in force at the quote's time",
        )
    })?;
    if card_index.get() != q.rate_card_index {
        return Err(unprocessable(
            "quote_mismatch",
            format!(
                "the quote used rate card {} but {} was in force",
                q.rate_card_index,
                card_index.get()
            ),
        ));
    }
    let fx = match (card.currency == terms.settlement_currency, q.fx_rate_index) {
        (true, None) => None,
        (false, Some(i)) => {
            // The FX source's rate: this log's, or the verified mirror of the payee's.
            let source = policies_of(app, &terms.fx_source)
                .map_err(|_| unprocessable("quote_mismatch", "FX source not mirrored"))?;
            let (fi, r) = source
                .fx_rate_at(card.currency, terms.settlement_currency, q.quoted_at)
                .ok_or_else(|| unprocessable("quote_mismatch", "no FX rate in force"))?;
            if fi.get() != i {
                return Err(unprocessable(
                    "quote_mismatch",
                    "another FX rate was in force",
                ));
            }
            Some((i, r.rate))
        }
        _ => {
            return Err(unprocessable(
                "quote_mismatch",
                "FX use does not fit the currencies",
            ))
        }
    };
    let pricing = Pricing {
        rate_card_index: card_index.get(),
        point_value: card.point_value,
        base: card.currency,
        fx,
    };
    let mine = make_quote(
        terms,
        q.redemption.clone(),
        q.member.clone(),
        &q.payer,
        &q.payee,
        Ask::Points(q.points),
        &pricing,
        q.quoted_at,
        q.expires_at
            .get()
            .checked_sub(q.quoted_at.get())
            .and_then(|l| ledger::types::DurationMs::new(l).ok())
            .ok_or_else(|| unprocessable("quote_mismatch", "bad quote lifetime"))?,
    )
    .map_err(|e| unprocessable(e.code(), e.to_string()))?;
    if &mine != q {
        return Err(unprocessable(
            "quote_mismatch",
            "the quote does not match this brand's valuation",
        ));
    }
    if require_live && !q.is_live(crate::sequencer::now()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "quote_expired",
            "the quote expired",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Status and void (spec/redemption.md §3, steps 5 and recovery): decided by the payer's log.
// ---------------------------------------------------------------------------------------

/// A redemption as the payer's log shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedemptionStatus {
    pub redemption: String,
    /// `open`, `posted` or `voided`, by the payer's log (an open hold past `expires_at` is
    /// released by the payer with a `void` at its own log time).
    pub status: String,
    pub points: u64,
    /// The payer's log time from which the hold can no longer be posted.
    pub expires_at: u64,
    /// Receipt of the hold.
    #[schema(value_type = Object)]
    pub hold: Receipt,
    /// Receipt of the entry that posted or voided it.
    #[schema(value_type = Object)]
    pub resolution: Option<Receipt>,
}

/// The peer routes' prefix at the payer: `GET {prefix}{id}` and `POST {prefix}{id}/void`.
pub const PEER_REDEMPTIONS: &str = "/v1/peer/redemptions/";

fn status_at_payer(
    app: &App,
    id: &EntryId,
    payee: &ledger::types::BrandId,
) -> Result<RedemptionStatus, ApiError> {
    use ledger::state::{HoldState, HoldStatus};
    let h: HoldState = store_record(&app.store, record_prefix::HOLD, id.as_str())?
        .filter(|h: &HoldState| h.payee.as_ref() == Some(payee))
        .ok_or_else(|| {
            ApiError::not_found("unknown_redemption", format!("no hold {id} for {payee}"))
        })?;
    let cp = app.shared.checkpoint();
    let receipt =
        |i: u64| receipt_from_store(&app.store, i, cp.size, &cp.note).map_err(ApiError::internal);
    let (status, resolved) = match h.status {
        HoldStatus::Open => ("open", None),
        HoldStatus::Posted(i) => ("posted", Some(i.get())),
        HoldStatus::Voided(i) => ("voided", Some(i.get())),
    };
    Ok(RedemptionStatus {
        redemption: id.to_string(),
        status: status.into(),
        points: h.points,
        expires_at: h.expires_at.get(),
        hold: receipt(h.index.get())?,
        resolution: resolved.map(receipt).transpose()?,
    })
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
    Ok(Json(status_at_payer(&app, &id, &sender.brand)?))
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
    check_redemption_id(&id)?;
    let before = status_at_payer(&app, &id, &sender.brand)?;
    if before.status == "open" {
        let void_id = derived_id("void", &id)?;
        match app
            .sequencer
            .submit(Write {
                id: void_id,
                kind: EntryKind::Void(ledger::entry::Void { hold: id.clone() }),
            })
            .await
        {
            Ok(_) => {}
            // Released meanwhile by the payer's housekeeping: the status says so.
            Err(SubmitError::Refused(WriteError::State(StateError::HoldNotOpen { .. }))) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let after = status_at_payer(&app, &id, &sender.brand)?;
    if after.status == "posted" {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "hold_not_open",
            "the redemption was committed; refund it instead",
        ));
    }
    Ok(Json(after))
}

/// Asks the payer and verifies every receipt against its pinned key.
async fn ask_payer(app: &App, id: &EntryId, void: bool) -> Result<RedemptionStatus, ApiError> {
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
            return Err(ApiError::not_found(
                "unknown_redemption",
                format!("{} holds nothing for {id}", payer.brand),
            ))
        }
        Some(StatusCode::CONFLICT) => {
            let mut e = refused(&payer, "it", StatusCode::CONFLICT, &answer);
            e.code = "hold_not_open";
            e.partner_code = None;
            return Err(e);
        }
        Some(_) => return Err(refused(&payer, "it", StatusCode::BAD_GATEWAY, &answer)),
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

/// `GET /v1/redemptions/{redemption}/status` at the payee: the payer's answer, verified.
#[utoipa::path(get, path = "/v1/redemptions/{redemption}/status",
    params(("redemption" = String, Path)), responses((status = 200, body = RedemptionStatus)),
    tag = "redemption")]
pub async fn status(
    State(app): AppState,
    headers: HeaderMap,
    Path(redemption): Path<String>,
) -> Result<Json<RedemptionStatus>, ApiError> {
    authorize(&app, &headers, Scope::Read)?;
    let id: EntryId = parse_param("redemption", &redemption)?;
    Ok(Json(ask_payer(&app, &id, false).await?))
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
    Ok(Json(ask_payer(&app, &id, true).await?))
}

// ---------------------------------------------------------------------------------------
// Commit (spec/redemption.md §3, step 4).
// ---------------------------------------------------------------------------------------

/// What the payee sends the payer to commit: the preimage and the quote it prepared with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitRequest {
    pub preimage: ledger::entry::HexBytes,
    pub quote: Quote,
}

/// The payer's receipts for a commit: the post of the hold and the payable obligation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayerCommit {
    #[schema(value_type = Object)]
    pub post: Receipt,
    #[schema(value_type = Object)]
    pub payable: Receipt,
}

/// A committed redemption as the payee reports it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Committed {
    pub redemption: String,
    /// What the payer owes this brand, in minor units of `currency`.
    pub amount_minor: u64,
    pub currency: String,
    /// The payer's receipts (verified against its pinned key).
    pub payer: PayerCommit,
    /// The receipt of this brand's `receivable` obligation.
    #[schema(value_type = Object)]
    pub receivable: Receipt,
}

fn obligation_id(redemption: &EntryId) -> Result<EntryId, ApiError> {
    derived_id("obl", redemption)
}

/// The longest redemption id: the flow's own entries take ids derived from it
/// ([`derived_id`]), which must stay within the entry id limit.
pub const REDEMPTION_ID_LEN_MAX: usize = 96;

/// The id of one of the flow's own entries for redemption `id`: `sys.<what>.<id>`, under the
/// prefix client writes may not use, so no client id can take it.
pub fn derived_id(what: &str, id: &EntryId) -> Result<EntryId, ApiError> {
    format!("sys.{what}.{id}")
        .parse()
        .map_err(ApiError::internal)
}

/// A redemption id a client or partner may choose: not reserved (`sys.`), and short enough
/// for the ids derived from it.
pub fn check_redemption_id(id: &EntryId) -> Result<(), ApiError> {
    crate::app::check_id(id)?;
    if id.as_str().len() > REDEMPTION_ID_LEN_MAX {
        return Err(unprocessable(
            "redemption_id_too_long",
            format!("a redemption id has at most {REDEMPTION_ID_LEN_MAX} characters"),
        ));
    }
    Ok(())
}

/// `POST /v1/peer/redemptions/{id}/commit` at the payer (signed, from the payee): posts the hold
/// with the preimage and logs the payable obligation in the same batch.
pub async fn peer_commit(
    State(app): AppState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<PayerCommit>, ApiError> {
    use ledger::state::{HoldState, HoldStatus, ObligationState};
    let fed = &app.federation;
    let (sender, req): (_, CommitRequest) =
        peer::verify_json(fed, &method, &uri, &headers, &body, "commit request")?;
    let id: EntryId = parse_param("redemption", &id)?;
    check_redemption_id(&id)?;
    let q = &req.quote;
    // One commit at a time: a duplicate waits and then finds the hold posted, and a credit-limit
    // check holds until its payable is logged.
    let _guard = fed.commit_lock.lock().await;
    let h: HoldState = store_record(&app.store, record_prefix::HOLD, id.as_str())?
        .filter(|h: &HoldState| h.payee.as_ref() == Some(&sender.brand))
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_redemption",
                format!("no hold {id} for {}", sender.brand),
            )
        })?;
    if q.redemption != id
        || q.payee != sender.brand
        || q.payer != fed.brand
        || q.points.get() != h.points
        || q.member != h.member
    {
        return Err(unprocessable(
            "quote_mismatch",
            "the quote is not the one this hold was made for",
        ));
    }
    // Exactly the prepared quote (payer rule 4); a hold prepared before digests were kept
    // falls back to the checks above and the re-pricing below.
    if payer::is_prepared_quote(&app.store, q)? == Some(false) {
        return Err(unprocessable(
            "quote_mismatch",
            "the quote is not the one this hold was prepared with",
        ));
    }
    let obl_id = obligation_id(&id)?;
    let receipts = |post_index: u64| -> Result<PayerCommit, ApiError> {
        let o: ObligationState = store_record(
            &app.store,
            record_prefix::OBLIGATION,
            &format!("payable/{}/{id}", fed.brand),
        )?
        .ok_or_else(|| ApiError::internal("a posted partner hold without its payable"))?;
        let cp = app.shared.checkpoint();
        let r = |i: u64| {
            receipt_from_store(&app.store, i, cp.size, &cp.note).map_err(ApiError::internal)
        };
        Ok(PayerCommit {
            post: r(post_index)?,
            payable: r(o.index.get())?,
        })
    };
    match h.status {
        HoldStatus::Posted(i) => return Ok(Json(receipts(i.get())?)),
        HoldStatus::Voided(_) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "hold_not_open",
                "the hold was voided or released; nothing was committed",
            ))
        }
        HoldStatus::Open => {}
    }
    if h.condition != Some(HexHash(Sha256::digest(&req.preimage.0).into())) {
        return Err(unprocessable(
            "condition_not_met",
            "the preimage does not match the hold's condition",
        ));
    }
    // Re-priced from this log (not the quote's liveness: the hold's expiry, judged by this
    // log's time when the post is applied, governs now).
    check_valuation(&app, q, false)?;
    // The credit limit is checked under the lock taken above, so the payable cannot be refused
    // after the post in the same batch was appended.
    let agreement: AgreementState =
        store_record(&app.store, record_prefix::AGREEMENT, q.agreement.as_str())?
            .ok_or_else(|| unprocessable("unknown_agreement", "no such agreement here"))?;
    // The state machine's own total, published with the last commit; payables and refunds
    // are logged only under this lock, so no other one is in flight.
    let open = app
        .shared
        .open_payable(&agreement.agreement.terms.agreement);
    let after = open.saturating_add(i64::try_from(q.amount_minor).unwrap_or(i64::MAX));
    if after > 0 && after as u64 > agreement.agreement.terms.credit_limit_minor {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "credit_limit_exceeded",
            format!(
                "{open} + {} exceeds the agreement's credit limit of {}",
                q.amount_minor, agreement.agreement.terms.credit_limit_minor
            ),
        ));
    }
    crate::fault::delay("payer_commit_checked").await;
    let answers = app
        .sequencer
        .submit_together(vec![
            Write {
                id: derived_id("post", &id)?,
                kind: EntryKind::Post(ledger::entry::Post {
                    hold: id.clone(),
                    preimage: Some(req.preimage.clone()),
                }),
            },
            Write {
                id: obl_id,
                kind: EntryKind::Obligation(ledger::entry::Obligation {
                    side: ledger::entry::ObligationSide::Payable,
                    quote: q.clone(),
                    counterpart: None,
                }),
            },
        ])
        .await?;
    crate::fault::point("payer_commit_logged");
    let mut answers = answers.into_iter();
    let post = answers
        .next()
        .ok_or_else(|| ApiError::internal("no answer"))??;
    if let Some(Err(e)) = answers.next() {
        // Cannot happen after the checks above; if it does, the operator must know at once.
        let e = ApiError::from(e);
        tracing::error!(redemption = %id, error = %e.detail, "posted without its payable");
        return Err(ApiError::internal("the payable obligation was refused"));
    }
    tracing::info!(redemption = %id, partner = %sender.brand, amount = q.amount_minor, "committed");
    Ok(Json(receipts(post.index)?))
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
    let (quote, payer) = quote_and_payer(&app, &id)?;
    let key = [SECRET_PREFIX, id.as_str().as_bytes()].concat();
    let prepared: PreparedLocally = serde_json::from_slice(
        &app.store
            .local_get(&key)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "not_prepared", "prepare first"))?,
    )
    .map_err(ApiError::internal)?;
    let fed = &app.federation;
    let req = CommitRequest {
        preimage: ledger::entry::HexBytes(
            hex::decode(&prepared.secret).map_err(ApiError::internal)?,
        ),
        quote: quote.clone(),
    };
    let body = serde_json::to_vec(&req).map_err(ApiError::internal)?;
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
            return Err(refused(&payer, "the commit", StatusCode::CONFLICT, &answer))
        }
        _ => {
            return Err(refused(
                &payer,
                "the commit",
                StatusCode::UNPROCESSABLE_ENTITY,
                &answer,
            ))
        }
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
        index: ledger::types::LogIndex::new(receipts.payable.index).map_err(ApiError::internal)?,
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
    .map_err(ApiError::internal)?;
    Ok(Json(Committed {
        redemption: id.to_string(),
        amount_minor: quote.amount_minor,
        currency: quote.currency.to_string(),
        payer: receipts,
        receivable,
    }))
}
