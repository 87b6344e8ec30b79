//! Live updates (SPEC §4): a record (`/<table>/<id>`), a table
//! (`/<table>/`) or a query (`/<table>/?<query>`) as a stream of events,
//! over Server-Sent Events (`Accept: text/event-stream`) or a plain
//! WebSocket (text frames). First the current state, then each change:
//!
//! ```json
//! {"type": "put", "id": "a", "value": {"id": "a", "temp": 21.5}, "version": 7, "timestamp": 1700000000000}
//! {"type": "delete", "id": "a", "value": null, "version": 8, "timestamp": 1700000000100}
//! ```
//!
//! `value` is the record as JSON; a binary record's value is its bytes as
//! `{"$bytes": "<base64>"}` (the JSON form of a byte string, see
//! `mqdb_resource::format`). On delete `value` is `null`. For a query, a
//! record that stops matching is reported as a delete.
//!
//! SSE events carry only `data:` (no `event:` name), so `EventSource`'s
//! `onmessage` sees every event; a comment is sent every
//! [`KEEP_ALIVE`] so that idle connections stay open and dead ones are
//! noticed. WebSocket frames from the client are read only to notice pings
//! and the close; their content is ignored.
//!
//! A stream ends, and its watch with it, when the client goes away, when
//! the watch fails (the store closed) and when the server shuts down
//! (WebSocket: Close frame 1001 "going away").

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use mqdb_resource::{Body, Format, Map, TableDef, Value, Watch, WatchEvent, WatchTarget};
use tokio::sync::{mpsc, watch};

use crate::AppState;

/// Interval of SSE keep-alive comments.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Largest WebSocket message accepted from a client (their content is ignored).
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// The JSON text of one event.
pub(crate) fn event_json(event: &WatchEvent) -> String {
    let mut map = Map::new();
    let (kind, id, value, version, timestamp) = match event {
        WatchEvent::Put { entry, .. } => {
            let value = match &entry.body {
                Body::Map(m) => Value::Map(m.clone()),
                Body::Binary(b) => Value::Bytes(b.clone()),
            };
            ("put", &entry.id, value, entry.version, entry.timestamp)
        }
        WatchEvent::Delete {
            id,
            version,
            timestamp,
        } => ("delete", id, Value::Null, *version, *timestamp),
    };
    map.insert("type".into(), Value::String(kind.into()));
    map.insert("id".into(), Value::String(id.clone()));
    map.insert("value".into(), value);
    map.insert("version".into(), Value::from(version));
    map.insert("timestamp".into(), Value::from(timestamp));
    // JSON output is UTF-8 by construction.
    String::from_utf8_lossy(&Format::Json.encode(&Value::Map(map))).into_owned()
}

/// A Server-Sent Events response following `target`.
pub(crate) fn sse(state: &AppState, table: &TableDef, target: WatchTarget) -> Response {
    let watch = state.db.watch(table, target);
    let guard = state.live_guard.clone();
    let events = futures_util::stream::unfold((watch, guard), |(mut watch, guard)| async move {
        match watch.next().await {
            Ok(event) => {
                let event = Event::default().data(event_json(&event));
                Some((Ok::<_, Infallible>(event), (watch, guard)))
            }
            Err(e) => {
                tracing::warn!(error = %e, ?watch, "live stream ended by an error");
                None
            }
        }
    })
    .take_until(AppState::closed(state.closing.clone()));
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// Accepts a plain WebSocket following `target`.
pub(crate) fn websocket(
    state: &AppState,
    table: &TableDef,
    target: WatchTarget,
    upgrade: WebSocketUpgrade,
) -> Response {
    // The watch starts now: the current state is the state at the handshake.
    let watch = state.db.watch(table, target);
    let closing = state.closing.clone();
    let guard = state.live_guard.clone();
    upgrade
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| run_websocket(socket, watch, closing, guard))
}

/// Sends events until the client leaves, the watch fails or the server shuts
/// down. `Watch::next` and `WebSocket::recv` are cancel-safe (a watch only
/// awaits the change feed's receive, after which it returns without another
/// await), so racing them loses no event.
async fn run_websocket(
    mut socket: WebSocket,
    mut watch: Watch,
    closing: watch::Receiver<bool>,
    _guard: Arc<mpsc::Sender<()>>,
) {
    let closed = AppState::closed(closing);
    tokio::pin!(closed);
    loop {
        tokio::select! {
            event = watch.next() => match event {
                Ok(event) => {
                    if socket.send(Message::Text(event_json(&event).into())).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, ?watch, "live WebSocket ended by an error");
                    close(&mut socket, close_code::ERROR, "watch failed").await;
                    return;
                }
            },
            message = socket.recv() => match message {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {} // pings are answered by the socket itself
            },
            () = &mut closed => {
                close(&mut socket, close_code::AWAY, "server shutting down").await;
                return;
            }
        }
    }
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}
