//! Users from the command line and the first start (SPEC §5): the generated
//! admin password (printed once, kept in an owner-only file), the
//! `MQDB_ADMIN_PASSWORD` variable, and `mqdb user add|passwd|remove|list`
//! on the data directory with the server running (seen at once) or not.

mod support;

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};

use support::*;

fn write_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("mqdb.toml");
    std::fs::write(
        dir.join("schema.graphql"),
        "type Sensor @table @export { id: ID @primaryKey }\n",
    )
    .unwrap();
    std::fs::write(
        &config,
        format!(
            "[storage]\npath = {}\n[mqtt]\nhost = \"127.0.0.1\"\nport = 0\n\
             [http]\nhost = \"127.0.0.1\"\nport = 0\n\
             [roles.reader]\ntables = {{ Sensor = [\"read\"] }}\n",
            toml_str(&dir.join("data"))
        ),
    )
    .unwrap();
    config
}

/// Runs `mqdb user ...` with `input` on stdin; (success, stdout, stderr).
fn user(dir: &Path, config: &Path, args: &[&str], input: &str) -> (bool, String, String) {
    let mut child = mqdb(dir)
        .arg("user")
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let status = wait_bounded(&mut child);
    let out = child.wait_with_output().unwrap();
    (
        status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn status(http: std::net::SocketAddr, user: &str, password: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("http://{http}/Sensor/1"))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn serve(dir: &Path, config: &Path, admin_password: Option<&str>) -> Server {
    let mut cmd: Command = mqdb(dir);
    cmd.args(["serve", "--config"]).arg(config);
    if let Some(p) = admin_password {
        cmd.env("MQDB_ADMIN_PASSWORD", p);
    }
    Server::start(&mut cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_start_generates_an_admin_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let mut server = serve(dir.path(), &config, None);
    server.wait_for_line("created user `admin`");
    let line = server
        .seen
        .iter()
        .find(|l| l.contains("with password: "))
        .unwrap()
        .clone();
    let printed = line
        .rsplit("with password: ")
        .next()
        .unwrap()
        .trim()
        .to_owned();
    let http = server.logged_address("HTTP (REST) listening");
    server.wait_for_line("ready");
    let file = dir.path().join("data/admin-password");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "owner-only: {mode:o}");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), printed);
    assert_eq!(status(http, "admin", &printed).await, 404, "authenticated");
    assert_eq!(status(http, "admin", "wrong").await, 401);
    server.signal("TERM");
    assert!(wait_bounded(&mut server.child).success());

    // A second start keeps the admin user and prints nothing.
    let mut server = serve(dir.path(), &config, None);
    let http = server.logged_address("HTTP (REST) listening");
    server.wait_for_line("ready");
    assert!(!server.has_line("with password"));
    assert_eq!(status(http, "admin", &printed).await, 404);
    server.signal("TERM");
    assert!(wait_bounded(&mut server.child).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_managed_with_the_server_running_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let mut server = serve(dir.path(), &config, Some("s3cret"));
    let http = server.logged_address("HTTP (REST) listening");
    server.wait_for_line("ready");
    assert!(!server.has_line("with password"));
    assert_eq!(status(http, "admin", "s3cret").await, 404);
    assert!(!dir.path().join("data/admin-password").exists());

    // Running: the server applies the change itself, at once.
    let (ok, _, err) = user(
        dir.path(),
        &config,
        &["add", "bob", "--password-stdin", "--role", "reader"],
        "bob-pw\n",
    );
    assert!(ok, "{err}");
    assert_eq!(status(http, "bob", "bob-pw").await, 404);
    let (ok, _, err) = user(
        dir.path(),
        &config,
        &["add", "bob", "--password-stdin"],
        "x\n",
    );
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = user(
        dir.path(),
        &config,
        &["add", "eve", "--password-stdin", "--role", "nope"],
        "x\n",
    );
    assert!(!ok && err.contains("no role `nope`"), "{err}");
    let (ok, _, err) = user(
        dir.path(),
        &config,
        &["passwd", "bob", "--password-stdin"],
        "new-pw\n",
    );
    assert!(ok, "{err}");
    assert_eq!(status(http, "bob", "bob-pw").await, 401);
    assert_eq!(status(http, "bob", "new-pw").await, 404);
    let (ok, out, _) = user(dir.path(), &config, &["list"], "");
    assert!(ok);
    assert_eq!(out, "admin\tsuperuser\nbob\treader\n");
    let (ok, _, err) = user(dir.path(), &config, &["remove", "bob"], "");
    assert!(ok, "{err}");
    assert_eq!(status(http, "bob", "new-pw").await, 401);
    server.signal("TERM");
    assert!(wait_bounded(&mut server.child).success());

    // Stopped: the store is opened directly.
    let (ok, _, err) = user(
        dir.path(),
        &config,
        &["add", "carol", "--password-stdin", "--role", "reader"],
        "c-pw\n",
    );
    assert!(ok, "{err}");
    let (ok, _, err) = user(dir.path(), &config, &["remove", "nobody"], "");
    assert!(!ok && err.contains("no user `nobody`"), "{err}");
    let mut server = serve(dir.path(), &config, Some("ignored-now"));
    let http = server.logged_address("HTTP (REST) listening");
    server.wait_for_line("ready");
    assert_eq!(status(http, "carol", "c-pw").await, 404);
    assert_eq!(
        status(http, "admin", "s3cret").await,
        404,
        "admin kept its password"
    );
    server.signal("TERM");
    assert!(wait_bounded(&mut server.child).success());
}
