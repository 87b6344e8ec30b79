//! With the default configuration (`require_authentication = true` for MQTT
//! and REST) and no users yet, the server refuses everyone instead of
//! serving unauthenticated clients: REST answers 401 with a JSON error, MQTT
//! answers CONNACK "not authorized" and closes.

mod support;

use std::io::{Read as _, Write as _};

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_config_refuses_unauthenticated_clients() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mqdb.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\npath = {}\n[mqtt]\nhost = \"127.0.0.1\"\nport = 0\n[http]\nhost = \"127.0.0.1\"\nport = 0\n",
            toml_str(&dir.path().join("data"))
        ),
    )
    .unwrap();
    let mut server = Server::start(mqdb(dir.path()).args(["serve", "--config"]).arg(&config));
    let http = server.logged_address("HTTP (REST) listening");
    let mqtt = server.logged_address("MQTT listening");
    server.wait_for_line("ready");

    let resp = reqwest::get(format!("http://{http}/Anything/x"))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], 401);

    // MQTT 3.1.1 CONNECT, clean session, client id "c", no credentials.
    let mut sock = std::net::TcpStream::connect(mqtt).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    sock.write_all(&[
        0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 1, b'c',
    ])
    .unwrap();
    let mut ack = [0u8; 4];
    sock.read_exact(&mut ack).unwrap();
    assert_eq!(ack, [0x20, 2, 0, 5], "CONNACK: not authorized");
    let mut rest = Vec::new();
    assert_eq!(
        sock.read_to_end(&mut rest).unwrap(),
        0,
        "then the server closes"
    );

    server.signal("TERM");
    assert!(wait_bounded(&mut server.child).success());
}
