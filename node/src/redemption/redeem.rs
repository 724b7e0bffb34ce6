//! The steps of a cross-brand redemption both sides share (spec/redemption.md §3): the peer
//! routes' paths, the bodies the payee and the payer exchange, the ids derived from a
//! redemption's id, and the errors a partner's answer becomes. The payee's steps are in
//! [`super::payee`], the payer's in [`super::payer`].

use std::sync::Arc;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use ledger::entry::{EntryKind, HexHash, Hold};
use ledger::quote::Quote;
use ledger::state::{record_prefix, QuoteState};
use ledger::types::{EntryId, LogTime};

pub use loyalty_wire::redemption::{PayerCommit, RedemptionStatus};

use crate::app::App;
use crate::federation::Partner;
use crate::redemption_error::{RedemptionError, Refusal};
use crate::views::store_record;

/// The peer route of the payer.
pub const PEER_PREPARE_PATH: &str = "/v1/peer/redemptions/prepare";

/// How long a hold lives, at most.
pub const HOLD_TTL_MAX_MS: u64 = 60 * 60 * 1000;

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

/// The logged quote of a redemption, and its payer, which must be a pinned partner.
pub(super) fn quote_and_payer(
    app: &App,
    id: &EntryId,
) -> Result<(Quote, Arc<Partner>), RedemptionError> {
    let q: QuoteState = store_record(&app.store, record_prefix::QUOTE, id.as_str())?
        .ok_or_else(|| RedemptionError::UnknownQuote(id.clone()))?;
    let payer = app
        .federation
        .partner(&q.quote.payer)
        .filter(|p| p.verifier.is_some())
        .ok_or_else(|| {
            RedemptionError::PartnerNotPinned(format!("{} is not pinned", q.quote.payer))
        })?;
    Ok((q.quote, payer))
}

/// The payer answered something that does not verify or is not what was asked.
pub(super) fn bad_answer(detail: impl Into<String>) -> RedemptionError {
    RedemptionError::PartnerBadAnswer(detail.into())
}

/// How this node passes on a partner's refusal with status `partner` (spec/api.md, "Error
/// codes"): its 404 and 409 as a conflict, another 4xx as a refusal of the request, anything
/// else as its failure.
pub(super) fn refusal_of(partner: StatusCode) -> Refusal {
    match partner {
        StatusCode::NOT_FOUND | StatusCode::CONFLICT => Refusal::Conflict,
        s if s.is_client_error() => Refusal::Invalid,
        _ => Refusal::Failed,
    }
}

/// A partner's refusal of `what`, passed on with its code.
pub(super) fn refused(
    payer: &Partner,
    what: &'static str,
    refusal: Refusal,
    answer: &[u8],
) -> RedemptionError {
    RedemptionError::refused(&payer.brand, what, refusal, answer)
}

/// A partner could not be reached about `what`.
pub(super) fn unreachable(partner: &Partner, what: &'static str) -> RedemptionError {
    RedemptionError::PartnerUnavailable {
        partner: partner.brand.clone(),
        what,
    }
}

pub(super) fn hold_of(req: &PrepareRequest) -> EntryKind {
    EntryKind::Hold(Hold {
        member: req.quote.member.clone(),
        points: req.quote.points,
        expires_at: req.expires_at,
        payee: Some(req.quote.payee.clone()),
        condition: Some(req.condition),
        authorisation: Some(req.authorisation.clone()),
    })
}

// ---------------------------------------------------------------------------------------
// Status and void (spec/redemption.md §3, steps 5 and recovery): decided by the payer's log.
// ---------------------------------------------------------------------------------------

/// The peer routes' prefix at the payer: `GET {prefix}{id}` and `POST {prefix}{id}/void`.
pub const PEER_REDEMPTIONS: &str = "/v1/peer/redemptions/";

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

pub(super) fn obligation_id(redemption: &EntryId) -> Result<EntryId, RedemptionError> {
    derived_id("obl", redemption)
}

/// The longest redemption id: the flow's own entries take ids derived from it
/// ([`derived_id`]), which must stay within the entry id limit.
pub const REDEMPTION_ID_LEN_MAX: usize = 96;

/// The id of one of the flow's own entries for redemption `id`: `sys.<what>.<id>`, under the
/// prefix client writes may not use, so no client id can take it.
pub fn derived_id(what: &str, id: &EntryId) -> Result<EntryId, RedemptionError> {
    format!("sys.{what}.{id}")
        .parse()
        .map_err(RedemptionError::internal)
}

/// A redemption id a client or partner may choose: not reserved (`sys.`), and short enough
/// for the ids derived from it.
pub fn check_redemption_id(id: &EntryId) -> Result<(), RedemptionError> {
    if crate::app::is_reserved_id(id) {
        return Err(RedemptionError::ReservedId);
    }
    if id.as_str().len() > REDEMPTION_ID_LEN_MAX {
        return Err(RedemptionError::RedemptionIdTooLong {
            max: REDEMPTION_ID_LEN_MAX,
        });
    }
    Ok(())
}
