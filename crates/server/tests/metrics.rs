//! `/metrics` on the HTTP port serves the broker's figures in the
//! Prometheus text format.

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_in_prometheus_format() {
    let dir = tempfile::tempdir().unwrap();
    let config = open_config(dir.path(), &dir.path().join("data"));
    let (mut server, _, base) = start_server(dir.path(), &config);
    let resp = reqwest::get(format!("{base}/metrics")).await.unwrap();
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
