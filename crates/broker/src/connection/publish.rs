//! PUBLISH from a client: topic aliases, the Receive Maximum, QoS 2
//! duplicates, authorisation, submission to the broker (QoS 0 deliveries
//! batched per read), and the acknowledgement that follows.

use mqdb_codec::{Disconnect, Packet, PacketId, PubAck, PubRec, Publish, QoS, ReasonCode};
use mqdb_resource::ResourceError;
use mqdb_storage::StorageError;

use super::{Close, Conn, ReplyStyle, connect};
use crate::broker::{Client, PublishError};

/// QoS 0 deliveries a connection batches before handing them over even in
/// the middle of a read (bounds the batch and the delay it adds).
pub(super) const MAX_BATCH: usize = 256;

impl Conn {
    pub(super) async fn handle_publish(
        &mut self,
        mut p: Publish,
        client: &Client,
    ) -> Result<(), Close> {
        // Inbound topic aliases (5.0, section 3.3.2.3.4).
        if let Some(alias) = p.properties.topic_alias {
            if alias.get() > self.broker.config().topic_alias_maximum {
                return Err(Close::Server(
                    ReasonCode::TopicAliasInvalid,
                    "topic alias above the maximum",
                ));
            }
            if p.topic.is_empty() {
                match self.topic_aliases.get(&alias.get()) {
                    Some(t) => p.topic = t.clone(),
                    None => {
                        return Err(Close::Server(
                            ReasonCode::ProtocolError,
                            "unknown topic alias",
                        ));
                    }
                }
            } else {
                self.topic_aliases.insert(alias.get(), p.topic.clone());
            }
            p.properties.topic_alias = None;
        }
        // MQTT-3.3.4-6 does not forbid relaying; but a client may not set
        // subscription identifiers on what it publishes (section 3.3.4).
        if !p.properties.subscription_identifiers.is_empty() {
            return Err(Close::Server(
                ReasonCode::ProtocolError,
                "subscription identifier from a client",
            ));
        }
        // MQTT-3.3.4-9: more unacknowledged QoS 1/2 publishes than the
        // Receive Maximum we announced is a protocol violation (0x93). A
        // QoS 1 publish counts until its PUBACK, a QoS 2 one until PUBCOMP
        // (its id stays in the session until PUBREL).
        if p.qos != QoS::AtMostOnce {
            let qos2_open = client
                .lock()
                .expect("client lock")
                .session
                .pending_incoming()
                .count();
            if self.unacked_in + qos2_open >= usize::from(self.broker.config().receive_maximum) {
                return Err(Close::Server(
                    ReasonCode::ReceiveMaximumExceeded,
                    "receive maximum exceeded",
                ));
            }
            if p.qos == QoS::AtLeastOnce {
                self.unacked_in += 1;
            }
        }
        let pid = p.packet_id;
        if p.qos == QoS::ExactlyOnce {
            let id = pid.expect("QoS 2 has a packet id");
            if !client
                .lock()
                .expect("client lock")
                .session
                .incoming_qos2(id)
            {
                // A retransmission before PUBREL: acknowledge, deliver nothing.
                self.acks.push_back(Box::pin(async move {
                    (false, Some(Packet::PubRec(PubRec::new(id))))
                }));
                return Ok(());
            }
        }
        let checked = if connect::utf8_ok(&p) {
            self.authorize_publish(&p)
        } else {
            Err(PublishError::PayloadFormat)
        };
        if let Err(e) = checked {
            let packet = ack_for(Err(e), p.qos, pid, self.reply_style(), client);
            self.acks
                .push_back(Box::pin(async move { (p.qos == QoS::AtLeastOnce, packet) }));
            return Ok(());
        }
        let declared = self.declared;
        let v5 = self.reply_style();
        let qos = p.qos;
        // Submitted now, in the order received: a retained publish's write
        // is queued here (waiting only for queue space), so writes to one
        // record commit in order while many are in flight; the ack follows
        // when the write is durable, acks in order (MQTT-4.6.0-2).
        // A QoS 0 message's QoS 0 deliveries wait in the batch (handed over
        // at the end of this read); anything else is delivered now, after
        // what the batch holds, so a subscriber sees this client's messages
        // in the order sent.
        let batch = if qos == QoS::AtMostOnce {
            Some(&mut self.batch)
        } else {
            self.deliver_batch().await;
            None
        };
        // The broker and the client are borrowed, not cloned, per publish
        // (profiled: the broker's reference count, shared by every
        // connection, bounced between cores at 6% of QoS 0 fan-in).
        self.received += 1;
        let submitted = self
            .broker
            .submit_publish(&p, Some(&self.client_id), declared, batch)
            .await;
        match submitted {
            Ok(done) if self.acks.is_empty() && !p.retain => {
                // Delivered already and nothing ahead of it: ack now.
                let packet = ack_for(done.await, qos, pid, v5, client);
                return self.acked(qos == QoS::AtLeastOnce, packet);
            }
            Ok(done) => {
                let client = client.clone();
                self.acks.push_back(Box::pin(async move {
                    let result = done.await;
                    (
                        qos == QoS::AtLeastOnce,
                        ack_for(result, qos, pid, v5, &client),
                    )
                }));
            }
            Err(e) => {
                let packet = ack_for(Err(e), qos, pid, v5, client);
                self.acks
                    .push_back(Box::pin(async move { (qos == QoS::AtLeastOnce, packet) }));
            }
        }
        Ok(())
    }

    /// Hands the batched QoS 0 deliveries to their subscribers, waiting
    /// while any of them is above its high-water mark (this publisher goes
    /// at the pace its subscribers take).
    pub(super) async fn deliver_batch(&mut self) {
        loop {
            let paced = self.broker.flush(&mut self.batch);
            if paced.is_empty() {
                // Nothing paced: the batch was handed over whole.
                return;
            }
            self.broker.wait_paced(paced).await;
        }
    }
}

/// The acknowledgement for a processed publish. A refused publish gets a
/// 5.0 reason code; a 3.1.1 client has no way to hear it, so its connection
/// is closed (SPEC section 2), signalled by returning a DISCONNECT.
fn ack_for(
    result: Result<(), PublishError>,
    qos: QoS,
    pid: Option<PacketId>,
    style: ReplyStyle,
    client: &Client,
) -> Option<Packet> {
    let v5 = style.v5;
    let reason = match &result {
        Ok(()) => ReasonCode::Success,
        Err(PublishError::FreeTopicsDisabled | PublishError::Reserved) => {
            ReasonCode::TopicNameInvalid
        }
        Err(PublishError::Resource(ResourceError::Malformed(_))) => {
            ReasonCode::PayloadFormatInvalid
        }
        // A full disk is a limit reached, not a fault of this message.
        Err(PublishError::Resource(ResourceError::Storage(StorageError::Full(_)))) => {
            ReasonCode::QuotaExceeded
        }
        Err(PublishError::Resource(e)) if e.is_client_error() => ReasonCode::PayloadFormatInvalid,
        Err(PublishError::NotAuthorized(_)) => ReasonCode::NotAuthorized,
        Err(PublishError::PayloadFormat) => ReasonCode::PayloadFormatInvalid,
        Err(PublishError::Resource(_)) => ReasonCode::ImplementationSpecificError,
    };
    if let Err(e) = &result {
        tracing::debug!(error = %e, "publish refused");
    }
    // 3.1.1 cannot hear a refusal; a 5.0 QoS 0 publish has no ack to carry
    // one, so a refused one ends the connection with its reason code
    // rather than vanishing (errors are visible, never silent).
    if reason.is_error() && (!v5 || qos == QoS::AtMostOnce) {
        return Some(Packet::Disconnect(Disconnect::new(reason)));
    }
    // Omitted when the client set Request Problem Information to 0.
    let reason_string = result
        .err()
        .filter(|_| style.problem_information)
        .map(|e| mqdb_codec::ByteString::from(e.to_string()));
    let pid = pid?;
    match qos {
        QoS::AtMostOnce => None,
        QoS::AtLeastOnce => {
            let mut ack = PubAck::new(pid);
            ack.reason_code = reason;
            ack.properties.reason_string = reason_string;
            Some(Packet::PubAck(ack))
        }
        QoS::ExactlyOnce => {
            if reason.is_error() {
                client
                    .lock()
                    .expect("client lock")
                    .session
                    .forget_incoming_qos2(pid);
            }
            let mut ack = PubRec::new(pid);
            ack.reason_code = reason;
            ack.properties.reason_string = reason_string;
            Some(Packet::PubRec(ack))
        }
    }
}
