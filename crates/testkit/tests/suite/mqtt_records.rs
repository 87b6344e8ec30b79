//! Records as topics (SPEC section 2): a subscription gets the current
//! record(s) as retained messages after its SUBACK, then live changes with
//! retain 0 (retain 1 under retain-as-published); v5 retain handling; a
//! retained empty publish deletes; a non-retained publish is delivered but
//! not stored; REST writes reach MQTT subscribers; query subscriptions;
//! cross-table filters; no-local.

use std::collections::BTreeSet;

use crate::common::*;
use mqdb_codec::*;
use mqdb_testkit::*;

const SCHEMA: &str = "type Sensor @table @export\ntype Device @table @export(name: \"devices\")";

both_versions!(
    subscribing_to_a_record_gets_suback_then_the_record_as_retained,
    wildcard_filters_get_one_retained_message_per_matching_record,
    live_changes_follow_with_retain_0,
    an_empty_retained_publish_deletes_the_record,
    a_non_retained_publish_to_a_table_topic_is_delivered_but_not_stored,
    rest_writes_reach_mqtt_subscribers,
    a_query_subscription_follows_matching_records,
    a_cross_table_subscription_sees_records_of_every_table,
);

/// Every PUBLISH that arrives until the connection is quiet.
async fn drain(c: &mut RawClient) -> Vec<Publish> {
    let mut out = Vec::new();
    while let Some(p) = c.recv_within(QUIET).await {
        match p {
            Packet::Publish(p) => {
                ack_publish(c, &p).await;
                out.push(p);
            }
            other => panic!("expected only PUBLISH, got {other:?}"),
        }
    }
    out
}

/// Writes records over MQTT and waits until the change feed has passed them,
/// so a later subscriber sees them as retained only.
async fn seed(server: &TestServer, records: &[(&str, &str)]) {
    let mut w = connect(server, Version::V5, "seed").await;
    for (topic, body) in records {
        put(&mut w, topic, body.as_bytes().to_vec()).await;
    }
    disconnect(w).await;
    sync_feed(server, "Sensor").await;
}

async fn subscribing_to_a_record_gets_suback_then_the_record_as_retained(version: Version) {
    let server = TestServer::start(SCHEMA).await;
    seed(&server, &[("Sensor/a", r#"{"temp":21.5}"#)]).await;
    let mut sub = connect(&server, version, "sub").await;
    subscribe(&mut sub, "Sensor/a", QoS::AtLeastOnce).await;
    let p = recv_and_ack(&mut sub).await;
    assert!(p.retain, "the current record comes as a retained message");
    assert_eq!(p.topic, "Sensor/a");
    assert_eq!(
        json(&p.payload),
        serde_json::json!({"id": "a", "temp": 21.5})
    );
    expect_nothing(&mut sub, "one record, one message").await;

    subscribe(&mut sub, "Sensor/missing", QoS::AtLeastOnce).await;
    expect_nothing(&mut sub, "no record, no message").await;
    server.stop().await;
}

async fn wildcard_filters_get_one_retained_message_per_matching_record(version: Version) {
    let server = TestServer::start(SCHEMA).await;
    let records = [
        ("Sensor/a", r#"{"n":1}"#),
        ("Sensor/b", r#"{"n":2}"#),
        ("Sensor/a/status", r#"{"ok":true}"#),
        ("Sensor/b/status", r#"{"ok":false}"#),
        ("Sensor/c/other", r#"{"n":3}"#),
        ("devices/a", r#"{"n":4}"#),
    ];
    seed(&server, &records).await;
    let cases: [(&str, &[&str]); 3] = [
        (
            "Sensor/#",
            &[
                "Sensor/a",
                "Sensor/a/status",
                "Sensor/b",
                "Sensor/b/status",
                "Sensor/c/other",
            ],
        ),
        ("Sensor/+", &["Sensor/a", "Sensor/b"]),
        ("Sensor/+/status", &["Sensor/a/status", "Sensor/b/status"]),
    ];
    for (i, (filter, expected)) in cases.into_iter().enumerate() {
        let mut sub = connect(&server, version, &format!("sub{i}")).await;
        subscribe(&mut sub, filter, QoS::AtMostOnce).await;
        let got = drain(&mut sub).await;
        assert!(got.iter().all(|p| p.retain), "{filter}: all retained");
        let topics: Vec<&str> = got.iter().map(|p| p.topic.as_str()).collect();
        let unique: BTreeSet<&str> = topics.iter().copied().collect();
        assert_eq!(
            topics.len(),
            unique.len(),
            "{filter}: one message per record: {topics:?}"
        );
        assert_eq!(unique, expected.iter().copied().collect(), "{filter}");
        let a_status = got.iter().find(|p| p.topic == "Sensor/a/status");
        if let Some(p) = a_status {
            assert_eq!(
                json(&p.payload),
                serde_json::json!({"id": "a/status", "ok": true})
            );
        }
    }
    server.stop().await;
}

async fn live_changes_follow_with_retain_0(version: Version) {
    let server = TestServer::start(SCHEMA).await;
    seed(&server, &[("Sensor/live", r#"{"v":1}"#)]).await;
    let mut sub = connect(&server, version, "sub").await;
    subscribe(&mut sub, "Sensor/live", QoS::AtLeastOnce).await;
    assert!(recv_and_ack(&mut sub).await.retain);
    let mut w = connect(&server, version, "writer").await;
    put(&mut w, "Sensor/live", &br#"{"v":2}"#[..]).await;
    let p = recv_and_ack(&mut sub).await;
    assert!(!p.retain, "a live change is a normal message");
    assert_eq!(json(&p.payload), serde_json::json!({"id": "live", "v": 2}));
    expect_nothing(&mut sub, "one change, one message").await;
    server.stop().await;
}

#[tokio::test]
async fn v5_retain_as_published_keeps_retain_1_on_live_record_changes() {
    let server = TestServer::start(SCHEMA).await;
    seed(&server, &[("Sensor/rap", r#"{"v":1}"#)]).await;
    let mut sub = connect(&server, Version::V5, "sub").await;
    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        retain_as_published: true,
        ..Default::default()
    };
    subscribe_with(&mut sub, "Sensor/#", options).await;
    assert!(recv_and_ack(&mut sub).await.retain);
    let mut w = connect(&server, Version::V5, "writer").await;
    put(&mut w, "Sensor/rap", &br#"{"v":2}"#[..]).await;
    let p = recv_and_ack(&mut sub).await;
    assert!(p.retain, "published with retain=1");
    assert_eq!(json(&p.payload), serde_json::json!({"id": "rap", "v": 2}));
    // A non-retained publish keeps retain=0.
    publish_qos1(
        &mut w,
        publish("Sensor/rap", &br#"{"v":3}"#[..], QoS::AtLeastOnce, false, 2),
    )
    .await;
    assert!(!recv_and_ack(&mut sub).await.retain);
    server.stop().await;
}

#[tokio::test]
async fn v5_retain_handling_1_sends_retained_only_for_a_new_subscription() {
    let server = TestServer::start(SCHEMA).await;
    seed(&server, &[("Sensor/rh", r#"{"v":1}"#)]).await;
    let mut sub = connect(&server, Version::V5, "sub").await;
    let options = SubscriptionOptions {
        qos: QoS::AtMostOnce,
        retain_handling: RetainHandling::SendIfNew,
        ..Default::default()
    };
    subscribe_with(&mut sub, "Sensor/rh", options).await;
    assert!(
        expect_publish(&mut sub).await.retain,
        "new subscription: sent"
    );
    subscribe_with(&mut sub, "Sensor/rh", options).await;
    expect_nothing(&mut sub, "existing subscription: not sent again").await;
    subscribe_with(&mut sub, "Sensor/+", options).await;
    assert!(
        expect_publish(&mut sub).await.retain,
        "another new filter: sent"
    );
    server.stop().await;
}

#[tokio::test]
async fn v5_retain_handling_2_never_sends_retained_but_live_changes_flow() {
    let server = TestServer::start(SCHEMA).await;
    seed(&server, &[("Sensor/rh2", r#"{"v":1}"#)]).await;
    let mut sub = connect(&server, Version::V5, "sub").await;
    let options = SubscriptionOptions {
        qos: QoS::AtMostOnce,
        retain_handling: RetainHandling::DoNotSend,
        ..Default::default()
    };
    subscribe_with(&mut sub, "Sensor/rh2", options).await;
    expect_nothing(&mut sub, "retain handling 2").await;
    let mut w = connect(&server, Version::V5, "writer").await;
    put(&mut w, "Sensor/rh2", &br#"{"v":2}"#[..]).await;
    let p = expect_publish(&mut sub).await;
    assert_eq!(json(&p.payload), serde_json::json!({"id": "rh2", "v": 2}));
    server.stop().await;
}

async fn an_empty_retained_publish_deletes_the_record(version: Version) {
    let server = TestServer::start(SCHEMA).await;
    seed(&server, &[("Sensor/d", r#"{"v":1}"#)]).await;
    assert_eq!(rest_status(&server, "/Sensor/d").await, 200);
    let mut sub = connect(&server, version, "sub").await;
    subscribe(&mut sub, "Sensor/d", QoS::AtLeastOnce).await;
    assert!(recv_and_ack(&mut sub).await.retain);

    let mut w = connect(&server, version, "writer").await;
    put(&mut w, "Sensor/d", bytes::Bytes::new()).await;
    let p = recv_and_ack(&mut sub).await;
    assert_eq!(
        (p.topic.as_str(), p.payload.len()),
        ("Sensor/d", 0),
        "a delete"
    );
    assert!(!p.retain);
    assert_eq!(rest_status(&server, "/Sensor/d").await, 404);

    let mut late = connect(&server, version, "late").await;
    subscribe(&mut late, "Sensor/d", QoS::AtLeastOnce).await;
    expect_nothing(&mut late, "a deleted record is not retained").await;
    server.stop().await;
}

async fn a_non_retained_publish_to_a_table_topic_is_delivered_but_not_stored(version: Version) {
    let server = TestServer::start(SCHEMA).await;
    let mut sub = connect(&server, version, "sub").await;
    subscribe(&mut sub, "Sensor/+", QoS::AtLeastOnce).await;
    let mut w = connect(&server, version, "writer").await;
    let body = br#"{"x": 1}"#;
    let ack = publish_qos1(
        &mut w,
        publish("Sensor/n", &body[..], QoS::AtLeastOnce, false, 5),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    let p = recv_and_ack(&mut sub).await;
    assert_eq!(p.topic, "Sensor/n");
    assert_eq!(json(&p.payload), serde_json::json!({"x": 1}), "no id added");
    assert!(!p.retain);
    assert_eq!(rest_status(&server, "/Sensor/n").await, 404, "not stored");
    let mut late = connect(&server, version, "late").await;
    subscribe(&mut late, "Sensor/n", QoS::AtLeastOnce).await;
    expect_nothing(&mut late, "nothing retained").await;
    server.stop().await;
}

async fn rest_writes_reach_mqtt_subscribers(version: Version) {
    let server = TestServer::start(SCHEMA).await;
    let mut sub = connect(&server, version, "sub").await;
    subscribe(&mut sub, "Sensor/#", QoS::AtLeastOnce).await;
    let http = reqwest::Client::new();
    let send = |method: reqwest::Method, path: &str, body: &'static str| {
        http.request(method, server.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let r = send(reqwest::Method::PUT, "/Sensor/r", r#"{"room":"kitchen"}"#)
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let p = recv_and_ack(&mut sub).await;
    assert_eq!(p.topic, "Sensor/r");
    assert!(!p.retain);
    assert_eq!(
        json(&p.payload),
        serde_json::json!({"id": "r", "room": "kitchen"})
    );

    let r = send(reqwest::Method::PATCH, "/Sensor/r", r#"{"temp":3}"#)
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let p = recv_and_ack(&mut sub).await;
    assert_eq!(
        json(&p.payload),
        serde_json::json!({"id": "r", "room": "kitchen", "temp": 3}),
        "the full resulting record"
    );

    let r = send(reqwest::Method::DELETE, "/Sensor/r", "")
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let p = recv_and_ack(&mut sub).await;
    assert_eq!((p.topic.as_str(), p.payload.len()), ("Sensor/r", 0));

    let r = send(reqwest::Method::POST, "/Sensor/", r#"{"posted":true}"#)
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let p = recv_and_ack(&mut sub).await;
    let id = p.topic.strip_prefix("Sensor/").expect("a Sensor record");
    assert_eq!(
        json(&p.payload),
        serde_json::json!({"id": id, "posted": true})
    );
    expect_nothing(&mut sub, "one message per REST write").await;
    server.stop().await;
}

async fn a_query_subscription_follows_matching_records(version: Version) {
    let server = TestServer::start(SCHEMA).await;
    seed(
        &server,
        &[
            ("Sensor/k1", r#"{"room":"kitchen","t":1}"#),
            ("Sensor/h1", r#"{"room":"hall","t":2}"#),
        ],
    )
    .await;
    let mut sub = connect(&server, version, "sub").await;
    subscribe(&mut sub, "Sensor/?room=kitchen", QoS::AtLeastOnce).await;
    let p = recv_and_ack(&mut sub).await;
    assert!(p.retain);
    assert_eq!(p.topic, "Sensor/k1");
    assert_eq!(
        json(&p.payload),
        serde_json::json!({"id": "k1", "room": "kitchen", "t": 1})
    );
    expect_nothing(&mut sub, "only matching records").await;

    let mut w = connect(&server, version, "writer").await;
    // h1 starts matching: delivered.
    put(&mut w, "Sensor/h1", &br#"{"room":"kitchen","t":3}"#[..]).await;
    let p = recv_and_ack(&mut sub).await;
    assert_eq!((p.topic.as_str(), p.retain), ("Sensor/h1", false));
    assert_eq!(json(&p.payload)["t"], 3);
    // k1 stops matching: one zero-length message.
    put(&mut w, "Sensor/k1", &br#"{"room":"garage","t":4}"#[..]).await;
    let p = recv_and_ack(&mut sub).await;
    assert_eq!((p.topic.as_str(), p.payload.len()), ("Sensor/k1", 0));
    // Changes of a record that does not match: nothing.
    put(&mut w, "Sensor/k1", &br#"{"room":"attic","t":5}"#[..]).await;
    put(&mut w, "Sensor/other", &br#"{"room":"hall"}"#[..]).await;
    expect_nothing(&mut sub, "non-matching changes").await;
    // A matching record deleted: zero-length.
    put(&mut w, "Sensor/h1", bytes::Bytes::new()).await;
    let p = recv_and_ack(&mut sub).await;
    assert_eq!((p.topic.as_str(), p.payload.len()), ("Sensor/h1", 0));
    expect_nothing(&mut sub, "one message per change").await;
    server.stop().await;
}

async fn a_cross_table_subscription_sees_records_of_every_table(version: Version) {
    let server = TestServer::start(SCHEMA).await;
    seed(
        &server,
        &[("Sensor/a", r#"{"s":1}"#), ("devices/a", r#"{"d":1}"#)],
    )
    .await;
    let mut all = connect(&server, version, "all").await;
    subscribe(&mut all, "#", QoS::AtMostOnce).await;
    let got = drain(&mut all).await;
    let topics: BTreeSet<&str> = got.iter().map(|p| p.topic.as_str()).collect();
    assert_eq!(topics, BTreeSet::from(["Sensor/a", "devices/a"]));
    assert!(got.iter().all(|p| p.retain));

    let mut plus = connect(&server, version, "plus").await;
    subscribe(&mut plus, "+/a", QoS::AtMostOnce).await;
    let got = drain(&mut plus).await;
    let topics: BTreeSet<&str> = got.iter().map(|p| p.topic.as_str()).collect();
    assert_eq!(topics, BTreeSet::from(["Sensor/a", "devices/a"]));

    let mut w = connect(&server, version, "writer").await;
    put(&mut w, "devices/b", &br#"{"d":2}"#[..]).await;
    let p = expect_publish(&mut all).await;
    assert_eq!(p.topic, "devices/b");
    assert_eq!(json(&p.payload), serde_json::json!({"id": "b", "d": 2}));
    expect_nothing(&mut plus, "+/a does not match devices/b").await;
    server.stop().await;
}

#[tokio::test]
async fn a_non_retained_publish_to_a_table_topic_keeps_its_exact_bytes() {
    let server = TestServer::start(SCHEMA).await;
    let mut sub = connect(&server, Version::V311, "sub").await;
    subscribe(&mut sub, "Sensor/+", QoS::AtMostOnce).await;
    let mut w = connect(&server, Version::V311, "writer").await;
    let body = b"{ \"x\": 1.50,\n  \"a\": [1, 2] }";
    w.send(&Packet::Publish(publish(
        "Sensor/exact",
        &body[..],
        QoS::AtMostOnce,
        false,
        0,
    )))
    .await;
    let p = expect_publish(&mut sub).await;
    assert_eq!(
        String::from_utf8_lossy(&p.payload),
        String::from_utf8_lossy(body),
        "byte for byte"
    );
    server.stop().await;
}

#[tokio::test]
async fn v5_no_local_suppresses_the_clients_own_free_topic_messages() {
    let server = TestServer::start(SCHEMA).await;
    let mut me = connect(&server, Version::V5, "me").await;
    let no_local = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        no_local: true,
        ..Default::default()
    };
    subscribe_with(&mut me, "chat/#", no_local).await;
    let mut other = connect(&server, Version::V5, "other").await;
    subscribe(&mut other, "chat/#", QoS::AtLeastOnce).await;
    publish_qos1(
        &mut me,
        publish("chat/room", &b"mine"[..], QoS::AtLeastOnce, false, 1),
    )
    .await;
    assert_eq!(&recv_and_ack(&mut other).await.payload[..], b"mine");
    expect_nothing(&mut me, "no local").await;
    publish_qos1(
        &mut other,
        publish("chat/room", &b"theirs"[..], QoS::AtLeastOnce, false, 1),
    )
    .await;
    assert_eq!(&recv_and_ack(&mut me).await.payload[..], b"theirs");
    server.stop().await;
}

#[tokio::test]
async fn v5_no_local_suppresses_the_clients_own_record_writes() {
    let server = TestServer::start(SCHEMA).await;
    let mut me = connect(&server, Version::V5, "me").await;
    let no_local = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        no_local: true,
        retain_handling: RetainHandling::DoNotSend,
        ..Default::default()
    };
    subscribe_with(&mut me, "Sensor/#", no_local).await;
    let mut other = connect(&server, Version::V5, "other").await;
    subscribe(&mut other, "Sensor/#", QoS::AtLeastOnce).await;
    me.send(&Packet::Publish(publish(
        "Sensor/mine",
        &br#"{"v":1}"#[..],
        QoS::AtLeastOnce,
        true,
        1,
    )))
    .await;
    let p = recv_and_ack(&mut other).await;
    assert_eq!(p.topic, "Sensor/mine");
    match me.recv().await {
        Packet::PubAck(a) => assert_eq!(a.reason_code, ReasonCode::Success),
        other => panic!("expected only the PUBACK, got {other:?}"),
    }
    expect_nothing(&mut me, "no local: the client's own change").await;
    server.stop().await;
}
