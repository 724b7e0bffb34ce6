//! Co-signed settlement statements (spec/redemption.md §4.3).
//!
//! For a settlement period of an agreement that has ended, a node reconciles its
//! own log against its verified mirror of the partner; only when every line matches does it sign
//! the statement and send it, as a signed peer request, to the partner, which does the same from
//! its side, signs the identical statement and logs it; the initiator then logs the same
//! co-signed entry. Each log's state machine checks the statement against its own lines again.
//!
//! Invariants: every step is idempotent by agreement and period; nothing a partner sends is
//! logged before its signature verifies against the pinned key and the key the agreement names.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Json;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use ledger::entry::{Entry, EntryKind};
use ledger::log::Write;
use ledger::state::{record_prefix, AgreementState};
use ledger::statement::{self, period_bounds, SignedStatement};
use ledger::types::{BrandId, EntryId};

pub use loyalty_wire::redemption::LoggedStatement;
use loyalty_wire::ErrorCode;

use super::reconcile::{agreement_with, mirror_of, report};
use super::redeem::{bad_answer, refusal_status, refused, unprocessable, unreachable};
use super::refunds::{conflict, receipt_at};
use crate::app::{authorize, parse_param, scope, ApiJson, App, AppState, Authorized, Param};
use crate::federation::client::{PeerClient, Reply};
use crate::federation::peer;
use crate::keys::Scope;
use crate::problem::ApiError;
use crate::views::store_record;

/// The peer route for statements.
pub const PEER_STATEMENTS_PATH: &str = "/v1/peer/statements";

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
            ErrorCode::StatementDisagreed,
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
            ApiError::not_found(
                ErrorCode::UnknownPartner,
                format!("no pinned partner {brand}"),
            )
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
            ErrorCode::PeriodOpen,
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
        .map_err(|e| unprocessable(ErrorCode::StatementBadSignature, e.to_string()))?;
    let k = half
        .statement
        .period
        .settlement_index(terms)
        .ok_or_else(|| {
            unprocessable(ErrorCode::StatementPeriodInvalid, "not a settlement period")
        })?;
    if let Some(done) = logged(&app, &refresh(&app, &a)?, k)? {
        return Ok(Json(done.statement));
    }
    if crate::sequencer::now() < half.statement.period.to() {
        return Err(conflict(
            ErrorCode::PeriodOpen,
            format!(
                "settlement period {k} {} has not ended by this brand's clock",
                half.statement.period
            ),
        ));
    }
    let ours = agreed_statement(&app, &sender.brand, &a, half.statement.period).await?;
    if ours != half.statement {
        return Err(conflict(
            ErrorCode::StatementDisagreed,
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
    // The query is read first, then the key, then the partner (the order of the answers).
    Query(q): Query<StatementsQuery>,
    _: Authorized<scope::Read>,
    Param(brand): Param<BrandId>,
) -> Result<Json<Vec<LoggedStatement>>, ApiError> {
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
