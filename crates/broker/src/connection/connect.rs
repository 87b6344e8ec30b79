//! CONNECT: reading the client's settings, authenticating it, attaching
//! its session and answering CONNACK; and the answer to a CONNECT that
//! cannot be decoded.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use mqdb_codec::{
    ConnAck, ConnAckProperties, Connect, DecodeError, Packet, Publish, ReasonCode, Version, encode,
};
use mqdb_resource::Format;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _};

use super::Conn;
use super::enhanced_auth::{ConnectAuth, Io};
use crate::events::EventKind;
use crate::session::ResendPacket;

impl Conn {
    pub(super) async fn handle_connect<R, W>(&mut self, c: Box<Connect>, io: Io<'_, R, W>)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let c = *c;
        let credentials = (
            c.username.as_ref().map(|u| u.to_string()),
            c.password.as_ref().map(|p| p.to_vec()),
        );
        let props = &c.properties;
        let mut ack_props = ConnAckProperties::default();
        let assigned = c.client_id.is_empty();
        self.client_id = if assigned {
            format!("mqdb-{:016x}", self.id.wrapping_mul(0x9E37_79B9_7F4A_7C15)).into()
        } else {
            Arc::from(&*c.client_id)
        };
        if assigned && self.v5() {
            ack_props.assigned_client_identifier = Some(self.client_id.to_string().into());
        }
        self.problem_information = props.request_problem_information.unwrap_or(true);
        for up in &props.user_properties {
            match &*up.name {
                "accept" => self.accept = Format::from_accept(&up.value).unwrap_or_default(),
                "content-type" => self.declared = Format::from_content_type(&up.value),
                _ => {}
            }
        }
        self.client_max_packet = props.maximum_packet_size.map(|m| m.get());
        // Request Response Information (5.0): a topic prefix of this
        // client's own for the responses it asks for.
        if self.v5() && props.request_response_information == Some(true) {
            ack_props.response_information = Some(format!("reply/{}/", self.client_id).into());
        }
        // Outbound aliases: up to the client's maximum and ours (5.0).
        if self.v5() {
            let max = props
                .topic_alias_maximum
                .unwrap_or(0)
                .min(self.broker.config().topic_alias_maximum);
            self.aliases_out = super::aliases::OutboundAliases::new(max);
        }
        // 3.1.1: clean session 0 keeps the session forever; 5.0: the interval.
        self.session_expiry = if self.v5() {
            props.session_expiry_interval.unwrap_or(0)
        } else if c.clean_start {
            0
        } else {
            u32::MAX
        };
        let max_keepalive = self.broker.config().max_keepalive;
        let mut keep_alive = c.keep_alive;
        if max_keepalive > 0 && (keep_alive == 0 || keep_alive > max_keepalive) {
            keep_alive = max_keepalive;
            ack_props.server_keep_alive = Some(keep_alive);
        }
        self.keep_alive = Duration::from_secs(u64::from(keep_alive));
        self.will_delay = c
            .will
            .as_ref()
            .and_then(|w| w.properties.will_delay_interval)
            .unwrap_or(0);
        self.will = c.will.map(|w| {
            Box::new(Publish {
                dup: false,
                qos: w.qos,
                retain: w.retain,
                topic: w.topic,
                packet_id: None,
                properties: mqdb_codec::PublishProperties {
                    payload_format_indicator: w.properties.payload_format_indicator,
                    message_expiry_interval: w.properties.message_expiry_interval,
                    content_type: w.properties.content_type,
                    response_topic: w.properties.response_topic,
                    correlation_data: w.properties.correlation_data,
                    user_properties: w.properties.user_properties,
                    ..Default::default()
                },
                payload: w.payload,
            })
        });
        let mut server_reference: Option<String> = None;
        // 3.1.1 MQTT-3.1.3-8: an empty client id needs a clean session.
        let refusal = if !self.v5() && assigned && !c.clean_start {
            Some((
                ReasonCode::ClientIdentifierNotValid,
                "an empty client id needs a clean session".to_owned(),
            ))
        } else if let Some(moved) = &self.broker.config().server_reference {
            // This server sends its clients elsewhere (MQTT 5.0 4.11).
            server_reference = Some(moved.clone());
            Some((
                ReasonCode::ServerMoved,
                format!("this server has moved to {moved}"),
            ))
        } else if self.will.as_ref().is_some_and(|w| !utf8_ok(w)) {
            Some((
                ReasonCode::PayloadFormatInvalid,
                "will: the payload format indicator says UTF-8 but the payload is not".to_owned(),
            ))
        } else {
            // Enhanced authentication hook (enhanced_auth.rs): with an
            // Authentication Method, its AUTH exchange replaces the user
            // name and password check.
            let auth = self
                .connect_auth(props, credentials.0.as_deref(), &mut ack_props, io)
                .await;
            let outcome = match auth {
                ConnectAuth::Password => self.authenticate(credentials.0, credentials.1).await,
                ConnectAuth::Done(outcome) => outcome,
                ConnectAuth::Closed => {
                    self.will = None;
                    return;
                }
            };
            match outcome {
                Ok(principal) => {
                    self.principal = Some(principal);
                    // A will the client could not publish itself is refused
                    // now, not silently dropped at disconnect.
                    match self.will.as_ref().map(|w| self.authorize_publish(w)) {
                        Some(Err(e)) => Some((ReasonCode::NotAuthorized, format!("will: {e}"))),
                        _ => None,
                    }
                }
                Err(refused) => Some(refused),
            }
        };
        if let Some((reason_code, why)) = refusal {
            let mut properties = ConnAckProperties::default();
            if self.v5() {
                properties.server_reference = server_reference.map(Into::into);
            }
            if matches!(
                reason_code,
                ReasonCode::BadUserNameOrPassword | ReasonCode::NotAuthorized
            ) {
                self.event(EventKind::AuthFailed, Some(why.clone()));
            }
            tracing::debug!(client = %self.client_id, peer = %self.info.peer(), reason = %why, "CONNECT refused");
            if self.v5() && self.problem_information {
                properties.reason_string = Some(why.into());
            }
            let ack = ConnAck {
                session_present: false,
                reason_code,
                properties,
            };
            self.send(&Packet::ConnAck(Box::new(ack)));
            self.will = None;
            self.principal = None;
            return;
        }
        let (client, present) =
            self.broker
                .attach(&self.client_id, self.id, c.clean_start, self.session_expiry);
        let config = self.broker.config();
        if self.v5() {
            ack_props.receive_maximum = std::num::NonZeroU16::new(config.receive_maximum);
            ack_props.maximum_packet_size = std::num::NonZeroU32::new(config.max_packet_size);
            ack_props.topic_alias_maximum = Some(config.topic_alias_maximum);
            ack_props.retain_available = Some(true);
            ack_props.wildcard_subscription_available = Some(true);
            ack_props.subscription_identifiers_available = Some(true);
            ack_props.shared_subscription_available = Some(true);
        }
        let ack = ConnAck {
            session_present: present,
            reason_code: ReasonCode::Success,
            properties: ack_props,
        };
        self.send(&Packet::ConnAck(Box::new(ack)));
        let resend = {
            let mut c = client.lock().expect("client lock");
            let window = props.receive_maximum.map_or(u16::MAX, |m| m.get());
            c.session
                .set_receive_maximum(window.min(self.broker.config().max_inflight));
            c.outbox.clear();
            c.session.resume()
        };
        for p in resend {
            match p {
                ResendPacket::Publish(p) => self.send(&Packet::Publish(p)),
                ResendPacket::PubRel(r) => self.send(&Packet::PubRel(r)),
            }
        }
        self.client = Some(client);
        self.event(EventKind::Connected, None);
        tracing::debug!(client = %self.client_id, peer = %self.info.peer(), transport = %self.info.transport, version = ?self.version, present, "connected");
    }
}

/// A CONNECT that cannot be decoded: 3.1.1 answers an unsupported level
/// with return code 1 (MQTT-3.1.2-2), 5.0 refuses with the error's reason.
pub(super) async fn refuse_malformed_connect<W: AsyncWrite + Unpin>(
    writer: &mut W,
    e: &DecodeError,
) {
    let (version, reason) = match e.v3_connack_code() {
        Some(_) => (Version::V311, ReasonCode::UnsupportedProtocolVersion),
        None => (Version::V5, e.reason_code()),
    };
    let ack = Packet::ConnAck(Box::new(ConnAck {
        session_present: false,
        reason_code: reason,
        properties: Default::default(),
    }));
    let mut buf = BytesMut::new();
    if encode(&ack, version, &mut buf).is_ok() {
        let _ = writer.write_all(&buf).await;
        let _ = writer.flush().await;
    }
}

/// Whether a will or message's payload honours its payload format
/// indicator: UTF-8 when the indicator says so (MQTT-3.3.2-4).
pub(super) fn utf8_ok(p: &Publish) -> bool {
    p.properties.payload_format_indicator != Some(mqdb_codec::PayloadFormat::Utf8)
        || std::str::from_utf8(&p.payload).is_ok()
}
