//! QoS 0 deliveries are handed to subscribers in batches (one per read of
//! the publisher's socket, at most a few hundred). These tests send many
//! packets in one write, so they arrive in one read and really are batched,
//! and check what a batch must never change: the order a subscriber sees,
//! and that nothing accepted is lost when the publisher's connection ends
//! in the same read.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqdb_broker::BrokerConfig;
use mqdb_codec::*;
use mqdb_testkit::*;

async fn subscriber(server: &TestServer, id: &str, qos: QoS) -> RawClient {
    let (mut sub, _) =
        RawClient::connect(server.mqtt, RawClient::connect_packet(Version::V5, id)).await;
    sub.send(&Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        properties: Default::default(),
        filters: vec![(
            TopicFilter::new("batch/#").unwrap(),
            SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            },
        )],
    }))
    .await;
    assert!(matches!(sub.recv().await, Packet::SubAck(_)));
    sub
}

async fn publisher(server: &TestServer, id: &str) -> RawClient {
    RawClient::connect(server.mqtt, RawClient::connect_packet(Version::V5, id))
        .await
        .0
}

/// Message `i`: its number is the payload; every `qos1_every`-th is QoS 1
/// (0: none), topics alternate between two.
fn message(i: u32, qos1_every: u32) -> Packet {
    let qos1 = qos1_every != 0 && i % qos1_every == qos1_every - 1;
    Packet::Publish(Publish {
        dup: false,
        qos: if qos1 {
            QoS::AtLeastOnce
        } else {
            QoS::AtMostOnce
        },
        retain: false,
        topic: TopicName::new(if i % 2 == 0 { "batch/a" } else { "batch/b" }).unwrap(),
        packet_id: qos1.then(|| PacketId::new(1 + (i % 60_000) as u16).unwrap()),
        properties: Default::default(),
        payload: Bytes::copy_from_slice(&i.to_be_bytes()),
    })
}

/// Packets encoded back to back, to be sent in one write.
fn one_write(packets: impl IntoIterator<Item = Packet>) -> BytesMut {
    let mut buf = BytesMut::new();
    for p in packets {
        encode(&p, Version::V5, &mut buf).unwrap();
    }
    buf
}

/// Receives `n` publishes (acknowledging QoS 1 ones) and returns their
/// numbers in arrival order.
async fn receive(sub: &mut RawClient, n: usize) -> Vec<u32> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        match sub.recv_within(Duration::from_secs(10)).await {
            Some(Packet::Publish(p)) => {
                if let Some(id) = p.packet_id {
                    sub.send(&Packet::PubAck(PubAck::new(id))).await;
                }
                got.push(u32::from_be_bytes(p.payload[..4].try_into().unwrap()));
            }
            Some(other) => panic!("unexpected {other:?}"),
            None => panic!("only {} of {n} messages arrived: {got:?}", got.len()),
        }
    }
    got
}

#[tokio::test]
async fn mixed_qos_publishes_in_one_read_reach_a_subscriber_in_order() {
    let server = TestServer::start("type T @table @export").await;
    let mut sub = subscriber(&server, "ordered-reader", QoS::AtLeastOnce).await;
    let mut publisher = publisher(&server, "mixed-writer").await;
    // 600 messages, every 50th QoS 1: the QoS 1 ones are delivered at once,
    // so the QoS 0 ones batched before each must be handed over first; and
    // 600 is more than one batch holds.
    let n = 600;
    publisher
        .send_raw(&one_write((0..n).map(|i| message(i, 50))))
        .await;
    let got = receive(&mut sub, n as usize).await;
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    server.stop().await;
}

#[tokio::test]
async fn a_fan_out_batch_keeps_each_subscribers_order() {
    let server = TestServer::start("type T @table @export").await;
    // More subscribers than a batch finds by searching its list.
    let mut subs = Vec::new();
    for i in 0..20 {
        subs.push(subscriber(&server, &format!("reader-{i}"), QoS::AtMostOnce).await);
    }
    let mut publisher = publisher(&server, "fan-out-writer").await;
    let n = 300;
    publisher
        .send_raw(&one_write((0..n).map(|i| message(i, 0))))
        .await;
    for sub in &mut subs {
        let got = receive(sub, n as usize).await;
        assert_eq!(got, (0..n).collect::<Vec<_>>());
    }
    server.stop().await;
}

#[tokio::test]
async fn publishes_followed_by_disconnect_in_one_read_are_all_delivered() {
    let server = TestServer::start("type T @table @export").await;
    let mut sub = subscriber(&server, "reader", QoS::AtMostOnce).await;
    let mut publisher = publisher(&server, "leaving-writer").await;
    let n = 100;
    let packets = (0..n)
        .map(|i| message(i, 0))
        .chain([Packet::Disconnect(Disconnect::new(ReasonCode::Success))]);
    publisher.send_raw(&one_write(packets)).await;
    publisher.closed().await;
    let got = receive(&mut sub, n as usize).await;
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    server.stop().await;
}

#[tokio::test]
async fn publishes_before_a_malformed_packet_in_one_read_are_delivered() {
    let server = TestServer::start("type T @table @export").await;
    let mut sub = subscriber(&server, "reader", QoS::AtMostOnce).await;
    let mut publisher = publisher(&server, "garbled-writer").await;
    let n = 50;
    let mut buf = one_write((0..n).map(|i| message(i, 0)));
    // Packet type 0 is reserved: a malformed packet, the connection ends.
    buf.extend_from_slice(&[0x00, 0x00]);
    publisher.send_raw(&buf).await;
    let last = publisher.closed().await;
    assert!(
        matches!(last.last(), Some(Packet::Disconnect(d)) if d.reason_code.is_error()),
        "the publisher is told why: {last:?}"
    );
    let got = receive(&mut sub, n as usize).await;
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    // Nothing more: only what was accepted.
    assert!(sub.recv_within(Duration::from_millis(200)).await.is_none());
    server.stop().await;
}

#[tokio::test]
async fn a_batch_larger_than_the_subscribers_queue_limit_is_paced_not_dropped() {
    // QoS 0 queue limit 64, far below what one read of the publisher
    // batches: the batch must stop at the high-water mark and wait for the
    // subscriber, not overflow its queue (which drops and disconnects).
    let config = BrokerConfig {
        max_outbox: 64,
        ..BrokerConfig::default()
    };
    let server = TestServer::start_with("type T @table @export", config).await;
    let mut sub = subscriber(&server, "slow-reader", QoS::AtMostOnce).await;
    let mut publisher = publisher(&server, "bulk-writer").await;
    let n = 1_000;
    publisher
        .send_raw(&one_write((0..n).map(|i| message(i, 0))))
        .await;
    let mut got = Vec::new();
    for chunk in 0..10 {
        got.extend(receive(&mut sub, (n / 10) as usize).await);
        // A reader slower than the publisher.
        tokio::time::sleep(Duration::from_millis(20 + chunk)).await;
    }
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    let dropped = server
        .broker
        .stats()
        .messages_dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(dropped, 0, "messages were dropped");
    server.stop().await;
}

/// Publishes message `i` on `batch/a` and waits until `sub` has it.
async fn publish_seen(publisher: &mut RawClient, i: u32, sub: &mut RawClient) {
    publisher.send(&message(2 * i, 0)).await;
    assert_eq!(receive(sub, 1).await, vec![2 * i]);
}

#[tokio::test]
async fn a_remembered_route_follows_subscription_changes() {
    let server = TestServer::start("type T @table @export").await;
    let mut first = subscriber(&server, "first", QoS::AtMostOnce).await;
    let mut publisher = publisher(&server, "steady-writer").await;
    // The same topic twice: the publisher's connection remembers its route.
    publish_seen(&mut publisher, 0, &mut first).await;
    publish_seen(&mut publisher, 1, &mut first).await;

    // A new subscriber gets the next message.
    let mut second = subscriber(&server, "second", QoS::AtMostOnce).await;
    publisher.send(&message(4, 0)).await;
    assert_eq!(receive(&mut first, 1).await, vec![4]);
    assert_eq!(receive(&mut second, 1).await, vec![4]);

    // One that unsubscribed does not.
    first
        .send(&Packet::Unsubscribe(Unsubscribe {
            packet_id: PacketId::new(2).unwrap(),
            properties: Default::default(),
            filters: vec![TopicFilter::new("batch/#").unwrap()],
        }))
        .await;
    assert!(matches!(first.recv().await, Packet::UnsubAck(_)));
    publisher.send(&message(6, 0)).await;
    assert_eq!(receive(&mut second, 1).await, vec![6]);
    assert!(
        first
            .recv_within(Duration::from_millis(300))
            .await
            .is_none()
    );

    // A subscriber that comes back as a new session is found again.
    second
        .send(&Packet::Disconnect(Disconnect::new(ReasonCode::Success)))
        .await;
    second.closed().await;
    let mut again = subscriber(&server, "second", QoS::AtMostOnce).await;
    publisher.send(&message(8, 0)).await;
    assert_eq!(receive(&mut again, 1).await, vec![8]);
    server.stop().await;
}
