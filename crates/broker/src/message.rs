//! `Message`: one application message on its way to subscribers, shared by
//! all of them (`Arc`). A record change is encoded once per wire format the
//! subscribers ask for and the bytes are cached on the message; a message
//! published on a free topic (or without retain) travels as the bytes it was
//! sent with.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use mqdb_codec::{
    ByteString, PayloadFormat, PublishProperties, QoS, SubscriptionId, TopicName, UserProperty,
};
use mqdb_resource::{Body, Format, Map, Meta, Value};

/// What a message carries.
#[derive(Debug, Clone)]
pub enum Payload {
    /// Bytes as published, delivered unchanged (with the publisher's
    /// properties).
    Raw(Bytes),
    /// A structured value: delivered in each subscriber's preferred format.
    Structured(Map),
}

/// An application message.
#[derive(Debug)]
pub struct Message {
    /// Topic.
    pub topic: TopicName,
    /// Payload.
    pub payload: Payload,
    /// QoS as published (deliveries take the minimum with the subscription's).
    pub qos: QoS,
    /// RETAIN as published (for retain-as-published subscriptions).
    pub retain: bool,
    /// Properties as published (5.0): content type, user properties, etc.
    pub properties: PublishProperties,
    /// The client it came from (for No Local), if any.
    pub origin: Option<Arc<str>>,
    /// When it expires (Unix ms), from a Message Expiry Interval.
    pub expires_at: Option<u64>,
    encoded: [OnceLock<Bytes>; 3],
}

impl Message {
    /// A message.
    pub fn new(
        topic: TopicName,
        payload: Payload,
        qos: QoS,
        retain: bool,
        properties: PublishProperties,
        origin: Option<Arc<str>>,
    ) -> Arc<Message> {
        let expires_at = properties
            .message_expiry_interval
            .map(|secs| now_ms() + u64::from(secs) * 1000);
        Arc::new(Message {
            topic,
            payload,
            qos,
            retain,
            properties,
            origin,
            expires_at,
            encoded: Default::default(),
        })
    }

    /// A stored record as a message on `topic` (its metadata becomes
    /// properties again). Its QoS is the one it was published with over
    /// MQTT, else `qos` (REST writes have none: delivered at the
    /// subscription's QoS); its origin is the client that wrote it.
    pub fn from_record(
        topic: TopicName,
        body: Body,
        meta: &Meta,
        qos: QoS,
        retain: bool,
    ) -> Arc<Message> {
        let qos = meta.qos.and_then(QoS::from_u8).unwrap_or(qos);
        let mut properties = PublishProperties {
            payload_format_indicator: meta.payload_utf8.map(|utf8| {
                if utf8 {
                    PayloadFormat::Utf8
                } else {
                    PayloadFormat::Unspecified
                }
            }),
            response_topic: meta.response_topic.clone().map(ByteString::from),
            correlation_data: meta.correlation_data.clone(),
            user_properties: meta
                .user_properties
                .iter()
                .map(|(k, v)| UserProperty::new(k.as_str(), v.as_str()))
                .collect(),
            ..PublishProperties::default()
        };
        let payload = match body {
            Body::Map(m) => Payload::Structured(m),
            Body::Binary(b) => {
                properties.content_type = meta.content_type.clone().map(ByteString::from);
                Payload::Raw(b)
            }
        };
        let mut msg = Message::new(
            topic,
            payload,
            qos,
            retain,
            PublishProperties::default(),
            None,
        );
        let m = Arc::get_mut(&mut msg).expect("fresh message");
        m.properties = properties;
        m.expires_at = meta.expires_at;
        m.origin = meta.origin.as_deref().map(Arc::from);
        msg
    }

    /// The payload bytes for a subscriber that prefers `format`, and the
    /// content type to announce (5.0). Structured payloads are encoded once
    /// per format and the bytes shared by every subscriber.
    pub fn render(&self, format: Format) -> (Bytes, Option<ByteString>) {
        match &self.payload {
            Payload::Raw(bytes) => (bytes.clone(), self.properties.content_type.clone()),
            Payload::Structured(map) => {
                let slot = &self.encoded[format_index(format)];
                let bytes = slot
                    .get_or_init(|| Bytes::from(format.encode(&Value::Map(map.clone()))))
                    .clone();
                (bytes, Some(ByteString::from_static(format.content_type())))
            }
        }
    }

    /// Whether the client `client_id` published it (No Local; a publisher
    /// is never paced by its own queue).
    pub fn is_from(&self, client_id: &Arc<str>) -> bool {
        self.origin.as_ref() == Some(client_id)
    }

    /// Whether the message has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at.is_some_and(|at| at <= now_ms)
    }

    /// The properties of a delivery to one subscriber (5.0): the publisher's,
    /// with the remaining expiry, this subscriber's subscription identifiers
    /// and the content type of the rendered payload. The topic alias of the
    /// publisher is never forwarded.
    pub fn delivery_properties(
        &self,
        content_type: Option<ByteString>,
        subscription_ids: &[SubscriptionId],
        now_ms: u64,
    ) -> PublishProperties {
        let mut p = self.properties.clone();
        p.topic_alias = None;
        p.content_type = content_type;
        p.subscription_identifiers = subscription_ids.to_vec();
        // MQTT-3.3.2-6: the interval is reduced by the time spent waiting.
        p.message_expiry_interval = self
            .expires_at
            .map(|at| (at.saturating_sub(now_ms).div_ceil(1000)) as u32);
        p
    }
}

fn format_index(format: Format) -> usize {
    match format {
        Format::Json => 0,
        Format::Cbor => 1,
        Format::MsgPack => 2,
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_encoded_once_per_format_and_shared() {
        let mut m = Map::new();
        m.insert("id".into(), Value::String("a".into()));
        let msg = Message::from_record(
            TopicName::new("T/a").unwrap(),
            Body::Map(m),
            &Meta::default(),
            QoS::AtLeastOnce,
            false,
        );
        let (a, ct) = msg.render(Format::Json);
        let (b, _) = msg.render(Format::Json);
        assert_eq!(&a[..], br#"{"id":"a"}"#);
        assert_eq!(
            a.as_ptr(),
            b.as_ptr(),
            "the same bytes, not a second encoding"
        );
        assert_eq!(ct.as_deref(), Some("application/json"));
        let (c, ct) = msg.render(Format::Cbor);
        assert_ne!(a, c);
        assert_eq!(ct.as_deref(), Some("application/cbor"));
    }
}
