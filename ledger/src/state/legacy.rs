//! The state records of releases before 0.2 (JSON values, one record per member with all
//! its lots and qualifying earnings), and their one-time conversion to the current layout
//! (spec/protocol.md §6).
//!
//! Invariants: conversion is a pure function of the old records; each old record converts on
//! its own (given the policies and agreements, read first), so a store is migrated in chunks
//! and a migration cut off by a crash resumes where it stopped: a record already in the
//! current format is recognised by its first byte and only counted.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::records::{self, prefix, FORMAT_BINARY, FORMAT_JSON};
use super::{
    AgreementState, AgreementTotals, AuthorisationState, HoldState, HoldStatus, IdRecord,
    LineRecord, LineTotals, MemberState, ObligationState, Policies, Portion, QuoteState,
    RecordError, RedemptionState,
};
use crate::entry::{HexHash, ObligationSide};
use crate::tier;
use crate::types::{AccountId, BrandId, EntryId, LogIndex, LogTime, MemberId};

/// Whether a record value is in the format of releases before 0.2.
pub fn is_legacy(value: &[u8]) -> bool {
    !matches!(value.first(), Some(&FORMAT_BINARY) | Some(&FORMAT_JSON))
}

#[derive(Deserialize)]
struct OldMeta {
    size: u64,
    #[serde(default)]
    last_time: Option<LogTime>,
}

#[derive(Deserialize)]
struct OldLot {
    id: LogIndex,
    #[serde(default)]
    expires_at: Option<LogTime>,
    remaining: u64,
}

#[derive(Deserialize)]
struct OldPortion {
    lot: LogIndex,
    #[serde(default)]
    expires_at: Option<LogTime>,
    points: u64,
}

impl From<OldPortion> for Portion {
    fn from(p: OldPortion) -> Portion {
        Portion {
            lot: p.lot,
            expires_at: p.expires_at,
            points: p.points,
        }
    }
}

#[derive(Deserialize)]
struct OldMember {
    balance: u64,
    pending: u64,
    lots: Vec<OldLot>,
    #[serde(default)]
    tier: Option<crate::types::TierName>,
    #[serde(default)]
    tier_since: LogTime,
    #[serde(default)]
    qualifying: Vec<(LogTime, u64)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "index")]
enum OldHoldStatus {
    Open,
    Posted(LogIndex),
    Voided(LogIndex),
}

#[derive(Deserialize)]
struct OldHold {
    index: LogIndex,
    member: MemberId,
    points: u64,
    expires_at: LogTime,
    #[serde(default)]
    payee: Option<BrandId>,
    #[serde(default)]
    condition: Option<HexHash>,
    #[serde(default)]
    authorisation: Option<EntryId>,
    portions: Vec<OldPortion>,
    status: OldHoldStatus,
}

#[derive(Deserialize)]
struct OldRedemption {
    index: LogIndex,
    member: MemberId,
    points: u64,
    refunded: u64,
    account: AccountId,
    #[serde(default)]
    obligation: bool,
    portions: Vec<OldPortion>,
}

#[derive(Deserialize)]
struct OldId {
    index: LogIndex,
    intent: String,
}

#[derive(Deserialize)]
struct OldAuthorisation {
    index: LogIndex,
    member: MemberId,
    payee: BrandId,
    max_points: u64,
    expires_at: LogTime,
    #[serde(default)]
    used_by: Option<EntryId>,
}

/// What the conversion of the other records needs to know, read before them.
#[derive(Debug, Default)]
pub struct Context {
    pub policies: Policies,
    pub agreements: BTreeMap<EntryId, AgreementState>,
    /// Members seen so far (converted now or before).
    pub members: u64,
    /// Open payable totals accumulated from the obligations seen so far.
    pub open_payables: BTreeMap<EntryId, i64>,
    /// Line totals accumulated from the obligations seen so far, per agreement.
    pub totals: BTreeMap<EntryId, AgreementTotals>,
    /// Settlement period line totals accumulated likewise, per agreement and period.
    pub period_totals: BTreeMap<EntryId, BTreeMap<u64, LineTotals>>,
}

/// Writes that replace one record.
pub type Writes = Vec<(Vec<u8>, Option<Vec<u8>>)>;

fn json<T: serde::de::DeserializeOwned>(k: &[u8], v: &[u8]) -> Result<T, RecordError> {
    serde_json::from_slice(v).map_err(|e| RecordError::at(k, e.to_string()))
}

fn name<T: std::str::FromStr>(k: &[u8], p: &[u8]) -> Result<T, RecordError>
where
    T::Err: std::fmt::Display,
{
    super::parse_name(k, p)
}

/// Reads the policies and agreements (old or current format) into a [`Context`].
pub fn context<'a>(
    policies: Option<&[u8]>,
    agreements: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<Context, RecordError> {
    let mut cx = Context::default();
    if let Some(v) = policies {
        cx.policies = if is_legacy(v) {
            json(prefix::POLICIES, v)?
        } else {
            records::decode_json(v).map_err(|e| RecordError::at(prefix::POLICIES, e))?
        };
    }
    for (k, v) in agreements {
        let id: EntryId = name(k, prefix::AGREEMENT)?;
        let a: AgreementState = if is_legacy(v) {
            json(k, v)?
        } else {
            records::decode_json(v).map_err(|e| RecordError::at(k, e))?
        };
        cx.agreements.insert(id, a);
    }
    Ok(cx)
}

/// The current-format writes that replace record `(k, v)`; the meta record is left to
/// [`finish`]. A record already converted is only counted.
pub fn convert(cx: &mut Context, k: &[u8], v: &[u8]) -> Result<Writes, RecordError> {
    let mut out: Writes = Vec::new();
    let legacy = is_legacy(v);
    // The meta record is written last, by `finish`; the kinds only the current format has
    // (written by this conversion, met again further on in the same pass) are left alone.
    let current_only = [
        prefix::LOT,
        prefix::QUALIFYING,
        prefix::OPEN_PAYABLE,
        prefix::LINE,
        prefix::TOTALS,
        prefix::PERIOD_TOTALS,
        prefix::DUE_LOT,
        prefix::DUE_HOLD,
        prefix::DUE_TIER,
    ];
    if k == prefix::META || current_only.iter().any(|p| k.starts_with(p)) {
        return Ok(out);
    }
    if k.starts_with(prefix::MEMBER) {
        cx.members += 1;
        if legacy {
            let id: MemberId = name(k, prefix::MEMBER)?;
            member(cx, &id, json(k, v)?, &mut out);
        }
    } else if k.starts_with(prefix::OBLIGATION) {
        let o: ObligationState = if legacy {
            json(k, v)?
        } else {
            records::decode_json(v).map_err(|e| RecordError::at(k, e))?
        };
        if o.key().record_key() != k {
            return Err(RecordError::at(
                k,
                "the obligation is not the one its key names",
            ));
        }
        let a = cx
            .agreements
            .get(&o.quote.agreement)
            .ok_or_else(|| RecordError::at(k, "names an agreement that is not kept"))?;
        if o.side == ObligationSide::Payable {
            *cx.open_payables
                .entry(o.quote.agreement.clone())
                .or_default() += o.open_minor(a);
        }
        super::derive_totals(
            a,
            [&o],
            cx.totals.entry(o.quote.agreement.clone()).or_default(),
            cx.period_totals
                .entry(o.quote.agreement.clone())
                .or_default(),
        );
        if legacy {
            for l in o.lines() {
                let refund = l.refund.clone();
                out.push((
                    records::line_key(&o.quote.agreement, l.time, l.index),
                    Some(records::encode(&LineRecord {
                        side: o.side,
                        payer: l.payer,
                        payee: l.payee,
                        redemption: l.redemption,
                        refund,
                        amount_minor: l.amount_minor,
                    })),
                ));
            }
            out.push((k.to_vec(), Some(records::encode_json(&o))));
        }
    } else if !legacy {
        // Already converted.
    } else if k == prefix::POLICIES {
        out.push((k.to_vec(), Some(records::encode_json(&cx.policies))));
    } else if k.starts_with(prefix::ACCOUNT) {
        let _: AccountId = name(k, prefix::ACCOUNT)?;
        let b: i128 = std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| RecordError::at(k, "balance is not an integer"))?;
        out.push((k.to_vec(), Some(records::encode(&b))));
    } else if k.starts_with(prefix::HOLD) {
        let id: EntryId = name(k, prefix::HOLD)?;
        let h: OldHold = json(k, v)?;
        let status = match h.status {
            OldHoldStatus::Open => HoldStatus::Open,
            OldHoldStatus::Posted(i) => HoldStatus::Posted(i),
            OldHoldStatus::Voided(i) => HoldStatus::Voided(i),
        };
        if status == HoldStatus::Open {
            out.push((records::due_hold_key(h.expires_at, &id), Some(Vec::new())));
        }
        let h = HoldState {
            index: h.index,
            member: h.member,
            points: h.points,
            expires_at: h.expires_at,
            payee: h.payee,
            condition: h.condition,
            authorisation: h.authorisation,
            portions: h.portions.into_iter().map(Portion::from).collect(),
            status,
        };
        out.push((k.to_vec(), Some(records::encode(&h))));
    } else if k.starts_with(prefix::REDEMPTION) {
        let r: OldRedemption = json(k, v)?;
        let r = RedemptionState {
            index: r.index,
            member: r.member,
            points: r.points,
            refunded: r.refunded,
            account: r.account,
            obligation: r.obligation,
            portions: r.portions.into_iter().map(Portion::from).collect(),
        };
        out.push((k.to_vec(), Some(records::encode(&r))));
    } else if k.starts_with(prefix::ID) {
        let r: OldId = json(k, v)?;
        let intent: [u8; 32] = hex::decode(&r.intent)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| RecordError::at(k, "intent is not 32 hex bytes"))?;
        let r = IdRecord {
            index: r.index,
            intent,
        };
        out.push((k.to_vec(), Some(records::encode(&r))));
    } else if k.starts_with(prefix::AUTHORISATION) {
        let a: OldAuthorisation = json(k, v)?;
        let a = AuthorisationState {
            index: a.index,
            member: a.member,
            payee: a.payee,
            max_points: a.max_points,
            expires_at: a.expires_at,
            used_by: a.used_by,
        };
        out.push((k.to_vec(), Some(records::encode(&a))));
    } else if k.starts_with(prefix::AGREEMENT) {
        let a: AgreementState = json(k, v)?;
        out.push((k.to_vec(), Some(records::encode_json(&a))));
    } else if k.starts_with(prefix::QUOTE) {
        let q: QuoteState = json(k, v)?;
        out.push((k.to_vec(), Some(records::encode_json(&q))));
    } else {
        return Err(RecordError::at(k, "unknown record kind"));
    }
    Ok(out)
}

fn member(cx: &Context, id: &MemberId, m: OldMember, out: &mut Writes) {
    let mut s = MemberState {
        balance: m.balance,
        pending: m.pending,
        tier: m.tier,
        tier_since: m.tier_since,
        lots: m.lots.len() as u64,
        open_lot: None,
        qualifying: m.qualifying.len() as u64,
        tier_due: None,
        qualifying_from_ms: m.qualifying.first().map_or(0, |(t, _)| t.get()),
        // A member's only lot, when it never expires, is kept in the summary (as the state
        // machine keeps it, `State::settle_open_lot`); other lots are records.
        open_lot_inline: matches!(&m.lots[..], [l] if l.expires_at.is_none()),
    };
    for l in &m.lots {
        match l.expires_at {
            Some(e) => out.push((records::due_lot_key(e, id, l.id), Some(Vec::new()))),
            None => s.open_lot = Some(l.id),
        }
        if !s.open_lot_inline {
            out.push((
                records::lot_key(id, l.expires_at, l.id),
                Some(records::encode(&l.remaining)),
            ));
        }
    }
    for (t, p) in &m.qualifying {
        out.push((records::qualifying_key(id, *t), Some(records::encode(p))));
    }
    // The due time as the state machine indexes it: evaluated when the member last earned
    // qualifying points or changed tier, whichever was later.
    if let Some(policy) = &cx.policies.tier {
        let last = m.qualifying.last().map(|(t, _)| *t);
        let at = last.map_or(s.tier_since, |t| t.max(s.tier_since));
        if last.is_some() || s.tier.is_some() {
            let current = s
                .tier
                .clone()
                .unwrap_or_else(|| policy.tiers[0].name.clone());
            s.tier_due = match policy.tiers.iter().position(|t| t.name == current) {
                Some(rank) => tier::tier_valid_until(policy, &m.qualifying, rank, at),
                None => Some(at),
            };
            if let Some(d) = s.tier_due {
                out.push((records::due_tier_key(d, id), Some(Vec::new())));
            }
        }
    }
    out.push((
        records::named(prefix::MEMBER, id.as_str()),
        Some(s.encode()),
    ));
}

/// The writes that complete a migration: the open payable totals, the line totals of every
/// agreement and settlement period and, last, the meta record in the current format (which
/// marks the store as migrated).
pub fn finish(cx: &Context, old_meta: &[u8]) -> Result<Writes, RecordError> {
    let meta: super::Meta = if is_legacy(old_meta) {
        let m: OldMeta = json(prefix::META, old_meta)?;
        super::Meta {
            size: m.size,
            last_time: m.last_time,
            members: cx.members,
        }
    } else {
        records::decode(old_meta).map_err(|e| RecordError::at(prefix::META, e))?
    };
    let mut out: Writes = cx
        .open_payables
        .iter()
        .map(|(a, v)| {
            (
                records::named(prefix::OPEN_PAYABLE, a.as_str()),
                Some(records::encode(v)),
            )
        })
        .collect();
    for (a, t) in &cx.totals {
        out.push((
            records::named(prefix::TOTALS, a.as_str()),
            Some(records::encode(t)),
        ));
    }
    for (a, periods) in &cx.period_totals {
        for (k, t) in periods {
            out.push((records::period_totals_key(a, *k), Some(records::encode(t))));
        }
    }
    out.push((prefix::META.to_vec(), Some(records::encode(&meta))));
    Ok(out)
}
