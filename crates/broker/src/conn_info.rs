//! What the transport knows about a connection before MQTT starts: who is
//! on the other end, over what, and what the transport already proved or
//! declared (a verified client certificate, HTTP Basic credentials and
//! `Accept` / `Content-Type` on a WebSocket upgrade).
//!
//! Filled in by whoever accepts the socket (TCP in this crate, TLS in the
//! server, WebSocket in the HTTP crate) and handed to
//! [`crate::serve_connection`]. Plain data: no I/O.

use std::fmt;
use std::net::SocketAddr;

use mqdb_resource::Format;

/// The transport a connection arrived on (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// MQTT over plain TCP.
    #[default]
    Tcp,
    /// MQTT over TLS (MQTTS).
    Tls,
    /// MQTT over WebSocket on the HTTP port.
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
}

impl Transport {
    /// The lower-case name used in logs and server events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Ws => "ws",
            Self::Wss => "wss",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Facts about a connection established by its transport.
#[derive(Debug, Clone, Default)]
pub struct ConnInfo {
    /// The client's address, when the transport has one.
    pub remote_addr: Option<SocketAddr>,
    pub transport: Transport,
    /// The username proven by a verified TLS client certificate (mTLS):
    /// such a client needs no password.
    pub cert_username: Option<String>,
    /// HTTP Basic credentials sent with a WebSocket upgrade; used when the
    /// CONNECT packet carries none.
    pub basic_credentials: Option<(String, String)>,
    /// Format declared by a WebSocket upgrade's `Content-Type` (SPEC §3).
    pub content_format: Option<Format>,
    /// Format preferred by a WebSocket upgrade's `Accept` (SPEC §3).
    pub accept_format: Option<Format>,
}

impl ConnInfo {
    /// A plain TCP connection from `remote_addr`.
    pub fn tcp(remote_addr: SocketAddr) -> Self {
        Self {
            remote_addr: Some(remote_addr),
            ..Self::default()
        }
    }

    /// The remote address as text, `-` when unknown.
    pub fn peer(&self) -> String {
        self.remote_addr
            .map_or_else(|| "-".to_owned(), |a| a.to_string())
    }
}
