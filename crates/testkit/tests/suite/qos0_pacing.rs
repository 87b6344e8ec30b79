//! QoS 0 under overload: a publisher faster than a subscriber is paced
//! (its connection waits while the subscriber's queue is above the
//! high-water mark) instead of the queue overflowing, so nothing is lost and
//! nobody is disconnected; a subscriber that stops reading altogether is not
//! allowed to hold the publisher (and its other subscribers) back.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mqdb_broker::BrokerConfig;
use mqdb_codec::*;
use mqdb_testkit::*;

/// Messages large enough that a few hundred fill the loopback socket
/// buffers, so the broker's queue for the subscriber really grows.
const PAYLOAD: usize = 16 * 1024;

async fn subscriber(server: &TestServer, id: &str) -> RawClient {
    let (mut sub, _) =
        RawClient::connect(server.mqtt, RawClient::connect_packet(Version::V5, id)).await;
    sub.send(&Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        properties: Default::default(),
        filters: vec![(
            TopicFilter::new("burst/#").unwrap(),
            SubscriptionOptions::default(),
        )],
    }))
    .await;
    assert!(matches!(sub.recv().await, Packet::SubAck(_)));
    sub
}

fn message(i: u32) -> Packet {
    let mut payload = vec![0u8; PAYLOAD];
    payload[..4].copy_from_slice(&i.to_be_bytes());
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: TopicName::new("burst/x").unwrap(),
        packet_id: None,
        properties: Default::default(),
        payload: Bytes::from(payload),
    })
}

fn dropped(server: &TestServer) -> u64 {
    server
        .broker
        .stats()
        .messages_dropped
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// A server whose QoS 0 queue limit (64) is far below what the publisher
/// sends: without pacing a subscriber that falls behind is over quota
/// (disconnected with 0x97) within it.
async fn server() -> TestServer {
    let config = BrokerConfig {
        max_outbox: 64,
        ..BrokerConfig::default()
    };
    TestServer::start_with("type T @table @export", config).await
}

/// Connects a publisher that sends messages 0..n as fast as it can.
async fn publish_all(server: &TestServer, n: u32) -> tokio::task::JoinHandle<RawClient> {
    let (mut publisher, _) = RawClient::connect(
        server.mqtt,
        RawClient::connect_packet(Version::V311, "fast-writer"),
    )
    .await;
    tokio::spawn(async move {
        for i in 0..n {
            publisher.send(&message(i)).await;
        }
        publisher
    })
}

/// Reads `n` messages, checking their order, pausing `pause` after each.
async fn read_all(sub: &mut RawClient, n: u32, pause: Duration) {
    for i in 0..n {
        match sub.recv_within(Duration::from_secs(10)).await {
            Some(Packet::Publish(p)) => {
                assert_eq!(
                    &p.payload[..4],
                    &i.to_be_bytes(),
                    "message {i} out of order"
                );
            }
            other => panic!("message {i}: expected a publish, got {other:?}"),
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
}

#[tokio::test]
async fn a_qos0_publisher_faster_than_its_subscriber_is_paced_and_loses_nothing() {
    let server = server().await;
    let mut sub = subscriber(&server, "slow-reader").await;
    const N: u32 = 1_000;
    let send = publish_all(&server, N).await;
    // A reader that keeps up only at its own pace (16 MB/s at most).
    read_all(&mut sub, N, Duration::from_millis(1)).await;
    let _publisher = send.await.unwrap();
    assert_eq!(dropped(&server), 0, "messages were dropped");
    server.stop().await;
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_does_not_hold_the_publisher_back() {
    let server = server().await;
    // Subscribes, then never reads again.
    let mut stuck = subscriber(&server, "stuck").await;
    let mut healthy = subscriber(&server, "healthy").await;
    const N: u32 = 2_000;
    let started = Instant::now();
    let send = publish_all(&server, N).await;
    read_all(&mut healthy, N, Duration::ZERO).await;
    let took = started.elapsed();
    let _publisher = send.await.unwrap();
    // Paced once, for at most the pacing wait (1 s), not per message.
    assert!(
        took < Duration::from_secs(5),
        "the healthy subscriber took {took:?}: the stuck one held the publisher back"
    );
    // The stuck subscriber's queue overflowed: it is told so (5.0) and its
    // connection ends; what it had received before is intact.
    let mut saw_quota = false;
    let mut received = 0u32;
    while let Some(packet) = stuck.recv_within(Duration::from_secs(5)).await {
        match packet {
            Packet::Publish(p) => {
                assert_eq!(&p.payload[..4], &received.to_be_bytes());
                received += 1;
            }
            Packet::Disconnect(d) => {
                assert_eq!(d.reason_code, ReasonCode::QuotaExceeded);
                saw_quota = true;
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(saw_quota, "no DISCONNECT 0x97 after {received} messages");
    assert!(received < N);
    assert!(dropped(&server) > 0);
    server.stop().await;
}
