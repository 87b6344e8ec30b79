//! Interop: MQTT 5 enhanced authentication (SCRAM-SHA-256) with a client
//! nobody here wrote, MQTT.js (the npm package `mqtt`, version pinned in
//! `tests/mqttjs/package.json` and `package-lock.json`), against
//! [`TestServer::start_secure`] with a user added.
//!
//! `tests/mqttjs/scram.js` writes the client side of SCRAM with Node's
//! `crypto` (PBKDF2, HMAC, SHA-256) and plugs it into MQTT.js's enhanced
//! authentication: Authentication Method and the client-first-message in
//! CONNECT, the client-final-message from the `client.handleAuth` hook
//! answering the broker's AUTH 0x18. It checks the server's proof (the
//! server-final-message in the CONNACK) itself and prints what it saw as
//! one JSON line, which the tests assert on.
//!
//! Needs `node` and `npm` (scripts/test.sh installs them): the tests fail,
//! they do not skip, without them. `npm ci` runs in `tests/mqttjs` when its
//! `node_modules` lacks `mqtt` (bounded by [`NPM_LIMIT`]; the registry must
//! be reachable then). Every wait is bounded: the script gives up after
//! 15 s and is killed after [`LIMIT`].

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use mqdb_resource::Roles;
use mqdb_resource::auth::Role;
use mqdb_testkit::*;
use serde_json::Value;

/// How long `npm ci` may take.
const NPM_LIMIT: Duration = Duration::from_secs(300);
/// How long one run of the script may take before it is killed.
const LIMIT: Duration = Duration::from_secs(30);

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mqttjs")
}

/// A child process, killed if the test gives up on it.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Output of a finished (or killed) process.
struct Output {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

/// Starts `program` in the mqttjs directory, or fails the test with a
/// clear message when it is not installed.
fn spawn(program: &str, args: &[&str]) -> Killed {
    let child = Command::new(program)
        .args(args)
        .current_dir(dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `{program}` ({e}): the MQTT.js interop tests need Node.js and npm \
                 (Debian: apt-get install nodejs npm; scripts/test.sh installs them)"
            )
        });
    Killed(child)
}

fn collect(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// Waits for `child` at most `limit`, polling (so the test runtime, which
/// hosts the server, keeps running); kills it past the limit.
async fn finish(mut child: Killed, limit: Duration) -> Output {
    let stdout = collect(child.0.stdout.take().expect("stdout"));
    let stderr = collect(child.0.stderr.take().expect("stderr"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for the child") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.0.kill();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    drop(child);
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Makes sure `node` runs and MQTT.js is installed (`npm ci` otherwise),
/// once per test binary (the tests of this file wait for one another here).
async fn node_and_mqttjs() {
    static READY: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    READY
        .get_or_init(|| async {
            let node = finish(spawn("node", &["--version"]), LIMIT).await;
            assert!(
                node.status.is_some_and(|s| s.success()),
                "`node --version` failed: {}{}",
                node.stdout,
                node.stderr
            );
            if dir().join("node_modules/mqtt/package.json").exists() {
                return;
            }
            let npm = finish(
                spawn("npm", &["ci", "--silent", "--no-audit", "--no-fund"]),
                NPM_LIMIT,
            )
            .await;
            assert!(
                npm.status.is_some_and(|s| s.success()),
                "`npm ci` in {} failed or took over {NPM_LIMIT:?} ({:?}):\n{}{}",
                dir().display(),
                npm.status,
                npm.stdout,
                npm.stderr
            );
            assert!(dir().join("node_modules/mqtt/package.json").exists());
        })
        .await;
}

/// Runs `scram.js` for `scenario` against `server`; returns its result.
async fn scram_js(server: &TestServer, scenario: &str, user: &str, password: &str) -> Value {
    let port = server.mqtt.port().to_string();
    let host = server.mqtt.ip().to_string();
    let child = spawn(
        "node",
        &["scram.js", &host, &port, scenario, user, password],
    );
    let out = finish(child, LIMIT).await;
    let Output {
        status,
        stdout,
        stderr,
    } = out;
    let Some(status) = status else {
        panic!("scram.js {scenario} did not finish within {LIMIT:?}\n{stdout}\n{stderr}")
    };
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("scram.js {scenario}: no RESULT ({status})\n{stdout}\n{stderr}"));
    let result: Value = serde_json::from_str(result).expect("RESULT is JSON");
    eprintln!("{scenario}: {result:#}");
    assert!(
        status.success() && result.get("error").is_none(),
        "scram.js {scenario} failed ({status}): {result:#}\n{stderr}"
    );
    result
}

async fn server() -> TestServer {
    node_and_mqttjs().await;
    let chat = Role {
        tables: HashMap::new(),
        subscribe: vec!["chat/#".to_owned()],
        publish: vec!["chat/#".to_owned()],
        super_user: false,
    };
    let schema = "type Secret @table @export";
    let server =
        TestServer::start_secure(schema, Roles::new(HashMap::from([("chat".into(), chat)]))).await;
    server
        .broker
        .security()
        .users()
        .add("js-user", b"js-pw", vec!["chat".into()])
        .await
        .unwrap();
    server
}

#[tokio::test]
async fn mqttjs_logs_in_with_scram_sha_256_and_round_trips_a_message() {
    let server = server().await;
    let r = scram_js(&server, "login", "js-user", "js-pw").await;
    // One AUTH 0x18 (server-first-message) handed to handleAuth.
    assert_eq!(
        r["auth_packets"],
        serde_json::json!([{"reason": 0x18, "method": "SCRAM-SHA-256"}])
    );
    assert_eq!(r["server_first"]["iterations"], 4096);
    let ack = &r["connack"];
    assert_eq!(ack["reason"], 0, "{r:#}");
    assert_eq!(ack["method"], "SCRAM-SHA-256");
    assert_eq!(
        ack["server_proof_ok"], true,
        "the server-final-message proves the server knows the password: {r:#}"
    );
    // The connection is the user's: its role allows chat/#, not Secret.
    assert_eq!(
        r["refused_subscription"]["codes"],
        serde_json::json!([0x87]),
        "{r:#}"
    );
    assert!(r["refused_subscription"]["reason_string"].is_string());
    assert_eq!(r["subscription"]["codes"], serde_json::json!([1]), "{r:#}");
    assert_eq!(r["puback"]["reason"], 0, "{r:#}");
    assert_eq!(
        r["message"],
        serde_json::json!({"topic": "chat/scram", "payload": "hello from mqtt.js", "qos": 1})
    );
    server.stop().await;
}

#[tokio::test]
async fn mqttjs_with_a_wrong_password_is_refused_with_0x86() {
    let server = server().await;
    let r = scram_js(&server, "wrong", "js-user", "not-the-pw").await;
    // The exchange happened (server-first-message), then the proof failed.
    assert_eq!(r["auth_packets"].as_array().map(Vec::len), Some(1), "{r:#}");
    assert_eq!(r["connack"], Value::Null, "no successful CONNACK: {r:#}");
    let connack = r["received"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["cmd"] == "connack")
        .unwrap_or_else(|| panic!("no CONNACK: {r:#}"));
    assert_eq!(connack["reasonCode"], 0x86, "{r:#}");
    assert_eq!(connack["reasonString"], "bad user name or password");
    assert_eq!(
        r["error_event"]["code"], 0x86,
        "CONNACK 0x86 Bad user name or password: {r:#}"
    );
    server.stop().await;
}
