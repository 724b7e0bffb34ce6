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

/// `GET /v1/holds/{hold}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldInfo {
    /// The hold's id.
    pub id: EntryId,
    /// The index of the hold entry.
    pub index: u64,
    /// Whose points are held.
    pub member: MemberId,
    /// Points held.
    pub points: u64,
    /// When the hold expires.
    pub expires_at: LogTime,
    /// The partner brand the points are held for.
    #[serde(default)]
    pub payee: Option<BrandId>,
    /// Open, posted or voided.
    pub status: HoldStatusKind,
    /// The index of the entry that posted or voided the hold.
    #[serde(default)]
    pub resolved_index: Option<u64>,
}

/// One lot of a member: points credited at once, with one expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LotInfo {
    /// The lot, named by the index of the entry that created it.
    pub lot: LogIndex,
    /// Points left in the lot.
    pub remaining: u64,
    /// When the lot's points expire; `None` for never.
    #[serde(default)]
    pub expires_at: Option<LogTime>,
}

/// `GET /v1/members/{member}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// The member.
    pub member: MemberId,
    /// Points in the member's lots, including held and expired-not-yet-logged ones.
    pub balance: u64,
    /// Points spendable now.
    pub available: u64,
    /// Points in open holds.
    pub pending: u64,
    /// The member's tier, when a tier policy is in force.
    #[serde(default)]
    pub tier: Option<TierName>,
    /// Until when the member keeps the tier without earning more.
    #[serde(default)]
    pub tier_valid_until: Option<LogTime>,
    /// The first lots (at most 50), soonest-expiring first; `Client::member_lots` (SDK)
    /// pages on from `lots_next_cursor`.
    #[serde(default)]
    pub lots: Vec<LotInfo>,
    /// How many lots the member has.
    #[serde(default)]
    pub lots_total: u64,
    /// Cursor for the next page of lots; `None` when `lots` holds them all.
    #[serde(default)]
    pub lots_next_cursor: Option<String>,
}

/// `GET /v1/members/{member}/lots`: one page of a member's lots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LotsPage {
    /// Lots, soonest-expiring first.
    pub lots: Vec<LotInfo>,
    /// Cursor for the next page; `None` on the last.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// One entry of a member's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryItem {
    /// The entry's log index.
    pub index: u64,
    /// The entry, decoded.
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

/// `GET /v1/members/{member}/history`: one page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    /// Entries about the member, in log order.
    pub entries: Vec<HistoryItem>,
    /// Pass back as `cursor` for the next page; `None` at the end.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// A rate card in force or scheduled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateCardInfo {
    /// The index of the rate card's entry.
    pub index: u64,
    /// The base fiat currency.
    pub currency: Currency,
    /// The value of one point.
    pub point_value: Decimal,
    /// From when it applies.
    pub valid_from: LogTime,
}

/// `GET /v1/policy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    /// The tier policy, if any.
    #[serde(default)]
    pub tier: Option<TierPolicy>,
    /// The expiry policy, if any.
    #[serde(default)]
    pub expiry: Option<ExpiryPolicy>,
    /// Rate cards, oldest first.
    #[serde(default)]
    pub rate_cards: Vec<RateCardInfo>,
}

