//! The `mqdb` command line and the `serve` lifecycle: version, help, start-up
//! checks and clean exit on SIGTERM/SIGINT. Runs the real binary.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

/// `mqdb` in `dir`, with no `MQDB_*` variable inherited from the test runner
/// and logs at `info`.
fn mqdb(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mqdb"));
    cmd.current_dir(dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        if key
            .to_string_lossy()
            .to_ascii_uppercase()
            .starts_with("MQDB_")
        {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Waits up to [`WAIT`] for `child` to exit; kills it and fails otherwise.
fn wait_bounded(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait for mqdb") {
            return status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("mqdb did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `cmd` to completion (bounded) and returns (success, stdout, stderr).
fn run(cmd: &mut Command) -> (bool, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mqdb");
    let status = wait_bounded(&mut child);
    let (mut stdout, mut stderr) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.success(), stdout, stderr)
}

/// A TOML string literal for `path`.
fn toml_str(path: &Path) -> String {
    toml::Value::String(path.to_str().unwrap().to_owned()).to_string()
}

/// A running `mqdb serve` whose log lines arrive on a channel.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Server {
    fn start(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mqdb serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a log line containing `needle`.
    fn wait_for_line(&mut self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.seen.iter().any(|l| l.contains(needle)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => {
                    self.child.kill().ok();
                    self.child.wait().ok();
                    panic!(
                        "no log line with {needle:?}; got:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    fn has_line(&self, needle: &str) -> bool {
        self.seen.iter().any(|l| l.contains(needle))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Never leave a server behind when an assertion fails.
        if matches!(self.child.try_wait(), Ok(None)) {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

#[test]
fn version_prints_name_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, _) = run(mqdb(dir.path()).arg("--version"));
    assert!(ok);
    assert_eq!(stdout.trim(), format!("mqdb {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn help_lists_serve_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, _) = run(mqdb(dir.path()).arg("--help"));
    assert!(ok);
    assert!(
        stdout.contains("serve") && stdout.contains("config"),
        "{stdout}"
    );
    assert!(
        stdout.contains("MQDB_MQTT__PORT"),
        "help explains env vars: {stdout}"
    );
    let (ok, stdout, _) = run(mqdb(dir.path()).args(["serve", "--help"]));
    assert!(ok);
    assert!(stdout.contains("--config <FILE>"), "{stdout}");
}

#[test]
fn no_subcommand_prints_usage_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = run(&mut mqdb(dir.path()));
    assert!(!ok);
    assert!(stdout.is_empty());
    assert!(stderr.contains("Usage"), "{stderr}");
}

#[test]
fn unknown_subcommand_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = run(mqdb(dir.path()).arg("servee"));
    assert!(!ok);
    assert!(stderr.contains("servee"), "{stderr}");
}

/// Starts `serve` on a fresh nested data directory, waits until it is ready,
/// sends `signal` and expects a clean exit.
fn serve_until(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("var/mqdb/data");
    let config = dir.path().join("mqdb.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\npath = {}\n[mqtt]\nport = 0\n[http]\nport = 0\n",
            toml_str(&data)
        ),
    )
    .unwrap();
    let mut server = Server::start(
        mqdb(dir.path())
            .args(["serve", "--config"])
            .arg(&config)
            // Read later for the admin user; must not upset the config loader.
            .env("MQDB_ADMIN_PASSWORD", "s3cret"),
    );
    server.wait_for_line("waiting for SIGINT or SIGTERM");
    assert!(data.is_dir(), "serve creates the data directory");
    assert!(
        server.has_line("no MQTT or HTTP listener yet"),
        "{:?}",
        server.seen
    );
    assert!(server.has_line("mqtt://0.0.0.0:0"), "{:?}", server.seen);

    server.signal(signal);
    let status = wait_bounded(&mut server.child);
    assert!(status.success(), "exit status {status:?}");
    server.wait_for_line(signal);
    assert!(!server.seen.iter().any(|l| l.contains("s3cret")));
}

#[test]
fn serve_creates_data_dir_and_exits_cleanly_on_sigterm() {
    serve_until("SIGTERM");
}

#[test]
fn serve_exits_cleanly_on_sigint() {
    serve_until("SIGINT");
}

#[test]
fn serve_with_missing_config_file_fails_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = run(mqdb(dir.path()).args(["serve", "--config", "absent.toml"]));
    assert!(!ok);
    assert!(stderr.contains("absent.toml"), "{stderr}");
}

#[test]
fn serve_with_invalid_config_fails_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mqdb.toml"),
        "[mqtt]\nmax_packet_size = 0\n",
    )
    .unwrap();
    let (ok, _, stderr) = run(mqdb(dir.path()).args(["serve", "--config", "mqdb.toml"]));
    assert!(!ok);
    assert!(stderr.contains("mqtt.max_packet_size"), "{stderr}");
    assert!(!dir.path().join("mqdb-data").exists(), "nothing created");
}

#[test]
fn serve_fails_naming_a_data_path_that_is_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, b"").unwrap();
    let (ok, _, stderr) = run(mqdb(dir.path())
        .arg("serve")
        .env("MQDB_STORAGE__PATH", blocker.join("data")));
    assert!(!ok);
    assert!(stderr.contains(&blocker.display().to_string()), "{stderr}");
}
