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

/// One earn of a `POST /v1/earns` request.
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

