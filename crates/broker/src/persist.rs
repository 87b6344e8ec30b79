//! Persistent sessions in the database: a session's subscriptions, its
//! unacknowledged and queued QoS 1/2 messages and its incoming QoS 2 ids,
//! stored as one structured record of the built-in table [`SESSIONS_TABLE`]
//! keyed by client id, so that they survive a broker restart.

use std::num::NonZeroU16;

use mqdb_codec::{
    ByteString, PublishProperties, QoS, RetainHandling, SubscriptionId, SubscriptionOptions,
    TopicFilter, TopicName, UserProperty,
};
use mqdb_resource::{Format, Map, Value};

use crate::session::{InFlight, Outgoing, Session};

/// The built-in, unexported table of persistent sessions.
pub const SESSIONS_TABLE: &str = "$mqtt_sessions";

/// One subscription as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubscription {
    /// The filter as subscribed (possibly `$share/...` or a query).
    pub filter: TopicFilter,
    /// Its options.
    pub options: SubscriptionOptions,
    /// Its subscription identifier.
    pub id: Option<SubscriptionId>,
    /// The format its records are delivered in.
    pub format: Format,
}

/// A persistent session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// Session Expiry Interval in seconds (`u32::MAX`: never).
    pub expiry: u32,
    /// When the client disconnected (Unix ms).
    pub disconnected_at: u64,
    /// Subscriptions.
    pub subscriptions: Vec<StoredSubscription>,
    /// Delivery state.
    pub session: Session,
}

fn opts_byte(o: &SubscriptionOptions) -> i64 {
    let rh = match o.retain_handling {
        RetainHandling::SendAtSubscribe => 0,
        RetainHandling::SendIfNew => 1,
        RetainHandling::DoNotSend => 2,
    };
    i64::from(
        o.qos as u8
            | (u8::from(o.no_local) << 2)
            | (u8::from(o.retain_as_published) << 3)
            | (rh << 4),
    )
}

fn opts_from(b: i64) -> SubscriptionOptions {
    let b = b as u8;
    SubscriptionOptions {
        qos: QoS::from_u8(b & 3).unwrap_or(QoS::AtMostOnce),
        no_local: b & 4 != 0,
        retain_as_published: b & 8 != 0,
        retain_handling: match (b >> 4) & 3 {
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => RetainHandling::SendAtSubscribe,
        },
    }
}

fn s(v: &str) -> Value {
    Value::String(v.to_owned())
}

fn message_value(m: &Outgoing) -> Value {
    let p = &m.properties;
    let mut map = Map::new();
    map.insert("t".into(), s(&m.topic));
    map.insert("p".into(), Value::Bytes(m.payload.clone()));
    map.insert("q".into(), Value::Int(m.qos as i64));
    map.insert("r".into(), Value::Bool(m.retain));
    if let Some(at) = m.expires_at {
        map.insert(
            "x".into(),
            Value::Int(i64::try_from(at).unwrap_or(i64::MAX)),
        );
    }
    if let Some(ct) = &p.content_type {
        map.insert("ct".into(), s(ct));
    }
    if let Some(rt) = &p.response_topic {
        map.insert("rt".into(), s(rt));
    }
    if let Some(cd) = &p.correlation_data {
        map.insert("cd".into(), Value::Bytes(cd.clone()));
    }
    if let Some(e) = p.message_expiry_interval {
        map.insert("e".into(), Value::Int(i64::from(e)));
    }
    if let Some(pf) = p.payload_format_indicator {
        map.insert(
            "pf".into(),
            Value::Bool(pf == mqdb_codec::PayloadFormat::Utf8),
        );
    }
    if !p.subscription_identifiers.is_empty() {
        let ids = p
            .subscription_identifiers
            .iter()
            .map(|i| Value::Int(i64::from(i.get())))
            .collect();
        map.insert("si".into(), Value::Array(ids));
    }
    if !p.user_properties.is_empty() {
        let up = p
            .user_properties
            .iter()
            .map(|u| Value::Array(vec![s(&u.name), s(&u.value)]))
            .collect();
        map.insert("up".into(), Value::Array(up));
    }
    Value::Map(map)
}

fn message_from(v: &Value) -> Option<Outgoing> {
    let str_of = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(|x| ByteString::from(x.to_owned()))
    };
    let properties = PublishProperties {
        content_type: str_of("ct"),
        response_topic: str_of("rt"),
        correlation_data: v.get("cd").and_then(Value::as_bytes).cloned(),
        message_expiry_interval: v.get("e").and_then(Value::as_u64).map(|e| e as u32),
        payload_format_indicator: v.get("pf").and_then(Value::as_bool).map(|u| {
            if u {
                mqdb_codec::PayloadFormat::Utf8
            } else {
                mqdb_codec::PayloadFormat::Unspecified
            }
        }),
        subscription_identifiers: v
            .get("si")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|i| SubscriptionId::new(i.as_u64()? as u32))
                    .collect()
            })
            .unwrap_or_default(),
        user_properties: v
            .get("up")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|pair| match pair.as_array()? {
                        [Value::String(k), Value::String(x)] => {
                            Some(UserProperty::new(k.as_str(), x.as_str()))
                        }
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        ..PublishProperties::default()
    };
    Some(Outgoing {
        topic: TopicName::new(v.get("t")?.as_str()?.to_owned()).ok()?,
        payload: v.get("p")?.as_bytes()?.clone(),
        qos: QoS::from_u8(v.get("q")?.as_u64()? as u8)?,
        retain: v.get("r")?.as_bool()?,
        properties,
        shared: None,
        expires_at: v.get("x").and_then(Value::as_u64),
    })
}

/// Encodes a session for storage (MessagePack of a map).
pub fn encode(stored: &StoredSession) -> Map {
    let mut map = Map::new();
    map.insert("v".into(), Value::Int(1));
    map.insert("expiry".into(), Value::Int(i64::from(stored.expiry)));
    map.insert("at".into(), Value::from(stored.disconnected_at));
    let subs = stored
        .subscriptions
        .iter()
        .map(|sub| {
            Value::Array(vec![
                s(&sub.filter),
                Value::Int(opts_byte(&sub.options)),
                sub.id
                    .map_or(Value::Null, |i| Value::Int(i64::from(i.get()))),
                s(sub.format.content_type()),
            ])
        })
        .collect();
    map.insert("subs".into(), Value::Array(subs));
    let in_flight = stored
        .session
        .in_flight_entries()
        .map(|(id, state)| match state {
            InFlight::AwaitingPubAck(m) => Value::Array(vec![
                Value::Int(i64::from(id)),
                Value::Int(1),
                message_value(m),
            ]),
            InFlight::AwaitingPubRec(m) => Value::Array(vec![
                Value::Int(i64::from(id)),
                Value::Int(2),
                message_value(m),
            ]),
            InFlight::AwaitingPubComp => {
                Value::Array(vec![Value::Int(i64::from(id)), Value::Int(3), Value::Null])
            }
        })
        .collect();
    map.insert("inflight".into(), Value::Array(in_flight));
    map.insert(
        "queue".into(),
        Value::Array(
            stored
                .session
                .queued_messages()
                .map(message_value)
                .collect(),
        ),
    );
    map.insert(
        "qos2".into(),
        Value::Array(
            stored
                .session
                .pending_incoming()
                .map(|i| Value::Int(i64::from(i)))
                .collect(),
        ),
    );
    map
}

/// Decodes a stored session; `None` if it is not one this version wrote.
pub fn decode(map: &Map, max_queue: usize) -> Option<StoredSession> {
    let v = Value::Map(map.clone());
    if v.get("v")?.as_u64()? != 1 {
        return None;
    }
    let subscriptions = v
        .get("subs")?
        .as_array()?
        .iter()
        .filter_map(|sub| match sub.as_array()? {
            [Value::String(f), o, id, Value::String(ct)] => Some(StoredSubscription {
                filter: TopicFilter::new(f.clone()).ok()?,
                options: opts_from(o.as_i64()?),
                id: id.as_u64().and_then(|i| SubscriptionId::new(i as u32)),
                format: Format::from_content_type(ct).unwrap_or_default(),
            }),
            _ => None,
        })
        .collect();
    let in_flight = v
        .get("inflight")?
        .as_array()?
        .iter()
        .filter_map(|e| {
            let [id, kind, m] = e.as_array()? else {
                return None;
            };
            let id = NonZeroU16::new(id.as_u64()? as u16)?.get();
            let state = match kind.as_u64()? {
                1 => InFlight::AwaitingPubAck(message_from(m)?),
                2 => InFlight::AwaitingPubRec(message_from(m)?),
                _ => InFlight::AwaitingPubComp,
            };
            Some((id, state))
        })
        .collect();
    let queue = v
        .get("queue")?
        .as_array()?
        .iter()
        .filter_map(message_from)
        .collect();
    let qos2 = v
        .get("qos2")?
        .as_array()?
        .iter()
        .filter_map(|i| Some(i.as_u64()? as u16))
        .collect();
    Some(StoredSession {
        expiry: v.get("expiry")?.as_u64()? as u32,
        disconnected_at: v.get("at")?.as_u64()?,
        subscriptions,
        session: Session::restore(max_queue, in_flight, queue, qos2),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use mqdb_codec::PacketId;

    #[test]
    fn a_session_round_trips_through_storage() {
        let mut session = Session::new(100);
        session.set_receive_maximum(1);
        let msg = |n: u8| Outgoing {
            topic: TopicName::new("a/b").unwrap(),
            payload: Bytes::from(vec![n]),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: PublishProperties {
                content_type: Some("text/plain".into()),
                user_properties: vec![UserProperty::new("k", "v")],
                ..Default::default()
            },
            shared: None,
            expires_at: Some(1_700_000_000_000),
        };
        session.deliver(msg(1));
        session.deliver(msg(2));
        session.incoming_qos2(PacketId::new(9).unwrap());
        let stored = StoredSession {
            expiry: 60,
            disconnected_at: 5,
            subscriptions: vec![StoredSubscription {
                filter: TopicFilter::new("a/#").unwrap(),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    ..Default::default()
                },
                id: SubscriptionId::new(7),
                format: Format::Cbor,
            }],
            session,
        };
        let back = decode(&encode(&stored), 100).unwrap();
        assert_eq!(back.subscriptions, stored.subscriptions);
        assert_eq!(back.session.in_flight(), 1);
        assert_eq!(back.session.queued(), 1);
        assert_eq!(back.session.pending_incoming().collect::<Vec<_>>(), [9]);
    }
}
