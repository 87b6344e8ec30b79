//! What a record's payload is, as the resource layer stores it: a structured
//! map or a binary record (bytes + content type), plus the message metadata
//! an MQTT 5 retained publish carries (content type, payload format, user
//! properties, response topic, correlation data, expiry), so that a record
//! read back — also after a restart — is delivered as it was published.
//!
//! ```text
//! [fmt=1][kind: 1 map | 2 binary][meta length u32][meta: MessagePack map][body]
//! body: MessagePack of the map | the binary record's bytes as sent
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::format::Format;
use crate::value::{Map, Value};

const FORMAT_V1: u8 = 1;
const KIND_MAP: u8 = 1;
const KIND_BINARY: u8 = 2;

/// A record's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// A structured record.
    Map(Map),
    /// A payload that is not a map, kept byte for byte.
    Binary(Bytes),
}

impl Body {
    /// The record a payload makes (SPEC section 3): decoded in the format its
    /// content type names; with no content type, in the connection's declared
    /// format, else detected (a JSON object, CBOR map or MessagePack map).
    /// Anything that is not a map — and any payload whose content type is
    /// not JSON, CBOR or MessagePack — is a binary record, kept byte for
    /// byte. A payload that is not valid in its declared format is an error.
    pub fn from_payload(
        payload: Bytes,
        content_type: Option<&str>,
        declared: Option<Format>,
    ) -> Result<Body, crate::format::FormatError> {
        let format = match content_type {
            Some(ct) => match Format::from_content_type(ct) {
                Some(format) => Some(format),
                None => return Ok(Body::Binary(payload)),
            },
            None => declared,
        };
        Ok(match format {
            Some(format) => match format.decode(&payload)? {
                Value::Map(m) => Body::Map(m),
                _ => Body::Binary(payload),
            },
            None => match Format::detect(&payload) {
                Some((_, Value::Map(m))) => Body::Map(m),
                _ => Body::Binary(payload),
            },
        })
    }

    /// The map, if structured.
    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Body::Map(m) => Some(m),
            Body::Binary(_) => None,
        }
    }
}

/// Message metadata kept with a record (MQTT 5 properties of a retained
/// publish; the content type of a binary record written over REST).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// Content type as published (for binary records, what it is returned with).
    pub content_type: Option<String>,
    /// MQTT 5 payload format indicator: `Some(true)` for UTF-8.
    pub payload_utf8: Option<bool>,
    /// MQTT 5 user properties, in order.
    pub user_properties: Vec<(String, String)>,
    /// MQTT 5 response topic.
    pub response_topic: Option<String>,
    /// MQTT 5 correlation data.
    pub correlation_data: Option<Bytes>,
    /// When the record expires (Unix milliseconds), from a message expiry interval.
    pub expires_at: Option<u64>,
    /// The QoS it was published with over MQTT (a retained message keeps
    /// its QoS: it is delivered at the lower of this and the subscription's).
    pub qos: Option<u8>,
    /// The MQTT client that wrote it (for No Local on the change it makes).
    pub origin: Option<String>,
}

impl Meta {
    fn is_empty(&self) -> bool {
        self == &Meta::default()
    }

    fn to_value(&self) -> Value {
        let mut m = Map::new();
        if let Some(ct) = &self.content_type {
            m.insert("ct".into(), Value::String(ct.clone()));
        }
        if let Some(pf) = self.payload_utf8 {
            m.insert("pf".into(), Value::Bool(pf));
        }
        if !self.user_properties.is_empty() {
            let pairs = self
                .user_properties
                .iter()
                .map(|(k, v)| {
                    Value::Array(vec![Value::String(k.clone()), Value::String(v.clone())])
                })
                .collect();
            m.insert("up".into(), Value::Array(pairs));
        }
        if let Some(rt) = &self.response_topic {
            m.insert("rt".into(), Value::String(rt.clone()));
        }
        if let Some(cd) = &self.correlation_data {
            m.insert("cd".into(), Value::Bytes(cd.clone()));
        }
        if let Some(exp) = self.expires_at {
            m.insert("exp".into(), Value::from(exp));
        }
        if let Some(q) = self.qos {
            m.insert("q".into(), Value::Int(i64::from(q)));
        }
        if let Some(o) = &self.origin {
            m.insert("o".into(), Value::String(o.clone()));
        }
        Value::Map(m)
    }

    fn from_value(v: &Value) -> Option<Meta> {
        let m = v.as_map()?;
        let string = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_owned);
        let user_properties = match m.get("up") {
            Some(Value::Array(pairs)) => pairs
                .iter()
                .map(|p| match p.as_array() {
                    Some([Value::String(k), Value::String(v)]) => Some((k.clone(), v.clone())),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?,
            _ => Vec::new(),
        };
        Some(Meta {
            content_type: string("ct"),
            payload_utf8: m.get("pf").and_then(Value::as_bool),
            user_properties,
            response_topic: string("rt"),
            correlation_data: m.get("cd").and_then(Value::as_bytes).cloned(),
            expires_at: m.get("exp").and_then(Value::as_u64),
            qos: m
                .get("q")
                .and_then(Value::as_u64)
                .and_then(|q| u8::try_from(q).ok()),
            origin: string("o"),
        })
    }
}

/// Why stored bytes could not be read as a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable stored record: {0}")]
pub struct CorruptRecord(pub(crate) String);

/// Encodes a record for storage.
pub fn encode(body: &Body, meta: &Meta) -> Bytes {
    let meta_bytes = if meta.is_empty() {
        Vec::new()
    } else {
        Format::MsgPack.encode(&meta.to_value())
    };
    let mut buf = BytesMut::with_capacity(6 + meta_bytes.len() + 64);
    buf.put_u8(FORMAT_V1);
    match body {
        Body::Map(m) => {
            buf.put_u8(KIND_MAP);
            buf.put_u32(meta_bytes.len() as u32);
            buf.put_slice(&meta_bytes);
            buf.put_slice(&Format::MsgPack.encode(&Value::Map(m.clone())));
        }
        Body::Binary(b) => {
            buf.put_u8(KIND_BINARY);
            buf.put_u32(meta_bytes.len() as u32);
            buf.put_slice(&meta_bytes);
            buf.put_slice(b);
        }
    }
    buf.freeze()
}

/// Decodes a stored record.
pub fn decode(mut raw: Bytes) -> Result<(Body, Meta), CorruptRecord> {
    if raw.len() < 6 {
        return Err(CorruptRecord("too short".into()));
    }
    let format = raw.get_u8();
    if format != FORMAT_V1 {
        return Err(CorruptRecord(format!("unknown format byte {format}")));
    }
    let kind = raw.get_u8();
    let meta_len = raw.get_u32() as usize;
    if raw.len() < meta_len {
        return Err(CorruptRecord("metadata longer than the record".into()));
    }
    let meta_raw = raw.split_to(meta_len);
    let meta = if meta_raw.is_empty() {
        Meta::default()
    } else {
        Format::MsgPack
            .decode(&meta_raw)
            .ok()
            .and_then(|v| Meta::from_value(&v))
            .ok_or_else(|| CorruptRecord("bad metadata".into()))?
    };
    let body = match kind {
        KIND_MAP => match Format::MsgPack.decode(&raw) {
            Ok(Value::Map(m)) => Body::Map(m),
            _ => return Err(CorruptRecord("bad map body".into())),
        },
        KIND_BINARY => Body::Binary(raw),
        other => return Err(CorruptRecord(format!("unknown kind {other}"))),
    };
    Ok((body, meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_is_a_map_by_content_type_declaration_or_detection() {
        let json = Bytes::from_static(br#"{"a":1}"#);
        let is_map = |b: Body| matches!(b, Body::Map(_));
        assert!(is_map(
            Body::from_payload(json.clone(), None, None).unwrap()
        ));
        assert!(is_map(
            Body::from_payload(json.clone(), Some("application/json"), None).unwrap()
        ));
        // Another content type: kept as sent, even if it looks like JSON.
        assert_eq!(
            Body::from_payload(json.clone(), Some("text/plain"), None).unwrap(),
            Body::Binary(json.clone())
        );
        // Declared CBOR, but the bytes are not CBOR: an error, not a guess.
        assert!(Body::from_payload(json.clone(), None, Some(Format::Cbor)).is_err());
        assert_eq!(
            Body::from_payload(Bytes::from_static(b"42"), None, None).unwrap(),
            Body::Binary(Bytes::from_static(b"42"))
        );
    }

    #[test]
    fn map_and_binary_records_round_trip_with_metadata() {
        let mut m = Map::new();
        m.insert("id".into(), Value::String("a".into()));
        m.insert("temp".into(), Value::Float(21.5));
        let meta = Meta {
            content_type: Some("application/cbor".into()),
            payload_utf8: Some(false),
            user_properties: vec![("a".into(), "1".into()), ("a".into(), "2".into())],
            response_topic: Some("r/t".into()),
            correlation_data: Some(Bytes::from_static(b"\0\x01")),
            expires_at: Some(1_900_000_000_000),
            qos: Some(1),
            origin: Some("client-7".into()),
        };
        for body in [
            Body::Map(m),
            Body::Binary(Bytes::from_static(b"\xff not json")),
        ] {
            assert_eq!(
                decode(encode(&body, &meta)).unwrap(),
                (body.clone(), meta.clone())
            );
            assert_eq!(
                decode(encode(&body, &Meta::default())).unwrap(),
                (body, Meta::default())
            );
        }
    }
}
