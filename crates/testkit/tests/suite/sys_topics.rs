//! `$SYS/broker/...` statistics: retained messages refreshed every
//! `sys_interval` seconds, not matched by a plain `#`, and not writable by
//! clients.

use std::time::Duration;

use bytes::Bytes;
use mqdb_broker::BrokerConfig;
use mqdb_codec::*;
use mqdb_testkit::*;

fn subscribe(filter: &str) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        properties: Default::default(),
        filters: vec![(
            TopicFilter::new(filter).unwrap(),
            SubscriptionOptions::default(),
        )],
    })
}

#[tokio::test]
async fn sys_statistics_are_retained_and_refreshed() {
    let config = BrokerConfig {
        sys_interval: 1,
        ..BrokerConfig::default()
    };
    let server = TestServer::start_with("type T @table @export", config).await;
    let (mut c, _) = RawClient::connect(
        server.mqtt,
        RawClient::connect_packet(Version::V5, "watcher"),
    )
    .await;
    c.send(&subscribe("$SYS/broker/clients/connected")).await;
    assert!(matches!(c.recv().await, Packet::SubAck(_)));
    // The retained value (from start-up, 0 clients) or the next refresh.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < deadline && !seen.contains(&b"1".to_vec()) {
        if let Some(Packet::Publish(p)) = c.recv_within(Duration::from_millis(500)).await {
            assert_eq!(&*p.topic, "$SYS/broker/clients/connected");
            seen.push(p.payload.to_vec());
        }
    }
    assert!(
        seen.contains(&b"1".to_vec()),
        "a refresh counts this client: {seen:?}"
    );

    // `#` does not match `$SYS` topics (MQTT-4.7.2-1).
    let (mut all, _) =
        RawClient::connect(server.mqtt, RawClient::connect_packet(Version::V5, "all")).await;
    all.send(&subscribe("#")).await;
    assert!(matches!(all.recv().await, Packet::SubAck(_)));
    assert_eq!(all.recv_within(Duration::from_millis(1500)).await, None);

    // Clients cannot publish there.
    let p = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: TopicName::new("$SYS/broker/clients/connected").unwrap(),
        packet_id: PacketId::new(3),
        properties: Default::default(),
        payload: Bytes::from_static(b"999"),
    };
    c.send(&Packet::Publish(p.clone())).await;
    loop {
        match c.recv().await {
            Packet::PubAck(a) => {
                assert_eq!(a.reason_code, ReasonCode::TopicNameInvalid);
                break;
            }
            Packet::Publish(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    server.stop().await;
}
