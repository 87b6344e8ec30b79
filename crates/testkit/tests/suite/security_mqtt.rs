//! Users, roles and their refusals over MQTT 3.1.1 and 5.0 (SPEC §5), and
//! server events (SPEC §6): exact CONNACK, SUBACK and PUBACK codes, closed
//! connections, the login throttle, `$SYS/events/...` and the Rust stream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::*;
use futures_util::StreamExt as _;
use mqdb_broker::{EventKind, Transport};
use mqdb_codec::*;
use mqdb_resource::auth::{Role, TableOps};
use mqdb_resource::{Roles, TableOp};
use mqdb_testkit::*;

const SCHEMA: &str = "type Sensor @table @export { id: ID @primaryKey, t: Float }\n\
                      type Secret @table @export { id: ID @primaryKey }";

fn roles() -> Roles {
    let reader = Role {
        tables: HashMap::from([("Sensor".to_owned(), TableOps::default().with(TableOp::Read))]),
        subscribe: vec!["chat/#".to_owned()],
        publish: vec!["chat/+".to_owned()],
        super_user: false,
    };
    let writer = Role {
        tables: HashMap::from([(
            "Sensor".to_owned(),
            TableOps::default()
                .with(TableOp::Insert)
                .with(TableOp::Update),
        )]),
        ..Role::default()
    };
    let watcher = Role {
        subscribe: vec!["$SYS/events/#".to_owned()],
        ..Role::default()
    };
    Roles::new(HashMap::from([
        ("reader".to_owned(), reader),
        ("writer".to_owned(), writer),
        ("watcher".to_owned(), watcher),
    ]))
}

async fn server() -> TestServer {
    let server = TestServer::start_secure(SCHEMA, roles()).await;
    let users = server.broker.security().users();
    users
        .add("admin", b"admin-pw", vec!["superuser".into()])
        .await
        .unwrap();
    users
        .add("reader", b"reader-pw", vec!["reader".into()])
        .await
        .unwrap();
    users
        .add("writer", b"writer-pw", vec!["writer".into()])
        .await
        .unwrap();
    users
        .add("watcher", b"watch-pw", vec!["watcher".into()])
        .await
        .unwrap();
    server
}

fn login(version: Version, id: &str, user: Option<&str>, password: Option<&str>) -> Connect {
    let mut c = RawClient::connect_packet(version, id);
    c.username = user.map(Into::into);
    c.password = password.map(|p| bytes::Bytes::copy_from_slice(p.as_bytes()));
    c
}

async fn as_user(server: &TestServer, version: Version, user: &str, password: &str) -> RawClient {
    connect_with(server, login(version, user, Some(user), Some(password)))
        .await
        .0
}

#[tokio::test]
async fn connect_refusals_have_the_codes_of_each_version() {
    let server = server().await;
    let cases = [
        (
            Version::V311,
            Some("reader"),
            Some("wrong"),
            ReasonCode::BadUserNameOrPassword,
        ),
        (
            Version::V5,
            Some("reader"),
            Some("wrong"),
            ReasonCode::BadUserNameOrPassword,
        ),
        (
            Version::V5,
            Some("nobody"),
            Some("x"),
            ReasonCode::BadUserNameOrPassword,
        ),
        (Version::V311, None, None, ReasonCode::NotAuthorized),
        (Version::V5, None, None, ReasonCode::NotAuthorized),
        (
            Version::V5,
            Some("reader"),
            None,
            ReasonCode::BadUserNameOrPassword,
        ),
    ];
    for (version, user, password, expected) in cases {
        let (mut c, ack) =
            RawClient::connect(server.mqtt, login(version, "c", user, password)).await;
        assert_eq!(ack.reason_code, expected, "{version:?} {user:?}");
        // The 3.1.1 encoding of these codes is 4 and 5 (checked by the
        // codec's tests); here: the socket is closed after the CONNACK.
        c.closed().await;
    }
    // Other clients are unaffected.
    let mut ok = as_user(&server, Version::V5, "reader", "reader-pw").await;
    ok.send(&Packet::PingReq).await;
    assert_eq!(ok.recv().await, Packet::PingResp);
}

#[tokio::test]
async fn v311_connack_codes_on_the_wire_are_4_and_5() {
    let server = server().await;
    for (user, password, code) in [(Some("reader"), Some("bad"), 4u8), (None, None, 5u8)] {
        let mut c = RawClient::open(server.mqtt, Version::V311).await;
        c.send(&Packet::Connect(Box::new(login(
            Version::V311,
            "c",
            user,
            password,
        ))))
        .await;
        // Read the raw CONNACK bytes: 0x20 0x02 flags code.
        let raw = c.read_raw(4).await;
        assert_eq!(raw, [0x20, 0x02, 0x00, code]);
    }
}

#[tokio::test]
async fn subscriptions_without_read_permission_are_refused() {
    let server = server().await;
    for version in [Version::V311, Version::V5] {
        let mut c = as_user(&server, version, "reader", "reader-pw").await;
        c.send(&Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            properties: Default::default(),
            filters: vec![
                (
                    TopicFilter::new("Sensor/#").unwrap(),
                    opts(QoS::AtLeastOnce),
                ),
                (
                    TopicFilter::new("Secret/#").unwrap(),
                    opts(QoS::AtLeastOnce),
                ),
                (
                    TopicFilter::new("chat/room").unwrap(),
                    opts(QoS::AtMostOnce),
                ),
                (TopicFilter::new("other/#").unwrap(), opts(QoS::AtMostOnce)),
                (TopicFilter::new("#").unwrap(), opts(QoS::AtMostOnce)),
            ],
        }))
        .await;
        let Packet::SubAck(ack) = c.recv().await else {
            panic!("expected SUBACK")
        };
        let refused = if version == Version::V5 {
            ReasonCode::NotAuthorized
        } else {
            ReasonCode::UnspecifiedError // 0x80 in 3.1.1
        };
        assert_eq!(
            ack.reason_codes,
            [
                ReasonCode::GrantedQos1,
                refused,
                ReasonCode::Success,
                refused,
                refused
            ]
        );
        if version == Version::V5 {
            let why = ack.properties.reason_string.expect("a reason string");
            assert!(why.contains("Secret"), "{why}");
        }
    }
}

#[tokio::test]
async fn v5_publishes_without_permission_get_0x87_and_nothing_is_written() {
    let server = server().await;
    let mut c = as_user(&server, Version::V5, "reader", "reader-pw").await;
    c.send(&Packet::Publish(publish(
        "Sensor/1",
        r#"{"t":1}"#,
        QoS::AtLeastOnce,
        true,
        1,
    )))
    .await;
    let Packet::PubAck(ack) = c.recv().await else {
        panic!("expected PUBACK")
    };
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    assert!(ack.properties.reason_string.is_some());
    c.send(&Packet::Publish(publish(
        "other/x",
        "m",
        QoS::ExactlyOnce,
        false,
        2,
    )))
    .await;
    let Packet::PubRec(rec) = c.recv().await else {
        panic!("expected PUBREC")
    };
    assert_eq!(rec.reason_code, ReasonCode::NotAuthorized);
    // Still connected, and an allowed publish works.
    c.send(&Packet::Publish(publish(
        "chat/a",
        "hi",
        QoS::AtLeastOnce,
        false,
        3,
    )))
    .await;
    let Packet::PubAck(ack) = c.recv().await else {
        panic!("expected PUBACK")
    };
    assert_eq!(ack.reason_code, ReasonCode::Success);
    let table = server.db.schema().table("Sensor").unwrap();
    assert!(server.db.get(table, "1").unwrap().is_none());
    // QoS 0 has no ack to carry the refusal: DISCONNECT 0x87.
    c.send(&Packet::Publish(publish(
        "Secret/1",
        "{}",
        QoS::AtMostOnce,
        true,
        0,
    )))
    .await;
    let closing = c.closed().await;
    assert!(
        closing.iter().any(
            |p| matches!(p, Packet::Disconnect(d) if d.reason_code == ReasonCode::NotAuthorized)
        ),
        "{closing:?}"
    );
}

#[tokio::test]
async fn a_v311_publish_without_permission_closes_the_connection() {
    let server = server().await;
    let mut c = as_user(&server, Version::V311, "reader", "reader-pw").await;
    c.send(&Packet::Publish(publish(
        "Sensor/1",
        r#"{"t":1}"#,
        QoS::AtLeastOnce,
        true,
        1,
    )))
    .await;
    let after = c.closed().await;
    assert!(
        after.is_empty(),
        "no PUBACK for a refused 3.1.1 publish: {after:?}"
    );
    let table = server.db.schema().table("Sensor").unwrap();
    assert!(server.db.get(table, "1").unwrap().is_none());
}

#[tokio::test]
async fn insert_and_update_are_told_apart_and_delete_needs_its_own_grant() {
    let server = server().await;
    let mut w = as_user(&server, Version::V5, "writer", "writer-pw").await;
    for (n, (payload, expected)) in [
        (r#"{"t":1}"#, ReasonCode::Success),
        (r#"{"t":2}"#, ReasonCode::Success),
        ("", ReasonCode::NotAuthorized),
    ]
    .into_iter()
    .enumerate()
    {
        let id = u16::try_from(n).unwrap() + 1;
        w.send(&Packet::Publish(publish(
            "Sensor/1",
            payload,
            QoS::AtLeastOnce,
            true,
            id,
        )))
        .await;
        let Packet::PubAck(ack) = w.recv().await else {
            panic!("expected PUBACK")
        };
        assert_eq!(ack.reason_code, expected, "publish {n}");
    }
    let table = server.db.schema().table("Sensor").unwrap();
    assert!(server.db.get(table, "1").unwrap().is_some());
}

#[tokio::test]
async fn a_will_the_client_may_not_publish_refuses_the_connect() {
    let server = server().await;
    let mut c = login(Version::V5, "w", Some("reader"), Some("reader-pw"));
    c.will = Some(Will {
        topic: TopicName::new("Secret/x").unwrap(),
        payload: bytes::Bytes::from_static(b"{}"),
        qos: QoS::AtMostOnce,
        retain: true,
        properties: Default::default(),
    });
    let (_c, ack) = RawClient::connect(server.mqtt, c).await;
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
}

async fn connect_from(local: &str, server: SocketAddr, connect: Connect) -> ConnAck {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    let stream = socket.connect(server).await.unwrap();
    let mut c = RawClient::from_stream(stream, connect.protocol);
    c.send(&Packet::Connect(Box::new(connect))).await;
    match c.recv_within(Duration::from_secs(30)).await {
        Some(Packet::ConnAck(ack)) => *ack,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn guessing_passwords_is_slowed_while_others_connect_promptly() {
    let server = server().await;
    let mqtt = server.mqtt;
    let guesses = 8;
    let attacker = tokio::spawn(async move {
        let start = Instant::now();
        for n in 0..guesses {
            let ack = connect_from(
                "127.0.0.1",
                mqtt,
                login(Version::V5, "x", Some("admin"), Some(&format!("guess{n}"))),
            )
            .await;
            assert_eq!(ack.reason_code, ReasonCode::BadUserNameOrPassword);
        }
        start.elapsed()
    });
    // While the guessing goes on, a client from another address logs in.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    let ack = connect_from(
        "127.0.0.2",
        mqtt,
        login(Version::V5, "good", Some("reader"), Some("reader-pw")),
    )
    .await;
    let good = start.elapsed();
    assert_eq!(ack.reason_code, ReasonCode::Success);
    let slowed = attacker.await.unwrap();
    // 3 free failures, then 0.2 + 0.4 + 0.8 + 1.6 + 3.2 s of spacing.
    assert!(
        slowed >= Duration::from_secs(5),
        "8 guesses took only {slowed:?}"
    );
    assert!(
        good < Duration::from_secs(2),
        "the good client waited {good:?}"
    );
}

#[tokio::test]
async fn events_reach_permitted_subscribers_and_the_rust_stream() {
    let server = server().await;
    let mut stream = server.broker.events();
    let mut watcher = as_user(&server, Version::V5, "watcher", "watch-pw").await;
    let ack = subscribe(&mut watcher, "$SYS/events/#", QoS::AtMostOnce).await;
    assert_eq!(ack.reason_codes, [ReasonCode::Success]);
    // A reader may not watch events.
    let mut reader = as_user(&server, Version::V5, "reader", "reader-pw").await;
    reader
        .send(&Packet::Subscribe(subscribe_packet(
            1,
            "$SYS/events/#",
            opts(QoS::AtMostOnce),
        )))
        .await;
    let Packet::SubAck(ack) = reader.recv().await else {
        panic!("expected SUBACK")
    };
    assert_eq!(ack.reason_codes, [ReasonCode::NotAuthorized]);

    let (_bad, ack) = RawClient::connect(
        server.mqtt,
        login(Version::V5, "intruder", Some("admin"), Some("no")),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::BadUserNameOrPassword);
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let p = expect_publish(&mut watcher).await;
        let event: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
        assert_eq!(
            p.topic.as_ref(),
            format!("$SYS/events/{}", event["event"].as_str().unwrap())
        );
        seen.push(event);
    }
    let names: Vec<&str> = seen.iter().map(|e| e["event"].as_str().unwrap()).collect();
    // The reader's connection, then the intruder's.
    assert_eq!(
        names,
        ["connection", "connected", "connection", "auth-failed"]
    );
    assert_eq!(seen[1]["username"], "reader");
    let seen = &seen[2..];
    assert_eq!(seen[1]["client_id"], "intruder");
    assert_eq!(seen[1]["username"], "admin");
    assert_eq!(seen[1]["transport"], "tcp");
    assert!(
        seen[1]["remote_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(
        seen[1]["reason"]
            .as_str()
            .unwrap()
            .contains("bad user name")
    );
    assert!(seen[1]["timestamp"].as_u64().unwrap() > 0);

    // The Rust stream saw the watcher connect, then everything after.
    let mut kinds = Vec::new();
    while kinds.len() < 6 {
        let e = tokio::time::timeout(WAIT, stream.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.transport, Transport::Tcp);
        kinds.push((e.kind, e.client_id.clone()));
    }
    assert_eq!(
        kinds,
        [
            (EventKind::Connection, None),
            (EventKind::Connected, Some("watcher".into())),
            (EventKind::Connection, None),
            (EventKind::Connected, Some("reader".into())),
            (EventKind::Connection, None),
            (EventKind::AuthFailed, Some("intruder".into())),
        ]
    );
    drop(reader);
    let e = loop {
        let e = tokio::time::timeout(WAIT, stream.next())
            .await
            .unwrap()
            .unwrap();
        if e.kind == EventKind::Disconnected {
            break e;
        }
    };
    assert_eq!(e.client_id.as_deref(), Some("reader"));
    assert_eq!(e.username.as_deref(), Some("reader"));
    assert_eq!(e.reason.as_deref(), Some("connection lost"));
}

#[tokio::test]
async fn a_user_added_or_removed_while_running_takes_effect_at_once() {
    let server = server().await;
    let (_c, ack) = RawClient::connect(
        server.mqtt,
        login(Version::V5, "n", Some("newbie"), Some("pw")),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::BadUserNameOrPassword);
    let users = server.broker.security().users();
    users
        .add("newbie", b"pw", vec!["reader".into()])
        .await
        .unwrap();
    as_user(&server, Version::V5, "newbie", "pw").await;
    users.set_password("newbie", b"pw2").await.unwrap();
    let (_c, ack) = RawClient::connect(
        server.mqtt,
        login(Version::V5, "n", Some("newbie"), Some("pw")),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::BadUserNameOrPassword);
    users.remove("newbie").await.unwrap();
    let (_c, ack) = RawClient::connect(
        server.mqtt,
        login(Version::V5, "n", Some("newbie"), Some("pw2")),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::BadUserNameOrPassword);
}

#[tokio::test]
async fn without_required_authentication_anonymous_clients_get_the_anonymous_role() {
    let dir = tempfile::tempdir().unwrap();
    let anonymous = Role {
        tables: HashMap::from([("Sensor".to_owned(), TableOps::default().with(TableOp::Read))]),
        ..Role::default()
    };
    let roles = Roles::new(HashMap::from([("anonymous".to_owned(), anonymous)]));
    let server = TestServer::open_with(
        dir.path(),
        SCHEMA,
        mqdb_broker::BrokerConfig::default(),
        Some(roles),
    )
    .await;
    server
        .broker
        .security()
        .users()
        .add("admin", b"pw", vec!["superuser".into()])
        .await
        .unwrap();
    let mut anon = connect(&server, Version::V5, "anon").await;
    let ack = subscribe(&mut anon, "Sensor/#", QoS::AtMostOnce).await;
    assert_eq!(ack.reason_codes, [ReasonCode::Success]);
    anon.send(&Packet::Publish(publish(
        "Sensor/1",
        "{}",
        QoS::AtLeastOnce,
        true,
        1,
    )))
    .await;
    let Packet::PubAck(ack) = anon.recv().await else {
        panic!("expected PUBACK")
    };
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    // Credentials that are sent are still checked.
    let (_c, ack) = RawClient::connect(
        server.mqtt,
        login(Version::V311, "x", Some("admin"), Some("bad")),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::BadUserNameOrPassword);
    as_user(&server, Version::V311, "admin", "pw").await;
}
