//! MQTT 5 enhanced authentication (sections 4.12 and 3.15) with
//! SCRAM-SHA-256 (RFC 5802 / RFC 7677), at CONNECT and as
//! re-authentication. The SCRAM state machine and the user checks live in
//! the resource layer (`mqdb_resource::auth::scram`, `Security::scram_*`);
//! this module carries their messages in AUTH packets.
//!
//! At CONNECT, when the client names an Authentication Method:
//!
//! - `SCRAM-SHA-256`: the CONNECT's Authentication Data is the
//!   client-first-message; the server answers AUTH 0x18 with the
//!   server-first-message, reads the client's AUTH 0x18 with the
//!   client-final-message (within the CONNECT timeout; any packet but AUTH
//!   or DISCONNECT before CONNACK is a Protocol Error, MQTT-3.1.2-30) and
//!   answers CONNACK 0x00 carrying the method and the server-final-message
//!   (MQTT-4.12.0-5), or CONNACK 0x86 for a wrong proof or an unknown user
//!   and 0x87 for any other refusal. The user name and password of such a
//!   CONNECT are not a way in: the SCRAM proof alone authenticates, and a
//!   CONNECT user name (or a TLS client certificate) naming someone else
//!   is refused with 0x87;
//! - any other method: CONNACK 0x8C (MQTT-4.12.0-1).
//!
//! Re-authentication (section 4.12.1): AUTH 0x19 with the CONNECT's method
//! and a client-first-message, AUTH 0x18 server-first, AUTH 0x18
//! client-final, AUTH 0x00 with the server-final-message; the connection's
//! principal is then the new one (the user's current roles). It must be the
//! same user. Other packets keep flowing meanwhile under the previous
//! authentication. A failure sends DISCONNECT 0x87 (DISCONNECT has no
//! 0x86) and closes (MQTT-4.12.1-2). AUTH from a client that did not use
//! enhanced authentication at CONNECT (MQTT-4.12.0-7), with another method
//! (MQTT-4.12.1-1), or out of sequence is a Protocol Error (0x82).
//!
//! Failed exchanges emit the `auth-failed` server event, as failed
//! passwords do, and count in the per-address login throttle.

use bytes::BytesMut;
use mqdb_codec::{
    Auth, AuthProperties, ByteString, ConnAckProperties, ConnectProperties, DecodeError, Limits,
    Packet, ReasonCode, Version, decode,
};
use mqdb_resource::auth::{SCRAM_SHA_256, ScramServer};
use mqdb_resource::{AuthError, Principal};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};

use super::{CONNECT_TIMEOUT, Close, Conn};
use crate::events::EventKind;

/// The enhanced authentication state of a connection.
#[derive(Debug, Default)]
pub(super) struct EnhancedAuth {
    /// The method authenticated with at CONNECT; `None` when the client
    /// did not use enhanced authentication.
    method: Option<ByteString>,
    /// A re-authentication waiting for the client-final-message (boxed:
    /// rare, and every connection carries this state).
    pending: Option<Box<ScramServer>>,
}

/// The socket halves and read buffer of a connection, lent to CONNECT
/// handling for an AUTH exchange before CONNACK.
pub(super) struct Io<'a, R, W> {
    pub(super) reader: &'a mut R,
    pub(super) writer: &'a mut W,
    pub(super) rbuf: &'a mut BytesMut,
    pub(super) limits: Limits,
}

/// How a CONNECT is authenticated.
pub(super) enum ConnectAuth {
    /// No Authentication Method: user name and password (or certificate).
    Password,
    /// The exchange ended: the principal, or the CONNACK code and reason.
    Done(Result<Principal, (ReasonCode, String)>),
    /// The client left, sent DISCONNECT or ran out of time: no CONNACK.
    Closed,
}

/// What the client sent next during the exchange at CONNECT.
enum Next {
    Packet(Packet),
    Malformed(DecodeError),
    Closed,
}

impl Conn {
    /// Runs the enhanced authentication of a CONNECT whose properties are
    /// `props`, if it names a method; on success, fills the CONNACK's
    /// Authentication Method and Data into `ack`. `username` is the
    /// CONNECT's User Name.
    pub(super) async fn connect_auth<R, W>(
        &mut self,
        props: &ConnectProperties,
        username: Option<&str>,
        ack: &mut ConnAckProperties,
        io: Io<'_, R, W>,
    ) -> ConnectAuth
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let Some(method) = props.authentication_method.clone() else {
            return ConnectAuth::Password;
        };
        let refuse = |code, why: String| ConnectAuth::Done(Err((code, why)));
        if &*method != SCRAM_SHA_256 {
            return refuse(
                ReasonCode::BadAuthenticationMethod,
                format!(
                    "authentication method `{method}` is not supported; \
                     this server offers {SCRAM_SHA_256}"
                ),
            );
        }
        let Some(client_first) = props.authentication_data.clone() else {
            return refuse(
                ReasonCode::NotAuthorized,
                format!("{SCRAM_SHA_256} needs the client-first-message as Authentication Data"),
            );
        };
        let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
        let security = self.broker.security().clone();
        let (exchange, server_first) = match security.scram_start(&client_first) {
            Ok(started) => started,
            Err(e) => return ConnectAuth::Done(Err(connack_refusal(e))),
        };
        let scram_user = exchange.username().to_owned();
        self.username = Some(scram_user.clone());
        self.send(&auth_packet(
            ReasonCode::ContinueAuthentication,
            &method,
            server_first,
        ));
        if self.flush(io.writer).await.is_err() {
            return ConnectAuth::Closed;
        }
        let client_final = match next_packet(io.reader, io.rbuf, io.limits, deadline).await {
            Next::Packet(Packet::Auth(a))
                if a.reason_code == ReasonCode::ContinueAuthentication
                    && a.properties.authentication_method.as_ref() == Some(&method) =>
            {
                a.properties.authentication_data.unwrap_or_default()
            }
            Next::Packet(Packet::Auth(_)) => {
                return refuse(
                    ReasonCode::ProtocolError,
                    format!(
                        "expected AUTH Continue Authentication (0x18) with method \
                         {SCRAM_SHA_256}"
                    ),
                );
            }
            Next::Packet(Packet::Disconnect(_)) | Next::Closed => {
                tracing::debug!(client = %self.client_id, peer = %self.info.peer(), "enhanced authentication abandoned");
                return ConnectAuth::Closed;
            }
            Next::Packet(p) => {
                return refuse(
                    ReasonCode::ProtocolError,
                    format!(
                        "{:?} before CONNACK: only AUTH or DISCONNECT may be sent during \
                         authentication (MQTT-3.1.2-30)",
                        p.packet_type()
                    ),
                );
            }
            Next::Malformed(e) => return refuse(e.reason_code(), format!("malformed packet: {e}")),
        };
        let remote = self.info.remote_addr.map(|a| a.ip());
        let (principal, server_final) =
            match security.scram_login(exchange, &client_final, remote).await {
                Ok(done) => done,
                Err(e) => return ConnectAuth::Done(Err(connack_refusal(e))),
            };
        if let Some(other) = username.filter(|u| *u != scram_user) {
            return refuse(
                ReasonCode::NotAuthorized,
                format!("the user name `{other}` differs from the SCRAM user `{scram_user}`"),
            );
        }
        if let Some(cert) = self
            .info
            .cert_username
            .as_deref()
            .filter(|c| *c != scram_user)
        {
            return refuse(
                ReasonCode::NotAuthorized,
                format!(
                    "the SCRAM user `{scram_user}` differs from the client certificate's `{cert}`"
                ),
            );
        }
        ack.authentication_method = Some(method.clone());
        ack.authentication_data = Some(server_final.into());
        self.enhanced.method = Some(method);
        ConnectAuth::Done(Ok(principal))
    }

    /// An AUTH packet after CONNACK: re-authentication (section 4.12.1).
    pub(super) async fn handle_auth(&mut self, a: Auth) -> Result<(), Close> {
        let Some(method) = self.enhanced.method.clone() else {
            return Err(Close::Server(
                ReasonCode::ProtocolError,
                "AUTH from a client that did not use enhanced authentication (MQTT-4.12.0-7)",
            ));
        };
        if a.properties.authentication_method.as_ref() != Some(&method) {
            return Err(Close::Server(
                ReasonCode::ProtocolError,
                "AUTH with another authentication method than CONNECT's (MQTT-4.12.1-1)",
            ));
        }
        let data = a.properties.authentication_data.unwrap_or_default();
        let security = self.broker.security().clone();
        match (a.reason_code, self.enhanced.pending.take()) {
            (ReasonCode::ReAuthenticate, None) => {
                let (exchange, server_first) = match security.scram_start(&data) {
                    Ok(started) => started,
                    Err(e) => return Err(self.reauth_failed(&e)),
                };
                if Some(exchange.username()) != self.username.as_deref() {
                    let e = AuthError::NotAuthorized(format!(
                        "re-authentication as `{}` on a connection of another user",
                        exchange.username()
                    ));
                    return Err(self.reauth_failed(&e));
                }
                self.enhanced.pending = Some(Box::new(exchange));
                self.send(&auth_packet(
                    ReasonCode::ContinueAuthentication,
                    &method,
                    server_first,
                ));
                Ok(())
            }
            (ReasonCode::ContinueAuthentication, Some(exchange)) => {
                let remote = self.info.remote_addr.map(|a| a.ip());
                match security.scram_login(*exchange, &data, remote).await {
                    Ok((principal, server_final)) => {
                        self.principal = Some(principal);
                        self.send(&auth_packet(ReasonCode::Success, &method, server_final));
                        tracing::debug!(client = %self.client_id, user = ?self.username, "re-authenticated");
                        Ok(())
                    }
                    Err(e) => Err(self.reauth_failed(&e)),
                }
            }
            (ReasonCode::ReAuthenticate, Some(_)) => Err(Close::Server(
                ReasonCode::ProtocolError,
                "AUTH Re-authenticate while a re-authentication is in progress",
            )),
            (ReasonCode::ContinueAuthentication, None) => Err(Close::Server(
                ReasonCode::ProtocolError,
                "AUTH Continue Authentication without an exchange in progress",
            )),
            _ => Err(Close::Server(
                ReasonCode::ProtocolError,
                "AUTH Success from a client",
            )),
        }
    }

    /// A failed re-authentication: the `auth-failed` event, then the
    /// DISCONNECT that closes the connection (MQTT-4.12.1-2).
    fn reauth_failed(&self, e: &AuthError) -> Close {
        self.event(
            EventKind::AuthFailed,
            Some(format!("re-authentication: {e}")),
        );
        tracing::debug!(client = %self.client_id, peer = %self.info.peer(), error = %e, "re-authentication failed");
        match e {
            AuthError::BadCredentials => Close::Server(
                ReasonCode::NotAuthorized,
                "re-authentication failed: bad user name or password",
            ),
            AuthError::NotAuthorized(_) => {
                Close::Server(ReasonCode::NotAuthorized, "re-authentication refused")
            }
            _ => Close::Server(
                ReasonCode::UnspecifiedError,
                "re-authentication failed: the user store is unavailable",
            ),
        }
    }
}

/// An AUTH packet with `method` and `data`.
fn auth_packet(reason_code: ReasonCode, method: &ByteString, data: Vec<u8>) -> Packet {
    Packet::Auth(Auth {
        reason_code,
        properties: AuthProperties {
            authentication_method: Some(method.clone()),
            authentication_data: Some(data.into()),
            ..Default::default()
        },
    })
}

/// The CONNACK code and reason of a refused exchange: 0x86 for a wrong
/// proof or an unknown user (as for passwords), 0x87 otherwise.
fn connack_refusal(e: AuthError) -> (ReasonCode, String) {
    let code = match e {
        AuthError::BadCredentials => ReasonCode::BadUserNameOrPassword,
        AuthError::NotAuthorized(_) => ReasonCode::NotAuthorized,
        _ => ReasonCode::ServerUnavailable,
    };
    (code, e.to_string())
}

/// The next packet of a 5.0 client before CONNACK, by `deadline`.
async fn next_packet<R: AsyncRead + Unpin>(
    reader: &mut R,
    rbuf: &mut BytesMut,
    limits: Limits,
    deadline: tokio::time::Instant,
) -> Next {
    loop {
        match decode(rbuf, Version::V5, &limits) {
            Ok(Some(p)) => return Next::Packet(p),
            Ok(None) => {}
            Err(e) => return Next::Malformed(e),
        }
        match tokio::time::timeout_at(deadline, reader.read_buf(rbuf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return Next::Closed,
        }
    }
}
