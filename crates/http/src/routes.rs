//! The dispatcher: every request goes through [`dispatch`], which resolves
//! the path to a table and an id ([`crate::path`]), checks the method,
//! authorises ([`crate::auth`]), negotiates, reads the body and calls the
//! handler. Any error becomes a response in one place ([`crate::error`]).
//!
//! One wildcard route instead of axum's path matching, because the id is
//! everything after the table segment, slashes included, and must be
//! decoded exactly once.

use axum::body::Body as HttpBody;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use mqdb_resource::{Query, TableDef, WatchTarget};

use crate::AppState;
use crate::auth::{self, Operation};
use crate::error::HttpError;
use crate::negotiate::{self, Representation};
use crate::{collection, live, path, record};

const RECORD_METHODS: &str = "GET, HEAD, PUT, PATCH, DELETE";
const COLLECTION_METHODS: &str = "GET, HEAD, POST";

/// The handler of every path.
pub(crate) async fn dispatch(State(state): State<AppState>, request: Request) -> Response {
    let head = request.method() == Method::HEAD;
    match handle(&state, request).await {
        Ok(response) if head => head_of(response),
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn handle(state: &AppState, request: Request) -> Result<Response, HttpError> {
    let (mut parts, body) = request.into_parts();
    // Who is asking comes first: without credentials nothing, not even
    // which tables exist, is revealed.
    let who = auth::principal(state, &parts).await?;
    let target = path::parse(parts.uri.path())?;
    let db = state.db.clone();
    let table = db.exported(&target.table)?;
    match target.id {
        Some(id) => record_request(state, &who, table, &id, &mut parts, body).await,
        None => collection_request(state, &who, table, &target.table, &mut parts, body).await,
    }
}

async fn record_request(
    state: &AppState,
    who: &mqdb_resource::Principal,
    table: &TableDef,
    id: &str,
    parts: &mut Parts,
    body: HttpBody,
) -> Result<Response, HttpError> {
    let db = &state.db;
    match parts.method {
        Method::GET | Method::HEAD => {
            auth::authorize(state, who, table, Some(id), Operation::Read)?;
            let target = WatchTarget::Record(id.to_owned());
            if let Some(response) = live_request(state, table, target, parts).await? {
                return Ok(response);
            }
            let representation = negotiate::representation(&parts.headers)?;
            record::get(db, table, id, &parts.headers, representation)
        }
        Method::PUT => {
            auth::authorize(state, who, table, Some(id), Operation::Put)?;
            let bytes = read_body(state, parts, body).await?;
            record::put(db, table, id, &parts.headers, bytes).await
        }
        Method::PATCH => {
            auth::authorize(state, who, table, Some(id), Operation::Update)?;
            let bytes = read_body(state, parts, body).await?;
            record::patch(db, table, id, &parts.headers, bytes).await
        }
        Method::DELETE => {
            auth::authorize(state, who, table, Some(id), Operation::Delete)?;
            record::delete(db, table, id).await
        }
        _ => Err(not_allowed(&parts.method, RECORD_METHODS)),
    }
}

async fn collection_request(
    state: &AppState,
    who: &mqdb_resource::Principal,
    table: &TableDef,
    export_path: &str,
    parts: &mut Parts,
    body: HttpBody,
) -> Result<Response, HttpError> {
    let db = &state.db;
    match parts.method {
        Method::GET | Method::HEAD => {
            auth::authorize(state, who, table, None, Operation::Read)?;
            // The raw query: `Query::parse` percent-decodes each part itself.
            let query = Query::parse(parts.uri.query().unwrap_or(""))
                .map_err(mqdb_resource::ResourceError::from)?;
            let target = if query == Query::default() {
                WatchTarget::Prefix(String::new())
            } else {
                WatchTarget::Query(query.clone())
            };
            if let Some(response) = live_request(state, table, target, parts).await? {
                return Ok(response);
            }
            let representation = negotiate::representation(&parts.headers)?;
            collection::list(db, table, &query, representation)
        }
        Method::POST => {
            auth::authorize(state, who, table, None, Operation::Insert)?;
            let bytes = read_body(state, parts, body).await?;
            collection::create(db, table, export_path, &parts.headers, bytes).await
        }
        _ => Err(not_allowed(&parts.method, COLLECTION_METHODS)),
    }
}

/// The live variants of a GET: a WebSocket upgrade, or `Accept:
/// text/event-stream`. `None` for an ordinary GET. A HEAD never starts a
/// stream: it gets the headers of one.
async fn live_request(
    state: &AppState,
    table: &TableDef,
    target: WatchTarget,
    parts: &mut Parts,
) -> Result<Option<Response>, HttpError> {
    let upgrade = parts
        .headers
        .get_all(header::UPGRADE)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if upgrade && parts.method == Method::GET {
        let upgrade = WebSocketUpgrade::from_request_parts(parts, state)
            .await
            .map_err(HttpError::rejected)?;
        return Ok(Some(live::websocket(state, table, target, upgrade)));
    }
    if negotiate::representation(&parts.headers).ok() != Some(Representation::EventStream) {
        return Ok(None);
    }
    if parts.method == Method::HEAD {
        let headers = [
            (header::CONTENT_TYPE, negotiate::EVENT_STREAM),
            (header::CACHE_CONTROL, "no-cache"),
        ];
        // A body of unknown length, like the stream's (see `head_of`).
        let no_events = futures_util::stream::empty::<Result<Bytes, std::convert::Infallible>>();
        return Ok(Some(
            (headers, HttpBody::from_stream(no_events)).into_response(),
        ));
    }
    Ok(Some(live::sse(state, table, target)))
}

/// Reads the whole request body, at most [`crate::MAX_BODY`] bytes (413
/// beyond).
async fn read_body(state: &AppState, parts: &Parts, body: HttpBody) -> Result<Bytes, HttpError> {
    let request = Request::from_parts(parts.clone(), body);
    Bytes::from_request(request, state)
        .await
        .map_err(HttpError::rejected)
}

/// A response to `HEAD`: axum sets `Content-Length` from a body of known
/// size and drops the body. A streamed body has no known size; say it would
/// be chunked, rather than let an empty body pass for `Content-Length: 0`.
fn head_of(mut response: Response) -> Response {
    use axum::body::HttpBody as _;
    let headers = response.headers();
    let sized = headers.contains_key(header::CONTENT_LENGTH)
        || response.body().size_hint().exact().is_some();
    if !sized && !headers.contains_key(header::TRANSFER_ENCODING) {
        let chunked = HeaderValue::from_static("chunked");
        response
            .headers_mut()
            .insert(header::TRANSFER_ENCODING, chunked);
    }
    response
}

fn not_allowed(method: &Method, allow: &'static str) -> HttpError {
    HttpError::MethodNotAllowed {
        method: method.to_string(),
        allow,
    }
}
