//! Canonical encoding: RFC 8785 (JCS) JSON restricted to integers (spec/protocol.md §2).
//!
//! Invariant: bytes accepted by [`parse_canonical`] are exactly the bytes [`to_canonical`]
//! produces for the parsed value, so an entry is stored, hashed and verified verbatim and
//! never needs re-encoding.

use serde::Serialize;
use serde_json::Value;

use crate::types::MAX_AMOUNT;

pub mod jcs;

/// Errors of canonical decoding. Each says what is wrong with the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodingError {
    /// The input is larger than the limit for its kind.
    #[error("encoded value is {size} bytes, more than the limit of {max}")]
    TooLarge { size: usize, max: usize },
    /// The input is not JSON (or not UTF-8).
    #[error("not valid JSON: {0}")]
    Malformed(String),
    /// The input contains a number with a fraction or exponent.
    #[error("numbers must be integers")]
    NonInteger,
    /// The input contains an integer outside -(2^53-1)..=2^53-1.
    #[error("integer {0} is outside the range -(2^53-1)..=2^53-1")]
    OutOfRange(String),
    /// The input is valid JSON but not in RFC 8785 canonical form.
    #[error("not in canonical (RFC 8785) form")]
    NonCanonical,
}

/// Serializes `value` as RFC 8785 canonical JSON.
///
/// Panics only if `value`'s `Serialize` implementation fails, which the project's types never
/// do (they contain no maps with non-string keys and no floats).
pub fn to_canonical<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    jcs::to_vec(value).expect("project types always serialize")
}

/// Parses `bytes` as canonical JSON: integers only and within ±(2^53-1), and byte-for-byte
/// equal to its own canonical re-encoding. Refuses input longer than `size_max` bytes.
pub fn parse_canonical(bytes: &[u8], size_max: usize) -> Result<Value, EncodingError> {
    if bytes.len() > size_max {
        return Err(EncodingError::TooLarge {
            size: bytes.len(),
            max: size_max,
        });
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| EncodingError::Malformed(e.to_string()))?;
    check_numbers(&value)?;
    if to_canonical(&value) != bytes {
        return Err(EncodingError::NonCanonical);
    }
    Ok(value)
}

/// Parses JSON whose numbers are integers within ±(2^53-1), without the canonical-form check:
/// for a decoder that checks canonical form itself by re-encoding the typed value (which
/// refuses every input [`parse_canonical`] refuses as non-canonical, once, instead of twice).
pub fn parse_checked(bytes: &[u8], size_max: usize) -> Result<Value, EncodingError> {
    if bytes.len() > size_max {
        return Err(EncodingError::TooLarge {
            size: bytes.len(),
            max: size_max,
        });
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| EncodingError::Malformed(e.to_string()))?;
    check_numbers(&value)?;
    Ok(value)
}

/// Checks that every number in `value` is an integer within ±(2^53-1).
pub fn check_numbers(value: &Value) -> Result<(), EncodingError> {
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                if i.unsigned_abs() > MAX_AMOUNT {
                    return Err(EncodingError::OutOfRange(n.to_string()));
                }
            } else if n.as_u64().is_some() {
                return Err(EncodingError::OutOfRange(n.to_string()));
            } else {
                return Err(EncodingError::NonInteger);
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(check_numbers),
        Value::Object(map) => map.values().try_for_each(check_numbers),
        Value::Null | Value::Bool(_) | Value::String(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_sorts_keys_and_drops_whitespace() {
        let v: Value = serde_json::from_str(r#"{ "b": 1, "a": [true, null, "x\u00e9"] }"#).unwrap();
        assert_eq!(
            to_canonical(&v),
            "{\"a\":[true,null,\"xé\"],\"b\":1}".as_bytes()
        );
    }

    #[test]
    fn parse_refuses_floats_big_integers_and_non_canonical_input() {
        assert_eq!(
            parse_canonical(b"{\"a\":1.5}", 100),
            Err(EncodingError::NonInteger)
        );
        assert_eq!(
            parse_canonical(b"{\"a\":1e3}", 100),
            Err(EncodingError::NonInteger)
        );
        assert!(matches!(
            parse_canonical(b"{\"a\":9007199254740992}", 100),
            Err(EncodingError::OutOfRange(_))
        ));
        assert!(matches!(
            parse_canonical(b"{\"a\":-9007199254740992}", 100),
            Err(EncodingError::OutOfRange(_))
        ));
        assert!(matches!(
            parse_canonical(b"{\"a\":18446744073709551615}", 100),
            Err(EncodingError::OutOfRange(_))
        ));
        assert!(parse_canonical(b"{\"a\":9007199254740991}", 100).is_ok());
        assert_eq!(
            parse_canonical(b"{\"b\":1,\"a\":2}", 100),
            Err(EncodingError::NonCanonical)
        );
        assert_eq!(
            parse_canonical(b"{\"a\": 2}", 100),
            Err(EncodingError::NonCanonical)
        );
        // serde_json reads -0 as a float: refused either way.
        assert_eq!(
            parse_canonical(b"{\"a\":-0}", 100),
            Err(EncodingError::NonInteger)
        );
        assert_eq!(
            parse_canonical(b"{\"a\":1,\"a\":1}", 100),
            Err(EncodingError::NonCanonical)
        );
        assert_eq!(
            parse_canonical(b"{\"a\":\"\\u0041\"}", 100),
            Err(EncodingError::NonCanonical)
        );
        assert!(matches!(
            parse_canonical(b"{\"a\":", 100),
            Err(EncodingError::Malformed(_))
        ));
        assert!(matches!(
            parse_canonical(b"\xff", 100),
            Err(EncodingError::Malformed(_))
        ));
        assert_eq!(
            parse_canonical(b"{\"a\":1}", 3),
            Err(EncodingError::TooLarge { size: 7, max: 3 })
        );
    }
}
