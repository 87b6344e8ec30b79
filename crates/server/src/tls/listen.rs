//! The accept loops over TLS: MQTTS straight into the broker
//! ([`serve_mqtts`]) and an HTTPS listener that hands axum finished TLS
//! streams ([`HttpsListener`]).
//!
//! In both, each accepted socket's handshake runs in its own task with a
//! deadline, so a failed or slow handshake ends only that socket and never
//! holds up the next accept.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use mqdb_broker::{Broker, ConnInfo, Transport};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use super::TlsAcceptorHandle;

/// Finished HTTPS handshakes waiting for axum to take them.
const HTTPS_BACKLOG: usize = 64;

/// Pause after a failed `accept` (out of file descriptors, say) before
/// trying again, as `mqdb_broker::serve_tcp` does.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Serves MQTT over TLS on `listener` until `shutdown` completes: the TLS
/// counterpart of `mqdb_broker::serve_tcp`. Connections already open keep
/// running after it returns.
pub(crate) async fn serve_mqtts(
    broker: Broker,
    listener: TcpListener,
    tls: TlsAcceptorHandle,
    shutdown: impl Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    tokio::spawn(serve_one_mqtts(broker.clone(), stream, addr, tls.clone()));
                }
                Err(error) => {
                    tracing::warn!(listener = tls.name(), %error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            () = &mut shutdown => return,
        }
    }
}

async fn serve_one_mqtts(
    broker: Broker,
    stream: TcpStream,
    addr: SocketAddr,
    tls: TlsAcceptorHandle,
) {
    let _ = stream.set_nodelay(true);
    match tls.handshake(stream).await {
        Ok((stream, cert_username)) => {
            let info = ConnInfo {
                remote_addr: Some(addr),
                transport: Transport::Tls,
                cert_username,
                ..ConnInfo::default()
            };
            mqdb_broker::serve_connection(broker, stream, info).await;
        }
        Err(error) => {
            tracing::debug!(listener = tls.name(), peer = %addr, %error, "TLS handshake failed");
        }
    }
}

/// Who is on the other end of an HTTPS connection: what axum's
/// `ConnectInfo` sees (as `Listener::Addr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsPeer {
    pub(crate) remote_addr: SocketAddr,
    /// The username proven by a verified client certificate (mTLS).
    pub(crate) cert_username: Option<String>,
}

impl From<TlsPeer> for mqdb_http::PeerInfo {
    /// An encrypted connection, with the certificate's username if any.
    fn from(peer: TlsPeer) -> Self {
        mqdb_http::PeerInfo {
            addr: Some(peer.remote_addr),
            secure: true,
            cert_username: peer.cert_username,
        }
    }
}

/// A TLS listener for axum: yields connections whose handshake is done.
///
/// A background task accepts sockets and runs each handshake in a task of
/// its own; successful ones queue in a bounded channel that
/// [`HttpsListener::accept`] reads. Dropping the listener stops the accept
/// task and closes the socket. `accept` and `local_addr` have the
/// signatures of `axum::serve::Listener`'s methods, so implementing that
/// trait is two forwarding lines.
#[derive(Debug)]
pub(crate) struct HttpsListener {
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, TlsPeer)>,
    local_addr: SocketAddr,
    accept_task: tokio::task::AbortHandle,
}

impl HttpsListener {
    /// Starts accepting on `listener` (must be called inside a tokio
    /// runtime).
    pub(crate) fn new(listener: TcpListener, tls: TlsAcceptorHandle) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (tx, incoming) = mpsc::channel(HTTPS_BACKLOG);
        let accept_task = tokio::spawn(accept_loop(listener, tls, tx)).abort_handle();
        Ok(Self {
            incoming,
            local_addr,
            accept_task,
        })
    }

    /// The next connection with its handshake complete.
    pub(crate) async fn accept(&mut self) -> (TlsStream<TcpStream>, TlsPeer) {
        match self.incoming.recv().await {
            Some(connection) => connection,
            // The accept task holds a sender until this listener is
            // dropped, so this is unreachable short of a panic there.
            None => std::future::pending().await,
        }
    }

    /// The bound address (as a peer without a certificate, which is how
    /// axum's `Listener::local_addr` wants it).
    pub(crate) fn local_addr(&self) -> io::Result<TlsPeer> {
        Ok(TlsPeer {
            remote_addr: self.local_addr,
            cert_username: None,
        })
    }
}

impl Drop for HttpsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: TlsAcceptorHandle,
    tx: mpsc::Sender<(TlsStream<TcpStream>, TlsPeer)>,
) {
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(listener = tls.name(), %error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = tx.closed() => return,
        };
        let (tls, tx) = (tls.clone(), tx.clone());
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            match tls.handshake(stream).await {
                Ok((stream, cert_username)) => {
                    let peer = TlsPeer {
                        remote_addr: addr,
                        cert_username,
                    };
                    // Fails only when the listener is gone: the stream is
                    // dropped, closing the connection.
                    let _ = tx.send((stream, peer)).await;
                }
                Err(error) => {
                    tracing::debug!(listener = tls.name(), peer = %addr, %error, "TLS handshake failed");
                }
            }
        });
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = TlsPeer;

    fn accept(&mut self) -> impl Future<Output = (Self::Io, Self::Addr)> + Send {
        HttpsListener::accept(self)
    }

    fn local_addr(&self) -> io::Result<TlsPeer> {
        HttpsListener::local_addr(self)
    }
}
