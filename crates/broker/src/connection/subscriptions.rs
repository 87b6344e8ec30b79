//! SUBSCRIBE and UNSUBSCRIBE on a connection, and the bounded streaming of
//! a new subscription's retained messages into the session.

use mqdb_codec::{
    Packet, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, UnsubAck, Unsubscribe,
};
use mqdb_resource::Format;

use super::{Conn, RETAINED_STEP};
use crate::broker::{Client, Fit, Sub};

impl Conn {
    pub(super) async fn handle_subscribe(&mut self, s: Subscribe, client: &Client) {
        let mut codes = Vec::with_capacity(s.filters.len());
        let accept = s
            .properties
            .user_properties
            .iter()
            .find(|u| &*u.name == "accept")
            .and_then(|u| Format::from_accept(&u.value))
            .unwrap_or(self.accept);
        let mut retained = Vec::new();
        let mut reason: Option<String> = None;
        for (filter, options) in &s.filters {
            // Permission on the filter (a shared one: on its inner filter).
            let inner = crate::share::parse_filter(filter.as_str())
                .map_or(filter.as_str(), |sub| sub.filter());
            if let Err(denied) = self.authorize_subscribe(inner) {
                tracing::debug!(client = %self.client_id, filter = filter.as_str(), %denied, "subscription refused");
                if self.v5() && self.problem_information && reason.is_none() {
                    reason = Some(denied.0);
                }
                codes.push(if self.v5() {
                    ReasonCode::NotAuthorized
                } else {
                    ReasonCode::UnspecifiedError
                });
                continue;
            }
            if filter.is_shared() && inner.contains('?') {
                if self.v5() && self.problem_information && reason.is_none() {
                    reason = Some("a query subscription cannot be shared".into());
                }
                codes.push(if self.v5() {
                    ReasonCode::TopicFilterInvalid
                } else {
                    ReasonCode::UnspecifiedError
                });
                continue;
            }
            let sub = Sub {
                options: *options,
                id: s.properties.subscription_identifier,
                format: accept,
            };
            let existed = self
                .broker
                .subscribe(&self.client_id, client, filter, sub.clone());
            codes.push(match options.qos {
                QoS::AtMostOnce => ReasonCode::Success,
                QoS::AtLeastOnce => ReasonCode::GrantedQos1,
                QoS::ExactlyOnce => ReasonCode::GrantedQos2,
            });
            // No retained messages for a shared subscription (MQTT 5.0
            // section 4.8.2).
            let send_retained = !filter.is_shared()
                && match options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => !existed,
                    RetainHandling::DoNotSend => false,
                };
            if send_retained {
                retained.push((self.broker.retained_for(filter), sub));
            }
        }
        self.broker.persist(&self.client_id, client).await;
        let properties = mqdb_codec::AckProperties {
            reason_string: reason.map(Into::into),
            ..Default::default()
        };
        let ack = SubAck {
            packet_id: s.packet_id,
            properties,
            reason_codes: codes,
        };
        self.send(&Packet::SubAck(ack));
        // After the SUBACK (MQTT-3.8.4-?), the retained messages follow.
        self.retained.extend(retained);
    }

    pub(super) async fn handle_unsubscribe(&mut self, u: Unsubscribe, client: &Client) {
        let codes = u
            .filters
            .iter()
            .map(|f| {
                if self.broker.unsubscribe(&self.client_id, client, f) {
                    ReasonCode::Success
                } else {
                    ReasonCode::NoSubscriptionExisted
                }
            })
            .collect();
        self.broker.persist(&self.client_id, client).await;
        let ack = UnsubAck {
            packet_id: u.packet_id,
            properties: Default::default(),
            reason_codes: codes,
        };
        self.send(&Packet::UnsubAck(ack));
    }

    /// Feeds retained messages of new subscriptions into the session a step
    /// at a time, while its queue is short (never a whole table in memory).
    pub(super) fn pull_retained(&mut self, client: &Client) {
        while let Some((iter, sub)) = self.retained.first_mut() {
            if client.lock().expect("client lock").session.queued() > RETAINED_STEP {
                return;
            }
            let mut moved = 0;
            for msg in iter.by_ref() {
                let fit = Fit {
                    qos: msg.qos.min(sub.options.qos),
                    retain: true,
                    ids: sub.id.into_iter().collect(),
                    format: sub.format,
                    shared: None,
                };
                self.broker.deliver(client, &msg, &fit, true);
                moved += 1;
                if moved == RETAINED_STEP {
                    break;
                }
            }
            if moved < RETAINED_STEP {
                drop(self.retained.remove(0));
            } else {
                return;
            }
        }
    }
}
