//! QoS 1 under overload: when a subscriber's queue is full, the publisher's
//! PUBACK waits for room instead of the message being dropped, so nothing
//! acknowledged is lost and memory stays bounded by the queue limits.

use std::time::Duration;

use bytes::Bytes;
use mqdb_broker::BrokerConfig;
use mqdb_codec::*;
use mqdb_testkit::*;

#[tokio::test]
async fn a_full_subscriber_queue_slows_the_publisher_and_loses_nothing() {
    let config = BrokerConfig {
        max_queue: 4,
        ..BrokerConfig::default()
    };
    let server = TestServer::start_with("type T @table @export", config).await;
    let mut sub_connect = RawClient::connect_packet(Version::V5, "slow");
    sub_connect.properties.receive_maximum = std::num::NonZeroU16::new(1);
    let (mut sub, _) = RawClient::connect(server.mqtt, sub_connect).await;
    sub.send(&Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        properties: Default::default(),
        filters: vec![(
            TopicFilter::new("load/#").unwrap(),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..Default::default()
            },
        )],
    }))
    .await;
    assert!(matches!(sub.recv().await, Packet::SubAck(_)));

    let (mut publisher, _) = RawClient::connect(
        server.mqtt,
        RawClient::connect_packet(Version::V311, "fast"),
    )
    .await;
    const N: u16 = 20;
    for i in 1..=N {
        publisher
            .send(&Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: TopicName::new("load/x").unwrap(),
                packet_id: PacketId::new(i),
                properties: Default::default(),
                payload: Bytes::from(i.to_be_bytes().to_vec()),
            }))
            .await;
    }
    // One in flight + 4 queued: the rest of the PUBACKs wait.
    let mut acked = 0;
    while let Some(Packet::PubAck(_)) = publisher.recv_within(Duration::from_millis(400)).await {
        acked += 1;
    }
    assert!(acked <= 6, "publisher was not held back: {acked} PUBACKs");
    // The subscriber catches up: every message arrives once, in order, and
    // every PUBACK follows.
    for i in 1..=N {
        let Packet::Publish(p) = sub.recv().await else {
            panic!("publish expected")
        };
        assert_eq!(&p.payload[..], &i.to_be_bytes()[..]);
        sub.send(&Packet::PubAck(PubAck::new(p.packet_id.unwrap())))
            .await;
    }
    while acked < N {
        assert!(matches!(publisher.recv().await, Packet::PubAck(_)));
        acked += 1;
    }
    assert_eq!(
        server
            .broker
            .stats()
            .messages_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    server.stop().await;
}
