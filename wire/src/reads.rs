//! The read routes' views: members, lots, holds, history, policy (spec/api.md).
//!
//! Responses are decoded leniently about *extra* fields (a newer node may add some) and
//! strictly about the fields they carry.

use ledger::entry::{Entry, ExpiryPolicy, TierPolicy};
use ledger::money::{Currency, Decimal};
use ledger::types::{BrandId, EntryId, LogIndex, LogTime, MemberId, TierName};
use serde::{Deserialize, Deserializer, Serialize};

/// The status of a hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldStatusKind {
    /// Neither posted nor voided.
    Open,
    /// Posted: its points are redeemed.
    Posted,
    /// Voided or released after expiry: its points went back.
    Voided,
}

/// A hold and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = HoldView))]
pub struct HoldInfo {
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub id: EntryId,
    pub index: u64,
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub member: MemberId,
    pub points: u64,
    #[cfg_attr(feature = "utoipa", schema(value_type = u64))]
    pub expires_at: LogTime,
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<String>))]
    pub payee: Option<BrandId>,
    /// `open`, `posted` or `voided`.
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub status: HoldStatusKind,
    /// Index of the post or void entry.
    pub resolved_index: Option<u64>,
}

/// One lot of a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = LotView))]
pub struct LotInfo {
    /// Index of the entry that created the lot.
    #[cfg_attr(feature = "utoipa", schema(value_type = u64))]
    pub lot: LogIndex,
    pub remaining: u64,
    /// Log time the lot expires at; null for never.
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<u64>))]
    pub expires_at: Option<LogTime>,
}

/// A member's points and tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = MemberView))]
pub struct MemberInfo {
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub member: MemberId,
    /// Points in lots (including lots past expiry not yet expired by an entry).
    pub balance: u64,
    /// Points spendable now.
    pub available: u64,
    /// Points in open holds.
    pub pending: u64,
    /// The recorded tier, evaluated as the log records it (null without a tier policy); a
    /// change that is due is logged by the node within its housekeeping interval.
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<String>))]
    pub tier: Option<TierName>,
    /// When the tier lapses without further earning, at the time of the read (null: never or
    /// no policy).
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<u64>))]
    pub tier_valid_until: Option<LogTime>,
    /// The first lots, soonest-expiring first (at most 50; `lots_next_cursor` pages on
    /// through `GET /v1/members/{member}/lots`).
    #[serde(default)]
    #[cfg_attr(feature = "utoipa", schema(required = true))]
    pub lots: Vec<LotInfo>,
    /// How many lots the member has.
    #[serde(default)]
    #[cfg_attr(feature = "utoipa", schema(required = true))]
    pub lots_total: u64,
    /// Cursor for the next page of lots; null when `lots` holds them all.
    pub lots_next_cursor: Option<String>,
}

/// One page of a member's lots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct LotsPage {
    pub lots: Vec<LotInfo>,
    /// Cursor for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// One entry of a history page.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct HistoryItem {
    pub index: u64,
    /// The decoded entry.
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub entry: Entry,
}

impl<'de> Deserialize<'de> for HistoryItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            index: u64,
            entry: serde_json::Value,
        }
        let w = Wire::deserialize(d)?;
        let entry = Entry::from_value(w.entry).map_err(serde::de::Error::custom)?;
        Ok(HistoryItem {
            index: w.index,
            entry,
        })
    }
}

impl Serialize for HistoryItem {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("HistoryItem", 2)?;
        st.serialize_field("index", &self.index)?;
        st.serialize_field("entry", &self.entry.to_value())?;
        st.end()
    }
}

/// A page of a member's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct HistoryPage {
    pub entries: Vec<HistoryItem>,
    pub next_cursor: Option<String>,
}

/// A rate card in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = RateCardView))]
pub struct RateCardInfo {
    pub index: u64,
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub currency: Currency,
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub point_value: Decimal,
    #[cfg_attr(feature = "utoipa", schema(value_type = u64))]
    pub valid_from: LogTime,
}

/// The brand's policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = PolicyView))]
pub struct PolicyInfo {
    #[serde(serialize_with = "keys_sorted")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<Object>))]
    pub tier: Option<TierPolicy>,
    #[serde(serialize_with = "keys_sorted")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<Object>))]
    pub expiry: Option<ExpiryPolicy>,
    pub rate_cards: Vec<RateCardInfo>,
}

/// Writes a policy as a JSON object with its members in sorted order, as the node has always
/// sent them (the policy as a `serde_json::Value`), not in the order of its fields.
fn keys_sorted<T: Serialize, S: serde::Serializer>(
    value: &Option<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    serde_json::to_value(value)
        .map_err(serde::ser::Error::custom)?
        .serialize(s)
}
