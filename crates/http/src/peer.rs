//! Who is on the other end of an HTTP connection, as far as the listener
//! knows: the client's address, whether the connection is encrypted, and
//! the username a verified TLS client certificate proves.
//!
//! [`crate::serve_with`] serves any [`axum::serve::Listener`] whose address
//! converts into a [`PeerInfo`] (a TCP listener's `SocketAddr` does; a TLS
//! listener's address type says `secure` and carries the certificate's
//! user). Every request then carries it as
//! `axum::extract::ConnectInfo<PeerInfo>`.

use std::net::SocketAddr;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};

/// What the listener knows about a connection's client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// The client's address, when the transport has one.
    pub addr: Option<SocketAddr>,
    /// Whether the connection is encrypted (HTTPS, and WebSocket over TLS).
    pub secure: bool,
    /// The username proven by a verified TLS client certificate.
    pub cert_username: Option<String>,
}

impl From<SocketAddr> for PeerInfo {
    /// A plain (unencrypted) connection from `addr`.
    fn from(addr: SocketAddr) -> Self {
        PeerInfo {
            addr: Some(addr),
            secure: false,
            cert_username: None,
        }
    }
}

/// A listener whose addresses are turned into [`PeerInfo`] as connections
/// are accepted, so that one `Connected` impl serves every listener type.
#[derive(Debug)]
pub(crate) struct PeerListener<L>(pub(crate) L);

impl<L> Listener for PeerListener<L>
where
    L: Listener,
    L::Addr: Into<PeerInfo>,
{
    type Io = L::Io;
    type Addr = PeerInfo;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.0.accept().await;
        (io, addr.into())
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr().map(Into::into)
    }
}

impl<L> Connected<IncomingStream<'_, PeerListener<L>>> for PeerInfo
where
    L: Listener,
    L::Addr: Into<PeerInfo>,
{
    fn connect_info(stream: IncomingStream<'_, PeerListener<L>>) -> Self {
        stream.remote_addr().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_address_is_a_plain_connection() {
        let addr: SocketAddr = "127.0.0.1:4242".parse().unwrap();
        let peer = PeerInfo::from(addr);
        assert_eq!(peer.addr, Some(addr));
        assert!(!peer.secure);
        assert_eq!(peer.cert_username, None);
    }
}
