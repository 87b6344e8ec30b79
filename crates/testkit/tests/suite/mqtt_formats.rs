//! Content negotiation (SPEC section 3): a record written in one format is
//! read in each subscriber's preferred one (JSON by default; CONNECT or
//! SUBSCRIBE user property `accept`), v5 deliveries carry the content type,
//! maps are detected without a content type, and anything that is not a
//! map is a binary record delivered byte for byte.

use crate::common::*;
use mqdb_codec::*;
use mqdb_resource::{Format, Value};
use mqdb_testkit::*;

const SCHEMA: &str = "type Sensor @table @export";

fn value(json: &str) -> Value {
    Format::Json.decode(json.as_bytes()).expect("JSON")
}

fn decoded(format: Format, payload: &[u8]) -> Value {
    format
        .decode(payload)
        .unwrap_or_else(|e| panic!("not {} ({e}): {payload:?}", format.name()))
}

/// Writes `Sensor/c` as CBOR with the v5 content type.
async fn put_cbor(server: &TestServer) {
    let mut w = connect(server, Version::V5, "cbor-writer").await;
    let mut p = publish(
        "Sensor/c",
        Format::Cbor.encode(&value(r#"{"temp":1.5,"tags":["a"]}"#)),
        QoS::AtLeastOnce,
        true,
        1,
    );
    p.properties.content_type = Some("application/cbor".into());
    let ack = publish_qos1(&mut w, p).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    disconnect(w).await;
    sync_feed(server, "Sensor").await;
}

#[tokio::test]
async fn a_cbor_record_is_read_back_as_json_by_default() {
    let server = TestServer::start(SCHEMA).await;
    put_cbor(&server).await;
    let expected = serde_json::json!({"id": "c", "temp": 1.5, "tags": ["a"]});

    let mut v5 = connect(&server, Version::V5, "v5").await;
    subscribe(&mut v5, "Sensor/c", QoS::AtMostOnce).await;
    let p = expect_publish(&mut v5).await;
    assert_eq!(json(&p.payload), expected);
    assert_eq!(
        p.properties.content_type.as_deref(),
        Some("application/json")
    );

    let mut v3 = connect(&server, Version::V311, "v3").await;
    subscribe(&mut v3, "Sensor/c", QoS::AtMostOnce).await;
    assert_eq!(json(&expect_publish(&mut v3).await.payload), expected);
    assert_eq!(rest_json(&server, "/Sensor/c").await, expected);
    server.stop().await;
}

#[tokio::test]
async fn v5_connect_accept_user_property_gets_records_as_cbor() {
    let server = TestServer::start(SCHEMA).await;
    put_cbor(&server).await;
    let mut connect = RawClient::connect_packet(Version::V5, "cbor-reader");
    connect.properties.user_properties = vec![user("accept", "application/cbor")];
    let (mut sub, _) = connect_with(&server, connect).await;
    subscribe(&mut sub, "Sensor/#", QoS::AtMostOnce).await;
    let p = expect_publish(&mut sub).await;
    assert_eq!(
        decoded(Format::Cbor, &p.payload),
        value(r#"{"id":"c","temp":1.5,"tags":["a"]}"#)
    );
    assert_eq!(
        p.properties.content_type.as_deref(),
        Some("application/cbor")
    );

    // A live change written as JSON arrives as CBOR too.
    let mut w = connect_v5(&server, "json-writer").await;
    put(&mut w, "Sensor/j", &br#"{"n":2}"#[..]).await;
    let p = expect_publish(&mut sub).await;
    assert_eq!(
        decoded(Format::Cbor, &p.payload),
        value(r#"{"id":"j","n":2}"#)
    );
    assert_eq!(
        p.properties.content_type.as_deref(),
        Some("application/cbor")
    );
    server.stop().await;
}

async fn connect_v5(server: &TestServer, id: &str) -> RawClient {
    connect(server, Version::V5, id).await
}

#[tokio::test]
async fn v5_subscribe_accept_user_property_gets_records_as_msgpack() {
    let server = TestServer::start(SCHEMA).await;
    put_cbor(&server).await;
    let mut sub = connect_v5(&server, "mp-reader").await;
    let mut s = subscribe_packet(1, "Sensor/c", opts(QoS::AtMostOnce));
    s.properties.user_properties = vec![user("accept", "application/x-msgpack")];
    sub.send(&Packet::Subscribe(s)).await;
    assert!(matches!(sub.recv().await, Packet::SubAck(_)));
    let p = expect_publish(&mut sub).await;
    assert_eq!(
        decoded(Format::MsgPack, &p.payload),
        value(r#"{"id":"c","temp":1.5,"tags":["a"]}"#)
    );
    assert_eq!(
        p.properties.content_type.as_deref(),
        Some("application/x-msgpack")
    );

    // Another client without the property: JSON.
    let mut sub2 = connect_v5(&server, "json-reader").await;
    subscribe(&mut sub2, "Sensor/c", QoS::AtMostOnce).await;
    let p = expect_publish(&mut sub2).await;
    assert_eq!(json(&p.payload)["id"], "c");
    server.stop().await;
}

#[tokio::test]
async fn a_msgpack_map_is_detected_without_a_content_type() {
    let server = TestServer::start(SCHEMA).await;
    let mut sub = connect(&server, Version::V311, "sub").await;
    subscribe(&mut sub, "Sensor/m", QoS::AtMostOnce).await;
    let mut w = connect(&server, Version::V311, "writer").await;
    put(
        &mut w,
        "Sensor/m",
        Format::MsgPack.encode(&value(r#"{"n":1,"s":"x"}"#)),
    )
    .await;
    let expected = serde_json::json!({"id": "m", "n": 1, "s": "x"});
    assert_eq!(json(&expect_publish(&mut sub).await.payload), expected);
    assert_eq!(rest_json(&server, "/Sensor/m").await, expected);
    server.stop().await;
}

#[tokio::test]
async fn a_payload_that_is_not_a_map_is_a_binary_record_delivered_byte_for_byte() {
    let server = TestServer::start(SCHEMA).await;
    let bytes: &[u8] = &[0xff, 0x00, 0x01, b'{'];
    let mut w = connect(&server, Version::V5, "writer").await;
    let mut p = publish("Sensor/bin", bytes, QoS::AtLeastOnce, true, 1);
    p.properties.content_type = Some("application/octet-stream".into());
    assert_eq!(
        publish_qos1(&mut w, p).await.reason_code,
        ReasonCode::Success
    );
    put(&mut w, "Sensor/num", &b"42"[..]).await;
    sync_feed(&server, "Sensor").await;

    let mut sub = connect(&server, Version::V5, "sub").await;
    subscribe(&mut sub, "Sensor/bin", QoS::AtMostOnce).await;
    let p = expect_publish(&mut sub).await;
    assert_eq!(&p.payload[..], bytes);
    assert_eq!(
        p.properties.content_type.as_deref(),
        Some("application/octet-stream")
    );
    subscribe(&mut sub, "Sensor/num", QoS::AtMostOnce).await;
    assert_eq!(&expect_publish(&mut sub).await.payload[..], b"42");

    let r = reqwest::get(server.url("/Sensor/bin")).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(&r.bytes().await.unwrap()[..], bytes);
    server.stop().await;
}
