//! Protocol errors are visible and contained (SPEC section 2): a malformed
//! packet closes the connection (v5: DISCONNECT 0x81 first), a second
//! CONNECT closes it, a packet over the Maximum Packet Size gets 0x95, more
//! unacknowledged QoS 1/2 publishes than the Receive Maximum get 0x93, and
//! every other client keeps working.

use crate::common::*;
use mqdb_broker::BrokerConfig;
use mqdb_codec::*;
use mqdb_testkit::*;

const SCHEMA: &str = "type Sensor @table @export";

both_versions!(
    a_publish_with_qos_3_is_malformed_and_closes_only_that_connection,
    a_publish_with_an_invalid_utf8_topic_is_malformed,
    a_second_connect_closes_the_connection,
    a_packet_over_the_maximum_packet_size_closes_the_connection,
);

/// The packets a server sent before closing, checked for the version:
/// v5 ends with exactly one DISCONNECT carrying `reason`, 3.1.1 with none.
fn assert_closed_with(version: Version, seen: &[Packet], reason: ReasonCode) {
    match version {
        Version::V5 => assert!(
            matches!(seen, [.., Packet::Disconnect(d)] if d.reason_code == reason),
            "expected DISCONNECT {reason:?} before the close, got {seen:?}"
        ),
        Version::V311 => assert!(
            !seen.iter().any(|p| matches!(p, Packet::Disconnect(_))),
            "3.1.1 servers send no DISCONNECT: {seen:?}"
        ),
    }
}

/// A bystander subscribed to `ok/#` and a publisher: both must keep working.
async fn bystanders(server: &TestServer) -> (RawClient, RawClient) {
    let mut sub = connect(server, Version::V5, "bystander-sub").await;
    subscribe(&mut sub, "ok/#", QoS::AtLeastOnce).await;
    let publisher = connect(server, Version::V311, "bystander-pub").await;
    (sub, publisher)
}

async fn still_working(sub: &mut RawClient, publisher: &mut RawClient) {
    ping(sub).await;
    publish_qos1(
        publisher,
        publish("ok/still", &b"fine"[..], QoS::AtLeastOnce, false, 1),
    )
    .await;
    assert_eq!(&recv_and_ack(sub).await.payload[..], b"fine");
}

/// A PUBLISH with fixed-header `flags`, topic bytes as given, packet id 1
/// if QoS > 0, and a one-byte payload.
fn raw_publish(version: Version, flags: u8, topic: &[u8]) -> Vec<u8> {
    let mut body = vec![0, topic.len() as u8];
    body.extend_from_slice(topic);
    if (flags >> 1) & 0b11 != 0 {
        body.extend_from_slice(&[0, 1]);
    }
    if version == Version::V5 {
        body.push(0); // no properties
    }
    body.push(b'x');
    let mut out = vec![0x30 | flags, body.len() as u8];
    out.extend(body);
    out
}

async fn a_publish_with_qos_3_is_malformed_and_closes_only_that_connection(version: Version) {
    let server = TestServer::start(SCHEMA).await;
    let (mut sub, mut publisher) = bystanders(&server).await;
    let mut bad = connect(&server, version, "bad").await;
    bad.send_raw(&raw_publish(version, 0b0110, b"ok/qos3"))
        .await;
    let seen = bad.closed().await;
    assert_closed_with(version, &seen, ReasonCode::MalformedPacket);
    assert_eq!(seen.len(), usize::from(version == Version::V5));
    expect_nothing(&mut sub, "the malformed publish is not delivered").await;
    still_working(&mut sub, &mut publisher).await;
    server.stop().await;
}

async fn a_publish_with_an_invalid_utf8_topic_is_malformed(version: Version) {
    let server = TestServer::start(SCHEMA).await;
    let (mut sub, mut publisher) = bystanders(&server).await;
    let mut bad = connect(&server, version, "bad").await;
    bad.send_raw(&raw_publish(version, 0, &[b'o', b'k', b'/', 0xC3, 0x28]))
        .await;
    let seen = bad.closed().await;
    assert_closed_with(version, &seen, ReasonCode::MalformedPacket);
    still_working(&mut sub, &mut publisher).await;
    server.stop().await;
}

async fn a_second_connect_closes_the_connection(version: Version) {
    let server = TestServer::start(SCHEMA).await;
    let (mut sub, mut publisher) = bystanders(&server).await;
    let mut c = connect(&server, version, "twice").await;
    c.send(&Packet::Connect(Box::new(RawClient::connect_packet(
        version, "twice",
    ))))
    .await;
    let seen = c.closed().await;
    assert_closed_with(version, &seen, ReasonCode::ProtocolError);
    assert!(
        !seen.iter().any(|p| matches!(p, Packet::ConnAck(_))),
        "{seen:?}"
    );
    still_working(&mut sub, &mut publisher).await;
    server.stop().await;
}

async fn a_packet_over_the_maximum_packet_size_closes_the_connection(version: Version) {
    let config = BrokerConfig {
        max_packet_size: 1024,
        ..Default::default()
    };
    let server = TestServer::start_with(SCHEMA, config).await;
    let (mut sub, mut publisher) = bystanders(&server).await;
    let (mut c, ack) = connect_with(&server, RawClient::connect_packet(version, "big")).await;
    if version == Version::V5 {
        assert_eq!(
            ack.properties.maximum_packet_size.map(|m| m.get()),
            Some(1024),
            "announced in CONNACK"
        );
    }
    // Just under the limit is fine.
    let fits = publish("ok/big", vec![b'a'; 900], QoS::AtLeastOnce, false, 1);
    assert_eq!(
        publish_qos1(&mut c, fits).await.reason_code,
        ReasonCode::Success
    );
    assert_eq!(recv_and_ack(&mut sub).await.payload.len(), 900);
    let too_big = publish("ok/big", vec![b'a'; 2000], QoS::AtLeastOnce, false, 2);
    c.send(&Packet::Publish(too_big)).await;
    let seen = c.closed().await;
    assert_closed_with(version, &seen, ReasonCode::PacketTooLarge);
    assert!(
        !seen.iter().any(|p| matches!(p, Packet::PubAck(_))),
        "{seen:?}"
    );
    expect_nothing(&mut sub, "the oversized publish is not delivered").await;
    still_working(&mut sub, &mut publisher).await;
    server.stop().await;
}

fn small_receive_maximum() -> BrokerConfig {
    BrokerConfig {
        receive_maximum: 2,
        ..Default::default()
    }
}

#[tokio::test]
async fn v5_more_unacked_qos1_publishes_than_the_receive_maximum_get_0x93() {
    let server = TestServer::start_with(SCHEMA, small_receive_maximum()).await;
    let (mut sub, mut publisher) = bystanders(&server).await;
    let (mut c, ack) = connect_with(&server, RawClient::connect_packet(Version::V5, "eager")).await;
    assert_eq!(ack.properties.receive_maximum.map(|m| m.get()), Some(2));
    // Three QoS 1 publishes in one write: the third arrives while the
    // first two are still unacknowledged.
    let mut burst = Vec::new();
    for id in 1..=3 {
        let p = publish(
            "Sensor/burst",
            &br#"{"n":1}"#[..],
            QoS::AtLeastOnce,
            true,
            id,
        );
        burst.extend_from_slice(&encoded(&Packet::Publish(p), Version::V5));
    }
    c.send_raw(&burst).await;
    let seen = c.closed().await;
    assert_closed_with(Version::V5, &seen, ReasonCode::ReceiveMaximumExceeded);
    still_working(&mut sub, &mut publisher).await;
    server.stop().await;
}

#[tokio::test]
async fn v5_publishes_within_the_receive_maximum_are_all_accepted() {
    let server = TestServer::start_with(SCHEMA, small_receive_maximum()).await;
    let mut c = connect(&server, Version::V5, "patient").await;
    for id in 1..=5 {
        let p = publish("ok/one-by-one", &b"x"[..], QoS::AtLeastOnce, false, id);
        assert_eq!(
            publish_qos1(&mut c, p).await.reason_code,
            ReasonCode::Success
        );
    }
    ping(&mut c).await;
    server.stop().await;
}

#[tokio::test]
async fn v5_qos2_publishes_awaiting_pubrel_count_against_the_receive_maximum() {
    let server = TestServer::start_with(SCHEMA, small_receive_maximum()).await;
    let mut c = connect(&server, Version::V5, "eager2").await;
    for id in 1..=2 {
        let p = publish("ok/two", &b"x"[..], QoS::ExactlyOnce, false, id);
        c.send(&Packet::Publish(p)).await;
        assert!(matches!(c.recv().await, Packet::PubRec(r) if r.packet_id == pid(id)));
    }
    // No PUBREL yet: both are still unacknowledged (no PUBCOMP sent).
    let p = publish("ok/two", &b"x"[..], QoS::ExactlyOnce, false, 3);
    c.send(&Packet::Publish(p)).await;
    let seen = c.closed().await;
    assert_closed_with(Version::V5, &seen, ReasonCode::ReceiveMaximumExceeded);
    server.stop().await;
}

#[tokio::test]
async fn a_first_packet_other_than_connect_closes_the_connection() {
    let server = TestServer::start(SCHEMA).await;
    let mut c = RawClient::open(server.mqtt, Version::V5).await;
    c.send(&Packet::PingReq).await;
    assert_eq!(c.closed().await, vec![]);
    let mut ok = connect(&server, Version::V5, "after").await;
    ping(&mut ok).await;
    server.stop().await;
}
