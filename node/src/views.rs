//! The read model: committed state records as the API and the explorer show them (members with
//! their lots and tier, holds, a member's history), read from the log's store or a verified
//! mirror. It knows no HTTP: a record that cannot be read is a [`ReadError`], which
//! [`crate::problem`] answers as `500 internal`.
//!
//! Invariants: every read is one record, a page (lots, history) or a member's due work, never a
//! key space; nothing here waits for the sequencer.

use ledger::state::read::{self, Record};
use ledger::state::{record_prefix, HoldState, HoldStatus, MemberState, Policies, RecordSource};
use ledger::types::{EntryId, LogTime, MemberId};
pub use loyalty_wire::{
    HoldInfo as HoldView, HoldStatusKind, LotInfo as LotView, LotsPage, MemberInfo as MemberView,
};

use crate::sequencer::now;

/// A committed record that could not be read: the store failed, or the record does not decode.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReadError(pub String);

impl ReadError {
    fn of(e: impl std::fmt::Display) -> ReadError {
        ReadError(e.to_string())
    }
}

/// A state record of any store (the log's or a mirror's).
pub fn store_record<T: Record>(
    store: &ledger_store::store::Store,
    prefix: &[u8],
    name: &str,
) -> Result<Option<T>, ReadError> {
    read::named(store, prefix, name).map_err(ReadError::of)
}

/// The most lots a member read or one lots page returns.
pub const LOTS_PAGE_MAX: usize = 50;

/// A member as a store's committed records show it (`None`: no such member).
pub fn member_view(
    store: &ledger_store::store::Store,
    id: &MemberId,
) -> Result<Option<MemberView>, ReadError> {
    let Some(m): Option<MemberState> = store_record(store, record_prefix::MEMBER, id.as_str())?
    else {
        return Ok(None);
    };
    let p: Policies = read::policies(store).map_err(ReadError::of)?;
    member_view_of(store, id, m, &p, now()).map(Some)
}

/// The view of member `id` with summary `m` under policies `p` at log time `t`; reads the
/// member's lapsed lots, qualifying earnings and first page of lots from `src`.
pub fn member_view_of(
    src: &dyn RecordSource,
    id: &MemberId,
    m: MemberState,
    p: &Policies,
    t: LogTime,
) -> Result<MemberView, ReadError> {
    let lapsed = read::lapsed(src, id, t).map_err(ReadError::of)?;
    let (tier, valid_until) = match &p.tier {
        Some(policy) => {
            let name = m
                .tier
                .clone()
                .unwrap_or_else(|| policy.tiers[0].name.clone());
            let until = match policy.tiers.iter().position(|x| x.name == name) {
                Some(rank) => {
                    let events = read::qualifying(src, id, &m).map_err(ReadError::of)?;
                    ledger::tier::tier_valid_until(policy, &events, rank, t)
                }
                None => None,
            };
            (Some(name), until)
        }
        None => (None, None),
    };
    let page = lots_page(src, id, &m, None, LOTS_PAGE_MAX)?;
    Ok(MemberView {
        member: id.clone(),
        balance: m.balance,
        available: m.balance.saturating_sub(lapsed),
        pending: m.pending,
        tier,
        tier_valid_until: valid_until,
        lots: page.lots,
        lots_total: m.lots,
        lots_next_cursor: page.next_cursor,
    })
}

/// One page of the lots of member `id`, whose summary is `m`, from `src`, after `after`, at
/// most `limit` (clamped to [`LOTS_PAGE_MAX`]).
pub(crate) fn lots_page(
    src: &dyn RecordSource,
    id: &MemberId,
    m: &MemberState,
    after: Option<read::LotCursor>,
    limit: usize,
) -> Result<LotsPage, ReadError> {
    let limit = limit.clamp(1, LOTS_PAGE_MAX);
    let lots = read::lots(src, id, m, after, limit).map_err(ReadError::of)?;
    let next_cursor = (lots.len() == limit)
        .then(|| lots.last())
        .flatten()
        .map(|l| read::format_lot_cursor((l.expires_at, l.id)));
    Ok(LotsPage {
        lots: lots
            .iter()
            .map(|l| LotView {
                lot: l.id,
                remaining: l.remaining,
                expires_at: l.expires_at,
            })
            .collect(),
        next_cursor,
    })
}

/// Indexes of a member's entries after `cursor` (exclusive), ascending, at most `limit`, of
/// those covered by the checkpoint of `size`.
pub fn history_indexes(
    store: &ledger_store::store::Store,
    id: &MemberId,
    cursor: Option<u64>,
    limit: usize,
    size: u64,
) -> Result<Vec<u64>, ReadError> {
    let mut indexes = store.history(id, cursor, limit).map_err(ReadError::of)?;
    indexes.retain(|i| *i < size);
    Ok(indexes)
}

/// The view of hold `id` with state `h`.
pub fn hold_view(id: &EntryId, h: &HoldState) -> HoldView {
    let (status, resolved) = match h.status {
        HoldStatus::Open => (HoldStatusKind::Open, None),
        HoldStatus::Posted(i) => (HoldStatusKind::Posted, Some(i.get())),
        HoldStatus::Voided(i) => (HoldStatusKind::Voided, Some(i.get())),
    };
    HoldView {
        id: id.clone(),
        index: h.index.get(),
        member: h.member.clone(),
        points: h.points,
        expires_at: h.expires_at,
        payee: h.payee.clone(),
        status,
        resolved_index: resolved,
    }
}
