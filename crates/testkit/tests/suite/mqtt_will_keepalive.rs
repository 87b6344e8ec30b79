//! Last Will and keep-alive: an abnormal close publishes the will, a normal
//! DISCONNECT discards it, v5 DISCONNECT 0x04 publishes it; will properties
//! and will delay (5.0); a silent client is closed after 1.5 x keep-alive
//! (v5: DISCONNECT 0x8D), and its will is published.

use std::time::{Duration, Instant};

use crate::common::*;
use bytes::Bytes;
use mqdb_codec::*;
use mqdb_testkit::*;

const SCHEMA: &str = "type Sensor @table @export";

both_versions!(
    an_abnormal_close_publishes_the_will,
    a_normal_disconnect_discards_the_will,
    a_retained_will_on_a_table_topic_writes_the_record,
    a_silent_client_is_closed_after_one_and_a_half_keep_alives,
);

fn with_will(version: Version, client_id: &str, topic: &str, payload: &'static [u8]) -> Connect {
    let mut c = RawClient::connect_packet(version, client_id);
    c.will = Some(Will {
        topic: TopicName::new(topic).unwrap(),
        payload: Bytes::from_static(payload),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
    });
    c
}

async fn watcher(server: &TestServer) -> RawClient {
    let mut w = connect(server, Version::V5, "watcher").await;
    subscribe(&mut w, "wills/#", QoS::AtLeastOnce).await;
    w
}

async fn an_abnormal_close_publishes_the_will(version: Version) {
    let server = TestServer::start(SCHEMA).await;
    let mut w = watcher(&server).await;
    let (c, _) = connect_with(&server, with_will(version, "dies", "wills/dies", b"gone")).await;
    drop(c); // no DISCONNECT
    let p = recv_and_ack(&mut w).await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("wills/dies", &b"gone"[..])
    );
    assert_eq!(p.qos, QoS::AtLeastOnce);
    expect_nothing(&mut w, "one will").await;
    server.stop().await;
}

async fn a_normal_disconnect_discards_the_will(version: Version) {
    let server = TestServer::start(SCHEMA).await;
    let mut w = watcher(&server).await;
    let (c, _) = connect_with(
        &server,
        with_will(version, "polite", "wills/polite", b"gone"),
    )
    .await;
    disconnect(c).await;
    expect_nothing(&mut w, "no will after a normal DISCONNECT").await;
    server.stop().await;
}

#[tokio::test]
async fn v5_disconnect_with_will_0x04_publishes_the_will() {
    let server = TestServer::start(SCHEMA).await;
    let mut w = watcher(&server).await;
    let (mut c, _) = connect_with(&server, with_will(Version::V5, "w", "wills/w", b"bye")).await;
    c.send(&Packet::Disconnect(Disconnect::new(
        ReasonCode::DisconnectWithWill,
    )))
    .await;
    assert_eq!(c.closed().await, vec![]);
    let p = recv_and_ack(&mut w).await;
    assert_eq!(&p.payload[..], b"bye");
    server.stop().await;
}

async fn a_retained_will_on_a_table_topic_writes_the_record(version: Version) {
    let server = TestServer::start(SCHEMA).await;
    let mut connect = with_will(version, "dev", "Sensor/dev-status", br#"{"online":false}"#);
    connect.will.as_mut().unwrap().retain = true;
    let (c, _) = connect_with(&server, connect).await;
    drop(c);
    let deadline = Instant::now() + WAIT;
    while rest_status(&server, "/Sensor/dev-status").await != 200 {
        assert!(Instant::now() < deadline, "the will record was not written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        rest_json(&server, "/Sensor/dev-status").await,
        serde_json::json!({"id": "dev-status", "online": false})
    );
    server.stop().await;
}

#[tokio::test]
async fn v5_will_properties_are_delivered_with_the_will() {
    let server = TestServer::start(SCHEMA).await;
    let mut w = watcher(&server).await;
    let mut connect = with_will(Version::V5, "props", "wills/props", b"gone");
    let props = &mut connect.will.as_mut().unwrap().properties;
    props.content_type = Some("text/plain".into());
    props.response_topic = Some("wills/reply".into());
    props.correlation_data = Some(Bytes::from_static(b"c-1"));
    props.payload_format_indicator = Some(PayloadFormat::Utf8);
    props.user_properties = vec![user("reason", "test")];
    let (c, _) = connect_with(&server, connect).await;
    drop(c);
    let p = recv_and_ack(&mut w).await;
    assert_eq!(p.properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(p.properties.response_topic.as_deref(), Some("wills/reply"));
    assert_eq!(p.properties.correlation_data.as_deref(), Some(&b"c-1"[..]));
    assert_eq!(
        p.properties.payload_format_indicator,
        Some(PayloadFormat::Utf8)
    );
    assert_eq!(p.properties.user_properties, vec![user("reason", "test")]);
    server.stop().await;
}

#[tokio::test]
async fn v5_will_delay_interval_delays_the_will_and_a_reconnect_cancels_it() {
    let server = TestServer::start(SCHEMA).await;
    let mut w = watcher(&server).await;
    let mut connect = with_will(Version::V5, "late", "wills/late", b"gone");
    connect.properties.session_expiry_interval = Some(60);
    connect
        .will
        .as_mut()
        .unwrap()
        .properties
        .will_delay_interval = Some(1);

    // Reconnecting within the delay: no will at all.
    let (c, _) = connect_with(&server, connect.clone()).await;
    drop(c);
    let mut resumed = persistent(Version::V5, "late", 60);
    resumed.will = connect.will.clone();
    let (again, _) = connect_with(&server, resumed).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    expect_nothing(&mut w, "a reconnect within the delay cancels the will").await;

    // Staying away: the will comes after about a second, not at once.
    let started = Instant::now();
    drop(again);
    expect_nothing(&mut w, "not before the delay").await;
    let p = recv_and_ack(&mut w).await;
    assert_eq!(&p.payload[..], b"gone");
    assert!(started.elapsed() >= Duration::from_millis(900));
    server.stop().await;
}

#[tokio::test]
async fn v311_a_takeover_publishes_the_old_connections_will() {
    let server = TestServer::start(SCHEMA).await;
    let mut w = watcher(&server).await;
    let (mut old, _) = connect_with(
        &server,
        with_will(Version::V311, "twin", "wills/twin", b"old"),
    )
    .await;
    let _new = connect(&server, Version::V311, "twin").await;
    assert_eq!(old.closed().await, vec![]);
    let p = recv_and_ack(&mut w).await;
    assert_eq!(&p.payload[..], b"old");
    server.stop().await;
}

async fn a_silent_client_is_closed_after_one_and_a_half_keep_alives(version: Version) {
    let server = TestServer::start(SCHEMA).await;
    let mut w = watcher(&server).await;
    let mut connect = with_will(version, "silent", "wills/silent", b"timed out");
    connect.keep_alive = 1;
    let (mut c, ack) = connect_with(&server, connect).await;
    assert_eq!(
        ack.properties.server_keep_alive, None,
        "keep alive 1 s accepted"
    );
    let started = Instant::now();
    let seen = c.closed().await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed <= Duration::from_millis(2500),
        "closed after {elapsed:?}"
    );
    match version {
        Version::V5 => assert!(
            matches!(&seen[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::KeepAliveTimeout),
            "{seen:?}"
        ),
        Version::V311 => assert_eq!(seen, vec![]),
    }
    let p = recv_and_ack(&mut w).await;
    assert_eq!(
        &p.payload[..],
        b"timed out",
        "the will follows a keep-alive timeout"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_pings_within_its_keep_alive_stays_connected() {
    let server = TestServer::start(SCHEMA).await;
    let mut connect = RawClient::connect_packet(Version::V5, "pinger");
    connect.keep_alive = 1;
    let (mut c, _) = connect_with(&server, connect).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        ping(&mut c).await;
    }
    server.stop().await;
}
