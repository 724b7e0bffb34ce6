//! Reconciliation (spec/redemption.md §4): for a partner, an agreement and a period, the lines
//! this node reads from its own log and from its **verified mirror** of the partner's log, each
//! side's statement, and every line that is matched, missing on one side, different in amount,
//! or cut off by the period boundary, with the entry indexes on both sides; JSON or CSV.
//!
//! Invariants: both lists come from verified data only (this node's log and the mirror); the
//! arithmetic is `ledger::statement`'s (checked integers, the same bytes on both brands).

use serde::Deserialize;
use utoipa::IntoParams;

use ledger::state::{record_prefix, AgreementState};
use ledger::statement::{reconcile as reconcile_lines, ObligationLine, Period};
use ledger::types::{BrandId, EntryId, LogTime};
use ledger_store::store::Store;

use crate::redemption_error::RedemptionError;
use crate::views::store_record;

/// Most obligation records read from one log for one report.
pub const LINES_READ_MAX: usize = 1_000_000;

/// `?agreement=&from=&to=&format=`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReconcileQuery {
    /// The agreement (optional when there is exactly one with the partner).
    pub agreement: Option<String>,
    /// Start of the period, log time in ms (inclusive).
    pub from: u64,
    /// End of the period, log time in ms (exclusive).
    pub to: u64,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// The obligation lines of `agreement` in `period` in one log (the node's own or a mirror),
/// from the agreement's line index: each obligation's and each of its refunds'
/// (`ObligationState::lines`). Reads the period's lines only, at most [`LINES_READ_MAX`].
pub(crate) fn lines(
    store: &Store,
    agreement: &EntryId,
    period: Period,
) -> Result<Vec<ObligationLine>, RedemptionError> {
    ledger::state::read::lines_in(store, agreement, period, LINES_READ_MAX).map_err(|e| match e {
        e @ ledger::state::StateError::TooManyLines { .. } => RedemptionError::TooManyLines(e),
        e => RedemptionError::internal(e),
    })
}

/// Adds to `lines` (read from `store`) the line of each key in `other` that `lines` lacks,
/// if `store` has it outside the period.
fn add_counterparts(
    lines: &mut Vec<ObligationLine>,
    other: &[ObligationLine],
    store: &Store,
) -> Result<(), RedemptionError> {
    use ledger::entry::ObligationSide;
    use ledger::state::ObligationState;
    let have: std::collections::BTreeSet<(BrandId, EntryId, Option<EntryId>)> = lines
        .iter()
        .map(|l| (l.payer.clone(), l.redemption.clone(), l.refund.clone()))
        .collect();
    for l in other {
        if have.contains(&(l.payer.clone(), l.redemption.clone(), l.refund.clone())) {
            continue;
        }
        for side in [ObligationSide::Payable, ObligationSide::Receivable] {
            let name = format!("{side}/{}/{}", l.payer, l.redemption);
            let o: Option<ObligationState> = store_record(store, record_prefix::OBLIGATION, &name)?;
            if let Some(x) = o.and_then(|o| o.lines().find(|x| x.key() == l.key())) {
                lines.push(x);
            }
        }
    }
    Ok(())
}

/// The agreement between this node (`me`) and `partner` from this node's own log: the one
/// named `wanted`, or the only one there is.
pub(crate) fn agreement_with(
    store: &Store,
    me: &BrandId,
    partner: &BrandId,
    wanted: Option<&str>,
) -> Result<AgreementState, RedemptionError> {
    if let Some(id) = wanted {
        let id: EntryId = id
            .parse()
            .map_err(|e| RedemptionError::InvalidParameter(format!("agreement: {e}")))?;
        let a: Option<AgreementState> = store_record(store, record_prefix::AGREEMENT, id.as_str())?;
        return a
            .filter(|a| a.agreement.terms.is_party(partner) && a.agreement.terms.is_party(me))
            .ok_or_else(|| {
                RedemptionError::UnknownAgreement(format!("no agreement {id} with {partner}"))
            });
    }
    let mut found = agreements_with(store, me, partner)?;
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(RedemptionError::UnknownAgreement(format!(
            "no agreement with {partner}"
        ))),
        _ => Err(RedemptionError::InvalidParameter(
            "several agreements with this partner: give ?agreement=".into(),
        )),
    }
}

/// Every agreement between this node (`me`) and `partner` in this node's own log, by id.
pub(crate) fn agreements_with(
    store: &Store,
    me: &BrandId,
    partner: &BrandId,
) -> Result<Vec<AgreementState>, RedemptionError> {
    let mut found: Vec<AgreementState> = Vec::new();
    for (_, v) in store
        .state_scan(record_prefix::AGREEMENT, ledger::state::AGREEMENTS_MAX)
        .map_err(RedemptionError::internal)?
    {
        let a = <AgreementState as ledger::state::read::Record>::decode(&v)
            .map_err(RedemptionError::internal)?;
        let t = &a.agreement.terms;
        if t.is_party(me) && t.is_party(partner) {
            found.push(a);
        }
    }
    Ok(found)
}

/// The verified mirror of `brand`, which must be a pinned partner.
pub(crate) fn mirror_of(app: &crate::app::App, brand: &BrandId) -> Result<Store, RedemptionError> {
    let p = app
        .federation
        .partner(brand)
        .ok_or_else(|| RedemptionError::UnknownPartner(format!("no partner {brand}")))?;
    p.mirror_store
        .clone()
        .ok_or_else(|| RedemptionError::MirrorUnpinned(brand.clone()))
}

/// The reconciliation of `terms` for `period` from the own log and the mirror.
pub(crate) fn report(
    store: &Store,
    mirror: &Store,
    terms: &ledger::agreement::AgreementTerms,
    period: Period,
) -> Result<ledger::statement::Reconciliation, RedemptionError> {
    // Each side's lines in the period; then, for a line one side has in the period and the
    // other does not, the other side's line of the same key wherever its time falls (one
    // point read each), so that a line cut off by the period boundary is reported as such.
    let mut ours = lines(store, &terms.agreement, period)?;
    let mut theirs = lines(mirror, &terms.agreement, period)?;
    let ours_in = ours.clone();
    add_counterparts(&mut ours, &theirs, store)?;
    add_counterparts(&mut theirs, &ours_in, mirror)?;
    reconcile_lines(terms, period, &ours, &theirs).map_err(RedemptionError::Statement)
}

/// How a reconciliation report is answered: `json` (default) or `csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Json,
    Csv,
}

/// The reconciliation with `partner` that query `q` asks for, and its format.
pub(super) async fn reconciliation(
    app: &crate::app::App,
    partner: BrandId,
    q: ReconcileQuery,
) -> Result<(ledger::statement::Reconciliation, ReportFormat), RedemptionError> {
    let mirror = mirror_of(app, &partner)?;
    let format = match q.format.as_deref() {
        None | Some("json") => ReportFormat::Json,
        Some("csv") => ReportFormat::Csv,
        Some(_) => {
            return Err(RedemptionError::InvalidParameter(
                "format must be json or csv".into(),
            ))
        }
    };
    let bad = RedemptionError::InvalidParameter;
    let period = Period::new(
        LogTime::new(q.from).map_err(|e| bad(format!("from: {e}")))?,
        LogTime::new(q.to).map_err(|e| bad(format!("to: {e}")))?,
    )
    .map_err(|e| bad(e.to_string()))?;
    let store = app.store.clone();
    let me = app.federation.brand.clone();
    let report = tokio::task::spawn_blocking(move || {
        let agreement = agreement_with(&store, &me, &partner, q.agreement.as_deref())?;
        report(&store, &mirror, &agreement.agreement.terms, period)
    })
    .await
    .map_err(RedemptionError::internal)??;
    Ok((report, format))
}
