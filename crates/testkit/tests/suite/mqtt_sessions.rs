//! Sessions: clean and persistent, an exact session-present flag in both
//! versions, session expiry, client-id take-over, server-assigned client
//! ids and the 3.1.1 refusal of an empty client id without a clean session.

use std::time::Duration;

use crate::common::*;
use mqdb_codec::*;
use mqdb_testkit::*;

const SCHEMA: &str = "type Sensor @table @export";

async fn session_present(server: &TestServer, connect: Connect) -> (RawClient, bool) {
    let (c, ack) = connect_with(server, connect).await;
    (c, ack.session_present)
}

#[tokio::test]
async fn v311_session_present_is_exact() {
    let server = TestServer::start(SCHEMA).await;
    let durable = persistent(Version::V311, "c", 0);
    let (c, present) = session_present(&server, durable.clone()).await;
    assert!(!present, "first connection: no session");
    disconnect(c).await;
    let (c, present) = session_present(&server, durable.clone()).await;
    assert!(present, "clean session 0 again: the session is there");
    disconnect(c).await;
    let clean = RawClient::connect_packet(Version::V311, "c");
    let (c, present) = session_present(&server, clean).await;
    assert!(!present, "clean session 1 never resumes");
    disconnect(c).await;
    let (c, present) = session_present(&server, durable).await;
    assert!(!present, "the clean session discarded the stored one");
    disconnect(c).await;
    server.stop().await;
}

#[tokio::test]
async fn v5_session_present_is_exact() {
    let server = TestServer::start(SCHEMA).await;
    // Session expiry 0: the session ends with the connection.
    let (c, present) = session_present(&server, persistent(Version::V5, "c", 0)).await;
    assert!(!present);
    disconnect(c).await;
    let (c, present) = session_present(&server, persistent(Version::V5, "c", 0)).await;
    assert!(!present, "expiry 0: nothing to resume");
    disconnect(c).await;

    // Session expiry 60: it stays, with its subscriptions.
    let (mut c, present) = session_present(&server, persistent(Version::V5, "c", 60)).await;
    assert!(!present);
    subscribe(&mut c, "chat/#", QoS::AtLeastOnce).await;
    disconnect(c).await;
    let mut publisher = connect(&server, Version::V5, "pub").await;
    publish_qos1(
        &mut publisher,
        publish("chat/a", &b"queued"[..], QoS::AtLeastOnce, false, 1),
    )
    .await;
    publisher
        .send(&Packet::Publish(publish(
            "chat/a",
            &b"qos0 is not queued"[..],
            QoS::AtMostOnce,
            false,
            0,
        )))
        .await;
    processed(&mut publisher).await;
    let (mut c, present) = session_present(&server, persistent(Version::V5, "c", 60)).await;
    assert!(present, "expiry 60: resumed");
    assert_eq!(&recv_and_ack(&mut c).await.payload[..], b"queued");
    expect_nothing(&mut c, "QoS 0 messages are not kept for an offline session").await;
    publish_qos1(
        &mut publisher,
        publish("chat/b", &b"live"[..], QoS::AtLeastOnce, false, 2),
    )
    .await;
    assert_eq!(
        &recv_and_ack(&mut c).await.payload[..],
        b"live",
        "the subscription was kept"
    );
    disconnect(c).await;

    let mut clean = RawClient::connect_packet(Version::V5, "c");
    clean.properties.session_expiry_interval = Some(60);
    let (c, present) = session_present(&server, clean).await;
    assert!(!present, "clean start discards the session");
    disconnect(c).await;
    server.stop().await;
}

#[tokio::test]
async fn v5_disconnect_with_session_expiry_0_ends_the_session() {
    let server = TestServer::start(SCHEMA).await;
    let (mut c, _) = session_present(&server, persistent(Version::V5, "c", 60)).await;
    let mut d = Disconnect::default();
    d.properties.session_expiry_interval = Some(0);
    c.send(&Packet::Disconnect(d)).await;
    assert_eq!(c.closed().await, vec![]);
    let (_c, present) = session_present(&server, persistent(Version::V5, "c", 60)).await;
    assert!(!present);
    server.stop().await;
}

#[tokio::test]
async fn v5_a_session_ends_after_its_expiry_interval() {
    let server = TestServer::start(SCHEMA).await;
    let (mut c, _) = session_present(&server, persistent(Version::V5, "short", 1)).await;
    subscribe(&mut c, "chat/#", QoS::AtLeastOnce).await;
    disconnect(c).await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (mut c, present) = session_present(&server, persistent(Version::V5, "short", 1)).await;
    assert!(!present, "the session expired after 1 s");
    let mut publisher = connect(&server, Version::V5, "pub").await;
    publish_qos1(
        &mut publisher,
        publish("chat/a", &b"x"[..], QoS::AtLeastOnce, false, 1),
    )
    .await;
    expect_nothing(&mut c, "the expired session's subscription is gone").await;
    server.stop().await;
}

#[tokio::test]
async fn v5_client_id_takeover_disconnects_the_old_connection_with_0x8e() {
    let server = TestServer::start(SCHEMA).await;
    for clean_start in [true, false] {
        let mut first = RawClient::connect_packet(Version::V5, "twin");
        first.clean_start = clean_start;
        first.properties.session_expiry_interval = Some(60);
        let (mut old, _) = connect_with(&server, first.clone()).await;
        subscribe(&mut old, "chat/#", QoS::AtLeastOnce).await;
        let (mut new, ack) = connect_with(&server, first).await;
        assert_eq!(ack.session_present, !clean_start);
        let seen = old.closed().await;
        assert!(
            matches!(&seen[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::SessionTakenOver),
            "clean_start={clean_start}: {seen:?}"
        );
        ping(&mut new).await;
        disconnect(new).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn v311_client_id_takeover_closes_the_old_connection() {
    let server = TestServer::start(SCHEMA).await;
    let mut old = connect(&server, Version::V311, "twin").await;
    let mut new = connect(&server, Version::V311, "twin").await;
    assert_eq!(old.closed().await, vec![], "3.1.1 has no server DISCONNECT");
    ping(&mut new).await;
    server.stop().await;
}

#[tokio::test]
async fn v5_an_empty_client_id_gets_an_assigned_client_identifier() {
    let server = TestServer::start(SCHEMA).await;
    let (mut a, ack_a) = connect_with(&server, RawClient::connect_packet(Version::V5, "")).await;
    let (_b, ack_b) = connect_with(&server, RawClient::connect_packet(Version::V5, "")).await;
    let id_a = ack_a
        .properties
        .assigned_client_identifier
        .expect("assigned client identifier");
    let id_b = ack_b
        .properties
        .assigned_client_identifier
        .expect("assigned client identifier");
    assert!(!id_a.is_empty());
    assert_ne!(id_a, id_b, "unique per connection");
    ping(&mut a).await;
    server.stop().await;
}

#[tokio::test]
async fn v311_an_empty_client_id_is_accepted_with_a_clean_session() {
    let server = TestServer::start(SCHEMA).await;
    let (mut c, ack) = connect_with(&server, RawClient::connect_packet(Version::V311, "")).await;
    assert!(!ack.session_present);
    ping(&mut c).await;
    server.stop().await;
}

#[tokio::test]
async fn v311_an_empty_client_id_without_clean_session_is_refused_with_code_2() {
    let server = TestServer::start(SCHEMA).await;
    let (mut c, ack) = RawClient::connect(server.mqtt, persistent(Version::V311, "", 0)).await;
    assert_eq!(ack.reason_code.to_v3_connack(), 2);
    assert_eq!(ack.reason_code, ReasonCode::ClientIdentifierNotValid);
    assert!(!ack.session_present);
    assert_eq!(c.closed().await, vec![]);
    server.stop().await;
}
