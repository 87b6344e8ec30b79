//! Helpers shared by the `mqtt_*` black-box tests: packet builders, a
//! connect that asserts success, bounded "expect" helpers over
//! [`RawClient`], a change-feed barrier and small REST helpers.
//!
//! Every wait is bounded: `RawClient::recv` fails after 5 s, and "nothing
//! arrives" checks wait [`QUIET`].

#![allow(dead_code)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqdb_codec::*;
use mqdb_testkit::*;

/// How long a "nothing arrives" check waits.
pub(crate) const QUIET: Duration = Duration::from_millis(300);

/// A packet identifier.
pub(crate) fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero packet id")
}

/// A PUBLISH without properties (packet id only for QoS 1/2).
pub(crate) fn publish(
    topic: &str,
    payload: impl Into<Bytes>,
    qos: QoS,
    retain: bool,
    id: u16,
) -> Publish {
    Publish {
        dup: false,
        qos,
        retain,
        topic: TopicName::new(topic).expect("valid topic"),
        packet_id: if qos == QoS::AtMostOnce {
            None
        } else {
            Some(pid(id))
        },
        properties: Default::default(),
        payload: payload.into(),
    }
}

/// Subscription options with a maximum QoS and nothing else.
pub(crate) fn opts(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..Default::default()
    }
}

/// A SUBSCRIBE for one filter.
pub(crate) fn subscribe_packet(id: u16, filter: &str, options: SubscriptionOptions) -> Subscribe {
    Subscribe {
        packet_id: pid(id),
        properties: Default::default(),
        filters: vec![(TopicFilter::new(filter).expect("valid filter"), options)],
    }
}

/// A user property.
pub(crate) fn user(name: &str, value: &str) -> UserProperty {
    UserProperty::new(name, value)
}

/// Connects with `connect` and asserts a successful CONNACK.
pub(crate) async fn connect_with(server: &TestServer, connect: Connect) -> (RawClient, ConnAck) {
    let (c, ack) = RawClient::connect(server.mqtt, connect).await;
    assert_eq!(ack.reason_code, ReasonCode::Success, "CONNACK: {ack:?}");
    (c, ack)
}

/// Connects a clean-start client with `client_id`, asserting success.
pub(crate) async fn connect(server: &TestServer, version: Version, client_id: &str) -> RawClient {
    connect_with(server, RawClient::connect_packet(version, client_id))
        .await
        .0
}

/// A CONNECT for a persistent session: 3.1.1 clean session 0, 5.0 clean
/// start 0 with the given session expiry interval.
pub(crate) fn persistent(version: Version, client_id: &str, expiry: u32) -> Connect {
    let mut c = RawClient::connect_packet(version, client_id);
    c.clean_start = false;
    if version == Version::V5 {
        c.properties.session_expiry_interval = Some(expiry);
    }
    c
}

/// Subscribes to one filter with `options` and returns the SUBACK (which
/// must be the next packet).
pub(crate) async fn subscribe_with(
    c: &mut RawClient,
    filter: &str,
    options: SubscriptionOptions,
) -> SubAck {
    c.send(&Packet::Subscribe(subscribe_packet(1, filter, options)))
        .await;
    match c.recv().await {
        Packet::SubAck(a) => a,
        other => panic!("expected SUBACK for {filter}, got {other:?}"),
    }
}

/// Subscribes with a maximum QoS, asserting it is granted.
pub(crate) async fn subscribe(c: &mut RawClient, filter: &str, qos: QoS) -> SubAck {
    let ack = subscribe_with(c, filter, opts(qos)).await;
    let granted = match qos {
        QoS::AtMostOnce => ReasonCode::Success,
        QoS::AtLeastOnce => ReasonCode::GrantedQos1,
        QoS::ExactlyOnce => ReasonCode::GrantedQos2,
    };
    assert_eq!(ack.reason_codes, vec![granted], "SUBACK for {filter}");
    ack
}

/// The next packet, which must be a PUBLISH.
pub(crate) async fn expect_publish(c: &mut RawClient) -> Publish {
    match c.recv().await {
        Packet::Publish(p) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

/// The next PUBLISH, acknowledged as its QoS requires (QoS 2: PUBREC,
/// then the PUBREL must come, then PUBCOMP).
pub(crate) async fn recv_and_ack(c: &mut RawClient) -> Publish {
    let p = expect_publish(c).await;
    ack_publish(c, &p).await;
    p
}

/// Acknowledges a received PUBLISH completely.
pub(crate) async fn ack_publish(c: &mut RawClient, p: &Publish) {
    match (p.qos, p.packet_id) {
        (QoS::AtMostOnce, _) => {}
        (QoS::AtLeastOnce, Some(id)) => c.send(&Packet::PubAck(PubAck::new(id))).await,
        (QoS::ExactlyOnce, Some(id)) => {
            c.send(&Packet::PubRec(PubRec::new(id))).await;
            match c.recv().await {
                Packet::PubRel(r) => assert_eq!(r.packet_id, id),
                other => panic!("expected PUBREL, got {other:?}"),
            }
            c.send(&Packet::PubComp(PubComp::new(id))).await;
        }
        _ => panic!("QoS > 0 PUBLISH without packet id: {p:?}"),
    }
}

/// Sends a QoS 1 PUBLISH and returns its PUBACK (the next packet).
pub(crate) async fn publish_qos1(c: &mut RawClient, mut p: Publish) -> PubAck {
    p.qos = QoS::AtLeastOnce;
    let id = *p.packet_id.get_or_insert(pid(1));
    c.send(&Packet::Publish(p)).await;
    match c.recv().await {
        Packet::PubAck(a) => {
            assert_eq!(a.packet_id, id);
            a
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

/// Publishes a retained QoS 1 message and asserts a successful PUBACK.
pub(crate) async fn put(c: &mut RawClient, topic: &str, payload: impl Into<Bytes>) {
    let a = publish_qos1(c, publish(topic, payload, QoS::AtLeastOnce, true, 1)).await;
    assert_eq!(a.reason_code, ReasonCode::Success, "PUBACK: {a:?}");
}

/// Asserts that nothing arrives within [`QUIET`].
pub(crate) async fn expect_nothing(c: &mut RawClient, what: &str) {
    if let Some(p) = c.recv_within(QUIET).await {
        panic!("{what}: expected nothing, got {p:?}");
    }
}

/// Asserts the connection is alive: PINGREQ gets PINGRESP.
pub(crate) async fn ping(c: &mut RawClient) {
    c.send(&Packet::PingReq).await;
    match c.recv().await {
        Packet::PingResp => {}
        other => panic!("expected PINGRESP, got {other:?}"),
    }
}

/// Sends a normal DISCONNECT.
pub(crate) async fn disconnect(mut c: RawClient) {
    c.send(&Packet::Disconnect(Disconnect::default())).await;
    let _ = c.recv_within(Duration::from_millis(100)).await;
}

/// The encoded bytes of a packet.
pub(crate) fn encoded(p: &Packet, version: Version) -> BytesMut {
    let mut out = BytesMut::new();
    encode(p, version, &mut out).expect("encode");
    out
}

/// Parses JSON bytes.
pub(crate) fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(bytes)))
}

/// Waits until the change feed has delivered every change committed so far
/// to `table`'s subscribers: writes and deletes a probe record and waits
/// for both to come back (the feed is ordered).
pub(crate) async fn sync_feed(server: &TestServer, table: &str) {
    let mut c = connect(server, Version::V5, "feed-barrier").await;
    let topic = format!("{table}/__feed_barrier");
    let options = SubscriptionOptions {
        qos: QoS::AtMostOnce,
        retain_handling: RetainHandling::DoNotSend,
        ..Default::default()
    };
    subscribe_with(&mut c, &topic, options).await;
    for payload in [&b"{}"[..], &b""[..]] {
        c.send(&Packet::Publish(publish(
            &topic,
            payload,
            QoS::AtLeastOnce,
            true,
            1,
        )))
        .await;
        let (mut acked, mut seen) = (false, false);
        while !(acked && seen) {
            match c.recv().await {
                Packet::PubAck(a) => {
                    assert_eq!(a.reason_code, ReasonCode::Success, "barrier write");
                    acked = true;
                }
                Packet::Publish(p) => {
                    seen |=
                        p.topic == *topic.as_str() && p.payload.is_empty() == payload.is_empty();
                }
                other => panic!("barrier: unexpected {other:?}"),
            }
        }
    }
    disconnect(c).await;
}

/// REST status of `GET path`.
pub(crate) async fn rest_status(server: &TestServer, path: &str) -> u16 {
    reqwest::get(server.url(path))
        .await
        .expect("GET")
        .status()
        .as_u16()
}

/// REST `GET path` as JSON (must be 200).
pub(crate) async fn rest_json(server: &TestServer, path: &str) -> serde_json::Value {
    let response = reqwest::get(server.url(path)).await.expect("GET");
    assert_eq!(response.status().as_u16(), 200, "GET {path}");
    json(&response.bytes().await.expect("body"))
}

/// Runs the scenario `async fn $name(version: Version)` once per protocol
/// version, as the tests `$name::v311` and `$name::v5`.
#[allow(unused_macros)]
macro_rules! both_versions {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn v311() {
                super::$name(mqdb_codec::Version::V311).await
            }
            #[tokio::test]
            async fn v5() {
                super::$name(mqdb_codec::Version::V5).await
            }
        }
    )*};
}

/// Waits until every PUBLISH this client sent so far has been processed:
/// acknowledgements leave in order (MQTT-4.6.0-2), so the PUBACK of a QoS 1
/// publish sent now comes after the earlier publishes are done.
pub(crate) async fn processed(c: &mut RawClient) {
    let a = publish_qos1(
        c,
        publish("barrier/processed", &b"-"[..], QoS::AtLeastOnce, false, 999),
    )
    .await;
    assert_eq!(a.reason_code, ReasonCode::Success);
}

/// Stops `server` gracefully and starts it again on the same data
/// directory. Returns the new server and the temporary directory (keep it
/// alive for as long as the server runs).
///
/// Should the store still be locked (a connection task that was just
/// closing may hold it: the broker's connection count drops before the
/// session is saved), this waits, bounded, until it can be opened; the
/// release itself is checked without waiting in `mqtt_restart.rs`.
pub(crate) async fn restart(
    server: TestServer,
    schema: &str,
    config: mqdb_broker::BrokerConfig,
) -> (TestServer, tempfile::TempDir) {
    let temp = server.stop().await.expect("the server owns its directory");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let store = mqdb_storage::Store::open(mqdb_storage::StoreConfig {
            path: temp.path().join("data"),
            sync: true,
            node: 0,
        });
        match store {
            Ok(store) => {
                drop(store);
                break;
            }
            Err(e) if tokio::time::Instant::now() > deadline => {
                panic!("store still locked {WAIT:?} after stop: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let server = TestServer::open(temp.path(), schema, config).await;
    (server, temp)
}
