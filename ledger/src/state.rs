//! The accounting state machine (spec/protocol.md §4): double-entry accounts, lots, holds,
//! redemptions, spend authorisations, idempotency ids, tiers, the rate cards and FX rates
//! that value points, and the agreements, quotes and obligations of cross-brand redemption.
//!
//! [`State::apply`] takes one entry and its log index and either changes the state and returns
//! the transfers it made, or returns a typed error and changes nothing. The node's sequencer
//! and the auditor's replay call the same function, so replay is the definition of the state.
//! A writer applying a linked chain of writes opens a savepoint ([`State::savepoint`]) and, when
//! one of them is refused, rolls the state back to it: the state, its pending record writes and
//! the changes it will hand to the store are then exactly as they were at the savepoint.
//!
//! Invariants (checked by [`State::check_invariants`], asserted in debug builds after every
//! entry):
//! - conservation: the balances of all accounts, members' and system ones, sum to zero;
//! - a member's balance is the sum of their lots' remaining points and is never negative;
//! - the `held` account equals the points of open holds, and each member's pending points
//!   equal the points of their open holds;
//! - every id is used by at most one entry, and a hold is resolved at most once;
//! - a spend authorisation is used by at most one hold, and a hold that names an
//!   authorisation is the one recorded as its user;
//! - at most [`RATES_MAX`] rate cards and FX rates are kept, together;
//! - at most [`AGREEMENTS_MAX`] agreements are kept, each under its own agreement id, each
//!   self-consistent (valid terms, one valid signature per brand);
//! - every quote is kept under its redemption id and names a kept agreement;
//! - every obligation is kept under its (side, payer, redemption), names a kept agreement that
//!   allows its direction, and a receivable names its counterpart; a payable's hold (the hold
//!   with the redemption id) is posted, for the quote's payee, member and points;
//! - a redemption's refunds take at most its points, each refund id once per obligation, at
//!   most [`REFUNDS_MAX`] per obligation, each amount by the cumulative rule;
//! - for every agreement, the open payable total is the sum of its payables' amounts minus their
//!   refunds, counting only lines outside the periods a logged statement settled (a payable
//!   is only logged while that total plus its amount is within the credit limit, a rule of
//!   `obligation`, not an invariant: settling a period whose lines net negative raises it);
//! - a statement is logged once per agreement and settlement period, after the period ended,
//!   signed by both brands with their agreement keys, and equal to what the log's own lines
//!   sum to;
//! - every agreement's line totals (`ot/`: all time, and open = outside the periods a logged
//!   statement settled) and every settlement period's line totals (`pt/`) are the sums of the
//!   statement lines of its obligations, per direction.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::agreement::{AgreementError, AgreementTerms, SignedAgreement};
use crate::entry::{
    Adjust, Counterpart, Direction, Earn, Entry, EntryKind, Expire, ExpiryPolicy, FxRate, HexHash,
    Hold, Obligation, ObligationRefund, ObligationSide, Post, RateCard, Redeem, Refund,
    SpendAuthorisation, TierAttestation, TierChange, TierPolicy, Void,
};
use crate::merkle::Hash;
use crate::money::Currency;
use crate::quote::Quote;
use crate::statement::{self, ObligationLine, SignedStatement, StatementError};
use crate::tier::{self, QualifyingEvent};
use crate::types::{
    AccountId, BrandId, EntryId, LogIndex, LogTime, MemberId, Points, TierName, MAX_AMOUNT,
};

pub mod legacy;
pub mod read;
pub mod records;
use records::{JournaledRecords, Records};
pub use records::{RecordSource, StorageError};

/// The most rate entries (`rate_card` and `fx_rate` together) a log may hold
/// (spec/protocol.md §4.7).
pub const RATES_MAX: usize = 4096;
/// The most `agreement` entries a log may hold (spec/protocol.md §4.11).
pub const AGREEMENTS_MAX: usize = 1024;
/// The most refunds one committed cross-brand redemption may have (spec/protocol.md §4.13).
pub const REFUNDS_MAX: usize = 64;

/// Why an entry cannot be applied. The state is unchanged after any of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("log time {got} is not after the previous entry's {last}")]
    TimeNotIncreasing { last: LogTime, got: LogTime },
    #[error("entry index {got} is not the next index {expected}")]
    IndexNotNext { expected: LogIndex, got: LogIndex },
    #[error("id {0} is already used by entry {1}")]
    DuplicateId(EntryId, LogIndex),
    #[error("member {0} has no points")]
    UnknownMember(MemberId),
    #[error("insufficient points: {available} available, {requested} requested")]
    InsufficientPoints { available: u64, requested: u64 },
    #[error("the member's balance would exceed 2^53-1 points")]
    BalanceOverflow,
    #[error("no hold with id {0}")]
    UnknownHold(EntryId),
    #[error("hold {id} is already {status}")]
    HoldNotOpen { id: EntryId, status: &'static str },
    #[error("hold {id} expired at {expires_at}")]
    HoldExpired { id: EntryId, expires_at: LogTime },
    #[error("a hold must expire after the time it is logged ({expires_at} <= {now})")]
    HoldExpiryNotInFuture { expires_at: LogTime, now: LogTime },
    #[error("the preimage does not match the hold's condition")]
    ConditionNotMet,
    #[error("the hold has a condition: a preimage is required")]
    PreimageRequired,
    #[error("the hold has no condition: a preimage must not be given")]
    UnexpectedPreimage,
    #[error("no redemption with id {0}")]
    UnknownRedemption(EntryId),
    #[error("refund of {requested} exceeds the {remaining} points still refundable")]
    RefundExceedsRedemption { remaining: u64, requested: u64 },
    #[error("member {member} has no lot {lot}")]
    UnknownLot { member: MemberId, lot: LogIndex },
    #[error("lot {lot} does not expire before {now}")]
    LotNotExpired { lot: LogIndex, now: LogTime },
    #[error("lot {lot} has {remaining} points left, not {requested}")]
    ExpireAmountMismatch {
        lot: LogIndex,
        remaining: u64,
        requested: u64,
    },
    #[error("no tier policy is in force")]
    NoTierPolicy,
    #[error("member {member} is at tier {current}, not {from}")]
    TierFromMismatch {
        member: MemberId,
        current: TierName,
        from: TierName,
    },
    #[error("the tier rules give {expected} at this time, not {to}")]
    TierNotDue { expected: TierName, to: TierName },
    /// A `rate_card` or an `fx_rate` with `valid_from` before the entry's time.
    #[error("a rate card or FX rate must not be valid from before the time it is logged")]
    RateCardInPast,
    #[error("an FX rate must be between two different currencies, not {currency} to itself")]
    FxSameCurrency { currency: Currency },
    #[error("the log already holds {max} rate cards and FX rates, the most it may")]
    TooManyRates { max: usize },
    #[error("member {member} is at tier {current}, not {tier}")]
    AttestationTierMismatch {
        member: MemberId,
        current: TierName,
        tier: TierName,
    },
    #[error("member {member} is due a tier change to {due}: log it before attesting")]
    AttestationTierChangeDue { member: MemberId, due: TierName },
    #[error(
        "an attestation must be valid until after the time it is logged ({valid_until} <= {now})"
    )]
    AttestationValidUntilNotInFuture { valid_until: LogTime, now: LogTime },
    #[error("member {member} keeps tier {tier} {}, not {}", held_text(*.held_until), claim_text(*.valid_until))]
    AttestationTooLong {
        member: MemberId,
        tier: TierName,
        /// What the attestation claims (`None`: forever).
        valid_until: Option<LogTime>,
        /// Until when the member keeps the tier by the rules (§4.6 `U`); `None` when `U` is
        /// undefined (the base tier, held forever, is never too long).
        held_until: Option<LogTime>,
    },
    #[error(
        "a spend authorisation must expire after the time it is logged ({expires_at} <= {now})"
    )]
    AuthorisationExpiryNotInFuture { expires_at: LogTime, now: LogTime },
    #[error("no spend authorisation with id {0}")]
    UnknownAuthorisation(EntryId),
    #[error("spend authorisation {id} is for member {authorised}, not {member}")]
    AuthorisationWrongMember {
        id: EntryId,
        authorised: MemberId,
        member: MemberId,
    },
    #[error("spend authorisation {id} is for payee {authorised}, not {}", payee_text(.payee.as_ref()))]
    AuthorisationWrongPayee {
        id: EntryId,
        authorised: BrandId,
        /// The hold's payee (`None`: the hold names none).
        payee: Option<BrandId>,
    },
    #[error("spend authorisation {id} allows at most {max_points} points, not {requested}")]
    AuthorisationExceeded {
        id: EntryId,
        max_points: u64,
        requested: u64,
    },
    #[error("spend authorisation {id} expired at {expires_at}")]
    AuthorisationExpired { id: EntryId, expires_at: LogTime },
    #[error("spend authorisation {id} is already used by hold {used_by}")]
    AuthorisationUsed { id: EntryId, used_by: EntryId },
    /// An `agreement` whose terms or signatures do not verify on their own; the code is the
    /// [`AgreementError`]'s.
    #[error(transparent)]
    Agreement(AgreementError),
    #[error("agreement {agreement} is already logged at entry {index}")]
    AgreementExists { agreement: EntryId, index: LogIndex },
    #[error("the log already holds {max} agreements, the most it may")]
    TooManyAgreements { max: usize },
    #[error("a quote is logged under its redemption id {redemption}, not {id}")]
    QuoteIdMismatch { id: EntryId, redemption: EntryId },
    #[error("a quote from {quoted_at} until {expires_at} cannot be logged at {now}")]
    QuoteExpired {
        quoted_at: LogTime,
        expires_at: LogTime,
        now: LogTime,
    },
    #[error("no agreement with id {0}")]
    UnknownAgreement(EntryId),
    #[error("the quote does not match agreement {agreement}: {reason}")]
    QuoteAgreementMismatch {
        agreement: EntryId,
        reason: &'static str,
    },
    #[error("a {side} obligation for redemption {redemption} of {payer} is already logged at entry {index}")]
    ObligationExists {
        side: ObligationSide,
        payer: BrandId,
        redemption: EntryId,
        index: LogIndex,
    },
    #[error("a receivable obligation must name the payer's obligation entry")]
    ObligationCounterpartMissing,
    #[error("a payable obligation names no counterpart")]
    ObligationCounterpartUnexpected,
    #[error("the obligation does not match agreement {agreement}: {reason}")]
    ObligationAgreementMismatch {
        agreement: EntryId,
        reason: &'static str,
    },
    #[error("the obligation does not match hold {hold}: {reason}")]
    ObligationHoldMismatch { hold: EntryId, reason: &'static str },
    #[error("agreement {agreement}: {open_minor} open plus {amount_minor} exceeds the credit limit {limit_minor}")]
    CreditLimitExceeded {
        agreement: EntryId,
        open_minor: i64,
        amount_minor: u64,
        limit_minor: u64,
    },
    #[error("no {side} obligation for redemption {redemption} of {payer}")]
    UnknownObligation {
        side: ObligationSide,
        payer: BrandId,
        redemption: EntryId,
    },
    #[error("refund {refund} of redemption {redemption} is already logged at entry {index}")]
    RefundExists {
        redemption: EntryId,
        refund: EntryId,
        index: LogIndex,
    },
    #[error("redemption {redemption} already has {max} refunds, the most it may")]
    TooManyRefunds { redemption: EntryId, max: usize },
    #[error(
        "only {remaining} points of redemption {redemption} are left to refund, not {requested}"
    )]
    RefundExceedsObligation {
        redemption: EntryId,
        remaining: u64,
        requested: u64,
    },
    #[error("the refund takes {given} minor units off the obligation; the agreement's rule gives {expected}")]
    RefundAmountMismatch { expected: u64, given: u64 },
    #[error("redemption {0} was committed with a partner: refund it through the partner (obligation_refund)")]
    RefundNeedsPartner(EntryId),
    #[error("the statement's period is not one to log: {0}")]
    StatementPeriod(&'static str),
    #[error("the statement of agreement {agreement} for period {period} is already logged at entry {index}")]
    StatementExists {
        agreement: EntryId,
        period: u64,
        index: LogIndex,
    },
    #[error("the statement's signatures do not verify: {0}")]
    StatementSignature(AgreementError),
    #[error("the statement cannot be computed from this log: {0}")]
    StatementUncomputable(StatementError),
    #[error("the statement differs from this log's own lines, which sum to {expected}")]
    StatementMismatch { expected: Box<String> },
    /// A read of statement lines met more than its bound (never while applying an entry).
    #[error("the period holds more than {max} statement lines; ask for a shorter one")]
    TooManyLines { max: usize },
    /// Reading a state record failed (I/O or corruption): not the entry's fault. The state
    /// refuses further entries until it is reopened.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn payee_text(p: Option<&BrandId>) -> String {
    p.map_or_else(|| "a hold without payee".to_owned(), ToString::to_string)
}

fn claim_text(t: Option<LogTime>) -> String {
    t.map_or_else(|| "forever".to_owned(), |t| format!("until {t}"))
}

fn held_text(t: Option<LogTime>) -> String {
    t.map_or_else(
        || "for no defined time".to_owned(),
        |t| format!("until {t}"),
    )
}

impl StateError {
    /// A stable machine-readable code for this error (used by the HTTP API).
    pub fn code(&self) -> &'static str {
        match self {
            StateError::TimeNotIncreasing { .. } => "time_not_increasing",
            StateError::IndexNotNext { .. } => "index_not_next",
            StateError::DuplicateId(..) => "duplicate_id",
            StateError::UnknownMember(_) => "unknown_member",
            StateError::InsufficientPoints { .. } => "insufficient_points",
            StateError::BalanceOverflow => "balance_overflow",
            StateError::UnknownHold(_) => "unknown_hold",
            StateError::HoldNotOpen { .. } => "hold_not_open",
            StateError::HoldExpired { .. } => "hold_expired",
            StateError::HoldExpiryNotInFuture { .. } => "hold_expiry_not_in_future",
            StateError::ConditionNotMet => "condition_not_met",
            StateError::PreimageRequired => "preimage_required",
            StateError::UnexpectedPreimage => "unexpected_preimage",
            StateError::UnknownRedemption(_) => "unknown_redemption",
            StateError::RefundExceedsRedemption { .. } => "refund_exceeds_redemption",
            StateError::UnknownLot { .. } => "unknown_lot",
            StateError::LotNotExpired { .. } => "lot_not_expired",
            StateError::ExpireAmountMismatch { .. } => "expire_amount_mismatch",
            StateError::NoTierPolicy => "no_tier_policy",
            StateError::TierFromMismatch { .. } => "tier_from_mismatch",
            StateError::TierNotDue { .. } => "tier_not_due",
            StateError::RateCardInPast => "rate_card_in_past",
            StateError::AttestationTierMismatch { .. } => "attestation_tier_mismatch",
            StateError::AttestationTierChangeDue { .. } => "attestation_tier_change_due",
            StateError::AttestationValidUntilNotInFuture { .. } => {
                "attestation_valid_until_not_in_future"
            }
            StateError::AttestationTooLong { .. } => "attestation_too_long",
            StateError::FxSameCurrency { .. } => "fx_same_currency",
            StateError::TooManyRates { .. } => "too_many_rates",
            StateError::AuthorisationExpiryNotInFuture { .. } => {
                "authorisation_expiry_not_in_future"
            }
            StateError::UnknownAuthorisation(_) => "unknown_authorisation",
            StateError::AuthorisationWrongMember { .. } => "authorisation_wrong_member",
            StateError::AuthorisationWrongPayee { .. } => "authorisation_wrong_payee",
            StateError::AuthorisationExceeded { .. } => "authorisation_exceeded",
            StateError::AuthorisationExpired { .. } => "authorisation_expired",
            StateError::AuthorisationUsed { .. } => "authorisation_used",
            StateError::Agreement(e) => e.code(),
            StateError::AgreementExists { .. } => "agreement_exists",
            StateError::TooManyAgreements { .. } => "too_many_agreements",
            StateError::QuoteIdMismatch { .. } => "quote_id_mismatch",
            StateError::QuoteExpired { .. } => "quote_expired",
            StateError::UnknownAgreement(_) => "unknown_agreement",
            StateError::QuoteAgreementMismatch { .. } => "quote_agreement_mismatch",
            StateError::ObligationExists { .. } => "obligation_exists",
            StateError::ObligationCounterpartMissing => "obligation_counterpart_missing",
            StateError::ObligationCounterpartUnexpected => "obligation_counterpart_unexpected",
            StateError::ObligationAgreementMismatch { .. } => "obligation_agreement_mismatch",
            StateError::ObligationHoldMismatch { .. } => "obligation_hold_mismatch",
            StateError::CreditLimitExceeded { .. } => "credit_limit_exceeded",
            StateError::UnknownObligation { .. } => "unknown_obligation",
            StateError::RefundExists { .. } => "refund_exists",
            StateError::TooManyRefunds { .. } => "too_many_refunds",
            StateError::RefundExceedsObligation { .. } => "refund_exceeds_obligation",
            StateError::RefundAmountMismatch { .. } => "refund_amount_mismatch",
            StateError::RefundNeedsPartner(_) => "refund_needs_partner",
            StateError::StatementPeriod(_) => "statement_period_invalid",
            StateError::StatementExists { .. } => "statement_exists",
            StateError::StatementSignature(_) => "statement_bad_signature",
            StateError::StatementUncomputable(e) => e.code(),
            StateError::StatementMismatch { .. } => "statement_mismatch",
            StateError::TooManyLines { .. } => "too_many_lines",
            StateError::Storage(_) => "storage_failure",
        }
    }
}

/// Points a member holds in one lot, with one expiry time. Stored under
/// [`records::lot_key`], the value being the remaining points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lot {
    /// The index of the entry that created the lot; the lot's name.
    pub id: LogIndex,
    /// Log time at which the lot's points expire; `None` for never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<LogTime>,
    /// Points still in the lot.
    pub remaining: u64,
}

impl Lot {
    /// Whether the lot's points can still be spent at `now`.
    pub fn is_live(&self, now: LogTime) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }
}

/// Points taken from one lot by a debit, remembered so they can go back to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Portion {
    pub lot: LogIndex,
    pub expires_at: Option<LogTime>,
    pub points: u64,
}

/// A member's summary: points, tier and counters. Its lots and qualifying earnings are
/// records of their own ([`State::lots`], [`State::qualifying`]), so that a write touches
/// O(1) records whatever the member's history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberState {
    /// Sum of the member's lots' remaining points.
    pub balance: u64,
    /// Points in this member's open holds.
    pub pending: u64,
    /// The member's tier; `None` means the policy's base tier.
    pub tier: Option<TierName>,
    /// When the member entered `tier`.
    pub tier_since: LogTime,
    /// How many lots the member has.
    pub lots: u64,
    /// The member's never-expiring lot, if any (points that never expire join it).
    pub open_lot: Option<LogIndex>,
    /// How many qualifying earnings are kept for tier evaluation.
    pub qualifying: u64,
    /// When the member's tier lapses without more earnings, as indexed in
    /// [`records::prefix::DUE_TIER`] (`None`: not indexed).
    pub tier_due: Option<LogTime>,
    /// The log time of the member's oldest kept qualifying earning (0: none kept, or a record
    /// written before this field existed). Reads and prunes of the member's qualifying
    /// earnings start here, so they never step over the deletions of earlier prunes (RocksDB
    /// keeps a deleted key as a tombstone until compaction). Encoded after the fields above
    /// ([`MemberState::encode`]), so records without it still decode.
    #[serde(skip)]
    pub qualifying_from_ms: u64,
    /// Whether the member's only lot, the never-expiring [`MemberState::open_lot`], is kept in
    /// this summary (its remaining points are [`MemberState::balance`]) instead of a lot
    /// record of its own. A member who only ever earned points that never expire then writes
    /// one record per earning, not two. Every write of a member's lots leaves it set exactly
    /// when the open lot is the member's only lot (`State::settle_open_lot`): a second lot
    /// joining it writes it under its key first. Encoded after `qualifying_from_ms`; a record
    /// without it (written before it existed) has its lots under their keys until its
    /// member's lots are next written.
    #[serde(skip)]
    pub open_lot_inline: bool,
}

/// What the caller of `State::add_to_lot` knows of the lot before the points join it.
enum LotBefore {
    /// The lot is named by the entry being applied, so it cannot exist yet.
    New,
    /// The lot is read (it may not exist).
    Unknown,
}

impl MemberState {
    /// The lot `lot` (expiring at `expires_at`) when this summary keeps it
    /// ([`MemberState::open_lot_inline`]): its remaining points. `None` when it is a record.
    fn inline_lot(&self, lot: LogIndex, expires_at: Option<LogTime>) -> Option<u64> {
        (self.open_lot_inline && expires_at.is_none() && self.open_lot == Some(lot))
            .then_some(self.balance)
    }

    /// The member record's value: the summary's fields, then `qualifying_from_ms` and
    /// `open_lot_inline` (a record that ends before one of them decodes with 0 / false).
    pub fn encode(&self) -> Vec<u8> {
        let v = postcard::to_extend(&self.qualifying_from_ms, records::encode(self))
            .expect("an integer always serializes");
        postcard::to_extend(&self.open_lot_inline, v).expect("a bool always serializes")
    }

    /// Decodes a member record written by [`MemberState::encode`] (or without its last
    /// fields).
    pub fn decode(bytes: &[u8]) -> Result<MemberState, String> {
        let (mut m, mut rest): (MemberState, _) =
            postcard::take_from_bytes(records::binary_body(bytes)?).map_err(|e| e.to_string())?;
        if !rest.is_empty() {
            (m.qualifying_from_ms, rest) =
                postcard::take_from_bytes(rest).map_err(|e| e.to_string())?;
        }
        if !rest.is_empty() {
            (m.open_lot_inline, rest) =
                postcard::take_from_bytes(rest).map_err(|e| e.to_string())?;
        }
        if !rest.is_empty() {
            return Err(format!("{} bytes after a member record", rest.len()));
        }
        if m.open_lot_inline && (m.lots != 1 || m.open_lot.is_none()) {
            return Err("a lot kept in the summary that is not its only, open lot".into());
        }
        Ok(m)
    }
}

/// Where a hold stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldStatus {
    Open,
    Posted(LogIndex),
    Voided(LogIndex),
}

impl HoldStatus {
    fn name(&self) -> &'static str {
        match self {
            HoldStatus::Open => "open",
            HoldStatus::Posted(_) => "posted",
            HoldStatus::Voided(_) => "voided",
        }
    }
}

/// A hold and what it took from which lots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldState {
    pub index: LogIndex,
    pub member: MemberId,
    pub points: u64,
    pub expires_at: LogTime,
    pub payee: Option<BrandId>,
    pub condition: Option<HexHash>,
    /// The spend authorisation the hold used, if any.
    pub authorisation: Option<EntryId>,
    pub portions: Vec<Portion>,
    pub status: HoldStatus,
}

/// A spend authorisation (spec/protocol.md §4.10): who may hold how many of whose points until
/// when, and the hold that used it up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorisationState {
    /// The index of the `spend_authorisation` entry.
    pub index: LogIndex,
    pub member: MemberId,
    pub payee: BrandId,
    pub max_points: u64,
    pub expires_at: LogTime,
    /// The id of the hold that used the authorisation; `None` while unused.
    pub used_by: Option<EntryId>,
}

/// An agreement a brand logged (spec/protocol.md §4.11), by its agreement id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgreementState {
    /// The index of the `agreement` entry.
    pub index: LogIndex,
    pub agreement: SignedAgreement,
    /// The settlement periods a logged `statement` settled, with the statement entry's index.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub statements: BTreeMap<u64, LogIndex>,
}

impl AgreementState {
    /// Whether a logged statement settled the period that log time `t` falls in.
    pub fn settled(&self, t: LogTime) -> bool {
        self.agreement
            .terms
            .period_of(t)
            .is_some_and(|k| self.statements.contains_key(&k))
    }
}

/// A quote the brand logged (spec/protocol.md §4.11), by its redemption id; kept after it
/// expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteState {
    /// The index of the `quote` entry.
    pub index: LogIndex,
    pub quote: Quote,
}

/// What names an obligation in a log: at most one per side, payer and redemption id
/// (redemption ids are unique only within the payer's log).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObligationKey {
    pub side: ObligationSide,
    pub payer: BrandId,
    pub redemption: EntryId,
}

impl ObligationKey {
    /// The obligation's record key.
    pub fn record_key(&self) -> Vec<u8> {
        records::named(
            record_prefix::OBLIGATION,
            &format!("{}/{}/{}", self.side, self.payer, self.redemption),
        )
    }
}

/// An obligation the brand logged (spec/protocol.md §4.12), by [`ObligationKey`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObligationState {
    /// The index of the `obligation` entry.
    pub index: LogIndex,
    /// The line's time: the entry's own log time for a payable, the payer's (the
    /// counterpart's) for a receivable.
    pub time: LogTime,
    pub side: ObligationSide,
    pub quote: Quote,
    /// The payer's `obligation` entry; present exactly for a receivable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterpart: Option<Counterpart>,
    /// The refunds of this side, in log order (at most [`REFUNDS_MAX`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refunds: Vec<RefundState>,
}

/// One refund of an obligation, as this log recorded it (entry `obligation_refund`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundState {
    /// The refund id (chosen by the payee).
    pub refund: EntryId,
    /// The index of the `obligation_refund` entry.
    pub index: LogIndex,
    /// As [`ObligationState::time`]: this entry's for a payable, the payer's for a receivable.
    pub time: LogTime,
    pub points: u64,
    pub amount_minor: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterpart: Option<Counterpart>,
}

impl ObligationState {
    /// Points refunded so far.
    pub fn refunded_points(&self) -> u64 {
        self.refunds.iter().map(|r| r.points).sum()
    }

    /// Minor units refunded so far.
    pub fn refunded_minor(&self) -> u64 {
        self.refunds.iter().map(|r| r.amount_minor).sum()
    }

    /// The statement lines this obligation gives (spec/redemption.md §4.1): the commit's, then
    /// one per refund that is worth at least one minor unit (a refund rounded to 0 changes no
    /// total, and a line's amount is never 0).
    pub fn lines(&self) -> impl Iterator<Item = ObligationLine> + '_ {
        let q = &self.quote;
        let line = move |refund: Option<EntryId>, amount: i64, time, index| ObligationLine {
            redemption: q.redemption.clone(),
            refund,
            payer: q.payer.clone(),
            payee: q.payee.clone(),
            amount_minor: amount,
            time,
            index,
        };
        // Amounts are at most 2^53 − 1 (entry validation), so the casts are exact.
        std::iter::once(line(None, q.amount_minor as i64, self.time, self.index)).chain(
            self.refunds
                .iter()
                .filter(|r| r.amount_minor > 0)
                .map(move |r| {
                    line(
                        Some(r.refund.clone()),
                        -(r.amount_minor as i64),
                        r.time,
                        r.index,
                    )
                }),
        )
    }

    /// What this obligation adds to its agreement's open total: its lines' amounts outside
    /// the periods `agreement` has settled (a payable's only; 0 for a receivable).
    pub fn open_minor(&self, agreement: &AgreementState) -> i64 {
        if self.side != ObligationSide::Payable {
            return 0;
        }
        self.lines()
            .filter(|l| !agreement.settled(l.time))
            .map(|l| l.amount_minor)
            .sum()
    }

    /// Its key.
    pub fn key(&self) -> ObligationKey {
        ObligationKey {
            side: self.side,
            payer: self.quote.payer.clone(),
            redemption: self.quote.redemption.clone(),
        }
    }
}

/// One statement line in an agreement's line index (`ol/`): all a statement needs of it, so
/// that computing a period reads the period's lines and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LineRecord {
    pub(crate) side: ObligationSide,
    pub(crate) payer: BrandId,
    pub(crate) payee: BrandId,
    pub(crate) redemption: EntryId,
    pub(crate) refund: Option<EntryId>,
    pub(crate) amount_minor: i64,
}

/// The sums of an agreement's statement lines in one direction, as a statement's
/// [`statement::Gross`] has them before netting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrossTotals {
    /// The sum of the obligations (positive lines).
    pub obligations_minor: u64,
    /// The sum of the refunds, as a positive number.
    pub refunds_minor: u64,
    /// The number of lines.
    pub lines: u64,
}

impl GrossTotals {
    /// `obligations_minor − refunds_minor`: what the payer owes the payee.
    pub fn total_minor(&self) -> i64 {
        let t = i128::from(self.obligations_minor) - i128::from(self.refunds_minor);
        t.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }
}

/// Line totals per direction, in the order of a statement's `gross`: from the agreement's
/// first brand to its second, then back. Sums saturate at 2^64 − 1 minor units (never reached:
/// each line is at most 2^53 − 1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineTotals {
    pub gross: [GrossTotals; 2],
}

impl LineTotals {
    /// The number of lines, both directions.
    pub fn lines(&self) -> u64 {
        self.gross[0].lines + self.gross[1].lines
    }

    /// What `brand` owes (the totals of the directions it pays), in minor units.
    pub fn owes_minor(&self, terms: &AgreementTerms, brand: &BrandId) -> i64 {
        (0..2)
            .filter(|d| &terms.brands[*d] == brand)
            .map(|d| self.gross[d].total_minor())
            .sum()
    }

    /// What `brand` is owed (the totals of the directions it is paid in), in minor units.
    pub fn owed_minor(&self, terms: &AgreementTerms, brand: &BrandId) -> i64 {
        (0..2)
            .filter(|d| &terms.brands[1 - *d] == brand)
            .map(|d| self.gross[d].total_minor())
            .sum()
    }

    /// `brand`'s net position: what it is owed minus what it owes (0 for a non-party), as
    /// [`statement::Statement::position_minor`] of a statement over the same lines.
    pub fn position_minor(&self, terms: &AgreementTerms, brand: &BrandId) -> i64 {
        self.owed_minor(terms, brand)
            .saturating_sub(self.owes_minor(terms, brand))
    }

    /// Adds a line of `amount_minor` paid by `payer`.
    fn add(&mut self, terms: &AgreementTerms, payer: &BrandId, amount_minor: i64) {
        let g = &mut self.gross[usize::from(payer != &terms.brands[0])];
        if amount_minor >= 0 {
            g.obligations_minor = g.obligations_minor.saturating_add(amount_minor as u64);
        } else {
            g.refunds_minor = g.refunds_minor.saturating_add(amount_minor.unsigned_abs());
        }
        g.lines += 1;
    }

    /// Takes `other` (totals of a part of these lines) away.
    fn remove(&mut self, other: &LineTotals) {
        for (g, o) in self.gross.iter_mut().zip(&other.gross) {
            g.obligations_minor = g.obligations_minor.saturating_sub(o.obligations_minor);
            g.refunds_minor = g.refunds_minor.saturating_sub(o.refunds_minor);
            g.lines = g.lines.saturating_sub(o.lines);
        }
    }
}

/// An agreement's line totals in this log (`ot/`): every line, and the open ones (outside the
/// periods a logged statement settled).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgreementTotals {
    pub all: LineTotals,
    pub open: LineTotals,
}

/// The totals of the lines of `agreement` its obligations `obligations` give: the agreement's,
/// and each settlement period's (`derive` of what the state machine keeps as it goes).
pub(crate) fn derive_totals<'a>(
    agreement: &AgreementState,
    obligations: impl IntoIterator<Item = &'a ObligationState>,
    totals: &mut AgreementTotals,
    periods: &mut BTreeMap<u64, LineTotals>,
) {
    let terms = &agreement.agreement.terms;
    for o in obligations {
        for l in o.lines() {
            totals.all.add(terms, &l.payer, l.amount_minor);
            if !agreement.settled(l.time) {
                totals.open.add(terms, &l.payer, l.amount_minor);
            }
            if let Some(k) = terms.period_of(l.time) {
                periods
                    .entry(k)
                    .or_default()
                    .add(terms, &l.payer, l.amount_minor);
            }
        }
    }
}

/// A redemption (a redeem entry or a posted hold) and how much of it is refunded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedemptionState {
    pub index: LogIndex,
    pub member: MemberId,
    pub points: u64,
    pub refunded: u64,
    /// The account the points went to (`redeemed`, or a partner's clearing account).
    pub account: AccountId,
    /// Whether a payable obligation was logged for it; then it is refunded only through the
    /// partner (`obligation_refund`), never by a plain `refund`.
    pub obligation: bool,
    /// Portions still refundable, in consumption order; refunds take from the end.
    pub portions: Vec<Portion>,
}

/// The entry that used an id, and what it asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRecord {
    pub index: LogIndex,
    /// [`EntryKind::intent_digest`] of the entry.
    pub intent: Hash,
}

/// Policies in force: tiers, expiry, rate cards and FX rates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policies {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<TierPolicy>,
    #[serde(default)]
    pub expiry: Option<ExpiryPolicy>,
    /// Rate cards by the index of their entry, oldest first.
    #[serde(default)]
    pub rate_cards: Vec<(LogIndex, RateCard)>,
    /// FX rates by the index of their entry, oldest first. With `rate_cards`, at most
    /// [`RATES_MAX`] in all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fx_rates: Vec<(LogIndex, FxRate)>,
}

/// Of `(index, item)` pairs in index order, the one with the greatest `valid_from ≤ t`
/// that `keep` admits, the later index winning ties (spec/protocol.md §4.7).
fn latest_valid<T>(
    items: &[(LogIndex, T)],
    t: LogTime,
    valid_from: impl Fn(&T) -> LogTime,
    keep: impl Fn(&T) -> bool,
) -> Option<(LogIndex, &T)> {
    items
        .iter()
        .filter(|(_, x)| valid_from(x) <= t && keep(x))
        .max_by_key(|(i, x)| (valid_from(x), *i))
        .map(|(i, x)| (*i, x))
}

impl Policies {
    /// The rate card in force at log time `t` (spec/protocol.md §4.7): of the cards in
    /// `currency` (any currency when `None`), the one with the greatest `valid_from ≤ t`, the
    /// later entry winning ties; with the index of its entry, which a conversion records.
    pub fn rate_card_at(
        &self,
        currency: Option<Currency>,
        t: LogTime,
    ) -> Option<(LogIndex, &RateCard)> {
        latest_valid(
            &self.rate_cards,
            t,
            |c| c.valid_from,
            |c| currency.is_none_or(|cur| c.currency == cur),
        )
    }

    /// The FX rate from `from` to `to` in force at log time `t` (spec/protocol.md §4.7): of
    /// the rates for exactly that pair, the one with the greatest `valid_from ≤ t`, the later
    /// entry winning ties; with the index of its entry. A rate for `to → from` is not
    /// inverted.
    pub fn fx_rate_at(
        &self,
        from: Currency,
        to: Currency,
        t: LogTime,
    ) -> Option<(LogIndex, &FxRate)> {
        latest_valid(
            &self.fx_rates,
            t,
            |r| r.valid_from,
            |r| r.from == from && r.to == to,
        )
    }

    /// Rate cards and FX rates kept, together.
    pub fn rate_count(&self) -> usize {
        self.rate_cards.len() + self.fx_rates.len()
    }
}

/// One movement of points between two accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub from: AccountId,
    pub to: AccountId,
    pub points: u64,
}

/// What applying an entry did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    /// The transfers, in order; empty for policy entries and tier changes.
    pub transfers: Vec<Transfer>,
    /// The member the entry concerns, if any (for the member history index).
    pub member: Option<MemberId>,
}

/// Key prefixes of state records in storage (spec/protocol.md §6).
pub use records::prefix as record_prefix;

/// The small, global part of the state: kept in memory, loaded at start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Meta {
    size: u64,
    last_time: Option<LogTime>,
    /// Members with a summary record.
    members: u64,
}

/// A stored record could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt state record {key}: {reason}")]
pub struct RecordError {
    pub key: String,
    pub reason: String,
}

impl RecordError {
    fn at(key: &[u8], reason: impl Into<String>) -> RecordError {
        RecordError {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: reason.into(),
        }
    }
}

impl From<RecordError> for StateError {
    fn from(e: RecordError) -> Self {
        StateError::Storage(StorageError(e.to_string()))
    }
}

/// A broken invariant, found by [`State::check_invariants`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invariant violated: {0}")]
pub struct InvariantViolation(pub String);

pub use read::LOTS_PAGE_MAX;
/// Lots read from storage at once while a debit looks for points.
const DEBIT_PAGE: usize = 64;

/// The accounting state of one brand's log after its first `size` entries.
///
/// Only the small, global part lives in memory (size, policies, system accounts,
/// agreements, open payable totals); members, lots, holds, ids and the rest are records read
/// on demand from a [`RecordSource`] (spec/protocol.md §6), with the writes of the batch
/// being built kept on top until [`State::take_changes`] hands them to the store.
#[derive(Clone, Default)]
pub struct State {
    meta: Meta,
    policies: Policies,
    /// System accounts; member balances live in member records.
    accounts: BTreeMap<AccountId, i128>,
    /// By agreement id (`terms.agreement`), not entry id; at most [`AGREEMENTS_MAX`].
    agreements: BTreeMap<EntryId, AgreementState>,
    /// The open payable total (minor units) of every agreement with a payable; negative when
    /// refunds outweigh.
    open_payables: BTreeMap<EntryId, i64>,
    /// The line totals of every agreement with a line (`ot/`).
    totals: BTreeMap<EntryId, AgreementTotals>,
    records: JournaledRecords,
    /// Set when a storage read failed mid-entry: the pending writes may be half an entry.
    poisoned: bool,
    /// The meta record and these system accounts' records are behind their resident values:
    /// they are written once per batch ([`State::take_changes`]), not once per entry.
    meta_dirty: bool,
    accounts_dirty: BTreeSet<AccountId>,
    /// How to undo the resident changes since [`State::savepoint`], while one is open.
    savepoint: Option<Box<Savepoint>>,
}

/// The resident part of the state as it was at [`State::savepoint`], kept as the prior values
/// of what changed since (the records keep their own journal): its size grows with the entries
/// applied since the savepoint, never with the state.
#[derive(Clone, Default)]
struct Savepoint {
    meta: Meta,
    meta_dirty: bool,
    /// A system account's balance before its first change, and whether it was dirty.
    accounts: Vec<(AccountId, Option<i128>, bool)>,
    /// The tier and expiry policies before their first change.
    tier: Option<Option<TierPolicy>>,
    expiry: Option<Option<ExpiryPolicy>>,
    /// How many rate cards and FX rates were kept (they are only ever appended).
    rate_cards: usize,
    fx_rates: usize,
    /// Agreements added, and settled periods added to an agreement.
    agreements_added: Vec<EntryId>,
    statements_added: Vec<(EntryId, u64)>,
    /// An agreement's open payable total and line totals before each change.
    open_payables: Vec<(EntryId, Option<i64>)>,
    totals: Vec<(EntryId, Option<AgreementTotals>)>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("size", &self.meta.size)
            .field("last_time", &self.meta.last_time)
            .field("members", &self.meta.members)
            .finish_non_exhaustive()
    }
}

impl PartialEq for State {
    /// Equal when the global parts and every record are equal (reads every record: tests).
    fn eq(&self, o: &Self) -> bool {
        self.meta == o.meta
            && self.policies == o.policies
            && self.accounts == o.accounts
            && self.agreements == o.agreements
            && self.open_payables == o.open_payables
            && self.totals == o.totals
            && self.records().ok() == o.records().ok()
    }
}

fn parse_name<T: std::str::FromStr>(key: &[u8], prefix: &[u8]) -> Result<T, RecordError>
where
    T::Err: std::fmt::Display,
{
    std::str::from_utf8(&key[prefix.len()..])
        .map_err(|_| RecordError::at(key, "the key is not UTF-8"))?
        .parse()
        .map_err(|e: T::Err| RecordError::at(key, e.to_string()))
}

impl State {
    /// The state of an empty log, with its records in memory.
    pub fn new() -> State {
        State::default()
    }

    /// The state of an empty log, in memory, for a replay whose records nobody stores:
    /// [`State::take_changes`] returns nothing.
    pub fn for_replay() -> State {
        State {
            records: Records::untracked().into(),
            ..State::default()
        }
    }

    /// The state whose committed records are in `source`: loads the global part only, so
    /// the time it takes does not grow with members or entries.
    pub fn open(source: Arc<dyn RecordSource>) -> Result<State, RecordError> {
        State::open_cached(source, 0)
    }

    /// As [`State::open`], keeping at most `cache_bytes` of the committed records that are
    /// read by key again and again (members, lots, holds...) in memory.
    pub fn open_cached(
        source: Arc<dyn RecordSource>,
        cache_bytes: usize,
    ) -> Result<State, RecordError> {
        let mut s = State {
            records: Records::over(source, cache_bytes).into(),
            ..State::default()
        };
        s.load_global()?;
        Ok(s)
    }

    /// Rebuilds a state, in memory, from the records [`State::take_changes`] wrote.
    pub fn from_records<I, K, V>(records: I) -> Result<State, RecordError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        let map: records::MemoryMap = records
            .into_iter()
            .map(|(k, v)| {
                (
                    records::MemoryKey::from_slice(k.as_ref()),
                    v.as_ref().to_vec(),
                )
            })
            .collect();
        let mut s = State {
            records: Records::Memory {
                map,
                changed: Some(Default::default()),
            }
            .into(),
            ..State::default()
        };
        s.load_global()?;
        Ok(s)
    }

    fn load_global(&mut self) -> Result<(), RecordError> {
        use record_prefix::*;
        let storage = |e: StorageError| RecordError::at(b"", e.0);
        if let Some(v) = self.records.get(META).map_err(storage)? {
            self.meta = records::decode(&v).map_err(|e| RecordError::at(META, e))?;
        }
        if let Some(v) = self.records.get(POLICIES).map_err(storage)? {
            self.policies = records::decode_json(&v).map_err(|e| RecordError::at(POLICIES, e))?;
        }
        for (k, v) in self.records.all_with_prefix(ACCOUNT).map_err(storage)? {
            let a: AccountId = parse_name(&k, ACCOUNT)?;
            let b: i128 = records::decode(&v).map_err(|e| RecordError::at(&k, e))?;
            self.accounts.insert(a, b);
        }
        for (k, v) in self.records.all_with_prefix(AGREEMENT).map_err(storage)? {
            let id: EntryId = parse_name(&k, AGREEMENT)?;
            let a: AgreementState = records::decode_json(&v).map_err(|e| RecordError::at(&k, e))?;
            if a.agreement.terms.agreement != id {
                return Err(RecordError::at(
                    &k,
                    "the agreement is not the one its key names",
                ));
            }
            self.agreements.insert(id, a);
        }
        for (k, v) in self
            .records
            .all_with_prefix(OPEN_PAYABLE)
            .map_err(storage)?
        {
            let id: EntryId = parse_name(&k, OPEN_PAYABLE)?;
            if !self.agreements.contains_key(&id) {
                return Err(RecordError::at(&k, "names an agreement that is not kept"));
            }
            let v: i64 = records::decode(&v).map_err(|e| RecordError::at(&k, e))?;
            self.open_payables.insert(id, v);
        }
        for (k, v) in self.records.all_with_prefix(TOTALS).map_err(storage)? {
            let id: EntryId = parse_name(&k, TOTALS)?;
            if !self.agreements.contains_key(&id) {
                return Err(RecordError::at(&k, "names an agreement that is not kept"));
            }
            let v: AgreementTotals = records::decode(&v).map_err(|e| RecordError::at(&k, e))?;
            self.totals.insert(id, v);
        }
        if self.agreements.len() > AGREEMENTS_MAX || self.policies.rate_count() > RATES_MAX {
            return Err(RecordError::at(
                b"",
                "more agreements or rates than the limits",
            ));
        }
        Ok(())
    }

    // ---- Typed record access -------------------------------------------------------------

    fn read<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StateError> {
        self.decode_at(key, records::decode)
    }

    /// The record under `key`, decoded by `decode` from where it is held (no copy of it).
    fn decode_at<T>(
        &self,
        key: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<T, String>,
    ) -> Result<Option<T>, StateError> {
        match self.records.with(key, decode)? {
            None => Ok(None),
            Some(r) => r.map(Some).map_err(|e| RecordError::at(key, e).into()),
        }
    }

    fn write<T: Serialize>(&mut self, key: Vec<u8>, v: &T) {
        self.records.put(key, records::encode(v));
    }

    fn put_member(&mut self, id: &MemberId, m: &MemberState) {
        self.records.put(
            records::named(record_prefix::MEMBER, id.as_str()),
            m.encode(),
        );
    }

    fn put_hold(&mut self, id: &EntryId, h: &HoldState) {
        self.write(records::named(record_prefix::HOLD, id.as_str()), h);
    }

    fn put_redemption(&mut self, id: &EntryId, r: &RedemptionState) {
        self.write(records::named(record_prefix::REDEMPTION, id.as_str()), r);
    }

    fn put_policies(&mut self) {
        let v = records::encode_json(&self.policies);
        self.records.put(record_prefix::POLICIES.to_vec(), v);
    }

    fn put_agreement(&mut self, id: &EntryId) {
        if let Some(a) = self.agreements.get(id) {
            let v = records::encode_json(a);
            self.records
                .put(records::named(record_prefix::AGREEMENT, id.as_str()), v);
        }
    }

    fn add_open_payable(&mut self, agreement: &EntryId, delta: i64) {
        if let Some(sp) = &mut self.savepoint {
            let prior = self.open_payables.get(agreement).copied();
            sp.open_payables.push((agreement.clone(), prior));
        }
        let v = self.open_payables.entry(agreement.clone()).or_default();
        *v += delta;
        let v = *v;
        self.write(
            records::named(record_prefix::OPEN_PAYABLE, agreement.as_str()),
            &v,
        );
    }

    // ---- Reads ---------------------------------------------------------------------------

    /// Number of entries applied.
    pub fn size(&self) -> u64 {
        self.meta.size
    }

    /// Log time of the last entry applied.
    pub fn last_time(&self) -> Option<LogTime> {
        self.meta.last_time
    }

    /// A member's summary, if they ever held points.
    pub fn member(&self, id: &MemberId) -> Result<Option<MemberState>, StateError> {
        let key = records::named(record_prefix::MEMBER, id.as_str());
        self.decode_at(&key, <MemberState as read::Record>::decode)
    }

    /// Number of members.
    pub fn member_count(&self) -> u64 {
        self.meta.members
    }

    /// Up to `limit` (at most [`LOTS_PAGE_MAX`]) of a member's lots, soonest-expiring first
    /// (never-expiring last), starting after the lot `after` names (`(expiry, id)`).
    pub fn lots(
        &self,
        member: &MemberId,
        after: Option<read::LotCursor>,
        limit: usize,
    ) -> Result<Vec<Lot>, StateError> {
        match self.member(member)? {
            Some(m) => read::lots(&self.records, member, &m, after, limit),
            None => Ok(Vec::new()),
        }
    }

    fn lots_in(&self, from: &[u8], end: &[u8], limit: usize) -> Result<Vec<Lot>, StateError> {
        read::lots_in(&self.records, from, end, limit)
    }

    /// Every lot of a member whose summary is `m`, in order (reads them all: for invariant
    /// checks and tests).
    fn all_lots(&self, member: &MemberId, m: &MemberState) -> Result<Vec<Lot>, StateError> {
        let mut out: Vec<Lot> = Vec::new();
        loop {
            let after = out.last().map(|l| (l.expires_at, l.id));
            let page = read::lots(&self.records, member, m, after, LOTS_PAGE_MAX)?;
            let n = page.len();
            out.extend(page);
            if n < LOTS_PAGE_MAX {
                return Ok(out);
            }
        }
    }

    fn lapsed(&self, member: &MemberId, now: LogTime) -> Result<u64, StateError> {
        read::lapsed(&self.records, member, now)
    }

    /// Points a member can spend at `now`: the remaining points of lots that have not expired.
    pub fn available(&self, member: &MemberId, now: LogTime) -> Result<u64, StateError> {
        let Some(m) = self.member(member)? else {
            return Ok(0);
        };
        Ok(m.balance - self.lapsed(member, now)?)
    }

    /// A member's qualifying earnings kept for tier evaluation, oldest first. Bounded by the
    /// tier policy's window and grace period (or [`tier::QUALIFYING_EVENTS_MAX`] without one).
    pub fn qualifying(&self, member: &MemberId) -> Result<Vec<QualifyingEvent>, StateError> {
        match self.member(member)? {
            Some(m) => read::qualifying(&self.records, member, &m),
            None => Ok(Vec::new()),
        }
    }

    /// A hold by its id.
    pub fn hold(&self, id: &EntryId) -> Result<Option<HoldState>, StateError> {
        read::named(&self.records, record_prefix::HOLD, id.as_str())
    }

    /// A redemption by its id.
    pub fn redemption(&self, id: &EntryId) -> Result<Option<RedemptionState>, StateError> {
        read::named(&self.records, record_prefix::REDEMPTION, id.as_str())
    }

    /// A spend authorisation by its id (the id of its entry).
    pub fn authorisation(&self, id: &EntryId) -> Result<Option<AuthorisationState>, StateError> {
        read::named(&self.records, record_prefix::AUTHORISATION, id.as_str())
    }

    /// An agreement by its agreement id (`terms.agreement`).
    pub fn agreement(&self, id: &EntryId) -> Option<&AgreementState> {
        self.agreements.get(id)
    }

    /// Every agreement, by agreement id.
    pub fn agreements(&self) -> impl Iterator<Item = (&EntryId, &AgreementState)> {
        self.agreements.iter()
    }

    /// A quote by its redemption id (the id of its entry), also after it expired.
    pub fn quote(&self, id: &EntryId) -> Result<Option<QuoteState>, StateError> {
        read::named(&self.records, record_prefix::QUOTE, id.as_str())
    }

    /// The obligation of `side` for `payer`'s redemption `redemption`, if logged.
    pub fn obligation(
        &self,
        side: ObligationSide,
        payer: &BrandId,
        redemption: &EntryId,
    ) -> Result<Option<ObligationState>, StateError> {
        let key = ObligationKey {
            side,
            payer: payer.clone(),
            redemption: redemption.clone(),
        };
        read::record(&self.records, &key.record_key())
    }

    /// The open payable total of agreement `agreement` in this log, in minor units of its
    /// settlement currency: what the credit limit is checked against (spec/protocol.md §4.12).
    /// Payables and their refunds in periods a logged statement settled are not open.
    pub fn open_payable(&self, agreement: &EntryId) -> i64 {
        self.open_payables.get(agreement).copied().unwrap_or(0)
    }

    /// The line totals of agreement `agreement` in this log: every line, and the open ones
    /// (outside the periods a logged statement settled). Zero without lines.
    pub fn totals(&self, agreement: &EntryId) -> AgreementTotals {
        self.totals.get(agreement).copied().unwrap_or_default()
    }

    /// The open payable total of every agreement that has one.
    pub fn open_payables(&self) -> &BTreeMap<EntryId, i64> {
        &self.open_payables
    }

    /// This log's own statement lines of agreement `agreement` with a time in `period`, in
    /// time order. Reads the period's lines only (the `ol/` index).
    pub fn lines_in(
        &self,
        agreement: &EntryId,
        period: statement::Period,
    ) -> Result<Vec<ObligationLine>, StateError> {
        read::lines_in(&self.records, agreement, period, usize::MAX)
    }

    /// Every obligation under agreement `agreement`, by the line index (reads every line of
    /// the agreement: tests).
    #[cfg(test)]
    pub(crate) fn obligations_of(
        &self,
        agreement: &EntryId,
    ) -> Result<Vec<ObligationState>, StateError> {
        let prefix = records::lines_from(agreement, 0);
        let prefix = &prefix[..prefix.len() - 8];
        let mut out = Vec::new();
        for (k, v) in self.records.all_with_prefix(prefix)? {
            let r: LineRecord = records::decode(&v).map_err(|e| RecordError::at(&k, e))?;
            if r.refund.is_some() {
                continue;
            }
            let o = self
                .obligation(r.side, &r.payer, &r.redemption)?
                .ok_or_else(|| RecordError::at(&k, "a line names no obligation"))?;
            out.push(o);
        }
        Ok(out)
    }

    /// The rate card in force at `t`, with its entry's index; see [`Policies::rate_card_at`].
    pub fn rate_card_at(
        &self,
        currency: Option<Currency>,
        t: LogTime,
    ) -> Option<(LogIndex, &RateCard)> {
        self.policies.rate_card_at(currency, t)
    }

    /// The FX rate from `from` to `to` in force at `t`, with its entry's index; see
    /// [`Policies::fx_rate_at`].
    pub fn fx_rate_at(
        &self,
        from: Currency,
        to: Currency,
        t: LogTime,
    ) -> Option<(LogIndex, &FxRate)> {
        self.policies.fx_rate_at(from, to, t)
    }

    /// The entry that used `id`, if any: one point read (a bloom filter probe on RocksDB for
    /// an id never used).
    pub fn id_record(&self, id: &EntryId) -> Result<Option<IdRecord>, StateError> {
        let key = records::named(record_prefix::ID, id.as_str());
        self.decode_at(&key, <IdRecord as read::Record>::decode)
    }

    /// The balance of an account.
    pub fn account_balance(&self, account: &AccountId) -> Result<i128, StateError> {
        Ok(match account {
            AccountId::Member(m) => self.member(m)?.map_or(0, |s| s.balance as i128),
            a => self.accounts.get(a).copied().unwrap_or(0),
        })
    }

    /// All system accounts and their balances.
    pub fn system_accounts(&self) -> &BTreeMap<AccountId, i128> {
        &self.accounts
    }

    /// Policies in force.
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// The tier a member holds now by the stored record (the policy's base tier if none).
    pub fn current_tier(&self, member: &MemberId) -> Result<Option<TierName>, StateError> {
        let Some(policy) = self.policies.tier.as_ref() else {
            return Ok(None);
        };
        Ok(Some(
            self.member(member)?
                .and_then(|m| m.tier)
                .unwrap_or_else(|| policy.tiers[0].name.clone()),
        ))
    }

    /// The tier change the tier rules require for `member` at `now`, if any.
    pub fn tier_change_due(
        &self,
        member: &MemberId,
        now: LogTime,
    ) -> Result<Option<TierChange>, StateError> {
        let Some(policy) = self.policies.tier.as_ref() else {
            return Ok(None);
        };
        let events = self.qualifying(member)?;
        let rank = tier::tier_rank_at(policy, &events, now);
        let to = policy.tiers[rank].name.clone();
        let Some(from) = self.current_tier(member)? else {
            return Ok(None);
        };
        Ok((from != to).then(|| TierChange {
            member: member.clone(),
            from,
            to,
        }))
    }

    /// Until when `member` keeps their current tier without earning more (`None`: no expiry
    /// or no policy).
    pub fn tier_valid_until(
        &self,
        member: &MemberId,
        now: LogTime,
    ) -> Result<Option<LogTime>, StateError> {
        let Some(policy) = self.policies.tier.as_ref() else {
            return Ok(None);
        };
        let Some(current) = self.current_tier(member)? else {
            return Ok(None);
        };
        let Some(rank) = policy.tiers.iter().position(|t| t.name == current) else {
            return Ok(None);
        };
        let events = self.qualifying(member)?;
        Ok(tier::tier_valid_until(policy, &events, rank, now))
    }

    /// Up to `max` lots whose expiry has passed at `now`, as expire entry bodies, soonest
    /// first. Reads the due-index range up to `now`, never all members.
    pub fn due_expiries(&self, now: LogTime, max: usize) -> Result<Vec<Expire>, StateError> {
        let start = record_prefix::DUE_LOT.to_vec();
        let end = records::due_end(record_prefix::DUE_LOT, now);
        let mut out = Vec::new();
        for (k, _) in self.records.range(&start, &end, max)? {
            let (e, member, lot) = records::parse_due_lot_key(&k)
                .ok_or_else(|| RecordError::at(&k, "bad due-lot key"))?;
            let remaining: Option<u64> = self.read(&records::lot_key(&member, Some(e), lot))?;
            let remaining =
                remaining.ok_or_else(|| RecordError::at(&k, "indexes a lot that is gone"))?;
            out.push(Expire {
                member,
                lot,
                points: Points::new(remaining).map_err(|e| RecordError::at(&k, e.to_string()))?,
            });
        }
        Ok(out)
    }

    /// Up to `max` open holds whose expiry has passed at `now`, soonest first.
    pub fn due_hold_releases(&self, now: LogTime, max: usize) -> Result<Vec<EntryId>, StateError> {
        let start = record_prefix::DUE_HOLD.to_vec();
        let end = records::due_end(record_prefix::DUE_HOLD, now);
        self.records
            .range(&start, &end, max)?
            .into_iter()
            .map(|(k, _)| {
                records::parse_due_hold_key(&k)
                    .map(|(_, id)| id)
                    .ok_or_else(|| RecordError::at(&k, "bad due-hold key").into())
            })
            .collect()
    }

    /// Up to `max` members whose tier lapses at or before `now` (by the due-index), with the
    /// tier change due for each at `now`; a member indexed but not due (the policy changed
    /// since) is skipped.
    pub fn due_tier_changes(
        &self,
        now: LogTime,
        max: usize,
    ) -> Result<Vec<TierChange>, StateError> {
        let start = record_prefix::DUE_TIER.to_vec();
        let end = records::due_end(record_prefix::DUE_TIER, now);
        let mut out = Vec::new();
        for (k, _) in self.records.range(&start, &end, max)? {
            let (_, member) = records::parse_due_tier_key(&k)
                .ok_or_else(|| RecordError::at(&k, "bad due-tier key"))?;
            if let Some(change) = self.tier_change_due(&member, now)? {
                out.push(change);
            }
        }
        Ok(out)
    }

    /// Reads ahead, together, the committed records that applying `writes` (in this order)
    /// will read by key: their ids, their members, the holds and redemptions they name, and
    /// then the lot an earning adds to. Changes nothing; on a state in memory it does nothing.
    /// A storage failure here is reported but does not poison the state (nothing was applied).
    pub fn prefetch<'a>(
        &mut self,
        writes: impl IntoIterator<Item = (&'a EntryId, &'a EntryKind)> + Clone,
    ) -> Result<(), StorageError> {
        if matches!(*self.records, Records::Memory { .. }) {
            return Ok(());
        }
        let mut keys = Vec::new();
        for (id, kind) in writes.clone() {
            keys.push(records::named(record_prefix::ID, id.as_str()));
            if let Some(m) = kind.member() {
                keys.push(records::named(record_prefix::MEMBER, m.as_str()));
            }
            match kind {
                EntryKind::Post(Post { hold, .. }) | EntryKind::Void(Void { hold }) => {
                    keys.push(records::named(record_prefix::HOLD, hold.as_str()))
                }
                EntryKind::Refund(b) => keys.push(records::named(
                    record_prefix::REDEMPTION,
                    b.redemption.as_str(),
                )),
                _ => {}
            }
        }
        self.records.prefetch(keys)?;
        // Points that never expire join the member's open lot: read it too, unless the
        // member's summary keeps it ([`MemberState::open_lot_inline`]).
        let never_expire = self
            .policies
            .expiry
            .as_ref()
            .and_then(|p| p.lot_lifetime_ms)
            .is_none();
        if never_expire {
            let mut lots = Vec::new();
            for (_, kind) in writes {
                if let EntryKind::Earn(b) = kind {
                    let open = self
                        .decode_at(
                            &records::named(record_prefix::MEMBER, b.member.as_str()),
                            MemberState::decode,
                        )
                        .ok()
                        .flatten()
                        .and_then(|m| m.open_lot.filter(|_| !m.open_lot_inline));
                    if let Some(lot) = open {
                        lots.push(records::lot_key(&b.member, None, lot));
                    }
                }
            }
            self.records.prefetch(lots)?;
        }
        Ok(())
    }

    // ---- Apply ---------------------------------------------------------------------------

    /// Applies entry number `index`. On error nothing changes, except after a storage failure
    /// ([`StateError::Storage`]): then the state refuses every entry until it is reopened.
    pub fn apply(&mut self, index: LogIndex, entry: &Entry) -> Result<Applied, StateError> {
        self.apply_guarded(index, entry, true, None)
    }

    /// As [`State::apply`], given `intent`, the entry's [`EntryKind::intent_digest`], computed
    /// beforehand (by a thread that decoded the entry, so that the replay's does not).
    pub fn apply_with_intent(
        &mut self,
        index: LogIndex,
        entry: &Entry,
        intent: &Hash,
    ) -> Result<Applied, StateError> {
        debug_assert_eq!(&entry.kind.intent_digest(), intent);
        self.apply_guarded(index, entry, true, Some(intent))
    }

    /// As [`State::apply`], for a writer that has just found `entry.id` unused
    /// ([`State::id_record`] returned `None` on this state): skips that lookup.
    pub fn apply_unused_id(
        &mut self,
        index: LogIndex,
        entry: &Entry,
    ) -> Result<Applied, StateError> {
        debug_assert!(self.poisoned || matches!(self.id_record(&entry.id), Ok(None)));
        self.apply_guarded(index, entry, false, None)
    }

    /// Refuses every entry once a storage read failed; poisons the state when one fails now.
    fn apply_guarded(
        &mut self,
        index: LogIndex,
        entry: &Entry,
        check_id: bool,
        intent: Option<&Hash>,
    ) -> Result<Applied, StateError> {
        if self.poisoned {
            return Err(StateError::Storage(StorageError(
                "a storage read failed earlier; reopen the state".into(),
            )));
        }
        let r = self.apply_inner(index, entry, check_id, intent);
        if let Err(StateError::Storage(_)) = &r {
            self.poisoned = true;
        }
        r
    }

    fn apply_inner(
        &mut self,
        index: LogIndex,
        entry: &Entry,
        check_id: bool,
        intent: Option<&Hash>,
    ) -> Result<Applied, StateError> {
        if index.get() != self.meta.size {
            return Err(StateError::IndexNotNext {
                expected: LogIndex::new(self.meta.size).unwrap_or_default(),
                got: index,
            });
        }
        if let Some(last) = self.meta.last_time {
            if entry.time <= last {
                return Err(StateError::TimeNotIncreasing {
                    last,
                    got: entry.time,
                });
            }
        }
        if check_id {
            if let Some(r) = self.id_record(&entry.id)? {
                return Err(StateError::DuplicateId(entry.id.clone(), r.index));
            }
        }
        let now = entry.time;
        let applied = match &entry.kind {
            EntryKind::Earn(b) => self.earn(index, now, b)?,
            EntryKind::Redeem(b) => self.redeem(index, now, &entry.id, b)?,
            EntryKind::Adjust(b) => self.adjust(index, now, b)?,
            EntryKind::Expire(b) => self.expire(now, b)?,
            EntryKind::Hold(b) => self.hold_points(index, now, &entry.id, b)?,
            EntryKind::Post(b) => self.post(index, now, b)?,
            EntryKind::Void(b) => self.void(index, now, b)?,
            EntryKind::Refund(b) => self.refund(now, b)?,
            EntryKind::TierPolicy(b) => {
                if let Some(sp) = &mut self.savepoint {
                    sp.tier.get_or_insert_with(|| self.policies.tier.clone());
                }
                self.policies.tier = Some(b.clone());
                self.put_policies();
                Applied::default()
            }
            EntryKind::ExpiryPolicy(b) => {
                if let Some(sp) = &mut self.savepoint {
                    sp.expiry
                        .get_or_insert_with(|| self.policies.expiry.clone());
                }
                self.policies.expiry = Some(b.clone());
                self.put_policies();
                Applied::default()
            }
            EntryKind::RateCard(b) => self.rate_card(index, now, b)?,
            EntryKind::FxRate(b) => self.fx_rate(index, now, b)?,
            EntryKind::SpendAuthorisation(b) => {
                self.spend_authorisation(index, now, &entry.id, b)?
            }
            EntryKind::Agreement(b) => self.agreement_entry(index, b)?,
            EntryKind::Quote(b) => self.quote_entry(index, now, &entry.id, b)?,
            EntryKind::Obligation(b) => self.obligation_entry(index, now, b)?,
            EntryKind::ObligationRefund(b) => self.obligation_refund(index, now, b)?,
            EntryKind::Statement(b) => self.statement_entry(index, now, b)?,
            EntryKind::TierChange(b) => self.tier_change(now, b)?,
            EntryKind::TierAttestation(b) => self.tier_attestation(now, b)?,
        };
        self.write(
            records::named(record_prefix::ID, entry.id.as_str()),
            &IdRecord {
                index,
                intent: intent.map_or_else(|| entry.kind.intent_digest(), |h| *h),
            },
        );
        self.meta.size += 1;
        self.meta.last_time = Some(now);
        self.meta_dirty = true;
        #[cfg(debug_assertions)]
        if let Err(v) = self.check_invariants_for(applied.member.as_ref()) {
            panic!("entry {index} broke an invariant: {v}");
        }
        Ok(applied)
    }

    /// Refuses (`balance_overflow`) a change of `delta` that would take a system account's
    /// balance past ±(2^53 − 1) (spec/protocol.md §4.1); member accounts are checked where
    /// they are credited.
    fn check_system(&self, account: &AccountId, delta: i128) -> Result<(), StateError> {
        if matches!(account, AccountId::Member(_)) {
            return Ok(());
        }
        let now = self.accounts.get(account).copied().unwrap_or(0);
        match now.checked_add(delta) {
            Some(v) if v.unsigned_abs() <= MAX_AMOUNT as u128 => Ok(()),
            _ => Err(StateError::BalanceOverflow),
        }
    }

    /// The points of `portions` whose lot has expired at `now`: what a return of them sends to
    /// `expired` instead of the member.
    fn lapsed_of(portions: &[Portion], now: LogTime) -> u64 {
        portions
            .iter()
            .filter(|p| p.expires_at.is_some_and(|e| e <= now))
            .map(|p| p.points)
            .sum()
    }

    fn move_points(&mut self, from: AccountId, to: AccountId, points: u64) -> Transfer {
        for (a, d) in [(&from, -(points as i128)), (&to, points as i128)] {
            if !matches!(a, AccountId::Member(_)) {
                if let Some(sp) = &mut self.savepoint {
                    let prior = self.accounts.get(a).copied();
                    sp.accounts
                        .push((a.clone(), prior, self.accounts_dirty.contains(a)));
                }
                *self.accounts.entry(a.clone()).or_insert(0) += d;
                if !self.accounts_dirty.contains(a) {
                    self.accounts_dirty.insert(a.clone());
                }
            }
        }
        Transfer { from, to, points }
    }

    /// A member's summary, or a new one (counted) if they never held points.
    fn member_or_new(&mut self, id: &MemberId) -> Result<MemberState, StateError> {
        match self.member(id)? {
            Some(m) => Ok(m),
            None => {
                self.meta.members += 1;
                Ok(MemberState::default())
            }
        }
    }

    /// A member's summary for a credit, and whether the member is new (to be counted once the
    /// credit is accepted).
    fn member_to_credit(&self, id: &MemberId) -> Result<(MemberState, bool), StateError> {
        Ok(match self.member(id)? {
            Some(m) => (m, false),
            None => (MemberState::default(), true),
        })
    }

    /// Adds `points` to a member's lot `(expires_at, lot)`, creating (and indexing) it when
    /// it does not exist. Updates the summary `m` but does not store it, nor add the points to
    /// its balance: the caller does, after this call (`m.balance` is the sum of the lots
    /// before it). `before` says what the caller knows of the lot (what it knows is not read).
    fn add_to_lot(
        &mut self,
        member: &MemberId,
        m: &mut MemberState,
        expires_at: Option<LogTime>,
        lot: LogIndex,
        points: u64,
        before: LotBefore,
    ) -> Result<(), StateError> {
        if m.inline_lot(lot, expires_at).is_some() {
            // The summary keeps the lot: its points are the balance the caller raises.
            return Ok(());
        }
        if m.lots == 0 && expires_at.is_none() {
            // A first lot that never expires is kept in the summary.
            m.lots = 1;
            m.open_lot = Some(lot);
            m.open_lot_inline = true;
            return Ok(());
        }
        let key = records::lot_key(member, expires_at, lot);
        let existing = match before {
            LotBefore::New => None,
            LotBefore::Unknown => self.read::<u64>(&key)?,
        };
        let remaining = match existing {
            Some(r) => r,
            None => {
                if let (true, Some(open)) = (m.open_lot_inline, m.open_lot) {
                    // A second lot: the one the summary kept gets its own record.
                    self.write(records::lot_key(member, None, open), &m.balance);
                    m.open_lot_inline = false;
                }
                m.lots += 1;
                match expires_at {
                    Some(e) => {
                        self.records
                            .put(records::due_lot_key(e, member, lot), Vec::new());
                    }
                    None => m.open_lot = Some(lot),
                }
                0
            }
        };
        self.write(key, &(remaining + points));
        Ok(())
    }

    /// Moves the open lot into the summary `m` when it is the member's only lot and a record
    /// (a record written before [`MemberState::open_lot_inline`] existed, or the other lots
    /// were just spent or expired), so that after every write of a member's lots the summary
    /// keeps the open lot exactly when it is the only one: the records are a function of the
    /// member's lots, whatever the order of the writes that made them (a replay and a
    /// migrated store write the same). `m.balance` must be the lots' sum.
    fn settle_open_lot(&mut self, member: &MemberId, m: &mut MemberState) {
        if let (1, Some(open), false) = (m.lots, m.open_lot, m.open_lot_inline) {
            self.records.delete(records::lot_key(member, None, open));
            m.open_lot_inline = true;
        }
    }

    /// Credits a new lot (named `index`) to `member`, whose summary is `m`, from `source`;
    /// the caller stores `m`. Refuses (changing nothing) a balance past 2^53 − 1.
    fn credit(
        &mut self,
        index: LogIndex,
        now: LogTime,
        member: &MemberId,
        m: &mut MemberState,
        points: Points,
        source: AccountId,
    ) -> Result<Transfer, StateError> {
        if m.balance + m.pending + points.get() > MAX_AMOUNT {
            return Err(StateError::BalanceOverflow);
        }
        self.check_system(&source, -(points.get() as i128))?;
        let expires_at = self
            .policies
            .expiry
            .as_ref()
            .and_then(|p| p.lot_lifetime_ms)
            .map(|d| now.plus(d));
        // Points that never expire are interchangeable: they join the member's one
        // never-expiring lot (named by the entry that created it), which keeps the number of
        // lots bounded when the brand has no expiry policy.
        let lot = match (expires_at, m.open_lot) {
            (None, Some(open)) => open,
            _ => index,
        };
        let before = if lot == index {
            LotBefore::New
        } else {
            LotBefore::Unknown
        };
        self.add_to_lot(member, m, expires_at, lot, points.get(), before)?;
        m.balance += points.get();
        self.settle_open_lot(member, m);
        Ok(self.move_points(source, AccountId::Member(member.clone()), points.get()))
    }

    /// Plans a debit of `points` from live lots, soonest-expiring first, without changing
    /// anything. Reads the lots it takes from (and the lapsed ones), not all of them.
    fn plan_debit(
        &self,
        now: LogTime,
        member: &MemberId,
        points: Points,
    ) -> Result<Vec<Portion>, StateError> {
        let m = self
            .member(member)?
            .ok_or_else(|| StateError::UnknownMember(member.clone()))?;
        // A member whose only lot the summary keeps has no lot that lapses.
        let lapsed = if m.open_lot_inline {
            0
        } else {
            self.lapsed(member, now)?
        };
        let available = m.balance - lapsed;
        if available < points.get() {
            return Err(StateError::InsufficientPoints {
                available,
                requested: points.get(),
            });
        }
        if let (true, Some(open)) = (m.open_lot_inline, m.open_lot) {
            return Ok(vec![Portion {
                lot: open,
                expires_at: None,
                points: points.get(),
            }]);
        }
        let mut need = points.get();
        let mut portions = Vec::new();
        let end = records::lots_end(member);
        let mut from = records::lots_from(member, Some(now));
        while need > 0 {
            let page = self.lots_in(&from, &end, DEBIT_PAGE)?;
            for l in &page {
                if need == 0 {
                    break;
                }
                let take = need.min(l.remaining);
                if take > 0 {
                    portions.push(Portion {
                        lot: l.id,
                        expires_at: l.expires_at,
                        points: take,
                    });
                    need -= take;
                }
            }
            match page.last() {
                Some(l) if page.len() == DEBIT_PAGE => {
                    from = records::after(&records::lot_key(member, l.expires_at, l.id));
                }
                _ => break,
            }
        }
        if need != 0 {
            return Err(RecordError::at(
                &records::named(record_prefix::MEMBER, member.as_str()),
                "the lots hold less than the balance",
            )
            .into());
        }
        Ok(portions)
    }

    /// Takes planned portions out of a member's lots and moves the points to `to`.
    fn debit(
        &mut self,
        member: &MemberId,
        portions: &[Portion],
        to: AccountId,
    ) -> Result<Transfer, StateError> {
        let total: u64 = portions.iter().map(|p| p.points).sum();
        self.check_system(&to, total as i128)?;
        let mut m = self
            .member(member)?
            .ok_or_else(|| StateError::UnknownMember(member.clone()))?;
        for p in portions {
            if let Some(remaining) = m.inline_lot(p.lot, p.expires_at) {
                // The summary's only lot: what is left of it is the balance left.
                if remaining == p.points {
                    m.lots = 0;
                    m.open_lot = None;
                    m.open_lot_inline = false;
                }
                continue;
            }
            let key = records::lot_key(member, p.expires_at, p.lot);
            let remaining = self
                .read::<u64>(&key)?
                .ok_or_else(|| RecordError::at(&key, "a planned lot is gone"))?;
            let left = remaining - p.points;
            if left > 0 {
                self.write(key, &left);
                continue;
            }
            self.records.delete(key);
            m.lots -= 1;
            match p.expires_at {
                Some(e) => self.records.delete(records::due_lot_key(e, member, p.lot)),
                None => {
                    if m.open_lot == Some(p.lot) {
                        m.open_lot = None;
                    }
                }
            }
        }
        m.balance -= total;
        self.settle_open_lot(member, &mut m);
        self.put_member(member, &m);
        Ok(self.move_points(AccountId::Member(member.clone()), to, total))
    }

    /// Returns portions from `from` to the member's lots; portions whose lot has expired at
    /// `now` go to `expired` instead. Returns the transfers made.
    fn give_back(
        &mut self,
        now: LogTime,
        member: &MemberId,
        portions: &[Portion],
        from: &AccountId,
    ) -> Result<Vec<Transfer>, StateError> {
        let (mut back, mut lapsed) = (0u64, 0u64);
        let mut m = self.member_or_new(member)?;
        for p in portions {
            let live = p.expires_at.is_none_or(|e| e > now);
            if !live {
                lapsed += p.points;
                continue;
            }
            back += p.points;
            // A never-expiring portion goes back to the member's never-expiring lot, whichever
            // entry named it (spec/protocol.md §4.3); an expiring one to its own lot.
            let lot = match (p.expires_at, m.open_lot) {
                (None, Some(open)) => open,
                _ => p.lot,
            };
            self.add_to_lot(
                member,
                &mut m,
                p.expires_at,
                lot,
                p.points,
                LotBefore::Unknown,
            )?;
            m.balance += p.points;
        }
        self.settle_open_lot(member, &mut m);
        self.put_member(member, &m);
        let mut t = Vec::new();
        if back > 0 {
            t.push(self.move_points(from.clone(), AccountId::Member(member.clone()), back));
        }
        if lapsed > 0 {
            t.push(self.move_points(from.clone(), AccountId::Expired, lapsed));
        }
        Ok(t)
    }

    /// Records a qualifying earning and drops those that can no longer matter
    /// ([`tier::prune`]'s rule, one record each).
    fn add_qualifying(
        &mut self,
        member: &MemberId,
        m: &mut MemberState,
        now: LogTime,
        points: u64,
    ) -> Result<(), StateError> {
        self.write(records::qualifying_key(member, now), &points);
        if m.qualifying == 0 {
            m.qualifying_from_ms = now.get();
        }
        m.qualifying += 1;
        let mut start = records::qualifying_from(member, m.qualifying_from_ms);
        let end = match &self.policies.tier {
            Some(p) => {
                let horizon = now.minus(p.grace_ms).minus(p.window_ms).get();
                records::qualifying_from(member, horizon.saturating_add(1))
            }
            None => records::qualifying_end(member),
        };
        loop {
            let excess = match &self.policies.tier {
                Some(_) => records::RANGE_PAGE_MAX,
                None => (m
                    .qualifying
                    .saturating_sub(tier::QUALIFYING_EVENTS_MAX as u64)
                    as usize)
                    .min(records::RANGE_PAGE_MAX),
            };
            if excess == 0 {
                return Ok(());
            }
            let page = self.records.range(&start, &end, excess)?;
            let n = page.len();
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            start = records::after(last);
            for (k, _) in page {
                self.records.delete(k);
                m.qualifying -= 1;
            }
            // The oldest kept earning is the next one (the one just written at the latest:
            // a prune never reaches `now`).
            let next = self
                .records
                .range(&start, &records::qualifying_end(member), 1)?;
            let (k, _) = next
                .first()
                .ok_or_else(|| RecordError::at(&start, "a prune removed every earning"))?;
            m.qualifying_from_ms = records::qualifying_time(k)
                .ok_or_else(|| RecordError::at(k, "bad qualifying key"))?;
            if n < excess {
                return Ok(());
            }
        }
    }

    /// Re-indexes when the member's current tier lapses ([`record_prefix::DUE_TIER`]).
    fn index_tier_due(
        &mut self,
        member: &MemberId,
        m: &mut MemberState,
        now: LogTime,
    ) -> Result<(), StateError> {
        let due = match &self.policies.tier {
            None => None,
            Some(policy) => {
                let current = m
                    .tier
                    .clone()
                    .unwrap_or_else(|| policy.tiers[0].name.clone());
                match policy.tiers.iter().position(|t| t.name == current) {
                    Some(rank) => {
                        let events = self.qualifying(member)?;
                        tier::tier_valid_until(policy, &events, rank, now)
                    }
                    None => Some(now),
                }
            }
        };
        if due != m.tier_due {
            if let Some(old) = m.tier_due {
                self.records.delete(records::due_tier_key(old, member));
            }
            if let Some(new) = due {
                self.records
                    .put(records::due_tier_key(new, member), Vec::new());
            }
            m.tier_due = due;
        }
        Ok(())
    }

    fn earn(&mut self, index: LogIndex, now: LogTime, b: &Earn) -> Result<Applied, StateError> {
        let (mut m, new) = self.member_to_credit(&b.member)?;
        let t = self.credit(index, now, &b.member, &mut m, b.points, AccountId::Issued)?;
        self.meta.members += u64::from(new);
        if b.qualifying {
            self.add_qualifying(&b.member, &mut m, now, b.points.get())?;
            self.index_tier_due(&b.member, &mut m, now)?;
        }
        self.put_member(&b.member, &m);
        Ok(Applied {
            transfers: vec![t],
            member: Some(b.member.clone()),
        })
    }

    fn redeem(
        &mut self,
        index: LogIndex,
        now: LogTime,
        id: &EntryId,
        b: &Redeem,
    ) -> Result<Applied, StateError> {
        let portions = self.plan_debit(now, &b.member, b.points)?;
        let t = self.debit(&b.member, &portions, AccountId::Redeemed)?;
        self.put_redemption(
            id,
            &RedemptionState {
                index,
                member: b.member.clone(),
                points: b.points.get(),
                refunded: 0,
                account: AccountId::Redeemed,
                portions,
                obligation: false,
            },
        );
        Ok(Applied {
            transfers: vec![t],
            member: Some(b.member.clone()),
        })
    }

    fn adjust(&mut self, index: LogIndex, now: LogTime, b: &Adjust) -> Result<Applied, StateError> {
        let t = match b.direction {
            Direction::Credit => {
                let mut m = self.member_or_new(&b.member)?;
                let t = self.credit(
                    index,
                    now,
                    &b.member,
                    &mut m,
                    b.points,
                    AccountId::Adjustments,
                )?;
                self.put_member(&b.member, &m);
                t
            }
            Direction::Debit => {
                let portions = self.plan_debit(now, &b.member, b.points)?;
                self.debit(&b.member, &portions, AccountId::Adjustments)?
            }
        };
        Ok(Applied {
            transfers: vec![t],
            member: Some(b.member.clone()),
        })
    }

    /// Finds a member's lot by its index (`m`: the member's summary). Lots sort
    /// soonest-expiring first, so a valid `expire` finds its lot among the first, lapsed ones;
    /// only a refused one reads further.
    fn find_lot(
        &self,
        member: &MemberId,
        m: &MemberState,
        lot: LogIndex,
    ) -> Result<Option<Lot>, StateError> {
        if m.open_lot_inline {
            return Ok(m.inline_lot(lot, None).map(|remaining| Lot {
                id: lot,
                expires_at: None,
                remaining,
            }));
        }
        let end = records::lots_end(member);
        let mut from = records::lots_from(member, None);
        loop {
            let page = self.lots_in(&from, &end, LOTS_PAGE_MAX)?;
            if let Some(l) = page.iter().find(|l| l.id == lot) {
                return Ok(Some(l.clone()));
            }
            match page.last() {
                Some(l) if page.len() == LOTS_PAGE_MAX => {
                    from = records::after(&records::lot_key(member, l.expires_at, l.id));
                }
                _ => return Ok(None),
            }
        }
    }

    fn expire(&mut self, now: LogTime, b: &Expire) -> Result<Applied, StateError> {
        let unknown = || StateError::UnknownLot {
            member: b.member.clone(),
            lot: b.lot,
        };
        let m = self.member(&b.member)?.ok_or_else(unknown)?;
        let lot = self.find_lot(&b.member, &m, b.lot)?.ok_or_else(unknown)?;
        if lot.is_live(now) {
            return Err(StateError::LotNotExpired { lot: b.lot, now });
        }
        if lot.remaining != b.points.get() {
            return Err(StateError::ExpireAmountMismatch {
                lot: b.lot,
                remaining: lot.remaining,
                requested: b.points.get(),
            });
        }
        let portion = Portion {
            lot: lot.id,
            expires_at: lot.expires_at,
            points: lot.remaining,
        };
        let t = self.debit(&b.member, &[portion], AccountId::Expired)?;
        Ok(Applied {
            transfers: vec![t],
            member: Some(b.member.clone()),
        })
    }

    /// spec/protocol.md §4.9, `rate_card`.
    fn rate_card(
        &mut self,
        index: LogIndex,
        now: LogTime,
        b: &RateCard,
    ) -> Result<Applied, StateError> {
        self.check_new_rate(now, b.valid_from)?;
        self.policies.rate_cards.push((index, b.clone()));
        self.put_policies();
        debug_assert!(self.policies.rate_count() <= RATES_MAX);
        Ok(Applied::default())
    }

    /// spec/protocol.md §4.9, `fx_rate`.
    fn fx_rate(
        &mut self,
        index: LogIndex,
        now: LogTime,
        b: &FxRate,
    ) -> Result<Applied, StateError> {
        if b.from == b.to {
            return Err(StateError::FxSameCurrency { currency: b.from });
        }
        self.check_new_rate(now, b.valid_from)?;
        self.policies.fx_rates.push((index, b.clone()));
        self.put_policies();
        debug_assert!(self.policies.rate_count() <= RATES_MAX);
        Ok(Applied::default())
    }

    /// The preconditions every rate entry shares: not backdated, and room for one more.
    fn check_new_rate(&self, now: LogTime, valid_from: LogTime) -> Result<(), StateError> {
        if valid_from < now {
            return Err(StateError::RateCardInPast);
        }
        if self.policies.rate_count() >= RATES_MAX {
            return Err(StateError::TooManyRates { max: RATES_MAX });
        }
        Ok(())
    }

    /// spec/protocol.md §4.9, `spend_authorisation`: records an unused authorisation named by
    /// the entry's id. Moves no points.
    fn spend_authorisation(
        &mut self,
        index: LogIndex,
        now: LogTime,
        id: &EntryId,
        b: &SpendAuthorisation,
    ) -> Result<Applied, StateError> {
        if self.member(&b.member)?.is_none() {
            return Err(StateError::UnknownMember(b.member.clone()));
        }
        if b.expires_at <= now {
            return Err(StateError::AuthorisationExpiryNotInFuture {
                expires_at: b.expires_at,
                now,
            });
        }
        self.write(
            records::named(record_prefix::AUTHORISATION, id.as_str()),
            &AuthorisationState {
                index,
                member: b.member.clone(),
                payee: b.payee.clone(),
                max_points: b.max_points.get(),
                expires_at: b.expires_at,
                used_by: None,
            },
        );
        Ok(Applied {
            transfers: Vec::new(),
            member: Some(b.member.clone()),
        })
    }

    /// spec/protocol.md §4.9, `agreement`: records a self-consistent agreement under its
    /// agreement id, once. Moves no points.
    fn agreement_entry(
        &mut self,
        index: LogIndex,
        b: &SignedAgreement,
    ) -> Result<Applied, StateError> {
        b.verify_self_consistent().map_err(StateError::Agreement)?;
        let id = &b.terms.agreement;
        if let Some(a) = self.agreements.get(id) {
            return Err(StateError::AgreementExists {
                agreement: id.clone(),
                index: a.index,
            });
        }
        if self.agreements.len() >= AGREEMENTS_MAX {
            return Err(StateError::TooManyAgreements {
                max: AGREEMENTS_MAX,
            });
        }
        if let Some(sp) = &mut self.savepoint {
            sp.agreements_added.push(id.clone());
        }
        self.agreements.insert(
            id.clone(),
            AgreementState {
                index,
                agreement: b.clone(),
                statements: BTreeMap::new(),
            },
        );
        self.put_agreement(id);
        debug_assert!(self.agreements.len() <= AGREEMENTS_MAX);
        Ok(Applied::default())
    }

    /// spec/protocol.md §4.9, `quote`: records a quote, live at `now`, that the agreement it
    /// names allows and whose terms it repeats, under its redemption id. Moves no points.
    fn quote_entry(
        &mut self,
        index: LogIndex,
        now: LogTime,
        id: &EntryId,
        q: &Quote,
    ) -> Result<Applied, StateError> {
        if id != &q.redemption {
            return Err(StateError::QuoteIdMismatch {
                id: id.clone(),
                redemption: q.redemption.clone(),
            });
        }
        if q.quoted_at > now || q.expires_at <= now {
            return Err(StateError::QuoteExpired {
                quoted_at: q.quoted_at,
                expires_at: q.expires_at,
                now,
            });
        }
        let terms = &self
            .agreements
            .get(&q.agreement)
            .ok_or_else(|| StateError::UnknownAgreement(q.agreement.clone()))?
            .agreement
            .terms;
        if let Some(reason) = quote_mismatch(terms, q) {
            return Err(StateError::QuoteAgreementMismatch {
                agreement: q.agreement.clone(),
                reason,
            });
        }
        let v = records::encode_json(&QuoteState {
            index,
            quote: q.clone(),
        });
        self.records
            .put(records::named(record_prefix::QUOTE, id.as_str()), v);
        Ok(Applied::default())
    }

    fn put_obligation(&mut self, o: &ObligationState) {
        let v = records::encode_json(o);
        self.records.put(o.key().record_key(), v);
    }

    /// The key and the current value of the totals of the settlement period that a line at
    /// `time` of `agreement` falls in (`None` before the first period). Read before an entry
    /// writes anything, so that a failed read leaves no half entry behind.
    fn period_totals_at(
        &self,
        agreement: &EntryId,
        time: LogTime,
    ) -> Result<Option<(Vec<u8>, LineTotals)>, StateError> {
        let Some(k) = self
            .agreements
            .get(agreement)
            .and_then(|a| a.agreement.terms.period_of(time))
        else {
            return Ok(None);
        };
        let key = records::period_totals_key(agreement, k);
        let v = self.read(&key)?.unwrap_or_default();
        Ok(Some((key, v)))
    }

    /// Adds a line to the agreement's line index, its totals and (`period`, from
    /// [`State::period_totals_at`]) its settlement period's totals.
    fn put_line(
        &mut self,
        o: &ObligationState,
        refund: Option<&RefundState>,
        period: Option<(Vec<u8>, LineTotals)>,
    ) {
        let q = &o.quote;
        let (time, index, amount) = match refund {
            None => (o.time, o.index, q.amount_minor as i64),
            Some(r) => (r.time, r.index, -(r.amount_minor as i64)),
        };
        self.write(
            records::line_key(&q.agreement, time, index),
            &LineRecord {
                side: o.side,
                payer: q.payer.clone(),
                payee: q.payee.clone(),
                redemption: q.redemption.clone(),
                refund: refund.map(|r| r.refund.clone()),
                amount_minor: amount,
            },
        );
        let Some(a) = self.agreements.get(&q.agreement) else {
            return;
        };
        let terms = &a.agreement.terms;
        if let Some(sp) = &mut self.savepoint {
            let prior = self.totals.get(&q.agreement).copied();
            sp.totals.push((q.agreement.clone(), prior));
        }
        let totals = self.totals.entry(q.agreement.clone()).or_default();
        totals.all.add(terms, &q.payer, amount);
        if !a.settled(time) {
            totals.open.add(terms, &q.payer, amount);
        }
        let totals = *totals;
        if let Some((key, mut v)) = period {
            v.add(terms, &q.payer, amount);
            self.write(key, &v);
        }
        self.write(
            records::named(record_prefix::TOTALS, q.agreement.as_str()),
            &totals,
        );
    }

    /// spec/protocol.md §4.9, `obligation` (§4.12): records one side of what the payer owes the
    /// payee for a committed redemption, consistent with the agreement, and for a payable with
    /// the posted hold and the credit limit. Moves no points (they moved with the post).
    fn obligation_entry(
        &mut self,
        index: LogIndex,
        now: LogTime,
        b: &Obligation,
    ) -> Result<Applied, StateError> {
        let q = &b.quote;
        match (b.side, &b.counterpart) {
            (ObligationSide::Receivable, None) => {
                return Err(StateError::ObligationCounterpartMissing)
            }
            (ObligationSide::Payable, Some(_)) => {
                return Err(StateError::ObligationCounterpartUnexpected)
            }
            _ => {}
        }
        if let Some(o) = self.obligation(b.side, &q.payer, &q.redemption)? {
            return Err(StateError::ObligationExists {
                side: b.side,
                payer: q.payer.clone(),
                redemption: q.redemption.clone(),
                index: o.index,
            });
        }
        let terms = &self
            .agreements
            .get(&q.agreement)
            .ok_or_else(|| StateError::UnknownAgreement(q.agreement.clone()))?
            .agreement
            .terms;
        if let Some(reason) = quote_mismatch(terms, q) {
            return Err(StateError::ObligationAgreementMismatch {
                agreement: q.agreement.clone(),
                reason,
            });
        }
        let credit_limit = terms.credit_limit_minor;
        let mut payable = None;
        if b.side == ObligationSide::Payable {
            let hold = self
                .hold(&q.redemption)?
                .ok_or_else(|| StateError::UnknownHold(q.redemption.clone()))?;
            let redemption = self.redemption(&q.redemption)?;
            let mismatch = if !matches!(hold.status, HoldStatus::Posted(_)) {
                Some("the hold is not posted")
            } else if hold.payee.as_ref() != Some(&q.payee) {
                Some("the hold is not for the quote's payee")
            } else if hold.member != q.member {
                Some("the hold is not of the quote's member")
            } else if hold.points != q.points.get() {
                Some("the hold is not of the quote's points")
            } else if redemption.as_ref().is_some_and(|r| r.refunded > 0) {
                Some("the posted hold was refunded in part")
            } else {
                None
            };
            if let Some(reason) = mismatch {
                return Err(StateError::ObligationHoldMismatch {
                    hold: q.redemption.clone(),
                    reason,
                });
            }
            let open_minor = self.open_payable(&q.agreement);
            // Amounts are at most 2^53 − 1, so the sum fits an i64.
            let total = open_minor + q.amount_minor as i64;
            if total > 0 && total as u64 > credit_limit {
                return Err(StateError::CreditLimitExceeded {
                    agreement: q.agreement.clone(),
                    open_minor,
                    amount_minor: q.amount_minor,
                    limit_minor: credit_limit,
                });
            }
            payable = Some(redemption);
        }
        let time = match &b.counterpart {
            Some(c) => c.time,
            None => now,
        };
        let period = self.period_totals_at(&q.agreement, time)?;
        if let Some(redemption) = payable {
            self.add_open_payable(&q.agreement, q.amount_minor as i64);
            if let Some(mut r) = redemption {
                r.obligation = true;
                self.put_redemption(&q.redemption, &r);
            }
        }
        let o = ObligationState {
            index,
            time,
            side: b.side,
            quote: q.clone(),
            counterpart: b.counterpart.clone(),
            refunds: Vec::new(),
        };
        self.put_line(&o, None, period);
        self.put_obligation(&o);
        Ok(Applied::default())
    }

    /// spec/protocol.md §4.13, `obligation_refund`: takes a refund off one side of a committed
    /// redemption's obligation, by the agreement's cumulative rule; on the payable side the
    /// refunded points also go back from the partner's clearing account to the member, as a
    /// `refund` of the posted hold would.
    fn obligation_refund(
        &mut self,
        index: LogIndex,
        now: LogTime,
        b: &ObligationRefund,
    ) -> Result<Applied, StateError> {
        let mut o = self
            .obligation(b.side, &b.payer, &b.redemption)?
            .ok_or_else(|| StateError::UnknownObligation {
                side: b.side,
                payer: b.payer.clone(),
                redemption: b.redemption.clone(),
            })?;
        match (b.side, &b.counterpart) {
            (ObligationSide::Receivable, None) => {
                return Err(StateError::ObligationCounterpartMissing)
            }
            (ObligationSide::Payable, Some(_)) => {
                return Err(StateError::ObligationCounterpartUnexpected)
            }
            _ => {}
        }
        if let Some(r) = o.refunds.iter().find(|r| r.refund == b.refund) {
            return Err(StateError::RefundExists {
                redemption: b.redemption.clone(),
                refund: b.refund.clone(),
                index: r.index,
            });
        }
        if o.refunds.len() >= REFUNDS_MAX {
            return Err(StateError::TooManyRefunds {
                redemption: b.redemption.clone(),
                max: REFUNDS_MAX,
            });
        }
        let total = o.quote.points.get();
        let refunded = o.refunded_points();
        if b.points.get() > total - refunded {
            return Err(StateError::RefundExceedsObligation {
                redemption: b.redemption.clone(),
                remaining: total - refunded,
                requested: b.points.get(),
            });
        }
        let rule = self
            .agreements
            .get(&o.quote.agreement)
            .ok_or_else(|| StateError::UnknownAgreement(o.quote.agreement.clone()))?
            .agreement
            .terms
            .rounding;
        let expected =
            crate::value::refund_minor(o.quote.amount_minor, total, refunded, b.points.get(), rule)
                .map_err(|_| StateError::RefundExceedsObligation {
                    redemption: b.redemption.clone(),
                    remaining: total - refunded,
                    requested: b.points.get(),
                })?;
        if expected != b.amount_minor {
            return Err(StateError::RefundAmountMismatch {
                expected,
                given: b.amount_minor,
            });
        }
        let agreement = o.quote.agreement.clone();
        let time = match &b.counterpart {
            Some(c) => c.time,
            None => now,
        };
        let period = if b.amount_minor > 0 {
            self.period_totals_at(&agreement, time)?
        } else {
            None
        };
        let applied = if b.side == ObligationSide::Payable {
            // The points themselves: checked and moved as by a `refund` of the posted hold.
            let applied = self.return_points(now, &b.redemption, b.points)?;
            self.add_open_payable(&agreement, -(b.amount_minor as i64));
            applied
        } else {
            Applied::default()
        };
        let r = RefundState {
            refund: b.refund.clone(),
            index,
            time,
            points: b.points.get(),
            amount_minor: b.amount_minor,
            counterpart: b.counterpart.clone(),
        };
        if r.amount_minor > 0 {
            self.put_line(&o, Some(&r), period);
        }
        o.refunds.push(r);
        self.put_obligation(&o);
        Ok(applied)
    }

    /// spec/protocol.md §4.14, `statement`: records a settlement statement both brands signed
    /// with their agreement keys, for a settlement period of the agreement that has ended, once,
    /// and only when it is exactly what this log's own lines of the period sum to. The period's
    /// payables are then settled: no longer open against the credit limit.
    fn statement_entry(
        &mut self,
        index: LogIndex,
        now: LogTime,
        b: &SignedStatement,
    ) -> Result<Applied, StateError> {
        let st = &b.statement;
        let a = self
            .agreements
            .get(&st.agreement)
            .ok_or_else(|| StateError::UnknownAgreement(st.agreement.clone()))?;
        let terms = &a.agreement.terms;
        let k = st
            .period
            .settlement_index(terms)
            .ok_or(StateError::StatementPeriod(
                "not a settlement period of the agreement",
            ))?;
        if st.period.to() > now {
            return Err(StateError::StatementPeriod("the period has not ended"));
        }
        if let Some(i) = a.statements.get(&k) {
            return Err(StateError::StatementExists {
                agreement: st.agreement.clone(),
                period: k,
                index: *i,
            });
        }
        b.verify(&a.agreement)
            .map_err(StateError::StatementSignature)?;
        // The period's lines, read once: the statement is computed from them, and their
        // payable side is what the statement settles.
        let sided = read::sided_lines_in(&self.records, &st.agreement, st.period, usize::MAX)?;
        let settled: i64 = sided
            .iter()
            .filter(|(side, _)| *side == ObligationSide::Payable)
            .map(|(_, l)| l.amount_minor)
            .sum();
        let lines: Vec<ObligationLine> = sided.into_iter().map(|(_, l)| l).collect();
        let terms = &self.agreements[&st.agreement].agreement.terms;
        let ours = statement::compute(terms, st.period, &lines)
            .map_err(StateError::StatementUncomputable)?;
        if &ours != st {
            return Err(StateError::StatementMismatch {
                expected: Box::new(serde_json::to_string(&ours).expect("a statement serializes")),
            });
        }
        // The period's payable lines stop counting against the credit limit, and all its
        // lines stop being open.
        let period: Option<LineTotals> =
            self.read(&records::period_totals_key(&st.agreement, k))?;
        let id = st.agreement.clone();
        if settled != 0 {
            self.add_open_payable(&id, -settled);
        }
        if let Some(p) = period {
            if let Some(sp) = &mut self.savepoint {
                sp.totals.push((id.clone(), self.totals.get(&id).copied()));
            }
            let totals = self.totals.entry(id.clone()).or_default();
            totals.open.remove(&p);
            let totals = *totals;
            self.write(records::named(record_prefix::TOTALS, id.as_str()), &totals);
        }
        if let Some(sp) = &mut self.savepoint {
            sp.statements_added.push((id.clone(), k));
        }
        self.agreements
            .get_mut(&id)
            .expect("checked above")
            .statements
            .insert(k, index);
        self.put_agreement(&id);
        Ok(Applied::default())
    }

    /// The checks a hold naming spend authorisation `auth` must pass (spec/protocol.md §4.10),
    /// in the order of §4.9.
    fn check_authorisation(
        &self,
        now: LogTime,
        auth: &EntryId,
        b: &Hold,
    ) -> Result<AuthorisationState, StateError> {
        let a = self
            .authorisation(auth)?
            .ok_or_else(|| StateError::UnknownAuthorisation(auth.clone()))?;
        if a.member != b.member {
            return Err(StateError::AuthorisationWrongMember {
                id: auth.clone(),
                authorised: a.member.clone(),
                member: b.member.clone(),
            });
        }
        if b.payee.as_ref() != Some(&a.payee) {
            return Err(StateError::AuthorisationWrongPayee {
                id: auth.clone(),
                authorised: a.payee.clone(),
                payee: b.payee.clone(),
            });
        }
        if b.points.get() > a.max_points {
            return Err(StateError::AuthorisationExceeded {
                id: auth.clone(),
                max_points: a.max_points,
                requested: b.points.get(),
            });
        }
        if now >= a.expires_at {
            return Err(StateError::AuthorisationExpired {
                id: auth.clone(),
                expires_at: a.expires_at,
            });
        }
        if let Some(used_by) = &a.used_by {
            return Err(StateError::AuthorisationUsed {
                id: auth.clone(),
                used_by: used_by.clone(),
            });
        }
        Ok(a)
    }

    fn hold_points(
        &mut self,
        index: LogIndex,
        now: LogTime,
        id: &EntryId,
        b: &Hold,
    ) -> Result<Applied, StateError> {
        if b.expires_at <= now {
            return Err(StateError::HoldExpiryNotInFuture {
                expires_at: b.expires_at,
                now,
            });
        }
        let auth = match &b.authorisation {
            Some(auth) => Some((auth, self.check_authorisation(now, auth, b)?)),
            None => None,
        };
        let portions = self.plan_debit(now, &b.member, b.points)?;
        let t = self.debit(&b.member, &portions, AccountId::Held)?;
        let mut m = self
            .member(&b.member)?
            .ok_or_else(|| StateError::UnknownMember(b.member.clone()))?;
        m.pending += b.points.get();
        self.put_member(&b.member, &m);
        if let Some((auth, mut a)) = auth {
            debug_assert!(a.used_by.is_none());
            a.used_by = Some(id.clone());
            self.write(
                records::named(record_prefix::AUTHORISATION, auth.as_str()),
                &a,
            );
        }
        self.put_hold(
            id,
            &HoldState {
                index,
                member: b.member.clone(),
                points: b.points.get(),
                expires_at: b.expires_at,
                payee: b.payee.clone(),
                condition: b.condition,
                authorisation: b.authorisation.clone(),
                portions,
                status: HoldStatus::Open,
            },
        );
        self.records
            .put(records::due_hold_key(b.expires_at, id), Vec::new());
        Ok(Applied {
            transfers: vec![t],
            member: Some(b.member.clone()),
        })
    }

    fn open_hold(&self, id: &EntryId) -> Result<HoldState, StateError> {
        let h = self
            .hold(id)?
            .ok_or_else(|| StateError::UnknownHold(id.clone()))?;
        if h.status != HoldStatus::Open {
            return Err(StateError::HoldNotOpen {
                id: id.clone(),
                status: h.status.name(),
            });
        }
        Ok(h)
    }

    fn close_hold(
        &mut self,
        id: &EntryId,
        mut h: HoldState,
        status: HoldStatus,
    ) -> Result<HoldState, StateError> {
        h.status = status;
        self.records.delete(records::due_hold_key(h.expires_at, id));
        self.put_hold(id, &h);
        let mut m = self
            .member(&h.member)?
            .ok_or_else(|| StateError::UnknownMember(h.member.clone()))?;
        m.pending -= h.points;
        self.put_member(&h.member, &m);
        Ok(h)
    }

    fn post(&mut self, index: LogIndex, now: LogTime, b: &Post) -> Result<Applied, StateError> {
        let h = self.open_hold(&b.hold)?;
        if now >= h.expires_at {
            return Err(StateError::HoldExpired {
                id: b.hold.clone(),
                expires_at: h.expires_at,
            });
        }
        match (&h.condition, &b.preimage) {
            (Some(c), Some(p)) => {
                let digest: Hash = Sha256::digest(&p.0).into();
                if digest != c.0 {
                    return Err(StateError::ConditionNotMet);
                }
            }
            (Some(_), None) => return Err(StateError::PreimageRequired),
            (None, Some(_)) => return Err(StateError::UnexpectedPreimage),
            (None, None) => {}
        }
        let payee_account = h
            .payee
            .clone()
            .map_or(AccountId::Redeemed, AccountId::Clearing);
        self.check_system(&payee_account, h.points as i128)?;
        let h = self.close_hold(&b.hold, h, HoldStatus::Posted(index))?;
        let to = h
            .payee
            .clone()
            .map_or(AccountId::Redeemed, AccountId::Clearing);
        let t = self.move_points(AccountId::Held, to.clone(), h.points);
        self.put_redemption(
            &b.hold,
            &RedemptionState {
                index,
                member: h.member.clone(),
                points: h.points,
                refunded: 0,
                account: to,
                portions: h.portions.clone(),
                obligation: false,
            },
        );
        Ok(Applied {
            transfers: vec![t],
            member: Some(h.member),
        })
    }

    fn void(&mut self, index: LogIndex, now: LogTime, b: &Void) -> Result<Applied, StateError> {
        let h = self.open_hold(&b.hold)?;
        self.check_system(
            &AccountId::Expired,
            Self::lapsed_of(&h.portions, now) as i128,
        )?;
        let h = self.close_hold(&b.hold, h, HoldStatus::Voided(index))?;
        let transfers = self.give_back(now, &h.member, &h.portions, &AccountId::Held)?;
        Ok(Applied {
            transfers,
            member: Some(h.member),
        })
    }

    fn refund(&mut self, now: LogTime, b: &Refund) -> Result<Applied, StateError> {
        if self
            .redemption(&b.redemption)?
            .is_some_and(|r| r.obligation)
        {
            return Err(StateError::RefundNeedsPartner(b.redemption.clone()));
        }
        self.return_points(now, &b.redemption, b.points)
    }

    /// Returns `points` of redemption `redemption` to its member (a `refund`, or the payable
    /// side of an `obligation_refund`).
    fn return_points(
        &mut self,
        now: LogTime,
        redemption: &EntryId,
        points: Points,
    ) -> Result<Applied, StateError> {
        let mut r = self
            .redemption(redemption)?
            .ok_or_else(|| StateError::UnknownRedemption(redemption.clone()))?;
        let remaining = r.points - r.refunded;
        let member = self.member(&r.member)?;
        if member.map_or(0, |m| m.balance + m.pending) + points.get() > MAX_AMOUNT {
            return Err(StateError::BalanceOverflow);
        }
        if points.get() > remaining {
            return Err(StateError::RefundExceedsRedemption {
                remaining,
                requested: points.get(),
            });
        }
        // Take the refund from the last-consumed portions first.
        let mut need = points.get();
        let mut back = Vec::new();
        for p in r.portions.iter_mut().rev() {
            if need == 0 {
                break;
            }
            let take = need.min(p.points);
            p.points -= take;
            need -= take;
            back.push(Portion {
                lot: p.lot,
                expires_at: p.expires_at,
                points: take,
            });
        }
        r.portions.retain(|p| p.points > 0);
        r.refunded += points.get();
        let member = r.member.clone();
        let account = r.account.clone();
        self.check_system(&account, -(points.get() as i128))?;
        self.check_system(&AccountId::Expired, Self::lapsed_of(&back, now) as i128)?;
        self.put_redemption(redemption, &r);
        let transfers = self.give_back(now, &member, &back, &account)?;
        Ok(Applied {
            transfers,
            member: Some(member),
        })
    }

    fn tier_change(&mut self, now: LogTime, b: &TierChange) -> Result<Applied, StateError> {
        if self.policies.tier.is_none() {
            return Err(StateError::NoTierPolicy);
        }
        let current = self
            .current_tier(&b.member)?
            .ok_or(StateError::NoTierPolicy)?;
        if current != b.from {
            return Err(StateError::TierFromMismatch {
                member: b.member.clone(),
                current,
                from: b.from.clone(),
            });
        }
        let expected = match self.tier_change_due(&b.member, now)? {
            Some(due) => due.to,
            None => current,
        };
        if expected != b.to {
            return Err(StateError::TierNotDue {
                expected,
                to: b.to.clone(),
            });
        }
        let mut m = self.member_or_new(&b.member)?;
        m.tier = Some(b.to.clone());
        m.tier_since = now;
        self.index_tier_due(&b.member, &mut m, now)?;
        self.put_member(&b.member, &m);
        Ok(Applied {
            transfers: Vec::new(),
            member: Some(b.member.clone()),
        })
    }

    /// spec/protocol.md §4.9, `tier_attestation`: accepted only when the member holds `tier`
    /// at `now` (recorded, and no tier change due) and keeps it at least until
    /// `valid_until`. Changes nothing but the entry's id.
    fn tier_attestation(&self, now: LogTime, b: &TierAttestation) -> Result<Applied, StateError> {
        let policy = self
            .policies
            .tier
            .as_ref()
            .ok_or(StateError::NoTierPolicy)?;
        if self.member(&b.member)?.is_none() {
            return Err(StateError::UnknownMember(b.member.clone()));
        }
        let current = self
            .current_tier(&b.member)?
            .ok_or(StateError::NoTierPolicy)?;
        if current != b.tier {
            return Err(StateError::AttestationTierMismatch {
                member: b.member.clone(),
                current,
                tier: b.tier.clone(),
            });
        }
        if let Some(due) = self.tier_change_due(&b.member, now)? {
            return Err(StateError::AttestationTierChangeDue {
                member: b.member.clone(),
                due: due.to,
            });
        }
        if let Some(u) = b.valid_until {
            if u <= now {
                return Err(StateError::AttestationValidUntilNotInFuture {
                    valid_until: u,
                    now,
                });
            }
        }
        // The base tier is held forever; any other tier until `U` (§4.6), and if `U` is
        // undefined nothing about it may be attested.
        let base = policy.tiers.first().is_some_and(|t| t.name == b.tier);
        let held_until = self.tier_valid_until(&b.member, now)?;
        let within = match (base, held_until, b.valid_until) {
            (true, _, _) => true,
            (false, Some(h), Some(u)) => u <= h,
            (false, _, _) => false,
        };
        if !within {
            return Err(StateError::AttestationTooLong {
                member: b.member.clone(),
                tier: b.tier.clone(),
                valid_until: b.valid_until,
                held_until,
            });
        }
        Ok(Applied {
            transfers: Vec::new(),
            member: Some(b.member.clone()),
        })
    }

    // ---- Invariants ----------------------------------------------------------------------

    /// Checks every invariant over the whole state. Reads every record: for audits and tests.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let io = |e: StateError| InvariantViolation(format!("reading the state: {e}"));
        let rec = |e: RecordError| InvariantViolation(e.to_string());
        let all = |p: &[u8]| self.records.all_with_prefix(p).map_err(|e| io(e.into()));
        let mut sum: i128 = self.accounts.values().sum();
        let mut pending: HashMap<MemberId, u64> = HashMap::new();
        let mut held: i128 = 0;
        let mut holds: HashMap<EntryId, HoldState> = HashMap::new();
        let mut open_holds = BTreeSet::new();
        for (k, v) in all(record_prefix::HOLD)? {
            let id: EntryId = parse_name(&k, record_prefix::HOLD).map_err(rec)?;
            let h: HoldState = records::decode(&v).map_err(|e| rec(RecordError::at(&k, e)))?;
            if h.status == HoldStatus::Open {
                *pending.entry(h.member.clone()).or_default() += h.points;
                held += h.points as i128;
                open_holds.insert(records::due_hold_key(h.expires_at, &id));
            }
            holds.insert(id, h);
        }
        let indexed: BTreeSet<Vec<u8>> = all(record_prefix::DUE_HOLD)?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        if indexed != open_holds {
            return Err(InvariantViolation(
                "the hold due-index differs from the open holds".into(),
            ));
        }
        let mut members = 0u64;
        let mut due_lots = BTreeSet::new();
        for (k, v) in all(record_prefix::MEMBER)? {
            let id: MemberId = parse_name(&k, record_prefix::MEMBER).map_err(rec)?;
            let m = MemberState::decode(&v).map_err(|e| rec(RecordError::at(&k, e)))?;
            members += 1;
            let lots = self.check_member(&id, &m)?;
            for l in lots {
                if let Some(e) = l.expires_at {
                    due_lots.insert(records::due_lot_key(e, &id, l.id));
                }
            }
            if m.pending != pending.get(&id).copied().unwrap_or(0) {
                return Err(InvariantViolation(format!(
                    "member {id}: pending {} differs from open holds",
                    m.pending
                )));
            }
            sum += m.balance as i128;
        }
        if members != self.meta.members {
            return Err(InvariantViolation(format!(
                "{members} member records, {} counted",
                self.meta.members
            )));
        }
        let indexed: BTreeSet<Vec<u8>> = all(record_prefix::DUE_LOT)?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        if indexed != due_lots {
            return Err(InvariantViolation(
                "the lot due-index differs from the expiring lots".into(),
            ));
        }
        if sum != 0 {
            return Err(InvariantViolation(format!("accounts sum to {sum}, not 0")));
        }
        let held_account = self.accounts.get(&AccountId::Held).copied().unwrap_or(0);
        if held_account != held {
            return Err(InvariantViolation(format!(
                "held account {held_account} differs from open holds {held}"
            )));
        }
        let mut auths: HashMap<EntryId, AuthorisationState> = HashMap::new();
        for (k, v) in all(record_prefix::AUTHORISATION)? {
            let id: EntryId = parse_name(&k, record_prefix::AUTHORISATION).map_err(rec)?;
            let a: AuthorisationState =
                records::decode(&v).map_err(|e| rec(RecordError::at(&k, e)))?;
            auths.insert(id, a);
        }
        for (id, a) in &auths {
            let Some(h) = &a.used_by else { continue };
            let hold = holds.get(h);
            if hold.is_none_or(|hs| hs.authorisation.as_ref() != Some(id) || hs.member != a.member)
            {
                return Err(InvariantViolation(format!(
                    "authorisation {id}: used by {h}, which is not a hold of its member naming it"
                )));
            }
        }
        for (id, h) in &holds {
            let Some(auth) = &h.authorisation else {
                continue;
            };
            let used_by = auths.get(auth).and_then(|a| a.used_by.as_ref());
            if used_by != Some(id) {
                return Err(InvariantViolation(format!(
                    "hold {id}: names authorisation {auth}, which records another user"
                )));
            }
        }
        if self.policies.rate_count() > RATES_MAX {
            return Err(InvariantViolation(format!(
                "{} rate entries kept, above {RATES_MAX}",
                self.policies.rate_count()
            )));
        }
        if self.agreements.len() > AGREEMENTS_MAX {
            return Err(InvariantViolation(format!(
                "{} agreements kept, above {AGREEMENTS_MAX}",
                self.agreements.len()
            )));
        }
        for (id, a) in &self.agreements {
            if &a.agreement.terms.agreement != id {
                return Err(InvariantViolation(format!(
                    "agreement {id}: kept under another agreement's id"
                )));
            }
            if let Err(e) = a.agreement.verify_self_consistent() {
                return Err(InvariantViolation(format!("agreement {id}: {e}")));
            }
        }
        for (k, v) in all(record_prefix::QUOTE)? {
            let id: EntryId = parse_name(&k, record_prefix::QUOTE).map_err(rec)?;
            let q: QuoteState =
                records::decode_json(&v).map_err(|e| rec(RecordError::at(&k, e)))?;
            if q.quote.redemption != id || !self.agreements.contains_key(&q.quote.agreement) {
                return Err(InvariantViolation(format!(
                    "quote {id}: not kept under its redemption id, or names no kept agreement"
                )));
            }
        }
        self.check_obligations(&holds)?;
        let ids = all(record_prefix::ID)?.len() as u64;
        if ids != self.meta.size {
            return Err(InvariantViolation(format!(
                "{ids} ids recorded for {} entries",
                self.meta.size
            )));
        }
        Ok(())
    }

    /// The obligation invariants: each is kept under its key, names a kept agreement that
    /// allows its direction and matches its terms; a receivable names its counterpart and a
    /// payable does not; a payable's hold is posted and matches it; the line index holds
    /// exactly their lines; each agreement's open payable total is the sum of its payables.
    fn check_obligations(
        &self,
        holds: &HashMap<EntryId, HoldState>,
    ) -> Result<(), InvariantViolation> {
        let io = |e: StorageError| InvariantViolation(format!("reading the state: {e}"));
        let rec = |e: RecordError| InvariantViolation(e.to_string());
        let mut open: BTreeMap<&EntryId, i64> = BTreeMap::new();
        let mut lines = BTreeSet::new();
        let mut totals: BTreeMap<EntryId, AgreementTotals> = BTreeMap::new();
        let mut periods: BTreeMap<EntryId, BTreeMap<u64, LineTotals>> = BTreeMap::new();
        for (k, v) in self
            .records
            .all_with_prefix(record_prefix::OBLIGATION)
            .map_err(io)?
        {
            let o: ObligationState =
                records::decode_json(&v).map_err(|e| rec(RecordError::at(&k, e)))?;
            let key = o.key();
            let q = &o.quote;
            let bad = |what: &str| {
                InvariantViolation(format!(
                    "{} obligation {}/{}: {what}",
                    key.side, key.payer, key.redemption
                ))
            };
            if key.record_key() != k {
                return Err(bad("kept under another key"));
            }
            let Some((agreement_id, a)) = self.agreements.get_key_value(&q.agreement) else {
                return Err(bad("names no kept agreement"));
            };
            if let Some(reason) = quote_mismatch(&a.agreement.terms, q) {
                return Err(bad(reason));
            }
            if (o.side == ObligationSide::Receivable) != o.counterpart.is_some() {
                return Err(bad("a counterpart exactly for a receivable"));
            }
            if o.refunds.len() > REFUNDS_MAX || o.refunded_points() > q.points.get() {
                return Err(bad("refunds beyond its points or their number"));
            }
            let mut refunded = 0;
            for (i, r) in o.refunds.iter().enumerate() {
                if o.refunds[..i].iter().any(|x| x.refund == r.refund)
                    || (o.side == ObligationSide::Receivable) != r.counterpart.is_some()
                {
                    return Err(bad("a refund twice, or its counterpart amiss"));
                }
                let rule = a.agreement.terms.rounding;
                let expected = crate::value::refund_minor(
                    q.amount_minor,
                    q.points.get(),
                    refunded,
                    r.points,
                    rule,
                );
                if expected != Ok(r.amount_minor) {
                    return Err(bad("a refund's amount is not the cumulative rule's"));
                }
                refunded += r.points;
            }
            for l in o.lines() {
                lines.insert(records::line_key(&q.agreement, l.time, l.index));
            }
            derive_totals(
                a,
                [&o],
                totals.entry(agreement_id.clone()).or_default(),
                periods.entry(agreement_id.clone()).or_default(),
            );
            if o.side == ObligationSide::Payable {
                let hold_ok = holds.get(&q.redemption).is_some_and(|h| {
                    matches!(h.status, HoldStatus::Posted(_))
                        && h.payee.as_ref() == Some(&q.payee)
                        && h.member == q.member
                        && h.points == q.points.get()
                });
                if !hold_ok {
                    return Err(bad(
                        "its hold is not posted for its payee, member and points",
                    ));
                }
                let refunded = self
                    .redemption(&q.redemption)
                    .map_err(|e| InvariantViolation(e.to_string()))?
                    .map(|r| (r.refunded, r.obligation));
                if refunded != Some((o.refunded_points(), true)) {
                    return Err(bad("its redemption's refunds differ from the obligation's"));
                }
                *open.entry(agreement_id).or_default() += o.open_minor(a);
            }
        }
        let indexed: BTreeSet<Vec<u8>> = self
            .records
            .all_with_prefix(record_prefix::LINE)
            .map_err(io)?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        if indexed != lines {
            return Err(InvariantViolation(format!(
                "{} lines indexed by agreement, {} kept",
                indexed.len(),
                lines.len()
            )));
        }
        let kept: BTreeMap<&EntryId, i64> =
            self.open_payables.iter().map(|(a, v)| (a, *v)).collect();
        if kept != open {
            return Err(InvariantViolation(format!(
                "open payables {kept:?} differ from the sums of payables {open:?}"
            )));
        }
        // Line totals: resident, stored and derived from the obligations agree.
        let mut stored: BTreeMap<EntryId, AgreementTotals> = BTreeMap::new();
        for (k, v) in self
            .records
            .all_with_prefix(record_prefix::TOTALS)
            .map_err(io)?
        {
            let id: EntryId = parse_name(&k, record_prefix::TOTALS).map_err(rec)?;
            let v = records::decode(&v).map_err(|e| rec(RecordError::at(&k, e)))?;
            stored.insert(id, v);
        }
        if stored != self.totals || stored != totals {
            return Err(InvariantViolation(format!(
                "agreement line totals {stored:?} (resident {:?}) differ from the lines' {totals:?}",
                self.totals
            )));
        }
        let mut stored: BTreeMap<EntryId, BTreeMap<u64, LineTotals>> = BTreeMap::new();
        for (k, v) in self
            .records
            .all_with_prefix(record_prefix::PERIOD_TOTALS)
            .map_err(io)?
        {
            let (id, period) = records::parse_period_totals_key(&k)
                .ok_or_else(|| rec(RecordError::at(&k, "bad period totals key")))?;
            let v = records::decode(&v).map_err(|e| rec(RecordError::at(&k, e)))?;
            stored.entry(id).or_default().insert(period, v);
        }
        periods.retain(|_, p| !p.is_empty());
        if stored != periods {
            return Err(InvariantViolation(format!(
                "period line totals {stored:?} differ from the lines' {periods:?}"
            )));
        }
        // The credit limit is a rule of `obligation` (a payable is refused when it would take
        // the open total above the limit), not an invariant: a statement that settles a period
        // whose payable lines net negative raises the open total of what is left.
        for (id, a) in &self.agreements {
            if a.statements.keys().any(|k| {
                statement::period_bounds(&a.agreement.terms, *k)
                    .map_or(true, |p| Some(p.to()) > self.meta.last_time)
            }) {
                return Err(InvariantViolation(format!(
                    "agreement {id}: a statement of a period that has not ended"
                )));
            }
        }
        Ok(())
    }

    /// A member's lot invariants; returns the member's lots.
    fn check_member(&self, id: &MemberId, m: &MemberState) -> Result<Vec<Lot>, InvariantViolation> {
        let lots = self
            .all_lots(id, m)
            .map_err(|e| InvariantViolation(format!("reading member {id}'s lots: {e}")))?;
        if m.open_lot_inline {
            let (from, end) = (records::lots_from(id, None), records::lots_end(id));
            let stored = self
                .lots_in(&from, &end, 1)
                .map_err(|e| InvariantViolation(format!("reading member {id}'s lots: {e}")))?;
            if !stored.is_empty() {
                return Err(InvariantViolation(format!(
                    "member {id}: a lot record beside the lot the summary keeps"
                )));
            }
        }
        let sum: u64 = lots.iter().map(|l| l.remaining).sum();
        if sum != m.balance {
            return Err(InvariantViolation(format!(
                "member {id}: balance {} differs from lots {sum}",
                m.balance
            )));
        }
        if lots.iter().any(|l| l.remaining == 0) {
            return Err(InvariantViolation(format!(
                "member {id}: an empty lot is kept"
            )));
        }
        if lots.len() as u64 != m.lots {
            return Err(InvariantViolation(format!(
                "member {id}: {} lots kept, {} counted",
                lots.len(),
                m.lots
            )));
        }
        let never: Vec<LogIndex> = lots
            .iter()
            .filter(|l| l.expires_at.is_none())
            .map(|l| l.id)
            .collect();
        if never.len() > 1 || never.first().copied() != m.open_lot {
            return Err(InvariantViolation(format!(
                "member {id}: never-expiring lots {never:?}, open lot {:?}",
                m.open_lot
            )));
        }
        Ok(lots)
    }

    /// The cheap part of the invariants, for one member with few lots (debug builds, after
    /// every entry); the rest is [`State::check_invariants`].
    #[cfg(debug_assertions)]
    fn check_invariants_for(&self, member: Option<&MemberId>) -> Result<(), InvariantViolation> {
        if let Some(id) = member {
            if let Ok(Some(m)) = self.member(id) {
                if m.lots <= 64 {
                    self.check_member(id, &m)?;
                }
            }
        }
        Ok(())
    }

    // ---- Savepoints ------------------------------------------------------------------------

    /// Opens a savepoint: from now on the state records how to undo what [`State::apply`]
    /// changes, until [`State::release_savepoint`] keeps it or [`State::rollback_to_savepoint`]
    /// undoes it. The cost is the prior values of what the entries applied meanwhile change
    /// (O(those entries), never O(state)). A writer opens one around a linked chain of writes
    /// (spec/protocol.md §6, "Linked writes"). One at a time; pending changes are not drained
    /// while it is open.
    pub fn savepoint(&mut self) {
        assert!(self.savepoint.is_none(), "a savepoint is already open");
        self.records.begin();
        self.savepoint = Some(Box::new(Savepoint {
            meta: self.meta.clone(),
            meta_dirty: self.meta_dirty,
            rate_cards: self.policies.rate_cards.len(),
            fx_rates: self.policies.fx_rates.len(),
            ..Savepoint::default()
        }));
    }

    /// Keeps everything applied since [`State::savepoint`] and closes the savepoint.
    pub fn release_savepoint(&mut self) {
        self.records.release();
        self.savepoint = None;
    }

    /// Undoes everything applied since [`State::savepoint`] (the state, its pending record
    /// writes and what [`State::take_changes`] will return are then exactly as they were at
    /// the savepoint) and closes the savepoint. Without an open savepoint, does nothing.
    pub fn rollback_to_savepoint(&mut self) {
        let Some(sp) = self.savepoint.take() else {
            return;
        };
        self.records.rollback();
        let sp = *sp;
        self.meta = sp.meta;
        self.meta_dirty = sp.meta_dirty;
        for (a, prior, dirty) in sp.accounts.into_iter().rev() {
            match prior {
                Some(v) => self.accounts.insert(a.clone(), v),
                None => self.accounts.remove(&a),
            };
            if !dirty {
                self.accounts_dirty.remove(&a);
            }
        }
        if let Some(tier) = sp.tier {
            self.policies.tier = tier;
        }
        if let Some(expiry) = sp.expiry {
            self.policies.expiry = expiry;
        }
        self.policies.rate_cards.truncate(sp.rate_cards);
        self.policies.fx_rates.truncate(sp.fx_rates);
        for (id, k) in sp.statements_added.into_iter().rev() {
            if let Some(a) = self.agreements.get_mut(&id) {
                a.statements.remove(&k);
            }
        }
        for id in sp.agreements_added.into_iter().rev() {
            self.agreements.remove(&id);
        }
        for (id, prior) in sp.open_payables.into_iter().rev() {
            match prior {
                Some(v) => self.open_payables.insert(id, v),
                None => self.open_payables.remove(&id),
            };
        }
        for (id, prior) in sp.totals.into_iter().rev() {
            match prior {
                Some(v) => self.totals.insert(id, v),
                None => self.totals.remove(&id),
            };
        }
    }

    /// Drains the records changed since the last call, as storage writes: `(key, Some(value))`
    /// to put, `(key, None)` to delete, in key order. The store writes them in the same batch
    /// as the entries.
    pub fn take_changes(&mut self) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        assert!(
            self.savepoint.is_none(),
            "changes drained while a savepoint is open"
        );
        for (k, v) in self.resident_records() {
            self.records.put(k, v);
        }
        self.meta_dirty = false;
        self.accounts_dirty.clear();
        self.records.take_changes()
    }

    /// Forgets the records read ahead ([`State::prefetch`]) for a batch that ends without
    /// changes to drain ([`State::take_changes`] forgets them otherwise): a batch whose writes
    /// all answered `existing` or were refused.
    pub fn drop_read_ahead(&mut self) {
        self.records.drop_read_ahead()
    }

    /// The records read ahead and held until the batch ends (0 for a state in memory).
    pub fn read_ahead_len(&self) -> usize {
        self.records.read_ahead_len()
    }

    /// Forgets pending changes (after they were written, or when the state is rebuilt).
    pub fn clear_changes(&mut self) {
        // The resident records go where take_changes puts them (into the map of a state in
        // memory, whose records are its whole state); only the list of changes is dropped.
        self.take_changes();
    }

    /// The records of the resident part that changed since the last [`State::take_changes`]
    /// (the meta record and the system accounts moved since): kept in memory between
    /// batches, so that an entry does not rewrite them.
    fn resident_records(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::with_capacity(1 + self.accounts_dirty.len());
        if self.meta_dirty {
            out.push((record_prefix::META.to_vec(), records::encode(&self.meta)));
        }
        for a in &self.accounts_dirty {
            let v = self.accounts.get(a).copied().unwrap_or(0);
            out.push((
                records::named(record_prefix::ACCOUNT, &a.to_string()),
                records::encode(&v),
            ));
        }
        out
    }

    /// Every record, in key order (reads them all: for tests and tools).
    pub fn records(&self) -> Result<records::KeyValues, StateError> {
        let mut all = self.records.all_with_prefix(b"")?;
        for (k, v) in self.resident_records() {
            match all.binary_search_by(|(x, _)| x.as_slice().cmp(&k)) {
                Ok(i) => all[i].1 = v,
                Err(i) => all.insert(i, (k, v)),
            }
        }
        Ok(all)
    }
}

/// How a quote departs from the agreement it names, if it does: the direction, settlement
/// currency, fee and rounding must be the agreement's, and the quote no older than the
/// agreement's `valid_from`.
fn quote_mismatch(terms: &AgreementTerms, q: &Quote) -> Option<&'static str> {
    if !terms.allows(&q.payer, &q.payee) {
        Some("the agreement does not allow the direction")
    } else if terms.settlement_currency != q.currency {
        Some("the currency is not the settlement currency")
    } else if terms.fee_bps != q.fee_bps {
        Some("the fee differs")
    } else if terms.rounding != q.rounding {
        Some("the rounding differs")
    } else if q.quoted_at < terms.valid_from {
        Some("the quote is from before the agreement applies")
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
