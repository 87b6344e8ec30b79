//! A table as a collection: `GET /<table>/?<query>` and `POST /<table>/`
//! (SPEC §4).
//!
//! A query result is an array of records. JSON and CBOR are streamed as the
//! records are read (CBOR as an indefinite-length array), so listing a large
//! table does not hold it in memory; MessagePack (whose arrays need their
//! length up front) and CSV (whose header needs every column) are collected
//! first. A binary record appears in the array as a byte string (in JSON
//! `{"$bytes": "<base64>"}`); in CSV it is a row with only its id.
//!
//! A storage error before the first record is an error status; one in the
//! middle of a streamed array can only end the response early (the body is
//! then cut off, never a well-formed array).

use axum::body::Body as HttpBody;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use mqdb_resource::format::to_csv;
use mqdb_resource::{Body, Database, Entry, Format, Map, Query, ResourceError, TableDef, Value};

use crate::error::HttpError;
use crate::negotiate::{self, Representation};
use crate::path;

/// Bytes gathered before a streamed chunk is sent.
const CHUNK: usize = 32 * 1024;

type Entries = Box<dyn Iterator<Item = Result<Entry, ResourceError>> + Send>;

/// `GET /<table>/?<query>` in a structured format or CSV.
pub(crate) fn list(
    db: &Database,
    table: &TableDef,
    query: &Query,
    representation: Representation,
) -> Result<Response, HttpError> {
    let mut entries = db.query(table, query)?.peekable();
    // Surface an error that happens at once as a status, not a cut-off body.
    if let Some(Err(_)) = entries.peek() {
        if let Some(Err(e)) = entries.next() {
            return Err(e.into());
        }
    }
    let entries: Entries = Box::new(entries);
    let (content_type, body) = match representation {
        Representation::Structured(Format::MsgPack) => {
            let rows = entries.map(|e| e.map(row)).collect::<Result<Vec<_>, _>>()?;
            (
                Format::MsgPack.content_type(),
                HttpBody::from(Format::MsgPack.encode(&Value::Array(rows))),
            )
        }
        Representation::Structured(format) => {
            let chunks = Chunks {
                entries,
                format,
                state: ChunkState::Start,
            };
            (
                format.content_type(),
                HttpBody::from_stream(futures_util::stream::iter(chunks)),
            )
        }
        Representation::Csv => {
            let rows = entries
                .map(|e| e.map(|entry| csv_row(table, entry)))
                .collect::<Result<Vec<_>, _>>()?;
            let columns = query.select.as_ref().map(|select| {
                let mut columns = vec![table.primary_key.clone()];
                columns.extend(select.iter().filter(|a| **a != table.primary_key).cloned());
                columns
            });
            (
                "text/csv; charset=utf-8",
                HttpBody::from(to_csv(&rows, columns.as_deref())),
            )
        }
        // Live requests never get here; the dispatcher routes them to `live`.
        Representation::EventStream => {
            return Err(HttpError::NotAcceptable(negotiate::EVENT_STREAM.into()));
        }
    };
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (header::VARY, "Accept"),
    ];
    Ok((StatusCode::OK, headers, body).into_response())
}

/// A record as an element of a result array.
fn row(entry: Entry) -> Value {
    match entry.body {
        Body::Map(map) => Value::Map(map),
        Body::Binary(bytes) => Value::Bytes(bytes),
    }
}

fn csv_row(table: &TableDef, entry: Entry) -> Value {
    match entry.body {
        Body::Map(map) => Value::Map(map),
        Body::Binary(_) => {
            let mut map = Map::new();
            map.insert(table.primary_key.clone(), Value::String(entry.id));
            Value::Map(map)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Start,
    Rows { first: bool },
    Done,
}

/// A result array in JSON or CBOR, in chunks of about [`CHUNK`] bytes.
/// Reading the store is synchronous: each chunk is a short, bounded step.
struct Chunks {
    entries: Entries,
    format: Format,
    state: ChunkState,
}

impl Iterator for Chunks {
    type Item = Result<Bytes, HttpError>;

    fn next(&mut self) -> Option<Self::Item> {
        let json = self.format == Format::Json;
        let mut buf = BytesMut::new();
        let mut first = match self.state {
            ChunkState::Done => return None,
            ChunkState::Start => {
                buf.put_u8(if json { b'[' } else { 0x9F }); // CBOR: indefinite array
                true
            }
            ChunkState::Rows { first } => first,
        };
        while buf.len() < CHUNK {
            match self.entries.next() {
                Some(Ok(entry)) => {
                    if json && !first {
                        buf.put_u8(b',');
                    }
                    first = false;
                    buf.put_slice(&self.format.encode(&row(entry)));
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "listing failed part way; the response is cut off");
                    self.state = ChunkState::Done;
                    return Some(Err(e.into()));
                }
                None => {
                    buf.put_u8(if json { b']' } else { 0xFF }); // CBOR: "break"
                    self.state = ChunkState::Done;
                    return Some(Ok(buf.freeze()));
                }
            }
        }
        self.state = ChunkState::Rows { first };
        Some(Ok(buf.freeze()))
    }
}

/// `POST /<table>/`: creates a record with a generated id. 201 with
/// `Location: /<table>/<id>`, the new version as `ETag`, and the id as the
/// body (a string in the format `Accept` asks for, JSON if it asks for
/// none).
pub(crate) async fn create(
    db: &Database,
    table: &TableDef,
    export_path: &str,
    headers: &HeaderMap,
    bytes: Bytes,
) -> Result<Response, HttpError> {
    let (body, meta) = negotiate::record_body(headers, bytes)?;
    let (id, written) = db.create(table, body, meta).await?;
    let location = HeaderValue::from_str(&path::record_path(export_path, &id))
        .map_err(|_| HttpError::BadRequest("the new record's path is not a valid header".into()))?;
    let format = match negotiate::representation(headers) {
        Ok(Representation::Structured(format)) => format,
        _ => Format::Json,
    };
    let headers = [
        (header::LOCATION, location),
        (header::ETAG, crate::record::etag(written.version)),
        (header::CONTENT_TYPE, negotiate::content_type_header(format)),
    ];
    Ok((
        StatusCode::CREATED,
        headers,
        format.encode(&Value::String(id)),
    )
        .into_response())
}
