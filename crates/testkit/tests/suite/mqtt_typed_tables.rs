//! A publish a typed table refuses (SPEC section 2, "Errors are visible"):
//! a v5 client gets the reason code 0x99 with a reason string naming the
//! attribute, a 3.1.1 client is disconnected; nothing is stored either way
//! and other clients are unaffected.

use crate::common::*;
use mqdb_codec::*;
use mqdb_testkit::*;

const SCHEMA: &str = "type Device @table @export { id: ID @primaryKey  name: String  temp: Float }";

#[tokio::test]
async fn v5_a_refused_typed_publish_gets_puback_0x99_naming_the_attribute() {
    let server = TestServer::start(SCHEMA).await;
    let mut watcher = connect(&server, Version::V311, "watcher").await;
    subscribe(&mut watcher, "Device/#", QoS::AtLeastOnce).await;
    let mut publisher = connect(&server, Version::V5, "pub").await;

    let ack = publish_qos1(
        &mut publisher,
        publish(
            "Device/d1",
            &br#"{"temp":"hot"}"#[..],
            QoS::AtLeastOnce,
            true,
            1,
        ),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::PayloadFormatInvalid, "{ack:?}");
    let why = ack.properties.reason_string.expect("a reason string");
    assert!(
        why.contains("temp"),
        "the reason names the attribute: {why:?}"
    );
    assert_eq!(
        rest_status(&server, "/Device/d1").await,
        404,
        "nothing stored"
    );
    expect_nothing(&mut watcher, "nothing delivered").await;

    // QoS 2: PUBREC with the reason code; the packet id is free again.
    let bad = publish(
        "Device/d1",
        &br#"{"temp":"cold"}"#[..],
        QoS::ExactlyOnce,
        true,
        2,
    );
    publisher.send(&Packet::Publish(bad)).await;
    match publisher.recv().await {
        Packet::PubRec(r) => {
            assert_eq!(
                (r.packet_id, r.reason_code),
                (pid(2), ReasonCode::PayloadFormatInvalid)
            )
        }
        other => panic!("expected PUBREC 0x99, got {other:?}"),
    }
    let good = publish(
        "Device/d1",
        &br#"{"temp":20.5}"#[..],
        QoS::ExactlyOnce,
        true,
        2,
    );
    publisher.send(&Packet::Publish(good)).await;
    match publisher.recv().await {
        Packet::PubRec(r) => {
            assert_eq!((r.packet_id, r.reason_code), (pid(2), ReasonCode::Success))
        }
        other => panic!("expected PUBREC, got {other:?}"),
    }
    publisher.send(&Packet::PubRel(PubRel::new(pid(2)))).await;
    assert!(
        matches!(publisher.recv().await, Packet::PubComp(c) if c.reason_code == ReasonCode::Success)
    );

    let p = recv_and_ack(&mut watcher).await;
    assert_eq!(
        json(&p.payload),
        serde_json::json!({"id": "d1", "temp": 20.5})
    );
    assert_eq!(
        rest_json(&server, "/Device/d1").await,
        serde_json::json!({"id": "d1", "temp": 20.5})
    );
    server.stop().await;
}

#[tokio::test]
async fn v311_a_refused_typed_publish_closes_the_connection_and_stores_nothing() {
    let server = TestServer::start(SCHEMA).await;
    let mut watcher = connect(&server, Version::V311, "watcher").await;
    subscribe(&mut watcher, "Device/#", QoS::AtLeastOnce).await;
    let mut bystander = connect(&server, Version::V311, "bystander").await;
    let mut publisher = connect(&server, Version::V311, "pub").await;

    publisher
        .send(&Packet::Publish(publish(
            "Device/d2",
            &br#"{"temp":"hot"}"#[..],
            QoS::AtLeastOnce,
            true,
            1,
        )))
        .await;
    let before_close = publisher.closed().await;
    assert!(
        !before_close.iter().any(|p| matches!(p, Packet::PubAck(_))),
        "no PUBACK for a refused publish: {before_close:?}"
    );
    assert_eq!(
        rest_status(&server, "/Device/d2").await,
        404,
        "nothing stored"
    );
    expect_nothing(&mut watcher, "nothing delivered").await;

    // Everyone else carries on.
    ping(&mut watcher).await;
    put(&mut bystander, "Device/d2", &br#"{"temp":1}"#[..]).await;
    let p = recv_and_ack(&mut watcher).await;
    assert_eq!(json(&p.payload), serde_json::json!({"id": "d2", "temp": 1}));
    server.stop().await;
}

#[tokio::test]
async fn v311_a_refused_qos0_typed_publish_also_closes_the_connection() {
    let server = TestServer::start(SCHEMA).await;
    let mut publisher = connect(&server, Version::V311, "pub").await;
    publisher
        .send(&Packet::Publish(publish(
            "Device/d3",
            &br#"{"temp":"hot"}"#[..],
            QoS::AtMostOnce,
            true,
            0,
        )))
        .await;
    assert_eq!(publisher.closed().await, vec![]);
    assert_eq!(rest_status(&server, "/Device/d3").await, 404);
    server.stop().await;
}
