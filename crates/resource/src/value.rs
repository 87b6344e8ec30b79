//! `Value`: the one dynamic value type of mqdb records — the union of the JSON,
//! CBOR and MessagePack data models — and how it maps onto each format.
//!
//! Integers keep their full range (`Int` for i64, `UInt` only above
//! `i64::MAX`), floats are f64, byte strings are kept as bytes, and maps keep
//! their key order. Map keys are strings. Nothing here knows about storage,
//! MQTT or HTTP.
//!
//! This module owns the value model, its ordering ([`Value::compare`],
//! [`Value::index_key`]), its `serde` impls and the JSON codec (which is
//! built on the same serde visitor). [`crate::format`] owns the CBOR and
//! MessagePack codecs, picks the codec for a payload, and documents the
//! mapping onto each format (JSON byte strings included). Every decoder
//! limits nesting to [`MAX_DEPTH`] and never reserves more than the input can
//! fill, so hostile input costs at most memory proportional to its length.

use std::cmp::Ordering;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use indexmap::IndexMap;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Deserializer, Serialize};

use crate::format::FormatError;

/// An ordered map of attribute name to value: a structured record.
pub type Map = IndexMap<String, Value>;

/// A dynamic value.
///
/// `PartialEq` is structural (`Int(1) != Float(1.0)`, `NaN != NaN`); use
/// [`Value::compare`] for the numeric order queries use. There is no
/// `PartialOrd`, because it could not agree with that `PartialEq`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// null / nil.
    Null,
    /// true / false.
    Bool(bool),
    /// An integer in i64 range (every integer <= i64::MAX).
    Int(i64),
    /// An integer above i64::MAX (only then: `UInt(5)` is never produced).
    UInt(u64),
    /// A 64-bit float.
    Float(f64),
    /// A UTF-8 string.
    String(String),
    /// A byte string.
    Bytes(Bytes),
    /// An array.
    Array(Vec<Value>),
    /// A map with string keys, in insertion order.
    Map(Map),
}

/// The deepest nesting of arrays and maps any decoder accepts (serde_json's
/// default limit; the other decoders use the same so that every format can
/// carry what every other one can).
pub const MAX_DEPTH: usize = 128;

impl Value {
    /// The name of this value's type: "null", "bool", "int" (also for
    /// `UInt`), "float", "string", "bytes", "array" or "map".
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::UInt(_) => "int",
            Value::Float(_) => "float",
            Value::String(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
        }
    }

    /// Whether this is `Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The map, if this is a map.
    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The map, mutably, if this is a map.
    pub fn as_map_mut(&mut self) -> Option<&mut Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The attribute `key` of a map; `None` if absent or if this is not a map.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_map()?.get(key)
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes, if this is a byte string.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The bool, if this is a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The integer, if this is an integer that fits in i64.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The integer, if this is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Value::Int(i) => u64::try_from(*i).ok(),
            Value::UInt(u) => Some(*u),
            _ => None,
        }
    }

    /// Any number as f64 (integers beyond 2^53 are rounded).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::UInt(u) => Some(*u as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// An integer from an i128, normalised (`Int` when it fits, else `UInt`);
    /// `None` outside `i64::MIN..=u64::MAX`.
    pub fn from_i128(n: i128) -> Option<Value> {
        match i64::try_from(n) {
            Ok(i) => Some(Value::Int(i)),
            Err(_) => u64::try_from(n).ok().map(Value::UInt),
        }
    }

    fn number(&self) -> Option<Number> {
        match self {
            Value::Int(i) => Some(Number::Int(i128::from(*i))),
            Value::UInt(u) => Some(Number::Int(i128::from(*u))),
            Value::Float(f) => Some(Number::Float(*f)),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------- From

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Value {
            fn from(n: $t) -> Self {
                Value::Int(i64::from(n))
            }
        }
    )*};
}
from_int!(i8, i16, i32, i64, u8, u16, u32);

impl From<u64> for Value {
    /// `Int` up to `i64::MAX`, `UInt` above.
    fn from(n: u64) -> Self {
        i64::try_from(n).map_or(Value::UInt(n), Value::Int)
    }
}

impl From<usize> for Value {
    fn from(n: usize) -> Self {
        Value::from(n as u64)
    }
}

impl From<isize> for Value {
    fn from(n: isize) -> Self {
        Value::Int(n as i64)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}

impl From<f32> for Value {
    fn from(f: f32) -> Self {
        Value::Float(f64::from(f))
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<Bytes> for Value {
    fn from(b: Bytes) -> Self {
        Value::Bytes(b)
    }
}

/// A `Vec<u8>` is a byte string, not an array of numbers.
impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Self {
        Value::Bytes(Bytes::from(b))
    }
}

impl From<&[u8]> for Value {
    fn from(b: &[u8]) -> Self {
        Value::Bytes(Bytes::copy_from_slice(b))
    }
}

impl From<Vec<Value>> for Value {
    fn from(a: Vec<Value>) -> Self {
        Value::Array(a)
    }
}

impl From<Map> for Value {
    fn from(m: Map) -> Self {
        Value::Map(m)
    }
}

/// `None` is `Null`.
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

impl<K: Into<String>> FromIterator<(K, Value)> for Value {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Self {
        Value::Map(iter.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

// ---------------------------------------------------------------- ordering

/// A number widened so that every `Int`/`UInt` is exact.
#[derive(Clone, Copy)]
enum Number {
    Int(i128),
    Float(f64),
}

impl Value {
    /// Compares two values the way queries and sorting do: numbers across
    /// `Int`/`UInt`/`Float` by exact numeric value (so `Int(1) == Float(1.0)`
    /// and `UInt(u64::MAX) > Float(1.8e19)`), strings by their UTF-8 bytes
    /// (= code point order), byte strings bytewise, `false < true`,
    /// `Null == Null`. Anything else (mixed types, arrays, maps, NaN) is
    /// `None`: not comparable.
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::Null, Value::Null) => Some(Ordering::Equal),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
            (Value::Bytes(a), Value::Bytes(b)) => Some(a.cmp(b)),
            _ => match (self.number()?, other.number()?) {
                (Number::Int(a), Number::Int(b)) => Some(a.cmp(&b)),
                (Number::Float(a), Number::Float(b)) => a.partial_cmp(&b),
                (Number::Int(a), Number::Float(b)) => cmp_int_float(a, b),
                (Number::Float(a), Number::Int(b)) => cmp_int_float(b, a).map(Ordering::reverse),
            },
        }
    }

    /// An order-preserving byte key for secondary indexes: for any two values
    /// with keys, `a.index_key().cmp(&b.index_key())` equals `a.compare(&b)`
    /// whenever that is `Some` (and keys are equal exactly when `compare` says
    /// `Equal`). `None` for arrays, maps, byte strings and NaN: such values are
    /// not indexed. Values of different types order by type: null < bool <
    /// number < string.
    ///
    /// This is an on-disk format: changing it needs an index version bump.
    ///
    /// Layout (first byte is the type tag):
    /// - null: `01`
    /// - bool: `02`, then `00` / `01`
    /// - number: `03`, then 8 bytes: the value rounded to the nearest f64
    ///   (`-0.0` as `+0.0`), its bits with the sign bit flipped when positive
    ///   and all bits flipped when negative (big-endian, so memcmp order is
    ///   float order); then 2 bytes: the exact integer minus that f64, as a
    ///   big-endian i16 with the sign bit flipped (always 0 for floats).
    ///   Rounding to nearest is monotonic, so `a < b` implies
    ///   `f64(a) <= f64(b)`; when the f64s tie, `a - f64(a) < b - f64(b)`.
    ///   An integer below 2^64 is at most 2^10 from its f64, so the
    ///   difference fits in an i16. Fixed width: a number key is never a
    ///   prefix of another.
    /// - string: `04`, then the UTF-8 bytes with each `00` written as
    ///   `00 FF`, then `00 00`. A string that is a prefix of another ends
    ///   with `00 00` where the longer one has a byte > `00` or `00 FF`, so
    ///   it sorts first; otherwise the first differing byte decides, as in the
    ///   raw strings.
    pub fn index_key(&self) -> Option<Vec<u8>> {
        match self {
            Value::Null => Some(vec![KEY_NULL]),
            Value::Bool(b) => Some(vec![KEY_BOOL, u8::from(*b)]),
            Value::Int(i) => Some(int_key(i128::from(*i))),
            Value::UInt(u) => Some(int_key(i128::from(*u))),
            Value::Float(f) if f.is_nan() => None,
            Value::Float(f) => Some(number_key(*f, 0)),
            Value::String(s) => {
                let mut key = Vec::with_capacity(s.len() + 3);
                key.push(KEY_STRING);
                for &b in s.as_bytes() {
                    key.push(b);
                    if b == 0 {
                        key.push(0xFF);
                    }
                }
                key.extend_from_slice(&[0, 0]);
                Some(key)
            }
            Value::Bytes(_) | Value::Array(_) | Value::Map(_) => None,
        }
    }
}

const KEY_NULL: u8 = 0x01;
const KEY_BOOL: u8 = 0x02;
const KEY_NUMBER: u8 = 0x03;
const KEY_STRING: u8 = 0x04;

/// 2^64 as f64 (exact): above every integer a `Value` holds.
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

/// Exact comparison of an integer (in `i64::MIN..=u64::MAX`) with a float.
fn cmp_int_float(i: i128, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    if f >= TWO_POW_64 {
        return Some(Ordering::Less);
    }
    if f < -TWO_POW_64 {
        return Some(Ordering::Greater);
    }
    // |f| <= 2^64 here, so its integer part converts to i128 exactly.
    let whole = f.trunc();
    Some(i.cmp(&(whole as i128)).then_with(|| {
        // Same integer part: the fraction of f decides.
        if f > whole {
            Ordering::Less
        } else if f < whole {
            Ordering::Greater
        } else {
            Ordering::Equal
        }
    }))
}

fn int_key(n: i128) -> Vec<u8> {
    let rounded = n as f64; // round to nearest, ties to even
    let diff = n - rounded as i128; // exact: |rounded| <= 2^64
    debug_assert!(diff.unsigned_abs() <= 1 << 10);
    number_key(rounded, diff as i16)
}

fn number_key(f: f64, diff: i16) -> Vec<u8> {
    let f = if f == 0.0 { 0.0 } else { f }; // -0.0 == 0.0
    let bits = f.to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits | 1 << 63
    };
    let mut key = Vec::with_capacity(11);
    key.push(KEY_NUMBER);
    key.extend_from_slice(&ordered.to_be_bytes());
    key.extend_from_slice(&((diff as u16) ^ 0x8000).to_be_bytes());
    key
}

// ---------------------------------------------------------------- serde

/// Maps in order; byte strings through `serialize_bytes` (a byte string in
/// CBOR and MessagePack; serde_json would write an array of numbers, so
/// [`Format::Json`](crate::format::Format::Json) maps them to `{"$bytes": ..}`
/// on its own).
impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::UInt(u) => s.serialize_u64(*u),
            Value::Float(f) => s.serialize_f64(*f),
            Value::String(v) => s.serialize_str(v),
            Value::Bytes(b) => s.serialize_bytes(b),
            Value::Array(a) => s.collect_seq(a),
            Value::Map(m) => s.collect_map(m),
        }
    }
}

/// Generic decoding from any serde format, normalising integers. Prefer
/// [`crate::format::Format::decode`] for wire data: it is exact where
/// serde_json's default float parsing is not, and maps `{"$bytes": ..}`.
impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor { json: None })
    }
}

/// Builds a `Value` from serde events. With `json` set it also applies the
/// JSON-only rules: exact floats and the `$bytes` object.
struct ValueVisitor<'t, 'a> {
    json: Option<&'t mut JsonNumbers<'a>>,
}

impl<'de> DeserializeSeed<'de> for ValueVisitor<'_, '_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'a> ValueVisitor<'_, 'a> {
    fn child(&mut self) -> ValueVisitor<'_, 'a> {
        ValueVisitor {
            json: self.json.as_deref_mut(),
        }
    }
}

impl<'de> Visitor<'de> for ValueVisitor<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        if let Some(json) = self.json {
            json.integer(i128::from(n));
        }
        Ok(Value::Int(n))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        if let Some(json) = self.json {
            json.integer(i128::from(n));
        }
        Ok(Value::from(n))
    }

    fn visit_i128<E: de::Error>(self, n: i128) -> Result<Value, E> {
        Value::from_i128(n).ok_or_else(|| E::custom(format!("integer {n} is out of range")))
    }

    fn visit_u128<E: de::Error>(self, n: u128) -> Result<Value, E> {
        let out_of_range = || E::custom(format!("integer {n} is out of range"));
        Value::from_i128(i128::try_from(n).map_err(|_| out_of_range())?).ok_or_else(out_of_range)
    }

    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Float(match self.json {
            Some(json) => json.float(f),
            None => f,
        }))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_bytes<E>(self, b: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(Bytes::copy_from_slice(b)))
    }

    fn visit_byte_buf<E>(self, b: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bytes(Bytes::from(b)))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        // The size hint comes from the input: trust it only a little.
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(self.child())? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::with_capacity(map.size_hint().unwrap_or(0).min(1024));
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self.child())?;
            out.insert(key, value); // a repeated key: the last value wins
        }
        if self.json.is_some() {
            if let Some(bytes) = json_bytes_object(&out) {
                return Ok(Value::Bytes(bytes));
            }
        }
        Ok(Value::Map(out))
    }
}

// ---------------------------------------------------------------- JSON

/// The JSON key of the one-key object that carries a byte string.
const JSON_BYTES_KEY: &str = "$bytes";

/// `{"$bytes": "<standard base64>"}` -> the bytes; anything else -> `None`.
fn json_bytes_object(map: &Map) -> Option<Bytes> {
    if map.len() != 1 {
        return None;
    }
    let text = map.get(JSON_BYTES_KEY)?.as_str()?;
    BASE64.decode(text).ok().map(Bytes::from)
}

/// `Value` as JSON: byte strings as `{"$bytes": base64}`; non-finite floats
/// become `null` (serde_json's rule).
struct JsonRepr<'v>(&'v Value);

impl Serialize for JsonRepr<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Bytes(b) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry(JSON_BYTES_KEY, &BASE64.encode(b))?;
                map.end()
            }
            Value::Array(a) => s.collect_seq(a.iter().map(JsonRepr)),
            Value::Map(m) => s.collect_map(m.iter().map(|(k, v)| (k, JsonRepr(v)))),
            other => other.serialize(s),
        }
    }
}

pub(crate) fn encode_json(value: &Value) -> Vec<u8> {
    // Writing to a Vec cannot fail and every map key is a string, so
    // serde_json has nothing to reject.
    serde_json::to_vec(&JsonRepr(value)).expect("JSON encoding of a Value is infallible")
}

pub(crate) fn decode_json(input: &[u8]) -> Result<Value, FormatError> {
    let mut numbers = JsonNumbers::new(input);
    let mut de = serde_json::Deserializer::from_slice(input);
    let value = ValueVisitor {
        json: Some(&mut numbers),
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    value.map_err(FormatError::from_json)
}

/// The number tokens of a JSON text, read in step with serde_json.
///
/// serde_json (without its `float_roundtrip` feature, which this workspace
/// does not enable) may round a float's last bit wrongly, so each float it
/// reports is re-parsed from its token with std's correctly rounded parser.
/// serde_json reports every number exactly once, in document order, so the
/// n-th visited number is the n-th token outside strings starting with `-` or
/// a digit (nothing else in JSON does). Integers are checked against their
/// token; if the two ever disagree we stop substituting.
struct JsonNumbers<'a> {
    text: &'a [u8],
    pos: usize,
    in_step: bool,
}

impl<'a> JsonNumbers<'a> {
    fn new(text: &'a [u8]) -> Self {
        JsonNumbers {
            text,
            pos: 0,
            in_step: true,
        }
    }

    fn next_token(&mut self) -> Option<&'a str> {
        let text = self.text;
        let mut i = self.pos;
        while i < text.len() {
            match text[i] {
                b'"' => {
                    i += 1;
                    while i < text.len() {
                        match text[i] {
                            b'\\' => i += 2,
                            b'"' => break,
                            _ => i += 1,
                        }
                    }
                    i += 1;
                }
                b'-' | b'0'..=b'9' => {
                    let start = i;
                    while i < text.len()
                        && matches!(text[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                    {
                        i += 1;
                    }
                    self.pos = i;
                    return std::str::from_utf8(&text[start..i]).ok();
                }
                _ => i += 1,
            }
        }
        self.pos = i;
        None
    }

    fn integer(&mut self, n: i128) {
        let token = self.next_token();
        if token.and_then(|t| t.parse::<i128>().ok()) != Some(n) {
            self.in_step = false;
        }
    }

    fn float(&mut self, approx: f64) -> f64 {
        let token = self.next_token();
        if !self.in_step {
            return approx;
        }
        match token.and_then(|t| t.parse::<f64>().ok()) {
            // serde_json is off by at most a few ulps; anything further
            // means we lost step.
            Some(exact) if (exact - approx).abs() <= approx.abs() * 1e-9 + 1e-300 => exact,
            _ => {
                self.in_step = false;
                approx
            }
        }
    }
}
