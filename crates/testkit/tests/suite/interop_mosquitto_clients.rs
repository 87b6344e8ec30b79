//! Interoperability with the Eclipse Mosquitto command-line clients
//! (`mosquitto_pub` / `mosquitto_sub`, package `mosquitto-clients`) against an
//! in-process server: retained publishes are records REST reads, REST writes
//! reach a running subscriber, v5 properties of retained messages are kept
//! (also across a restart), QoS 2, a typed-table refusal reported in PUBACK,
//! a persistent session that queues while its client is away, and the plain
//! `mosquitto_pub -r` (QoS 0, then DISCONNECT at once) never losing a write.
//!
//! The clients are required: a missing binary fails the test with the package
//! to install, it never skips. Every child process is bounded by a deadline and
//! killed when its handle is dropped (also when an assertion fails).

use std::future::Future;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mqdb_testkit::TestServer;

const SCHEMA: &str = "type Sensor @table @export\n\
                      type Device @table @export { id: ID @primaryKey name: String temp: Float }\n";

/// The longest any child process or expected output line is waited for.
const DEADLINE: Duration = Duration::from_secs(10);

/// Runs a test body on its own multi-threaded runtime with a data directory
/// that outlives the runtime. `TestServer::stop` can return while a detached
/// broker task still holds the store; deleting the directory under it (as
/// dropping the kit's own temporary directory does) can hang that store's
/// final flush, so the directory is removed only after the runtime is gone.
fn run<F: Future<Output = ()>>(test: impl FnOnce(PathBuf) -> F) {
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(test(dir.path().to_path_buf()));
    rt.shutdown_timeout(DEADLINE);
    drop(dir);
}

/// A `Command` for one of the mosquitto clients, failing the test with a
/// clear message when it is not installed.
fn tool(name: &str) -> Command {
    match Command::new(name)
        .arg("--help")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{name}` is not installed: the MQTT interop tests need the Mosquitto \
             command-line clients (Debian/Ubuntu: `apt-get install mosquitto-clients`; \
             scripts/test.sh installs them)"
        ),
        Err(e) => panic!("cannot run `{name}`: {e}"),
    }
    let mut cmd = Command::new(name);
    cmd.stdin(Stdio::null());
    cmd
}

/// `mosquitto_pub`/`mosquitto_sub` aimed at `server`'s MQTT listener.
fn client(name: &str, server: &TestServer) -> Command {
    let mut cmd = tool(name);
    cmd.args(["-h", "127.0.0.1", "-p"])
        .arg(server.mqtt.port().to_string());
    cmd
}

/// A long-running `mosquitto_sub` with line-buffered stdout (through
/// coreutils' `stdbuf`), so its `-d` lines (e.g. `received SUBACK`) and
/// messages can be awaited one by one.
fn live_sub(server: &TestServer) -> Command {
    tool("mosquitto_sub");
    let mut cmd = Command::new("stdbuf");
    cmd.stdin(Stdio::null())
        .args(["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p"])
        .arg(server.mqtt.port().to_string());
    cmd
}

/// A running child process: stdout arrives line by line on a channel, stderr
/// is collected; killed on drop.
struct Proc {
    what: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Proc {
    fn spawn(cmd: &mut Command) -> Proc {
        let what = format!("{cmd:?}");
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Proc {
            what,
            child,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// Waits (bounded) for a stdout line satisfying `pred` and returns it.
    fn wait_line(&mut self, pred: impl Fn(&str) -> bool) -> String {
        if let Some(l) = self.seen.iter().find(|l| pred(l)) {
            return l.clone();
        }
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "{}: expected line not printed within {DEADLINE:?}; stdout so far:\n{}",
                    self.what,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits (bounded) for the process to exit; returns its status, all of
    /// its stdout lines and its stderr.
    fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for child") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                while let Ok(l) = self.lines.try_recv() {
                    self.seen.push(l);
                }
                panic!(
                    "{} did not exit within {DEADLINE:?}; stdout:\n{}",
                    self.what,
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // The reader thread ends at EOF, which follows the exit.
        while let Ok(l) = self.lines.recv_timeout(DEADLINE) {
            self.seen.push(l);
        }
        let stderr = self.stderr.take().unwrap().join().unwrap_or_default();
        (status, std::mem::take(&mut self.seen), stderr)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a client to completion (bounded); fails unless it exits 0.
fn run_ok(cmd: &mut Command) -> Vec<String> {
    let what = format!("{cmd:?}");
    let (status, out, err) = Proc::spawn(cmd).finish();
    assert!(
        status.success(),
        "{what} failed ({status}):\nstdout:\n{}\nstderr:\n{err}",
        out.join("\n")
    );
    out
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .unwrap()
}

/// GET a record: `(status, content type, body)`.
async fn get(server: &TestServer, path: &str) -> (u16, String, Vec<u8>) {
    let resp = http().get(server.url(path)).send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, resp.bytes().await.unwrap().to_vec())
}

async fn get_json(server: &TestServer, path: &str) -> serde_json::Value {
    let (status, _, body) = get(server, path).await;
    assert_eq!(
        status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).unwrap()
}

#[test]
fn mosquitto_pub_retained_is_a_record_for_rest_and_mosquitto_sub() {
    run(|dir| async move {
        let server = TestServer::open(&dir, SCHEMA, Default::default()).await;

        let out = run_ok(client("mosquitto_pub", &server).args([
            "-d",
            "-r",
            "-q",
            "1",
            "-t",
            "Device/d1",
            "-m",
            r#"{"name":"thermo","temp":21.5}"#,
        ]));
        assert!(out.iter().any(|l| l.contains("received PUBACK")), "{out:?}");
        assert_eq!(
            get_json(&server, "/Device/d1").await,
            serde_json::json!({"id": "d1", "name": "thermo", "temp": 21.5})
        );

        // A later subscriber gets the record as a retained message.
        let out = run_ok(client("mosquitto_sub", &server).args([
            "-t",
            "Device/d1",
            "-q",
            "1",
            "-C",
            "1",
            "-W",
            "5",
            "-F",
            "%r|%q|%t|%p",
        ]));
        assert_eq!(
            out,
            [r#"1|1|Device/d1|{"id":"d1","name":"thermo","temp":21.5}"#]
        );

        // A payload that is not a map is a binary record, byte for byte.
        run_ok(client("mosquitto_pub", &server).args([
            "-r",
            "-q",
            "1",
            "-t",
            "Sensor/raw",
            "-m",
            "just some text",
        ]));
        let (status, _, body) = get(&server, "/Sensor/raw").await;
        assert_eq!((status, &body[..]), (200, &b"just some text"[..]));
        let out = run_ok(client("mosquitto_sub", &server).args([
            "-t",
            "Sensor/raw",
            "-C",
            "1",
            "-W",
            "5",
            "-F",
            "%r|%p",
        ]));
        assert_eq!(out, ["1|just some text"]);

        // An empty retained publish deletes the record.
        run_ok(client("mosquitto_pub", &server).args(["-r", "-q", "1", "-n", "-t", "Device/d1"]));
        assert_eq!(get(&server, "/Device/d1").await.0, 404);
        server.stop().await;
    });
}

#[test]
fn a_running_mosquitto_sub_sees_rest_writes() {
    run(|dir| async move {
        let server = TestServer::open(&dir, SCHEMA, Default::default()).await;
        let mut sub = Proc::spawn(live_sub(&server).args([
            "-d",
            "-t",
            "Device/#",
            "-q",
            "1",
            "-F",
            "MSG|%r|%q|%t|%l|%p",
        ]));
        sub.wait_line(|l| l.contains("received SUBACK"));

        let h = http();
        let put = h
            .put(server.url("/Device/r1"))
            .header("content-type", "application/json")
            .body(r#"{"name":"rest","temp":3.5}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(put.status().as_u16(), 204);
        let line = sub.wait_line(|l| l.starts_with("MSG|0|1|Device/r1|"));
        let json = line.splitn(6, '|').nth(5).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(json).unwrap(),
            serde_json::json!({"id": "r1", "name": "rest", "temp": 3.5})
        );

        // PATCH: the subscriber gets the full resulting record.
        let patch = h
            .patch(server.url("/Device/r1"))
            .header("content-type", "application/json")
            .body(r#"{"temp":4.25}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(patch.status().as_u16(), 204);
        let line = sub.wait_line(|l| l.starts_with("MSG|0|1|Device/r1|") && l.contains("4.25"));
        let json = line.splitn(6, '|').nth(5).unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(json).unwrap(),
            serde_json::json!({"id": "r1", "name": "rest", "temp": 4.25})
        );

        // DELETE: a zero-length payload on the record's topic.
        let del = h.delete(server.url("/Device/r1")).send().await.unwrap();
        assert_eq!(del.status().as_u16(), 204);
        sub.wait_line(|l| l == "MSG|0|1|Device/r1|0|");

        // Nothing arrived retained (the table was empty when it subscribed), and
        // each change arrived once.
        let msgs: Vec<_> = sub.seen.iter().filter(|l| l.starts_with("MSG|")).collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        drop(sub);
        server.stop().await;
    });
}

#[test]
fn v5_properties_of_retained_messages_are_kept_across_a_restart() {
    run(|dir| async move {
        let server = TestServer::open(&dir, SCHEMA, Default::default()).await;
        run_ok(client("mosquitto_pub", &server).args([
            "-V",
            "mqttv5",
            "-r",
            "-q",
            "1",
            "-t",
            "Sensor/p1",
            "-m",
            r#"{"v":1}"#,
            "-D",
            "publish",
            "user-property",
            "origin",
            "mosquitto",
            "-D",
            "publish",
            "user-property",
            "k2",
            "v2",
            "-D",
            "publish",
            "content-type",
            "application/json",
            "-D",
            "publish",
            "response-topic",
            "reply/p1",
            "-D",
            "publish",
            "correlation-data",
            "corr-1",
        ]));
        // A free topic (no table) with a text payload.
        run_ok(client("mosquitto_pub", &server).args([
            "-V",
            "mqttv5",
            "-r",
            "-q",
            "1",
            "-t",
            "notes/n1",
            "-m",
            "hello notes",
            "-D",
            "publish",
            "user-property",
            "lang",
            "en",
            "-D",
            "publish",
            "content-type",
            "text/plain",
            "-D",
            "publish",
            "payload-format-indicator",
            "1",
        ]));

        let format = "%r|%t|%C|%P|%R|%D|%F|%p";
        let expect_record = r#"1|Sensor/p1|application/json|origin:mosquitto k2:v2|reply/p1|corr-1||{"id":"p1","v":1}"#;
        let expect_note = "1|notes/n1|text/plain|lang:en|||1|hello notes";
        let check = |server: &TestServer, round: &str| {
            for (topic, expected) in [("Sensor/p1", expect_record), ("notes/n1", expect_note)] {
                let out = run_ok(client("mosquitto_sub", server).args([
                    "-V", "mqttv5", "-t", topic, "-C", "1", "-W", "5", "-F", format,
                ]));
                assert_eq!(out, [expected], "{round}");
            }
        };
        check(&server, "before restart");
        server.stop().await;
        let server = TestServer::open(&dir, SCHEMA, Default::default()).await;
        check(&server, "after restart");
        server.stop().await;
    });
}

#[test]
fn mosquitto_qos2_is_exactly_once() {
    run(|dir| async move {
        let server = TestServer::open(&dir, SCHEMA, Default::default()).await;
        let mut sub = Proc::spawn(live_sub(&server).args([
            "-d",
            "-t",
            "q2/#",
            "-q",
            "2",
            "-F",
            "MSG|%q|%r|%t|%p",
        ]));
        sub.wait_line(|l| l.contains("received SUBACK"));

        // A retained QoS 2 publish: the full handshake, then a record.
        let out = run_ok(client("mosquitto_pub", &server).args([
            "-d",
            "-r",
            "-q",
            "2",
            "-t",
            "Device/q2",
            "-m",
            r#"{"name":"two"}"#,
        ]));
        for step in ["received PUBREC", "sending PUBREL", "received PUBCOMP"] {
            assert!(out.iter().any(|l| l.contains(step)), "no {step}: {out:?}");
        }
        assert_eq!(
            get_json(&server, "/Device/q2").await,
            serde_json::json!({"id": "q2", "name": "two"})
        );

        // Non-retained QoS 2 to a QoS 2 subscriber, then a QoS 1 end marker:
        // the QoS 2 message arrives once, at QoS 2, before the marker.
        run_ok(client("mosquitto_pub", &server).args(["-q", "2", "-t", "q2/a", "-m", "once"]));
        run_ok(client("mosquitto_pub", &server).args(["-q", "1", "-t", "q2/a", "-m", "end"]));
        sub.wait_line(|l| l == "MSG|1|0|q2/a|end");
        let msgs: Vec<_> = sub
            .seen
            .iter()
            .filter(|l| l.starts_with("MSG|"))
            .cloned()
            .collect();
        assert_eq!(msgs, ["MSG|2|0|q2/a|once", "MSG|1|0|q2/a|end"]);
        assert!(
            sub.seen.iter().any(|l| l.contains("sending PUBCOMP")),
            "the subscriber completed the QoS 2 flow: {:?}",
            sub.seen
        );
        drop(sub);
        server.stop().await;
    });
}

#[test]
fn a_typed_table_refusal_is_visible_to_mosquitto_pub() {
    run(|dir| async move {
        let server = TestServer::open(&dir, SCHEMA, Default::default()).await;
        // 5.0: PUBACK with reason 0x99 (payload format invalid).
        let mut pubv5 = client("mosquitto_pub", &server);
        pubv5.args([
            "-V",
            "mqttv5",
            "-d",
            "-r",
            "-q",
            "1",
            "-t",
            "Device/bad",
            "-m",
            r#"{"temp":"hot"}"#,
        ]);
        let (_, out, err) = Proc::spawn(&mut pubv5).finish();
        assert!(
            out.iter()
                .any(|l| l.contains("received PUBACK") && l.contains("RC:153")),
            "expected PUBACK reason 153 (0x99); stdout: {out:?}; stderr: {err}"
        );
        assert_eq!(get(&server, "/Device/bad").await.0, 404);

        // 3.1.1 has no reason codes: the server closes the connection, which
        // mosquitto_pub reports as a lost connection (exit code 7).
        let mut pubv3 = client("mosquitto_pub", &server);
        pubv3.args([
            "-d",
            "-r",
            "-q",
            "1",
            "-t",
            "Device/bad",
            "-m",
            r#"{"temp":"hot"}"#,
        ]);
        let (status, out, err) = Proc::spawn(&mut pubv3).finish();
        assert!(!status.success(), "stdout: {out:?}; stderr: {err}");
        assert!(
            !out.iter().any(|l| l.contains("received PUBACK")),
            "a refused 3.1.1 publish is not acknowledged: {out:?}"
        );
        assert_eq!(get(&server, "/Device/bad").await.0, 404);

        // A valid record still goes through afterwards.
        run_ok(client("mosquitto_pub", &server).args([
            "-V",
            "mqttv5",
            "-r",
            "-q",
            "1",
            "-t",
            "Device/good",
            "-m",
            r#"{"temp":1.5}"#,
        ]));
        assert_eq!(
            get_json(&server, "/Device/good").await,
            serde_json::json!({"id": "good", "temp": 1.5})
        );
        server.stop().await;
    });
}

#[test]
fn a_mosquitto_sub_persistent_session_gets_what_was_published_while_away() {
    run(|dir| async move {
        let server = TestServer::open(&dir, SCHEMA, Default::default()).await;
        for (version, id) in [("mqttv311", "persist-311"), ("mqttv5", "persist-5")] {
            let topic = format!("away/{id}");
            // Subscribe with a persistent session (-c), exit once subscribed (-E).
            run_ok(client("mosquitto_sub", &server).args([
                "-V", version, "-c", "-i", id, "-q", "1", "-t", "away/#", "-E",
            ]));
            run_ok(client("mosquitto_pub", &server).args([
                "-q",
                "1",
                "-t",
                &topic,
                "-m",
                "while you were away",
            ]));
            let out = run_ok(client("mosquitto_sub", &server).args([
                "-V",
                version,
                "-c",
                "-i",
                id,
                "-q",
                "1",
                "-t",
                "away/#",
                "-C",
                "1",
                "-W",
                "5",
                "-F",
                "%q|%r|%t|%p",
            ]));
            assert_eq!(
                out,
                [format!("1|0|{topic}|while you were away")],
                "{version}"
            );
            // Delivered and acknowledged: not delivered a second time.
            let mut again = client("mosquitto_sub", &server);
            again.args([
                "-V",
                version,
                "-c",
                "-i",
                id,
                "-q",
                "1",
                "-t",
                "away/#",
                "-C",
                "1",
                "-W",
                "1",
                "-F",
                "%q|%r|%t|%p",
            ]);
            let (_, out, _) = Proc::spawn(&mut again).finish();
            assert!(out.is_empty(), "{version}: delivered again: {out:?}");
        }
        server.stop().await;
    });
}

/// `mosquitto_pub -r -t T -m M` (QoS 0, the default) sends CONNECT, PUBLISH,
/// DISCONNECT back to back. The PUBLISH precedes the DISCONNECT, so the
/// server must carry it out (write the record, deliver the message) before
/// closing: packets on one connection are processed in order, and nothing in
/// MQTT 3.1.1 section 3.14 / 5.0 section 3.14 lets a DISCONNECT discard them.
#[test]
fn qos0_publish_then_disconnect_is_not_lost() {
    run(|dir| async move {
        let server = TestServer::open(&dir, SCHEMA, Default::default()).await;
        let mut sub = Proc::spawn(live_sub(&server).args([
            "-d",
            "-t",
            "fire/#",
            "-q",
            "1",
            "-F",
            "MSG|%t|%p",
        ]));
        sub.wait_line(|l| l.contains("received SUBACK"));
        const N: usize = 15;
        for i in 0..N {
            for version in ["mqttv311", "mqttv5"] {
                // Retained: a record write.
                run_ok(client("mosquitto_pub", &server).args([
                    "-V",
                    version,
                    "-r",
                    "-t",
                    &format!("Sensor/{version}-{i}"),
                    "-m",
                    &format!(r#"{{"i":{i}}}"#),
                ]));
                // Not retained: a message to a subscriber.
                run_ok(client("mosquitto_pub", &server).args([
                    "-V",
                    version,
                    "-t",
                    &format!("fire/{version}/{i}"),
                    "-m",
                    "forget",
                ]));
            }
        }
        // A QoS 1 marker: everything published before it has been handled.
        run_ok(client("mosquitto_pub", &server).args(["-q", "1", "-t", "fire/end", "-m", "end"]));
        sub.wait_line(|l| l == "MSG|fire/end|end");
        let delivered = sub
            .seen
            .iter()
            .filter(|l| l.starts_with("MSG|fire/") && l.ends_with("|forget"))
            .count();
        let mut stored = 0;
        for i in 0..N {
            for version in ["mqttv311", "mqttv5"] {
                if get(&server, &format!("/Sensor/{version}-{i}")).await.0 == 200 {
                    stored += 1;
                }
            }
        }
        assert_eq!(
            (delivered, stored),
            (2 * N, 2 * N),
            "QoS 0 publishes followed by DISCONNECT: {delivered}/{} delivered, {stored}/{} records stored",
            2 * N,
            2 * N
        );
        drop(sub);
        server.stop().await;
    });
}

/// `TestServer::stop` documents that the store is closed when it returns.
/// Each clean-session disconnect spawns a detached task (`forget_session` in
/// broker.rs) holding a `Database` clone; if one is still running, the store
/// outlives `stop()`, and when the caller then drops the kit's temporary
/// directory the store's final flush (`Store::drop` -> `engine.flush` ->
/// fjall `rotate_memtable_and_wait`) runs against a deleted directory and
/// never returns, so the test process hangs at runtime shutdown.
#[test]
fn stop_then_dropping_the_directory_does_not_hang() {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            for _ in 0..10 {
                let server = TestServer::start(SCHEMA).await;
                for i in 0..8 {
                    run_ok(client("mosquitto_pub", &server).args([
                        "-q",
                        "1",
                        "-t",
                        &format!("gone/{i}"),
                        "-m",
                        "x",
                    ]));
                }
                // A client killed just before the stop: its session is
                // forgotten while the server goes down.
                let mut sub = Proc::spawn(live_sub(&server).args(["-d", "-t", "gone/#"]));
                sub.wait_line(|l| l.contains("received SUBACK"));
                drop(sub);
                // Drops the temporary directory the kit created.
                server.stop().await;
            }
        });
        drop(rt);
        let _ = done.send(());
    });
    assert!(
        finished.recv_timeout(Duration::from_secs(120)).is_ok(),
        "stopping ten servers (and their runtime) did not finish within 120 s"
    );
}
