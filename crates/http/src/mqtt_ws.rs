//! MQTT over WebSocket (MQTT 5.0 §6, SPEC §2) on the HTTP port.
//!
//! A WebSocket handshake on any path whose `Sec-WebSocket-Protocol` offers
//! `mqtt` (case-insensitive; `mqttv3.1`, sent by some old clients, is
//! accepted too) is answered with that protocol and handed, as a byte
//! stream, to the [`MqttWsHandler`] of [`crate::HttpOptions`] together with
//! what the handshake said: the peer ([`PeerInfo`]), HTTP Basic
//! credentials, and the formats of `Content-Type` and `Accept` (SPEC §3).
//! Without a handler such a handshake gets 400. Handshakes without `mqtt`
//! are left to the REST routes (live updates).
//!
//! [`MqttWsStream`] turns the WebSocket into `AsyncRead + AsyncWrite`:
//!
//! - reading concatenates the payloads of binary messages, so one MQTT
//!   packet may span several messages and one message may carry several
//!   packets; pings are answered by the socket; a Close frame (or the end
//!   of the connection) is the end of the stream; a text message is a
//!   protocol error (MQTT-6.0.0-1): the socket is closed with 1003 and the
//!   read fails;
//! - writes are buffered and sent as one binary message per flush (or per
//!   [`WRITE_CHUNK`] bytes), so a batch of packets written before one flush
//!   travels as one frame; shutting the stream down sends a Close frame.
//!
//! When the server shuts down, reads end (end of stream), so the MQTT
//! session ends the way it ends when its client leaves, then the socket is
//! closed with 1001 "going away". A session that does not end by itself is
//! dropped when `serve_with` stops waiting for it (5 s later).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, FromRequestParts as _, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use bytes::{Buf as _, Bytes, BytesMut};
use futures_util::{SinkExt as _, StreamExt as _};
use mqdb_resource::Format;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, watch};

use crate::AppState;
use crate::error::HttpError;
use crate::peer::PeerInfo;

/// Largest binary message [`MqttWsStream`] sends; a larger write is split.
pub const WRITE_CHUNK: usize = 64 * 1024;

/// Serves one MQTT-over-WebSocket connection; the future ends with it.
pub type MqttWsHandler =
    Arc<dyn Fn(MqttWsConnection) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// An accepted MQTT-over-WebSocket connection, for the [`MqttWsHandler`].
pub struct MqttWsConnection {
    /// The MQTT byte stream.
    pub io: MqttWsStream,
    /// Who the client is, as far as the listener knows.
    pub peer: PeerInfo,
    /// HTTP Basic credentials of the handshake (`Authorization: Basic`).
    pub basic_credentials: Option<(String, String)>,
    /// The format the handshake's `Content-Type` declares, if it names one.
    pub content_format: Option<mqdb_resource::Format>,
    /// The format the handshake's `Accept` prefers, if it has one.
    pub accept_format: Option<mqdb_resource::Format>,
}

impl fmt::Debug for MqttWsConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttWsConnection")
            .field("io", &self.io)
            .field("peer", &self.peer)
            // Never the password.
            .field(
                "basic_user",
                &self.basic_credentials.as_ref().map(|(user, _)| user),
            )
            .field("content_format", &self.content_format)
            .field("accept_format", &self.accept_format)
            .finish()
    }
}

/// What the reading side has reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadState {
    Open,
    /// Close frame, end of connection or server shutdown.
    Eof,
    /// A text message arrived: sending Close 1003, then failing.
    Rejecting,
    /// A text message arrived and the Close frame is out.
    Failed,
}

/// A WebSocket carrying MQTT, as `AsyncRead + AsyncWrite` (see the module
/// doc for how messages map to bytes).
pub struct MqttWsStream {
    socket: WebSocket,
    /// The unread rest of the last binary message.
    read: Bytes,
    read_state: ReadState,
    /// Written and not yet sent.
    write: BytesMut,
    /// Whether a Close frame went out (nothing may follow it).
    close_sent: bool,
    /// Resolves when the server shuts down; `None` once it has (or never).
    closing: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    shutting_down: bool,
}

impl fmt::Debug for MqttWsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttWsStream")
            .field("unread", &self.read.len())
            .field("read_state", &self.read_state)
            .field("unsent", &self.write.len())
            .field("close_sent", &self.close_sent)
            .field("shutting_down", &self.shutting_down)
            .finish_non_exhaustive()
    }
}

impl MqttWsStream {
    /// The MQTT stream over an accepted WebSocket.
    pub fn new(socket: WebSocket) -> Self {
        MqttWsStream {
            socket,
            read: Bytes::new(),
            read_state: ReadState::Open,
            write: BytesMut::new(),
            close_sent: false,
            closing: None,
            shutting_down: false,
        }
    }

    /// The stream, ending its reads when `closing` resolves.
    pub(crate) fn with_closing(
        socket: WebSocket,
        closing: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        MqttWsStream {
            closing: Some(Box::pin(closing)),
            ..Self::new(socket)
        }
    }

    /// Notices the server's shutdown: reads end from then on.
    fn poll_closing(&mut self, cx: &mut Context<'_>) {
        let Some(closing) = &mut self.closing else {
            return;
        };
        if closing.as_mut().poll(cx).is_ready() {
            self.closing = None;
            self.shutting_down = true;
            self.read = Bytes::new();
            if self.read_state == ReadState::Open {
                self.read_state = ReadState::Eof;
            }
        }
    }

    /// Sends the buffered bytes as one binary message (queued in the
    /// socket, not flushed).
    fn poll_send_buffer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write.is_empty() {
            return Poll::Ready(Ok(()));
        }
        ready!(self.socket.poll_ready_unpin(cx)).map_err(to_io)?;
        let message = Message::Binary(self.write.split().freeze());
        self.socket.start_send_unpin(message).map_err(to_io)?;
        Poll::Ready(Ok(()))
    }

    /// Sends `frame` (once) and flushes it; failures only mean the
    /// connection is gone already.
    fn poll_send_close(&mut self, cx: &mut Context<'_>, frame: CloseFrame) -> Poll<()> {
        if !self.close_sent {
            if ready!(self.socket.poll_ready_unpin(cx)).is_err() {
                self.close_sent = true;
                return Poll::Ready(());
            }
            self.close_sent = true;
            if self
                .socket
                .start_send_unpin(Message::Close(Some(frame)))
                .is_err()
            {
                return Poll::Ready(());
            }
        }
        let _ = ready!(self.socket.poll_flush_unpin(cx));
        Poll::Ready(())
    }
}

fn to_io(e: axum::Error) -> io::Error {
    io::Error::other(e)
}

fn text_frame_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "MQTT over WebSocket takes binary messages only; got a text message (MQTT-6.0.0-1)",
    )
}

impl AsyncRead for MqttWsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.poll_closing(cx);
        loop {
            match this.read_state {
                ReadState::Open => {}
                ReadState::Eof => return Poll::Ready(Ok(())),
                ReadState::Failed => return Poll::Ready(Err(text_frame_error())),
                ReadState::Rejecting => {
                    let frame = CloseFrame {
                        code: close_code::UNSUPPORTED,
                        reason: "MQTT takes binary messages only".into(),
                    };
                    ready!(this.poll_send_close(cx, frame));
                    this.read_state = ReadState::Failed;
                    continue;
                }
            }
            if !this.read.is_empty() {
                let n = buf.remaining().min(this.read.len());
                buf.put_slice(&this.read[..n]);
                this.read.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(this.socket.poll_next_unpin(cx)) {
                None | Some(Ok(Message::Close(_))) => this.read_state = ReadState::Eof,
                Some(Ok(Message::Binary(bytes))) => this.read = bytes,
                Some(Ok(Message::Text(_))) => this.read_state = ReadState::Rejecting,
                // Pings are answered by the socket itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
            }
        }
    }
}

impl AsyncWrite for MqttWsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.write.len() >= WRITE_CHUNK {
            ready!(this.poll_send_buffer(cx))?;
        }
        let n = data.len().min(WRITE_CHUNK - this.write.len());
        this.write.extend_from_slice(&data[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_buffer(cx))?;
        this.socket.poll_flush_unpin(cx).map_err(to_io)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // What was written still goes out; if it cannot, neither can the
        // Close frame, and the connection is gone anyway.
        if ready!(this.poll_send_buffer(cx)).is_err() {
            this.write.clear();
        }
        this.poll_closing(cx);
        let frame = if this.shutting_down {
            CloseFrame {
                code: close_code::AWAY,
                reason: "server shutting down".into(),
            }
        } else {
            CloseFrame {
                code: close_code::NORMAL,
                reason: "".into(),
            }
        };
        ready!(this.poll_send_close(cx, frame));
        let _ = ready!(this.socket.poll_close_unpin(cx));
        Poll::Ready(Ok(()))
    }
}

/// What the MQTT-over-WebSocket layer of the router needs.
#[derive(Clone)]
pub(crate) struct MqttWsService {
    pub(crate) handler: Option<MqttWsHandler>,
    /// Becomes `true` when the server shuts down (see [`AppState`]).
    pub(crate) closing: watch::Receiver<bool>,
    /// Held by every session, like the live streams' guard.
    pub(crate) live_guard: Arc<mpsc::Sender<()>>,
}

/// The outermost layer: takes MQTT-over-WebSocket handshakes on any path,
/// passes everything else on.
pub(crate) async fn intercept(
    State(service): State<MqttWsService>,
    request: Request,
    next: Next,
) -> Response {
    let protocol = if is_websocket_upgrade(&request) {
        mqtt_protocol(request.headers())
    } else {
        None
    };
    let Some(protocol) = protocol else {
        return next.run(request).await;
    };
    match service.accept(request, protocol).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

/// A GET asking to upgrade to a WebSocket.
fn is_websocket_upgrade(request: &Request) -> bool {
    request.method() == Method::GET
        && request
            .headers()
            .get_all(header::UPGRADE)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .any(|p| p.trim_ascii().eq_ignore_ascii_case(b"websocket"))
}

/// The offered subprotocol to answer with, in the client's spelling:
/// `mqtt`, else `mqttv3.1`.
fn mqtt_protocol(headers: &HeaderMap) -> Option<String> {
    let offered: Vec<&[u8]> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .collect();
    ["mqtt", "mqttv3.1"].into_iter().find_map(|wanted| {
        offered
            .iter()
            .find(|p| p.eq_ignore_ascii_case(wanted.as_bytes()))
            .and_then(|p| std::str::from_utf8(p).ok())
            .map(str::to_owned)
    })
}

impl MqttWsService {
    async fn accept(&self, request: Request, protocol: String) -> Result<Response, HttpError> {
        let Some(handler) = self.handler.clone() else {
            return Err(HttpError::BadRequest(
                "MQTT over WebSocket is not served here; live updates use a plain WebSocket without a subprotocol".into(),
            ));
        };
        let (mut parts, _body) = request.into_parts();
        let basic_credentials = crate::auth::basic_credentials(&parts.headers)?;
        let content_format = header_text(&parts.headers, header::CONTENT_TYPE)
            .and_then(|v| Format::from_content_type(&v));
        let accept_format =
            header_text(&parts.headers, header::ACCEPT).and_then(|v| Format::from_accept(&v));
        let peer = parts
            .extensions
            .get::<ConnectInfo<PeerInfo>>()
            .map(|info| info.0.clone())
            .unwrap_or_default();
        let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &())
            .await
            .map_err(HttpError::rejected)?;
        let closing = self.closing.clone();
        let guard = self.live_guard.clone();
        Ok(upgrade.protocols([protocol]).on_upgrade(move |socket| async move {
            let _guard = guard;
            let io = MqttWsStream::with_closing(socket, AppState::closed(closing.clone()));
            let peer_addr = peer.addr;
            let session = handler(MqttWsConnection {
                io,
                peer,
                basic_credentials,
                content_format,
                accept_format,
            });
            let overdue = async {
                AppState::closed(closing).await;
                tokio::time::sleep(crate::WEBSOCKET_DRAIN).await;
            };
            tokio::select! {
                () = session => {}
                () = overdue => {
                    tracing::warn!(peer = ?peer_addr, "MQTT over WebSocket session still open after shutdown; dropped");
                }
            }
        }))
    }
}

/// A header's values as text, joined with `,`; `None` if absent or not
/// text.
fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().ok())
        .collect::<Option<_>>()?;
    (!values.is_empty()).then(|| values.join(","))
}

#[cfg(test)]
mod tests;
