//! Interop: the Eclipse Paho Python client (`paho-mqtt` 2.x,
//! `transport="websockets"`) speaking MQTT over WebSocket to the HTTP port,
//! with a TCP client (RawClient) on the MQTT port on the other side.
//!
//! Needs `python3` with `paho-mqtt` (`pip install 'paho-mqtt>=2,<3'`;
//! scripts/test.sh installs it): the tests fail, they do not skip, without
//! it. The script is `tests/paho/ws_client.py`; every wait is bounded and
//! the Python process is killed if the test gives up on it.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;
use mqdb_codec::*;
use mqdb_testkit::*;
use tokio::sync::mpsc;

const SCHEMA: &str = "type Sensor @table @export";

/// How long the script may take for one step (it gives up after 15 s).
const STEP: Duration = Duration::from_secs(20);

/// The running script: its output lines, and the process, killed on drop.
struct Paho {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Drop for Paho {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Paho {
    /// Starts the script against `server`'s HTTP port.
    fn start(
        server: &TestServer,
        path: &str,
        version: u8,
        sub: &str,
        publish: (&str, &str),
    ) -> Paho {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/paho/ws_client.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(server.http.ip().to_string())
            .arg(server.http.port().to_string())
            .arg(path)
            .arg(version.to_string())
            .arg(sub)
            .arg(publish.0)
            .arg(publish.1)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs (the paho interop tests need python3 with paho-mqtt)");
        let (tx, lines) = mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        for (stream, prefix) in [
            (Box::new(stdout) as Box<dyn std::io::Read + Send>, ""),
            (Box::new(stderr), "stderr: "),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(format!("{prefix}{line}")).is_err() {
                        break;
                    }
                }
            });
        }
        Paho {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stdout line starting with `word`; returns the rest.
    async fn expect(&mut self, word: &str) -> String {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if let Some(rest) = line.strip_prefix(word) {
                        return rest.trim().to_owned();
                    }
                    if line.contains("No module named 'paho'") {
                        panic!(
                            "paho-mqtt is missing: pip install 'paho-mqtt>=2,<3' (scripts/test.sh does)"
                        );
                    }
                }
                Ok(None) => panic!("the script ended before `{word}`; output: {:#?}", self.seen),
                Err(_) => panic!("no `{word}` within {STEP:?}; output: {:#?}", self.seen),
            }
        }
    }

    /// Waits (bounded) for the script to exit and asserts it succeeded.
    async fn succeeded(&mut self) {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            match self.child.try_wait().expect("wait for python3") {
                Some(status) => {
                    assert!(status.success(), "{status}; output: {:#?}", self.seen);
                    return;
                }
                None if tokio::time::Instant::now() > deadline => {
                    panic!(
                        "the script did not exit within {STEP:?}; output: {:#?}",
                        self.seen
                    )
                }
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}

/// Paho subscribes over WebSocket, publishes to a TCP subscriber, and gets
/// what the TCP client publishes.
async fn paho_round_trip(version: Version) {
    let server = TestServer::start(SCHEMA).await;
    let v = if version == Version::V5 { 5 } else { 3 };
    let mut tcp = connect(&server, version, "tcp-peer").await;
    subscribe(&mut tcp, "paho/from-ws", QoS::AtLeastOnce).await;

    let mut paho = Paho::start(
        &server,
        "/mqtt",
        v,
        "paho/to-ws",
        ("paho/from-ws", "hi from paho"),
    );
    assert_eq!(paho.expect("CONNECTED").await, "Success");
    assert_eq!(paho.expect("SUBSCRIBED").await, "1", "granted QoS 1");

    let p = recv_and_ack(&mut tcp).await;
    assert_eq!(
        (&*p.topic, &p.payload[..]),
        ("paho/from-ws", &b"hi from paho"[..])
    );
    paho.expect("PUBLISHED").await;

    let ack = publish_qos1(
        &mut tcp,
        publish(
            "paho/to-ws",
            &b"hi from tcp"[..],
            QoS::AtLeastOnce,
            false,
            1,
        ),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert_eq!(paho.expect("MESSAGE").await, "paho/to-ws 0 hi from tcp");
    paho.expect("DONE").await;
    paho.succeeded().await;
    disconnect(tcp).await;
    server.stop().await;
}

#[tokio::test]
async fn paho_round_trip_v311() {
    paho_round_trip(Version::V311).await;
}

#[tokio::test]
async fn paho_round_trip_v5() {
    paho_round_trip(Version::V5).await;
}

/// A record written over TCP reaches Paho over WebSocket as a retained
/// JSON message, on the root path too.
#[tokio::test]
async fn paho_gets_a_record_as_a_retained_message() {
    let server = TestServer::start(SCHEMA).await;
    let mut tcp = connect(&server, Version::V5, "writer").await;
    put(&mut tcp, "Sensor/p", &br#"{"temp":21.5}"#[..]).await;
    sync_feed(&server, "Sensor").await;

    let mut paho = Paho::start(&server, "/", 5, "Sensor/p", ("paho/ignored", "-"));
    assert_eq!(paho.expect("CONNECTED").await, "Success");
    let message = paho.expect("MESSAGE").await;
    let (head, body) = message.split_at("Sensor/p 1 ".len());
    assert_eq!(head, "Sensor/p 1 ", "{message}");
    assert_eq!(
        json(body.as_bytes()),
        serde_json::json!({"temp": 21.5, "id": "p"})
    );
    paho.succeeded().await;
    disconnect(tcp).await;
    server.stop().await;
}
