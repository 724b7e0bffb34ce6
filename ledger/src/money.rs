//! Fiat currencies (ISO 4217) and exact decimals for rate cards (spec/protocol.md §3.4).
//!
//! Invariants: a [`Currency`] is always a known ISO 4217 code with a defined minor unit; a
//! [`Decimal`] is always positive and in its one canonical string form, so two equal values
//! always encode to the same bytes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::types::ParseError;

/// ISO 4217 codes this implementation accepts, with their minor units (digits after the
/// decimal point). Codes without a minor unit (precious metals, testing codes, XDR, ...) are
/// deliberately absent: an amount in them cannot be held in integer minor units.
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EGP", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("HKD", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("MAD", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PEN", 2),
    ("PHP", 2),
    ("PLN", 2),
    ("QAR", 2),
    ("RON", 2),
    ("SAR", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("THB", 2),
    ("TND", 3),
    ("TRY", 2),
    ("TWD", 2),
    ("UAH", 2),
    ("USD", 2),
    ("VND", 0),
    ("ZAR", 2),
];

/// A fiat currency with a minor unit, by its ISO 4217 code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Currency {
    code: [u8; 3],
    minor_unit: u8,
}

impl Currency {
    /// The three-letter code.
    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.code).unwrap_or("???")
    }

    /// Number of digits after the decimal point of the currency's minor unit.
    pub fn minor_unit(&self) -> u8 {
        self.minor_unit
    }
}

impl FromStr for Currency {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        match CURRENCIES.iter().find(|(c, _)| *c == s) {
            Some((c, m)) => {
                let b = c.as_bytes();
                Ok(Currency {
                    code: [b[0], b[1], b[2]],
                    minor_unit: *m,
                })
            }
            None => Err(ParseError {
                what: "currency",
                reason: format!("{s:?} is not an ISO 4217 currency with a minor unit"),
            }),
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Most digits after the decimal point of a [`Decimal`].
pub const DECIMAL_SCALE_MAX: u8 = 18;

/// A positive exact decimal `mantissa / 10^scale`, written as a string like `"0.0125"`.
///
/// Canonical form: no sign, no leading zeros in the integer part (a lone `0` before the point
/// is required for values below one), no trailing zeros after the point, no point without
/// digits after it. At most 18 digits after the point; the mantissa fits in a `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimal {
    mantissa: u64,
    scale: u8,
}

impl Decimal {
    /// The integer `m` such that the value is `m / 10^scale`.
    pub fn mantissa(&self) -> u64 {
        self.mantissa
    }

    /// The number of digits after the point.
    pub fn scale(&self) -> u8 {
        self.scale
    }
}

impl FromStr for Decimal {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let bad = |reason: &str| ParseError {
            what: "decimal",
            reason: format!("{s:?}: {reason}"),
        };
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (s, None),
        };
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the integer part must be digits"));
        }
        if int.len() > 1 && int.starts_with('0') {
            return Err(bad("leading zeros are not canonical"));
        }
        let frac = frac.unwrap_or("");
        if s.contains('.') && frac.is_empty() {
            return Err(bad("a point must be followed by digits"));
        }
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the fraction must be digits"));
        }
        if frac.ends_with('0') {
            return Err(bad("trailing zeros are not canonical"));
        }
        if frac.len() > DECIMAL_SCALE_MAX as usize {
            return Err(bad("more than 18 digits after the point"));
        }
        let digits = format!("{int}{frac}");
        let mantissa: u64 = digits
            .parse()
            .map_err(|_| bad("too many significant digits"))?;
        if mantissa == 0 {
            return Err(bad("must be greater than zero"));
        }
        Ok(Decimal {
            mantissa,
            scale: frac.len() as u8,
        })
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.mantissa.to_string();
        let scale = self.scale as usize;
        if scale == 0 {
            return f.write_str(&digits);
        }
        if digits.len() > scale {
            let (i, fr) = digits.split_at(digits.len() - scale);
            write!(f, "{i}.{fr}")
        } else {
            write!(f, "0.{}{}", "0".repeat(scale - digits.len()), digits)
        }
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn currencies_without_minor_unit_are_refused() {
        assert_eq!("EUR".parse::<Currency>().unwrap().minor_unit(), 2);
        assert_eq!("JPY".parse::<Currency>().unwrap().minor_unit(), 0);
        assert_eq!("KWD".parse::<Currency>().unwrap().minor_unit(), 3);
        assert!("XAU".parse::<Currency>().is_err());
        assert!("eur".parse::<Currency>().is_err());
    }

    #[test]
    fn decimals_accept_only_the_canonical_form() {
        for ok in ["0.0125", "1", "12.5", "0.000000000000000001"] {
            assert_eq!(ok.parse::<Decimal>().unwrap().to_string(), ok);
        }
        for bad in [
            "",
            "01",
            "1.",
            ".5",
            "1.50",
            "-1",
            "+1",
            "0",
            "0.0",
            "1e3",
            "1.0000000000000000001",
            " 1",
        ] {
            assert!(bad.parse::<Decimal>().is_err(), "{bad:?} should be refused");
        }
    }

    proptest! {
        #[test]
        fn decimal_display_round_trips(m in 1u64..u64::MAX, scale in 0u8..=18) {
            // Normalise away trailing zeros to obtain the canonical value first.
            let (mut m, mut scale) = (m, scale);
            while scale > 0 && m % 10 == 0 { m /= 10; scale -= 1; }
            let d = Decimal { mantissa: m, scale };
            let s = d.to_string();
            prop_assert_eq!(s.parse::<Decimal>().unwrap(), d);
        }
    }
}
