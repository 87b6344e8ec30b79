//! MQTT 5 enhanced authentication with SCRAM-SHA-256 over real sockets
//! (MQTT 5.0 sections 4.12 and 3.15, RFC 5802 / RFC 7677): the exchange at
//! CONNECT, its refusals and their codes, re-authentication, protocol
//! errors and the `auth-failed` event.
//!
//! The client side of SCRAM is written here from the RFC (its own PBKDF2,
//! base64 and messages), sharing only HMAC-SHA-256 and the StoredKey
//! derivation with the server, so both sides are checked against each
//! other: the server must accept its proof and must prove, in the
//! server-final-message, that it knows the password's ServerKey.
//!
//! Interop with a third-party client is not here: rumqttc 0.25.1 (the
//! workspace's) has no `AuthManager` and cannot decode an AUTH packet
//! (packet type 15 is `InvalidPacketType`; CONNECT must be answered by
//! CONNACK), and paho-mqtt 2.2 (Python) treats AUTH as an unrecognised
//! command (a protocol error).

use std::collections::HashMap;

use crate::common::*;
use futures_util::StreamExt as _;
use mqdb_broker::EventKind;
use mqdb_codec::*;
use mqdb_resource::Roles;
use mqdb_resource::TableOp;
use mqdb_resource::auth::users::{ScramCredentials, hmac};
use mqdb_resource::auth::{Role, TableOps};
use mqdb_testkit::*;

const SCHEMA: &str = "type Sensor @table @export { id: ID @primaryKey, t: Float }\n\
                      type Secret @table @export { id: ID @primaryKey }";
const SCRAM: &str = "SCRAM-SHA-256";

fn roles() -> Roles {
    let reader = Role {
        tables: HashMap::from([("Sensor".to_owned(), TableOps::default().with(TableOp::Read))]),
        subscribe: vec!["chat/#".to_owned()],
        publish: vec!["chat/+".to_owned()],
        super_user: false,
    };
    Roles::new(HashMap::from([("reader".to_owned(), reader)]))
}

async fn server() -> TestServer {
    let server = TestServer::start_secure(SCHEMA, roles()).await;
    let users = server.broker.security().users();
    for (name, password, role) in [
        ("admin", "admin-pw", "superuser"),
        ("reader", "reader-pw", "reader"),
        ("mover", "mover-pw", "reader"),
        ("a,b=c", "odd-pw", "reader"),
    ] {
        users
            .add(name, password.as_bytes(), vec![role.into()])
            .await
            .unwrap();
    }
    server
}

// ---- a SCRAM-SHA-256 client, from RFC 5802 ----

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let mut n = 0u32;
        let mut len = 0;
        for (i, c) in chunk.iter().enumerate() {
            if *c != b'=' {
                let v = B64.iter().position(|b| b == c).expect("base64") as u32;
                n |= v << (18 - 6 * i);
                len += 1;
            }
        }
        out.extend_from_slice(&n.to_be_bytes()[1..len]);
    }
    out
}

/// PBKDF2-HMAC-SHA-256 with one output block: RFC 5802's Hi().
fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut u = hmac(password, &[salt, &1u32.to_be_bytes()].concat());
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &u);
        for (o, x) in out.iter_mut().zip(u) {
            *o ^= x;
        }
    }
    out
}

struct ScramClient {
    password: Vec<u8>,
    gs2: String,
    bare: String,
    client_nonce: String,
    /// The ServerSignature expected in the server-final-message.
    expected: Option<String>,
}

impl ScramClient {
    fn new(user: &str, password: &str) -> ScramClient {
        let client_nonce = format!(
            "c{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let name = user.replace('=', "=3D").replace(',', "=2C");
        ScramClient {
            password: password.as_bytes().to_vec(),
            gs2: "n,,".into(),
            bare: format!("n={name},r={client_nonce}"),
            client_nonce,
            expected: None,
        }
    }

    fn client_first(&self) -> Vec<u8> {
        format!("{}{}", self.gs2, self.bare).into_bytes()
    }

    fn client_final(&mut self, server_first: &[u8]) -> Vec<u8> {
        let server_first = std::str::from_utf8(server_first).expect("UTF-8");
        let attrs: Vec<&str> = server_first.split(',').collect();
        let nonce = attrs[0].strip_prefix("r=").expect("r=");
        assert!(nonce.starts_with(&self.client_nonce), "{server_first}");
        assert!(nonce.len() > self.client_nonce.len(), "no server nonce");
        let salt = b64_decode(attrs[1].strip_prefix("s=").expect("s="));
        let iterations: u32 = attrs[2].strip_prefix("i=").expect("i=").parse().unwrap();
        let salted = hi(&self.password, &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let server_key = hmac(&salted, b"Server Key");
        // SHA-256(ClientKey), by the server's derivation.
        let stored_key =
            ScramCredentials::derive_with(&self.password, &salt, iterations).stored_key;
        let without_proof = format!("c={},r={nonce}", b64_encode(self.gs2.as_bytes()));
        let auth_message = format!("{},{server_first},{without_proof}", self.bare);
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        self.expected = Some(format!(
            "v={}",
            b64_encode(&hmac(&server_key, auth_message.as_bytes()))
        ));
        format!("{without_proof},p={}", b64_encode(&proof)).into_bytes()
    }

    fn check_server_final(&self, data: &[u8]) {
        assert_eq!(
            std::str::from_utf8(data).unwrap(),
            self.expected.as_deref().expect("client_final first"),
            "the server-final-message must prove the server knows the ServerKey"
        );
    }
}

// ---- MQTT helpers ----

fn auth_packet(reason_code: ReasonCode, method: &str, data: Vec<u8>) -> Packet {
    Packet::Auth(Auth {
        reason_code,
        properties: AuthProperties {
            authentication_method: Some(method.into()),
            authentication_data: Some(data.into()),
            ..Default::default()
        },
    })
}

fn scram_connect(client_id: &str, method: &str, data: Option<Vec<u8>>) -> Connect {
    let mut c = RawClient::connect_packet(Version::V5, client_id);
    c.properties.authentication_method = Some(method.into());
    c.properties.authentication_data = data.map(Into::into);
    c
}

/// Sends CONNECT with the client-first-message; returns the
/// server-first-message of the AUTH 0x18 answer.
async fn start(server: &TestServer, client_id: &str, scram: &ScramClient) -> (RawClient, Vec<u8>) {
    let mut c = RawClient::open(server.mqtt, Version::V5).await;
    c.send(&Packet::Connect(Box::new(scram_connect(
        client_id,
        SCRAM,
        Some(scram.client_first()),
    ))))
    .await;
    let data = expect_continue(&mut c).await;
    (c, data)
}

async fn expect_continue(c: &mut RawClient) -> Vec<u8> {
    match c.recv().await {
        Packet::Auth(a) => {
            assert_eq!(a.reason_code, ReasonCode::ContinueAuthentication);
            assert_eq!(a.properties.authentication_method.as_deref(), Some(SCRAM));
            a.properties
                .authentication_data
                .expect("server-first-message")
                .to_vec()
        }
        other => panic!("expected AUTH, got {other:?}"),
    }
}

async fn expect_connack(c: &mut RawClient) -> ConnAck {
    match c.recv().await {
        Packet::ConnAck(ack) => *ack,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// A whole successful SCRAM login.
async fn scram_login(
    server: &TestServer,
    client_id: &str,
    user: &str,
    password: &str,
) -> RawClient {
    let mut scram = ScramClient::new(user, password);
    let (mut c, first) = start(server, client_id, &scram).await;
    let fin = scram.client_final(&first);
    c.send(&auth_packet(ReasonCode::ContinueAuthentication, SCRAM, fin))
        .await;
    let ack = expect_connack(&mut c).await;
    assert_eq!(ack.reason_code, ReasonCode::Success, "{ack:?}");
    assert_eq!(ack.properties.authentication_method.as_deref(), Some(SCRAM));
    scram.check_server_final(&ack.properties.authentication_data.expect("server-final"));
    c
}

/// Waits for the next `auth-failed` event; returns its username and reason.
async fn next_auth_failed(
    events: &mut (impl futures_util::Stream<Item = std::sync::Arc<mqdb_broker::ServerEvent>> + Unpin),
) -> (Option<String>, String) {
    loop {
        let e = tokio::time::timeout(WAIT, events.next())
            .await
            .expect("an event")
            .expect("the stream");
        if e.kind == EventKind::AuthFailed {
            return (e.username.clone(), e.reason.clone().unwrap_or_default());
        }
    }
}

fn is_disconnect(packets: &[Packet], code: ReasonCode) -> bool {
    packets
        .iter()
        .any(|p| matches!(p, Packet::Disconnect(d) if d.reason_code == code))
}

// ---- tests ----

#[tokio::test]
async fn scram_login_succeeds_and_the_principal_is_the_users() {
    let server = server().await;
    let mut c = scram_login(&server, "r1", "reader", "reader-pw").await;
    // The reader's roles apply: chat/# yes, Secret/# no.
    let ack = subscribe(&mut c, "chat/#", QoS::AtLeastOnce).await;
    assert_eq!(ack.reason_codes, [ReasonCode::GrantedQos1]);
    c.send(&Packet::Subscribe(subscribe_packet(
        2,
        "Secret/#",
        opts(QoS::AtMostOnce),
    )))
    .await;
    let Packet::SubAck(ack) = c.recv().await else {
        panic!("expected SUBACK")
    };
    assert_eq!(ack.reason_codes, [ReasonCode::NotAuthorized]);
    // A round trip between two SCRAM clients.
    let mut admin = scram_login(&server, "a1", "admin", "admin-pw").await;
    let ack = publish_qos1(
        &mut admin,
        publish("chat/room", "hello", QoS::AtLeastOnce, false, 3),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    let p = recv_and_ack(&mut c).await;
    assert_eq!(p.topic.as_ref(), "chat/room");
    assert_eq!(&p.payload[..], b"hello");
    // Escaped names (`=2C`, `=3D`) work end to end.
    let mut odd = scram_login(&server, "odd", "a,b=c", "odd-pw").await;
    ping(&mut odd).await;
}

#[tokio::test]
async fn a_wrong_password_is_0x86_and_an_auth_failed_event() {
    let server = server().await;
    let mut events = server.broker.events();
    let mut scram = ScramClient::new("reader", "not-the-password");
    let (mut c, first) = start(&server, "w1", &scram).await;
    let fin = scram.client_final(&first);
    c.send(&auth_packet(ReasonCode::ContinueAuthentication, SCRAM, fin))
        .await;
    let ack = expect_connack(&mut c).await;
    assert_eq!(ack.reason_code, ReasonCode::BadUserNameOrPassword);
    assert!(ack.properties.reason_string.is_some());
    assert!(ack.properties.authentication_data.is_none());
    c.closed().await;
    let (user, why) = next_auth_failed(&mut events).await;
    assert_eq!(user.as_deref(), Some("reader"));
    assert!(why.contains("bad user name or password"), "{why}");
}

#[tokio::test]
async fn an_unknown_user_looks_like_a_real_one_until_the_proof() {
    let server = server().await;
    let mut scram = ScramClient::new("nobody", "whatever");
    let (mut c, first) = start(&server, "u1", &scram).await;
    let text = String::from_utf8(first.clone()).unwrap();
    assert!(text.ends_with(",i=4096"), "{text}");
    let salt = text.split(',').nth(1).unwrap().strip_prefix("s=").unwrap();
    assert_eq!(b64_decode(salt).len(), 16);
    let fin = scram.client_final(&first);
    c.send(&auth_packet(ReasonCode::ContinueAuthentication, SCRAM, fin))
        .await;
    let ack = expect_connack(&mut c).await;
    assert_eq!(ack.reason_code, ReasonCode::BadUserNameOrPassword);
    c.closed().await;
}

#[tokio::test]
async fn an_unknown_method_is_0x8c_without_any_auth_packet() {
    let server = server().await;
    let (mut c, ack) = RawClient::connect(
        server.mqtt,
        scram_connect("m1", "SCRAM-SHA-1", Some(b"n,,n=reader,r=x".to_vec())),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::BadAuthenticationMethod);
    let why = ack.properties.reason_string.expect("a reason string");
    assert!(why.contains(SCRAM), "{why}");
    assert!(ack.properties.authentication_method.is_none());
    c.closed().await;
}

#[tokio::test]
async fn a_method_is_not_bypassed_by_a_user_name_and_password() {
    let server = server().await;
    // Right password, SCRAM method, no client-first-message: refused.
    let mut connect = scram_connect("p1", SCRAM, None);
    connect.username = Some("reader".into());
    connect.password = Some(bytes::Bytes::from_static(b"reader-pw"));
    let (mut c, ack) = RawClient::connect(server.mqtt, connect).await;
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    c.closed().await;
    // Right password in CONNECT, wrong SCRAM proof: refused.
    let mut scram = ScramClient::new("reader", "wrong");
    let mut connect = scram_connect("p2", SCRAM, Some(scram.client_first()));
    connect.username = Some("reader".into());
    connect.password = Some(bytes::Bytes::from_static(b"reader-pw"));
    let mut c = RawClient::open(server.mqtt, Version::V5).await;
    c.send(&Packet::Connect(Box::new(connect))).await;
    let first = expect_continue(&mut c).await;
    let fin = scram.client_final(&first);
    c.send(&auth_packet(ReasonCode::ContinueAuthentication, SCRAM, fin))
        .await;
    assert_eq!(
        expect_connack(&mut c).await.reason_code,
        ReasonCode::BadUserNameOrPassword
    );
    // A CONNECT user name naming someone else than the SCRAM user: 0x87.
    let mut scram = ScramClient::new("reader", "reader-pw");
    let mut connect = scram_connect("p3", SCRAM, Some(scram.client_first()));
    connect.username = Some("admin".into());
    let mut c = RawClient::open(server.mqtt, Version::V5).await;
    c.send(&Packet::Connect(Box::new(connect))).await;
    let first = expect_continue(&mut c).await;
    let fin = scram.client_final(&first);
    c.send(&auth_packet(ReasonCode::ContinueAuthentication, SCRAM, fin))
        .await;
    assert_eq!(
        expect_connack(&mut c).await.reason_code,
        ReasonCode::NotAuthorized
    );
}

#[tokio::test]
async fn channel_binding_is_refused_with_a_clear_reason() {
    let server = server().await;
    let (mut c, ack) = RawClient::connect(
        server.mqtt,
        scram_connect(
            "cb",
            SCRAM,
            Some(b"p=tls-server-end-point,,n=reader,r=abc".to_vec()),
        ),
    )
    .await;
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    let why = ack.properties.reason_string.expect("a reason string");
    assert!(why.contains("channel binding"), "{why}");
    c.closed().await;
}

#[tokio::test]
async fn a_publish_during_the_exchange_is_a_protocol_error() {
    let server = server().await;
    let scram = ScramClient::new("reader", "reader-pw");
    let (mut c, _first) = start(&server, "x1", &scram).await;
    c.send(&Packet::Publish(publish(
        "chat/a",
        "early",
        QoS::AtMostOnce,
        false,
        0,
    )))
    .await;
    let ack = expect_connack(&mut c).await;
    assert_eq!(ack.reason_code, ReasonCode::ProtocolError);
    c.closed().await;
    // AUTH with another method than CONNECT's: also a protocol error.
    let mut scram = ScramClient::new("reader", "reader-pw");
    let (mut c, first) = start(&server, "x2", &scram).await;
    let fin = scram.client_final(&first);
    c.send(&auth_packet(
        ReasonCode::ContinueAuthentication,
        "SCRAM-SHA-512",
        fin,
    ))
    .await;
    assert_eq!(
        expect_connack(&mut c).await.reason_code,
        ReasonCode::ProtocolError
    );
    // DISCONNECT during the exchange: closed, no CONNACK.
    let scram = ScramClient::new("reader", "reader-pw");
    let (mut c, _first) = start(&server, "x3", &scram).await;
    c.send(&Packet::Disconnect(Disconnect::default())).await;
    assert_eq!(c.closed().await, []);
}

#[tokio::test]
async fn re_authentication_replaces_the_principal() {
    let server = server().await;
    let mut c = scram_login(&server, "re1", "mover", "mover-pw").await;
    c.send(&Packet::Subscribe(subscribe_packet(
        1,
        "Secret/#",
        opts(QoS::AtMostOnce),
    )))
    .await;
    let Packet::SubAck(ack) = c.recv().await else {
        panic!("expected SUBACK")
    };
    assert_eq!(ack.reason_codes, [ReasonCode::NotAuthorized]);
    server
        .broker
        .security()
        .users()
        .set_roles("mover", vec!["superuser".into()])
        .await
        .unwrap();
    let mut scram = ScramClient::new("mover", "mover-pw");
    c.send(&auth_packet(
        ReasonCode::ReAuthenticate,
        SCRAM,
        scram.client_first(),
    ))
    .await;
    let first = expect_continue(&mut c).await;
    // Other packets flow during the exchange.
    ping(&mut c).await;
    let fin = scram.client_final(&first);
    c.send(&auth_packet(ReasonCode::ContinueAuthentication, SCRAM, fin))
        .await;
    match c.recv().await {
        Packet::Auth(a) => {
            assert_eq!(a.reason_code, ReasonCode::Success);
            assert_eq!(a.properties.authentication_method.as_deref(), Some(SCRAM));
            scram.check_server_final(&a.properties.authentication_data.unwrap());
        }
        other => panic!("expected AUTH Success, got {other:?}"),
    }
    // The new roles apply.
    let ack = subscribe(&mut c, "Secret/#", QoS::AtMostOnce).await;
    assert_eq!(ack.reason_codes, [ReasonCode::Success]);
}

#[tokio::test]
async fn a_failed_re_authentication_disconnects_with_0x87() {
    let server = server().await;
    let mut events = server.broker.events();
    let mut c = scram_login(&server, "rf1", "reader", "reader-pw").await;
    let mut scram = ScramClient::new("reader", "wrong");
    c.send(&auth_packet(
        ReasonCode::ReAuthenticate,
        SCRAM,
        scram.client_first(),
    ))
    .await;
    let first = expect_continue(&mut c).await;
    let fin = scram.client_final(&first);
    c.send(&auth_packet(ReasonCode::ContinueAuthentication, SCRAM, fin))
        .await;
    let closing = c.closed().await;
    assert!(
        is_disconnect(&closing, ReasonCode::NotAuthorized),
        "{closing:?}"
    );
    let (user, why) = next_auth_failed(&mut events).await;
    assert_eq!(user.as_deref(), Some("reader"));
    assert!(why.starts_with("re-authentication"), "{why}");

    // Re-authenticating as another user is refused too.
    let mut c = scram_login(&server, "rf2", "reader", "reader-pw").await;
    let scram = ScramClient::new("admin", "admin-pw");
    c.send(&auth_packet(
        ReasonCode::ReAuthenticate,
        SCRAM,
        scram.client_first(),
    ))
    .await;
    let closing = c.closed().await;
    assert!(
        is_disconnect(&closing, ReasonCode::NotAuthorized),
        "{closing:?}"
    );
}

#[tokio::test]
async fn auth_out_of_place_is_a_protocol_error() {
    let server = server().await;
    // A client that logged in with a password may not send AUTH.
    let mut connect = RawClient::connect_packet(Version::V5, "pw");
    connect.username = Some("reader".into());
    connect.password = Some(bytes::Bytes::from_static(b"reader-pw"));
    let (mut c, ack) = connect_with(&server, connect).await;
    assert!(ack.properties.authentication_method.is_none());
    let scram = ScramClient::new("reader", "reader-pw");
    c.send(&auth_packet(
        ReasonCode::ReAuthenticate,
        SCRAM,
        scram.client_first(),
    ))
    .await;
    let closing = c.closed().await;
    assert!(
        is_disconnect(&closing, ReasonCode::ProtocolError),
        "{closing:?}"
    );

    // Re-authentication with another method than CONNECT's.
    let mut c = scram_login(&server, "m2", "reader", "reader-pw").await;
    c.send(&auth_packet(
        ReasonCode::ReAuthenticate,
        "SCRAM-SHA-1",
        b"n,,n=reader,r=x".to_vec(),
    ))
    .await;
    let closing = c.closed().await;
    assert!(
        is_disconnect(&closing, ReasonCode::ProtocolError),
        "{closing:?}"
    );

    // Continue Authentication with no exchange in progress.
    let mut c = scram_login(&server, "m3", "reader", "reader-pw").await;
    c.send(&auth_packet(
        ReasonCode::ContinueAuthentication,
        SCRAM,
        b"c=biws,r=x,p=AAAA".to_vec(),
    ))
    .await;
    let closing = c.closed().await;
    assert!(
        is_disconnect(&closing, ReasonCode::ProtocolError),
        "{closing:?}"
    );
}
