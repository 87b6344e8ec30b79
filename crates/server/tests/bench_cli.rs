//! `mqdb bench` against a real `mqdb serve`: the load generator connects,
//! publishes, receives and prints a JSON line that counts every message;
//! `pairs` delivers each publisher's messages to its own subscriber;
//! `retained-read` reads back every retained message it stored (free topics
//! and an exported table), and again with `--skip-load`; the `conns`
//! workload counts every connection, with and without authentication; MQTT
//! over WebSocket on the HTTP port, over TLS (MQTTS) and over wss:// (HTTPS
//! port) carry the same workloads.

mod support;

use support::*;

/// How a test server is set up.
#[derive(Default)]
struct Options<'a> {
    /// Require authentication on MQTT and HTTP, with user `admin` created
    /// from `MQDB_ADMIN_PASSWORD` = this password.
    admin_password: Option<&'a str>,
    /// Serve MQTTS and HTTPS (wss://) with the certificate of this PKI.
    tls: Option<&'a Pki>,
}

/// A running `mqdb serve` and the addresses it bound.
struct Listening {
    server: Server,
    mqtt: std::net::SocketAddr,
    http: std::net::SocketAddr,
    /// With `Options::tls`.
    mqtts: Option<std::net::SocketAddr>,
    https: Option<std::net::SocketAddr>,
}

impl Listening {
    fn stop(mut self) {
        self.server.signal("TERM");
        assert!(wait_bounded(&mut self.server.child).success());
    }
}

/// Starts `mqdb serve` on ephemeral ports as `options` say.
fn start(dir: &std::path::Path, options: &Options<'_>) -> Listening {
    let config = dir.join("mqdb.toml");
    std::fs::write(dir.join("schema.graphql"), "type Bench @table @export\n").unwrap();
    let auth = options.admin_password.is_some();
    let tls_section = |section: &str| {
        options.tls.map_or(String::new(), |pki| {
            format!(
                "[{section}.tls]\nport = 0\ncert = {}\nkey = {}\n",
                toml_str(&pki.path("server.pem")),
                toml_str(&pki.path("server.key")),
            )
        })
    };
    std::fs::write(
        &config,
        format!(
            "[storage]\npath = {}\n[schema]\nfiles = [{}]\n\
             [mqtt]\nhost = \"127.0.0.1\"\nport = 0\nrequire_authentication = {auth}\n{}\
             [http]\nhost = \"127.0.0.1\"\nport = 0\nrequire_authentication = {auth}\n{}",
            toml_str(&dir.join("data")),
            toml_str(&dir.join("schema.graphql")),
            tls_section("mqtt"),
            tls_section("http"),
        ),
    )
    .unwrap();
    let mut cmd = mqdb(dir);
    if let Some(password) = options.admin_password {
        cmd.env("MQDB_ADMIN_PASSWORD", password);
    }
    let mut server = Server::start(cmd.args(["serve", "--config"]).arg(&config));
    let mqtt = server.logged_address("MQTT listening");
    let http = server.logged_address("HTTP (REST) listening");
    let (mut mqtts, mut https) = (None, None);
    if options.tls.is_some() {
        mqtts = Some(server.logged_address("MQTTS listening"));
        https = Some(server.logged_address("HTTPS (REST, MQTT over WebSocket) listening"));
    }
    server.wait_for_line("ready");
    Listening {
        server,
        mqtt,
        http,
        mqtts,
        https,
    }
}

/// Starts `mqdb serve` on ephemeral ports without authentication.
fn serve(dir: &std::path::Path) -> (Server, std::net::SocketAddr) {
    let listening = start(dir, &Options::default());
    (listening.server, listening.mqtt)
}

/// A CA and a server certificate for 127.0.0.1 / localhost signed by it,
/// as PEM files (`ca.pem`, `server.pem`, `server.key`).
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "bench CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, "mqdb");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), key.serialize_pem()).unwrap();
        Pki { dir }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }
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

/// Runs `mqdb bench <args> --json` and checks it printed one JSON line;
/// (success, the report, stderr).
fn bench_json(dir: &std::path::Path, args: &[&str]) -> (bool, serde_json::Value, String) {
    let (ok, stdout, stderr) = run(mqdb(dir).arg("bench").args(args).arg("--json"));
    assert_eq!(
        stdout.lines().count(),
        1,
        "--json prints one line: {stdout}\n{stderr}"
    );
    (ok, json_line(&stdout), stderr)
}

/// Checks a pub/sub report: everything sent was acknowledged and delivered
/// exactly once, without errors.
fn assert_all_delivered(report: &serde_json::Value) {
    let sent = report["sent"].as_u64().unwrap();
    assert!(sent > 0, "{report}");
    assert_eq!(report["acked"].as_u64(), Some(sent), "{report}");
    assert_eq!(report["delivered"].as_u64(), Some(sent), "{report}");
    assert_eq!(report["loss"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
}

/// Checks a `conns` report: all `n` connections set up, none failed or
/// dropped.
fn assert_all_connected(report: &serde_json::Value, n: u64) {
    assert_eq!(report["workload"], "conns", "{report}");
    assert_eq!(report["connections"].as_u64(), Some(n), "{report}");
    assert_eq!(report["established"].as_u64(), Some(n), "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["dropped"], 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["connects_per_s"].as_f64().unwrap() > 0.0, "{report}");
    let (p50, p99) = (
        report["connect_p50_us"].as_u64().unwrap(),
        report["connect_p99_us"].as_u64().unwrap(),
    );
    assert!(0 < p50 && p50 <= p99, "{report}");
}

#[test]
fn pairs_deliver_everything_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let listening = start(dir.path(), &Options::default());
    let port = listening.mqtt.port().to_string();
    for qos in ["0", "1"] {
        let (ok, report, stderr) = bench_json(
            dir.path(),
            &[
                "pairs",
                "--port",
                &port,
                "--pairs",
                "4",
                "--qos",
                qos,
                "--duration",
                "1",
                "--rate",
                "500",
            ],
        );
        assert!(ok, "bench failed: {report}\n{stderr}");
        assert_eq!(report["workload"], "pairs", "{report}");
        assert_eq!(report["pairs"], 4, "{report}");
        assert_eq!(report["subscribers"], 4, "{report}");
        if qos == "0" {
            let sent = report["sent"].as_u64().unwrap();
            assert!(sent > 0, "{report}");
            assert_eq!(report["delivered"].as_u64(), Some(sent), "{report}");
            assert_eq!(report["loss"], 0, "{report}");
            assert_eq!(report["duplicates"], 0, "{report}");
            assert_eq!(report["errors"], 0, "{report}");
        } else {
            assert_all_delivered(&report);
        }
        assert!(report["delivered_per_s"].as_f64().unwrap() > 0.0);
        assert!(report["p999_us"].as_u64().unwrap() >= report["p50_us"].as_u64().unwrap());
    }
    listening.stop();
}

/// Checks a `retained-read` report: all `n` records read once.
fn assert_all_read(report: &serde_json::Value, n: u64) {
    assert_eq!(report["workload"], "retained-read", "{report}");
    assert_eq!(report["count"].as_u64(), Some(n), "{report}");
    assert_eq!(report["delivered"].as_u64(), Some(n), "{report}");
    assert_eq!(report["missing"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert_eq!(report["foreign"], 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["timed_out"], false, "{report}");
    assert!(report["records_per_s"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["first_message_ms"].as_f64().is_some(), "{report}");
}

#[test]
fn retained_read_reads_every_record_then_again_with_skip_load() {
    let dir = tempfile::tempdir().unwrap();
    let listening = start(dir.path(), &Options::default());
    let port = listening.mqtt.port().to_string();
    let read = |extra: &[&str]| {
        let mut args = vec!["retained-read", "--port", &port];
        args.extend_from_slice(extra);
        bench_json(dir.path(), &args)
    };
    // Free topics under a prefix new to this run.
    let (ok, report, stderr) = read(&["--count", "2000"]);
    assert!(ok, "bench failed: {report}\n{stderr}");
    assert_eq!(report["loaded"], 2000, "{report}");
    assert_all_read(&report, 2000);
    let prefix = report["prefix"].as_str().unwrap().to_owned();
    assert!(prefix.starts_with("bench/"), "{report}");

    let (ok, report, stderr) = read(&["--count", "2000", "--skip-load", "--prefix", &prefix]);
    assert!(ok, "bench failed: {report}\n{stderr}");
    assert_eq!(report["loaded"], serde_json::Value::Null, "{report}");
    assert_all_read(&report, 2000);

    // Rows of the exported table `Bench`, read at QoS 0 over 5.0.
    let (ok, report, stderr) = read(&[
        "--count",
        "500",
        "--prefix",
        "Bench",
        "--qos",
        "0",
        "--protocol",
        "5",
    ]);
    assert!(ok, "bench failed: {report}\n{stderr}");
    assert_all_read(&report, 500);

    // Without --prefix, --skip-load has nothing to read: refused.
    let (ok, _, stderr) =
        run(mqdb(dir.path()).args(["bench", "retained-read", "--port", &port, "--skip-load"]));
    assert!(!ok);
    assert!(stderr.contains("--prefix"), "{stderr}");
    listening.stop();
}

#[test]
fn retained_read_prints_a_summary_then_json() {
    let dir = tempfile::tempdir().unwrap();
    let listening = start(dir.path(), &Options::default());
    let port = listening.mqtt.port().to_string();
    let (ok, stdout, stderr) =
        run(mqdb(dir.path()).args(["bench", "retained-read", "--port", &port, "--count", "100"]));
    assert!(ok, "bench failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("missing    0"), "{stdout}");
    assert!(
        !stderr.contains('\r'),
        "no progress line without a terminal: {stderr}"
    );
    assert_all_read(&json_line(&stdout), 100);
    listening.stop();
}

#[test]
fn conns_opens_holds_and_closes_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let listening = start(dir.path(), &Options::default());
    let port = listening.mqtt.port().to_string();
    let (ok, report, stderr) = bench_json(
        dir.path(),
        &[
            "conns",
            "--port",
            &port,
            "--connections",
            "300",
            "--concurrency",
            "32",
            "--hold",
            "0.5",
        ],
    );
    assert!(ok, "bench failed: {report}\n{stderr}");
    assert_all_connected(&report, 300);
    assert_eq!(report["transport"], "tcp");
    assert!(report["held_s"].as_f64().unwrap() >= 0.5, "{report}");
    listening.stop();
}

#[test]
fn conns_with_authentication_sends_the_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        admin_password: Some("bench-secret"),
        ..Options::default()
    };
    let listening = start(dir.path(), &options);
    let port = listening.mqtt.port().to_string();
    let conns = |password: &str, n: &str| {
        bench_json(
            dir.path(),
            &[
                "conns",
                "--port",
                &port,
                "--username",
                "admin",
                "--password",
                password,
                "--connections",
                n,
                "--hold",
                "0.2",
            ],
        )
    };
    let (ok, report, stderr) = conns("bench-secret", "50");
    assert!(ok, "bench failed: {report}\n{stderr}");
    assert_all_connected(&report, 50);
    assert_eq!(report["authenticated"], true);
    // A wrong password: every attempt refused, the first reason reported,
    // and the command fails.
    let (ok, report, stderr) = conns("wrong", "3");
    assert!(!ok, "{report}");
    assert!(stderr.contains("connection error(s)"), "{stderr}");
    assert_eq!(report["established"], 0, "{report}");
    assert_eq!(report["failed"], 3, "{report}");
    let first = report["first_error"].as_str().unwrap();
    assert!(first.contains("refused CONNECT"), "{first}");
    listening.stop();
}

#[test]
fn fanin_over_websocket_on_the_http_port() {
    let dir = tempfile::tempdir().unwrap();
    let listening = start(dir.path(), &Options::default());
    let port = listening.http.port().to_string();
    let (ok, report, stderr) = bench_json(
        dir.path(),
        &[
            "fanin",
            "--ws",
            "--port",
            &port,
            "--qos",
            "1",
            "--duration",
            "1",
            "--rate",
            "500",
        ],
    );
    assert!(ok, "bench failed: {report}\n{stderr}");
    assert_eq!(report["transport"], "ws");
    assert_all_delivered(&report);
    listening.stop();
}

#[test]
fn conns_and_fanin_over_tls_and_wss() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let options = Options {
        tls: Some(&pki),
        ..Options::default()
    };
    let listening = start(dir.path(), &options);
    let mqtts = listening.mqtts.unwrap().port().to_string();
    let https = listening.https.unwrap().port().to_string();
    let ca = pki.path("ca.pem");
    let ca = ca.to_str().unwrap();

    // Full handshakes, verified against the CA.
    let (ok, report, stderr) = bench_json(
        dir.path(),
        &[
            "conns",
            "--tls",
            "--ca",
            ca,
            "--port",
            &mqtts,
            "--connections",
            "100",
            "--hold",
            "0.2",
        ],
    );
    assert!(ok, "bench failed: {report}\n{stderr}");
    assert_eq!(report["transport"], "tls");
    assert_all_connected(&report, 100);
    let handshake = report["handshake_p50_us"].as_u64().unwrap();
    assert!(handshake > 0, "{report}");

    let fanin = |transport: &[&str], port: &str| {
        let mut args = vec!["fanin"];
        args.extend_from_slice(transport);
        args.extend([
            "--port",
            port,
            "--qos",
            "1",
            "--duration",
            "1",
            "--rate",
            "500",
        ]);
        bench_json(dir.path(), &args)
    };
    let (ok, report, stderr) = fanin(&["--tls", "--insecure"], &mqtts);
    assert!(ok, "bench failed: {report}\n{stderr}");
    assert_eq!(report["transport"], "tls");
    assert_all_delivered(&report);

    let (ok, report, stderr) = fanin(&["--ws", "--tls", "--ca", ca], &https);
    assert!(ok, "bench failed: {report}\n{stderr}");
    assert_eq!(report["transport"], "wss");
    assert_all_delivered(&report);

    // The certificate is verified: another CA does not do.
    let other = dir.path().join("other-ca.pem");
    let other_ca = rcgen::CertificateParams::new(Vec::new())
        .unwrap()
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap();
    std::fs::write(&other, other_ca.pem()).unwrap();
    let (ok, _, stderr) = run(mqdb(dir.path()).args([
        "bench",
        "latency",
        "--tls",
        "--ca",
        other.to_str().unwrap(),
        "--port",
        &mqtts,
        "--duration",
        "1",
    ]));
    assert!(!ok);
    assert!(stderr.contains("TLS handshake with 127.0.0.1"), "{stderr}");
    listening.stop();
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
