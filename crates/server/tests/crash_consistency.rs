//! Durability of the real `mqdb` process: concurrent REST writes, SIGKILL in
//! the middle of them, restart — every write that got its response is there,
//! intact. Repeated several times on the same data directory. Also: a clean
//! restart keeps data, and adding an attribute to the schema keeps data.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;

const SCHEMA: &str = "type Item @table @export { id: ID @primaryKey  n: Int  writer: Int }\n";

fn setup(dir: &Path, schema: &str) -> PathBuf {
    std::fs::write(dir.join("schema.graphql"), schema).unwrap();
    let config = dir.join("mqdb.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\npath = {}\n[mqtt]\nport = 0\nrequire_authentication = false\n[http]\nhost = \"127.0.0.1\"\nport = 0\nrequire_authentication = false\n",
            toml_str(&dir.join("data"))
        ),
    )
    .unwrap();
    config
}

fn start(dir: &Path, config: &Path) -> (Server, String) {
    let mut server = Server::start(mqdb(dir).args(["serve", "--config"]).arg(config));
    let addr = server.logged_address("HTTP (REST) listening");
    server.wait_for_line("ready");
    (server, format!("http://{addr}"))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get_json(client: &reqwest::Client, url: &str) -> Option<String> {
    let resp = client.get(url).send().await.unwrap();
    match resp.status().as_u16() {
        200 => Some(resp.text().await.unwrap()),
        404 => None,
        other => panic!("GET {url}: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), SCHEMA);
    // id -> the body of the last acknowledged PUT.
    let acked: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    for round in 0..3i64 {
        let (mut server, base) = start(dir.path(), &config);
        let client = client();
        let writers: Vec<_> = (0..16i64)
            .map(|w| {
                let (client, base, acked) = (client.clone(), base.clone(), acked.clone());
                tokio::spawn(async move {
                    for i in 0i64.. {
                        // Each writer rewrites its own 50 ids, so acknowledged
                        // values must be the latest ones, not just present.
                        let id = format!("w{w}/{}", i % 50);
                        let n = round * 1_000_000 + i;
                        let body = format!(r#"{{"n":{n},"writer":{w}}}"#);
                        let sent = client
                            .put(format!("{base}/Item/{id}"))
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await;
                        match sent {
                            Ok(r) if r.status().as_u16() == 204 => {
                                acked.lock().unwrap().insert(id, n);
                            }
                            Ok(r) => panic!("PUT answered {}", r.status()),
                            // The server was killed: this write's fate is unknown.
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        // Let writes flow, then kill without warning.
        tokio::time::sleep(Duration::from_millis(700 + 300 * round as u64)).await;
        server.kill_hard();
        for w in writers {
            tokio::time::timeout(Duration::from_secs(15), w)
                .await
                .unwrap()
                .unwrap();
        }
        let (mut server, base) = start(dir.path(), &config);
        let expected = acked.lock().unwrap().clone();
        assert!(
            expected.len() > 50,
            "round {round}: only {} writes acknowledged",
            expected.len()
        );
        for (id, n) in &expected {
            let body = get_json(&client, &format!("{base}/Item/{id}")).await;
            let body =
                body.unwrap_or_else(|| panic!("round {round}: acknowledged {id} is missing"));
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            // A write in flight at the kill may have landed after the last
            // acknowledged one: the value is that one or newer, never older.
            let got = v["n"].as_i64().unwrap();
            assert!(
                got >= *n,
                "round {round}: {id} has n={got}, acknowledged n={n}"
            );
            assert_eq!(v["id"], serde_json::Value::String(id.clone()));
        }
        server.signal("TERM");
        wait_bounded(&mut server.child);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_and_an_added_attribute_keep_data() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path(), SCHEMA);
    let client = client();
    let (mut server, base) = start(dir.path(), &config);
    let put = client
        .put(format!("{base}/Item/a"))
        .header("content-type", "application/json")
        .body(r#"{"n":1,"writer":2}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 204);
    server.signal("TERM");
    assert!(wait_bounded(&mut server.child).success());

    // A new attribute and a new table: existing records stay readable.
    setup(
        dir.path(),
        "type Item @table @export { id: ID @primaryKey  n: Int  writer: Int  label: String }\n\
         type Other @table @export\n",
    );
    let (mut server, base) = start(dir.path(), &config);
    let body = get_json(&client, &format!("{base}/Item/a"))
        .await
        .expect("record kept");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["n"].as_i64(), v["writer"].as_i64()), (Some(1), Some(2)));
    let patch = client
        .patch(format!("{base}/Item/a"))
        .header("content-type", "application/json")
        .body(r#"{"label":"new"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(patch.status().as_u16(), 204);
    assert!(
        get_json(&client, &format!("{base}/Other/x"))
            .await
            .is_none()
    );
    server.signal("TERM");
    assert!(wait_bounded(&mut server.child).success());
}
