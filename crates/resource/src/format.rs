//! Wire formats of records: which [`Format`] a payload is in (content type,
//! HTTP `Accept`, detection of untyped MQTT payloads — SPEC §3), encoding and
//! decoding a [`Value`] in it, and CSV output for collections (SPEC §4).
//!
//! Pure functions over bytes and values: nothing here knows about MQTT
//! packets, HTTP requests or storage. The CBOR and MessagePack codecs live
//! here; the JSON codec lives with the serde impls in [`crate::value`].
//!
//! # Mapping
//!
//! | `Value` | JSON | CBOR | MessagePack |
//! |---|---|---|---|
//! | `Null` | `null` | null (undefined reads as null) | nil |
//! | `Bool` | `true`/`false` | true/false | true/false |
//! | `Int`, `UInt` | number | integer (major 0/1) | int/uint, smallest form |
//! | `Float` | number (`NaN`, ±inf: `null`) | float, smallest lossless width | float 64 (float 32 is read) |
//! | `String` | string | text string | str |
//! | `Bytes` | `{"$bytes": "<base64>"}` | byte string | bin |
//! | `Array` | array | array | array |
//! | `Map` | object | map with text keys | map with str keys |
//!
//! **Byte strings in JSON.** JSON has none, so a byte string is written as an
//! object with the single key `"$bytes"` whose value is the standard base64
//! (RFC 4648, with padding) of the bytes, e.g. `{"$bytes": "AAE="}`. Reading
//! JSON, an object with exactly that one key and a valid base64 string value
//! is a byte string again, so bytes round-trip through JSON; it is also how a
//! JSON client writes bytes. (An object with any other shape — more keys, a
//! value that is not valid base64 — stays a map.)
//!
//! Reading: JSON floats are exact (correctly rounded), and JSON integers
//! beyond the 64-bit range become floats; CBOR tags are dropped (the tagged
//! item is kept), and integers outside `i64::MIN..=u64::MAX` are an error;
//! MessagePack extension types are an error; map keys must be strings in
//! every format; a repeated key keeps its first position and its last value;
//! nesting deeper than [`crate::value::MAX_DEPTH`] is an error, and so is
//! anything after the one value.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;

use crate::value::{self, MAX_DEPTH, Map, Value};

/// A wire format for structured values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// JSON (RFC 8259), `application/json`. The default.
    #[default]
    Json,
    /// CBOR (RFC 8949), `application/cbor`.
    Cbor,
    /// MessagePack, `application/x-msgpack`.
    MsgPack,
}

impl Format {
    /// Every format, in the server's order of preference.
    pub const ALL: [Format; 3] = [Format::Json, Format::Cbor, Format::MsgPack];

    /// The content type this format is sent with.
    pub fn content_type(self) -> &'static str {
        self.media_types()[0]
    }

    /// Every media type accepted for this format (lowercase, the
    /// [`content_type`](Self::content_type) first).
    pub fn media_types(self) -> &'static [&'static str] {
        match self {
            Format::Json => &["application/json", "text/json"],
            Format::Cbor => &["application/cbor"],
            Format::MsgPack => &[
                "application/x-msgpack",
                "application/msgpack",
                "application/vnd.msgpack",
            ],
        }
    }

    /// A short human name: "JSON", "CBOR", "MessagePack".
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::Cbor => "CBOR",
            Format::MsgPack => "MessagePack",
        }
    }

    /// The format of a `Content-Type` value (HTTP header, MQTT v5 property):
    /// case-insensitive, parameters ignored (`application/json;
    /// charset=utf-8`), aliases accepted (`text/json`, `application/msgpack`,
    /// `application/vnd.msgpack`), and so are the structured-syntax suffixes
    /// `+json` and `+cbor` (`application/ld+json`). `None` for anything else.
    pub fn from_content_type(content_type: &str) -> Option<Format> {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if let Some(format) = Self::ALL.into_iter().find(|f| {
            f.media_types()
                .iter()
                .any(|m| m.eq_ignore_ascii_case(essence))
        }) {
            return Some(format);
        }
        let (kind, subtype) = essence.split_once('/')?;
        let suffix = subtype.rsplit_once('+')?.1;
        if kind.is_empty() {
            None
        } else if suffix.eq_ignore_ascii_case("json") {
            Some(Format::Json)
        } else if suffix.eq_ignore_ascii_case("cbor") {
            Some(Format::Cbor)
        } else {
            None
        }
    }

    /// The format to answer with, given an HTTP `Accept` header (or an MQTT
    /// `accept` user property) listing media ranges with optional q-values.
    ///
    /// Each format gets the q-value of the most specific range that matches
    /// one of its media types (`application/json` over `application/*` over
    /// `*/*`); the highest q wins, then the range listed first, then the
    /// order of [`Format::ALL`] (so `*/*` is JSON). `q=0` means "not this".
    /// An empty header means anything, i.e. JSON. `None`: nothing acceptable
    /// (HTTP 406, or the caller's default).
    pub fn from_accept(accept: &str) -> Option<Format> {
        if accept.trim().is_empty() {
            return Some(Format::Json);
        }
        let ranges: Vec<MediaRange<'_>> = accept
            .split(',')
            .enumerate()
            .filter_map(|(i, entry)| MediaRange::parse(i, entry))
            .collect();
        // Best so far: (q, position of its range, format).
        let mut best: Option<(u16, usize, Format)> = None;
        for format in Self::ALL {
            let matched = format
                .media_types()
                .iter()
                .flat_map(|media| ranges.iter().filter(|r| r.matches(media)))
                .max_by_key(|r| (r.specificity(), r.q, std::cmp::Reverse(r.position)));
            let Some(range) = matched else { continue };
            if range.q == 0 {
                continue;
            }
            let better = match best {
                None => true,
                Some((q, position, _)) => {
                    (range.q, std::cmp::Reverse(range.position)) > (q, std::cmp::Reverse(position))
                }
            };
            if better {
                best = Some((range.q, range.position, format));
            }
        }
        best.map(|(_, _, format)| format)
    }

    /// Decodes one complete value; anything after it is an error.
    pub fn decode(self, input: &[u8]) -> Result<Value, FormatError> {
        match self {
            Format::Json => value::decode_json(input),
            Format::Cbor => decode_cbor(input),
            Format::MsgPack => decode_msgpack(input),
        }
    }

    /// Encodes a value; never fails (see the module doc for the mapping).
    pub fn encode(self, value: &Value) -> Vec<u8> {
        match self {
            Format::Json => value::encode_json(value),
            Format::Cbor => encode_cbor(value),
            Format::MsgPack => encode_msgpack(value),
        }
    }

    /// Detects a structured record in a payload that came without a content
    /// type (SPEC §3): a JSON object (first non-whitespace byte `{`), a CBOR
    /// map (first byte of major type 5: `0xA0..=0xBF`) or a MessagePack map
    /// (first byte `0x80..=0x8F`, `0xDE` or `0xDF`), each of which must
    /// decode completely, to a map. Anything else — other JSON values,
    /// arrays, `{"$bytes": ..}`, truncated or trailing data — is `None`: the
    /// caller stores the payload as a binary record.
    ///
    /// The first bytes of the three formats never overlap, with one
    /// consequence: `0x80` is both the empty CBOR array and the empty
    /// MessagePack map, and is detected as the latter. (Non-empty CBOR
    /// arrays of text or small integers fail as MessagePack maps, whose keys
    /// must be strings, so they stay binary.)
    pub fn detect(payload: &[u8]) -> Option<(Format, Value)> {
        let format = match *payload.first()? {
            0xA0..=0xBF => Format::Cbor,
            0x80..=0x8F | 0xDE | 0xDF => Format::MsgPack,
            _ => match payload
                .iter()
                .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            {
                Some(b'{') => Format::Json,
                _ => return None,
            },
        };
        match format.decode(payload) {
            Ok(map @ Value::Map(_)) => Some((format, map)),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One entry of an `Accept` header.
struct MediaRange<'a> {
    kind: &'a str,
    subtype: &'a str,
    /// The q-value in thousandths (0..=1000).
    q: u16,
    position: usize,
}

impl<'a> MediaRange<'a> {
    /// Parses the `position`-th entry, `type/subtype;param=value;q=0.5`;
    /// `None` if malformed (the entry is then ignored).
    fn parse(position: usize, entry: &'a str) -> Option<MediaRange<'a>> {
        let mut parts = entry.split(';');
        let (kind, subtype) = parts.next()?.trim().split_once('/')?;
        let (kind, subtype) = (kind.trim(), subtype.trim());
        if kind.is_empty() || subtype.is_empty() || (kind == "*" && subtype != "*") {
            return None;
        }
        let mut q = 1000;
        for param in parts {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            if name.trim().eq_ignore_ascii_case("q") {
                q = parse_q(value.trim())?;
                break; // parameters after q are accept-extensions
            }
        }
        Some(MediaRange {
            kind,
            subtype,
            q,
            position,
        })
    }

    fn matches(&self, media: &str) -> bool {
        let Some((kind, subtype)) = media.split_once('/') else {
            return false;
        };
        (self.kind == "*" || self.kind.eq_ignore_ascii_case(kind))
            && (self.subtype == "*" || self.subtype.eq_ignore_ascii_case(subtype))
    }

    fn specificity(&self) -> u8 {
        u8::from(self.kind != "*") + u8::from(self.subtype != "*")
    }
}

/// An RFC 9110 qvalue (`0`, `0.5`, `1.000`) in thousandths.
fn parse_q(text: &str) -> Option<u16> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_value = format!("{frac:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

/// A payload that is not valid in the format it claims to be.
///
/// Every variant means "the client sent a malformed body": HTTP 400, MQTT v5
/// reason code 0x99 (payload format invalid).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Not valid JSON.
    #[error("invalid JSON at line {line} column {column}: {message}")]
    Json {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What is wrong there.
        message: String,
    },
    /// Not valid CBOR, or CBOR outside the record model.
    #[error("invalid CBOR{}: {message}", at_byte(*offset))]
    Cbor {
        /// Byte offset of the error, when known.
        offset: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// Not valid MessagePack, or MessagePack outside the record model.
    #[error("invalid MessagePack at byte {offset}: {message}")]
    MsgPack {
        /// Byte offset of the error.
        offset: usize,
        /// What is wrong there.
        message: String,
    },
}

fn at_byte(offset: Option<usize>) -> String {
    offset.map_or_else(String::new, |at| format!(" at byte {at}"))
}

impl FormatError {
    /// The format that failed to decode.
    pub fn format(&self) -> Format {
        match self {
            FormatError::Json { .. } => Format::Json,
            FormatError::Cbor { .. } => Format::Cbor,
            FormatError::MsgPack { .. } => Format::MsgPack,
        }
    }

    pub(crate) fn from_json(e: serde_json::Error) -> FormatError {
        let (line, column) = (e.line(), e.column());
        let text = e.to_string();
        // serde_json appends " at line L column C"; we put it in front.
        let suffix = format!(" at line {line} column {column}");
        let message = text.strip_suffix(&suffix).unwrap_or(&text);
        let message = match message.strip_prefix("EOF while") {
            Some(rest) => format!("unexpected end of input while{rest}"),
            None => message.to_owned(),
        };
        FormatError::Json {
            line,
            column,
            message,
        }
    }
}

// ------------------------------------------------------------ CBOR

fn encode_cbor(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail and `Value` never raises a custom error.
    ciborium::ser::into_writer(value, &mut out).expect("CBOR encoding of a Value is infallible");
    out
}

fn decode_cbor(input: &[u8]) -> Result<Value, FormatError> {
    use ciborium::de::Error;
    let mut rest = input;
    let item: ciborium::Value =
        ciborium::de::from_reader_with_recursion_limit(&mut rest, MAX_DEPTH).map_err(|e| {
            let (offset, message) = match e {
                Error::Io(_) => (Some(input.len()), "unexpected end of input".to_owned()),
                Error::Syntax(at) => (Some(at), "malformed data item".to_owned()),
                Error::Semantic(at, msg) => (at, msg),
                Error::RecursionLimitExceeded => (None, format!("nested deeper than {MAX_DEPTH}")),
            };
            FormatError::Cbor { offset, message }
        })?;
    if !rest.is_empty() {
        return Err(FormatError::Cbor {
            offset: Some(input.len() - rest.len()),
            message: "unexpected bytes after the data item".to_owned(),
        });
    }
    from_cbor(item).map_err(|message| FormatError::Cbor {
        offset: None,
        message,
    })
}

/// Tags are dropped (the tagged item is kept), every float width becomes
/// f64, integers must lie in `i64::MIN..=u64::MAX`, map keys must be text.
fn from_cbor(item: ciborium::Value) -> Result<Value, String> {
    use ciborium::Value as C;
    Ok(match item {
        C::Null => Value::Null,
        C::Bool(b) => Value::Bool(b),
        C::Integer(i) => {
            let n = i128::from(i);
            Value::from_i128(n).ok_or_else(|| format!("integer {n} is outside the 64-bit range"))?
        }
        C::Float(f) => Value::Float(f),
        C::Text(s) => Value::String(s),
        C::Bytes(b) => Value::Bytes(Bytes::from(b)),
        C::Tag(_, inner) => from_cbor(*inner)?,
        C::Array(items) => {
            Value::Array(items.into_iter().map(from_cbor).collect::<Result<_, _>>()?)
        }
        C::Map(entries) => {
            let mut map = Map::with_capacity(entries.len());
            for (key, value) in entries {
                let mut key = key;
                while let C::Tag(_, inner) = key {
                    key = *inner;
                }
                let C::Text(key) = key else {
                    return Err(format!(
                        "map keys must be text strings, found {}",
                        cbor_kind(&key)
                    ));
                };
                map.insert(key, from_cbor(value)?);
            }
            Value::Map(map)
        }
        other => return Err(format!("unsupported data item: {}", cbor_kind(&other))),
    })
}

fn cbor_kind(item: &ciborium::Value) -> &'static str {
    use ciborium::Value as C;
    match item {
        C::Integer(_) => "an integer",
        C::Bytes(_) => "a byte string",
        C::Float(_) => "a float",
        C::Text(_) => "a text string",
        C::Bool(_) => "a bool",
        C::Null => "null",
        C::Tag(..) => "a tag",
        C::Array(_) => "an array",
        C::Map(_) => "a map",
        _ => "an unknown item",
    }
}

// ------------------------------------------------------------ MessagePack

/// Writes the smallest encoding of each item (ints, lengths); floats are
/// always float 64. Encoded by hand so that it cannot fail.
///
/// # Panics
/// If a string, byte string, array or map is longer than `u32::MAX`, which
/// MessagePack cannot express (far beyond any packet size mqdb accepts).
fn encode_msgpack(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    msgpack_write(value, &mut out);
    out
}

fn msgpack_write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(0xC0),
        Value::Bool(b) => out.push(if *b { 0xC3 } else { 0xC2 }),
        Value::Int(i) => match u64::try_from(*i) {
            Ok(u) => msgpack_uint(u, out),
            Err(_) if *i >= -32 => out.push(*i as u8), // negative fixint
            Err(_) if *i >= i64::from(i8::MIN) => out.extend_from_slice(&[0xD0, *i as u8]),
            Err(_) if *i >= i64::from(i16::MIN) => {
                msgpack_bytes(out, 0xD1, &(*i as i16).to_be_bytes())
            }
            Err(_) if *i >= i64::from(i32::MIN) => {
                msgpack_bytes(out, 0xD2, &(*i as i32).to_be_bytes())
            }
            Err(_) => msgpack_bytes(out, 0xD3, &i.to_be_bytes()),
        },
        Value::UInt(u) => msgpack_uint(*u, out),
        Value::Float(f) => msgpack_bytes(out, 0xCB, &f.to_be_bytes()),
        Value::String(s) => {
            msgpack_header(out, s.len(), Some((0xA0, 31)), [0xD9, 0xDA, 0xDB]);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Bytes(b) => {
            msgpack_header(out, b.len(), None, [0xC4, 0xC5, 0xC6]);
            out.extend_from_slice(b);
        }
        Value::Array(items) => {
            msgpack_header(out, items.len(), Some((0x90, 15)), [0, 0xDC, 0xDD]);
            for item in items {
                msgpack_write(item, out);
            }
        }
        Value::Map(map) => {
            msgpack_header(out, map.len(), Some((0x80, 15)), [0, 0xDE, 0xDF]);
            for (key, item) in map {
                msgpack_header(out, key.len(), Some((0xA0, 31)), [0xD9, 0xDA, 0xDB]);
                out.extend_from_slice(key.as_bytes());
                msgpack_write(item, out);
            }
        }
    }
}

fn msgpack_uint(u: u64, out: &mut Vec<u8>) {
    match u {
        0..=0x7F => out.push(u as u8),
        0x80..=0xFF => out.extend_from_slice(&[0xCC, u as u8]),
        0x100..=0xFFFF => msgpack_bytes(out, 0xCD, &(u as u16).to_be_bytes()),
        0x1_0000..=0xFFFF_FFFF => msgpack_bytes(out, 0xCE, &(u as u32).to_be_bytes()),
        _ => msgpack_bytes(out, 0xCF, &u.to_be_bytes()),
    }
}

fn msgpack_bytes(out: &mut Vec<u8>, marker: u8, bytes: &[u8]) {
    out.push(marker);
    out.extend_from_slice(bytes);
}

/// A length header: the fix form `(base, max)` if there is one and it fits,
/// else the 8/16/32-bit form (`markers[0] == 0`: no 8-bit form).
fn msgpack_header(out: &mut Vec<u8>, len: usize, fix: Option<(u8, usize)>, markers: [u8; 3]) {
    match fix {
        Some((base, max)) if len <= max => out.push(base | len as u8),
        _ if len <= 0xFF && markers[0] != 0 => out.extend_from_slice(&[markers[0], len as u8]),
        _ if len <= 0xFFFF => msgpack_bytes(out, markers[1], &(len as u16).to_be_bytes()),
        _ => {
            let len = u32::try_from(len).expect("MessagePack lengths are at most u32::MAX");
            msgpack_bytes(out, markers[2], &len.to_be_bytes());
        }
    }
}

fn decode_msgpack(input: &[u8]) -> Result<Value, FormatError> {
    let mut reader = MsgPackReader { input, pos: 0 };
    let value = reader.value(0)?;
    if reader.pos != input.len() {
        return Err(reader.error_at(reader.pos, "unexpected bytes after the value"));
    }
    Ok(value)
}

struct MsgPackReader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> MsgPackReader<'a> {
    fn error_at(&self, offset: usize, message: impl Into<String>) -> FormatError {
        FormatError::MsgPack {
            offset,
            message: message.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.input.len());
        let end = end.ok_or_else(|| self.error_at(self.input.len(), "unexpected end of input"))?;
        let bytes = &self.input[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// A length of 1, 2 or 4 big-endian bytes.
    fn len(&mut self, width: usize) -> Result<usize, FormatError> {
        Ok(match width {
            1 => usize::from(self.array::<1>()?[0]),
            2 => usize::from(u16::from_be_bytes(self.array()?)),
            _ => u32::from_be_bytes(self.array()?) as usize,
        })
    }

    fn string(&mut self, len: usize) -> Result<String, FormatError> {
        let start = self.pos;
        let bytes = self.take(len)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(self.error_at(start + e.valid_up_to(), "string is not valid UTF-8")),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, FormatError> {
        let at = self.pos;
        let marker = self.array::<1>()?[0];
        Ok(match marker {
            0x00..=0x7F => Value::Int(i64::from(marker)),
            0x80..=0x8F => self.map(usize::from(marker & 0x0F), depth)?,
            0x90..=0x9F => self.seq(usize::from(marker & 0x0F), depth)?,
            0xA0..=0xBF => Value::String(self.string(usize::from(marker & 0x1F))?),
            0xC0 => Value::Null,
            0xC2 => Value::Bool(false),
            0xC3 => Value::Bool(true),
            0xC4..=0xC6 => {
                let len = self.len(1 << (marker - 0xC4))?;
                Value::Bytes(Bytes::copy_from_slice(self.take(len)?))
            }
            0xCA => Value::Float(f64::from(f32::from_be_bytes(self.array()?))),
            0xCB => Value::Float(f64::from_be_bytes(self.array()?)),
            0xCC => Value::Int(i64::from(self.array::<1>()?[0])),
            0xCD => Value::Int(i64::from(u16::from_be_bytes(self.array()?))),
            0xCE => Value::Int(i64::from(u32::from_be_bytes(self.array()?))),
            0xCF => Value::from(u64::from_be_bytes(self.array()?)),
            0xD0 => Value::Int(i64::from(i8::from_be_bytes(self.array()?))),
            0xD1 => Value::Int(i64::from(i16::from_be_bytes(self.array()?))),
            0xD2 => Value::Int(i64::from(i32::from_be_bytes(self.array()?))),
            0xD3 => Value::Int(i64::from_be_bytes(self.array()?)),
            0xD9..=0xDB => {
                let len = self.len(1 << (marker - 0xD9))?;
                Value::String(self.string(len)?)
            }
            0xDC | 0xDD => {
                let len = self.len(if marker == 0xDC { 2 } else { 4 })?;
                self.seq(len, depth)?
            }
            0xDE | 0xDF => {
                let len = self.len(if marker == 0xDE { 2 } else { 4 })?;
                self.map(len, depth)?
            }
            0xE0..=0xFF => Value::Int(i64::from(marker as i8)),
            0xC7..=0xC9 | 0xD4..=0xD8 => {
                return Err(self.error_at(at, "extension types are not supported"));
            }
            0xC1 => return Err(self.error_at(at, "0xc1 is not a valid marker")),
        })
    }

    fn enter(&self, depth: usize) -> Result<usize, FormatError> {
        if depth >= MAX_DEPTH {
            return Err(self.error_at(self.pos, format!("nested deeper than {MAX_DEPTH}")));
        }
        Ok(depth + 1)
    }

    fn seq(&mut self, len: usize, depth: usize) -> Result<Value, FormatError> {
        let depth = self.enter(depth)?;
        // Every item takes at least one byte: never reserve more than that.
        let mut items = Vec::with_capacity(len.min(self.input.len() - self.pos));
        for _ in 0..len {
            items.push(self.value(depth)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<Value, FormatError> {
        let depth = self.enter(depth)?;
        let mut map = Map::with_capacity(len.min((self.input.len() - self.pos) / 2));
        for _ in 0..len {
            let at = self.pos;
            let key = match self.value(depth)? {
                Value::String(key) => key,
                other => {
                    let kind = other.type_name();
                    return Err(
                        self.error_at(at, format!("map keys must be strings, found {kind}"))
                    );
                }
            };
            map.insert(key, self.value(depth)?); // a repeated key: the last value wins
        }
        Ok(Value::Map(map))
    }
}

// ------------------------------------------------------------ CSV

/// Renders records as CSV (RFC 4180: CRLF line ends, fields with `,`, `"`,
/// CR or LF quoted, quotes doubled), with a header line.
///
/// The columns are `columns` if given (e.g. from `select(...)` or the
/// schema), else every key of every map row in first-seen order. A cell is
/// empty for a missing attribute, `null`, a non-finite float and for rows
/// that are not maps; strings are written as is, numbers and bools as in
/// JSON, byte strings as base64, arrays and maps as their JSON text.
/// No columns at all gives an empty string.
pub fn to_csv(rows: &[Value], columns: Option<&[String]>) -> String {
    let union;
    let columns = match columns {
        Some(columns) => columns,
        None => {
            let mut keys = indexmap::IndexSet::new();
            for row in rows.iter().filter_map(Value::as_map) {
                for key in row.keys() {
                    if !keys.contains(key.as_str()) {
                        keys.insert(key.clone());
                    }
                }
            }
            union = keys.into_iter().collect::<Vec<_>>();
            &union[..]
        }
    };
    let mut out = String::new();
    if columns.is_empty() {
        return out;
    }
    csv_line(&mut out, columns.iter().map(|c| Cow::Borrowed(c.as_str())));
    for row in rows {
        csv_line(
            &mut out,
            columns
                .iter()
                .map(|c| row.get(c).map_or(Cow::Borrowed(""), csv_cell)),
        );
    }
    out
}

fn csv_cell(value: &Value) -> Cow<'_, str> {
    match value {
        Value::Null => Cow::Borrowed(""),
        Value::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Value::Int(i) => Cow::Owned(i.to_string()),
        Value::UInt(u) => Cow::Owned(u.to_string()),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map_or(Cow::Borrowed(""), |n| Cow::Owned(n.to_string())),
        Value::String(s) => Cow::Borrowed(s),
        Value::Bytes(b) => Cow::Owned(BASE64.encode(b)),
        Value::Array(_) | Value::Map(_) => {
            // JSON output is UTF-8 by construction.
            Cow::Owned(String::from_utf8_lossy(&Format::Json.encode(value)).into_owned())
        }
    }
}

fn csv_line<'a>(out: &mut String, cells: impl Iterator<Item = Cow<'a, str>>) {
    for (i, cell) in cells.enumerate() {
        if i > 0 {
            out.push(',');
        }
        if cell.contains([',', '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&cell.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&cell);
        }
    }
    out.push_str("\r\n");
}
