//! `/metrics` on the HTTP port serves the broker's figures in the
//! Prometheus text format.

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_in_prometheus_format() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mqdb.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\npath = {}\n[mqtt]\nhost = \"127.0.0.1\"\nport = 0\nrequire_authentication = false\n\
             [http]\nhost = \"127.0.0.1\"\nport = 0\nrequire_authentication = false\n",
            toml_str(&dir.path().join("data"))
        ),
    )
    .unwrap();
    let mut server = Server::start(mqdb(dir.path()).args(["serve", "--config"]).arg(&config));
    let http = server.logged_address("HTTP (REST) listening");
    server.wait_for_line("ready");
    let resp = reqwest::get(format!("http://{http}/metrics"))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    for metric in [
        "mqdb_clients_connected",
        "mqdb_messages_received",
        "mqdb_store_changes",
        "mqdb_records_stored",
    ] {
        assert!(
            text.contains(&format!("# TYPE {metric} ")),
            "{metric} missing in:\n{text}"
        );
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{metric} "))),
            "{text}"
        );
    }
    server.signal("TERM");
    assert!(wait_bounded(&mut server.child).success());
}
