//! Settlement statements and reconciliation between the two brands of an agreement (DESIGN §6,
//! spec/redemption.md §4).
//!
//! Each node reads the obligation lines of one agreement twice: from its own log ("ours") and
//! from its verified mirror of the partner's log ("theirs"). [`compute`] sums one such list into
//! a [`Statement`] for a [`Period`]; [`reconcile`] matches the two lists line by line and says
//! whether both sides would sign the same statement.
//!
//! Invariants:
//! - a line is identified by its [`LineKey`]: payer, redemption id and refund id (none for the
//!   obligation of the commit itself); within one list keys are unique, or the list is refused;
//! - an obligation's amount is positive and a refund's negative, each at most 2^53 − 1 in
//!   magnitude; every total of a statement is at most 2^53 − 1 in magnitude, or the statement
//!   is refused with `statement_overflow`; nothing wraps and the result never depends on the
//!   order of the lines;
//! - [`Reconciliation::agreed`] is true exactly when every line with a time in the period on
//!   either side is `matched`, and then the two statements are equal (so their canonical bytes,
//!   which both brands sign, are identical).
//!
//! Like the rest of this crate it does no I/O, reads no clock and uses no floats.

use std::cmp::Ordering;
use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

use crate::agreement::{AgreementError, AgreementSignature, AgreementTerms, SignedAgreement};
use crate::encoding::to_canonical;
use crate::money::Currency;
use crate::types::{BrandId, EntryId, LogIndex, LogTime, MAX_AMOUNT, MAX_TIME_MS};

/// The first line of every signed statement message; no other signed message starts with it.
pub const STATEMENT_DOMAIN: &str = "loyalty-statement/v1";

/// Most lines one side may give [`compute`] or [`reconcile`] (a month of 10 000 redemptions a
/// day in both directions, with refunds, fits with room to spare).
pub const LINES_MAX: usize = 1_000_000;

/// The CSV header of [`to_csv`] (spec/redemption.md §4.5).
pub const CSV_HEADER: &str = "status,payer,payee,redemption,refund,index_ours,index_theirs,\
time_ours,time_theirs,amount_ours_minor,amount_theirs_minor";

/// Which of the two lists a node reads: its own log, or its verified mirror of the partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Lines read from the node's own log.
    Ours,
    /// Lines read from the node's verified mirror of the partner's log.
    Theirs,
}

/// Why a statement or a reconciliation could not be computed. Each variant has a stable
/// [`StatementError::code`]. `side` is `None` for [`compute`] and names the list for
/// [`reconcile`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    /// The agreement terms do not validate.
    #[error("invalid agreement terms: {0}")]
    InvalidTerms(AgreementError),
    /// A period must end after it starts.
    #[error("a period must end after it starts (from {from}, to {to})")]
    InvalidPeriod {
        /// The start given.
        from: u64,
        /// The end given.
        to: u64,
    },
    /// Settlement period `k` of the agreement ends after the largest log time.
    #[error("settlement period {k} ends after the largest log time")]
    PeriodOutOfRange {
        /// The period's number.
        k: u64,
    },
    /// More than [`LINES_MAX`] lines.
    #[error("{count} lines{}, more than {max}", side_text(*side))]
    TooManyLines {
        side: Option<Side>,
        count: usize,
        max: usize,
    },
    /// A line's direction is not one of the agreement's, or its amount is zero, of the wrong
    /// sign for its kind, or larger than 2^53 − 1.
    #[error("invalid line at index {index}{} (redemption {redemption}): {reason}", side_text(*side))]
    InvalidLine {
        side: Option<Side>,
        index: LogIndex,
        redemption: EntryId,
        reason: &'static str,
    },
    /// Two lines of one list have the same key.
    #[error("two lines{} at indexes {first} and {second} have the same key (payer {payer}, redemption {redemption}{})", side_text(*side), refund_text(refund))]
    DuplicateLine {
        side: Option<Side>,
        payer: BrandId,
        redemption: EntryId,
        refund: Option<EntryId>,
        first: LogIndex,
        second: LogIndex,
    },
    /// A total of the statement exceeds 2^53 − 1 in magnitude.
    #[error("a total of the statement{} exceeds 2^53-1", side_text(*side))]
    Overflow { side: Option<Side> },
}

fn side_text(side: Option<Side>) -> &'static str {
    match side {
        None => "",
        Some(Side::Ours) => " in our lines",
        Some(Side::Theirs) => " in their lines",
    }
}

fn refund_text(refund: &Option<EntryId>) -> String {
    refund
        .as_ref()
        .map_or_else(String::new, |r| format!(", refund {r}"))
}

impl StatementError {
    /// The stable code of this error, as in spec/redemption.md §4.6.
    pub fn code(&self) -> &'static str {
        match self {
            StatementError::InvalidTerms(_) => "statement_invalid_terms",
            StatementError::InvalidPeriod { .. } => "statement_invalid_period",
            StatementError::PeriodOutOfRange { .. } => "statement_period_out_of_range",
            StatementError::TooManyLines { .. } => "statement_too_many_lines",
            StatementError::InvalidLine { .. } => "statement_invalid_line",
            StatementError::DuplicateLine { .. } => "statement_duplicate_line",
            StatementError::Overflow { .. } => "statement_overflow",
        }
    }

    /// The same error, attributed to `side`.
    fn on(mut self, s: Side) -> StatementError {
        match &mut self {
            StatementError::TooManyLines { side, .. }
            | StatementError::InvalidLine { side, .. }
            | StatementError::DuplicateLine { side, .. }
            | StatementError::Overflow { side } => *side = Some(s),
            StatementError::InvalidTerms(_)
            | StatementError::InvalidPeriod { .. }
            | StatementError::PeriodOutOfRange { .. } => {}
        }
        self
    }
}

/// One recorded obligation (or the negative obligation of a refund) of an agreement, as a node
/// reads it from one log (spec/redemption.md §4.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObligationLine {
    /// The redemption id (the id of the hold in the payer's log).
    pub redemption: EntryId,
    /// For a refund, the id of the refund entry in the payer's log; `None` for the obligation
    /// logged at the commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund: Option<EntryId>,
    /// The brand that owes (whose points were redeemed).
    pub payer: BrandId,
    /// The brand that is owed (where the points were redeemed).
    pub payee: BrandId,
    /// Minor units of the settlement currency: 1 to 2^53 − 1 for an obligation, −(2^53 − 1) to
    /// −1 for a refund.
    pub amount_minor: i64,
    /// The log time of the payer's entry (on the payee's side, as in the payer's receipt).
    pub time: LogTime,
    /// The index of the entry in the log the line was read from.
    pub index: LogIndex,
}

/// What identifies a line on both sides: the payer (redemption ids are unique only within the
/// payer's log), the redemption id and the refund id. Ordered by payer, then redemption, then
/// refund (the commit's obligation before its refunds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LineKey<'a> {
    pub payer: &'a BrandId,
    pub redemption: &'a EntryId,
    pub refund: Option<&'a EntryId>,
}

impl ObligationLine {
    /// The line's key.
    pub fn key(&self) -> LineKey<'_> {
        LineKey {
            payer: &self.payer,
            redemption: &self.redemption,
            refund: self.refund.as_ref(),
        }
    }

    /// Checks the line against the terms: an allowed direction, and an amount of the right
    /// sign within ±(2^53 − 1).
    fn check(&self, terms: &AgreementTerms) -> Result<(), StatementError> {
        let invalid = |reason| StatementError::InvalidLine {
            side: None,
            index: self.index,
            redemption: self.redemption.clone(),
            reason,
        };
        if !terms.allows(&self.payer, &self.payee) {
            return Err(invalid("its direction is not one of the agreement's"));
        }
        let magnitude_ok = (1..=MAX_AMOUNT).contains(&self.amount_minor.unsigned_abs());
        match self.refund {
            None if !(magnitude_ok && self.amount_minor > 0) => {
                Err(invalid("an obligation's amount must be 1 to 2^53-1"))
            }
            Some(_) if !(magnitude_ok && self.amount_minor < 0) => {
                Err(invalid("a refund's amount must be -(2^53-1) to -1"))
            }
            _ => Ok(()),
        }
    }
}

/// A half-open span of log time `[from, to)`, with `from < to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawPeriod")]
pub struct Period {
    from: LogTime,
    to: LogTime,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeriod {
    from: LogTime,
    to: LogTime,
}

impl TryFrom<RawPeriod> for Period {
    type Error = StatementError;
    fn try_from(r: RawPeriod) -> Result<Period, StatementError> {
        Period::new(r.from, r.to)
    }
}

impl Period {
    /// `[from, to)`; `statement_invalid_period` unless `from < to`.
    pub fn new(from: LogTime, to: LogTime) -> Result<Period, StatementError> {
        if from >= to {
            return Err(StatementError::InvalidPeriod {
                from: from.get(),
                to: to.get(),
            });
        }
        Ok(Period { from, to })
    }

    /// The first log time in the period.
    pub fn from(&self) -> LogTime {
        self.from
    }

    /// The first log time after the period.
    pub fn to(&self) -> LogTime {
        self.to
    }

    /// Whether `t` is in `[from, to)`.
    pub fn contains(&self, t: LogTime) -> bool {
        self.from <= t && t < self.to
    }

    /// `Some(k)` when this is exactly settlement period `k` of `terms` ([`period_bounds`]).
    pub fn settlement_index(&self, terms: &AgreementTerms) -> Option<u64> {
        let k = terms.period_of(self.from)?;
        (period_bounds(terms, k).ok()? == *self).then_some(k)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", self.from, self.to)
    }
}

/// Settlement period `k` of `terms`: `[origin + k·period_ms, origin + (k+1)·period_ms)`, so that
/// [`AgreementTerms::period_of`] is `Some(k)` exactly for the times in it. Fails with
/// `statement_period_out_of_range` when it would end after [`MAX_TIME_MS`], and with
/// `statement_invalid_period` for a period length of zero.
pub fn period_bounds(terms: &AgreementTerms, k: u64) -> Result<Period, StatementError> {
    let len = terms.period_ms.get();
    if len == 0 {
        return Err(StatementError::InvalidPeriod {
            from: terms.period_origin.get(),
            to: terms.period_origin.get(),
        });
    }
    let out = StatementError::PeriodOutOfRange { k };
    let from = k
        .checked_mul(len)
        .and_then(|d| d.checked_add(terms.period_origin.get()))
        .ok_or(out.clone())?;
    let to = from.checked_add(len).filter(|t| *t <= MAX_TIME_MS);
    let to = to.ok_or(out.clone())?;
    let time = |t| LogTime::new(t).map_err(|_| out.clone());
    Period::new(time(from)?, time(to)?)
}

/// The obligations of one direction within a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gross {
    pub payer: BrandId,
    pub payee: BrandId,
    /// The sum of the obligations (positive lines).
    pub obligations_minor: u64,
    /// The sum of the refunds, as a positive number.
    pub refunds_minor: u64,
    /// `obligations_minor − refunds_minor`: what the payer owes the payee for the period
    /// (negative when refunds of earlier redemptions outweigh).
    pub total_minor: i64,
    /// The number of lines in this direction.
    pub lines: u64,
}

/// Who owes whom, after netting the two directions. With an amount of zero, `payer` is the
/// agreement's first brand by convention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Net {
    pub payer: BrandId,
    pub payee: BrandId,
    /// 0 to 2^53 − 1.
    pub amount_minor: u64,
}

/// The settlement statement of an agreement for a period (spec/redemption.md §4.3): what both
/// brands sign, as canonical JSON, when their reconciliation agrees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    pub agreement: EntryId,
    /// The settlement currency; every amount is in its minor units.
    pub currency: Currency,
    pub period: Period,
    /// Both directions, whether the agreement allows them or not: first from the agreement's
    /// first brand to its second, then back.
    pub gross: [Gross; 2],
    pub net: Net,
    /// The number of lines in the period, both directions.
    pub lines: u64,
}

impl Statement {
    /// `brand`'s net position: what it is owed minus what it owes (so the two brands'
    /// positions are additive inverses); `None` if it is not a party to the statement or the
    /// amount does not fit.
    pub fn position_minor(&self, brand: &BrandId) -> Option<i64> {
        let amount = i64::try_from(self.net.amount_minor).ok()?;
        if brand == &self.net.payee {
            Some(amount)
        } else if brand == &self.net.payer {
            Some(-amount)
        } else {
            None
        }
    }
}

/// The exact bytes a brand signs for a statement: the domain line, then the canonical
/// statement.
pub fn signing_message(statement: &Statement) -> Vec<u8> {
    let mut m = format!("{STATEMENT_DOMAIN}\n").into_bytes();
    m.extend_from_slice(&to_canonical(statement));
    m
}

/// A statement with both brands' signatures over [`signing_message`]: what both brands log as
/// a `statement` entry when their reconciliation agrees (spec/redemption.md §4.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedStatement {
    pub statement: Statement,
    /// One per brand of the agreement, each with the verifier key the agreement names for it.
    pub signatures: Vec<AgreementSignature>,
}

/// `brand`'s signature over `statement` with its node key (whose verifier key string is
/// `verifier_key`).
pub fn sign(
    statement: &Statement,
    brand: &BrandId,
    key: &ed25519_dalek::SigningKey,
    verifier_key: &str,
) -> AgreementSignature {
    crate::agreement::sign_message(&signing_message(statement), brand, key, verifier_key)
}

impl SignedStatement {
    /// Checks that the statement is for `agreement` and that each of its two brands signed it
    /// exactly once, validly, with the key it signed `agreement` with (so a replay of either
    /// log, which holds the agreement, can check a statement on its own).
    pub fn verify(&self, agreement: &SignedAgreement) -> Result<(), AgreementError> {
        let terms = &agreement.terms;
        if self.statement.agreement != terms.agreement {
            return Err(AgreementError::Malformed(
                "the statement is for another agreement",
            ));
        }
        for s in &self.signatures {
            if !terms.is_party(&s.brand) {
                return Err(AgreementError::NotAParty(s.brand.clone()));
            }
        }
        for brand in &terms.brands {
            let mut mine = self.signatures.iter().filter(|s| &s.brand == brand);
            let (Some(s), None) = (mine.next(), mine.next()) else {
                return Err(if self.signatures.iter().any(|s| &s.brand == brand) {
                    AgreementError::DuplicateSignature(brand.clone())
                } else {
                    AgreementError::MissingSignature(brand.clone())
                });
            };
            let agreed_key = agreement
                .signatures
                .iter()
                .find(|a| &a.brand == brand)
                .map(|a| a.verifier_key.as_str());
            if agreed_key != Some(s.verifier_key.as_str()) {
                return Err(AgreementError::UnpinnedKey(brand.clone()));
            }
            crate::agreement::verify_message(&signing_message(&self.statement), s)?;
        }
        Ok(())
    }

    /// The signature of `brand` verifies with the key it signed `agreement` with (for the
    /// half-signed statement a partner proposes).
    pub fn verify_signature_of(
        &self,
        agreement: &SignedAgreement,
        brand: &BrandId,
    ) -> Result<(), AgreementError> {
        let s = self
            .signatures
            .iter()
            .find(|s| &s.brand == brand)
            .ok_or_else(|| AgreementError::MissingSignature(brand.clone()))?;
        let agreed_key = agreement
            .signatures
            .iter()
            .find(|a| &a.brand == brand)
            .map(|a| a.verifier_key.as_str());
        if agreed_key != Some(s.verifier_key.as_str()) {
            return Err(AgreementError::UnpinnedKey(brand.clone()));
        }
        crate::agreement::verify_message(&signing_message(&self.statement), s)
    }
}

/// The lines of one list, each checked against the terms, sorted by key, keys unique.
fn index_lines<'a>(
    terms: &AgreementTerms,
    lines: &'a [ObligationLine],
) -> Result<Vec<&'a ObligationLine>, StatementError> {
    if lines.len() > LINES_MAX {
        return Err(StatementError::TooManyLines {
            side: None,
            count: lines.len(),
            max: LINES_MAX,
        });
    }
    let mut sorted = Vec::with_capacity(lines.len());
    for line in lines {
        line.check(terms)?;
        sorted.push(line);
    }
    // Stable, so that of two lines with one key the first given comes first.
    sorted.sort_by(|a, b| a.key().cmp(&b.key()));
    if let Some(w) = sorted.windows(2).find(|w| w[0].key() == w[1].key()) {
        let (first, second) = (w[0], w[1]);
        return Err(StatementError::DuplicateLine {
            side: None,
            payer: second.payer.clone(),
            redemption: second.redemption.clone(),
            refund: second.refund.clone(),
            first: first.index,
            second: second.index,
        });
    }
    Ok(sorted)
}

/// Sums checked lines whose time is in `period`.
fn sum<'a>(
    terms: &AgreementTerms,
    period: Period,
    lines: impl Iterator<Item = &'a ObligationLine>,
) -> Result<Statement, StatementError> {
    let [first, second] = &terms.brands;
    let overflow = StatementError::Overflow { side: None };
    // Obligations and refunds are summed apart, so that the bound holds whatever the order.
    let mut sums = [(0u64, 0u64, 0u64); 2];
    for line in lines.filter(|l| period.contains(l.time)) {
        let (obligations, refunds, count) = &mut sums[usize::from(&line.payer != first)];
        let to = if line.amount_minor > 0 {
            obligations
        } else {
            refunds
        };
        *to = to
            .checked_add(line.amount_minor.unsigned_abs())
            .filter(|s| *s <= MAX_AMOUNT)
            .ok_or(overflow.clone())?;
        *count += 1;
    }
    // Each sum is at most 2^53 − 1, so none of the following can overflow an i64.
    let gross = |payer: &BrandId, payee: &BrandId, (obligations, refunds, count)| Gross {
        payer: payer.clone(),
        payee: payee.clone(),
        obligations_minor: obligations,
        refunds_minor: refunds,
        total_minor: obligations as i64 - refunds as i64,
        lines: count,
    };
    let gross = [gross(first, second, sums[0]), gross(second, first, sums[1])];
    let owed_by_first = gross[0].total_minor - gross[1].total_minor;
    let amount = owed_by_first.unsigned_abs();
    if amount > MAX_AMOUNT {
        return Err(overflow);
    }
    let (payer, payee) = if owed_by_first >= 0 {
        (first, second)
    } else {
        (second, first)
    };
    Ok(Statement {
        agreement: terms.agreement.clone(),
        currency: terms.settlement_currency,
        period,
        lines: gross[0].lines + gross[1].lines,
        gross,
        net: Net {
            payer: payer.clone(),
            payee: payee.clone(),
            amount_minor: amount,
        },
    })
}

/// The statement of `terms` for `period` from one list of lines (spec/redemption.md §4.3): the
/// lines whose time is in the period, summed per direction and netted. Lines outside the
/// period are checked but not counted.
///
/// Errors: `statement_invalid_terms`, `statement_too_many_lines`, `statement_invalid_line`,
/// `statement_duplicate_line`, `statement_overflow` (with `side` `None`).
pub fn compute(
    terms: &AgreementTerms,
    period: Period,
    lines: &[ObligationLine],
) -> Result<Statement, StatementError> {
    terms.validate().map_err(StatementError::InvalidTerms)?;
    let sorted = index_lines(terms, lines)?;
    sum(terms, period, sorted.into_iter())
}

/// How one line compares between the two sides (spec/redemption.md §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineStatus {
    /// On both sides, in the period on both, with the same amount.
    Matched,
    /// In the period on their side and absent from ours.
    MissingOurs,
    /// In the period on our side and absent from theirs.
    MissingTheirs,
    /// On both sides, in the period on both, with different amounts.
    AmountDiffers,
    /// On both sides, in the period on one side only (whatever the amounts).
    CutOff,
}

impl LineStatus {
    /// The status as in JSON and CSV.
    pub fn as_str(&self) -> &'static str {
        match self {
            LineStatus::Matched => "matched",
            LineStatus::MissingOurs => "missing_ours",
            LineStatus::MissingTheirs => "missing_theirs",
            LineStatus::AmountDiffers => "amount_differs",
            LineStatus::CutOff => "cut_off",
        }
    }
}

/// One line of a reconciliation report, with what each side recorded (`None` where a side has
/// no line with this key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconciledLine {
    pub status: LineStatus,
    pub payer: BrandId,
    pub payee: BrandId,
    pub redemption: EntryId,
    pub refund: Option<EntryId>,
    pub index_ours: Option<LogIndex>,
    pub index_theirs: Option<LogIndex>,
    pub time_ours: Option<LogTime>,
    pub time_theirs: Option<LogTime>,
    pub amount_ours_minor: Option<i64>,
    pub amount_theirs_minor: Option<i64>,
}

/// The reconciliation report of an agreement for a period (spec/redemption.md §4.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reconciliation {
    pub agreement: EntryId,
    pub period: Period,
    /// Whether every line is `matched`; then `ours == theirs`.
    pub agreed: bool,
    /// The statement computed from our lines.
    pub ours: Statement,
    /// The statement computed from their lines.
    pub theirs: Statement,
    /// Every line whose time is in the period on at least one side, ordered by key.
    pub lines: Vec<ReconciledLine>,
}

impl Reconciliation {
    /// How many lines have `status`.
    pub fn count(&self, status: LineStatus) -> usize {
        self.lines.iter().filter(|l| l.status == status).count()
    }
}

fn classify(
    period: Period,
    ours: Option<&ObligationLine>,
    theirs: Option<&ObligationLine>,
) -> Option<LineStatus> {
    let inside = |l: Option<&ObligationLine>| l.map(|l| period.contains(l.time));
    Some(match (inside(ours), inside(theirs)) {
        (Some(true), Some(true)) => {
            let same = ours.map(|l| l.amount_minor) == theirs.map(|l| l.amount_minor);
            if same {
                LineStatus::Matched
            } else {
                LineStatus::AmountDiffers
            }
        }
        (Some(true), Some(false)) | (Some(false), Some(true)) => LineStatus::CutOff,
        (Some(true), None) => LineStatus::MissingTheirs,
        (None, Some(true)) => LineStatus::MissingOurs,
        // Outside the period on every side that has it: not part of this report.
        _ => return None,
    })
}

fn reconciled_line(
    status: LineStatus,
    ours: Option<&ObligationLine>,
    theirs: Option<&ObligationLine>,
) -> ReconciledLine {
    let any = ours
        .or(theirs)
        .expect("a reported key has a line on some side");
    ReconciledLine {
        status,
        payer: any.payer.clone(),
        payee: any.payee.clone(),
        redemption: any.redemption.clone(),
        refund: any.refund.clone(),
        index_ours: ours.map(|l| l.index),
        index_theirs: theirs.map(|l| l.index),
        time_ours: ours.map(|l| l.time),
        time_theirs: theirs.map(|l| l.time),
        amount_ours_minor: ours.map(|l| l.amount_minor),
        amount_theirs_minor: theirs.map(|l| l.amount_minor),
    }
}

/// Matches our lines against theirs for `period` (spec/redemption.md §4.4): every line whose
/// time is in the period on at least one side, with its status, plus both statements.
///
/// Errors: `statement_invalid_terms`, and those of [`compute`] for either list, with `side`
/// naming the list.
pub fn reconcile(
    terms: &AgreementTerms,
    period: Period,
    ours: &[ObligationLine],
    theirs: &[ObligationLine],
) -> Result<Reconciliation, StatementError> {
    terms.validate().map_err(StatementError::InvalidTerms)?;
    let ours_sorted = index_lines(terms, ours).map_err(|e| e.on(Side::Ours))?;
    let theirs_sorted = index_lines(terms, theirs).map_err(|e| e.on(Side::Theirs))?;
    let ours_statement =
        sum(terms, period, ours_sorted.iter().copied()).map_err(|e| e.on(Side::Ours))?;
    let theirs_statement =
        sum(terms, period, theirs_sorted.iter().copied()).map_err(|e| e.on(Side::Theirs))?;

    // A merge of the two sorted lists: every key once, in key order.
    let mut lines = Vec::new();
    let (mut o, mut t) = (
        ours_sorted.iter().peekable(),
        theirs_sorted.iter().peekable(),
    );
    loop {
        let (here, there) = match (o.peek(), t.peek()) {
            (None, None) => break,
            (Some(_), None) => (o.next().copied(), None),
            (None, Some(_)) => (None, t.next().copied()),
            (Some(a), Some(b)) => match a.key().cmp(&b.key()) {
                Ordering::Less => (o.next().copied(), None),
                Ordering::Greater => (None, t.next().copied()),
                Ordering::Equal => (o.next().copied(), t.next().copied()),
            },
        };
        if let Some(status) = classify(period, here, there) {
            lines.push(reconciled_line(status, here, there));
        }
    }
    let agreed = lines.iter().all(|l| l.status == LineStatus::Matched);
    debug_assert!(!agreed || ours_statement == theirs_statement);
    Ok(Reconciliation {
        agreement: terms.agreement.clone(),
        period,
        agreed,
        ours: ours_statement,
        theirs: theirs_statement,
        lines,
    })
}

/// One CSV field, quoted as RFC 4180 requires when it holds a comma, a quote, CR or LF.
fn csv_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// The report's lines as RFC 4180 CSV (spec/redemption.md §4.5): the [`CSV_HEADER`] row, then
/// one row per line in report order, every row ended by CRLF; a missing value is an empty field.
pub fn to_csv(report: &Reconciliation) -> String {
    // Numbers never need quoting; writing to a String cannot fail.
    fn number(out: &mut String, v: Option<impl fmt::Display>) {
        out.push(',');
        if let Some(v) = v {
            let _ = write!(out, "{v}");
        }
    }
    let mut out = String::with_capacity(80 * (report.lines.len() + 1));
    out.push_str(CSV_HEADER);
    out.push_str("\r\n");
    for l in &report.lines {
        out.push_str(l.status.as_str());
        for f in [l.payer.as_str(), l.payee.as_str(), l.redemption.as_str()] {
            out.push(',');
            csv_field(&mut out, f);
        }
        out.push(',');
        csv_field(&mut out, l.refund.as_ref().map_or("", |r| r.as_str()));
        number(&mut out, l.index_ours);
        number(&mut out, l.index_theirs);
        number(&mut out, l.time_ours);
        number(&mut out, l.time_theirs);
        number(&mut out, l.amount_ours_minor);
        number(&mut out, l.amount_theirs_minor);
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests;
