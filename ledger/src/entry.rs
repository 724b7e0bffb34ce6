//! Ledger entries and their canonical bytes (spec/protocol.md §2 and §3).
//!
//! An entry is the envelope `{"body":{..},"id":"..","time":ms,"type":"..","v":1}` in RFC 8785
//! canonical JSON. Invariant: [`Entry::from_bytes`] accepts exactly the bytes that
//! [`Entry::to_bytes`] produces, so the stored bytes are the hashed bytes are the signed bytes.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::agreement::SignedAgreement;
use crate::encoding::{self, EncodingError};
use crate::merkle::Hash;
use crate::money::{Currency, Decimal};
use crate::quote::Quote;
use crate::statement::SignedStatement;
use crate::types::{
    BrandId, DurationMs, EntryId, LogIndex, LogTime, MemberId, ParseError, Points, TierName,
    MAX_AMOUNT, REASON_LEN_MAX,
};
use crate::value::FEE_BPS_MAX;

/// The entry format version this implementation writes and reads.
pub const ENTRY_VERSION: u64 = 1;
/// The largest encoded entry, in bytes.
pub const ENTRY_BYTES_MAX: usize = 16 * 1024;
/// The most tiers a tier policy may define.
pub const TIERS_MAX: usize = 16;

/// Errors of entry decoding and validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The bytes are not canonical integer-only JSON.
    #[error(transparent)]
    Encoding(#[from] EncodingError),
    /// The `v` field names a version this implementation does not know.
    #[error("unsupported entry version {0}")]
    UnsupportedVersion(String),
    /// The `type` field names no known entry type.
    #[error("unknown entry type {0:?}")]
    UnknownType(String),
    /// A field is missing, unknown, of the wrong type, or out of range.
    #[error("invalid entry: {0}")]
    Invalid(String),
}

impl From<ParseError> for EntryError {
    fn from(e: ParseError) -> Self {
        EntryError::Invalid(e.to_string())
    }
}

fn is_true(b: &bool) -> bool {
    *b
}

fn default_true() -> bool {
    true
}

/// Credit points to a member from `issued`, creating a lot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Earn {
    pub member: MemberId,
    pub points: Points,
    /// Whether the points count towards tier qualification; omitted when true.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub qualifying: bool,
}

/// Spend a member's points (to `redeemed`), consuming lots soonest-expiring first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redeem {
    pub member: MemberId,
    pub points: Points,
}

/// Direction of an operator adjustment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Points from `adjustments` to the member (a new lot).
    Credit,
    /// Points from the member to `adjustments` (consuming lots).
    Debit,
}

/// An operator's correction, with a reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Adjust {
    pub member: MemberId,
    pub points: Points,
    pub direction: Direction,
    pub reason: String,
}

/// Expire what remains of one lot, whose expiry time has passed, to `expired`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expire {
    pub member: MemberId,
    /// The lot, named by the index of the entry that created it.
    pub lot: LogIndex,
    pub points: Points,
}

/// Reserve a member's points (to `held`) until posted, voided or expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hold {
    pub member: MemberId,
    pub points: Points,
    /// Log time from which the hold can no longer be posted.
    pub expires_at: LogTime,
    /// The partner brand the points are held for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payee: Option<BrandId>,
    /// Hex SHA-256 of a preimage that posting must reveal, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<HexHash>,
    /// The id of the `spend_authorisation` entry this hold uses up, if any
    /// (spec/protocol.md §4.10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorisation: Option<EntryId>,
}

/// Post a hold: its points move from `held` to `redeemed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Post {
    /// The id of the hold entry.
    pub hold: EntryId,
    /// The preimage of the hold's condition (hex), required when the hold has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preimage: Option<HexBytes>,
}

/// Void a hold (or release an expired one): its points return to the member's lots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Void {
    pub hold: EntryId,
}

/// Reverse (part of) a redemption or a posted hold: points return from `redeemed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refund {
    /// The id of the redeem entry or of the posted hold.
    pub redemption: EntryId,
    pub points: Points,
}

/// One tier of a tier policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub name: TierName,
    /// Qualifying points within the window needed to hold this tier.
    pub threshold: u64,
}

/// The brand's tier policy; it replaces any earlier one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierPolicy {
    /// Tiers by ascending threshold; the first has threshold 0 and is every member's base tier.
    pub tiers: Vec<Tier>,
    /// Length of the rolling qualification window.
    pub window_ms: DurationMs,
    /// How long a member keeps a tier after no longer qualifying for it.
    pub grace_ms: DurationMs,
}

/// A member's tier changes (upgrade or downgrade), as the tier rules require.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierChange {
    pub member: MemberId,
    pub from: TierName,
    pub to: TierName,
}

/// The brand states that a member holds a tier, and keeps it at least until `valid_until`
/// (spec/protocol.md §3.3, §4.6). The state machine accepts it only when it is true at the
/// entry's time, so a receipt for it is a statement a partner can check offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierAttestation {
    pub member: MemberId,
    pub tier: TierName,
    /// Until when the member keeps `tier` without earning more; omitted for the base tier,
    /// which is held forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<LogTime>,
}

/// The value of one point in the brand's base fiat currency, valid from a log time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateCard {
    pub currency: Currency,
    pub point_value: Decimal,
    pub valid_from: LogTime,
}

/// An exchange rate between two fiat currencies, valid from a log time (spec/protocol.md §3.3,
/// §4.7): `rate` units of `to` per one unit of `from`. An agreement names the pair it uses;
/// no inverse rate is derived from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FxRate {
    pub from: Currency,
    pub to: Currency,
    /// Units of `to` per one unit of `from`; exact, and always positive.
    pub rate: Decimal,
    pub valid_from: LogTime,
}

/// The member's brand lets `payee` hold up to `max_points` of the member's points, once,
/// before `expires_at` (spec/protocol.md §3.3, §4.10). The entry's id is the authorisation's
/// id, which a hold names in its `authorisation` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendAuthorisation {
    pub member: MemberId,
    /// The only brand a hold using this authorisation may be for.
    pub payee: BrandId,
    /// The most points a hold using this authorisation may take.
    pub max_points: Points,
    /// Log time from which the authorisation can no longer be used.
    pub expires_at: LogTime,
}

/// Which side of a cross-brand redemption an `obligation` entry records (spec/protocol.md §4.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObligationSide {
    /// Logged by the payer, the brand whose points were spent: it owes the amount.
    Payable,
    /// Logged by the payee, the redeeming brand: it is owed the amount.
    Receivable,
}

impl ObligationSide {
    /// The side as it is written in a body and in a state record key.
    pub fn as_str(&self) -> &'static str {
        match self {
            ObligationSide::Payable => "payable",
            ObligationSide::Receivable => "receivable",
        }
    }
}

impl std::fmt::Display for ObligationSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The payer's `obligation` entry, as a payee's receivable names it: its index in the payer's
/// log and its RFC 6962 leaf hash, so the receivable can be checked against the payer's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counterpart {
    pub index: LogIndex,
    pub leaf_hash: HexHash,
    /// The payer's entry's log time (statements place a line in a period by it).
    pub time: LogTime,
}

/// What one brand owes another for one committed cross-brand redemption
/// (spec/protocol.md §3.3, §4.12; spec/redemption.md §3 step 4). Both brands log one: the payer
/// a `payable` when it posts the hold, the payee a `receivable` naming the payer's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Obligation {
    pub side: ObligationSide,
    /// The locked quote of the redemption: payer, payee, member, points and amount.
    pub quote: Quote,
    /// The payer's `obligation` entry; present exactly on the `receivable` side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterpart: Option<Counterpart>,
}

/// One brand's side of a refund of (part of) a committed cross-brand redemption
/// (spec/protocol.md §3.3, §4.13; spec/redemption.md §3 step 7). The payee decides the refund
/// and names it; the payer logs the `payable` side, which also returns the points to the
/// member, and the payee then logs the `receivable` side naming the payer's entry. Both take
/// `amount_minor` off the redemption's obligation, by the cumulative rule of
/// [`crate::value::refund_minor`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObligationRefund {
    pub side: ObligationSide,
    /// The brand whose points were redeemed (the obligation's payer).
    pub payer: BrandId,
    /// The redemption id (the hold's id in the payer's log).
    pub redemption: EntryId,
    /// The refund's id, chosen by the payee; unique among the redemption's refunds.
    pub refund: EntryId,
    /// Points this refund returns to the member.
    pub points: Points,
    /// Minor units of the settlement currency this refund takes off the obligation (0 when the
    /// cumulative rule rounds it away).
    pub amount_minor: u64,
    /// The payer's `obligation_refund` entry; present exactly on the `receivable` side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterpart: Option<Counterpart>,
}

/// How long a lot lives after the entry that creates it; omitted means points never expire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpiryPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lot_lifetime_ms: Option<DurationMs>,
}

/// A 32-byte hash written as 64 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HexHash(pub Hash);

impl Serialize for HexHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for HexHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bytes = decode_lower_hex(&s).map_err(serde::de::Error::custom)?;
        let h: Hash = bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("a hash must be 32 bytes"))?;
        Ok(HexHash(h))
    }
}

/// Bytes (at most 64) written as lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HexBytes(pub Vec<u8>);

impl Serialize for HexBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bytes = decode_lower_hex(&s).map_err(serde::de::Error::custom)?;
        if bytes.is_empty() || bytes.len() > 64 {
            return Err(serde::de::Error::custom("a preimage is 1 to 64 bytes"));
        }
        Ok(HexBytes(bytes))
    }
}

fn decode_lower_hex(s: &str) -> Result<Vec<u8>, String> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("hex must be lowercase".into());
    }
    hex::decode(s).map_err(|e| format!("bad hex: {e}"))
}

/// What an entry does: its type tag and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Earn(Earn),
    Redeem(Redeem),
    Adjust(Adjust),
    Expire(Expire),
    Hold(Hold),
    Post(Post),
    Void(Void),
    Refund(Refund),
    TierPolicy(TierPolicy),
    TierChange(TierChange),
    RateCard(RateCard),
    ExpiryPolicy(ExpiryPolicy),
    TierAttestation(TierAttestation),
    FxRate(FxRate),
    SpendAuthorisation(SpendAuthorisation),
    /// Terms between two brands, co-signed by both (spec/protocol.md §3.3, §4.11); each brand
    /// logs the same [`SignedAgreement`].
    Agreement(SignedAgreement),
    /// A quote the redeeming brand (the payee) locks for a cross-brand redemption
    /// (spec/protocol.md §3.3, §4.11).
    Quote(Quote),
    /// One brand's side of what the payer owes the payee for one committed cross-brand
    /// redemption (spec/protocol.md §3.3, §4.12).
    Obligation(Obligation),
    /// One brand's side of a refund of a committed cross-brand redemption (spec/protocol.md
    /// §3.3, §4.13).
    ObligationRefund(ObligationRefund),
    /// A settlement statement for one period of an agreement, signed by both brands
    /// (spec/protocol.md §3.3, §4.14); each brand logs the same one.
    Statement(SignedStatement),
}

/// Every entry type tag, in the order of spec/protocol.md.
pub const ENTRY_TYPES: &[&str] = &[
    "earn",
    "redeem",
    "adjust",
    "expire",
    "hold",
    "post",
    "void",
    "refund",
    "tier_policy",
    "tier_change",
    "rate_card",
    "expiry_policy",
    "tier_attestation",
    "fx_rate",
    "spend_authorisation",
    "agreement",
    "quote",
    "obligation",
    "obligation_refund",
    "statement",
];

impl EntryKind {
    /// The `type` tag.
    pub fn type_name(&self) -> &'static str {
        match self {
            EntryKind::Earn(_) => "earn",
            EntryKind::Redeem(_) => "redeem",
            EntryKind::Adjust(_) => "adjust",
            EntryKind::Expire(_) => "expire",
            EntryKind::Hold(_) => "hold",
            EntryKind::Post(_) => "post",
            EntryKind::Void(_) => "void",
            EntryKind::Refund(_) => "refund",
            EntryKind::TierPolicy(_) => "tier_policy",
            EntryKind::TierChange(_) => "tier_change",
            EntryKind::RateCard(_) => "rate_card",
            EntryKind::ExpiryPolicy(_) => "expiry_policy",
            EntryKind::TierAttestation(_) => "tier_attestation",
            EntryKind::FxRate(_) => "fx_rate",
            EntryKind::SpendAuthorisation(_) => "spend_authorisation",
            EntryKind::Agreement(_) => "agreement",
            EntryKind::Quote(_) => "quote",
            EntryKind::Obligation(_) => "obligation",
            EntryKind::ObligationRefund(_) => "obligation_refund",
            EntryKind::Statement(_) => "statement",
        }
    }

    /// The body as a JSON value.
    pub fn body_value(&self) -> Value {
        fn v<T: Serialize>(t: &T) -> Value {
            serde_json::to_value(t).expect("entry bodies always serialize")
        }
        match self {
            EntryKind::Earn(b) => v(b),
            EntryKind::Redeem(b) => v(b),
            EntryKind::Adjust(b) => v(b),
            EntryKind::Expire(b) => v(b),
            EntryKind::Hold(b) => v(b),
            EntryKind::Post(b) => v(b),
            EntryKind::Void(b) => v(b),
            EntryKind::Refund(b) => v(b),
            EntryKind::TierPolicy(b) => v(b),
            EntryKind::TierChange(b) => v(b),
            EntryKind::RateCard(b) => v(b),
            EntryKind::ExpiryPolicy(b) => v(b),
            EntryKind::TierAttestation(b) => v(b),
            EntryKind::FxRate(b) => v(b),
            EntryKind::SpendAuthorisation(b) => v(b),
            EntryKind::Agreement(b) => v(b),
            EntryKind::Quote(b) => v(b),
            EntryKind::Obligation(b) => v(b),
            EntryKind::ObligationRefund(b) => v(b),
            EntryKind::Statement(b) => v(b),
        }
    }

    /// Appends the body as canonical JSON to `out`.
    fn write_body(&self, out: &mut Vec<u8>) {
        fn w<T: Serialize>(out: &mut Vec<u8>, t: &T) {
            encoding::jcs::write(out, t).expect("entry bodies always serialize")
        }
        match self {
            EntryKind::Earn(b) => w(out, b),
            EntryKind::Redeem(b) => w(out, b),
            EntryKind::Adjust(b) => w(out, b),
            EntryKind::Expire(b) => w(out, b),
            EntryKind::Hold(b) => w(out, b),
            EntryKind::Post(b) => w(out, b),
            EntryKind::Void(b) => w(out, b),
            EntryKind::Refund(b) => w(out, b),
            EntryKind::TierPolicy(b) => w(out, b),
            EntryKind::TierChange(b) => w(out, b),
            EntryKind::RateCard(b) => w(out, b),
            EntryKind::ExpiryPolicy(b) => w(out, b),
            EntryKind::TierAttestation(b) => w(out, b),
            EntryKind::FxRate(b) => w(out, b),
            EntryKind::SpendAuthorisation(b) => w(out, b),
            EntryKind::Agreement(b) => w(out, b),
            EntryKind::Quote(b) => w(out, b),
            EntryKind::Obligation(b) => w(out, b),
            EntryKind::ObligationRefund(b) => w(out, b),
            EntryKind::Statement(b) => w(out, b),
        }
    }

    /// Parses a body of type `type_name` from JSON, refusing unknown fields.
    pub fn from_type_and_body(type_name: &str, body: Value) -> Result<EntryKind, EntryError> {
        fn p<T: DeserializeOwned>(body: Value) -> Result<T, EntryError> {
            serde_json::from_value(body).map_err(|e| EntryError::Invalid(e.to_string()))
        }
        let kind = match type_name {
            "earn" => EntryKind::Earn(p(body)?),
            "redeem" => EntryKind::Redeem(p(body)?),
            "adjust" => EntryKind::Adjust(p(body)?),
            "expire" => EntryKind::Expire(p(body)?),
            "hold" => EntryKind::Hold(p(body)?),
            "post" => EntryKind::Post(p(body)?),
            "void" => EntryKind::Void(p(body)?),
            "refund" => EntryKind::Refund(p(body)?),
            "tier_policy" => EntryKind::TierPolicy(p(body)?),
            "tier_change" => EntryKind::TierChange(p(body)?),
            "rate_card" => EntryKind::RateCard(p(body)?),
            "expiry_policy" => EntryKind::ExpiryPolicy(p(body)?),
            "tier_attestation" => EntryKind::TierAttestation(p(body)?),
            "fx_rate" => EntryKind::FxRate(p(body)?),
            "spend_authorisation" => EntryKind::SpendAuthorisation(p(body)?),
            "agreement" => EntryKind::Agreement(p(body)?),
            "quote" => EntryKind::Quote(p(body)?),
            "obligation" => EntryKind::Obligation(p(body)?),
            "obligation_refund" => EntryKind::ObligationRefund(p(body)?),
            "statement" => EntryKind::Statement(p(body)?),
            other => return Err(EntryError::UnknownType(other.to_owned())),
        };
        kind.validate()?;
        Ok(kind)
    }

    /// Checks the rules of a body that its field types alone do not express.
    pub fn validate(&self) -> Result<(), EntryError> {
        match self {
            EntryKind::Adjust(a) => {
                if a.reason.is_empty() || a.reason.len() > REASON_LEN_MAX {
                    return Err(EntryError::Invalid(format!(
                        "reason must be 1 to {REASON_LEN_MAX} bytes"
                    )));
                }
                if a.reason.chars().any(char::is_control) {
                    return Err(EntryError::Invalid(
                        "reason must not contain control characters".into(),
                    ));
                }
            }
            EntryKind::TierPolicy(p) => {
                if p.tiers.is_empty() || p.tiers.len() > TIERS_MAX {
                    return Err(EntryError::Invalid(format!(
                        "a tier policy has 1 to {TIERS_MAX} tiers"
                    )));
                }
                if p.tiers[0].threshold != 0 {
                    return Err(EntryError::Invalid(
                        "the first tier is the base tier and has threshold 0".into(),
                    ));
                }
                for w in p.tiers.windows(2) {
                    if w[1].threshold <= w[0].threshold {
                        return Err(EntryError::Invalid(
                            "tier thresholds must be strictly ascending".into(),
                        ));
                    }
                }
                for (i, t) in p.tiers.iter().enumerate() {
                    if p.tiers[..i].iter().any(|u| u.name == t.name) {
                        return Err(EntryError::Invalid(format!(
                            "tier name {} is used twice",
                            t.name
                        )));
                    }
                }
                if p.window_ms.get() == 0 {
                    return Err(EntryError::Invalid("window_ms must be positive".into()));
                }
            }
            EntryKind::TierChange(c) if c.from == c.to => {
                return Err(EntryError::Invalid(
                    "a tier change must change the tier".into(),
                ));
            }
            EntryKind::Agreement(a) => {
                // Replay can check the terms and both signatures on their own; whether the keys
                // are the pinned ones is the node's check before logging.
                a.verify_self_consistent()
                    .map_err(|e| EntryError::Invalid(format!("{}: {e}", e.code())))?;
            }
            EntryKind::Quote(q) => validate_quote(q)?,
            EntryKind::Obligation(o) => {
                validate_quote(&o.quote)?;
                match (o.side, &o.counterpart) {
                    (ObligationSide::Receivable, None) => {
                        return Err(EntryError::Invalid(
                            "a receivable obligation must name its counterpart".into(),
                        ));
                    }
                    (ObligationSide::Payable, Some(_)) => {
                        return Err(EntryError::Invalid(
                            "a payable obligation has no counterpart".into(),
                        ));
                    }
                    _ => {}
                }
            }
            EntryKind::ObligationRefund(r) => {
                if r.amount_minor > MAX_AMOUNT {
                    return Err(EntryError::Invalid(
                        "amount_minor must be at most 2^53-1".into(),
                    ));
                }
                if (r.side == ObligationSide::Receivable) != r.counterpart.is_some() {
                    return Err(EntryError::Invalid(
                        "a receivable refund names its counterpart, and a payable one does not"
                            .into(),
                    ));
                }
            }
            EntryKind::Statement(st) if st.signatures.len() != 2 => {
                return Err(EntryError::Invalid(
                    "a statement carries exactly two signatures".into(),
                ));
            }
            EntryKind::ExpiryPolicy(ExpiryPolicy {
                lot_lifetime_ms: Some(d),
            }) if d.get() == 0 => {
                return Err(EntryError::Invalid(
                    "lot_lifetime_ms must be positive (omit it for no expiry)".into(),
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// The member an entry is about, if it is about one.
    pub fn member(&self) -> Option<&MemberId> {
        match self {
            EntryKind::Earn(b) => Some(&b.member),
            EntryKind::Redeem(b) => Some(&b.member),
            EntryKind::Adjust(b) => Some(&b.member),
            EntryKind::Expire(b) => Some(&b.member),
            EntryKind::Hold(b) => Some(&b.member),
            EntryKind::TierChange(b) => Some(&b.member),
            EntryKind::TierAttestation(b) => Some(&b.member),
            EntryKind::SpendAuthorisation(b) => Some(&b.member),
            _ => None,
        }
    }

    /// SHA-256 of the canonical `{"body":..,"type":..}`: what a write asks for, independent of
    /// when it was logged. Two writes with one id are "the same" exactly when these match.
    pub fn intent_digest(&self) -> Hash {
        // The canonical form of {"body":..,"type":..}, written in its member order.
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"{\"body\":");
        self.write_body(&mut out);
        out.extend_from_slice(b",\"type\":");
        encoding::jcs::write_str(&mut out, self.type_name());
        out.push(b'}');
        Sha256::digest(out).into()
    }
}

/// The rules of a quote body (in a `quote` or an `obligation`) that its field types alone do
/// not express.
fn validate_quote(q: &Quote) -> Result<(), EntryError> {
    if q.amount_minor == 0 || q.amount_minor > MAX_AMOUNT {
        return Err(EntryError::Invalid(
            "amount_minor must be 1 to 2^53-1".into(),
        ));
    }
    if q.payer == q.payee {
        return Err(EntryError::Invalid(
            "a quote's payer and payee must differ".into(),
        ));
    }
    if q.fee_bps > FEE_BPS_MAX {
        return Err(EntryError::Invalid("fee_bps must be 0 to 10000".into()));
    }
    if q.expires_at <= q.quoted_at {
        return Err(EntryError::Invalid(
            "a quote must expire after its quoted_at".into(),
        ));
    }
    Ok(())
}

/// One ledger entry: version 1 envelope around a typed body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Log time in ms; strictly increasing along the log.
    pub time: LogTime,
    /// The client-chosen idempotency id; unique within the log.
    pub id: EntryId,
    /// Type and body.
    pub kind: EntryKind,
}

impl Entry {
    /// The entry as a JSON value (the envelope).
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("body".into(), self.kind.body_value());
        m.insert("id".into(), Value::String(self.id.to_string()));
        m.insert("time".into(), Value::from(self.time.get()));
        m.insert("type".into(), Value::String(self.kind.type_name().into()));
        m.insert("v".into(), Value::from(ENTRY_VERSION));
        Value::Object(m)
    }

    /// The canonical bytes (RFC 8785 JSON) that are stored, hashed and signed: the envelope's
    /// members in their canonical order (`body`, `id`, `time`, `type`, `v`), the body written
    /// from its typed value (the same bytes as `encoding::to_canonical(&self.to_value())`,
    /// without building the JSON value first).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"{\"body\":");
        self.kind.write_body(&mut out);
        out.extend_from_slice(b",\"id\":");
        encoding::jcs::write_str(&mut out, self.id.as_str());
        out.extend_from_slice(b",\"time\":");
        encoding::jcs::write(&mut out, &self.time.get()).expect("an integer always serializes");
        out.extend_from_slice(b",\"type\":");
        encoding::jcs::write_str(&mut out, self.kind.type_name());
        out.extend_from_slice(b",\"v\":");
        encoding::jcs::write(&mut out, &ENTRY_VERSION).expect("an integer always serializes");
        out.push(b'}');
        out
    }

    /// Decodes canonical entry bytes. Refuses anything [`Entry::to_bytes`] would not produce.
    pub fn from_bytes(bytes: &[u8]) -> Result<Entry, EntryError> {
        // The typed decode first: it gives a better message than "non-canonical" for e.g. a
        // wrong version, so non-canonical form is reported only when the content is valid.
        // Re-encoding the typed entry then checks canonical form (and everything else the
        // typed decode let through) in one comparison.
        let value = encoding::parse_checked(bytes, ENTRY_BYTES_MAX)?;
        let entry = Entry::from_checked_value(value)?;
        if entry.to_bytes() != bytes {
            return Err(EncodingError::NonCanonical.into());
        }
        Ok(entry)
    }

    /// As [`Entry::from_bytes`], with the entry's [`EntryKind::intent_digest`]: what a
    /// decoding thread hands to a replay ([`crate::state::State::apply_with_intent`]).
    pub fn from_bytes_with_intent(bytes: &[u8]) -> Result<(Entry, Hash), EntryError> {
        let entry = Entry::from_bytes(bytes)?;
        let intent = entry.kind.intent_digest();
        Ok((entry, intent))
    }

    /// Decodes an envelope from a JSON value (no canonical-form check).
    ///
    /// Every number in it must be an integer within ±(2^53-1), as in entry bytes
    /// (`out_of_range` otherwise), so that an entry decoded from a value always encodes to
    /// bytes that [`Entry::from_bytes`] decodes back (found by the `entry_decode` fuzz target:
    /// an `expire` entry's `lot` of 3,888,888,888,888,889,000 was accepted here).
    pub fn from_value(value: Value) -> Result<Entry, EntryError> {
        encoding::check_numbers(&value)?;
        Entry::from_checked_value(value)
    }

    /// As [`Entry::from_value`], for a value whose numbers were checked already.
    fn from_checked_value(value: Value) -> Result<Entry, EntryError> {
        let Value::Object(mut m) = value else {
            return Err(EntryError::Invalid("an entry is a JSON object".into()));
        };
        for k in m.keys() {
            if !matches!(k.as_str(), "body" | "id" | "time" | "type" | "v") {
                return Err(EntryError::Invalid(format!("unknown field {k:?}")));
            }
        }
        let v = m
            .remove("v")
            .ok_or_else(|| EntryError::Invalid("missing field \"v\"".into()))?;
        if v.as_u64() != Some(ENTRY_VERSION) {
            return Err(EntryError::UnsupportedVersion(v.to_string()));
        }
        let type_name = match m.remove("type") {
            Some(Value::String(s)) => s,
            _ => return Err(EntryError::Invalid("\"type\" must be a string".into())),
        };
        let time = match m.remove("time") {
            Some(Value::Number(n)) => n
                .as_u64()
                .ok_or_else(|| {
                    EntryError::Invalid("\"time\" must be a non-negative integer".into())
                })
                .and_then(|t| Ok(LogTime::new(t)?))?,
            _ => return Err(EntryError::Invalid("\"time\" must be an integer".into())),
        };
        let id: EntryId = match m.remove("id") {
            Some(Value::String(s)) => s.try_into()?,
            _ => return Err(EntryError::Invalid("\"id\" must be a string".into())),
        };
        let body = m
            .remove("body")
            .ok_or_else(|| EntryError::Invalid("missing field \"body\"".into()))?;
        let kind = EntryKind::from_type_and_body(&type_name, body)?;
        Ok(Entry { time, id, kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn earn() -> Entry {
        Entry {
            time: LogTime::new(1_700_000_000_000).unwrap(),
            id: "e-1".parse().unwrap(),
            kind: EntryKind::Earn(Earn {
                member: "m1".parse().unwrap(),
                points: Points::new(100).unwrap(),
                qualifying: true,
            }),
        }
    }

    #[test]
    fn earn_encodes_canonically_and_round_trips() {
        let e = earn();
        let b = e.to_bytes();
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            r#"{"body":{"member":"m1","points":100},"id":"e-1","time":1700000000000,"type":"earn","v":1}"#
        );
        assert_eq!(Entry::from_bytes(&b).unwrap(), e);
    }

    #[test]
    fn an_entry_from_a_value_refuses_numbers_its_bytes_could_not_hold() {
        let v: Value = serde_json::from_str(
            r#"{"body":{"lot":3888888888888889000,"member":"m-8f3a9c","points":780},"id":"perire-0001","time":1731536003000,"type":"expire","v":1}"#,
        )
        .unwrap();
        let err = Entry::from_value(v.clone()).unwrap_err();
        assert!(
            matches!(err, EntryError::Encoding(EncodingError::OutOfRange(_))),
            "{err}"
        );
        // Within the range, the same entry decodes, and its bytes decode back to it.
        let mut ok = v;
        ok["body"]["lot"] = Value::from(9_007_199_254_740_991u64);
        let e = Entry::from_value(ok).unwrap();
        assert_eq!(Entry::from_bytes(&e.to_bytes()).unwrap(), e);
    }

    #[test]
    fn decoding_refuses_defaults_written_out() {
        let b = br#"{"body":{"member":"m1","points":100,"qualifying":true},"id":"e-1","time":1,"type":"earn","v":1}"#;
        assert_eq!(
            Entry::from_bytes(b),
            Err(EntryError::Encoding(EncodingError::NonCanonical))
        );
    }

    #[test]
    fn decoding_refuses_unknown_versions_types_and_fields() {
        let b = br#"{"body":{"member":"m1","points":100},"id":"e-1","time":1,"type":"earn","v":2}"#;
        assert!(matches!(
            Entry::from_bytes(b),
            Err(EntryError::UnsupportedVersion(_))
        ));
        let b = br#"{"body":{},"id":"e-1","time":1,"type":"mint","v":1}"#;
        assert!(matches!(
            Entry::from_bytes(b),
            Err(EntryError::UnknownType(_))
        ));
        let b = br#"{"body":{"member":"m1","points":100,"x":1},"id":"e-1","time":1,"type":"earn","v":1}"#;
        assert!(matches!(Entry::from_bytes(b), Err(EntryError::Invalid(_))));
        let b = br#"{"body":{"member":"m1","points":100},"extra":1,"id":"e-1","time":1,"type":"earn","v":1}"#;
        assert!(matches!(Entry::from_bytes(b), Err(EntryError::Invalid(_))));
    }

    #[test]
    fn decoding_refuses_zero_and_out_of_range_amounts() {
        let b = br#"{"body":{"member":"m1","points":0},"id":"e-1","time":1,"type":"earn","v":1}"#;
        assert!(matches!(Entry::from_bytes(b), Err(EntryError::Invalid(_))));
        let b = br#"{"body":{"member":"m1","points":-5},"id":"e-1","time":1,"type":"earn","v":1}"#;
        assert!(matches!(Entry::from_bytes(b), Err(EntryError::Invalid(_))));
        let b = br#"{"body":{"member":"m1","points":9007199254740992},"id":"e-1","time":1,"type":"earn","v":1}"#;
        assert!(matches!(
            Entry::from_bytes(b),
            Err(EntryError::Encoding(EncodingError::OutOfRange(_)))
        ));
        let b = br#"{"body":{"member":"m1","points":1.5},"id":"e-1","time":1,"type":"earn","v":1}"#;
        assert!(matches!(
            Entry::from_bytes(b),
            Err(EntryError::Encoding(EncodingError::NonInteger))
        ));
    }

    #[test]
    fn tier_policy_must_start_at_zero_and_ascend() {
        let body = serde_json::json!({"tiers":[{"name":"blue","threshold":10}],"window_ms":1,"grace_ms":0});
        assert!(EntryKind::from_type_and_body("tier_policy", body).is_err());
        let body = serde_json::json!({"tiers":[{"name":"blue","threshold":0},{"name":"gold","threshold":0}],"window_ms":1,"grace_ms":0});
        assert!(EntryKind::from_type_and_body("tier_policy", body).is_err());
        let body = serde_json::json!({"tiers":[{"name":"blue","threshold":0},{"name":"gold","threshold":10}],"window_ms":1,"grace_ms":0});
        assert!(EntryKind::from_type_and_body("tier_policy", body).is_ok());
    }

    #[test]
    fn tier_attestation_omits_valid_until_for_the_base_tier() {
        let mut e = Entry {
            time: LogTime::new(5).unwrap(),
            id: "sys.attest.m1.gold.900".parse().unwrap(),
            kind: EntryKind::TierAttestation(TierAttestation {
                member: "m1".parse().unwrap(),
                tier: "gold".parse().unwrap(),
                valid_until: Some(LogTime::new(900).unwrap()),
            }),
        };
        let b = e.to_bytes();
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            r#"{"body":{"member":"m1","tier":"gold","valid_until":900},"id":"sys.attest.m1.gold.900","time":5,"type":"tier_attestation","v":1}"#
        );
        assert_eq!(Entry::from_bytes(&b).unwrap(), e);
        assert_eq!(e.kind.member(), Some(&"m1".parse().unwrap()));
        if let EntryKind::TierAttestation(a) = &mut e.kind {
            a.valid_until = None;
        }
        let b = e.to_bytes();
        assert!(std::str::from_utf8(&b)
            .unwrap()
            .starts_with(r#"{"body":{"member":"m1","tier":"gold"},"#));
        assert_eq!(Entry::from_bytes(&b).unwrap(), e);
        let null = br#"{"body":{"member":"m1","tier":"gold","valid_until":null},"id":"a-1","time":5,"type":"tier_attestation","v":1}"#;
        assert!(Entry::from_bytes(null).is_err());
    }

    #[test]
    fn fx_rate_encodes_canonically_and_refuses_zero_and_unknown_fields() {
        let e = Entry {
            time: LogTime::new(5).unwrap(),
            id: "fx-1".parse().unwrap(),
            kind: EntryKind::FxRate(FxRate {
                from: "EUR".parse().unwrap(),
                to: "JPY".parse().unwrap(),
                rate: "162.35".parse().unwrap(),
                valid_from: LogTime::new(900).unwrap(),
            }),
        };
        let b = e.to_bytes();
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            r#"{"body":{"from":"EUR","rate":"162.35","to":"JPY","valid_from":900},"id":"fx-1","time":5,"type":"fx_rate","v":1}"#
        );
        assert_eq!(Entry::from_bytes(&b).unwrap(), e);
        assert_eq!(e.kind.member(), None);
        for body in [
            serde_json::json!({"from":"EUR","rate":"0","to":"JPY","valid_from":900}),
            serde_json::json!({"from":"EUR","rate":"0.0","to":"JPY","valid_from":900}),
            serde_json::json!({"from":"EUR","rate":162.35,"to":"JPY","valid_from":900}),
            serde_json::json!({"from":"EUR","rate":"1","to":"XAU","valid_from":900}),
            serde_json::json!({"from":"EUR","rate":"1","to":"JPY","valid_from":900,"x":1}),
            serde_json::json!({"from":"EUR","rate":"1","to":"JPY"}),
        ] {
            assert!(
                matches!(
                    EntryKind::from_type_and_body("fx_rate", body.clone()),
                    Err(EntryError::Invalid(_))
                ),
                "{body} accepted"
            );
        }
    }

    #[test]
    fn spend_authorisation_encodes_canonically_and_names_its_member() {
        let e = Entry {
            time: LogTime::new(5).unwrap(),
            id: "auth-1".parse().unwrap(),
            kind: EntryKind::SpendAuthorisation(SpendAuthorisation {
                member: "m1".parse().unwrap(),
                payee: "brand-b".parse().unwrap(),
                max_points: Points::new(500).unwrap(),
                expires_at: LogTime::new(900).unwrap(),
            }),
        };
        let b = e.to_bytes();
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            r#"{"body":{"expires_at":900,"max_points":500,"member":"m1","payee":"brand-b"},"id":"auth-1","time":5,"type":"spend_authorisation","v":1}"#
        );
        assert_eq!(Entry::from_bytes(&b).unwrap(), e);
        assert_eq!(e.kind.member(), Some(&"m1".parse().unwrap()));
        let zero = br#"{"body":{"expires_at":900,"max_points":0,"member":"m1","payee":"brand-b"},"id":"auth-1","time":5,"type":"spend_authorisation","v":1}"#;
        assert!(matches!(
            Entry::from_bytes(zero),
            Err(EntryError::Invalid(_))
        ));
        let extra = br#"{"body":{"expires_at":900,"max_points":5,"member":"m1","payee":"brand-b","scope":"x"},"id":"auth-1","time":5,"type":"spend_authorisation","v":1}"#;
        assert!(matches!(
            Entry::from_bytes(extra),
            Err(EntryError::Invalid(_))
        ));
    }

    #[test]
    fn hold_authorisation_is_optional_and_omitted_when_absent() {
        let mut hold = Hold {
            member: "m1".parse().unwrap(),
            points: Points::new(10).unwrap(),
            expires_at: LogTime::new(900).unwrap(),
            payee: Some("brand-b".parse().unwrap()),
            condition: None,
            authorisation: None,
        };
        let mut e = Entry {
            time: LogTime::new(5).unwrap(),
            id: "h-1".parse().unwrap(),
            kind: EntryKind::Hold(hold.clone()),
        };
        assert_eq!(
            std::str::from_utf8(&e.to_bytes()).unwrap(),
            r#"{"body":{"expires_at":900,"member":"m1","payee":"brand-b","points":10},"id":"h-1","time":5,"type":"hold","v":1}"#
        );
        hold.authorisation = Some("auth-1".parse().unwrap());
        e.kind = EntryKind::Hold(hold);
        let b = e.to_bytes();
        assert_eq!(
            std::str::from_utf8(&b).unwrap(),
            r#"{"body":{"authorisation":"auth-1","expires_at":900,"member":"m1","payee":"brand-b","points":10},"id":"h-1","time":5,"type":"hold","v":1}"#
        );
        assert_eq!(Entry::from_bytes(&b).unwrap(), e);
        let null = br#"{"body":{"authorisation":null,"expires_at":900,"member":"m1","points":10},"id":"h-1","time":5,"type":"hold","v":1}"#;
        assert!(Entry::from_bytes(null).is_err());
    }

    #[test]
    fn obligation_encodes_canonically_with_its_counterpart_only_when_receivable() {
        let quote: Quote = serde_json::from_str(
            r#"{"agreement":"agr-1","amount_minor":500,"currency":"EUR","expires_at":900,"fee_bps":150,"member":"m1","payee":"brand-b","payer":"brand-a","points":406,"quoted_at":5,"rate_card_index":0,"redemption":"red-1","rounding":"half_even"}"#,
        )
        .unwrap();
        let mut e = Entry {
            time: LogTime::new(10).unwrap(),
            id: "obl.red-1".parse().unwrap(),
            kind: EntryKind::Obligation(Obligation {
                side: ObligationSide::Payable,
                quote: quote.clone(),
                counterpart: None,
            }),
        };
        let b = e.to_bytes();
        assert!(std::str::from_utf8(&b)
            .unwrap()
            .starts_with(r#"{"body":{"quote":{"agreement":"agr-1","#));
        assert!(std::str::from_utf8(&b).unwrap().ends_with(
            r#""side":"payable"},"id":"obl.red-1","time":10,"type":"obligation","v":1}"#
        ));
        assert_eq!(Entry::from_bytes(&b).unwrap(), e);
        assert_eq!(e.kind.member(), None);
        e.kind = EntryKind::Obligation(Obligation {
            side: ObligationSide::Receivable,
            quote: quote.clone(),
            counterpart: Some(Counterpart {
                index: LogIndex::new(41).unwrap(),
                leaf_hash: HexHash([0xab; 32]),
                time: LogTime::new(1_000).unwrap(),
            }),
        });
        let b = e.to_bytes();
        let text = std::str::from_utf8(&b).unwrap();
        assert!(text.starts_with(&format!(
            r#"{{"body":{{"counterpart":{{"index":41,"leaf_hash":"{}","time":1000}},"quote":"#,
            "ab".repeat(32)
        )));
        assert_eq!(Entry::from_bytes(&b).unwrap(), e);
        let body = e.kind.body_value();
        for (path, value) in [
            ("/side", serde_json::json!("owed")),
            ("/counterpart", Value::Null),
            ("/counterpart/leaf_hash", serde_json::json!("AB".repeat(32))),
            ("/quote/amount_minor", serde_json::json!(0)),
        ] {
            let mut bad = body.clone();
            *bad.pointer_mut(path).unwrap() = value;
            assert!(
                matches!(
                    EntryKind::from_type_and_body("obligation", bad),
                    Err(EntryError::Invalid(_))
                ),
                "{path}"
            );
        }
        let mut extra = body.clone();
        extra["counterpart"]["size"] = serde_json::json!(5);
        assert!(EntryKind::from_type_and_body("obligation", extra).is_err());
    }

    #[test]
    fn intent_digest_ignores_time_but_not_body() {
        let a = earn();
        let mut b = earn();
        b.time = LogTime::new(5).unwrap();
        assert_eq!(a.kind.intent_digest(), b.kind.intent_digest());
        let mut c = earn();
        if let EntryKind::Earn(e) = &mut c.kind {
            e.points = Points::new(101).unwrap();
        }
        assert_ne!(a.kind.intent_digest(), c.kind.intent_digest());
    }
}
