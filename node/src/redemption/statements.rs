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

use axum::http::StatusCode;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use ledger::entry::{Entry, EntryKind};
use ledger::state::{record_prefix, AgreementState};
use ledger::statement::{self, period_bounds, SignedStatement};
use ledger::types::{BrandId, EntryId};
use ledger_store::log::Write;

pub use loyalty_wire::redemption::LoggedStatement;

use super::reconcile::{agreement_with, mirror_of, report};
use super::redeem::{bad_answer, refusal_of, refused, unreachable};
use super::refunds::receipt_at;
use crate::app::App;
use crate::federation::client::{PeerClient, Reply};
use crate::federation::Partner;
use crate::redemption_error::RedemptionError;
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
fn statement_entry_id(agreement: &EntryId, k: u64) -> Result<EntryId, RedemptionError> {
    format!("sys.stmt.{k}.{agreement}").parse().or_else(|_| {
        let h = Sha256::digest(agreement.as_str());
        format!("sys.stmt.{k}.{}", &hex::encode(h)[..32])
            .parse()
            .map_err(RedemptionError::internal)
    })
}

/// The statement entry this node logged for `agreement` and period `k`, with its receipt.
pub(crate) fn logged(
    app: &App,
    a: &AgreementState,
    k: u64,
) -> Result<Option<LoggedStatement>, RedemptionError> {
    let Some(index) = a.statements.get(&k) else {
        return Ok(None);
    };
    let receipt = receipt_at(app, index.get())?;
    let entry = Entry::from_bytes(receipt.entry.as_bytes()).map_err(RedemptionError::internal)?;
    let EntryKind::Statement(statement) = entry.kind else {
        return Err(RedemptionError::internal(
            "a statement index names another entry",
        ));
    };
    Ok(Some(LoggedStatement {
        period: k,
        statement,
        receipt,
    }))
}

fn refresh(app: &App, a: &AgreementState) -> Result<AgreementState, RedemptionError> {
    store_record(
        &app.store,
        record_prefix::AGREEMENT,
        a.agreement.terms.agreement.as_str(),
    )?
    .ok_or_else(|| RedemptionError::internal("the agreement vanished"))
}

/// Reconciles the period from this node's side; the statement only when every line matches.
async fn agreed_statement(
    app: &App,
    partner: &BrandId,
    a: &AgreementState,
    period: statement::Period,
) -> Result<statement::Statement, RedemptionError> {
    let store = app.store.clone();
    let mirror = mirror_of(app, partner)?;
    let terms = a.agreement.terms.clone();
    let r = tokio::task::spawn_blocking(move || report(&store, &mirror, &terms, period))
        .await
        .map_err(RedemptionError::internal)??;
    if !r.agreed {
        use ledger::statement::LineStatus as S;
        return Err(RedemptionError::StatementDisagreed(format!(
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
            )));
    }
    Ok(r.ours)
}

/// Reconciles a settlement period that has ended with partner `brand`, and when every line
/// matches, co-signs the statement with it and logs it on both sides. Idempotent by agreement
/// and period.
pub(super) async fn cosign(
    app: &App,
    brand: BrandId,
    b: StatementBody,
) -> Result<LoggedStatement, RedemptionError> {
    let fed = &app.federation;
    let p = fed
        .partner(&brand)
        .filter(|p| p.verifier.is_some())
        .ok_or_else(|| RedemptionError::UnknownPartner(format!("no pinned partner {brand}")))?;
    let a = agreement_with(&app.store, &fed.brand, &brand, b.agreement.as_deref())?;
    let terms = &a.agreement.terms;
    let k = match (b.period, b.at) {
        (Some(k), None) => k,
        (None, Some(t)) => ledger::types::LogTime::new(t)
            .ok()
            .and_then(|t| terms.period_of(t))
            .ok_or_else(|| {
                RedemptionError::InvalidBody("`at` is before the agreement's first period".into())
            })?,
        _ => {
            return Err(RedemptionError::InvalidBody(
                "give exactly one of `period` and `at`".into(),
            ))
        }
    };
    let period =
        period_bounds(terms, k).map_err(|e| RedemptionError::InvalidBody(e.to_string()))?;
    // No lock across the partner's answer: two nodes that start at once both send, both sign
    // the same deterministic bytes, and the same entry under the same id is logged once.
    if let Some(done) = logged(app, &refresh(app, &a)?, k)? {
        return Ok(done);
    }
    if crate::sequencer::now() < period.to() {
        return Err(RedemptionError::PeriodOpen(format!(
            "settlement period {k} {period} has not ended"
        )));
    }
    let ours = agreed_statement(app, &brand, &a, period).await?;
    let mine = statement::sign(&ours, &fed.brand, &fed.signing_key, &app.verifier_key);
    let half = SignedStatement {
        statement: ours.clone(),
        signatures: vec![mine.clone()],
    };
    let body = serde_json::to_vec(&half).map_err(RedemptionError::internal)?;
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
        return Err(refused(&p, "the statement", refusal_of(status), &answer));
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
    app.sequencer
        .submit(Write {
            id: statement_entry_id(&terms.agreement, k)?,
            kind: EntryKind::Statement(signed),
        })
        .await?;
    tracing::info!(partner = %brand, agreement = %terms.agreement, period = k, "statement co-signed");
    logged(app, &refresh(app, &a)?, k)?
        .ok_or_else(|| RedemptionError::internal("the statement was not kept"))
}

/// The partner's side of co-signing (a signed peer request of `sender`): its half-signed
/// statement, signed here too and logged when this node's own reconciliation gives the same
/// statement.
pub(super) async fn peer_cosign(
    app: &App,
    sender: &Partner,
    half: SignedStatement,
) -> Result<SignedStatement, RedemptionError> {
    let fed = &app.federation;
    let a = agreement_with(
        &app.store,
        &fed.brand,
        &sender.brand,
        Some(half.statement.agreement.as_str()),
    )?;
    let terms = &a.agreement.terms;
    half.verify_signature_of(&a.agreement, &sender.brand)
        .map_err(|e| RedemptionError::StatementBadSignature(e.to_string()))?;
    let k = half
        .statement
        .period
        .settlement_index(terms)
        .ok_or(RedemptionError::StatementPeriodInvalid)?;
    if let Some(done) = logged(app, &refresh(app, &a)?, k)? {
        return Ok(done.statement);
    }
    if crate::sequencer::now() < half.statement.period.to() {
        return Err(RedemptionError::PeriodOpen(format!(
            "settlement period {k} {} has not ended by this brand's clock",
            half.statement.period
        )));
    }
    let ours = agreed_statement(app, &sender.brand, &a, half.statement.period).await?;
    if ours != half.statement {
        return Err(RedemptionError::StatementDisagreed(
            "the statement differs from the one this brand computes".into(),
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
    app.sequencer
        .submit(Write {
            id: statement_entry_id(&terms.agreement, k)?,
            kind: EntryKind::Statement(signed.clone()),
        })
        .await?;
    tracing::info!(partner = %sender.brand, agreement = %terms.agreement, period = k, "statement co-signed");
    Ok(signed)
}

/// `?agreement=`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StatementsQuery {
    /// The agreement (optional when there is exactly one with the partner).
    pub agreement: Option<String>,
}

/// Every co-signed statement logged with partner `brand`, by period: of the agreement named
/// `wanted`, or of the only one there is.
pub(super) fn list(
    app: &App,
    brand: &BrandId,
    wanted: Option<&str>,
) -> Result<Vec<LoggedStatement>, RedemptionError> {
    let a = agreement_with(&app.store, &app.federation.brand, brand, wanted)?;
    let mut out = Vec::new();
    for k in a.statements.keys() {
        out.extend(logged(app, &a, *k)?);
    }
    Ok(out)
}
