//! Request and response bodies of the node's HTTP API (spec/api.md), as typed structs.
//!
//! Requests are built from the ledger's newtypes ([`EntryId`], [`Points`], [`LogTime`], ...),
//! so a value the node would refuse as out of range cannot be constructed. Responses are
//! decoded leniently about *extra* fields (a newer node may add some) and strictly about the
//! fields they carry.

use std::fmt;
use std::str::FromStr;

use ledger::checkpoint::{NoteError, NoteVerifier};
use ledger::entry::{
    Adjust, Direction, Earn, Entry, EntryKind, ExpiryPolicy, FxRate, HexBytes, HexHash, Hold, Post,
    RateCard, Redeem, Refund, SpendAuthorisation, Tier, TierPolicy, Void,
};
use ledger::money::{Currency, Decimal};
use ledger::receipt::Receipt;
use ledger::types::{BrandId, DurationMs, EntryId, LogIndex, LogTime, MemberId, Points, TierName};
use serde::{Deserialize, Deserializer, Serialize};

/// The most items one page may ask for (`limit`), per spec/api.md.
pub const PAGE_LIMIT_MAX: u32 = 1000;
/// The most entries one `GET /v1/log/entries` may ask for.
pub const LOG_ENTRIES_PAGE_MAX: u64 = 1000;

/// `POST /v1/members/{member}/earn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarnRequest {
    /// The write's idempotency id.
    pub id: EntryId,
    /// Points credited.
    pub points: Points,
    /// Whether the points count towards tiers; `None` means the node's default, true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualifying: Option<bool>,
}

impl EarnRequest {
    /// Earn `points` qualifying points under idempotency id `id`.
    pub fn new(id: EntryId, points: Points) -> Self {
        EarnRequest {
            id,
            points,
            qualifying: None,
        }
    }

    /// The same request for points that do not count towards tiers.
    pub fn non_qualifying(mut self) -> Self {
        self.qualifying = Some(false);
        self
    }

    /// The entry kind the node logs for this request.
    pub fn entry_kind(&self, member: &MemberId) -> EntryKind {
        EntryKind::Earn(Earn {
            member: member.clone(),
            points: self.points,
            qualifying: self.qualifying.unwrap_or(true),
        })
    }
}

/// One earn of a [`Client::earn_many`](crate::Client::earn_many) request (`POST /v1/earns`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarnItem {
    /// The member credited.
    pub member: MemberId,
    /// The write's idempotency id.
    pub id: EntryId,
    /// Points credited.
    pub points: Points,
    /// Whether the points count towards tiers; `None` means the node's default, true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualifying: Option<bool>,
}

impl EarnItem {
    /// `points` qualifying points for `member` under idempotency id `id`.
    pub fn new(member: MemberId, id: EntryId, points: Points) -> Self {
        EarnItem {
            member,
            id,
            points,
            qualifying: None,
        }
    }

    /// The entry kind the node logs for this earn.
    pub fn entry_kind(&self) -> EntryKind {
        EarnRequest {
            id: self.id.clone(),
            points: self.points,
            qualifying: self.qualifying,
        }
        .entry_kind(&self.member)
    }
}

/// What became of one earn of a `POST /v1/earns` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EarnOutcome {
    /// Logged, at this index, by this request (`appended`) or under the same id before
    /// (`existing`); its receipt is [`Client::entry_receipt`](crate::Client::entry_receipt).
    Logged {
        /// Whether this request logged it.
        status: WriteStatus,
        /// The entry's log index.
        index: u64,
    },
    /// Refused on its own (the request's other earns are unaffected).
    Refused {
        /// The HTTP status the earn would have had alone.
        status: u16,
        /// The stable error code.
        code: crate::ErrorCode,
        /// A human-readable explanation.
        detail: String,
    },
}

/// Answer to [`Client::earn_many`](crate::Client::earn_many).
#[derive(Debug, Clone)]
pub struct EarnsResult {
    /// The signed checkpoint note covering every logged earn of the request.
    pub checkpoint: String,
    /// Its tree size.
    pub size: u64,
    /// One outcome per earn, in request order.
    pub results: Vec<EarnOutcome>,
}

/// `POST /v1/members/{member}/redeem`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeemRequest {
    /// The write's idempotency id.
    pub id: EntryId,
    /// Points spent.
    pub points: Points,
}

impl RedeemRequest {
    /// Redeem `points` under idempotency id `id`.
    pub fn new(id: EntryId, points: Points) -> Self {
        RedeemRequest { id, points }
    }

    /// The entry kind the node logs for this request.
    pub fn entry_kind(&self, member: &MemberId) -> EntryKind {
        EntryKind::Redeem(Redeem {
            member: member.clone(),
            points: self.points,
        })
    }
}

/// `POST /v1/members/{member}/adjust` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdjustRequest {
    /// The write's idempotency id.
    pub id: EntryId,
    /// Points credited or debited.
    pub points: Points,
    /// Credit (to the member) or debit (from the member).
    pub direction: Direction,
    /// Why, 1 to 256 bytes without control characters.
    pub reason: String,
}

impl AdjustRequest {
    /// The entry kind the node logs for this request.
    pub fn entry_kind(&self, member: &MemberId) -> EntryKind {
        EntryKind::Adjust(Adjust {
            member: member.clone(),
            points: self.points,
            direction: self.direction,
            reason: self.reason.clone(),
        })
    }
}

/// `POST /v1/members/{member}/holds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    /// The write's idempotency id; it names the hold.
    pub id: EntryId,
    /// Points reserved.
    pub points: Points,
    /// Log time from which the hold can no longer be posted.
    pub expires_at: LogTime,
    /// The partner brand the points are held for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payee: Option<BrandId>,
    /// SHA-256 of a preimage that posting must reveal, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<HexHash>,
    /// The member's spend authorisation for `payee` (required with a payee).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorisation: Option<EntryId>,
}

impl HoldRequest {
    /// Hold `points` until `expires_at`, with no payee and no condition.
    pub fn new(id: EntryId, points: Points, expires_at: LogTime) -> Self {
        HoldRequest {
            id,
            points,
            expires_at,
            payee: None,
            condition: None,
            authorisation: None,
        }
    }

    /// The entry kind the node logs for this request.
    pub fn entry_kind(&self, member: &MemberId) -> EntryKind {
        EntryKind::Hold(Hold {
            member: member.clone(),
            points: self.points,
            expires_at: self.expires_at,
            payee: self.payee.clone(),
            condition: self.condition,
            authorisation: self.authorisation.clone(),
        })
    }
}

/// `POST /v1/members/{member}/authorisations`: the member lets one partner hold their points
/// once (spec/protocol.md §4.10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthoriseRequest {
    /// The authorisation's id (idempotency id; a hold names it).
    pub id: EntryId,
    /// The only partner that may hold the points.
    pub payee: BrandId,
    /// The most points the hold may take.
    pub max_points: Points,
    /// Log time from which it can no longer be used.
    pub expires_at: LogTime,
}

impl AuthoriseRequest {
    /// The entry kind the node logs for this request.
    pub fn entry_kind(&self, member: &MemberId) -> EntryKind {
        EntryKind::SpendAuthorisation(SpendAuthorisation {
            member: member.clone(),
            payee: self.payee.clone(),
            max_points: self.max_points,
            expires_at: self.expires_at,
        })
    }
}

/// `PUT /v1/policy/fx-rate`: an FX rate, exact, valid from a log time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetFxRateRequest {
    /// The write's idempotency id.
    pub id: EntryId,
    pub from: Currency,
    pub to: Currency,
    /// Units of `to` per one unit of `from` (sent as a string).
    pub rate: Decimal,
    /// Log time from which the rate applies; not before it is logged.
    pub valid_from: LogTime,
}

impl SetFxRateRequest {
    /// The entry kind the node logs for this request.
    pub fn entry_kind(&self) -> EntryKind {
        EntryKind::FxRate(FxRate {
            from: self.from,
            to: self.to,
            rate: self.rate,
            valid_from: self.valid_from,
        })
    }
}

/// `POST /v1/holds/{hold}/post`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostRequest {
    /// The write's idempotency id.
    pub id: EntryId,
    /// The preimage of the hold's condition, required when the hold has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preimage: Option<HexBytes>,
}

impl PostRequest {
    /// Post a hold without a condition.
    pub fn new(id: EntryId) -> Self {
        PostRequest { id, preimage: None }
    }

    /// The entry kind the node logs for this request.
    pub fn entry_kind(&self, hold: &EntryId) -> EntryKind {
        EntryKind::Post(Post {
            hold: hold.clone(),
            preimage: self.preimage.clone(),
        })
    }
}

/// `POST /v1/holds/{hold}/void`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoidRequest {
    /// The write's idempotency id.
    pub id: EntryId,
}

impl VoidRequest {
    /// The entry kind the node logs for this request.
    pub fn entry_kind(&self, hold: &EntryId) -> EntryKind {
        EntryKind::Void(Void { hold: hold.clone() })
    }
}

/// `POST /v1/redemptions/{redemption}/refund`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// The write's idempotency id.
    pub id: EntryId,
    /// Points returned; at most what is left of the redemption.
    pub points: Points,
}

impl RefundRequest {
    /// The entry kind the node logs for this request.
    pub fn entry_kind(&self, redemption: &EntryId) -> EntryKind {
        EntryKind::Refund(Refund {
            redemption: redemption.clone(),
            points: self.points,
        })
    }
}

/// `PUT /v1/policy/tiers` (admin): replaces the tier policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetTiersRequest {
    /// The write's idempotency id.
    pub id: EntryId,
    /// Tiers by strictly ascending threshold; the first has threshold 0.
    pub tiers: Vec<Tier>,
    /// Length of the rolling qualification window.
    pub window_ms: DurationMs,
    /// How long a member keeps a tier after no longer qualifying.
    pub grace_ms: DurationMs,
}

impl SetTiersRequest {
    /// The entry kind the node logs for this request.
    pub fn entry_kind(&self) -> EntryKind {
        EntryKind::TierPolicy(TierPolicy {
            tiers: self.tiers.clone(),
            window_ms: self.window_ms,
            grace_ms: self.grace_ms,
        })
    }
}

/// `PUT /v1/policy/expiry` (admin): replaces the expiry policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetExpiryRequest {
    /// The write's idempotency id.
    pub id: EntryId,
    /// How long a lot lives; `None` means points never expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot_lifetime_ms: Option<DurationMs>,
}

impl SetExpiryRequest {
    /// The entry kind the node logs for this request.
    pub fn entry_kind(&self) -> EntryKind {
        EntryKind::ExpiryPolicy(ExpiryPolicy {
            lot_lifetime_ms: self.lot_lifetime_ms,
        })
    }
}

/// `PUT /v1/policy/rate-card` (admin): publishes a rate card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRateCardRequest {
    /// The write's idempotency id.
    pub id: EntryId,
    /// The brand's base fiat currency.
    pub currency: Currency,
    /// The value of one point, an exact decimal (sent as a string).
    pub point_value: Decimal,
    /// Log time from which the card applies; not before it is logged.
    pub valid_from: LogTime,
}

impl SetRateCardRequest {
    /// The entry kind the node logs for this request.
    pub fn entry_kind(&self) -> EntryKind {
        EntryKind::RateCard(RateCard {
            currency: self.currency,
            point_value: self.point_value,
            valid_from: self.valid_from,
        })
    }
}

/// Whether a write was logged now or earlier under the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteStatus {
    /// The entry was logged by this request.
    Appended,
    /// The same id with the same body was logged before; the receipt is the original's.
    Existing,
}

/// A write's answer as sent on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteResponse {
    /// Logged now or before.
    pub status: WriteStatus,
    /// Proof that the entry is in the log.
    pub receipt: Receipt,
}

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
    /// The first lots (at most 50), soonest-expiring first; [`crate::Client::member_lots`]
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

/// What an API key may do (admin implies every scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read members, holds, history and policy.
    Read,
    /// Earn points.
    Earn,
    /// Redeem, hold, post, void, refund.
    Redeem,
    /// Everything, including adjustments, policy and keys.
    Admin,
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Scope::Read),
            "earn" => Ok(Scope::Earn),
            "redeem" => Ok(Scope::Redeem),
            "admin" => Ok(Scope::Admin),
            _ => Err(format!("unknown scope {s:?} (read, earn, redeem, admin)")),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Read => "read",
            Scope::Earn => "earn",
            Scope::Redeem => "redeem",
            Scope::Admin => "admin",
        })
    }
}

/// `POST /v1/admin/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// A name for people (which app uses the key).
    pub name: String,
    /// What the key may do.
    pub scopes: Vec<Scope>,
}

/// A key just created; `key` is shown this once and never again.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedKey {
    /// The key's public id.
    pub key_id: String,
    /// The secret API key.
    pub key: String,
    /// Its name.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<Scope>,
}

impl fmt::Debug for CreatedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        f.debug_struct("CreatedKey")
            .field("key_id", &self.key_id)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// One API key, as listed (without its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The key's public id.
    pub key_id: String,
    /// Its name.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<Scope>,
    /// Creation time, Unix ms.
    pub created_at: u64,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// `GET /v1/admin/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyList {
    /// Every key.
    pub keys: Vec<KeyInfo>,
}

/// `DELETE /v1/admin/keys/{key_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedKey {
    /// The revoked key's id.
    pub key_id: String,
    /// Always true.
    pub revoked: bool,
}

/// `GET /v1/log/key`: the node's own statement of its log key.
///
/// A verifier must pin the key it got out of band (from the brand's website, a partner's
/// config, ...); this answer is only a convenience to compare against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogKey {
    /// The log's origin (the key's name).
    pub origin: String,
    /// The C2SP verifier key string.
    pub verifier_key: String,
}

/// `GET /v1/log/time`: the node's log time (spec/api.md, "The node's log time").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogTimeView {
    /// The earliest log time the node's next entry can get. Choose a future `valid_from` or
    /// `expires_at` from it (plus a margin for the request's queueing), not from your clock.
    pub now: u64,
    /// The latest signed checkpoint's size.
    pub size: u64,
    /// The time of the latest entry under that checkpoint (`None` for an empty log).
    pub last_entry_time: Option<u64>,
}

impl LogKey {
    /// Parses the verifier key string.
    pub fn verifier(&self) -> Result<NoteVerifier, NoteError> {
        NoteVerifier::parse(&self.verifier_key)
    }
}

/// One entry of the log as served by `GET /v1/log/entries`: its canonical bytes as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Its index.
    pub index: u64,
    /// Its canonical bytes (UTF-8 JSON), verbatim.
    pub entry: String,
}

/// `GET /v1/log/entries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntries {
    /// Entries in index order.
    pub entries: Vec<LogEntry>,
}

/// `GET /v1/log/proof/inclusion`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The leaf index.
    pub index: u64,
    /// The tree size.
    pub size: u64,
    /// The RFC 6962 audit path.
    pub proof: Vec<HexHash>,
}

/// `GET /v1/log/proof/consistency`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// The old tree size.
    pub old: u64,
    /// The new tree size.
    pub new: u64,
    /// The RFC 6962 consistency path.
    pub proof: Vec<HexHash>,
}

/// One signed checkpoint as listed by `GET /v1/log/checkpoints`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointItem {
    /// The tree size the node says it signed.
    pub size: u64,
    /// The signed note (C2SP tlog-checkpoint), unverified.
    pub note: String,
}

/// `GET /v1/log/checkpoints`: one page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointPage {
    /// Checkpoints by increasing size.
    pub checkpoints: Vec<CheckpointItem>,
    /// Pass back as `cursor` for the next page; `None` at the end.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// The C2SP tlog-tiles path of tile index `n` (`1234067` is `x001/x234/067`).
pub use ledger::tiles::tile_index_path;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(s: &str) -> EntryId {
        s.parse().unwrap()
    }

    #[test]
    fn earn_request_omits_the_default_qualifying_flag() {
        let r = EarnRequest::new(id("e-1"), Points::new(100).unwrap());
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"id":"e-1","points":100})
        );
        let r = r.non_qualifying();
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"id":"e-1","points":100,"qualifying":false})
        );
    }

    #[test]
    fn write_requests_serialize_exactly_as_the_api_says() {
        let h = HoldRequest {
            condition: Some(HexHash([0xab; 32])),
            payee: Some("brand-b".parse().unwrap()),
            ..HoldRequest::new(
                id("h-1"),
                Points::new(5).unwrap(),
                LogTime::new(99).unwrap(),
            )
        };
        assert_eq!(
            serde_json::to_value(&h).unwrap(),
            json!({"id":"h-1","points":5,"expires_at":99,"payee":"brand-b","condition":"ab".repeat(32)})
        );
        let p = PostRequest {
            id: id("p-1"),
            preimage: Some(HexBytes(vec![1, 2])),
        };
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"id":"p-1","preimage":"0102"})
        );
        let a = AdjustRequest {
            id: id("a-1"),
            points: Points::new(7).unwrap(),
            direction: Direction::Debit,
            reason: "goodwill".into(),
        };
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            json!({"id":"a-1","points":7,"direction":"debit","reason":"goodwill"})
        );
        let r = SetRateCardRequest {
            id: id("r-1"),
            currency: "EUR".parse().unwrap(),
            point_value: "0.0125".parse().unwrap(),
            valid_from: LogTime::new(1000).unwrap(),
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"id":"r-1","currency":"EUR","point_value":"0.0125","valid_from":1000})
        );
        let e = SetExpiryRequest {
            id: id("x-1"),
            lot_lifetime_ms: None,
        };
        assert_eq!(serde_json::to_value(&e).unwrap(), json!({"id":"x-1"}));
        let k = CreateKeyRequest {
            name: "pos".into(),
            scopes: vec![Scope::Earn, Scope::Read],
        };
        assert_eq!(
            serde_json::to_value(&k).unwrap(),
            json!({"name":"pos","scopes":["earn","read"]})
        );
    }

    #[test]
    fn bad_values_are_refused_before_anything_is_sent() {
        assert!(serde_json::from_value::<EarnRequest>(json!({"id":"e","points":0})).is_err());
        assert!(serde_json::from_value::<EarnRequest>(json!({"id":"a b","points":1})).is_err());
        assert!("alice@example.com".parse::<MemberId>().is_err());
        assert!(Points::new(1 << 53).is_err());
    }

    #[test]
    fn responses_decode_from_the_api_shapes() {
        let m: MemberInfo = serde_json::from_value(json!({
            "member":"m1","balance":10,"available":8,"pending":2,"tier":null,
            "tier_valid_until":null,"lots":[{"lot":3,"remaining":10,"expires_at":null}]
        }))
        .unwrap();
        assert_eq!(m.lots[0].lot, LogIndex::new(3).unwrap());
        let h: HistoryPage = serde_json::from_value(json!({
            "entries":[{"index":0,"entry":{"body":{"member":"m1","points":10},"id":"e-1","time":5,"type":"earn","v":1}}],
            "next_cursor":null
        }))
        .unwrap();
        assert_eq!(h.entries[0].entry.id, id("e-1"));
        let hold: HoldInfo = serde_json::from_value(json!({
            "id":"h-1","index":4,"member":"m1","points":3,"expires_at":100,"payee":null,
            "status":"posted","resolved_index":6
        }))
        .unwrap();
        assert_eq!(hold.status, HoldStatusKind::Posted);
        let p: PolicyInfo = serde_json::from_value(json!({
            "tier":{"tiers":[{"name":"blue","threshold":0}],"window_ms":10,"grace_ms":0},
            "expiry":{"lot_lifetime_ms":5},
            "rate_cards":[{"index":1,"currency":"EUR","point_value":"0.01","valid_from":7}]
        }))
        .unwrap();
        assert_eq!(p.rate_cards[0].point_value.to_string(), "0.01");
    }
}
