//! `mqdb bench` against a real `mqdb serve`: the load generator connects,
//! publishes, receives and prints a JSON line that counts every message.

mod support;

use support::*;

/// Starts `mqdb serve` on ephemeral ports without authentication.
fn serve(dir: &std::path::Path) -> (Server, std::net::SocketAddr) {
    let config = dir.join("mqdb.toml");
    std::fs::write(dir.join("schema.graphql"), "type Bench @table @export\n").unwrap();
    std::fs::write(
        &config,
        format!(
            "[storage]\npath = {}\n[schema]\nfiles = [{}]\n\
             [mqtt]\nhost = \"127.0.0.1\"\nport = 0\nrequire_authentication = false\n\
             [http]\nhost = \"127.0.0.1\"\nport = 0\nrequire_authentication = false\n",
            toml_str(&dir.join("data")),
            toml_str(&dir.join("schema.graphql")),
        ),
    )
    .unwrap();
    let mut server = Server::start(mqdb(dir).args(["serve", "--config"]).arg(&config));
    let mqtt = server.logged_address("MQTT listening");
    server.wait_for_line("ready");
    (server, mqtt)
}

/// The last line of `stdout`, parsed as the report's JSON object.
fn json_line(stdout: &str) -> serde_json::Value {
    let line = stdout.lines().last().expect("some output");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

#[test]
fn fanin_at_qos_1_delivers_every_message_and_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, mqtt) = serve(dir.path());
    let port = mqtt.port().to_string();
    // Paced below saturation: this checks the tool's counting, not how the
    // broker behaves under overload (that is what the benchmark measures).
    let (ok, stdout, stderr) = run(mqdb(dir.path()).args([
        "bench",
        "fanin",
        "--port",
        &port,
        "--qos",
        "1",
        "--duration",
        "1",
        "--rate",
        "2000",
        "--json",
    ]));
    assert!(ok, "bench failed:\n{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().count(),
        1,
        "--json prints one line: {stdout}"
    );
    let report = json_line(&stdout);
    assert_eq!(report["workload"], "fanin");
    assert_eq!(report["qos"], 1);
    assert_eq!(report["publishers"], 4);
    let sent = report["sent"].as_u64().unwrap();
    assert!(sent > 0, "{report}");
    assert_eq!(report["acked"].as_u64(), Some(sent), "{report}");
    assert!(report["delivered"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["delivered"].as_u64(), Some(sent), "{report}");
    assert_eq!(report["loss"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["p99_us"].as_u64().unwrap() >= report["p50_us"].as_u64().unwrap());
    server.signal("TERM");
    assert!(wait_bounded(&mut server.child).success());
}

#[test]
fn retained_writes_records_and_prints_a_summary_then_json() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, mqtt) = serve(dir.path());
    let port = mqtt.port().to_string();
    let (ok, stdout, stderr) = run(mqdb(dir.path()).args([
        "bench", "retained", "--port", &port, "--count", "500", "--window", "20",
    ]));
    assert!(ok, "bench failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("records"), "human summary first: {stdout}");
    let report = json_line(&stdout);
    assert_eq!(report["workload"], "retained");
    assert_eq!(report["acked"], 500, "{report}");
    assert!(report["records_per_s"].as_f64().unwrap() > 0.0, "{report}");
    server.signal("TERM");
    assert!(wait_bounded(&mut server.child).success());
}

#[test]
fn an_unreachable_broker_fails_within_the_connect_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let (ok, _, stderr) = run(mqdb(dir.path()).args(["bench", "latency", "--port", &port]));
    assert!(!ok);
    assert!(stderr.contains("connecting to 127.0.0.1"), "{stderr}");
}
