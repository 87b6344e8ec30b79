//! Bad input of every kind is the client's fault: a 4xx (or a success, when
//! the bytes are a valid binary record), never a 5xx, and the server keeps
//! answering (SPEC §4: "Malformed bodies get 400 with a JSON error, never 500").

mod common;

use common::{Server, within};
use reqwest::Method;

/// Deterministic pseudo-random bytes (xorshift64*).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

fn bodies() -> Vec<Vec<u8>> {
    let mut bodies: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"{".to_vec(),
        b"{\"a\": }".to_vec(),
        b"{\"temp\": \"hot\", \"name\": [1]}".to_vec(),
        b"{\"id\": {\"nested\": true}}".to_vec(),
        b"{\"a\": 1e999999}".to_vec(),
        b"{\"a\": 123456789012345678901234567890}".to_vec(),
        b"{\"$bytes\": \"!!\"}".to_vec(),
        b"[1, 2, 3]".to_vec(),
        b"null".to_vec(),
        b"\"just a string\"".to_vec(),
        b"\xff\xfe\xfd".to_vec(),
        b"{\"a\": \"\xff\"}".to_vec(),
        b"\xa1\x61".to_vec(),                      // truncated CBOR map
        b"\xa1\x01\x02".to_vec(),                  // CBOR map with an integer key
        b"\xbf\x61a\x01".to_vec(),                 // unterminated indefinite CBOR map
        b"\xc1\x00".to_vec(),                      // CBOR tag 1 on 0
        b"\x81\xa1\x61a\x01".to_vec(),             // MessagePack/CBOR ambiguity
        b"\xdf\xff\xff\xff\xff".to_vec(),          // MessagePack map claiming 4G entries
        b"\x81\xc1\x00".to_vec(),                  // MessagePack invalid marker
        b"\x81\xa1a\xd4\x01\x02".to_vec(),         // MessagePack extension type
        b"\x81\xa1a\xdb\xff\xff\xff\xff".to_vec(), // string longer than the body
    ];
    bodies.push([b"[".repeat(100_000), b"]".repeat(100_000)].concat());
    bodies.push(
        [
            b"{\"a\":".repeat(50_000),
            b"1".to_vec(),
            b"}".repeat(50_000),
        ]
        .concat(),
    );
    bodies.push(vec![0x81; 100_000]); // CBOR arrays nested 100k deep
    bodies.push([vec![0x81, 0xa1, b'a'], vec![0x91; 100_000]].concat()); // MessagePack nesting
    for seed in 0..24 {
        bodies.push(noise(seed, 1 + (seed as usize * 37) % 300));
    }
    bodies
}

const CONTENT_TYPES: [Option<&str>; 14] = [
    None,
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    Some("text/json"),
    Some("application/ld+json"),
    Some("application/cbor"),
    Some("application/x-msgpack"),
    Some("application/msgpack"),
    Some("application/vnd.msgpack"),
    Some("text/plain"),
    Some("application/octet-stream"),
    Some("multipart/form-data; boundary=x"),
    Some("*/*"),
    Some(";;;"),
];

async fn assert_not_5xx(
    server: &Server,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) {
    let response = server
        .send(method.clone(), path, content_type, body.to_vec())
        .await;
    let status = response.status();
    let text = within("body", response.bytes()).await.unwrap();
    assert!(
        !status.is_server_error(),
        "{method} {path} ({content_type:?}, {} bytes) -> {status}: {}",
        body.len(),
        String::from_utf8_lossy(&text)
    );
    if status.is_client_error() {
        let error: serde_json::Value = serde_json::from_slice(&text).expect("errors are JSON");
        assert_eq!(error["status"], status.as_u16());
    }
}

#[tokio::test]
async fn garbage_bodies_of_every_content_type_never_yield_500() {
    let server = Server::start().await;
    server
        .put_json("/Sensor/target", serde_json::json!({"a": 1}))
        .await;
    server
        .put_json("/Device/target", serde_json::json!({"temp": 1.0}))
        .await;
    for body in bodies() {
        for content_type in CONTENT_TYPES {
            for (method, path) in [
                (Method::PUT, "/Sensor/g"),
                (Method::PUT, "/Device/g"),
                (Method::PATCH, "/Sensor/target"),
                (Method::PATCH, "/Device/target"),
                (Method::POST, "/Device/"),
            ] {
                assert_not_5xx(&server, method, path, content_type, &body).await;
            }
        }
    }
    assert_eq!(server.get("/Sensor/target").await.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn garbage_paths_queries_and_headers_never_yield_500() {
    let server = Server::start().await;
    server
        .put_json("/Sensor/x", serde_json::json!({"a": 1}))
        .await;
    let paths = [
        "/Sensor/%00",
        "/Sensor/a%00b",
        "/Sensor/%",
        "/Sensor/%C3%28",
        "/%ff/",
        "/Sensor/?%",
        "/Sensor/?a=%ff",
        "/Sensor/?sort(",
        "/Sensor/?limit(99999999999999999999999)",
        "/Sensor/?select()",
        "/Sensor/?a=gt=",
        "/Sensor/?&&&",
        "/Sensor//",
        "/Sensor/x/",
    ];
    for path in paths {
        for method in [
            Method::GET,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::POST,
            Method::OPTIONS,
        ] {
            assert_not_5xx(
                &server,
                method,
                path,
                Some("application/json"),
                b"{\"a\":1}",
            )
            .await;
        }
    }
    // Beyond the store's 16 KiB id limit, within the URI limit.
    for len in [20_000, 60_000] {
        let long_id = format!("/Sensor/{}", "i".repeat(len));
        for method in [Method::PUT, Method::GET, Method::PATCH, Method::DELETE] {
            assert_not_5xx(&server, method, &long_id, Some("application/json"), b"{}").await;
        }
    }
    let accepts: [&[u8]; 8] = [
        b"",
        b",",
        b"*/*;q=2",
        b"text/csv;q=x",
        b"application/json;q=0",
        b"a/b/c",
        b"text/\xffcsv",
        b";q=1",
    ];
    for accept in accepts {
        let value = reqwest::header::HeaderValue::from_bytes(accept).unwrap();
        let request = server
            .client
            .get(server.url("/Sensor/x"))
            .header("accept", value);
        let response = within("GET", request.send()).await.unwrap();
        assert!(
            !response.status().is_server_error(),
            "Accept {accept:?} -> {}",
            response.status()
        );
    }
    server.stop().await;
}
