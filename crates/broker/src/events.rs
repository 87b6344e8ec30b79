//! Server events (SPEC §6): `connection` (a socket accepted), `connected`
//! (CONNECT accepted), `auth-failed` and `disconnected`, each with the
//! client id, username, remote address, transport and reason.
//!
//! Two consumers: Rust code embedding mqdb reads them as a stream
//! ([`crate::Broker::events`]), and MQTT clients allowed to subscribe to
//! `$SYS/events/<event>` receive them there as JSON objects. Delivery is
//! best effort and bounded: a consumer that falls more than
//! [`EVENT_BUFFER`] events behind skips the oldest (counted in the log).

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::conn_info::Transport;

/// Events buffered per consumer before the oldest are skipped.
pub const EVENT_BUFFER: usize = 4096;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A transport connection was accepted (before CONNECT).
    Connection,
    /// A CONNECT was accepted.
    Connected,
    /// A CONNECT was refused for its credentials or permissions.
    AuthFailed,
    /// An MQTT session's connection ended.
    Disconnected,
}

impl EventKind {
    /// The name used in `$SYS/events/<name>` and in the JSON `event` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connection => "connection",
            Self::Connected => "connected",
            Self::AuthFailed => "auth-failed",
            Self::Disconnected => "disconnected",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One server event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEvent {
    /// What happened.
    pub kind: EventKind,
    /// The MQTT client id, once CONNECT was read.
    pub client_id: Option<String>,
    /// The username the client gave or proved, if any.
    pub username: Option<String>,
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
    /// The transport.
    pub transport: Transport,
    /// Why (for `auth-failed` and `disconnected`).
    pub reason: Option<String>,
    /// When, in Unix milliseconds.
    pub timestamp: u64,
}

impl ServerEvent {
    /// The JSON object published on `$SYS/events/<event>`.
    pub fn to_json(&self) -> Bytes {
        let value = serde_json::json!({
            "event": self.kind.as_str(),
            "client_id": self.client_id,
            "username": self.username,
            "remote_addr": self.remote_addr.map(|a| a.to_string()),
            "transport": self.transport.as_str(),
            "reason": self.reason,
            "timestamp": self.timestamp,
        });
        Bytes::from(value.to_string())
    }

    /// The topic it is published on.
    pub fn topic(&self) -> String {
        format!("$SYS/events/{}", self.kind.as_str())
    }
}

/// A stream of server events from the moment it was created. Ends when
/// the broker is dropped.
#[derive(Debug)]
pub struct EventStream {
    inner: BroadcastStream<Arc<ServerEvent>>,
}

impl EventStream {
    pub(crate) fn new(rx: tokio::sync::broadcast::Receiver<Arc<ServerEvent>>) -> Self {
        Self {
            inner: BroadcastStream::new(rx),
        }
    }
}

impl Stream for EventStream {
    type Item = Arc<ServerEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(event))) => return Poll::Ready(Some(event)),
                Poll::Ready(Some(Err(BroadcastStreamRecvError::Lagged(n)))) => {
                    tracing::warn!(skipped = n, "a server event consumer fell behind");
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
