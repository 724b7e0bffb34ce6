//! The write routes' request bodies and the answer to a write (spec/api.md).
//!
//! Requests are built from the ledger's newtypes ([`EntryId`], [`Points`], [`LogTime`], ...),
//! so a value the node would refuse as out of range cannot be constructed.

use ledger::entry::{
    Adjust, Direction, Earn, EntryKind, ExpiryPolicy, FxRate, HexBytes, HexHash, Hold, Post,
    RateCard, Redeem, Refund, SpendAuthorisation, Tier, TierPolicy, Void,
};
use ledger::money::{Currency, Decimal};
use ledger::receipt::Receipt;
use ledger::types::{BrandId, DurationMs, EntryId, LogTime, MemberId, Points};
use serde::{Deserialize, Serialize};

/// `POST /v1/members/{member}/earn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = EarnBody))]
pub struct EarnRequest {
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub id: EntryId,
    #[cfg_attr(feature = "utoipa", schema(value_type = u64, minimum = 1))]
    pub points: Points,
    /// Whether the points count towards tiers (default true).
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

/// One earn of a `POST /v1/earns` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct EarnItem {
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub member: MemberId,
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub id: EntryId,
    #[cfg_attr(feature = "utoipa", schema(value_type = u64, minimum = 1))]
    pub points: Points,
    /// Whether the points count towards tiers (default true).
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

/// `POST /v1/members/{member}/redeem`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = RedeemBody))]
pub struct RedeemRequest {
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub id: EntryId,
    #[cfg_attr(feature = "utoipa", schema(value_type = u64, minimum = 1))]
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

/// `POST /v1/members/{member}/adjust`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = AdjustBody))]
pub struct AdjustRequest {
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub id: EntryId,
    #[cfg_attr(feature = "utoipa", schema(value_type = u64, minimum = 1))]
    pub points: Points,
    /// `credit` or `debit`.
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub direction: Direction,
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
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = HoldBody))]
pub struct HoldRequest {
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub id: EntryId,
    #[cfg_attr(feature = "utoipa", schema(value_type = u64, minimum = 1))]
    pub points: Points,
    /// Log time (ms) from which the hold can no longer be posted.
    #[cfg_attr(feature = "utoipa", schema(value_type = u64))]
    pub expires_at: LogTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<String>))]
    pub payee: Option<BrandId>,
    /// Hex SHA-256 of the preimage that posting must reveal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<String>))]
    pub condition: Option<HexHash>,
    /// The spend authorisation (its id) the member's brand issued for `payee`; required when
    /// there is a payee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<String>))]
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

/// `POST /v1/members/{member}/authorisations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = AuthorisationBody))]
pub struct AuthoriseRequest {
    /// The authorisation's id (a hold names it).
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub id: EntryId,
    /// The only partner brand that may hold the points.
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub payee: BrandId,
    #[cfg_attr(feature = "utoipa", schema(value_type = u64, minimum = 1))]
    pub max_points: Points,
    /// Log time from which it can no longer be used.
    #[cfg_attr(feature = "utoipa", schema(value_type = u64))]
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

/// `PUT /v1/policy/fx-rate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = FxRateBody))]
pub struct SetFxRateRequest {
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub id: EntryId,
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub from: Currency,
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub to: Currency,
    /// Units of `to` per one unit of `from`, an exact decimal string.
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub rate: Decimal,
    #[cfg_attr(feature = "utoipa", schema(value_type = u64))]
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
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = PostBody))]
pub struct PostRequest {
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub id: EntryId,
    /// Hex preimage of the hold's condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<String>))]
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
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = VoidBody))]
pub struct VoidRequest {
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
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
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = RefundBody))]
pub struct RefundRequest {
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub id: EntryId,
    #[cfg_attr(feature = "utoipa", schema(value_type = u64, minimum = 1))]
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

/// `PUT /v1/policy/tiers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = TiersBody))]
pub struct SetTiersRequest {
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub id: EntryId,
    #[cfg_attr(feature = "utoipa", schema(value_type = Vec<Object>))]
    pub tiers: Vec<Tier>,
    #[cfg_attr(feature = "utoipa", schema(value_type = u64))]
    pub window_ms: DurationMs,
    #[cfg_attr(feature = "utoipa", schema(value_type = u64))]
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

/// `PUT /v1/policy/expiry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = ExpiryBody))]
pub struct SetExpiryRequest {
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub id: EntryId,
    /// Lot lifetime; omit for points that never expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<u64>))]
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

/// `PUT /v1/policy/rate-card`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = RateCardBody))]
pub struct SetRateCardRequest {
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub id: EntryId,
    /// ISO 4217 code with a minor unit.
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub currency: Currency,
    /// Exact decimal string, e.g. "0.0125".
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub point_value: Decimal,
    #[cfg_attr(feature = "utoipa", schema(value_type = u64))]
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

/// Answer to a write: whether it was logged now, and its receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct WriteResponse {
    /// `appended` (logged now) or `existing` (the same write was logged before).
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub status: WriteStatus,
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub receipt: Receipt,
}

/// Most earns in one `POST /v1/earns` request.
pub const EARNS_PER_REQUEST_MAX: usize = 500;

/// `POST /v1/earns`: up to [`EARNS_PER_REQUEST_MAX`] earns, committed in one synced batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct EarnsBody {
    pub earns: Vec<EarnItem>,
}

/// What became of one earn of a `POST /v1/earns` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EarnStatus {
    /// Logged by this request.
    Appended,
    /// Logged before under the same id.
    Existing,
    /// Refused on its own (the request's other earns are unaffected); see `problem`.
    Refused,
    /// Not committed because the node failed (a 5xx problem); retrying with the same id is safe.
    Failed,
    /// A status this version does not know (a newer node's); read only, never sent.
    #[serde(other)]
    Unknown,
}

/// The outcome of one earn of a `POST /v1/earns` request, in request order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "utoipa", schema(as = EarnOutcome))]
pub struct EarnAnswer {
    /// `appended`, `existing` (the same earn was logged before under this id) or `refused`.
    #[cfg_attr(feature = "utoipa", schema(value_type = String))]
    pub status: EarnStatus,
    /// The entry's log index (not for `refused`); its receipt is
    /// `GET /v1/log/entries/{index}/receipt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// Why this earn was refused (the others are unaffected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(value_type = Object))]
    pub problem: Option<serde_json::Value>,
}

/// Answer to `POST /v1/earns`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct EarnsResponse {
    /// The signed checkpoint that covers every appended or existing earn of the request.
    pub checkpoint: String,
    /// Its tree size.
    pub size: u64,
    pub results: Vec<EarnAnswer>,
}
