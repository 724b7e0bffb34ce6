//! Bounded reads of state records from any [`RecordSource`]: what the state machine reads
//! while it applies an entry, and what the node's read routes, the explorer and mirrors read
//! from committed records. One implementation, so a read route shows exactly what the state
//! machine sees.
//!
//! Invariant: every function here reads a bounded number of records (a page, or the records
//! a member's due work is made of), never a whole key space.

use super::records::{self, prefix, RecordSource};
use super::{
    AgreementState, AuthorisationState, HoldState, IdRecord, Lot, MemberState, ObligationState,
    Policies, QuoteState, RecordError, RedemptionState, StateError, StorageError,
};
use super::{AgreementTotals, LineRecord, LineTotals};
use crate::entry::ObligationSide;
use crate::statement::{ObligationLine, Period};
use crate::tier::QualifyingEvent;
use crate::types::{EntryId, LogIndex, LogTime, MemberId};

/// The most lots one page returns.
pub const LOTS_PAGE_MAX: usize = 1000;
/// The most statement lines one page of [`latest_lines`] returns.
pub const LINES_PAGE_MAX: usize = 1000;
/// The most settlement periods one call of [`period_totals`] returns.
pub const PERIODS_PAGE_MAX: usize = 1000;

/// A record kind and how it is encoded.
pub trait Record: Sized {
    /// Decodes the record's value.
    fn decode(bytes: &[u8]) -> Result<Self, String>;
}

macro_rules! binary_record {
    ($($t:ty),*) => {$(
        impl Record for $t {
            fn decode(bytes: &[u8]) -> Result<Self, String> {
                records::decode(bytes)
            }
        }
    )*};
}

macro_rules! json_record {
    ($($t:ty),*) => {$(
        impl Record for $t {
            fn decode(bytes: &[u8]) -> Result<Self, String> {
                records::decode_json(bytes)
            }
        }
    )*};
}

impl Record for MemberState {
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        MemberState::decode(bytes)
    }
}

binary_record!(
    HoldState,
    RedemptionState,
    IdRecord,
    AuthorisationState,
    AgreementTotals,
    LineTotals
);
json_record!(QuoteState, ObligationState, AgreementState, Policies);

fn storage(e: String) -> StateError {
    StateError::Storage(StorageError(e))
}

/// The record under `key`, decoded.
pub fn record<T: Record>(src: &dyn RecordSource, key: &[u8]) -> Result<Option<T>, StateError> {
    match src.get(key).map_err(storage)? {
        None => Ok(None),
        Some(v) => T::decode(&v)
            .map(Some)
            .map_err(|e| RecordError::at(key, e).into()),
    }
}

/// The record of kind `prefix` named `name`.
pub fn named<T: Record>(
    src: &dyn RecordSource,
    prefix: &[u8],
    name: &str,
) -> Result<Option<T>, StateError> {
    record(src, &records::named(prefix, name))
}

/// A member's summary.
pub fn member(src: &dyn RecordSource, id: &MemberId) -> Result<Option<MemberState>, StateError> {
    named(src, prefix::MEMBER, id.as_str())
}

/// The policies in force.
pub fn policies(src: &dyn RecordSource) -> Result<Policies, StateError> {
    Ok(record(src, prefix::POLICIES)?.unwrap_or_default())
}

/// A lot's place among its member's lots: `(expiry, index)`.
pub type LotCursor = (Option<LogTime>, LogIndex);

/// Formats a lot cursor for an API: `<expiry>.<index>`, or `never.<index>`.
pub fn format_lot_cursor(c: LotCursor) -> String {
    match c.0 {
        Some(e) => format!("{}.{}", e.get(), c.1.get()),
        None => format!("never.{}", c.1.get()),
    }
}

/// Parses what [`format_lot_cursor`] wrote.
pub fn parse_lot_cursor(s: &str) -> Option<LotCursor> {
    let (e, i) = s.split_once('.')?;
    let e = match e {
        "never" => None,
        e => Some(LogTime::new(e.parse().ok()?).ok()?),
    };
    Some((e, LogIndex::new(i.parse().ok()?).ok()?))
}

/// Lots with keys in `from..end`, at most `limit`.
pub(crate) fn lots_in(
    src: &dyn RecordSource,
    from: &[u8],
    end: &[u8],
    limit: usize,
) -> Result<Vec<Lot>, StateError> {
    src.range(from, end, limit)
        .map_err(storage)?
        .into_iter()
        .map(|(k, v)| {
            let (expires_at, id) =
                records::parse_lot_key(&k).ok_or_else(|| RecordError::at(&k, "bad lot key"))?;
            let remaining: u64 = records::decode(&v).map_err(|e| RecordError::at(&k, e))?;
            Ok(Lot {
                id,
                expires_at,
                remaining,
            })
        })
        .collect()
}

/// Up to `limit` (at most [`LOTS_PAGE_MAX`]) of a member's lots, soonest-expiring first
/// (never-expiring last), after the lot `after` names. `summary` is the member's record: a
/// lot it keeps ([`MemberState::open_lot_inline`]) is read from it.
pub fn lots(
    src: &dyn RecordSource,
    member: &MemberId,
    summary: &MemberState,
    after: Option<LotCursor>,
    limit: usize,
) -> Result<Vec<Lot>, StateError> {
    let from = match after {
        Some((e, id)) => records::after(&records::lot_key(member, e, id)),
        None => records::lots_from(member, None),
    };
    let limit = limit.min(LOTS_PAGE_MAX);
    if let (true, Some(open)) = (summary.open_lot_inline, summary.open_lot) {
        // The member's only lot, and no lot record.
        let lot = Lot {
            id: open,
            expires_at: None,
            remaining: summary.balance,
        };
        let shown = limit > 0 && records::lot_key(member, None, open) >= from;
        return Ok(if shown { vec![lot] } else { Vec::new() });
    }
    lots_in(src, &from, &records::lots_end(member), limit)
}

/// Points of a member's lots whose expiry has passed at `now` but that no `expire` entry has
/// taken yet. Reads only those lots (the node's housekeeping expires them).
pub fn lapsed(src: &dyn RecordSource, member: &MemberId, now: LogTime) -> Result<u64, StateError> {
    let end = records::lots_from(member, Some(now));
    let mut from = records::lots_from(member, None);
    let mut sum = 0u64;
    loop {
        let page = lots_in(src, &from, &end, LOTS_PAGE_MAX)?;
        sum += page.iter().map(|l| l.remaining).sum::<u64>();
        match page.last() {
            Some(l) if page.len() == LOTS_PAGE_MAX => {
                from = records::after(&records::lot_key(member, l.expires_at, l.id));
            }
            _ => return Ok(sum),
        }
    }
}

/// A member's qualifying earnings kept for tier evaluation, oldest first. Their number is
/// bounded by the tier policy's window and grace period (or
/// [`crate::tier::QUALIFYING_EVENTS_MAX`] without a policy).
/// `summary` is the member's record: the read starts at its oldest kept earning.
pub fn qualifying(
    src: &dyn RecordSource,
    member: &MemberId,
    summary: &MemberState,
) -> Result<Vec<QualifyingEvent>, StateError> {
    let end = records::qualifying_end(member);
    let mut from = records::qualifying_from(member, summary.qualifying_from_ms);
    let mut out = Vec::new();
    loop {
        let page = src
            .range(&from, &end, records::RANGE_PAGE_MAX)
            .map_err(storage)?;
        let n = page.len();
        for (k, v) in &page {
            let t = records::qualifying_time(k)
                .and_then(|t| LogTime::new(t).ok())
                .ok_or_else(|| RecordError::at(k, "bad qualifying key"))?;
            let p: u64 = records::decode(v).map_err(|e| RecordError::at(k, e))?;
            out.push((t, p));
        }
        match page.last() {
            Some((k, _)) if n == records::RANGE_PAGE_MAX => from = records::after(k),
            _ => return Ok(out),
        }
    }
}

/// Decodes one record of an agreement's line index.
fn line_of(k: &[u8], v: &[u8]) -> Result<ObligationLine, StateError> {
    side_and_line_of(k, v).map(|(_, l)| l)
}

/// A line of the index with the side of the obligation it belongs to.
fn side_and_line_of(k: &[u8], v: &[u8]) -> Result<(ObligationSide, ObligationLine), StateError> {
    let (time, index) =
        records::parse_line_key(k).ok_or_else(|| RecordError::at(k, "bad line key"))?;
    let r: LineRecord = records::decode(v).map_err(|e| RecordError::at(k, e))?;
    let line = ObligationLine {
        redemption: r.redemption,
        refund: r.refund,
        payer: r.payer,
        payee: r.payee,
        amount_minor: r.amount_minor,
        time,
        index,
    };
    Ok((r.side, line))
}

/// The statement lines of agreement `agreement` with a time in `period`, in time order,
/// from the agreement's line index: reads the period's lines and nothing else. Refuses
/// ([`StateError::TooManyLines`]) a period with more than `max` lines.
pub fn lines_in(
    src: &dyn RecordSource,
    agreement: &EntryId,
    period: Period,
    max: usize,
) -> Result<Vec<ObligationLine>, StateError> {
    Ok(sided_lines_in(src, agreement, period, max)?
        .into_iter()
        .map(|(_, l)| l)
        .collect())
}

/// As [`lines_in`], each line with the side of its obligation.
pub(crate) fn sided_lines_in(
    src: &dyn RecordSource,
    agreement: &EntryId,
    period: Period,
    max: usize,
) -> Result<Vec<(ObligationSide, ObligationLine)>, StateError> {
    let end = records::lines_from(agreement, period.to().get());
    let mut from = records::lines_from(agreement, period.from().get());
    let mut out = Vec::new();
    loop {
        let page = src
            .range(&from, &end, records::RANGE_PAGE_MAX)
            .map_err(storage)?;
        let n = page.len();
        for (k, v) in &page {
            let (side, line) = side_and_line_of(k, v)?;
            if period.contains(line.time) {
                if out.len() >= max {
                    return Err(StateError::TooManyLines { max });
                }
                out.push((side, line));
            }
        }
        match page.last() {
            Some((k, _)) if n == records::RANGE_PAGE_MAX => from = records::after(k),
            _ => return Ok(out),
        }
    }
}

/// A line's place in its agreement's line index: `(time, entry index)`.
pub type LineCursor = (LogTime, LogIndex);

/// Formats a line cursor for a link: `<time>.<index>`.
pub fn format_line_cursor(c: LineCursor) -> String {
    format!("{}.{}", c.0.get(), c.1.get())
}

/// Parses what [`format_line_cursor`] wrote.
pub fn parse_line_cursor(s: &str) -> Option<LineCursor> {
    let (t, i) = s.split_once('.')?;
    Some((
        LogTime::new(t.parse().ok()?).ok()?,
        LogIndex::new(i.parse().ok()?).ok()?,
    ))
}

/// Up to `limit` (at most [`LINES_PAGE_MAX`]) of agreement `agreement`'s lines, newest first
/// (by time, then entry index), older than the line `before` names (from the newest when
/// `None`). Reads those lines and nothing else.
pub fn latest_lines(
    src: &dyn RecordSource,
    agreement: &EntryId,
    before: Option<LineCursor>,
    limit: usize,
) -> Result<Vec<ObligationLine>, StateError> {
    let end = match before {
        Some((t, i)) => records::line_key(agreement, t, i),
        None => records::lines_end(agreement),
    };
    src.range_rev(
        &records::lines_from(agreement, 0),
        &end,
        limit.min(LINES_PAGE_MAX),
    )
    .map_err(storage)?
    .iter()
    .map(|(k, v)| line_of(k, v))
    .collect()
}

/// Agreement `agreement`'s line totals: all time and open (zero without lines). One record.
pub fn agreement_totals(
    src: &dyn RecordSource,
    agreement: &EntryId,
) -> Result<AgreementTotals, StateError> {
    Ok(named(src, prefix::TOTALS, agreement.as_str())?.unwrap_or_default())
}

/// The line totals of agreement `agreement`'s settlement periods numbered in `periods` that
/// have lines, at most `limit` (at most [`PERIODS_PAGE_MAX`]): the first ones ascending, or
/// the last ones descending when `newest_first`. Reads those records and nothing else.
pub fn period_totals(
    src: &dyn RecordSource,
    agreement: &EntryId,
    periods: std::ops::Range<u64>,
    limit: usize,
    newest_first: bool,
) -> Result<Vec<(u64, LineTotals)>, StateError> {
    let start = records::period_totals_key(agreement, periods.start);
    let end = records::period_totals_key(agreement, periods.end);
    let limit = limit.min(PERIODS_PAGE_MAX);
    let page = if newest_first {
        src.range_rev(&start, &end, limit)
    } else {
        src.range(&start, &end, limit)
    }
    .map_err(storage)?;
    page.iter()
        .map(|(k, v)| {
            let (_, period) = records::parse_period_totals_key(k)
                .ok_or_else(|| RecordError::at(k, "bad period totals key"))?;
            Ok((
                period,
                LineTotals::decode(v).map_err(|e| RecordError::at(k, e))?,
            ))
        })
        .collect()
}

/// A member as a read route shows it at log time `now`: the summary, the points spendable
/// now, the tier by the record and until when it holds, and the first page of lots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRead {
    pub summary: MemberState,
    pub available: u64,
    /// The recorded tier (the policy's base tier without a record; `None` without a policy).
    pub tier: Option<crate::types::TierName>,
    pub tier_valid_until: Option<LogTime>,
}

/// Reads member `id` as of log time `now` (`None`: no such member).
pub fn member_at(
    src: &dyn RecordSource,
    policies: &Policies,
    id: &MemberId,
    now: LogTime,
) -> Result<Option<MemberRead>, StateError> {
    let Some(m) = member(src, id)? else {
        return Ok(None);
    };
    let available = m.balance - lapsed(src, id, now)?.min(m.balance);
    let (tier, until) = match &policies.tier {
        Some(policy) => {
            let name = m
                .tier
                .clone()
                .unwrap_or_else(|| policy.tiers[0].name.clone());
            let until = match policy.tiers.iter().position(|x| x.name == name) {
                Some(rank) => {
                    crate::tier::tier_valid_until(policy, &qualifying(src, id, &m)?, rank, now)
                }
                None => None,
            };
            (Some(name), until)
        }
        None => (None, None),
    };
    Ok(Some(MemberRead {
        summary: m,
        available,
        tier,
        tier_valid_until: until,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lot_cursors_round_trip_and_refuse_garbage() {
        let c = (Some(LogTime::new(5).unwrap()), LogIndex::new(9).unwrap());
        assert_eq!(parse_lot_cursor(&format_lot_cursor(c)), Some(c));
        let n = (None, LogIndex::new(0).unwrap());
        assert_eq!(parse_lot_cursor(&format_lot_cursor(n)), Some(n));
        for bad in ["", "5", "x.1", "5.", "never.-1", "99999999999999999999.1"] {
            assert_eq!(parse_lot_cursor(bad), None, "{bad}");
        }
    }
}
