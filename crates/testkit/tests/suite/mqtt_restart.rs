//! What survives a restart and how the server stops: the v5 properties of a
//! retained publish (user properties, content type, response topic,
//! correlation data, payload format) come back with the record and with a
//! free topic's retained message, also after a restart; a graceful stop
//! sends v5 clients DISCONNECT 0x8B and releases the store.

use crate::common::*;
use bytes::Bytes;
use mqdb_codec::*;
use mqdb_testkit::*;

const SCHEMA: &str = "type Sensor @table @export";

fn with_properties(topic: &str, payload: &'static [u8], content_type: &str) -> Publish {
    let mut p = publish(topic, payload, QoS::AtLeastOnce, true, 1);
    p.properties = PublishProperties {
        payload_format_indicator: Some(PayloadFormat::Utf8),
        content_type: Some(content_type.into()),
        response_topic: Some("replies/here".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
        user_properties: vec![user("k", "v"), user("k", "w"), user("origin", "test")],
        ..Default::default()
    };
    p
}

fn assert_properties(p: &Publish, content_type: &str, when: &str) {
    assert!(p.retain, "{when}: retained");
    let props = &p.properties;
    assert_eq!(props.content_type.as_deref(), Some(content_type), "{when}");
    assert_eq!(
        props.response_topic.as_deref(),
        Some("replies/here"),
        "{when}"
    );
    assert_eq!(
        props.correlation_data.as_deref(),
        Some(&b"\x00\x01corr"[..]),
        "{when}"
    );
    assert_eq!(
        props.payload_format_indicator,
        Some(PayloadFormat::Utf8),
        "{when}"
    );
    assert_eq!(
        props.user_properties,
        vec![user("k", "v"), user("k", "w"), user("origin", "test")],
        "{when}: user properties in order, repeats kept"
    );
}

async fn check(server: &TestServer, id: &str, when: &str) {
    let mut sub = connect(server, Version::V5, id).await;
    subscribe(&mut sub, "Sensor/props", QoS::AtLeastOnce).await;
    let p = recv_and_ack(&mut sub).await;
    assert_properties(&p, "application/json", &format!("record, {when}"));
    assert_eq!(json(&p.payload), serde_json::json!({"id": "props", "v": 1}));
    subscribe(&mut sub, "notes/props", QoS::AtLeastOnce).await;
    let p = recv_and_ack(&mut sub).await;
    assert_properties(&p, "text/plain", &format!("free topic, {when}"));
    assert_eq!(&p.payload[..], b"plain text");
    disconnect(sub).await;
}

#[tokio::test]
async fn v5_retained_properties_come_back_with_the_record_also_after_a_restart() {
    let server = TestServer::start(SCHEMA).await;
    let mut w = connect(&server, Version::V5, "writer").await;
    let ack = publish_qos1(
        &mut w,
        with_properties("Sensor/props", br#"{"v":1}"#, "application/json"),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    let ack = publish_qos1(
        &mut w,
        with_properties("notes/props", b"plain text", "text/plain"),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    disconnect(w).await;
    sync_feed(&server, "Sensor").await;

    check(&server, "before", "before the restart").await;
    let (server, _temp) = restart(server, SCHEMA, Default::default()).await;
    check(&server, "after", "after the restart").await;
    server.stop().await;
}

#[tokio::test]
async fn a_graceful_stop_sends_v5_clients_disconnect_0x8b_and_closes_3_1_1_clients() {
    let server = TestServer::start(SCHEMA).await;
    let mut v5 = connect(&server, Version::V5, "v5").await;
    let mut v3 = connect(&server, Version::V311, "v3").await;
    let stopping = tokio::spawn(server.stop());
    let seen = v5.closed().await;
    assert!(
        matches!(&seen[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ServerShuttingDown),
        "{seen:?}"
    );
    assert_eq!(v3.closed().await, vec![]);
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("stop finishes")
        .expect("stop task");
}

#[tokio::test]
async fn a_persistent_v5_session_connected_at_stop_resumes_after_the_restart() {
    let server = TestServer::start(SCHEMA).await;
    let (mut c, _) = connect_with(&server, persistent(Version::V5, "durable", 600)).await;
    subscribe(&mut c, "chat/#", QoS::AtLeastOnce).await;
    let (server, _temp) = restart(server, SCHEMA, Default::default()).await;
    let (mut c, ack) = connect_with(&server, persistent(Version::V5, "durable", 600)).await;
    assert!(ack.session_present);
    let mut p = connect(&server, Version::V5, "pub").await;
    publish_qos1(
        &mut p,
        publish("chat/x", &b"after restart"[..], QoS::AtLeastOnce, false, 1),
    )
    .await;
    assert_eq!(&recv_and_ack(&mut c).await.payload[..], b"after restart");
    server.stop().await;
}

#[tokio::test]
async fn the_store_is_released_when_stop_returns_even_with_clients_connected() {
    for round in 0..10 {
        let server = TestServer::start(SCHEMA).await;
        let mut clients = Vec::new();
        for i in 0..4 {
            let (c, _) =
                connect_with(&server, persistent(Version::V5, &format!("c{i}"), 600)).await;
            clients.push(c);
        }
        // Half of them vanish just before the stop, half are still connected.
        clients.truncate(2);
        let temp = server.stop().await.expect("temp dir");
        let reopened = mqdb_storage::Store::open(mqdb_storage::StoreConfig {
            path: temp.path().join("data"),
            sync: true,
            node: 0,
        });
        assert!(
            reopened.is_ok(),
            "round {round}: store still locked after stop: {:?}",
            reopened.err()
        );
    }
}
