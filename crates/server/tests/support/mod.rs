//! Shared by the black-box tests of the `mqdb` binary: running it with a
//! clean environment, bounded waits, and a running server whose log lines
//! are read (to learn the ports it bound and when it is ready).
// Each test crate uses a different part of this module.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// `mqdb` in `dir`, with no `MQDB_*` variable inherited from the test runner
/// and logs at `info`.
pub(crate) fn mqdb(dir: &Path) -> Command {
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
pub(crate) fn wait_bounded(child: &mut Child) -> ExitStatus {
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
pub(crate) fn run(cmd: &mut Command) -> (bool, String, String) {
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
pub(crate) fn toml_str(path: &Path) -> String {
    toml::Value::String(path.to_str().unwrap().to_owned()).to_string()
}

/// Writes `dir/mqdb.toml`: data in `data`, MQTT and REST on loopback
/// ephemeral ports, authentication off (the schema, if any, is
/// `dir/schema.graphql`, found from the working directory).
pub(crate) fn open_config(dir: &Path, data: &Path) -> std::path::PathBuf {
    let config = dir.join("mqdb.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\npath = {}\n\
             [mqtt]\nhost = \"127.0.0.1\"\nport = 0\nrequire_authentication = false\n\
             [http]\nhost = \"127.0.0.1\"\nport = 0\nrequire_authentication = false\n",
            toml_str(data)
        ),
    )
    .unwrap();
    config
}

/// Starts `mqdb serve --config config` in `dir` and waits until it is
/// ready: (process, MQTT address, REST base URL).
pub(crate) fn start_server(dir: &Path, config: &Path) -> (Server, std::net::SocketAddr, String) {
    let mut server = Server::start(mqdb(dir).args(["serve", "--config"]).arg(config));
    let mqtt = server.logged_address("MQTT listening");
    let http = server.logged_address("HTTP (REST) listening");
    server.wait_for_line("ready; waiting");
    (server, mqtt, format!("http://{http}"))
}

/// A running `mqdb serve` whose log lines arrive on a channel.
pub(crate) struct Server {
    pub(crate) child: Child,
    lines: mpsc::Receiver<String>,
    pub(crate) seen: Vec<String>,
}

impl Server {
    pub(crate) fn start(cmd: &mut Command) -> Self {
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
    pub(crate) fn wait_for_line(&mut self, needle: &str) {
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

    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    pub(crate) fn has_line(&self, needle: &str) -> bool {
        self.seen.iter().any(|l| l.contains(needle))
    }

    /// The address logged after `marker` (e.g. `HTTP (REST) listening`),
    /// waiting for that line.
    pub(crate) fn logged_address(&mut self, marker: &str) -> std::net::SocketAddr {
        self.wait_for_line(marker);
        let line = self.seen.iter().find(|l| l.contains(marker)).unwrap();
        let start = line.find("address=").expect("address field") + "address=".len();
        let addr = line[start..].split_whitespace().next().unwrap();
        addr.parse()
            .unwrap_or_else(|e| panic!("bad address {addr:?} in {line:?}: {e}"))
    }

    /// SIGKILL: the process gets no chance to flush or clean up.
    pub(crate) fn kill_hard(&mut self) {
        self.child.kill().expect("SIGKILL mqdb");
        self.child.wait().expect("reap mqdb");
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
