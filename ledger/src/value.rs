//! Exact valuation of points in fiat money (spec/protocol.md §8, DESIGN §6): points to integer
//! minor units of a settlement currency, and a price back to points.
//!
//! Everything here is exact rational arithmetic on integers: no floats, no I/O, no clock. A
//! fiat amount is rounded exactly once, by the agreement's [`Rounding`], at the very end.
//!
//! Invariants:
//! - a [`Ratio`] is always in lowest terms with a positive denominator, so equal values are
//!   equal structs;
//! - no operation wraps or panics: a result that does not fit is [`ValueError::Overflow`];
//! - because [`Valuation::check`] caps the combined decimal scale at [`VALUATION_SCALE_MAX`],
//!   the denominator of every exact value divides 10^22, so `overflow` from [`points_to_minor`]
//!   and [`points_for_price`] means exactly "the amount exceeds 2^53 − 1" and never depends on
//!   how intermediate values are held;
//! - [`points_for_price`] never charges a member less than the price, and never more points
//!   than needed.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::money::{Currency, Decimal};
use crate::types::{Points, MAX_AMOUNT};

/// The largest fee, in basis points: a fee of 10000 leaves nothing to pay.
pub const FEE_BPS_MAX: u16 = 10_000;

/// Most digits after the point of a point value and an FX rate together (spec/protocol.md §8).
pub const VALUATION_SCALE_MAX: u8 = 18;

/// Why a value could not be computed. Each variant has a stable [`ValueError::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The amount is zero: it rounds to zero minor units, the price is zero, or a fee of
    /// 10000 basis points leaves nothing.
    #[error("the amount is zero minor units")]
    ZeroAmount,
    /// The amount (or the number of points) exceeds 2^53 − 1, or an exact value does not fit.
    #[error("the amount exceeds 2^53-1 or does not fit")]
    Overflow,
    /// A [`Ratio`] with a zero denominator was asked for.
    #[error("division by zero")]
    DivisionByZero,
    /// The fee is above [`FEE_BPS_MAX`].
    #[error("a fee of {fee_bps} basis points exceeds 10000")]
    FeeOutOfRange {
        /// The fee given.
        fee_bps: u16,
    },
    /// An FX rate is missing although the currencies differ, or given although they are equal.
    #[error("{base} to {settlement}: {}", fx_mismatch_reason(*.fx_given))]
    FxMismatch {
        /// The base currency.
        base: Currency,
        /// The settlement currency.
        settlement: Currency,
        /// Whether an FX rate was given.
        fx_given: bool,
    },
    /// The point value and the FX rate have more than [`VALUATION_SCALE_MAX`] digits after
    /// the point together.
    #[error("point value and FX rate have {scale} digits after the point together, above 18")]
    ScaleTooLarge {
        /// Their combined scale.
        scale: u8,
    },
}

impl ValueError {
    /// The stable code of this error, as in spec/protocol.md §8.
    pub fn code(&self) -> &'static str {
        match self {
            ValueError::ZeroAmount => "zero_amount",
            ValueError::Overflow => "overflow",
            ValueError::DivisionByZero => "division_by_zero",
            ValueError::FeeOutOfRange { .. } => "fee_out_of_range",
            ValueError::FxMismatch { .. } => "fx_mismatch",
            ValueError::ScaleTooLarge { .. } => "scale_too_large",
        }
    }
}

fn fx_mismatch_reason(fx_given: bool) -> &'static str {
    if fx_given {
        "an FX rate is given although the currencies are equal"
    } else {
        "an FX rate is required since the currencies differ"
    }
}

/// An exact non-negative rational number `numer / denom`.
///
/// Always in lowest terms with `denom > 0` (zero is `0/1`), so `==`, `Hash` and `Ord` are those
/// of the value. Arithmetic is checked: it returns [`ValueError::Overflow`] instead of wrapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ratio {
    numer: u128,
    denom: u128,
}

impl Ratio {
    /// Zero.
    pub const ZERO: Ratio = Ratio { numer: 0, denom: 1 };
    /// One.
    pub const ONE: Ratio = Ratio { numer: 1, denom: 1 };

    /// `numer / denom` in lowest terms; [`ValueError::DivisionByZero`] when `denom` is 0.
    pub fn new(numer: u128, denom: u128) -> Result<Ratio, ValueError> {
        if denom == 0 {
            return Err(ValueError::DivisionByZero);
        }
        let g = gcd(numer, denom);
        Ok(Ratio {
            numer: numer / g,
            denom: denom / g,
        })
    }

    /// The integer `n`.
    pub const fn from_integer(n: u128) -> Ratio {
        Ratio { numer: n, denom: 1 }
    }

    /// The numerator, in lowest terms.
    pub fn numer(&self) -> u128 {
        self.numer
    }

    /// The denominator, in lowest terms; never zero.
    pub fn denom(&self) -> u128 {
        self.denom
    }

    /// Whether the value is zero.
    pub fn is_zero(&self) -> bool {
        self.numer == 0
    }

    /// Whether the value is a whole number.
    pub fn is_integer(&self) -> bool {
        self.denom == 1
    }

    /// `self × other`, exact. Fails with [`ValueError::Overflow`] exactly when the product in
    /// lowest terms does not fit (cross-reduction keeps every intermediate at most that size).
    pub fn checked_mul(self, other: Ratio) -> Result<Ratio, ValueError> {
        if self.is_zero() || other.is_zero() {
            return Ok(Ratio::ZERO);
        }
        let g1 = gcd(self.numer, other.denom);
        let g2 = gcd(other.numer, self.denom);
        let numer = (self.numer / g1)
            .checked_mul(other.numer / g2)
            .ok_or(ValueError::Overflow)?;
        let denom = (self.denom / g2)
            .checked_mul(other.denom / g1)
            .ok_or(ValueError::Overflow)?;
        Ok(Ratio { numer, denom })
    }

    /// `self ÷ other`, exact; [`ValueError::DivisionByZero`] when `other` is zero, and
    /// [`ValueError::Overflow`] exactly when the quotient in lowest terms does not fit.
    pub fn checked_div(self, other: Ratio) -> Result<Ratio, ValueError> {
        if other.is_zero() {
            return Err(ValueError::DivisionByZero);
        }
        self.checked_mul(Ratio {
            numer: other.denom,
            denom: other.numer,
        })
    }

    /// `self + other`, exact. Fails with [`ValueError::Overflow`] when the sum over the least
    /// common denominator does not fit (in rare cases even though its lowest terms would).
    pub fn checked_add(self, other: Ratio) -> Result<Ratio, ValueError> {
        let g = gcd(self.denom, other.denom);
        let (b, d) = (self.denom / g, other.denom / g);
        let numer = self
            .numer
            .checked_mul(d)
            .zip(other.numer.checked_mul(b))
            .and_then(|(x, y)| x.checked_add(y))
            .ok_or(ValueError::Overflow)?;
        let denom = b.checked_mul(other.denom).ok_or(ValueError::Overflow)?;
        Ratio::new(numer, denom)
    }
}

impl From<u64> for Ratio {
    fn from(n: u64) -> Ratio {
        Ratio::from_integer(u128::from(n))
    }
}

impl From<Decimal> for Ratio {
    /// The exact value `mantissa / 10^scale` of a decimal.
    fn from(d: Decimal) -> Ratio {
        // A Decimal's scale is at most 18, and 10^18 < 2^128.
        let denom = 10u128.pow(u32::from(d.scale()));
        let numer = u128::from(d.mantissa());
        let g = gcd(numer, denom);
        Ratio {
            numer: numer / g,
            denom: denom / g,
        }
    }
}

impl Ord for Ratio {
    fn cmp(&self, other: &Ratio) -> Ordering {
        // a/b vs c/d is a·d vs c·b, compared in 256 bits so that it never overflows.
        wide_mul(self.numer, other.denom).cmp(&wide_mul(other.numer, self.denom))
    }
}

impl PartialOrd for Ratio {
    fn partial_cmp(&self, other: &Ratio) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Ratio {
    /// `n` for a whole number, `n/d` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.denom == 1 {
            write!(f, "{}", self.numer)
        } else {
            write!(f, "{}/{}", self.numer, self.denom)
        }
    }
}

/// The greatest common divisor; `gcd(0, n) = n`.
fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The full 256-bit product `a × b` as `(high, low)` 128-bit halves.
fn wide_mul(a: u128, b: u128) -> (u128, u128) {
    const LOW: u128 = u64::MAX as u128;
    let (a0, a1) = (a & LOW, a >> 64);
    let (b0, b1) = (b & LOW, b >> 64);
    // Each partial product is below 2^128, and `mid` below 3·2^64.
    let (p00, p01, p10, p11) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
    let mid = (p00 >> 64) + (p01 & LOW) + (p10 & LOW);
    let low = (p00 & LOW) | (mid << 64);
    let high = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
    (high, low)
}

/// How an exact amount becomes whole minor units (DESIGN §6: once per obligation, by the
/// agreement's rule). Amounts are never negative, so "down" is toward zero and "up" away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rounding {
    /// To the nearest; a tie of exactly one half goes to the even neighbour. The default.
    #[default]
    HalfEven,
    /// To the nearest; a tie of exactly one half goes up.
    HalfUp,
    /// Toward zero (truncate).
    Down,
    /// Away from zero: any fraction goes up.
    Up,
}

/// `r` rounded to a whole number by `rule` (spec/protocol.md §8). Fails with
/// [`ValueError::Overflow`] when the result does not fit a `u64`.
pub fn round(r: &Ratio, rule: Rounding) -> Result<u64, ValueError> {
    let (q, rem) = (r.numer / r.denom, r.numer % r.denom);
    // `rem < denom`, so `denom - rem` is the distance to the next whole number, above 0.
    let rest = r.denom - rem;
    let up = match rule {
        Rounding::Down => false,
        Rounding::Up => rem > 0,
        Rounding::HalfUp => rem >= rest,
        Rounding::HalfEven => rem > rest || (rem == rest && q % 2 == 1),
    };
    let q = if up { q.checked_add(1) } else { Some(q) };
    q.and_then(|q| u64::try_from(q).ok())
        .ok_or(ValueError::Overflow)
}

/// What points are worth under an agreement, in the terms of spec/protocol.md §8.
///
/// The fields are not validated when built; every function that values checks them first
/// ([`Valuation::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Valuation {
    /// The value of one point in major units of `base` (the rate card's `point_value`).
    pub point_value: Decimal,
    /// The issuing brand's base currency.
    pub base: Currency,
    /// Units of `settlement` per one unit of `base`: required exactly when they differ.
    pub fx: Option<Decimal>,
    /// The currency the payer brand owes in.
    pub settlement: Currency,
    /// The fee in basis points (0 to 10000), deducted from what the payer brand owes.
    pub fee_bps: u16,
    /// How the exact amount is rounded to minor units.
    pub rounding: Rounding,
}

impl Valuation {
    /// Checks, in this order: the fee is at most [`FEE_BPS_MAX`] (`fee_out_of_range`); an FX
    /// rate is given exactly when the currencies differ (`fx_mismatch`); the point value's and
    /// FX rate's scales sum to at most [`VALUATION_SCALE_MAX`] (`scale_too_large`).
    pub fn check(&self) -> Result<(), ValueError> {
        if self.fee_bps > FEE_BPS_MAX {
            return Err(ValueError::FeeOutOfRange {
                fee_bps: self.fee_bps,
            });
        }
        if self.fx.is_some() == (self.base == self.settlement) {
            return Err(ValueError::FxMismatch {
                base: self.base,
                settlement: self.settlement,
                fx_given: self.fx.is_some(),
            });
        }
        let scale = self.point_value.scale() + self.fx.map_or(0, |fx| fx.scale());
        if scale > VALUATION_SCALE_MAX {
            return Err(ValueError::ScaleTooLarge { scale });
        }
        Ok(())
    }

    /// The exact value of one point after the fee, in minor units of `settlement`:
    /// `point_value × fx × 10^minor_unit × (10000 − fee_bps) / 10000`. Its denominator divides
    /// 10^22. Zero only for a fee of 10000.
    pub fn minor_per_point(&self) -> Result<Ratio, ValueError> {
        self.check()?;
        // 10^minor_unit: a Currency's minor unit is 0 to 3, so this never fails in practice.
        let minor = u32::from(self.settlement.minor_unit());
        let minor = 10u128.checked_pow(minor).ok_or(ValueError::Overflow)?;
        let after_fee = u128::from(FEE_BPS_MAX - self.fee_bps);
        if after_fee == 0 {
            return Ok(Ratio::ZERO);
        }
        let mut unit = Ratio::from(self.point_value);
        if let Some(fx) = self.fx {
            unit = unit.checked_mul(Ratio::from(fx))?;
        }
        unit.checked_mul(Ratio::from_integer(minor))?
            .checked_mul(Ratio::new(after_fee, u128::from(FEE_BPS_MAX))?)
    }

    /// The exact value of `points` after the fee, in minor units of `settlement`, before
    /// rounding. [`ValueError::Overflow`] implies the value exceeds 2^53.
    pub fn exact_minor(&self, points: Points) -> Result<Ratio, ValueError> {
        Ratio::from(points.get()).checked_mul(self.minor_per_point()?)
    }
}

/// A conversion of points to money: the exact value and the one rounding of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conversion {
    /// The exact value in minor units of the settlement currency, after the fee.
    pub exact_minor: Ratio,
    /// `exact_minor` rounded by `rounding`: what the payer brand owes, 1 to 2^53 − 1.
    pub amount_minor: u64,
    /// The rule that was applied.
    pub rounding: Rounding,
}

/// What `points` are worth under `v`, rounded once to whole minor units of the settlement
/// currency (spec/protocol.md §8).
///
/// Errors: those of [`Valuation::check`]; `zero_amount` when the amount rounds to zero;
/// `overflow` exactly when it exceeds 2^53 − 1 ([`MAX_AMOUNT`]).
pub fn points_to_minor(points: Points, v: &Valuation) -> Result<Conversion, ValueError> {
    let exact_minor = v.exact_minor(points)?;
    let amount_minor = round(&exact_minor, v.rounding)?;
    if amount_minor == 0 {
        return Err(ValueError::ZeroAmount);
    }
    if amount_minor > MAX_AMOUNT {
        return Err(ValueError::Overflow);
    }
    Ok(Conversion {
        exact_minor,
        amount_minor,
        rounding: v.rounding,
    })
}

/// The fewest points whose exact value under `v` is at least `price_minor` minor units of the
/// settlement currency (spec/protocol.md §8): the member never pays less than the price.
///
/// When this returns `Ok(p)`, [`points_to_minor`] of `p` succeeds with an amount of at least
/// `price_minor` under every rounding rule, and `p − 1` points are worth less than the price.
/// Errors: those of [`Valuation::check`]; `zero_amount` for a zero price or a fee of 10000;
/// `overflow` for a price above 2^53 − 1, more than 2^53 − 1 points, or when the amount of
/// `p` points would exceed 2^53 − 1.
pub fn points_for_price(price_minor: u64, v: &Valuation) -> Result<Points, ValueError> {
    let unit = v.minor_per_point()?;
    if price_minor == 0 || unit.is_zero() {
        return Err(ValueError::ZeroAmount);
    }
    if price_minor > MAX_AMOUNT {
        return Err(ValueError::Overflow);
    }
    // p = ceil(price / unit) = ceil(price × denom / numer). With the scale cap, denom ≤ 10^22
    // and price < 2^53, so the product is below 2^127; checked all the same.
    let scaled = u128::from(price_minor)
        .checked_mul(unit.denom)
        .ok_or(ValueError::Overflow)?;
    let p = scaled.div_ceil(unit.numer);
    let p = u64::try_from(p)
        .ok()
        .filter(|p| *p <= MAX_AMOUNT)
        .ok_or(ValueError::Overflow)?;
    let points = Points::new(p).map_err(|_| ValueError::Overflow)?;
    let conversion = points_to_minor(points, v)?;
    debug_assert!(conversion.amount_minor >= price_minor);
    Ok(points)
}

/// The part of a committed obligation that a refund of `points` takes off it, when `refunded`
/// of its `total_points` were refunded before (spec/protocol.md §8.5).
///
/// The rule is cumulative: after refunds of `k` points in all, `round(amount × k / total, rule)`
/// minor units are refunded in all, and each refund is the growth of that figure. So a full
/// refund in any number of parts gives back exactly `amount_minor`, no partial refund ever gives
/// back more than the points' share rounded by the agreement's rule, and the result does not
/// depend on how the refund is split except for where the rounding lands. A small refund may be
/// worth 0 minor units; the next one catches up.
///
/// Errors: `overflow` when `refunded + points > total_points` (more than was committed),
/// `zero_amount` for `total_points == 0` or `points == 0`.
pub fn refund_minor(
    amount_minor: u64,
    total_points: u64,
    refunded: u64,
    points: u64,
    rule: Rounding,
) -> Result<u64, ValueError> {
    if total_points == 0 || points == 0 {
        return Err(ValueError::ZeroAmount);
    }
    let after = refunded
        .checked_add(points)
        .filter(|a| *a <= total_points)
        .ok_or(ValueError::Overflow)?;
    let cumulative = |k: u64| {
        let share = Ratio::new(
            u128::from(amount_minor) * u128::from(k),
            u128::from(total_points),
        )?;
        round(&share, rule)
    };
    // Every rule rounds monotonically, so the difference is never negative.
    Ok(cumulative(after)? - cumulative(refunded)?)
}

#[cfg(test)]
mod tests;
