//! A retained publish's Message Expiry Interval is the record's time to
//! live: served until then, deleted after (subscribers get the delete), and a
//! v5 will with a Will Delay Interval is published only after the delay, and
//! not at all if the session is resumed first.

use std::time::Duration;

use bytes::Bytes;
use mqdb_codec::*;
use mqdb_testkit::*;

fn subscribe(filter: &str) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        properties: Default::default(),
        filters: vec![(
            TopicFilter::new(filter).unwrap(),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..Default::default()
            },
        )],
    })
}

#[tokio::test]
async fn a_retained_record_expires_and_subscribers_see_the_delete() {
    let server = TestServer::start("type Sensor @table @export").await;
    let (mut c, _) =
        RawClient::connect(server.mqtt, RawClient::connect_packet(Version::V5, "c")).await;
    c.send(&subscribe("Sensor/#")).await;
    assert!(matches!(c.recv().await, Packet::SubAck(_)));
    let mut p = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: TopicName::new("Sensor/ttl").unwrap(),
        packet_id: PacketId::new(2),
        properties: Default::default(),
        payload: Bytes::from_static(br#"{"v":1}"#),
    };
    p.properties.message_expiry_interval = Some(1);
    c.send(&Packet::Publish(p)).await;
    let mut got_value = false;
    let mut got_delete = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline && !got_delete {
        match c.recv_within(Duration::from_millis(500)).await {
            Some(Packet::Publish(d)) if &*d.topic == "Sensor/ttl" => {
                if d.payload.is_empty() {
                    got_delete = true;
                } else {
                    assert!(d.properties.message_expiry_interval.is_some_and(|s| s <= 1));
                    got_value = true;
                }
                if let Some(id) = d.packet_id {
                    c.send(&Packet::PubAck(PubAck::new(id))).await;
                }
            }
            _ => {}
        }
    }
    assert!(
        got_value && got_delete,
        "value then delete: {got_value} {got_delete}"
    );
    let status = reqwest::get(server.url("/Sensor/ttl"))
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 404);
    server.stop().await;
}

fn with_will(client_id: &str, delay: u32) -> Connect {
    let mut c = RawClient::connect_packet(Version::V5, client_id);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(60);
    let properties = WillProperties {
        will_delay_interval: Some(delay),
        ..Default::default()
    };
    c.will = Some(Will {
        topic: TopicName::new("status/dev").unwrap(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties,
    });
    c
}

#[tokio::test]
async fn a_delayed_will_waits_and_is_cancelled_by_resuming() {
    let server = TestServer::start("type Sensor @table @export").await;
    let (mut watcher, _) =
        RawClient::connect(server.mqtt, RawClient::connect_packet(Version::V5, "w")).await;
    watcher.send(&subscribe("status/#")).await;
    assert!(matches!(watcher.recv().await, Packet::SubAck(_)));

    // Dropped, then back within the delay: no will.
    let (dev, _) = RawClient::connect(server.mqtt, with_will("dev", 2)).await;
    drop(dev);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (dev, ack) = RawClient::connect(server.mqtt, with_will("dev", 2)).await;
    assert!(ack.session_present);
    assert_eq!(
        watcher.recv_within(Duration::from_millis(2500)).await,
        None,
        "resumed: no will"
    );

    // Dropped for good: the will comes after the delay, not before.
    drop(dev);
    assert_eq!(
        watcher.recv_within(Duration::from_millis(1200)).await,
        None,
        "not before the delay"
    );
    let Packet::Publish(will) = watcher.recv().await else {
        panic!("will expected")
    };
    assert_eq!(&will.payload[..], b"gone");
    server.stop().await;
}
