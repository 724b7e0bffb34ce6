//! Unit and property tests of exact valuation. The worked examples of spec/protocol.md §8 are
//! the unit tests below; the properties check rounding bounds, that no conversion creates
//! value, monotonicity, the fee, and against an independent big-integer computation that
//! values are exact and that `overflow` means exactly "the amount exceeds 2^53 − 1".

use super::*;
use proptest::prelude::*;

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}
fn cur(s: &str) -> Currency {
    s.parse().unwrap()
}
fn pts(n: u64) -> Points {
    Points::new(n).unwrap()
}
fn ratio(n: u128, d: u128) -> Ratio {
    Ratio::new(n, d).unwrap()
}
fn val(pv: &str, base: &str, fx: Option<&str>, settlement: &str, fee_bps: u16) -> Valuation {
    Valuation {
        point_value: dec(pv),
        base: cur(base),
        fx: fx.map(dec),
        settlement: cur(settlement),
        fee_bps,
        rounding: Rounding::HalfEven,
    }
}
fn with(v: &Valuation, rounding: Rounding) -> Valuation {
    Valuation { rounding, ..*v }
}
/// The rounded amount, or the error's code.
fn amount(points: u64, v: &Valuation) -> Result<u64, &'static str> {
    points_to_minor(pts(points), v)
        .map(|c| c.amount_minor)
        .map_err(|e| e.code())
}
/// The amounts under half_even, half_up, down and up, in that order.
fn amounts(points: u64, v: &Valuation) -> [Result<u64, &'static str>; 4] {
    RULES.map(|r| amount(points, &with(v, r)))
}
fn price(price_minor: u64, v: &Valuation) -> Result<u64, &'static str> {
    points_for_price(price_minor, v)
        .map(Points::get)
        .map_err(|e| e.code())
}

const RULES: [Rounding; 4] = [
    Rounding::HalfEven,
    Rounding::HalfUp,
    Rounding::Down,
    Rounding::Up,
];

#[test]
fn ratios_are_always_in_lowest_terms() {
    assert_eq!(ratio(6, 4), ratio(3, 2));
    assert_eq!((ratio(6, 4).numer(), ratio(6, 4).denom()), (3, 2));
    assert_eq!(ratio(0, 7), Ratio::ZERO);
    assert_eq!(Ratio::new(1, 0), Err(ValueError::DivisionByZero));
    assert_eq!(Ratio::from(dec("0.0125")), ratio(1, 80));
    assert_eq!(Ratio::from(dec("12.5")), ratio(25, 2));
    assert_eq!(
        Ratio::from(dec("0.000000000000000001")),
        ratio(1, 10u128.pow(18))
    );
    assert_eq!(Ratio::from(7u64), Ratio::from_integer(7));
    assert!(Ratio::from_integer(7).is_integer() && !ratio(7, 2).is_integer());
    assert_eq!(ratio(7, 2).to_string(), "7/2");
    assert_eq!(Ratio::from_integer(7).to_string(), "7");
}

#[test]
fn ratio_arithmetic_is_exact_and_refuses_overflow() {
    assert_eq!(ratio(1, 3).checked_mul(ratio(3, 4)), Ok(ratio(1, 4)));
    assert_eq!(ratio(1, 3).checked_add(ratio(1, 6)), Ok(ratio(1, 2)));
    assert_eq!(
        ratio(1, 2).checked_div(ratio(1, 4)),
        Ok(Ratio::from_integer(2))
    );
    assert_eq!(
        Ratio::ZERO.checked_mul(ratio(u128::MAX, 1)),
        Ok(Ratio::ZERO)
    );
    assert_eq!(
        ratio(1, 2).checked_div(Ratio::ZERO),
        Err(ValueError::DivisionByZero)
    );
    // Cross-reduction: the product fits although u128::MAX × u128::MAX would not.
    assert_eq!(
        ratio(u128::MAX, 3).checked_mul(ratio(3, u128::MAX)),
        Ok(Ratio::ONE)
    );
    let big = Ratio::from_integer(u128::MAX);
    assert_eq!(
        big.checked_mul(Ratio::from_integer(2)),
        Err(ValueError::Overflow)
    );
    assert_eq!(big.checked_add(Ratio::ONE), Err(ValueError::Overflow));
    assert_eq!(Ratio::ONE.checked_div(ratio(1, u128::MAX)), Ok(big));
    assert_eq!(ratio(1, 2).checked_div(big), Err(ValueError::Overflow));
}

#[test]
fn ratio_order_is_exact_for_huge_values() {
    let m = u128::MAX;
    assert!(ratio(m, m - 1) > Ratio::ONE);
    assert!(ratio(m - 1, m) < Ratio::ONE);
    assert!(ratio(m - 2, m - 1) < ratio(m - 1, m));
    assert!(Ratio::ZERO < ratio(1, m));
    assert_eq!(ratio(1, 3).cmp(&ratio(1, 3)), Ordering::Equal);
}

#[test]
fn each_rounding_rule_rounds_as_specified() {
    // value, then half_even, half_up, down, up.
    let cases: [(Ratio, [u64; 4]); 10] = [
        (ratio(1, 2), [0, 1, 0, 1]),
        (ratio(3, 2), [2, 2, 1, 2]),
        (ratio(5, 2), [2, 3, 2, 3]),
        (ratio(7, 2), [4, 4, 3, 4]),
        (ratio(2499, 1000), [2, 2, 2, 3]),
        (ratio(2501, 1000), [3, 3, 2, 3]),
        (ratio(1, 1000), [0, 0, 0, 1]),
        (ratio(999, 1000), [1, 1, 0, 1]),
        (Ratio::from_integer(3), [3, 3, 3, 3]),
        (Ratio::ZERO, [0, 0, 0, 0]),
    ];
    for (x, want) in cases {
        for (rule, w) in RULES.into_iter().zip(want) {
            assert_eq!(round(&x, rule), Ok(w), "{x} by {rule:?}");
        }
    }
    let top = u128::from(u64::MAX);
    assert_eq!(round(&Ratio::from_integer(top), Rounding::Up), Ok(u64::MAX));
    let tie = ratio(2 * top + 1, 2); // u64::MAX + 1/2, and u64::MAX is odd
    assert_eq!(round(&tie, Rounding::Down), Ok(u64::MAX));
    assert_eq!(round(&tie, Rounding::HalfEven), Err(ValueError::Overflow));
    assert_eq!(round(&tie, Rounding::HalfUp), Err(ValueError::Overflow));
    assert_eq!(
        round(&Ratio::from_integer(top + 1), Rounding::Down),
        Err(ValueError::Overflow)
    );
}

#[test]
fn usd_points_convert_exactly() {
    let v = val("0.0125", "USD", None, "USD", 0);
    let c = points_to_minor(pts(1000), &v).unwrap();
    assert_eq!(c.exact_minor, Ratio::from_integer(1250));
    assert_eq!(c.amount_minor, 1250);
    assert_eq!(c.rounding, Rounding::HalfEven);
    // 0.0125 × 100 = 1.25 cents a point; 3 points are 3.75 cents.
    assert_eq!(amounts(3, &v), [Ok(4), Ok(4), Ok(3), Ok(4)]);
    assert_eq!(v.minor_per_point(), Ok(ratio(5, 4)));
}

#[test]
fn half_even_ties_go_to_the_even_neighbour_both_ways() {
    // Half a cent a point.
    let v = val("0.005", "EUR", None, "EUR", 0);
    assert_eq!(amounts(3, &v), [Ok(2), Ok(2), Ok(1), Ok(2)]); // 1.5: up to even 2
    assert_eq!(amounts(5, &v), [Ok(2), Ok(3), Ok(2), Ok(3)]); // 2.5: down to even 2
    assert_eq!(
        amounts(1, &v), // 0.5: down to even 0
        [Err("zero_amount"), Ok(1), Err("zero_amount"), Ok(1)]
    );
}

#[test]
fn jpy_has_no_minor_unit_digits() {
    // 1000 × 0.0125 EUR × 162.35 JPY/EUR × 1 × 9750/10000 = 1978.640625 yen.
    let v = val("0.0125", "EUR", Some("162.35"), "JPY", 250);
    let c = points_to_minor(pts(1000), &v).unwrap();
    assert_eq!(c.exact_minor, ratio(1_978_640_625, 1_000_000));
    assert_eq!(amounts(1000, &v), [Ok(1979), Ok(1979), Ok(1978), Ok(1979)]);
    // Half a yen a point: 1.5 and 2.5 yen.
    let v = val("0.5", "JPY", None, "JPY", 0);
    assert_eq!(amounts(3, &v), [Ok(2), Ok(2), Ok(1), Ok(2)]);
    assert_eq!(amounts(5, &v), [Ok(2), Ok(3), Ok(2), Ok(3)]);
}

#[test]
fn kwd_and_bhd_have_three_minor_unit_digits() {
    // 100 × 0.01 USD × 0.3075 KWD/USD × 1000 = 307.5 fils: 307 is odd, so half_even goes up.
    let v = val("0.01", "USD", Some("0.3075"), "KWD", 0);
    assert_eq!(amounts(100, &v), [Ok(308), Ok(308), Ok(307), Ok(308)]);
    // 308.5 fils: 308 is even, so half_even stays.
    let v = val("0.01", "USD", Some("0.3085"), "KWD", 0);
    assert_eq!(amounts(100, &v), [Ok(308), Ok(309), Ok(308), Ok(309)]);
    // Half a fils a point.
    let v = val("0.0005", "BHD", None, "BHD", 0);
    assert_eq!(
        amounts(1, &v),
        [Err("zero_amount"), Ok(1), Err("zero_amount"), Ok(1)]
    );
    assert_eq!(amounts(3, &v), [Ok(2), Ok(2), Ok(1), Ok(2)]);
    assert_eq!(amounts(1000, &v), [Ok(500); 4]);
}

#[test]
fn the_fee_is_deducted_before_the_one_rounding() {
    // 1250 cents less 2.5 % is 1218.75 cents.
    let v = val("0.0125", "USD", None, "USD", 250);
    assert_eq!(amounts(1000, &v), [Ok(1219), Ok(1219), Ok(1218), Ok(1219)]);
    assert_eq!(
        amount(1000, &val("0.0125", "USD", None, "USD", 10_000)),
        Err("zero_amount")
    );
    assert_eq!(
        amount(1000, &val("0.0125", "USD", None, "USD", 10_001)),
        Err("fee_out_of_range")
    );
}

#[test]
fn fx_is_required_exactly_when_currencies_differ() {
    assert_eq!(
        amount(1000, &val("0.0125", "USD", Some("1"), "USD", 0)),
        Err("fx_mismatch")
    );
    assert_eq!(
        amount(1000, &val("0.0125", "USD", None, "EUR", 0)),
        Err("fx_mismatch")
    );
    assert_eq!(
        price(1000, &val("0.0125", "USD", None, "EUR", 0)),
        Err("fx_mismatch")
    );
    // Checks run in order: the fee first.
    assert_eq!(
        amount(1000, &val("0.0125", "USD", None, "EUR", 10_001)),
        Err("fee_out_of_range")
    );
}

#[test]
fn the_combined_scale_is_capped_at_18() {
    let v = val("0.000000000001", "USD", Some("0.0000001"), "EUR", 0);
    assert_eq!(v.check(), Err(ValueError::ScaleTooLarge { scale: 19 }));
    assert_eq!(amount(1, &v), Err("scale_too_large"));
    let v = val("0.000000000001", "USD", Some("0.000001"), "EUR", 0);
    assert_eq!(v.check(), Ok(()));
}

#[test]
fn amounts_up_to_the_maximum_never_overflow() {
    let max = MAX_AMOUNT;
    assert_eq!(amounts(max, &val("1", "JPY", None, "JPY", 0)), [Ok(max); 4]);
    assert_eq!(
        amount(max, &val("2", "JPY", None, "JPY", 0)),
        Err("overflow")
    );
    assert_eq!(
        amount(max, &val("1", "USD", None, "USD", 0)),
        Err("overflow")
    );
    // Just above the maximum: fine when it rounds down to it, overflow when it rounds up.
    let v = val("1.000000000000000001", "JPY", None, "JPY", 0);
    assert_eq!(
        amounts(max, &v),
        [Ok(max), Ok(max), Ok(max), Err("overflow")]
    );
    // Full scale, an odd fee: the exact value's denominator is 10^22, and it still fits.
    let v = val("0.999999999999999999", "JPY", None, "JPY", 1);
    let c = points_to_minor(pts(max), &v).unwrap();
    assert_eq!(c.exact_minor.denom(), 10u128.pow(22));
    assert!(c.amount_minor < max && c.amount_minor > max / 10_000 * 9_998);
    let v = val("0.000000000001", "USD", Some("0.000001"), "KWD", 1);
    assert_eq!(v.minor_per_point().unwrap().denom(), 10u128.pow(19));
    assert_eq!(amount(max, &v), Ok(9));
}

#[test]
fn points_for_price_is_the_fewest_points_that_pay_the_price() {
    let v = val("0.0125", "USD", None, "USD", 0);
    assert_eq!(price(1000, &v), Ok(800));
    // 800.8 points pay 10.01 dollars.
    assert_eq!(price(1001, &v), Ok(801));
    // 1.21875 cents a point after the fee: 820 points are 999.375 cents, 821 are 1000.59375.
    let v = val("0.0125", "USD", None, "USD", 250);
    assert_eq!(price(1000, &v), Ok(821));
    assert!(v.exact_minor(pts(820)).unwrap() < Ratio::from(1000u64));
    assert_eq!(amounts(821, &v), [Ok(1001), Ok(1001), Ok(1000), Ok(1001)]);
    assert_eq!(price(0, &v), Err("zero_amount"));
    assert_eq!(price(MAX_AMOUNT + 1, &v), Err("overflow"));
    // 10 × (2^53 - 1) points would be needed.
    assert_eq!(
        price(MAX_AMOUNT, &val("0.001", "USD", None, "USD", 0)),
        Err("overflow")
    );
    // 7205759403792793 points are worth 9007199254740991.25 cents: fine unless rounded up.
    let v = val("0.0125", "USD", None, "USD", 0);
    assert_eq!(price(MAX_AMOUNT, &v), Ok(7_205_759_403_792_793));
    assert_eq!(price(MAX_AMOUNT, &with(&v, Rounding::Up)), Err("overflow"));
    assert_eq!(
        price(1, &val("0.0125", "USD", None, "USD", 10_000)),
        Err("zero_amount")
    );
    // One point is worth more than 2^53 - 1 yen: no number of points has a valid amount.
    assert_eq!(
        price(1, &val("10000000000000000", "JPY", None, "JPY", 0)),
        Err("overflow")
    );
    // Worth one yen a point: the price itself, up to the maximum.
    let v = val("1", "JPY", None, "JPY", 0);
    assert_eq!(price(MAX_AMOUNT, &v), Ok(MAX_AMOUNT));
}

#[test]
fn error_codes_are_stable() {
    let usd = cur("USD");
    let errors = [
        (ValueError::ZeroAmount, "zero_amount"),
        (ValueError::Overflow, "overflow"),
        (ValueError::DivisionByZero, "division_by_zero"),
        (
            ValueError::FeeOutOfRange { fee_bps: 10_001 },
            "fee_out_of_range",
        ),
        (
            ValueError::FxMismatch {
                base: usd,
                settlement: usd,
                fx_given: true,
            },
            "fx_mismatch",
        ),
        (ValueError::ScaleTooLarge { scale: 19 }, "scale_too_large"),
    ];
    for (e, code) in errors {
        assert_eq!(e.code(), code);
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn rounding_rules_have_snake_case_names_and_half_even_is_the_default() {
    let names: Vec<String> = RULES
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    assert_eq!(
        names,
        ["\"half_even\"", "\"half_up\"", "\"down\"", "\"up\""]
    );
    for r in RULES {
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Rounding>(&json).unwrap(), r);
    }
    assert!(serde_json::from_str::<Rounding>("\"HalfEven\"").is_err());
    assert!(serde_json::from_str::<Rounding>("\"half_down\"").is_err());
    assert_eq!(Rounding::default(), Rounding::HalfEven);
}

// ---------------------------------------------------------------------------------------------
// An independent oracle: natural numbers as little-endian base-2^64 digits.

#[derive(Debug, Clone, PartialEq, Eq)]
struct Big(Vec<u64>);

impl Big {
    fn new(n: u128) -> Big {
        Big(vec![n as u64, (n >> 64) as u64]).trim()
    }
    fn trim(mut self) -> Big {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
        self
    }
    fn mul(&self, other: &Big) -> Big {
        let mut out = vec![0u64; self.0.len() + other.0.len() + 1];
        for (i, &a) in self.0.iter().enumerate() {
            let mut carry = 0u128;
            for (j, &b) in other.0.iter().enumerate() {
                let t = u128::from(a) * u128::from(b) + u128::from(out[i + j]) + carry;
                out[i + j] = t as u64;
                carry = t >> 64;
            }
            let mut k = i + other.0.len();
            while carry != 0 {
                let t = u128::from(out[k]) + carry;
                out[k] = t as u64;
                carry = t >> 64;
                k += 1;
            }
        }
        Big(out).trim()
    }
    fn add(&self, other: &Big) -> Big {
        let len = self.0.len().max(other.0.len());
        let mut out = Vec::with_capacity(len + 1);
        let mut carry = 0u128;
        for i in 0..len {
            let t = u128::from(self.0.get(i).copied().unwrap_or(0))
                + u128::from(other.0.get(i).copied().unwrap_or(0))
                + carry;
            out.push(t as u64);
            carry = t >> 64;
        }
        out.push(carry as u64);
        Big(out).trim()
    }
    fn times(&self, n: u128) -> Big {
        self.mul(&Big::new(n))
    }
}

impl Ord for Big {
    fn cmp(&self, other: &Big) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.iter().rev().cmp(other.0.iter().rev()))
    }
}
impl PartialOrd for Big {
    fn partial_cmp(&self, other: &Big) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The exact value of `points` under `v` as `(N, D)`, from the definition in one go.
fn oracle(points: u64, v: &Valuation) -> (Big, Big) {
    let fx = v.fx.unwrap_or_else(|| dec("1"));
    let n = Big::new(u128::from(points))
        .times(u128::from(v.point_value.mantissa()))
        .times(u128::from(fx.mantissa()))
        .times(10u128.pow(u32::from(v.settlement.minor_unit())))
        .times(u128::from(FEE_BPS_MAX - v.fee_bps));
    let scale = u32::from(v.point_value.scale() + fx.scale()) + 4;
    (n, Big::new(10u128.pow(scale)))
}

/// Whether `N / D` rounded by `rule` exceeds [`MAX_AMOUNT`], and whether it is zero.
fn oracle_bounds(n: &Big, d: &Big, rule: Rounding) -> (bool, bool) {
    let max = u128::from(MAX_AMOUNT);
    let n2 = n.times(2);
    match rule {
        Rounding::Down => (*n >= d.times(max + 1), n < d),
        Rounding::Up => (*n > d.times(max), n.0.is_empty()),
        // MAX_AMOUNT is odd, so a tie at MAX_AMOUNT + 1/2 goes up under half_even too.
        Rounding::HalfUp => (n2 >= d.times(2 * max + 1), n2 < *d),
        Rounding::HalfEven => (n2 >= d.times(2 * max + 1), n2 <= *d),
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies.

/// 1 to `max`, spread over magnitudes rather than uniform.
fn spread(max: u64) -> impl Strategy<Value = u64> {
    (1u32..=64, any::<u64>()).prop_map(move |(bits, r)| {
        let v = if bits == 64 { r } else { r & ((1 << bits) - 1) };
        v % max + 1
    })
}

/// The decimal `m / 10^s` (normalised to its canonical form).
fn decimal(m: u64, s: u8) -> Decimal {
    let (mut m, mut s) = (m.max(1), s);
    while s > 0 && m % 10 == 0 {
        m /= 10;
        s -= 1;
    }
    let digits = format!("{m:0>width$}", width = usize::from(s) + 1);
    let (int, frac) = digits.split_at(digits.len() - usize::from(s));
    let text = if s == 0 {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    };
    text.parse().unwrap()
}

fn currency() -> impl Strategy<Value = Currency> {
    prop::sample::select(vec![
        "USD", "EUR", "GBP", "JPY", "KRW", "CLP", "KWD", "BHD", "JOD",
    ])
    .prop_map(cur)
}

fn rounding() -> impl Strategy<Value = Rounding> {
    prop::sample::select(RULES.to_vec())
}

fn fee() -> impl Strategy<Value = u16> {
    prop_oneof![4 => 0u16..=10_000, 2 => Just(0u16), 1 => Just(10_000u16)]
}

/// Valuations with everyday magnitudes: point values to 6 digits, FX rates to 9.
fn everyday_valuation() -> impl Strategy<Value = Valuation> {
    (
        (spread(1_000_000), 0u8..=6),
        (spread(1_000_000_000), 0u8..=9),
        currency(),
        currency(),
        fee(),
        rounding(),
    )
        .prop_map(
            |((pm, ps), (fm, fs), base, settlement, fee_bps, rounding)| Valuation {
                point_value: decimal(pm, ps),
                base,
                fx: (base != settlement).then(|| decimal(fm, fs)),
                settlement,
                fee_bps,
                rounding,
            },
        )
}

/// Every valuation that passes [`Valuation::check`], at any magnitude and scale.
fn valid_valuation() -> impl Strategy<Value = Valuation> {
    (
        (spread(u64::MAX), 0u8..=18),
        (spread(u64::MAX), 0u8..=18),
        currency(),
        currency(),
        fee(),
        rounding(),
    )
        .prop_map(
            |((pm, ps), (fm, fs), base, settlement, fee_bps, rounding)| {
                let point_value = decimal(pm, ps);
                let fx = decimal(fm, fs.min(VALUATION_SCALE_MAX - point_value.scale()));
                Valuation {
                    point_value,
                    base,
                    fx: (base != settlement).then_some(fx),
                    settlement,
                    fee_bps,
                    rounding,
                }
            },
        )
}

/// Any valuation at all, most of them invalid.
fn any_valuation() -> impl Strategy<Value = Valuation> {
    (
        (any::<u64>(), 0u8..=18),
        prop::option::of((any::<u64>(), 0u8..=18)),
        currency(),
        currency(),
        any::<u16>(),
        rounding(),
    )
        .prop_map(
            |((pm, ps), fx, base, settlement, fee_bps, rounding)| Valuation {
                point_value: decimal(pm, ps),
                base,
                fx: fx.map(|(m, s)| decimal(m, s)),
                settlement,
                fee_bps,
                rounding,
            },
        )
}

fn any_ratio() -> impl Strategy<Value = Ratio> {
    (any::<u128>(), 1u128..).prop_map(|(n, d)| ratio(n, d))
}

/// `m − 1/2` to `m + 1/2` as ratios.
fn half_around(m: u64) -> (Ratio, Ratio) {
    let m = u128::from(m);
    (ratio((2 * m).saturating_sub(1), 2), ratio(2 * m + 1, 2))
}

proptest! {
    /// (a) Rounding is within 1/2 for the half rules and within 1 for down and up, in the
    /// right direction: down ≤ exact ≤ up, and down ≤ half_even, half_up ≤ up.
    #[test]
    fn rounding_stays_within_its_bound_and_direction(x in any_ratio()) {
        let [he, hu, down, up] = RULES.map(|r| round(&x, r).ok());
        if let Some(down) = down {
            prop_assert!(Ratio::from(down) <= x);
            prop_assert!(x < Ratio::from_integer(u128::from(down) + 1));
        }
        if let Some(up) = up {
            prop_assert!(x <= Ratio::from(up));
            prop_assert!(up == 0 || Ratio::from(up - 1) < x);
            prop_assert!(up - down.unwrap() <= 1);
        }
        for a in [he, hu].into_iter().flatten() {
            let (lo, hi) = half_around(a);
            prop_assert!(lo <= x && x <= hi);
            prop_assert!(down.unwrap() <= a);
            prop_assert!(up.is_none() || a <= up.unwrap());
        }
    }

    /// (a) and (b) for conversions: the amount is within its rule's bound of the exact value,
    /// in the rule's direction, so `down` never pays out more than the points are worth; and
    /// the exact value is what the definition gives.
    #[test]
    fn conversions_round_once_within_bound(
        points in spread(MAX_AMOUNT),
        v in everyday_valuation(),
    ) {
        let Ok(c) = points_to_minor(pts(points), &v) else { return Ok(()) };
        let (n, d) = oracle(points, &v);
        prop_assert_eq!(Big::new(c.exact_minor.numer()).mul(&d), n.times(c.exact_minor.denom()));
        prop_assert_eq!(Ok(c.amount_minor), round(&c.exact_minor, v.rounding));
        let a = Ratio::from(c.amount_minor);
        let x = c.exact_minor;
        match v.rounding {
            Rounding::Down => prop_assert!(a <= x && x < Ratio::from(c.amount_minor + 1)),
            Rounding::Up => prop_assert!(Ratio::from(c.amount_minor - 1) < x && x <= a),
            Rounding::HalfEven | Rounding::HalfUp => {
                let (lo, hi) = half_around(c.amount_minor);
                prop_assert!(lo <= x && x <= hi);
            }
        }
        for r in RULES {
            if let Ok(other) = points_to_minor(pts(points), &with(&v, r)) {
                prop_assert_eq!(other.exact_minor, x);
                match r {
                    Rounding::Down => prop_assert!(Ratio::from(other.amount_minor) <= x),
                    Rounding::Up => prop_assert!(x <= Ratio::from(other.amount_minor)),
                    _ => {}
                }
            }
        }
    }

    /// (b) The member always pays at least the price, with no point more than needed, and the
    /// conversion of those points succeeds.
    #[test]
    fn points_for_price_never_undercharges(
        price_minor in spread(1_000_000_000_000),
        v in everyday_valuation(),
    ) {
        match points_for_price(price_minor, &v) {
            Ok(p) => {
                let price = Ratio::from(price_minor);
                prop_assert!(v.exact_minor(p).unwrap() >= price);
                if p.get() > 1 {
                    prop_assert!(v.exact_minor(pts(p.get() - 1)).unwrap() < price);
                }
                prop_assert!(points_to_minor(p, &v).unwrap().amount_minor >= price_minor);
            }
            Err(e) if v.fee_bps == FEE_BPS_MAX => prop_assert_eq!(e, ValueError::ZeroAmount),
            Err(e) => prop_assert_eq!(e, ValueError::Overflow),
        }
    }

    /// (b) The same at every magnitude, checked against the oracle.
    #[test]
    fn points_for_price_is_exact_at_any_magnitude(
        price_minor in spread(MAX_AMOUNT),
        v in valid_valuation(),
    ) {
        if let Ok(p) = points_for_price(price_minor, &v) {
            let (n, d) = oracle(p.get(), &v);
            prop_assert!(n >= d.times(u128::from(price_minor)));
            let (n, d) = oracle(p.get() - 1, &v);
            prop_assert!(n < d.times(u128::from(price_minor)));
        }
    }

    /// `overflow` means exactly that the rounded amount exceeds 2^53 − 1, and `zero_amount`
    /// that it is zero, for every valid valuation at any magnitude and scale.
    #[test]
    fn overflow_means_exactly_the_amount_exceeds_the_maximum(
        points in spread(MAX_AMOUNT),
        v in valid_valuation(),
    ) {
        let (n, d) = oracle(points, &v);
        let (over, zero) = oracle_bounds(&n, &d, v.rounding);
        match points_to_minor(pts(points), &v) {
            Ok(c) => {
                prop_assert!(!over && !zero);
                let (x, y) = (c.exact_minor.numer(), c.exact_minor.denom());
                prop_assert_eq!(Big::new(x).mul(&d), n.times(y));
            }
            Err(ValueError::Overflow) => prop_assert!(over),
            Err(ValueError::ZeroAmount) => prop_assert!(zero),
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }

    /// (c) More points never give a smaller amount; zero and overflow are monotonic too.
    #[test]
    fn more_points_never_give_less(
        p in spread(MAX_AMOUNT),
        extra in spread(MAX_AMOUNT),
        v in valid_valuation(),
    ) {
        let q = p.saturating_add(extra).min(MAX_AMOUNT);
        let (a, b) = (points_to_minor(pts(p), &v), points_to_minor(pts(q), &v));
        match (&a, &b) {
            (Ok(a), Ok(b)) => prop_assert!(a.amount_minor <= b.amount_minor),
            (Ok(_), Err(e)) => prop_assert_eq!(e, &ValueError::Overflow),
            (Err(e), Ok(_)) => prop_assert_eq!(e, &ValueError::ZeroAmount),
            (Err(x), Err(y)) => prop_assert!(
                x == y || (*x == ValueError::ZeroAmount && *y == ValueError::Overflow)
            ),
        }
    }

    /// (c) at everyday magnitudes, where most conversions succeed.
    #[test]
    fn more_points_never_give_less_everyday(
        p in 1u64..1_000_000,
        extra in 0u64..1_000,
        v in everyday_valuation(),
    ) {
        if let (Ok(a), Ok(b)) = (points_to_minor(pts(p), &v), points_to_minor(pts(p + extra), &v)) {
            prop_assert!(a.amount_minor <= b.amount_minor);
        }
    }

    /// (d) A fee never raises the amount.
    #[test]
    fn a_fee_never_raises_the_amount(points in spread(MAX_AMOUNT), v in valid_valuation()) {
        let free = Valuation { fee_bps: 0, ..v };
        match (points_to_minor(pts(points), &v), points_to_minor(pts(points), &free)) {
            (Ok(with_fee), Ok(without)) => {
                prop_assert!(with_fee.amount_minor <= without.amount_minor)
            }
            (Ok(_), Err(e)) => prop_assert_eq!(e, ValueError::Overflow),
            (Err(e), Ok(_)) => prop_assert_eq!(e, ValueError::ZeroAmount),
            (Err(_), Err(_)) => {}
        }
    }

    /// (e) Nothing panics, whatever the input; what succeeds is in range.
    #[test]
    fn no_input_panics(
        points in 1u64..=MAX_AMOUNT,
        price_minor in any::<u64>(),
        v in any_valuation(),
    ) {
        if let Ok(c) = points_to_minor(pts(points), &v) {
            prop_assert!((1..=MAX_AMOUNT).contains(&c.amount_minor));
        }
        if let Ok(p) = points_for_price(price_minor, &v) {
            prop_assert!(points_to_minor(p, &v).unwrap().amount_minor >= price_minor);
        }
        let _ = v.minor_per_point();
    }

    /// (e) Ratio arithmetic never panics, and what it returns is exact and in lowest terms.
    #[test]
    fn ratio_arithmetic_never_panics_and_is_exact(x in any_ratio(), y in any_ratio()) {
        let reduced = |r: Ratio| gcd(r.numer(), r.denom()) == 1 && r.denom() > 0;
        let (a, b) = (Big::new(x.numer()), Big::new(x.denom()));
        let (c, d) = (Big::new(y.numer()), Big::new(y.denom()));
        prop_assert_eq!(x.cmp(&y), a.mul(&d).cmp(&c.mul(&b)));
        if let Ok(r) = x.checked_mul(y) {
            prop_assert!(reduced(r));
            prop_assert_eq!(Big::new(r.numer()).mul(&b).mul(&d), a.mul(&c).times(r.denom()));
        }
        if let Ok(r) = x.checked_div(y) {
            prop_assert!(reduced(r));
            prop_assert_eq!(Big::new(r.numer()).mul(&b).mul(&c), a.mul(&d).times(r.denom()));
        }
        if let Ok(r) = x.checked_add(y) {
            prop_assert!(reduced(r));
            let sum = a.mul(&d).add(&c.mul(&b));
            prop_assert_eq!(Big::new(r.numer()).mul(&b).mul(&d), sum.times(r.denom()));
        }
    }
}

#[test]
fn refunds_follow_the_cumulative_rule() {
    // 1000 minor units for 3 points: shares of 333.33.. and 666.66..
    let r = |before, points, rule| refund_minor(1000, 3, before, points, rule);
    assert_eq!(r(0, 1, Rounding::HalfEven), Ok(333));
    assert_eq!(r(1, 1, Rounding::HalfEven), Ok(334)); // 667 in all
    assert_eq!(r(2, 1, Rounding::HalfEven), Ok(333)); // exactly 1000 in all
    assert_eq!(r(0, 1, Rounding::Up), Ok(334));
    assert_eq!(r(0, 2, Rounding::Down), Ok(666));
    assert_eq!(r(0, 3, Rounding::Down), Ok(1000));
    // A refund worth less than one minor unit is 0; the next catches up.
    assert_eq!(refund_minor(1, 10, 0, 1, Rounding::HalfEven), Ok(0));
    assert_eq!(refund_minor(1, 10, 1, 9, Rounding::HalfEven), Ok(1));
    // Never more than was committed, never nothing.
    assert_eq!(r(2, 2, Rounding::HalfEven), Err(ValueError::Overflow));
    assert_eq!(
        r(u64::MAX, 1, Rounding::HalfEven),
        Err(ValueError::Overflow)
    );
    assert_eq!(r(0, 0, Rounding::HalfEven), Err(ValueError::ZeroAmount));
    assert_eq!(
        refund_minor(5, 0, 0, 1, Rounding::HalfEven),
        Err(ValueError::ZeroAmount)
    );
}

proptest! {
    /// (f) Refunds never give back more than was committed: the parts of any split are each at
    /// most the points' share rounded up, sum to at most the amount, and a full refund in any
    /// number of parts gives back exactly the amount.
    #[test]
    fn refunds_never_exceed_and_a_full_refund_is_exact(
        amount in 1..=MAX_AMOUNT,
        total in 1u64..=1_000_000,
        cuts in proptest::collection::vec(1u64..=1_000_000, 1..12),
        rule in rounding(),
    ) {
        let mut refunded = 0u64;
        let mut given = 0u64;
        for c in cuts {
            let points = (c % total).max(1).min(total - refunded);
            if points == 0 {
                break;
            }
            let part = refund_minor(amount, total, refunded, points, rule).unwrap();
            let share = u128::from(amount) * u128::from(points);
            prop_assert!(u128::from(part) <= share.div_ceil(u128::from(total)) + 1);
            refunded += points;
            given += part;
            prop_assert!(given <= amount);
            prop_assert_eq!(
                u128::from(given),
                u128::from(round(&Ratio::new(u128::from(amount) * u128::from(refunded), u128::from(total)).unwrap(), rule).unwrap())
            );
        }
        if refunded < total {
            given += refund_minor(amount, total, refunded, total - refunded, rule).unwrap();
        }
        prop_assert_eq!(given, amount);
        prop_assert_eq!(
            refund_minor(amount, total, total, 1, rule),
            Err(ValueError::Overflow)
        );
    }
}
