//! MQTT 5 features beyond the packet shapes: outbound topic aliases, message
//! expiry of queued messages, the payload format indicator, request
//! response information, request problem information, server reference and
//! quota exceeded, each over real sockets.

use std::num::{NonZeroU16, NonZeroU32};
use std::time::Duration;

use crate::common::*;
use mqdb_broker::BrokerConfig;
use mqdb_codec::*;
use mqdb_testkit::*;

const SCHEMA: &str = "type Sensor @table @export";

fn v5_with(id: &str, f: impl FnOnce(&mut ConnectProperties)) -> Connect {
    let mut c = RawClient::connect_packet(Version::V5, id);
    f(&mut c.properties);
    c
}

#[tokio::test]
async fn the_broker_assigns_outbound_topic_aliases_up_to_the_clients_maximum() {
    let server = TestServer::start(SCHEMA).await;
    let (mut sub, _) =
        connect_with(&server, v5_with("sub", |p| p.topic_alias_maximum = Some(2))).await;
    subscribe(&mut sub, "a/#", QoS::AtMostOnce).await;
    let mut p = connect(&server, Version::V5, "p").await;
    for topic in ["a/1", "a/1", "a/2", "a/3", "a/1"] {
        p.send(&Packet::Publish(publish(
            topic,
            "x",
            QoS::AtMostOnce,
            false,
            0,
        )))
        .await;
    }
    processed(&mut p).await;
    let mut seen = Vec::new();
    for _ in 0..5 {
        let m = expect_publish(&mut sub).await;
        seen.push((
            m.topic.to_string(),
            m.properties.topic_alias.map_or(0, NonZeroU16::get),
        ));
    }
    assert_eq!(
        seen,
        [
            ("a/1".into(), 1),
            (String::new(), 1),
            ("a/2".into(), 2),
            ("a/3".into(), 1), // alias 1 reassigned, topic sent again
            ("a/1".into(), 2),
        ]
    );
    // A client that accepts no aliases gets none.
    let mut plain = connect(&server, Version::V5, "plain").await;
    subscribe(&mut plain, "a/#", QoS::AtMostOnce).await;
    p.send(&Packet::Publish(publish(
        "a/1",
        "x",
        QoS::AtMostOnce,
        false,
        0,
    )))
    .await;
    let m = expect_publish(&mut plain).await;
    assert_eq!((m.topic.as_ref(), m.properties.topic_alias), ("a/1", None));
}

#[tokio::test]
async fn a_queued_message_that_expires_is_not_delivered_and_the_rest_count_down() {
    let server = TestServer::start(SCHEMA).await;
    // One message in flight at a time, never acknowledged at first.
    let (mut sub, _) = connect_with(
        &server,
        v5_with("sub", |p| p.receive_maximum = NonZeroU16::new(1)),
    )
    .await;
    subscribe(&mut sub, "e/#", QoS::AtLeastOnce).await;
    let mut p = connect(&server, Version::V5, "p").await;
    let with_expiry = |topic: &str, secs: u32, id: u16| {
        let mut m = publish(topic, "x", QoS::AtLeastOnce, false, id);
        m.properties.message_expiry_interval = Some(secs);
        m
    };
    publish_qos1(&mut p, publish("e/first", "x", QoS::AtLeastOnce, false, 1)).await;
    publish_qos1(&mut p, with_expiry("e/short", 1, 2)).await;
    publish_qos1(&mut p, with_expiry("e/long", 100, 3)).await;
    let first = expect_publish(&mut sub).await;
    assert_eq!(first.topic.as_ref(), "e/first");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    ack_publish(&mut sub, &first).await;
    let next = expect_publish(&mut sub).await;
    assert_eq!(
        next.topic.as_ref(),
        "e/long",
        "e/short expired in the queue"
    );
    let left = next.properties.message_expiry_interval.unwrap();
    assert!((97..=98).contains(&left), "counted down: {left}");
}

#[tokio::test]
async fn a_payload_that_is_not_the_utf8_it_claims_gets_0x99() {
    let server = TestServer::start(SCHEMA).await;
    let mut c = connect(&server, Version::V5, "c").await;
    let mut bad = publish("t/x", &[0xff, 0xfe][..], QoS::AtLeastOnce, false, 1);
    bad.properties.payload_format_indicator = Some(PayloadFormat::Utf8);
    let ack = publish_qos1(&mut c, bad.clone()).await;
    assert_eq!(ack.reason_code, ReasonCode::PayloadFormatInvalid);
    let mut good = publish("t/x", "héllo", QoS::AtLeastOnce, false, 2);
    good.properties.payload_format_indicator = Some(PayloadFormat::Utf8);
    assert_eq!(
        publish_qos1(&mut c, good).await.reason_code,
        ReasonCode::Success
    );
    // QoS 0 has no ack: the connection ends with 0x99.
    bad.qos = QoS::AtMostOnce;
    bad.packet_id = None;
    c.send(&Packet::Publish(bad)).await;
    let closing = c.closed().await;
    assert!(
        closing.iter().any(
            |p| matches!(p, Packet::Disconnect(d) if d.reason_code == ReasonCode::PayloadFormatInvalid)
        ),
        "{closing:?}"
    );
    // A will that lies about its format refuses the CONNECT.
    let mut w = RawClient::connect_packet(Version::V5, "w");
    w.will = Some(Will {
        topic: TopicName::new("t/will").unwrap(),
        payload: bytes::Bytes::from_static(&[0xc3]),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: WillProperties {
            payload_format_indicator: Some(PayloadFormat::Utf8),
            ..Default::default()
        },
    });
    let (_w, ack) = RawClient::connect(server.mqtt, w).await;
    assert_eq!(ack.reason_code, ReasonCode::PayloadFormatInvalid);
}

#[tokio::test]
async fn request_response_information_gets_a_reply_prefix_and_request_response_works() {
    let server = TestServer::start(SCHEMA).await;
    let (mut requester, ack) = connect_with(
        &server,
        v5_with("req", |p| p.request_response_information = Some(true)),
    )
    .await;
    let prefix = ack
        .properties
        .response_information
        .expect("response information");
    assert_eq!(&*prefix, "reply/req/");
    let (_plain, ack) = connect_with(&server, RawClient::connect_packet(Version::V5, "x")).await;
    assert_eq!(ack.properties.response_information, None);

    let mut responder = connect(&server, Version::V5, "resp").await;
    subscribe(&mut responder, "service/time", QoS::AtLeastOnce).await;
    let reply_topic = format!("{prefix}time");
    subscribe(&mut requester, &reply_topic, QoS::AtLeastOnce).await;
    let mut req = publish("service/time", "now?", QoS::AtLeastOnce, false, 1);
    req.properties.response_topic = Some(reply_topic.clone().into());
    req.properties.correlation_data = Some(bytes::Bytes::from_static(b"id-7"));
    publish_qos1(&mut requester, req).await;
    let got = recv_and_ack(&mut responder).await;
    let mut reply = publish(
        got.properties.response_topic.as_deref().unwrap(),
        "12:00",
        QoS::AtLeastOnce,
        false,
        1,
    );
    reply.properties.correlation_data = got.properties.correlation_data.clone();
    publish_qos1(&mut responder, reply).await;
    let answer = recv_and_ack(&mut requester).await;
    assert_eq!(answer.topic.as_ref(), reply_topic);
    assert_eq!(
        answer.properties.correlation_data.as_deref(),
        Some(&b"id-7"[..])
    );
}

#[tokio::test]
async fn reason_strings_are_omitted_when_problem_information_is_not_wanted() {
    let schema = "type Device @table @export { id: ID @primaryKey temp: Float }";
    let server = TestServer::start(schema).await;
    let bad = || publish("Device/d", r#"{"temp":"hot"}"#, QoS::AtLeastOnce, true, 1);
    let mut wants = connect(&server, Version::V5, "wants").await;
    let ack = publish_qos1(&mut wants, bad()).await;
    assert_eq!(ack.reason_code, ReasonCode::PayloadFormatInvalid);
    assert!(ack.properties.reason_string.is_some());
    let (mut quiet, _) = connect_with(
        &server,
        v5_with("quiet", |p| p.request_problem_information = Some(false)),
    )
    .await;
    let ack = publish_qos1(&mut quiet, bad()).await;
    assert_eq!(ack.reason_code, ReasonCode::PayloadFormatInvalid);
    assert_eq!(ack.properties.reason_string, None);
}

#[tokio::test]
async fn a_moved_server_refers_clients_to_its_successor() {
    let config = BrokerConfig {
        server_reference: Some("other.example:1883".into()),
        ..BrokerConfig::default()
    };
    let server = TestServer::start_with(SCHEMA, config).await;
    let (_c, ack) =
        RawClient::connect(server.mqtt, RawClient::connect_packet(Version::V5, "c")).await;
    assert_eq!(ack.reason_code, ReasonCode::ServerMoved);
    assert_eq!(
        ack.properties.server_reference.as_deref(),
        Some("other.example:1883")
    );
    let (_c, ack) =
        RawClient::connect(server.mqtt, RawClient::connect_packet(Version::V311, "d")).await;
    assert!(ack.reason_code.is_error(), "3.1.1 is refused too: {ack:?}");
}

#[tokio::test]
async fn a_client_that_cannot_keep_up_is_disconnected_with_quota_exceeded() {
    let config = BrokerConfig {
        max_outbox: 50,
        ..BrokerConfig::default()
    };
    let server = TestServer::start_with(SCHEMA, config).await;
    // A subscriber that never reads, with a tiny packet limit irrelevant
    // here: the outbox fills because the socket is not drained.
    let (mut slow, _) = connect_with(
        &server,
        v5_with("slow", |p| p.maximum_packet_size = NonZeroU32::new(1 << 20)),
    )
    .await;
    subscribe(&mut slow, "flood/#", QoS::AtMostOnce).await;
    let mut p = connect(&server, Version::V5, "p").await;
    let big = vec![b'x'; 64 * 1024];
    for _ in 0..400 {
        p.send(&Packet::Publish(publish(
            "flood/x",
            big.clone(),
            QoS::AtMostOnce,
            false,
            0,
        )))
        .await;
    }
    processed(&mut p).await;
    // Now read: what was written before, then DISCONNECT 0x97.
    let mut quota = false;
    while let Some(packet) = slow.recv_within(Duration::from_secs(5)).await {
        if let Packet::Disconnect(d) = packet {
            quota = d.reason_code == ReasonCode::QuotaExceeded;
            break;
        }
    }
    assert!(quota, "DISCONNECT 0x97");
    // The publisher and others are unaffected.
    ping(&mut p).await;
}

/// One delivery per client, however many of its subscriptions match, with
/// every matching subscription's identifier (MQTT-3.3.4-2, -3), also when
/// more clients match than the router keeps in its plain list (16).
#[tokio::test]
async fn many_clients_with_overlapping_subscriptions_get_one_delivery_each() {
    let server = TestServer::start("type T @table @export").await;
    let mut clients = Vec::new();
    for n in 0..20 {
        let (mut c, _) = RawClient::connect(
            server.mqtt,
            RawClient::connect_packet(Version::V5, &format!("overlap-{n}")),
        )
        .await;
        for (id, filter) in [(1, "fan/#"), (2, "fan/+/x")] {
            let properties = SubscribeProperties {
                subscription_identifier: SubscriptionId::new(id),
                ..Default::default()
            };
            c.send(&Packet::Subscribe(Subscribe {
                packet_id: PacketId::new(id as u16).unwrap(),
                properties,
                filters: vec![(
                    TopicFilter::new(filter).unwrap(),
                    SubscriptionOptions::default(),
                )],
            }))
            .await;
            assert!(matches!(c.recv().await, Packet::SubAck(_)));
        }
        clients.push(c);
    }
    let (mut publisher, _) = RawClient::connect(
        server.mqtt,
        RawClient::connect_packet(Version::V5, "overlap-pub"),
    )
    .await;
    publisher
        .send(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: TopicName::new("fan/a/x").unwrap(),
            packet_id: None,
            properties: Default::default(),
            payload: bytes::Bytes::from_static(b"once"),
        }))
        .await;
    for (n, c) in clients.iter_mut().enumerate() {
        let Packet::Publish(p) = c.recv().await else {
            panic!("client {n}: a publish expected")
        };
        let mut ids: Vec<u32> = p
            .properties
            .subscription_identifiers
            .iter()
            .map(|id| id.get())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, [1, 2], "client {n}");
    }
    // A second copy would be right behind the first.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for (n, c) in clients.iter_mut().enumerate() {
        assert!(
            c.recv_within(std::time::Duration::from_millis(5))
                .await
                .is_none(),
            "client {n} got the message twice"
        );
    }
    server.stop().await;
}
