//! The `mqdb` command line and the `serve` lifecycle: version, help, start-up
//! checks and clean exit on SIGTERM/SIGINT. Runs the real binary.

mod support;

use support::*;

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
        server.has_line("HTTP (REST) listening"),
        "{:?}",
        server.seen
    );
    assert!(server.has_line("MQTT listening"), "{:?}", server.seen);

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
