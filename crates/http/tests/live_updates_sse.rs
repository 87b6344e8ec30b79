//! Live updates over Server-Sent Events (SPEC §4): the current state, then
//! every change, as JSON events `{"type", "id", "value", "version", "timestamp"}`.

mod common;

use common::{EventStream, Server, within};
use reqwest::Method;
use serde_json::json;

fn put_event(event: &serde_json::Value, id: &str, value: serde_json::Value) -> u64 {
    assert_eq!(event["type"], "put", "{event}");
    assert_eq!(event["id"], id, "{event}");
    assert_eq!(event["value"], value, "{event}");
    assert!(
        event["timestamp"].as_u64().unwrap() > 1_600_000_000_000,
        "{event}"
    );
    event["version"].as_u64().expect("version")
}

#[tokio::test]
async fn a_record_stream_sends_the_current_value_then_each_change_in_order() {
    let server = Server::start().await;
    server.put_json("/Sensor/s1", json!({"temp": 20})).await;
    let mut events = EventStream::open(&server, "/Sensor/s1").await;
    let v1 = put_event(&events.event().await, "s1", json!({"temp": 20, "id": "s1"}));

    server.put_json("/Sensor/s1", json!({"temp": 21})).await;
    server.put_json("/Sensor/other", json!({"temp": 0})).await; // not this record
    server
        .patch_json("/Sensor/s1", json!({"room": "hall"}))
        .await;
    assert_eq!(server.delete("/Sensor/s1").await.status(), 204);

    let v2 = put_event(&events.event().await, "s1", json!({"temp": 21, "id": "s1"}));
    let v3 = put_event(
        &events.event().await,
        "s1",
        json!({"temp": 21, "id": "s1", "room": "hall"}),
    );
    let delete = events.event().await;
    assert_eq!(delete["type"], "delete");
    assert_eq!(delete["id"], "s1");
    assert!(delete["value"].is_null());
    let v4 = delete["version"].as_u64().unwrap();
    assert!(v1 < v2 && v2 < v3 && v3 < v4, "{v1} {v2} {v3} {v4}");
    drop(events);
    server.stop().await;
}

#[tokio::test]
async fn a_stream_of_a_missing_record_starts_empty_and_sees_its_creation() {
    let server = Server::start().await;
    let mut events = EventStream::open(&server, "/Sensor/later").await;
    server.put_json("/Sensor/later", json!({"a": 1})).await;
    put_event(
        &events.event().await,
        "later",
        json!({"a": 1, "id": "later"}),
    );
    drop(events);
    server.stop().await;
}

#[tokio::test]
async fn a_table_stream_sends_every_record_then_changes_including_binary_ones() {
    let server = Server::start().await;
    server.put_json("/Sensor/a", json!({"n": 1})).await;
    server.put_json("/Sensor/b/c", json!({"n": 2})).await;
    let mut events = EventStream::open(&server, "/Sensor/").await;
    put_event(&events.event().await, "a", json!({"n": 1, "id": "a"}));
    put_event(&events.event().await, "b/c", json!({"n": 2, "id": "b/c"}));

    server
        .send(Method::PUT, "/Sensor/raw", Some("text/plain"), "hi")
        .await;
    server.delete("/Sensor/a").await;
    put_event(&events.event().await, "raw", json!({"$bytes": "aGk="}));
    let delete = events.event().await;
    assert_eq!(
        (delete["type"].as_str(), delete["id"].as_str()),
        (Some("delete"), Some("a"))
    );
    drop(events);
    server.stop().await;
}

#[tokio::test]
async fn a_query_stream_follows_records_in_and_out_of_the_query() {
    let server = Server::start().await;
    server
        .put_json("/Device/d1", json!({"room": "kitchen", "temp": 20.0}))
        .await;
    server
        .put_json("/Device/d2", json!({"room": "hall", "temp": 19.0}))
        .await;
    let mut events = EventStream::open(&server, "/Device/?room=kitchen").await;
    put_event(
        &events.event().await,
        "d1",
        json!({"id": "d1", "room": "kitchen", "temp": 20.0}),
    );

    server
        .patch_json("/Device/d2", json!({"room": "kitchen"}))
        .await; // enters
    server
        .patch_json("/Device/d1", json!({"room": "hall"}))
        .await; // leaves
    put_event(
        &events.event().await,
        "d2",
        json!({"id": "d2", "room": "kitchen", "temp": 19.0}),
    );
    let left = events.event().await;
    assert_eq!(
        (left["type"].as_str(), left["id"].as_str()),
        (Some("delete"), Some("d1"))
    );
    drop(events);
    server.stop().await;
}

#[tokio::test]
async fn streams_end_when_the_server_shuts_down() {
    let server = Server::start().await;
    server.put_json("/Sensor/x", json!({})).await;
    let mut events = EventStream::open(&server, "/Sensor/").await;
    events.event().await;
    server.stop().await; // waits for `serve` to return, so the stream must end
    assert!(within("stream end", events.next()).await.is_none());
}

#[tokio::test]
async fn head_of_a_stream_gets_its_headers_only() {
    let server = Server::start().await;
    let head = server
        .client
        .head(server.url("/Sensor/"))
        .header("accept", "text/event-stream");
    let head = within("HEAD", head.send()).await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "text/event-stream");
    server.stop().await;
}
