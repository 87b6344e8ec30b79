//! A record written in one format reads back equal in every other (SPEC §3):
//! JSON, CBOR and MessagePack in, any of them out, per request.

mod common;

use common::{Server, value};
use mqdb_resource::{Format, Value};
use reqwest::Method;
use serde_json::json;

async fn read_as(server: &Server, path: &str, format: Format) -> Value {
    let response = server.get_as(path, format.content_type()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], format.content_type());
    assert_eq!(response.headers()["vary"], "Accept");
    format
        .decode(&response.bytes().await.unwrap())
        .expect("decodes in its format")
}

fn record() -> serde_json::Value {
    json!({
        "id": "r1",
        "name": "probe ü",
        "n": -7,
        "big": 18446744073709551615u64,
        "f": 21.25,
        "ok": true,
        "none": null,
        "tags": ["a", 1, [2.5]],
        "nested": {"bytes": {"$bytes": "AAEC"}},
    })
}

#[tokio::test]
async fn json_in_reads_back_equal_as_json_cbor_and_msgpack() {
    let server = Server::start().await;
    let put = server.put_json("/Sensor/r1", record()).await;
    assert_eq!(put.status(), 204);
    let want = value(&record());
    for format in Format::ALL {
        assert_eq!(
            read_as(&server, "/Sensor/r1", format).await,
            want,
            "as {format}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn cbor_and_msgpack_in_read_back_as_json() {
    let server = Server::start().await;
    let want = value(&record());
    for format in [Format::Cbor, Format::MsgPack] {
        let path = format!("/Sensor/{}", format.name());
        let bytes = format.encode(&want);
        let put = server
            .send(Method::PUT, &path, Some(format.content_type()), bytes)
            .await;
        assert_eq!(put.status(), 204, "{format}");
        let mut expected = want.clone();
        expected
            .as_map_mut()
            .unwrap()
            .insert("id".into(), Value::String(format.name().into()));
        assert_eq!(
            read_as(&server, &path, Format::Json).await,
            expected,
            "{format} in, JSON out"
        );
        assert_eq!(
            read_as(&server, &path, format).await,
            expected,
            "{format} in and out"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn undeclared_maps_are_detected_in_every_format() {
    let server = Server::start().await;
    let want = value(&json!({"id": "x", "a": [1, 2]}));
    for format in Format::ALL {
        let bytes = format.encode(&want);
        assert_eq!(
            server
                .send(Method::PUT, "/Sensor/x", None, bytes)
                .await
                .status(),
            204
        );
        assert_eq!(
            read_as(&server, "/Sensor/x", Format::Json).await,
            want,
            "{format} detected"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn accept_picks_the_best_format_and_defaults_to_json() {
    let server = Server::start().await;
    server.put_json("/Sensor/q", json!({"a": 1})).await;
    let no_accept = server.get("/Sensor/q").await;
    assert_eq!(no_accept.headers()["content-type"], "application/json");
    let ranked = server
        .get_as("/Sensor/q", "application/json;q=0.5, application/x-msgpack")
        .await;
    assert_eq!(ranked.headers()["content-type"], "application/x-msgpack");
    let csv = server.get_as("/Sensor/q", "text/csv").await;
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(csv.text().await.unwrap(), "id,a\r\nq,1\r\n");
    server.stop().await;
}
