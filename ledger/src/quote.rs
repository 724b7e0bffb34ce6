//! Quotes for cross-brand redemption (spec/redemption.md §3, step 2): the points of the member's
//! brand (the payer) and the fiat amount it will owe the redeeming brand (the payee), locked with
//! every input that produced them, until an expiry.
//!
//! Invariants: a [`Quote`] is made only under an agreement that allows the direction and is
//! valid at the quote's time; its amount is the one rounding of spec/protocol.md §8 applied to
//! its points (so a commit that uses the quote never depends on a later rate); when the ask is a
//! price, the points are the fewest whose value covers it. Pure: the caller passes the time and
//! the rate card and FX rate it read (with their entry indexes, recorded in the quote).

use serde::{Deserialize, Serialize};

use crate::agreement::AgreementTerms;
use crate::money::{Currency, Decimal};
use crate::types::{BrandId, DurationMs, EntryId, LogTime, MemberId, Points};
use crate::value::{points_for_price, points_to_minor, Rounding, Valuation, ValueError};

/// What the redeeming brand asks a quote for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ask {
    /// The fiat value of this many points.
    Points(Points),
    /// The points that pay this price, in minor units of the settlement currency.
    PriceMinor(u64),
}

/// The payer's valuation inputs, each with the index of the entry it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pricing {
    /// Index of the payer's `rate_card` entry in force at the quote's time.
    pub rate_card_index: u64,
    /// Its point value, in major units of `base`.
    pub point_value: Decimal,
    /// The payer's base currency (the rate card's currency).
    pub base: Currency,
    /// Index and rate of the `fx_rate` entry (base → settlement) in the agreement's FX source
    /// log, when the currencies differ.
    pub fx: Option<(u64, Decimal)>,
}

/// A locked quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quote {
    /// The redemption this quote is for (its id throughout the flow).
    pub redemption: EntryId,
    pub agreement: EntryId,
    pub payer: BrandId,
    pub payee: BrandId,
    pub member: MemberId,
    /// The payer's points the member spends.
    pub points: Points,
    /// What the payer will owe the payee for them, in minor units of `currency`.
    pub amount_minor: u64,
    pub currency: Currency,
    pub rate_card_index: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fx_rate_index: Option<u64>,
    pub fee_bps: u16,
    pub rounding: Rounding,
    pub quoted_at: LogTime,
    pub expires_at: LogTime,
}

impl Quote {
    /// Whether the quote can still be used at log time `t`.
    pub fn is_live(&self, t: LogTime) -> bool {
        t < self.expires_at
    }
}

/// Why no quote was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    #[error("the agreement does not let {payer} points be redeemed at {payee}")]
    DirectionNotAgreed { payer: BrandId, payee: BrandId },
    #[error("the agreement applies from {valid_from}, after the quote's time")]
    AgreementNotYetValid { valid_from: LogTime },
    #[error("a quote must live for a positive time within the log's time range")]
    BadLifetime,
    #[error(transparent)]
    Value(#[from] ValueError),
}

impl QuoteError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            QuoteError::DirectionNotAgreed { .. } => "quote_direction_not_agreed",
            QuoteError::AgreementNotYetValid { .. } => "agreement_not_yet_valid",
            QuoteError::BadLifetime => "quote_bad_lifetime",
            QuoteError::Value(e) => e.code(),
        }
    }
}

/// Makes a quote at log time `now`, living `ttl`.
#[allow(clippy::too_many_arguments)]
pub fn make_quote(
    terms: &AgreementTerms,
    redemption: EntryId,
    member: MemberId,
    payer: &BrandId,
    payee: &BrandId,
    ask: Ask,
    pricing: &Pricing,
    now: LogTime,
    ttl: DurationMs,
) -> Result<Quote, QuoteError> {
    if !terms.allows(payer, payee) {
        return Err(QuoteError::DirectionNotAgreed {
            payer: payer.clone(),
            payee: payee.clone(),
        });
    }
    if now < terms.valid_from {
        return Err(QuoteError::AgreementNotYetValid {
            valid_from: terms.valid_from,
        });
    }
    let expires_at = now.plus(ttl);
    if ttl.get() == 0 || expires_at <= now {
        return Err(QuoteError::BadLifetime);
    }
    let valuation = Valuation {
        point_value: pricing.point_value,
        base: pricing.base,
        fx: pricing.fx.map(|(_, r)| r),
        settlement: terms.settlement_currency,
        fee_bps: terms.fee_bps,
        rounding: terms.rounding,
    };
    valuation.check()?;
    let points = match ask {
        Ask::Points(p) => p,
        Ask::PriceMinor(price) => points_for_price(price, &valuation)?,
    };
    let amount_minor = points_to_minor(points, &valuation)?.amount_minor;
    Ok(Quote {
        redemption,
        agreement: terms.agreement.clone(),
        payer: payer.clone(),
        payee: payee.clone(),
        member,
        points,
        amount_minor,
        currency: terms.settlement_currency,
        rate_card_index: pricing.rate_card_index,
        fx_rate_index: pricing.fx.map(|(i, _)| i),
        fee_bps: terms.fee_bps,
        rounding: terms.rounding,
        quoted_at: now,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agreement::Direction;

    fn b(s: &str) -> BrandId {
        s.parse().unwrap()
    }

    fn terms(currency: &str) -> AgreementTerms {
        AgreementTerms {
            agreement: "agr-1".parse().unwrap(),
            brands: [b("air"), b("coffee")],
            directions: vec![Direction {
                payer: b("air"),
                payee: b("coffee"),
            }],
            settlement_currency: currency.parse().unwrap(),
            fx_source: b("air"),
            fee_bps: 0,
            credit_limit_minor: 1_000_000,
            period_ms: DurationMs::new(86_400_000).unwrap(),
            period_origin: LogTime::new(0).unwrap(),
            rounding: Rounding::HalfEven,
            valid_from: LogTime::new(1_000).unwrap(),
        }
    }

    fn pricing(fx: Option<&str>) -> Pricing {
        Pricing {
            rate_card_index: 7,
            point_value: "0.0125".parse().unwrap(),
            base: "EUR".parse().unwrap(),
            fx: fx.map(|r| (9, r.parse().unwrap())),
        }
    }

    fn quote(t: &AgreementTerms, ask: Ask, p: &Pricing, now: u64) -> Result<Quote, QuoteError> {
        make_quote(
            t,
            "r1".parse().unwrap(),
            "m1".parse().unwrap(),
            &b("air"),
            &b("coffee"),
            ask,
            p,
            LogTime::new(now).unwrap(),
            DurationMs::new(60_000).unwrap(),
        )
    }

    #[test]
    fn points_and_prices_are_quoted_with_their_inputs() {
        // 1000 points at EUR 0.0125 = EUR 12.50 = 1250 cents.
        let q = quote(
            &terms("EUR"),
            Ask::Points(Points::new(1000).unwrap()),
            &pricing(None),
            5_000,
        )
        .unwrap();
        assert_eq!(
            (q.amount_minor, q.rate_card_index, q.fx_rate_index),
            (1250, 7, None)
        );
        assert_eq!(q.expires_at.get(), 65_000);
        assert!(q.is_live(LogTime::new(64_999).unwrap()));
        assert!(!q.is_live(LogTime::new(65_000).unwrap()));
        // A price of EUR 4.99 needs 400 points (399 are worth 4.9875 < 4.99).
        let q = quote(&terms("EUR"), Ask::PriceMinor(499), &pricing(None), 5_000).unwrap();
        assert_eq!(q.points.get(), 400);
        assert_eq!(q.amount_minor, 500);
        // Across currencies: EUR -> USD at 1.08; 1000 points = USD 13.50.
        let q = quote(
            &terms("USD"),
            Ask::Points(Points::new(1000).unwrap()),
            &pricing(Some("1.08")),
            5_000,
        )
        .unwrap();
        assert_eq!((q.amount_minor, q.fx_rate_index), (1350, Some(9)));
    }

    #[test]
    fn quotes_outside_the_agreement_are_refused() {
        let t = terms("EUR");
        let p = pricing(None);
        let reverse = make_quote(
            &t,
            "r1".parse().unwrap(),
            "m1".parse().unwrap(),
            &b("coffee"),
            &b("air"),
            Ask::Points(Points::new(1).unwrap()),
            &p,
            LogTime::new(5_000).unwrap(),
            DurationMs::new(1).unwrap(),
        );
        assert_eq!(reverse.unwrap_err().code(), "quote_direction_not_agreed");
        let early = quote(&t, Ask::Points(Points::new(1000).unwrap()), &p, 999);
        assert_eq!(early.unwrap_err().code(), "agreement_not_yet_valid");
        // One point of EUR 0.0125 rounds to 1 cent (half-even of 1.25); a tenth of a cent
        // rounds to zero and is refused.
        let mut tiny = p.clone();
        tiny.point_value = "0.001".parse().unwrap();
        let zero = quote(&t, Ask::Points(Points::new(1).unwrap()), &tiny, 5_000);
        assert_eq!(zero.unwrap_err().code(), "zero_amount");
        let missing_fx = quote(
            &terms("USD"),
            Ask::Points(Points::new(1).unwrap()),
            &p,
            5_000,
        );
        assert_eq!(missing_fx.unwrap_err().code(), "fx_mismatch");
    }
}
