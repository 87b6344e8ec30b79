//! Collections and queries: `GET /Table/?attr=value&attr=gt=5&limit(n)&sort(-attr)&select(a,b)`
//! in JSON, CBOR, MessagePack and CSV (SPEC §4).

mod common;

use common::{Server, error_body, value};
use mqdb_resource::{Format, Value};
use serde_json::json;

async fn devices() -> Server {
    let server = Server::start().await;
    let rows = [
        ("d1", "alpha", 18.0, "kitchen"),
        ("d2", "beta", 21.5, "hall"),
        ("d3", "gamma", 25.0, "kitchen"),
        ("d4", "delta", 30.5, "garage"),
    ];
    for (id, name, temp, room) in rows {
        let put = server
            .put_json(
                &format!("/Device/{id}"),
                json!({"name": name, "temp": temp, "room": room}),
            )
            .await;
        assert_eq!(put.status(), 204);
    }
    server
}

fn ids(rows: &serde_json::Value) -> Vec<&str> {
    rows.as_array()
        .expect("an array")
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn listing_without_a_query_returns_every_record() {
    let server = devices().await;
    let all = server.get_json("/Device/").await;
    assert_eq!(ids(&all), ["d1", "d2", "d3", "d4"]);
    assert_eq!(
        all[1],
        json!({"id": "d2", "name": "beta", "temp": 21.5, "room": "hall"})
    );
    assert_eq!(server.get_json("/Device").await, all);
    assert_eq!(server.get_json("/Sensor/").await, json!([]));
    server.stop().await;
}

#[tokio::test]
async fn conditions_limit_sort_and_select() {
    let server = devices().await;
    assert_eq!(ids(&server.get_json("/Device/?name=beta").await), ["d2"]);
    assert_eq!(
        ids(&server.get_json("/Device/?temp=gt=21.5").await),
        ["d3", "d4"]
    );
    assert_eq!(
        ids(&server.get_json("/Device/?temp=le=21.5&name=ne=alpha").await),
        ["d2"]
    );
    assert_eq!(
        ids(&server.get_json("/Device/?limit(2)").await),
        ["d1", "d2"]
    );
    assert_eq!(
        ids(&server.get_json("/Device/?sort(-temp)").await),
        ["d4", "d3", "d2", "d1"]
    );
    assert_eq!(
        ids(&server.get_json("/Device/?sort(-temp)&limit(1)").await),
        ["d4"]
    );
    assert_eq!(
        server.get_json("/Device/?temp=ge=25&select(name)").await,
        json!([{"id": "d3", "name": "gamma"}, {"id": "d4", "name": "delta"}])
    );
    server.stop().await;
}

#[tokio::test]
async fn indexed_attributes_answer_equality_and_ranges() {
    let server = devices().await;
    assert_eq!(
        ids(&server.get_json("/Device/?room=kitchen").await),
        ["d1", "d3"]
    );
    assert_eq!(
        ids(&server.get_json("/Device/?room=kitchen&temp=gt=20").await),
        ["d3"]
    );
    assert_eq!(
        ids(&server.get_json("/Device/?room=gt=hall").await),
        ["d1", "d3"]
    );
    // After a change the index follows the record.
    server
        .patch_json("/Device/d1", json!({"room": "hall"}))
        .await;
    assert_eq!(ids(&server.get_json("/Device/?room=kitchen").await), ["d3"]);
    assert_eq!(
        ids(&server.get_json("/Device/?room=hall").await),
        ["d1", "d2"]
    );
    server.stop().await;
}

#[tokio::test]
async fn percent_encoded_literals_are_decoded_once() {
    let server = Server::start().await;
    server
        .put_json("/Sensor/1", json!({"path": "a/b c", "plus": "x+y"}))
        .await;
    assert_eq!(
        server
            .get_json("/Sensor/?path=a%2Fb%20c")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        server
            .get_json("/Sensor/?plus=x+y")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    server.stop().await;
}

#[tokio::test]
async fn csv_output_has_a_header_and_one_line_per_record() {
    let server = devices().await;
    let csv = server.get_as("/Device/?room=kitchen", "text/csv").await;
    assert_eq!(csv.status(), 200);
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        csv.text().await.unwrap(),
        "id,name,temp,room\r\nd1,alpha,18.0,kitchen\r\nd3,gamma,25.0,kitchen\r\n"
    );
    let selected = server
        .get_as("/Device/?sort(-temp)&select(temp)", "text/csv")
        .await;
    assert_eq!(
        selected.text().await.unwrap(),
        "id,temp\r\nd4,30.5\r\nd3,25.0\r\nd2,21.5\r\nd1,18.0\r\n"
    );
    server.stop().await;
}

#[tokio::test]
async fn cbor_and_msgpack_lists_decode_to_the_json_list() {
    let server = devices().await;
    // A binary record appears as a byte string.
    server
        .send(reqwest::Method::PUT, "/Sensor/b", Some("text/plain"), "raw")
        .await;
    server.put_json("/Sensor/m", json!({"a": 1})).await;
    for path in ["/Device/?temp=gt=20", "/Device/", "/Sensor/"] {
        let json = value(&server.get_json(path).await);
        for format in [Format::Cbor, Format::MsgPack] {
            let response = server.get_as(path, format.content_type()).await;
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["content-type"], format.content_type());
            let decoded = format.decode(&response.bytes().await.unwrap()).unwrap();
            assert_eq!(decoded, json, "{path} as {format}");
        }
    }
    let sensors = value(&server.get_json("/Sensor/").await);
    assert_eq!(
        sensors.as_array().unwrap()[0],
        Value::Bytes(bytes::Bytes::from_static(b"raw"))
    );
    server.stop().await;
}

#[tokio::test]
async fn a_large_listing_streams_complete() {
    let server = Server::start().await;
    for i in 0..300 {
        let body = json!({"i": i, "pad": "x".repeat(200)});
        server.put_json(&format!("/Sensor/{i:04}"), body).await;
    }
    let all = server.get_json("/Sensor/").await;
    assert_eq!(all.as_array().unwrap().len(), 300);
    assert_eq!(all[299]["i"], 299);
    let cbor = server
        .get_as("/Sensor/", "application/cbor")
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(Format::Cbor.decode(&cbor).unwrap(), value(&all));
    server.stop().await;
}

#[tokio::test]
async fn bad_queries_are_400() {
    let server = devices().await;
    for query in ["limit(x)", "novalue", "a=%zz", "sort()", "=5"] {
        let message = error_body(server.get(&format!("/Device/?{query}")).await, 400).await;
        assert!(message.contains("query"), "{query}: {message}");
    }
    server.stop().await;
}
