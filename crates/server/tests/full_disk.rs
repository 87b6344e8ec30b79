//! A full disk under the real `mqdb` process: its data directory is on a
//! small tmpfs that another file fills. Writes are refused with a clear
//! error before anything reaches the disk (HTTP 507, MQTT 0x97 with a
//! reason string), reads and non-durable MQTT traffic go on, deletes still
//! pass, writes resume by themselves once space is freed, the process stops
//! on SIGTERM, and after a restart every acknowledged write is there and no
//! refused one is.
//!
//! Mounting a tmpfs needs CAP_SYS_ADMIN (root in these containers). Where
//! the mount is refused the test says so on stderr and passes, unless
//! `MQDB_REQUIRE_FULL_DISK_TEST=1` makes that a failure.

mod support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::*;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, mib: u32) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a server killed by a failing assertion may still hold it.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the device of `dir` with `dir/filler` until no space is left.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 1 << 20];
    loop {
        match file.write_all(&chunk).and_then(|()| file.sync_data()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    path
}

fn start(dir: &Path, config: &Path) -> (Server, String, u16) {
    let (server, mqtt, base) = start_server(dir, config);
    (server, base, mqtt.port())
}

async fn put(client: &reqwest::Client, url: &str, body: &str) -> (u16, String) {
    let resp = client
        .put(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn get(client: &reqwest::Client, url: &str) -> u16 {
    client.get(url).send().await.unwrap().status().as_u16()
}

/// `mosquitto_pub` (MQTT 5, QoS 1, debug output) of `message` on `topic`:
/// returns what it printed, which shows the PUBACK's reason code.
fn mosquitto_pub(port: u16, topic: &str, message: &str, retain: bool) -> String {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", "mqttv5"])
        .args(["-q", "1", "-d", "-t", topic, "-m", message]);
    if retain {
        cmd.arg("-r");
    }
    let (_, stdout, stderr) = run(&mut cmd);
    stdout + &stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_clearly_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let _tmpfs = match Tmpfs::mount(&mnt, 64) {
        Ok(t) => t,
        Err(why) if std::env::var_os("MQDB_REQUIRE_FULL_DISK_TEST").is_none() => {
            eprintln!("full-disk test not run: cannot mount a tmpfs ({why})");
            return;
        }
        Err(why) => panic!("cannot mount a tmpfs: {why}"),
    };
    std::fs::write(
        dir.path().join("schema.graphql"),
        "type Item @table @export { id: ID @primaryKey  n: Int }\n",
    )
    .unwrap();
    let config = open_config(dir.path(), &mnt.join("data"));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    let (mut server, base, mqtt) = start(dir.path(), &config);
    for id in ["keep", "gone"] {
        let (status, _) = put(&client, &format!("{base}/Item/{id}"), r#"{"n":1}"#).await;
        assert_eq!(status, 204);
    }

    let filler = fill(&mnt);
    // A write: refused before anything is written, and told why.
    let (status, body) = put(&client, &format!("{base}/Item/refused"), r#"{"n":2}"#).await;
    assert_eq!(status, 507, "{body}");
    assert!(
        body.contains("storage full") && body.contains("nothing was written"),
        "{body}"
    );
    // Over MQTT: a retained (durable) publish gets 0x97 Quota exceeded.
    let out = mosquitto_pub(mqtt, "Item/refused-mqtt", r#"{"n":3}"#, true);
    assert!(
        out.contains("RC:151"),
        "retained publish on a full disk: {out}"
    );
    // Reads and non-durable messages go on.
    assert_eq!(get(&client, &format!("{base}/Item/keep")).await, 200);
    let out = mosquitto_pub(mqtt, "free/ping", "hello", false);
    assert!(
        out.contains("RC:0"),
        "non-retained publish on a full disk: {out}"
    );
    // Deletes still pass: they are how space is given back.
    let resp = client
        .delete(format!("{base}/Item/gone"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);

    // Space freed: writes resume without a restart.
    std::fs::remove_file(filler).unwrap();
    let (status, body) = put(&client, &format!("{base}/Item/after"), r#"{"n":4}"#).await;
    assert_eq!(status, 204, "{body}");

    server.signal("TERM");
    assert!(wait_bounded(&mut server.child).success());
    let (mut server, base, _) = start(dir.path(), &config);
    for (id, want) in [
        ("keep", 200),
        ("after", 200),
        ("gone", 404),
        ("refused", 404),
        ("refused-mqtt", 404),
    ] {
        assert_eq!(
            get(&client, &format!("{base}/Item/{id}")).await,
            want,
            "Item/{id} after the restart"
        );
    }
    server.signal("TERM");
    assert!(wait_bounded(&mut server.child).success());
}
