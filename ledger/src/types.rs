//! Domain newtypes, parsed once at the boundary so inner code never re-validates.
//!
//! Invariants: every value of these types satisfies its documented syntax and range.
//! Amounts are integers no larger than [`MAX_AMOUNT`] (2^53 - 1, the largest integer every
//! JSON implementation represents exactly), so canonical JSON never needs floats.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest amount (points, minor units) an entry may carry: 2^53 - 1.
pub const MAX_AMOUNT: u64 = (1 << 53) - 1;
/// The largest log time in milliseconds an entry may carry (same bound as amounts).
pub const MAX_TIME_MS: u64 = MAX_AMOUNT;
/// Longest brand id, in bytes.
pub const BRAND_ID_LEN_MAX: usize = 64;
/// Longest member id, in bytes.
pub const MEMBER_ID_LEN_MAX: usize = 128;
/// Longest entry (idempotency) id, in bytes.
pub const ENTRY_ID_LEN_MAX: usize = 128;
/// Longest tier name, in bytes.
pub const TIER_NAME_LEN_MAX: usize = 32;
/// Longest free-text reason, in bytes.
pub const REASON_LEN_MAX: usize = 256;

/// Why a value could not be parsed into a domain type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {reason}")]
pub struct ParseError {
    /// Which kind of value was being parsed (`brand id`, `points`, ...).
    pub what: &'static str,
    /// Why it was refused.
    pub reason: String,
}

impl ParseError {
    fn new(what: &'static str, reason: impl Into<String>) -> Self {
        ParseError {
            what,
            reason: reason.into(),
        }
    }
}

fn check_chars(
    what: &'static str,
    s: &str,
    len_max: usize,
    allowed: impl Fn(char) -> bool,
) -> Result<(), ParseError> {
    if s.is_empty() {
        return Err(ParseError::new(what, "must not be empty"));
    }
    if s.len() > len_max {
        return Err(ParseError::new(
            what,
            format!("longer than {len_max} bytes"),
        ));
    }
    if let Some(c) = s.chars().find(|c| !allowed(*c)) {
        return Err(ParseError::new(
            what,
            format!("character {c:?} is not allowed"),
        ));
    }
    Ok(())
}

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal, $len:expr, $allowed:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                check_chars($what, s, $len, $allowed)?;
                Ok($name(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = ParseError;
            fn try_from(s: String) -> Result<Self, ParseError> {
                check_chars($what, &s, $len, $allowed)?;
                Ok($name(s))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $name::try_from(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')
}

string_newtype!(
    /// A brand's id: 1 to 64 of `a-z`, `0-9`, `-`, `.`. (The log origin is a separate key name.)
    BrandId,
    "brand id",
    BRAND_ID_LEN_MAX,
    |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'
);

string_newtype!(
    /// A pseudonymous member id chosen by the brand: 1 to 128 of `A-Z a-z 0-9 - _ . :`.
    /// The alphabet excludes `@`, `+` and spaces so that e-mail addresses and formatted
    /// phone numbers cannot enter the log by mistake.
    MemberId,
    "member id",
    MEMBER_ID_LEN_MAX,
    is_id_char
);

string_newtype!(
    /// A client-chosen idempotency id of a write: 1 to 128 of `A-Z a-z 0-9 - _ . :`.
    EntryId,
    "entry id",
    ENTRY_ID_LEN_MAX,
    is_id_char
);

string_newtype!(
    /// A tier's name in a tier policy: 1 to 32 of `A-Z a-z 0-9 - _ . :`.
    TierName,
    "tier name",
    TIER_NAME_LEN_MAX,
    is_id_char
);

macro_rules! int_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal, $min:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(u64);

        impl $name {
            /// The smallest valid value.
            pub const MIN: $name = $name($min);
            /// The largest valid value.
            pub const MAX: $name = $name($max);

            /// Wraps `v`, refusing values outside the type's range.
            pub fn new(v: u64) -> Result<Self, ParseError> {
                if !($min..=$max).contains(&v) {
                    return Err(ParseError::new(
                        $what,
                        format!("{v} is outside {}..={}", $min, $max),
                    ));
                }
                Ok($name(v))
            }

            /// The raw integer.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                let v: u64 = s
                    .parse()
                    .map_err(|_| ParseError::new($what, format!("{s:?} is not an integer")))?;
                $name::new(v)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_u64(self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v = u64::deserialize(d)?;
                $name::new(v).map_err(serde::de::Error::custom)
            }
        }
    };
}

int_newtype!(
    /// A positive number of points, 1 to 2^53 - 1. Zero-point writes are refused.
    Points,
    "points",
    1,
    MAX_AMOUNT
);

int_newtype!(
    /// A log time in milliseconds since the Unix epoch, 0 to 2^53 - 1.
    LogTime,
    "log time",
    0,
    MAX_TIME_MS
);

int_newtype!(
    /// A duration in milliseconds, 0 to 2^53 - 1.
    DurationMs,
    "duration",
    0,
    MAX_TIME_MS
);

int_newtype!(
    /// The position of an entry in a log, from 0.
    LogIndex,
    "log index",
    0,
    u64::MAX
);

impl LogTime {
    /// `self + d`, saturating at [`MAX_TIME_MS`] (a lot that expires "after the end of time"
    /// never expires).
    pub fn plus(self, d: DurationMs) -> LogTime {
        LogTime(self.0.saturating_add(d.0).min(MAX_TIME_MS))
    }

    /// `self - d`, saturating at 0.
    pub fn minus(self, d: DurationMs) -> LogTime {
        LogTime(self.0.saturating_sub(d.0))
    }
}

impl Points {
    /// `self + other`, or `None` when the sum exceeds [`MAX_AMOUNT`].
    pub fn checked_add(self, other: Points) -> Option<Points> {
        self.0
            .checked_add(other.0)
            .filter(|v| *v <= MAX_AMOUNT)
            .map(Points)
    }
}

/// An account of a brand's double-entry ledger.
///
/// Member accounts hold points; system accounts record where points came from and went to.
/// Invariant (conservation): the balances of all accounts of a brand sum to zero.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccountId {
    /// A member's points: `member:<id>`.
    Member(MemberId),
    /// Points created by earning: `issued`.
    Issued,
    /// Points created or destroyed by operator adjustments: `adjustments`.
    Adjustments,
    /// Points spent: `redeemed`.
    Redeemed,
    /// Points that reached their lot's expiry: `expired`.
    Expired,
    /// Points reserved by holds not yet posted or voided: `held`.
    Held,
    /// Points owed to or by a partner brand: `clearing:<brand>`.
    Clearing(BrandId),
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountId::Member(m) => write!(f, "member:{m}"),
            AccountId::Issued => f.write_str("issued"),
            AccountId::Adjustments => f.write_str("adjustments"),
            AccountId::Redeemed => f.write_str("redeemed"),
            AccountId::Expired => f.write_str("expired"),
            AccountId::Held => f.write_str("held"),
            AccountId::Clearing(b) => write!(f, "clearing:{b}"),
        }
    }
}

impl FromStr for AccountId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Ok(match s {
            "issued" => AccountId::Issued,
            "adjustments" => AccountId::Adjustments,
            "redeemed" => AccountId::Redeemed,
            "expired" => AccountId::Expired,
            "held" => AccountId::Held,
            _ => {
                if let Some(m) = s.strip_prefix("member:") {
                    AccountId::Member(m.parse()?)
                } else if let Some(b) = s.strip_prefix("clearing:") {
                    AccountId::Clearing(b.parse()?)
                } else {
                    return Err(ParseError::new("account", format!("unknown account {s:?}")));
                }
            }
        })
    }
}

impl Serialize for AccountId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AccountId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_id_refuses_email_and_phone_shapes() {
        assert!("alice@example.com".parse::<MemberId>().is_err());
        assert!("+44 20 7946 0958".parse::<MemberId>().is_err());
        assert!("m-8f3a9c".parse::<MemberId>().is_ok());
        assert!("".parse::<MemberId>().is_err());
        assert!("x".repeat(129).parse::<MemberId>().is_err());
    }

    #[test]
    fn points_refuse_zero_and_values_above_2_pow_53() {
        assert!(Points::new(0).is_err());
        assert!(Points::new(MAX_AMOUNT).is_ok());
        assert!(Points::new(MAX_AMOUNT + 1).is_err());
        assert_eq!(
            Points::new(MAX_AMOUNT)
                .unwrap()
                .checked_add(Points::new(1).unwrap()),
            None
        );
    }

    #[test]
    fn account_ids_round_trip_through_strings() {
        for s in ["issued", "member:m1", "clearing:brand-b", "held", "expired"] {
            let a: AccountId = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
        }
        assert!("member:".parse::<AccountId>().is_err());
        assert!("bank".parse::<AccountId>().is_err());
    }

    #[test]
    fn brand_id_is_lowercase() {
        assert!("Brand".parse::<BrandId>().is_err());
        assert!("brand-a.example".parse::<BrandId>().is_ok());
    }
}
