//! Content negotiation (SPEC §3, §4): which representation a response takes
//! (`Accept`), and what a request body is (`Content-Type`).
//!
//! Responses: JSON, CBOR or MessagePack as [`Format::from_accept`] chooses,
//! CSV for `text/csv`, a live stream for `text/event-stream`. Bodies:
//!
//! | `Content-Type` | body |
//! |---|---|
//! | JSON, CBOR, MessagePack (and aliases, `+json`, `+cbor`) | must decode (else 400); a map is a record, any other value is kept as a binary record with that content type |
//! | none | a JSON object, CBOR map or MessagePack map is detected as a record; anything else is a binary record without content type |
//! | anything else (`text/plain`, `application/octet-stream`, ...) | a binary record with that content type |

use axum::http::{HeaderMap, HeaderValue, header};
use bytes::Bytes;
use mqdb_resource::{Body, Format, Map, Meta, ResourceError, Value};

use crate::error::HttpError;

/// What the client asked the response to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Representation {
    /// Records encoded in a structured format.
    Structured(Format),
    /// Records as CSV (`text/csv`).
    Csv,
    /// Live updates as Server-Sent Events (`text/event-stream`).
    EventStream,
}

pub(crate) const CSV: &str = "text/csv";
pub(crate) const EVENT_STREAM: &str = "text/event-stream";

/// The representation the `Accept` headers of a request ask for. No header
/// (or `*/*`) is JSON. `text/csv` or `text/event-stream` is chosen when its
/// range has the highest q-value of the header and is listed first among
/// those; otherwise the best structured format, or 406 if none is acceptable.
pub(crate) fn representation(headers: &HeaderMap) -> Result<Representation, HttpError> {
    let accept = header_list(headers, header::ACCEPT);
    let ranges: Vec<(String, u16)> = accept.split(',').filter_map(media_range).collect();
    let top = ranges.iter().map(|(_, q)| *q).max().unwrap_or(0);
    if top > 0 {
        let first_top = ranges
            .iter()
            .find(|(_, q)| *q == top)
            .map(|(media, _)| media.as_str());
        match first_top {
            Some(CSV) => return Ok(Representation::Csv),
            Some(EVENT_STREAM) => return Ok(Representation::EventStream),
            _ => {}
        }
    }
    Format::from_accept(&accept)
        .map(Representation::Structured)
        .ok_or(HttpError::NotAcceptable(accept))
}

/// Every value of a header joined with `,`; values that are not text are
/// skipped (they cannot name a media type).
fn header_list(headers: &HeaderMap, name: header::HeaderName) -> String {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    values.join(",")
}

/// `type/subtype;...;q=0.5` as (lowercase `type/subtype`, q in thousandths);
/// `None` when malformed.
fn media_range(entry: &str) -> Option<(String, u16)> {
    let mut parts = entry.split(';');
    let media = parts.next()?.trim().to_ascii_lowercase();
    let (kind, subtype) = media.split_once('/')?;
    if kind.is_empty() || subtype.is_empty() {
        return None;
    }
    let mut q = 1000;
    for param in parts {
        if let Some((name, value)) = param.split_once('=') {
            if name.trim().eq_ignore_ascii_case("q") {
                q = parse_q(value.trim())?;
                break;
            }
        }
    }
    Some((media, q))
}

/// An RFC 9110 qvalue in thousandths.
fn parse_q(text: &str) -> Option<u16> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac: u16 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<3}").parse().ok()?
    };
    match whole {
        "0" => Some(frac),
        "1" if frac == 0 => Some(1000),
        _ => None,
    }
}

/// The request's `Content-Type`, if it has a non-empty one.
fn content_type(headers: &HeaderMap) -> Result<Option<&str>, HttpError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| HttpError::BadRequest("Content-Type is not visible ASCII".into()))?
        .trim();
    Ok((!text.is_empty()).then_some(text))
}

/// A PUT or POST body as a record value and its metadata (see the module doc).
pub(crate) fn record_body(headers: &HeaderMap, bytes: Bytes) -> Result<(Body, Meta), HttpError> {
    let content_type = content_type(headers)?;
    let body = Body::from_payload(bytes, content_type, None).map_err(ResourceError::from)?;
    // A binary record keeps its content type: it is returned with it.
    let meta = match &body {
        Body::Binary(_) => Meta {
            content_type: content_type.map(str::to_owned),
            ..Meta::default()
        },
        Body::Map(_) => Meta::default(),
    };
    Ok((body, meta))
}

/// A PATCH body: it must be a map, in a structured format (declared or
/// detected).
pub(crate) fn patch_body(headers: &HeaderMap, bytes: &[u8]) -> Result<Map, HttpError> {
    let not_a_map = |found: &str| {
        HttpError::BadRequest(format!(
            "a PATCH body must be a map of attributes, found {found}"
        ))
    };
    let value = match content_type(headers)? {
        None => match Format::detect(bytes) {
            Some((_, value)) => value,
            None => return Err(not_a_map("no JSON object, CBOR map or MessagePack map")),
        },
        Some(ct) => match Format::from_content_type(ct) {
            Some(format) => format.decode(bytes).map_err(ResourceError::from)?,
            None => {
                return Err(HttpError::UnsupportedMediaType(format!(
                    "a PATCH body must be JSON, CBOR or MessagePack, not `{ct}`"
                )));
            }
        },
    };
    match value {
        Value::Map(map) => Ok(map),
        other => Err(not_a_map(other.type_name())),
    }
}

/// The `Content-Type` of a response in `format`.
pub(crate) fn content_type_header(format: Format) -> HeaderValue {
    HeaderValue::from_static(format.content_type())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> Result<Representation, HttpError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        representation(&headers)
    }

    #[test]
    fn accept_chooses_format_csv_or_stream() {
        use Representation::*;
        assert_eq!(
            representation(&HeaderMap::new()).unwrap(),
            Structured(Format::Json)
        );
        assert_eq!(accept("*/*").unwrap(), Structured(Format::Json));
        assert_eq!(
            accept("application/cbor").unwrap(),
            Structured(Format::Cbor)
        );
        assert_eq!(
            accept("application/msgpack").unwrap(),
            Structured(Format::MsgPack)
        );
        assert_eq!(accept("text/csv").unwrap(), Csv);
        assert_eq!(accept("TEXT/CSV; charset=utf-8").unwrap(), Csv);
        assert_eq!(accept("text/csv, application/json").unwrap(), Csv);
        assert_eq!(
            accept("application/json, text/csv").unwrap(),
            Structured(Format::Json)
        );
        assert_eq!(
            accept("text/csv;q=0.5, application/cbor").unwrap(),
            Structured(Format::Cbor)
        );
        assert_eq!(accept("text/event-stream").unwrap(), EventStream);
        assert_eq!(accept("text/event-stream, */*;q=0.1").unwrap(), EventStream);
        assert!(matches!(
            accept("image/png"),
            Err(HttpError::NotAcceptable(_))
        ));
        assert!(matches!(
            accept("text/csv;q=0"),
            Err(HttpError::NotAcceptable(_))
        ));
    }

    #[test]
    fn bodies_by_content_type() {
        let with = |ct: Option<&str>, body: &'static [u8]| {
            let mut headers = HeaderMap::new();
            if let Some(ct) = ct {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            }
            record_body(&headers, Bytes::from_static(body))
        };
        assert!(matches!(with(None, b"{\"a\":1}").unwrap().0, Body::Map(_)));
        assert!(matches!(
            with(Some("application/json"), b"{\"a\":1}").unwrap().0,
            Body::Map(_)
        ));
        let (body, meta) = with(Some("application/json"), b"42").unwrap();
        assert_eq!(body, Body::Binary(Bytes::from_static(b"42")));
        assert_eq!(meta.content_type.as_deref(), Some("application/json"));
        assert!(with(Some("application/json"), b"{oops").is_err());
        let (body, meta) = with(Some("text/plain"), b"{\"a\":1}").unwrap();
        assert!(matches!(body, Body::Binary(_)));
        assert_eq!(meta.content_type.as_deref(), Some("text/plain"));
        let (body, meta) = with(None, b"hello").unwrap();
        assert!(matches!(body, Body::Binary(_)) && meta.content_type.is_none());
    }
}
