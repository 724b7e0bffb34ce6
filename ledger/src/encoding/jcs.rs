//! A serde serializer that writes RFC 8785 (JCS) canonical JSON directly from a typed value.
//!
//! Invariant: for every value the project serializes, [`to_vec`] returns the same bytes as
//! `serde_json_canonicalizer::to_vec` (the crate stays the reference in the tests, which
//! compare both on arbitrary JSON values and on every entry of the spec vectors). The crate
//! re-parses every object key as JSON and buffers every key and value on its own; this writer
//! writes into one buffer and reorders an object's members only when their keys were not
//! produced in order (a struct whose fields are declared sorted costs no reordering).
//!
//! Scope: what serde_json would write, with object members sorted by the UTF-16 code units of
//! their keys (RFC 8785 §3.2.3), strings escaped as ECMAScript's `JSON.stringify` does
//! (§3.2.2.2), and numbers as ECMAScript's `Number.prototype.toString` prints them (§3.2.2.3).
//! Integers within ±2^53 are printed here; any other number (none of the project's types has
//! one) is handed to the reference crate, which formats it through a double as JCS requires.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde::ser::{self, Serialize};

/// Why a value cannot be written as canonical JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JcsError {
    /// The value's `Serialize` implementation failed.
    #[error("{0}")]
    Custom(String),
    /// An object key that is not a string, a character or an integer.
    #[error("an object key must be a string")]
    KeyMustBeAString,
    /// Two members of one object have the same key.
    #[error("duplicate object key {0:?}")]
    DuplicateKey(String),
    /// A number JSON cannot hold (NaN or an infinity).
    #[error("{0}")]
    Number(String),
}

impl ser::Error for JcsError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        JcsError::Custom(msg.to_string())
    }
}

/// The largest integer magnitude printed digit for digit (beyond it, JCS prints the nearest
/// double, as ECMAScript does).
const EXACT_INTEGER_MAX: u64 = 1 << 53;

/// Serializes `value` as canonical JSON.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, JcsError> {
    let mut out = Vec::with_capacity(256);
    write(&mut out, value)?;
    Ok(out)
}

/// Appends `value` as canonical JSON to `out`. On an error `out` holds a partial value.
pub fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), JcsError> {
    value.serialize(&mut Writer { out })
}

/// Appends `s` as a JSON string: `"` and `\` escaped, control characters as `\b \t \n \f \r`
/// or `\u00xx` (lowercase hex), everything else as it is (RFC 8785 §3.2.2.2).
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[from..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(esc);
        }
        from = i + 1;
    }
    out.extend_from_slice(&bytes[from..]);
    out.push(b'"');
}

/// RFC 8785 §3.2.3: member order is the order of the keys' UTF-16 code units.
fn key_order(a: &str, b: &str) -> Ordering {
    // UTF-8 byte order is code point order, which differs from UTF-16 order only between a
    // character at or above U+E000 and one above U+FFFF; ASCII keys take the first branch.
    if a.is_ascii() && b.is_ascii() {
        a.as_bytes().cmp(b.as_bytes())
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

fn write_integer(out: &mut Vec<u8>, negative: bool, magnitude: u128) -> Result<(), JcsError> {
    if magnitude <= EXACT_INTEGER_MAX as u128 {
        if negative && magnitude != 0 {
            out.push(b'-');
        }
        let mut buf = itoa::Buffer::new();
        out.extend_from_slice(buf.format(magnitude as u64).as_bytes());
        Ok(())
    } else {
        // Through a double, exactly as the reference does.
        let v = if negative {
            -(magnitude as f64)
        } else {
            magnitude as f64
        };
        write_float(out, v)
    }
}

fn write_float(out: &mut Vec<u8>, v: f64) -> Result<(), JcsError> {
    let s = serde_json_canonicalizer::to_vec(&v).map_err(|e| JcsError::Number(e.to_string()))?;
    out.extend_from_slice(&s);
    Ok(())
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

/// One member of an object being written: its key and where `"key":value` lies in the output.
struct Member {
    key: Cow<'static, str>,
    start: usize,
    end: usize,
}

/// An object being written: members go straight into the output, comma-separated; `end`
/// reorders them if their keys did not arrive in order.
struct Object<'w, 'a> {
    w: &'w mut Writer<'a>,
    /// Where the first member starts (just after `{`).
    start: usize,
    members: Vec<Member>,
    in_order: bool,
    /// A map's key, between `serialize_key` and `serialize_value`.
    key: Option<Cow<'static, str>>,
    /// Bytes to write after the object's `}` (the closing brace of a variant's wrapper).
    close: &'static [u8],
}

impl<'w, 'a> Object<'w, 'a> {
    fn new(w: &'w mut Writer<'a>, len: Option<usize>, close: &'static [u8]) -> Self {
        w.out.push(b'{');
        let start = w.out.len();
        Object {
            w,
            start,
            members: Vec::with_capacity(len.unwrap_or(8)),
            in_order: true,
            key: None,
            close,
        }
    }

    fn member<T: Serialize + ?Sized>(
        &mut self,
        key: Cow<'static, str>,
        value: &T,
    ) -> Result<(), JcsError> {
        if let Some(last) = self.members.last() {
            if key_order(&last.key, &key) != Ordering::Less {
                self.in_order = false;
            }
            self.w.out.push(b',');
        }
        let start = self.w.out.len();
        write_str(self.w.out, &key);
        self.w.out.push(b':');
        value.serialize(&mut *self.w)?;
        let end = self.w.out.len();
        self.members.push(Member { key, start, end });
        Ok(())
    }

    fn finish(mut self) -> Result<(), JcsError> {
        if !self.in_order {
            self.members.sort_by(|a, b| key_order(&a.key, &b.key));
            if let Some(w) = self.members.windows(2).find(|w| w[0].key == w[1].key) {
                return Err(JcsError::DuplicateKey(w[0].key.to_string()));
            }
            let written = self.w.out.split_off(self.start);
            for (i, m) in self.members.iter().enumerate() {
                if i > 0 {
                    self.w.out.push(b',');
                }
                let (s, e) = (m.start - self.start, m.end - self.start);
                self.w.out.extend_from_slice(&written[s..e]);
            }
        }
        self.w.out.push(b'}');
        self.w.out.extend_from_slice(self.close);
        Ok(())
    }
}

/// An array being written.
struct Array<'w, 'a> {
    w: &'w mut Writer<'a>,
    first: bool,
    /// Bytes to write after the array's `]`.
    close: &'static [u8],
}

impl<'w, 'a> Array<'w, 'a> {
    fn new(w: &'w mut Writer<'a>, close: &'static [u8]) -> Self {
        w.out.push(b'[');
        Array {
            w,
            first: true,
            close,
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JcsError> {
        if !self.first {
            self.w.out.push(b',');
        }
        self.first = false;
        value.serialize(&mut *self.w)
    }

    fn finish(self) -> Result<(), JcsError> {
        self.w.out.push(b']');
        self.w.out.extend_from_slice(self.close);
        Ok(())
    }
}

impl<'w, 'a> ser::Serializer for &'w mut Writer<'a> {
    type Ok = ();
    type Error = JcsError;
    type SerializeSeq = Array<'w, 'a>;
    type SerializeTuple = Array<'w, 'a>;
    type SerializeTupleStruct = Array<'w, 'a>;
    type SerializeTupleVariant = Array<'w, 'a>;
    type SerializeMap = Object<'w, 'a>;
    type SerializeStruct = Object<'w, 'a>;
    type SerializeStructVariant = Object<'w, 'a>;

    fn serialize_bool(self, v: bool) -> Result<(), JcsError> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), JcsError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), JcsError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), JcsError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), JcsError> {
        write_integer(self.out, v < 0, v.unsigned_abs().into())
    }
    fn serialize_i128(self, v: i128) -> Result<(), JcsError> {
        write_integer(self.out, v < 0, v.unsigned_abs())
    }
    fn serialize_u8(self, v: u8) -> Result<(), JcsError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), JcsError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), JcsError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), JcsError> {
        write_integer(self.out, false, v.into())
    }
    fn serialize_u128(self, v: u128) -> Result<(), JcsError> {
        write_integer(self.out, false, v)
    }
    fn serialize_f32(self, v: f32) -> Result<(), JcsError> {
        write_float(self.out, v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<(), JcsError> {
        write_float(self.out, v)
    }
    fn serialize_char(self, v: char) -> Result<(), JcsError> {
        write_str(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), JcsError> {
        write_str(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), JcsError> {
        // As serde_json: an array of numbers.
        let mut a = Array::new(self, b"");
        for b in v {
            ser::SerializeSeq::serialize_element(&mut a, b)?;
        }
        a.finish()
    }
    fn serialize_none(self) -> Result<(), JcsError> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), JcsError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), JcsError> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), JcsError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), JcsError> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), JcsError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), JcsError> {
        let mut o = Object::new(self, Some(1), b"");
        o.member(Cow::Borrowed(variant), value)?;
        o.finish()
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Array<'w, 'a>, JcsError> {
        Ok(Array::new(self, b""))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Array<'w, 'a>, JcsError> {
        Ok(Array::new(self, b""))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Array<'w, 'a>, JcsError> {
        Ok(Array::new(self, b""))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Array<'w, 'a>, JcsError> {
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.push(b':');
        Ok(Array::new(self, b"}"))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Object<'w, 'a>, JcsError> {
        Ok(Object::new(self, len, b""))
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Object<'w, 'a>, JcsError> {
        Ok(Object::new(self, Some(len), b""))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Object<'w, 'a>, JcsError> {
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.push(b':');
        Ok(Object::new(self, Some(len), b"}"))
    }
}

impl ser::SerializeSeq for Array<'_, '_> {
    type Ok = ();
    type Error = JcsError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JcsError> {
        self.element(value)
    }
    fn end(self) -> Result<(), JcsError> {
        self.finish()
    }
}

impl ser::SerializeTuple for Array<'_, '_> {
    type Ok = ();
    type Error = JcsError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JcsError> {
        self.element(value)
    }
    fn end(self) -> Result<(), JcsError> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for Array<'_, '_> {
    type Ok = ();
    type Error = JcsError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JcsError> {
        self.element(value)
    }
    fn end(self) -> Result<(), JcsError> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for Array<'_, '_> {
    type Ok = ();
    type Error = JcsError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JcsError> {
        self.element(value)
    }
    fn end(self) -> Result<(), JcsError> {
        self.finish()
    }
}

impl ser::SerializeMap for Object<'_, '_> {
    type Ok = ();
    type Error = JcsError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), JcsError> {
        self.key = Some(Cow::Owned(key.serialize(KeyText)?));
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JcsError> {
        let key = self
            .key
            .take()
            .ok_or_else(|| JcsError::Custom("a map value without its key".into()))?;
        self.member(key, value)
    }
    fn end(self) -> Result<(), JcsError> {
        self.finish()
    }
}

impl ser::SerializeStruct for Object<'_, '_> {
    type Ok = ();
    type Error = JcsError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), JcsError> {
        self.member(Cow::Borrowed(key), value)
    }
    fn end(self) -> Result<(), JcsError> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for Object<'_, '_> {
    type Ok = ();
    type Error = JcsError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), JcsError> {
        self.member(Cow::Borrowed(key), value)
    }
    fn end(self) -> Result<(), JcsError> {
        self.finish()
    }
}

/// The text of an object key, as serde_json accepts keys: strings and characters as they are,
/// integers in decimal, unit variants by name; anything else is refused.
struct KeyText;

impl ser::Serializer for KeyText {
    type Ok = String;
    type Error = JcsError;
    type SerializeSeq = ser::Impossible<String, JcsError>;
    type SerializeTuple = ser::Impossible<String, JcsError>;
    type SerializeTupleStruct = ser::Impossible<String, JcsError>;
    type SerializeTupleVariant = ser::Impossible<String, JcsError>;
    type SerializeMap = ser::Impossible<String, JcsError>;
    type SerializeStruct = ser::Impossible<String, JcsError>;
    type SerializeStructVariant = ser::Impossible<String, JcsError>;

    fn serialize_str(self, v: &str) -> Result<String, JcsError> {
        Ok(v.to_owned())
    }
    fn serialize_char(self, v: char) -> Result<String, JcsError> {
        Ok(v.to_string())
    }
    fn serialize_i8(self, v: i8) -> Result<String, JcsError> {
        Ok(v.to_string())
    }
    fn serialize_i16(self, v: i16) -> Result<String, JcsError> {
        Ok(v.to_string())
    }
    fn serialize_i32(self, v: i32) -> Result<String, JcsError> {
        Ok(v.to_string())
    }
    fn serialize_i64(self, v: i64) -> Result<String, JcsError> {
        Ok(v.to_string())
    }
    fn serialize_i128(self, v: i128) -> Result<String, JcsError> {
        Ok(v.to_string())
    }
    fn serialize_u8(self, v: u8) -> Result<String, JcsError> {
        Ok(v.to_string())
    }
    fn serialize_u16(self, v: u16) -> Result<String, JcsError> {
        Ok(v.to_string())
    }
    fn serialize_u32(self, v: u32) -> Result<String, JcsError> {
        Ok(v.to_string())
    }
    fn serialize_u64(self, v: u64) -> Result<String, JcsError> {
        Ok(v.to_string())
    }
    fn serialize_u128(self, v: u128) -> Result<String, JcsError> {
        Ok(v.to_string())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<String, JcsError> {
        Ok(variant.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<String, JcsError> {
        value.serialize(self)
    }
    fn serialize_bool(self, _v: bool) -> Result<String, JcsError> {
        Err(JcsError::KeyMustBeAString)
    }
    fn serialize_f32(self, _v: f32) -> Result<String, JcsError> {
        Err(JcsError::KeyMustBeAString)
    }
    fn serialize_f64(self, _v: f64) -> Result<String, JcsError> {
        Err(JcsError::KeyMustBeAString)
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<String, JcsError> {
        Err(JcsError::KeyMustBeAString)
    }
    fn serialize_none(self) -> Result<String, JcsError> {
        Err(JcsError::KeyMustBeAString)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<String, JcsError> {
        Err(JcsError::KeyMustBeAString)
    }
    fn serialize_unit(self) -> Result<String, JcsError> {
        Err(JcsError::KeyMustBeAString)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<String, JcsError> {
        Err(JcsError::KeyMustBeAString)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<String, JcsError> {
        Err(JcsError::KeyMustBeAString)
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, JcsError> {
        Err(JcsError::KeyMustBeAString)
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, JcsError> {
        Err(JcsError::KeyMustBeAString)
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, JcsError> {
        Err(JcsError::KeyMustBeAString)
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, JcsError> {
        Err(JcsError::KeyMustBeAString)
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, JcsError> {
        Err(JcsError::KeyMustBeAString)
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, JcsError> {
        Err(JcsError::KeyMustBeAString)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, JcsError> {
        Err(JcsError::KeyMustBeAString)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Serialize;
    use serde_json::{json, Value};

    fn reference(v: &Value) -> Vec<u8> {
        serde_json_canonicalizer::to_vec(v).unwrap()
    }

    #[test]
    fn objects_are_sorted_by_utf16_code_units_at_every_depth() {
        let v =
            json!({"b": 1, "a": [{"z": true, "y": null}], "\u{e000}": 1, "\u{10000}": 2, "": 0});
        assert_eq!(to_vec(&v).unwrap(), reference(&v));
        // U+10000 (surrogates D800 DC00) sorts before U+E000 in UTF-16, after it in UTF-8.
        let text = String::from_utf8(to_vec(&v).unwrap()).unwrap();
        assert!(text.find('\u{10000}').unwrap() < text.find('\u{e000}').unwrap());
    }

    #[test]
    fn strings_escape_as_json_stringify_does() {
        let v = json!("q\"b\\s/\u{8}\u{c}\n\r\t\u{1}\u{1f}\u{7f}\u{2028}é😀");
        assert_eq!(to_vec(&v).unwrap(), reference(&v));
        assert_eq!(
            to_vec("\u{1}\u{1f}").unwrap(),
            b"\"\\u0001\\u001f\"".to_vec()
        );
    }

    #[test]
    fn integers_print_exactly_and_large_ones_as_doubles() {
        for n in [
            0i64,
            -1,
            1,
            (1 << 53) - 1,
            -(1 << 53) + 1,
            1 << 53,
            (1 << 53) + 1,
        ] {
            assert_eq!(to_vec(&n).unwrap(), reference(&json!(n)), "{n}");
        }
        assert_eq!(to_vec(&u64::MAX).unwrap(), reference(&json!(u64::MAX)));
        assert_eq!(to_vec(&1.5f64).unwrap(), reference(&json!(1.5)));
        assert!(to_vec(&f64::NAN).is_err());
    }

    #[derive(Serialize)]
    struct Unsorted {
        zeta: u8,
        alpha: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        mid: Option<u8>,
        inner: Inner,
    }

    #[derive(Serialize)]
    enum Inner {
        Struct { y: u8, x: u8 },
        Tuple(u8, u8),
    }

    #[test]
    fn typed_values_write_as_their_json_value_does() {
        let t = Unsorted {
            zeta: 1,
            alpha: None,
            mid: None,
            inner: Inner::Struct { y: 1, x: 2 },
        };
        assert_eq!(
            to_vec(&t).unwrap(),
            reference(&serde_json::to_value(&t).unwrap())
        );
        let t = Unsorted {
            zeta: 1,
            alpha: Some("a"),
            mid: Some(3),
            inner: Inner::Tuple(1, 2),
        };
        assert_eq!(
            to_vec(&t).unwrap(),
            reference(&serde_json::to_value(&t).unwrap())
        );
        let mut m = std::collections::HashMap::new();
        m.insert(10u32, "ten");
        m.insert(9u32, "nine");
        assert_eq!(to_vec(&m).unwrap(), br#"{"10":"ten","9":"nine"}"#.to_vec());
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-(1i64 << 53)..=(1i64 << 53)).prop_map(|n| json!(n)),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_json_value_writes_as_the_reference_crate_writes_it(v in arb_value()) {
            prop_assert_eq!(to_vec(&v).unwrap(), reference(&v));
        }
    }
}
