//! The broker end to end through the test kit: a retained publish writes a
//! record that a later subscriber receives as retained and REST can read; a
//! persistent session and its queued message survive a broker restart.

use bytes::Bytes;
use mqdb_codec::*;
use mqdb_testkit::*;

const SCHEMA: &str = "type Sensor @table @export";

fn publish(topic: &str, payload: &'static [u8], qos: QoS, retain: bool, id: u16) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic: TopicName::new(topic).unwrap(),
        packet_id: PacketId::new(id),
        properties: Default::default(),
        payload: Bytes::from_static(payload),
    })
}

fn subscribe(filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(1).unwrap(),
        properties: Default::default(),
        filters: vec![(
            TopicFilter::new(filter).unwrap(),
            SubscriptionOptions {
                qos,
                ..Default::default()
            },
        )],
    })
}

#[tokio::test]
async fn a_retained_publish_is_a_record_for_mqtt_and_rest() {
    let server = TestServer::start(SCHEMA).await;
    let (mut publisher, ack) =
        RawClient::connect(server.mqtt, RawClient::connect_packet(Version::V5, "p")).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    publisher
        .send(&publish(
            "Sensor/a",
            br#"{"temp":21.5}"#,
            QoS::AtLeastOnce,
            true,
            1,
        ))
        .await;
    assert!(
        matches!(publisher.recv().await, Packet::PubAck(a) if a.reason_code == ReasonCode::Success)
    );

    let (mut sub, _) =
        RawClient::connect(server.mqtt, RawClient::connect_packet(Version::V311, "s")).await;
    sub.send(&subscribe("Sensor/#", QoS::AtLeastOnce)).await;
    assert!(matches!(sub.recv().await, Packet::SubAck(_)));
    let Packet::Publish(p) = sub.recv().await else {
        panic!("retained record expected")
    };
    assert!(p.retain);
    assert_eq!(&p.payload[..], br#"{"id":"a","temp":21.5}"#);

    let body = reqwest::get(server.url("/Sensor/a"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, r#"{"id":"a","temp":21.5}"#);
    server.stop().await;
}

#[tokio::test]
async fn a_persistent_session_and_its_queue_survive_a_restart() {
    let server = TestServer::start(SCHEMA).await;
    let mut connect = RawClient::connect_packet(Version::V311, "durable");
    connect.clean_start = false;
    let (mut sub, ack) = RawClient::connect(server.mqtt, connect.clone()).await;
    assert!(!ack.session_present);
    sub.send(&subscribe("chat/#", QoS::AtLeastOnce)).await;
    assert!(matches!(sub.recv().await, Packet::SubAck(_)));
    sub.send(&Packet::Disconnect(Disconnect::default())).await;
    drop(sub);

    let (mut publisher, _) =
        RawClient::connect(server.mqtt, RawClient::connect_packet(Version::V311, "p")).await;
    publisher
        .send(&publish(
            "chat/room",
            b"while you were away",
            QoS::AtLeastOnce,
            false,
            7,
        ))
        .await;
    assert!(matches!(publisher.recv().await, Packet::PubAck(_)));
    drop(publisher);

    let temp = server.stop().await.unwrap();
    let server = TestServer::open(temp.path(), SCHEMA, Default::default()).await;
    let (mut sub, ack) = RawClient::connect(server.mqtt, connect).await;
    assert!(
        ack.session_present,
        "the session came back from the database"
    );
    let Packet::Publish(p) = sub.recv().await else {
        panic!("queued message expected")
    };
    assert_eq!(
        (&p.payload[..], p.qos),
        (&b"while you were away"[..], QoS::AtLeastOnce)
    );
    server.stop().await;
}
