//! Users and roles as the Mosquitto command-line clients see them: the
//! right password publishes a record, a wrong one is refused with the
//! 3.1.1 and 5.0 codes mosquitto reports, and a publish without permission
//! gets PUBACK 0x87 in 5.0.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use mqdb_resource::auth::{Role, TableOps};
use mqdb_resource::{Roles, TableOp};
use mqdb_testkit::TestServer;

/// Runs a mosquitto client (bounded); (exit success, stdout + stderr).
fn mosquitto(args: &[&str]) -> (bool, String) {
    let mut child = Command::new("timeout")
        .arg("10")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("`timeout` and the mosquitto clients (apt-get install mosquitto-clients)");
    let status = child.wait().unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(
        status.code(),
        Some(127),
        "mosquitto clients missing: {text}"
    );
    (status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_clients_log_in_and_are_refused_with_the_right_codes() {
    let reader = Role {
        tables: HashMap::from([("Sensor".to_owned(), TableOps::default().with(TableOp::Read))]),
        ..Role::default()
    };
    let server = TestServer::start_secure(
        "type Sensor @table @export",
        Roles::new(HashMap::from([("reader".to_owned(), reader)])),
    )
    .await;
    let users = server.broker.security().users();
    users
        .add("admin", b"adm", vec!["superuser".into()])
        .await
        .unwrap();
    users
        .add("bob", b"bob", vec!["reader".into()])
        .await
        .unwrap();
    let port = server.mqtt.port().to_string();
    let base = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "Sensor/k",
        "-r",
        "-q",
        "1",
        "-m",
        "{\"t\":1}",
    ];

    let ok = tokio::task::spawn_blocking({
        let base = base.map(str::to_owned);
        move || {
            let b: Vec<&str> = base.iter().map(String::as_str).collect();
            let mut args = vec!["mosquitto_pub"];
            args.extend(&b);
            let right = mosquitto(&[&args[..], &["-u", "admin", "-P", "adm"]].concat());
            let wrong_v3 = mosquitto(&[&args[..], &["-u", "admin", "-P", "no"]].concat());
            let wrong_v5 =
                mosquitto(&[&args[..], &["-u", "admin", "-P", "no", "-V", "mqttv5"]].concat());
            let none = mosquitto(&args);
            let denied =
                mosquitto(&[&args[..], &["-u", "bob", "-P", "bob", "-V", "mqttv5", "-d"]].concat());
            (right, wrong_v3, wrong_v5, none, denied)
        }
    })
    .await
    .unwrap();
    let (right, wrong_v3, wrong_v5, none, denied) = ok;
    assert!(right.0, "{}", right.1);
    assert!(
        !wrong_v3.0
            && wrong_v3
                .1
                .to_lowercase()
                .contains("bad user name or password"),
        "{}",
        wrong_v3.1
    );
    assert!(
        !wrong_v5.0
            && wrong_v5
                .1
                .to_lowercase()
                .contains("bad user name or password"),
        "{}",
        wrong_v5.1
    );
    assert!(
        !none.0 && none.1.to_lowercase().contains("not authori"),
        "{}",
        none.1
    );
    assert!(denied.1.contains("RC:135"), "PUBACK 0x87: {}", denied.1);

    // The authorised write is a record; bob's was not written over it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let table = server.db.schema().table("Sensor").unwrap();
    assert!(server.db.get(table, "k").unwrap().is_some());
}
