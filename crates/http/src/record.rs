//! One record: `GET`/`HEAD`/`PUT`/`PATCH`/`DELETE /<table>/<id>` (SPEC §4).
//!
//! A structured record is encoded in the format `Accept` asks for (one CSV
//! row for `text/csv`); a binary record is returned as its bytes with its
//! stored content type (`application/octet-stream` if it has none),
//! whatever `Accept` says. `ETag` is the record's version, `"<version>"`;
//! `If-None-Match` with it (or `*`) gives 304.

use axum::body::Body as HttpBody;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use mqdb_resource::format::to_csv;
use mqdb_resource::{Body, Database, Entry, ResourceError, TableDef, Value, Written};

use crate::error::HttpError;
use crate::negotiate::{self, Representation};

/// `GET /<table>/<id>` (not the live variant).
pub(crate) fn get(
    db: &Database,
    table: &TableDef,
    id: &str,
    headers: &HeaderMap,
    representation: Representation,
) -> Result<Response, HttpError> {
    let entry = db.get(table, id)?.ok_or_else(|| ResourceError::NotFound {
        table: table.name.clone(),
        id: id.to_owned(),
    })?;
    let etag = etag(entry.version);
    if if_none_match(headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let (content_type, bytes) = representation_of(entry, representation);
    let headers = [(header::CONTENT_TYPE, content_type), (header::ETAG, etag)];
    Ok((
        StatusCode::OK,
        headers,
        [(header::VARY, "Accept")],
        HttpBody::from(bytes),
    )
        .into_response())
}

/// The bytes and content type of a record in the representation asked for.
fn representation_of(entry: Entry, representation: Representation) -> (HeaderValue, Bytes) {
    match entry.body {
        Body::Binary(bytes) => {
            let content_type = entry
                .meta
                .content_type
                .and_then(|ct| HeaderValue::from_str(&ct).ok())
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            (content_type, bytes)
        }
        Body::Map(map) => match representation {
            Representation::Csv => {
                let csv = to_csv(&[Value::Map(map)], None);
                (
                    HeaderValue::from_static("text/csv; charset=utf-8"),
                    Bytes::from(csv),
                )
            }
            Representation::Structured(format) => (
                negotiate::content_type_header(format),
                Bytes::from(format.encode(&Value::Map(map))),
            ),
            // Live requests never get here; answer as JSON if one does.
            Representation::EventStream => {
                let format = mqdb_resource::Format::Json;
                (
                    negotiate::content_type_header(format),
                    Bytes::from(format.encode(&Value::Map(map))),
                )
            }
        },
    }
}

/// `PUT /<table>/<id>`: replaces (or creates) the record.
pub(crate) async fn put(
    db: &Database,
    table: &TableDef,
    id: &str,
    headers: &HeaderMap,
    bytes: Bytes,
) -> Result<Response, HttpError> {
    let (body, meta) = negotiate::record_body(headers, bytes)?;
    let written = db.put(table, id, body, meta).await?;
    Ok(no_content(written))
}

/// `PATCH /<table>/<id>`: merges a map into the existing record (a `null`
/// attribute removes it); 404 if there is no record.
pub(crate) async fn patch(
    db: &Database,
    table: &TableDef,
    id: &str,
    headers: &HeaderMap,
    bytes: Bytes,
) -> Result<Response, HttpError> {
    let map = negotiate::patch_body(headers, &bytes)?;
    let written = db.patch(table, id, map).await?;
    Ok(no_content(written))
}

/// `DELETE /<table>/<id>`: 204, or 404 when there was no record.
pub(crate) async fn delete(
    db: &Database,
    table: &TableDef,
    id: &str,
) -> Result<Response, HttpError> {
    if db.delete(table, id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ResourceError::NotFound {
            table: table.name.clone(),
            id: id.to_owned(),
        }
        .into())
    }
}

fn no_content(written: Written) -> Response {
    (
        StatusCode::NO_CONTENT,
        [(header::ETAG, etag(written.version))],
    )
        .into_response()
}

/// The entity tag of a record version.
pub(crate) fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("digits and quotes are a valid header")
}

/// Whether `If-None-Match` lists `etag` (weak comparison, RFC 9110 §13.1.2)
/// or is `*`.
fn if_none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let want = etag.as_bytes();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .any(|tag| tag == b"*" || tag.strip_prefix(b"W/").unwrap_or(tag) == want)
}
