//! Free topics (outside every exported table) behave as in a plain broker,
//! their retained messages stored; with `free_topics: false` they are
//! refused (v5: a reason code, 3.1.1: the connection is closed).

use crate::common::*;
use mqdb_broker::BrokerConfig;
use mqdb_codec::*;
use mqdb_testkit::*;

const SCHEMA: &str = "type Sensor @table @export";

both_versions!(a_retained_free_topic_message_is_stored_and_an_empty_one_deletes_it);

async fn a_retained_free_topic_message_is_stored_and_an_empty_one_deletes_it(version: Version) {
    let server = TestServer::start(SCHEMA).await;
    let mut live = connect(&server, version, "live").await;
    subscribe(&mut live, "chat/#", QoS::AtLeastOnce).await;
    let mut publisher = connect(&server, version, "pub").await;
    put(&mut publisher, "chat/x", &b"hello"[..]).await;
    let p = recv_and_ack(&mut live).await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("chat/x", &b"hello"[..])
    );
    assert!(!p.retain, "to a current subscriber: retain 0");

    let mut later = connect(&server, version, "later").await;
    subscribe(&mut later, "chat/+", QoS::AtLeastOnce).await;
    let p = recv_and_ack(&mut later).await;
    assert!(p.retain);
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("chat/x", &b"hello"[..])
    );
    expect_nothing(&mut later, "one retained message").await;

    put(&mut publisher, "chat/x", bytes::Bytes::new()).await;
    let p = recv_and_ack(&mut live).await;
    assert_eq!((p.topic.as_str(), p.payload.len()), ("chat/x", 0));
    let p = recv_and_ack(&mut later).await;
    assert_eq!(p.payload.len(), 0);

    let mut last = connect(&server, version, "last").await;
    subscribe(&mut last, "chat/#", QoS::AtLeastOnce).await;
    expect_nothing(&mut last, "the retained message was deleted").await;
    server.stop().await;
}

fn no_free_topics() -> BrokerConfig {
    BrokerConfig {
        free_topics: false,
        ..Default::default()
    }
}

#[tokio::test]
async fn v5_free_topics_disabled_refuses_a_publish_with_a_reason_code() {
    let server = TestServer::start_with(SCHEMA, no_free_topics()).await;
    let mut c = connect(&server, Version::V5, "c").await;
    let ack = publish_qos1(
        &mut c,
        publish("chat/x", &b"hi"[..], QoS::AtLeastOnce, true, 1),
    )
    .await;
    assert!(ack.reason_code.is_error(), "{ack:?}");
    c.send(&Packet::Publish(publish(
        "chat/y",
        &b"hi"[..],
        QoS::ExactlyOnce,
        false,
        2,
    )))
    .await;
    match c.recv().await {
        Packet::PubRec(r) => assert!(r.reason_code.is_error(), "{r:?}"),
        other => panic!("expected PUBREC with an error, got {other:?}"),
    }
    // Tables still work on the same connection, and nothing was retained.
    put(&mut c, "Sensor/ok", &br#"{"ok":true}"#[..]).await;
    assert_eq!(rest_status(&server, "/Sensor/ok").await, 200);
    let mut other = connect(&server, Version::V5, "other").await;
    let ack = subscribe_with(&mut other, "chat/#", opts(QoS::AtLeastOnce)).await;
    if !ack.reason_codes[0].is_error() {
        expect_nothing(&mut other, "nothing was retained").await;
    }
    server.stop().await;
}

#[tokio::test]
async fn v311_free_topics_disabled_closes_the_connection_of_a_publisher() {
    let server = TestServer::start_with(SCHEMA, no_free_topics()).await;
    let mut bystander = connect(&server, Version::V311, "bystander").await;
    let mut c = connect(&server, Version::V311, "c").await;
    c.send(&Packet::Publish(publish(
        "chat/x",
        &b"hi"[..],
        QoS::AtLeastOnce,
        true,
        1,
    )))
    .await;
    let seen = c.closed().await;
    assert!(
        !seen.iter().any(|p| matches!(p, Packet::PubAck(_))),
        "{seen:?}"
    );
    put(&mut bystander, "Sensor/ok", &br#"{"ok":true}"#[..]).await;
    server.stop().await;
}
