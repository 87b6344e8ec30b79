//! MQTT over WebSocket for the benchmark client (MQTT 5.0 §6): the client
//! handshake (tokio-tungstenite, subprotocol `mqtt`) over an open TCP or
//! TLS stream, and [`WsIo`], which turns the WebSocket back into a byte
//! stream:
//!
//! - reading concatenates the payloads of binary messages, so one MQTT
//!   packet may span several messages and one message may carry several
//!   packets; pings are answered by tungstenite; a Close frame or the end
//!   of the connection is the end of the stream; a text message is an
//!   error (MQTT-6.0.0-1);
//! - writes are buffered and sent as one binary message per flush (or per
//!   [`WRITE_CHUNK`] bytes), so a batch of packets written before one flush
//!   travels as one frame, as the client's batching intends.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use anyhow::{Context as _, Result, anyhow};
use bytes::{Buf as _, Bytes, BytesMut};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use super::client::HANDSHAKE_TIMEOUT;
use super::transport::BoxedIo;

/// Largest binary message sent; a larger write is split.
pub(crate) const WRITE_CHUNK: usize = 64 * 1024;

/// tungstenite's read buffer for lean connections (its default, 128 KiB,
/// is allocated eagerly: too much for many idle connections).
const LEAN_READ_BUFFER: usize = 4 * 1024;

/// Does the WebSocket handshake on `stream` (already connected, and TLS if
/// `secure`) for `ws[s]://host:port{path}`, offering the `mqtt`
/// subprotocol, before `deadline`.
pub(crate) async fn handshake(
    stream: BoxedIo,
    host: &str,
    port: u16,
    path: &str,
    secure: bool,
    lean: bool,
    deadline: Instant,
) -> Result<BoxedIo> {
    let scheme = if secure { "wss" } else { "ws" };
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let url = format!("{scheme}://{authority}{path}");
    let mut request = url
        .as_str()
        .into_client_request()
        .with_context(|| format!("bad WebSocket URL {url}"))?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
    let config = lean.then(|| WebSocketConfig::default().read_buffer_size(LEAN_READ_BUFFER));
    let (socket, _response) =
        timeout_at(deadline, client_async_with_config(request, stream, config))
            .await
            .map_err(|_| anyhow!("WebSocket handshake timed out after {HANDSHAKE_TIMEOUT:?}"))?
            .with_context(|| format!("WebSocket handshake with {url}"))?;
    Ok(Box::new(WsIo::new(socket)))
}

/// A WebSocket carrying MQTT, as `AsyncRead + AsyncWrite` (see the module
/// doc for how messages map to bytes). Either end of a WebSocket.
pub(crate) struct WsIo<S> {
    socket: WebSocketStream<S>,
    /// The unread rest of the last binary message.
    read: Bytes,
    /// A Close frame or the end of the connection was read.
    eof: bool,
    /// Written and not yet sent.
    write: BytesMut,
}

impl<S> std::fmt::Debug for WsIo<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsIo")
            .field("unread", &self.read.len())
            .field("eof", &self.eof)
            .field("unsent", &self.write.len())
            .finish_non_exhaustive()
    }
}

impl<S> WsIo<S> {
    pub(crate) fn new(socket: WebSocketStream<S>) -> Self {
        WsIo {
            socket,
            read: Bytes::new(),
            eof: false,
            write: BytesMut::new(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsIo<S> {
    /// Queues the buffered bytes as one binary message (not flushed).
    fn poll_send_buffer(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let mut socket = Pin::new(&mut self.socket);
        ready!(socket.as_mut().poll_ready(cx)).map_err(to_io)?;
        let message = Message::Binary(self.write.split().freeze());
        socket.start_send(message).map_err(to_io)?;
        Poll::Ready(Ok(()))
    }
}

fn to_io(e: tungstenite::Error) -> io::Error {
    match e {
        tungstenite::Error::Io(e) => e,
        e => io::Error::other(e),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.read.is_empty() {
                let n = buf.remaining().min(this.read.len());
                buf.put_slice(&this.read[..n]);
                this.read.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.socket).poll_next(cx)) {
                None | Some(Ok(Message::Close(_))) => this.eof = true,
                Some(Err(
                    tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                )) => this.eof = true,
                Some(Ok(Message::Binary(bytes))) => this.read = bytes,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the broker sent a WebSocket text message; MQTT uses binary \
                         messages only (MQTT-6.0.0-1)",
                    )));
                }
                // Pings are answered by tungstenite itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Err(e)) => return Poll::Ready(Err(to_io(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
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
        Pin::new(&mut this.socket).poll_flush(cx).map_err(to_io)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_buffer(cx))?;
        // Sends a Close frame and flushes.
        match ready!(Pin::new(&mut this.socket).poll_close(cx)) {
            Ok(())
            | Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(to_io(e))),
        }
    }
}
