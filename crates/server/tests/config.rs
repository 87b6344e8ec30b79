//! `mqdb config`: the effective configuration after defaults, the
//! `--config` file and `MQDB_*` environment variables, and the errors a bad
//! configuration produces. Runs the real binary.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A finished `mqdb` run.
struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The printed configuration, parsed back.
    fn toml(&self) -> toml::Table {
        assert!(self.success, "mqdb config failed: {}", self.stderr);
        self.stdout.parse().expect("mqdb config prints valid TOML")
    }

    fn error(&self) -> &str {
        assert!(
            !self.success,
            "mqdb should have failed, printed:\n{}",
            self.stdout
        );
        assert!(self.stdout.is_empty(), "errors go to stderr, not stdout");
        &self.stderr
    }
}

/// `mqdb` in `dir`, with no `MQDB_*` variable inherited from the test runner.
fn mqdb(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mqdb"));
    cmd.current_dir(dir);
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

/// Runs `cmd` to completion, failing the test after 10 seconds.
fn run(cmd: &mut Command) -> Run {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mqdb");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for mqdb") {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("mqdb did not exit within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
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
    Run {
        success: status.success(),
        stdout,
        stderr,
    }
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("mqdb.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn config_with(dir: &Path, text: &str) -> Run {
    let file = write_config(dir, text);
    run(mqdb(dir).arg("config").arg("--config").arg(file))
}

fn get<'a>(table: &'a toml::Table, path: &str) -> &'a toml::Value {
    let mut parts = path.split('.');
    let mut value = &table[parts.next().unwrap()];
    for part in parts {
        value = value.get(part).unwrap_or_else(|| panic!("{path} missing"));
    }
    value
}

#[test]
fn config_without_file_prints_documented_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let config = run(mqdb(dir.path()).arg("config")).toml();
    let expect = |path: &str, value: toml::Value| assert_eq!(get(&config, path), &value, "{path}");
    expect("storage.path", "./mqdb-data".into());
    expect("storage.durability", "fsync".into());
    expect(
        "schema.files",
        toml::Value::Array(vec!["schema.graphql".into()]),
    );
    expect("mqtt.host", "0.0.0.0".into());
    expect("mqtt.port", 1883.into());
    expect("mqtt.require_authentication", true.into());
    expect("mqtt.free_topics", true.into());
    expect("mqtt.max_packet_size", 1_048_576.into());
    expect("mqtt.sys_interval", 10.into());
    expect("http.host", "0.0.0.0".into());
    expect("http.port", 9926.into());
    expect("http.require_authentication", true.into());
    assert!(
        get(&config, "mqtt").get("tls").is_none(),
        "no TLS by default"
    );
    assert!(!config.contains_key("cluster"), "no cluster by default");
}

#[test]
fn file_overrides_defaults_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(
        dir.path(),
        r#"
        [storage]
        durability = "buffered"
        [mqtt]
        port = 1999
        [mqtt.tls]
        cert = "server.pem"
        key = "server.key"
        [roles.reader]
        tables = { Sensor = ["read"] }
        "#,
    )
    .toml();
    assert_eq!(
        get(&config, "storage.durability").as_str(),
        Some("buffered")
    );
    assert_eq!(get(&config, "storage.path").as_str(), Some("./mqdb-data"));
    assert_eq!(get(&config, "mqtt.port").as_integer(), Some(1999));
    assert_eq!(get(&config, "mqtt.host").as_str(), Some("0.0.0.0"));
    assert_eq!(get(&config, "mqtt.tls.port").as_integer(), Some(8883));
    assert_eq!(get(&config, "mqtt.tls.client_certs").as_str(), Some("none"));
    assert_eq!(
        get(&config, "roles.reader.tables.Sensor")[0].as_str(),
        Some("read")
    );
    assert_eq!(
        get(&config, "roles.reader.super_user").as_bool(),
        Some(false)
    );
}

#[test]
fn environment_overrides_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), "[mqtt]\nport = 1999\n");
    let config = run(mqdb(dir.path())
        .args(["config", "--config"])
        .arg(file)
        .env("MQDB_MQTT__PORT", "1884"))
    .toml();
    assert_eq!(get(&config, "mqtt.port").as_integer(), Some(1884));
}

#[test]
fn environment_sets_nested_and_optional_sections() {
    let dir = tempfile::tempdir().unwrap();
    let config = run(mqdb(dir.path())
        .arg("config")
        .env("MQDB_MQTT__TLS__CERT", "c.pem")
        .env("MQDB_MQTT__TLS__KEY", "k.pem")
        .env("MQDB_STORAGE__DURABILITY", "buffered")
        .env("MQDB_HTTP__REQUIRE_AUTHENTICATION", "false")
        .env("MQDB_CLUSTER__NODE", "7"))
    .toml();
    assert_eq!(get(&config, "mqtt.tls.cert").as_str(), Some("c.pem"));
    assert_eq!(get(&config, "mqtt.tls.port").as_integer(), Some(8883));
    assert_eq!(
        get(&config, "storage.durability").as_str(),
        Some("buffered")
    );
    assert_eq!(
        get(&config, "http.require_authentication").as_bool(),
        Some(false)
    );
    assert_eq!(get(&config, "cluster.node").as_str(), Some("7"));
    assert!(get(&config, "cluster.nats_url").is_str());
}

#[test]
fn admin_password_in_environment_is_not_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(mqdb(dir.path())
        .arg("config")
        .env("MQDB_ADMIN_PASSWORD", "s3cret"));
    out.toml();
    assert!(
        !out.stderr.contains("MQDB_ADMIN_PASSWORD"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("s3cret"));
}

#[test]
fn misspelt_environment_variable_is_warned_about_not_applied() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(mqdb(dir.path()).arg("config").env("MQDB_MQTT_PORT", "1884"));
    assert_eq!(get(&out.toml(), "mqtt.port").as_integer(), Some(1883));
    assert!(out.stderr.contains("MQDB_MQTT_PORT"), "{}", out.stderr);
}

#[test]
fn unknown_top_level_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = config_with(dir.path(), "prot = 1\n");
    assert!(out.error().contains("unknown key `prot`"), "{}", out.stderr);
}

#[test]
fn unknown_mqtt_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = config_with(dir.path(), "[mqtt]\nprot = 1\n");
    let msg = out.error();
    assert!(msg.contains("`mqtt.prot`"), "{msg}");
    assert!(msg.contains("mqdb.toml"), "names the file: {msg}");
}

#[test]
fn unknown_tls_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = config_with(dir.path(), "[mqtt.tls]\ncertificate = \"c.pem\"\n");
    assert!(
        out.error().contains("`mqtt.tls.certificate`"),
        "{}",
        out.stderr
    );
}

#[test]
fn unknown_key_from_environment_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(mqdb(dir.path()).arg("config").env("MQDB_MQTT__PROT", "1"));
    let msg = out.error();
    assert!(
        msg.contains("`mqtt.prot`") && msg.contains("MQDB_MQTT__PROT"),
        "{msg}"
    );
}

#[test]
fn wrong_type_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = config_with(dir.path(), "[mqtt]\nport = \"x\"\n");
    let msg = out.error();
    assert!(
        msg.contains("`mqtt.port`") && msg.contains("\"x\""),
        "{msg}"
    );
}

#[test]
fn wrong_type_from_environment_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(mqdb(dir.path()).arg("config").env("MQDB_HTTP__PORT", "x"));
    assert!(out.error().contains("MQDB_HTTP__PORT"), "{}", out.stderr);
}

#[test]
fn invalid_combination_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = config_with(
        dir.path(),
        "[http]\nport = 1883\n[mqtt.tls]\ncert = \"c.pem\"\n",
    );
    let msg = out.error();
    assert!(
        msg.contains("`mqtt.port`") && msg.contains("`http.port`"),
        "{msg}"
    );
    assert!(msg.contains("`mqtt.tls.key`"), "{msg}");
}

#[test]
fn malformed_toml_fails_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = config_with(dir.path(), "[mqtt\n");
    assert!(out.error().contains("mqdb.toml"), "{}", out.stderr);
}

#[test]
fn missing_config_file_fails_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(mqdb(dir.path()).args(["config", "--config", "nowhere/mqdb.toml"]));
    assert!(out.error().contains("nowhere/mqdb.toml"), "{}", out.stderr);
}

#[test]
fn example_file_parses() {
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mqdb.example.toml");
    let config = run(mqdb(dir.path()).arg("config").arg("--config").arg(example)).toml();
    assert_eq!(
        get(&config, "mqtt.tls.client_certs").as_str(),
        Some("optional")
    );
    assert_eq!(get(&config, "cluster.node").as_str(), Some("node-a"));
    assert!(get(&config, "roles.writer.topics.publish").is_array());
}

#[test]
fn https_section_has_its_own_default_port_and_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let config = run(mqdb(dir.path())
        .arg("config")
        .env("MQDB_HTTP__TLS__CERT", "c.pem")
        .env("MQDB_HTTP__TLS__KEY", "k.pem"))
    .toml();
    assert_eq!(get(&config, "http.tls.port").as_integer(), Some(9927));
    assert_eq!(get(&config, "http.tls.cert").as_str(), Some("c.pem"));
    assert_eq!(get(&config, "http.tls.client_certs").as_str(), Some("none"));
    assert_eq!(get(&config, "http.port").as_integer(), Some(9926));

    let out = config_with(dir.path(), "[http.tls]\ncertificate = \"c.pem\"\n");
    assert!(
        out.error().contains("`http.tls.certificate`"),
        "{}",
        out.stderr
    );
    let out = config_with(
        dir.path(),
        "[http.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_certs = \"required\"\n",
    );
    assert!(
        out.error().contains("`http.tls.client_ca` is not set"),
        "{}",
        out.stderr
    );
}
