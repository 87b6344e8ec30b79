//! A record's life over REST: create, read, replace, merge, delete, with the
//! statuses, ETags and error bodies of SPEC §4.

mod common;

use common::{Server, error_body, within};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn put_then_get_returns_the_record_with_its_id_and_etag() {
    let server = Server::start().await;
    let put = server
        .put_json("/Sensor/s1", json!({"temp": 21.5, "id": "ignored"}))
        .await;
    assert_eq!(put.status(), 204);
    let put_etag = put.headers()["etag"].to_str().unwrap().to_owned();

    let get = server.get("/Sensor/s1").await;
    assert_eq!(get.status(), 200);
    assert_eq!(get.headers()["content-type"], "application/json");
    assert_eq!(get.headers()["etag"].to_str().unwrap(), put_etag);
    let body: serde_json::Value = get.json().await.unwrap();
    assert_eq!(body, json!({"temp": 21.5, "id": "s1"}));
    server.stop().await;
}

#[tokio::test]
async fn get_of_a_missing_record_is_404_with_a_json_error() {
    let server = Server::start().await;
    let message = error_body(server.get("/Sensor/nope").await, 404).await;
    assert!(message.contains("nope"), "{message}");
    server.stop().await;
}

#[tokio::test]
async fn head_has_the_headers_of_get_and_no_body() {
    let server = Server::start().await;
    server.put_json("/Sensor/h", json!({"a": 1})).await;
    let get = server.get("/Sensor/h").await;
    let length = get.headers()["content-length"].clone();
    let etag = get.headers()["etag"].clone();
    let head = within("HEAD", server.client.head(server.url("/Sensor/h")).send())
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "application/json");
    assert_eq!(head.headers()["content-length"], length);
    assert_eq!(head.headers()["etag"], etag);
    assert!(head.bytes().await.unwrap().is_empty());

    let missing = within(
        "HEAD",
        server.client.head(server.url("/Sensor/none")).send(),
    )
    .await
    .unwrap();
    assert_eq!(missing.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn if_none_match_with_the_current_etag_is_304_without_a_body() {
    let server = Server::start().await;
    server.put_json("/Sensor/e", json!({"v": 1})).await;
    let etag = server.get("/Sensor/e").await.headers()["etag"].clone();
    let cached = server
        .client
        .get(server.url("/Sensor/e"))
        .header("if-none-match", etag.clone());
    let cached = within("GET", cached.send()).await.unwrap();
    assert_eq!(cached.status(), 304);
    assert_eq!(cached.headers()["etag"], etag);
    assert!(cached.bytes().await.unwrap().is_empty());

    let weak = format!("\"0\", W/{}", etag.to_str().unwrap());
    let cached = server
        .client
        .get(server.url("/Sensor/e"))
        .header("if-none-match", weak);
    assert_eq!(within("GET", cached.send()).await.unwrap().status(), 304);

    server.put_json("/Sensor/e", json!({"v": 2})).await;
    let stale = server
        .client
        .get(server.url("/Sensor/e"))
        .header("if-none-match", etag.clone());
    let stale = within("GET", stale.send()).await.unwrap();
    assert_eq!(stale.status(), 200);
    assert_ne!(stale.headers()["etag"], etag);
    server.stop().await;
}

#[tokio::test]
async fn put_replaces_the_whole_record() {
    let server = Server::start().await;
    server.put_json("/Sensor/r", json!({"a": 1, "b": 2})).await;
    assert_eq!(
        server.put_json("/Sensor/r", json!({"c": 3})).await.status(),
        204
    );
    assert_eq!(
        server.get_json("/Sensor/r").await,
        json!({"c": 3, "id": "r"})
    );
    server.stop().await;
}

#[tokio::test]
async fn patch_merges_and_null_removes_an_attribute() {
    let server = Server::start().await;
    server.put_json("/Sensor/p", json!({"a": 1, "b": 2})).await;
    let patch = server
        .patch_json("/Sensor/p", json!({"b": null, "c": 3}))
        .await;
    assert_eq!(patch.status(), 204);
    assert!(patch.headers().contains_key("etag"));
    assert_eq!(
        server.get_json("/Sensor/p").await,
        json!({"a": 1, "id": "p", "c": 3})
    );
    server.stop().await;
}

#[tokio::test]
async fn patch_of_a_missing_record_is_404() {
    let server = Server::start().await;
    error_body(
        server.patch_json("/Sensor/ghost", json!({"a": 1})).await,
        404,
    )
    .await;
    assert_eq!(server.get("/Sensor/ghost").await.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn patch_needs_a_map_in_a_structured_format() {
    let server = Server::start().await;
    server.put_json("/Sensor/m", json!({"a": 1})).await;
    let array = server
        .send(Method::PATCH, "/Sensor/m", Some("application/json"), "[1]")
        .await;
    assert!(error_body(array, 400).await.contains("map"));
    let text = server
        .send(Method::PATCH, "/Sensor/m", Some("text/plain"), "a=1")
        .await;
    error_body(text, 415).await;
    let undeclared = server
        .send(Method::PATCH, "/Sensor/m", None, "{\"b\":2}")
        .await;
    assert_eq!(undeclared.status(), 204);
    assert_eq!(
        server.get_json("/Sensor/m").await,
        json!({"a": 1, "id": "m", "b": 2})
    );
    server.stop().await;
}

#[tokio::test]
async fn delete_twice_is_204_then_404() {
    let server = Server::start().await;
    server.put_json("/Sensor/d", json!({"a": 1})).await;
    assert_eq!(server.delete("/Sensor/d").await.status(), 204);
    assert_eq!(server.get("/Sensor/d").await.status(), 404);
    error_body(server.delete("/Sensor/d").await, 404).await;
    server.stop().await;
}

#[tokio::test]
async fn post_creates_a_record_whose_location_gets_it() {
    let server = Server::start().await;
    let post = server
        .send(
            Method::POST,
            "/Sensor/",
            Some("application/json"),
            "{\"temp\": 3}",
        )
        .await;
    assert_eq!(post.status(), 201);
    let location = post.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/Sensor/"), "{location}");
    assert!(post.headers().contains_key("etag"));
    let id: String = post.json().await.unwrap();
    assert_eq!(location, format!("/Sensor/{id}"));
    assert_eq!(
        server.get_json(&location).await,
        json!({"id": id, "temp": 3})
    );

    let other = server
        .send(Method::POST, "/Sensor", Some("application/json"), "{}")
        .await;
    assert_eq!(other.status(), 201);
    assert_ne!(other.headers()["location"].to_str().unwrap(), location);
    server.stop().await;
}

#[tokio::test]
async fn ids_with_slashes_work_as_segments_and_percent_encoded() {
    let server = Server::start().await;
    server.put_json("/Sensor/a/b", json!({"x": 1})).await;
    assert_eq!(
        server.get_json("/Sensor/a%2Fb").await,
        json!({"id": "a/b", "x": 1})
    );
    server.put_json("/Sensor/c%2Fd", json!({"y": 2})).await;
    assert_eq!(
        server.get_json("/Sensor/c/d").await,
        json!({"id": "c/d", "y": 2})
    );
    server
        .put_json("/Sensor/plus+sign%20space", json!({}))
        .await;
    assert_eq!(
        server.get_json("/Sensor/plus+sign%20space").await["id"],
        "plus+sign space"
    );
    assert_eq!(server.delete("/Sensor/a%2Fb").await.status(), 204);
    assert_eq!(server.get("/Sensor/a/b").await.status(), 404);
    error_body(server.get("/Sensor/bad%zz").await, 400).await;
    server.stop().await;
}

#[tokio::test]
async fn binary_records_come_back_byte_for_byte_with_their_content_type() {
    let server = Server::start().await;
    let put = server
        .send(
            Method::PUT,
            "/Sensor/note",
            Some("text/plain; charset=utf-8"),
            "hello {",
        )
        .await;
    assert_eq!(put.status(), 204);
    let get = server.get_as("/Sensor/note", "application/cbor").await;
    assert_eq!(get.status(), 200);
    assert_eq!(get.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(&get.bytes().await.unwrap()[..], b"hello {");

    let raw: &'static [u8] = b"\x00\xff\xfe raw";
    server.send(Method::PUT, "/Sensor/raw", None, raw).await;
    let get = server.get("/Sensor/raw").await;
    assert_eq!(get.headers()["content-type"], "application/octet-stream");
    assert_eq!(&get.bytes().await.unwrap()[..], raw);

    // A JSON value that is not a map is kept as sent, with its content type.
    server
        .send(Method::PUT, "/Sensor/n", Some("application/json"), "42")
        .await;
    let get = server.get("/Sensor/n").await;
    assert_eq!(get.headers()["content-type"], "application/json");
    assert_eq!(get.text().await.unwrap(), "42");

    // A binary record can be replaced, not patched.
    let patch = server.patch_json("/Sensor/note", json!({"a": 1})).await;
    assert!(error_body(patch, 422).await.contains("binary"));
    server.stop().await;
}

#[tokio::test]
async fn typed_tables_name_the_offending_attribute() {
    let server = Server::start().await;
    let ok = server
        .put_json(
            "/Device/d1",
            json!({"name": "probe", "temp": 20.5, "room": "kitchen"}),
        )
        .await;
    assert_eq!(ok.status(), 204);
    let bad = server.put_json("/Device/d1", json!({"temp": "hot"})).await;
    let message = error_body(bad, 400).await;
    assert!(
        message.contains("temp") && message.contains("Float"),
        "{message}"
    );
    let bad_patch = server.patch_json("/Device/d1", json!({"name": 5})).await;
    assert!(error_body(bad_patch, 400).await.contains("name"));
    let binary = server
        .send(Method::PUT, "/Device/d2", Some("text/plain"), "hi")
        .await;
    error_body(binary, 422).await;
    assert_eq!(server.get_json("/Device/d1").await["temp"], 20.5);
    server.stop().await;
}

#[tokio::test]
async fn malformed_json_is_400_with_a_json_error() {
    let server = Server::start().await;
    let bad = server
        .send(
            Method::PUT,
            "/Sensor/x",
            Some("application/json"),
            "{\"a\": ",
        )
        .await;
    assert!(error_body(bad, 400).await.contains("JSON"));
    let bad = server
        .send(
            Method::POST,
            "/Sensor/",
            Some("application/cbor"),
            &b"\xa1\x61"[..],
        )
        .await;
    assert!(error_body(bad, 400).await.contains("CBOR"));
    assert_eq!(server.get("/Sensor/x").await.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn unknown_and_unexported_tables_are_404() {
    let server = Server::start().await;
    assert!(
        error_body(server.get("/Nope/1").await, 404)
            .await
            .contains("Nope")
    );
    error_body(server.get("/Nope/").await, 404).await;
    error_body(server.put_json("/Hidden/1", json!({"a": 1})).await, 404).await;
    error_body(server.get("/Hidden/").await, 404).await;
    error_body(server.get("/").await, 404).await;
    server.stop().await;
}

#[tokio::test]
async fn other_methods_are_405_with_allow() {
    let server = Server::start().await;
    let post = server
        .send(Method::POST, "/Sensor/x", Some("application/json"), "{}")
        .await;
    assert_eq!(post.headers()["allow"], "GET, HEAD, PUT, PATCH, DELETE");
    error_body(post, 405).await;
    let delete_all = server.delete("/Sensor/").await;
    assert_eq!(delete_all.headers()["allow"], "GET, HEAD, POST");
    error_body(delete_all, 405).await;
    server.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let server = Server::start().await;
    let big = vec![b'a'; mqdb_http::MAX_BODY + 1];
    let put = server
        .send(Method::PUT, "/Sensor/big", Some("text/plain"), big)
        .await;
    error_body(put, 413).await;
    assert_eq!(server.get("/Sensor/big").await.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn unsupported_accept_is_406() {
    let server = Server::start().await;
    server.put_json("/Sensor/a", json!({"a": 1})).await;
    error_body(server.get_as("/Sensor/a", "image/png").await, 406).await;
    error_body(server.get_as("/Sensor/", "image/png").await, 406).await;
    server.stop().await;
}

#[tokio::test]
async fn the_router_can_be_served_by_the_embedding_application() {
    let server = Server::start().await; // for its database
    server.put_json("/Sensor/shared", json!({"a": 1})).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = mqdb_http::router(server.db.clone());
    let app = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let url = format!("http://{addr}/Sensor/shared");
    let response = within("GET", reqwest::get(&url)).await.unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, json!({"a": 1, "id": "shared"}));
    app.abort();
    let _ = app.await;
    server.stop().await;
}
