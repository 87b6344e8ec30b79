//! Interop with MQTT clients nobody here wrote: Debian's `mosquitto_pub` and
//! `mosquitto_sub` (package `mosquitto-clients`).
//!
//! Each test plays a minimal scripted MQTT server on 127.0.0.1 with blocking
//! `std::net` sockets and this codec only: it spawns a mosquitto client
//! pointed at its port, decodes every packet the client sends and asserts on
//! each field (v5 properties included), answers with packets our encoder
//! produced, and checks what the client observably did (exit status and what
//! it printed). Covered: 3.1.1 and 5.0 CONNECT (credentials, will, keep
//! alive, properties), QoS 1 and QoS 2 publishing with every PUBLISH
//! property, SUBSCRIBE with v5 options and properties, our CONNACK, SUBACK,
//! PUBLISH and acknowledgements read back by mosquitto, a 200 KiB payload
//! (3-byte remaining length) and CONNACK refusals.
//!
//! Needs `mosquitto_pub` and `mosquitto_sub` on the PATH
//! (`apt-get install mosquitto-clients`); without them these tests fail.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::num::{NonZeroU16, NonZeroU32};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mqdb_codec::*;

/// Read (and write) timeout of the server socket.
const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// Upper bound of any single wait: a connection, a packet, a client's exit.
const DEADLINE: Duration = Duration::from_secs(10);

/// A mosquitto client process, killed and reaped when dropped.
struct Client {
    name: &'static str,
    child: Child,
}

/// What a client did by the time it exited.
struct Exit {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Client {
    /// Spawns `program`; fails the test if mosquitto-clients is not installed.
    fn spawn(program: &'static str, args: &[String]) -> Client {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                if e.kind() == ErrorKind::NotFound {
                    panic!(
                        "`{program}` not found: install mosquitto-clients \
                         (apt-get install mosquitto-clients) to run this interop test"
                    );
                }
                panic!("cannot spawn {program}: {e}")
            });
        Client {
            name: program,
            child,
        }
    }

    /// Waits (bounded) for the client to exit and collects its output.
    fn finish(&mut self) -> Exit {
        let end = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < end,
                "{} did not exit within {DEADLINE:?}",
                self.name
            );
            sleep(Duration::from_millis(20));
        };
        let (mut stdout, mut stderr) = (String::new(), String::new());
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_string(&mut stdout).expect("read stdout");
        }
        if let Some(mut err) = self.child.stderr.take() {
            err.read_to_string(&mut stderr).expect("read stderr");
        }
        Exit {
            status,
            stdout,
            stderr,
        }
    }

    /// Fails the test, showing the client's output, if it has already exited.
    fn check_running(&mut self, waiting_for: &str) {
        if self.child.try_wait().expect("try_wait").is_some() {
            let exit = self.finish();
            panic!(
                "{} exited ({}) while the server waited for {waiting_for}\nstdout: {}\nstderr: {}",
                self.name, exit.status, exit.stdout, exit.stderr
            );
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A temporary file, removed when dropped.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The server side of one client: its process, the accepted socket, bytes
/// read but not yet decoded, and the protocol version of the connection.
struct Peer {
    client: Client,
    stream: TcpStream,
    buf: BytesMut,
    version: Version,
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

impl Peer {
    /// Listens on an ephemeral port, spawns `program` with `args` (each
    /// `PORT` replaced by the port; split on whitespace) and accepts its
    /// connection within [`DEADLINE`].
    fn start(program: &'static str, args: &str) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener
            .local_addr()
            .expect("local_addr")
            .port()
            .to_string();
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let args: Vec<String> = args
            .split_whitespace()
            .map(|a| if a == "PORT" { port.clone() } else { a.into() })
            .collect();
        let mut client = Client::spawn(program, &args);
        let end = Instant::now() + DEADLINE;
        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if is_timeout(&e) => {
                    client.check_running("the connection");
                    assert!(
                        Instant::now() < end,
                        "{program} did not connect in {DEADLINE:?}"
                    );
                    sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        stream.set_nonblocking(false).expect("blocking stream");
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("write timeout");
        Peer {
            client,
            stream,
            buf: BytesMut::new(),
            version: Version::V5,
        }
    }

    /// Reads until one whole packet decodes, within [`DEADLINE`].
    fn read_packet(&mut self) -> Packet {
        let end = Instant::now() + DEADLINE;
        let mut chunk = vec![0u8; 64 * 1024];
        let name = self.client.name;
        loop {
            match decode(&mut self.buf, self.version, &Limits::default()) {
                Ok(Some(packet)) => return packet,
                Ok(None) => {}
                Err(e) => panic!("decoding what {name} sent failed: {e:?}"),
            }
            assert!(
                Instant::now() < end,
                "no whole packet from {name} within {DEADLINE:?}"
            );
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!(
                    "{name} closed the connection ({} bytes pending)",
                    self.buf.len()
                ),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if is_timeout(&e) => self.client.check_running("a packet"),
                Err(e) => panic!("read from {name}: {e}"),
            }
        }
    }

    /// Reads the client's CONNECT and adopts its protocol version.
    fn read_connect(&mut self) -> Connect {
        match self.read_packet() {
            Packet::Connect(connect) => {
                self.version = connect.protocol;
                *connect
            }
            other => panic!("expected CONNECT, got {other:?}"),
        }
    }

    /// Encodes `packet` with our codec and sends it.
    fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        encode(&packet, self.version, &mut out).expect("encode");
        self.stream.write_all(&out).expect("write to client");
    }

    /// Decodes everything the client still sends until it closes the
    /// connection (bounded by [`DEADLINE`]).
    fn drain(&mut self) -> Vec<Packet> {
        let end = Instant::now() + DEADLINE;
        let mut chunk = [0u8; 4096];
        let mut packets = Vec::new();
        loop {
            while let Some(packet) =
                decode(&mut self.buf, self.version, &Limits::default()).expect("decode")
            {
                packets.push(packet);
            }
            assert!(
                Instant::now() < end,
                "{} kept the connection open",
                self.client.name
            );
            match self.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if is_timeout(&e) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!("read: {e}"),
            }
        }
        assert!(
            self.buf.is_empty(),
            "{} undecoded bytes at close",
            self.buf.len()
        );
        packets
    }

    /// Expects a normal DISCONNECT, the connection closed after it, and the
    /// client to exit with status 0; returns its output.
    fn expect_clean_end(mut self) -> Exit {
        match self.read_packet() {
            Packet::Disconnect(d) => {
                assert_eq!(d.reason_code, ReasonCode::Success);
                assert!(d.properties.is_empty(), "{d:?}");
            }
            other => panic!("expected DISCONNECT, got {other:?}"),
        }
        let after = self.drain();
        assert!(after.is_empty(), "packets after DISCONNECT: {after:?}");
        let exit = self.client.finish();
        assert!(
            exit.status.success(),
            "{} failed ({})\nstdout: {}\nstderr: {}",
            self.client.name,
            exit.status,
            exit.stdout,
            exit.stderr
        );
        exit
    }
}

fn pid(n: u16) -> PacketId {
    NonZeroU16::new(n).expect("non-zero packet id")
}

fn user(name: &str, value: &str) -> UserProperty {
    UserProperty::new(name, value)
}

fn connack(reason_code: ReasonCode, properties: ConnAckProperties) -> Packet {
    Packet::ConnAck(Box::new(ConnAck {
        session_present: false,
        reason_code,
        properties,
    }))
}

fn expect_publish(packet: Packet) -> Publish {
    match packet {
        Packet::Publish(publish) => publish,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

#[test]
fn mosquitto_pub_v311_qos1_publish_decodes() {
    let mut peer = Peer::start(
        "mosquitto_pub",
        "-V mqttv311 -h 127.0.0.1 -p PORT -i pubclient -u alice -P secret -q 1 -r \
         -t sensors/1 -m hello --will-topic w/t --will-payload bye --will-qos 1 -k 30",
    );

    let connect = peer.read_connect();
    assert_eq!(connect.protocol, Version::V311);
    assert!(connect.clean_start);
    assert_eq!(connect.keep_alive, 30);
    assert_eq!(connect.client_id, "pubclient");
    assert_eq!(connect.username.as_deref(), Some("alice"));
    assert_eq!(connect.password.as_deref(), Some(&b"secret"[..]));
    assert!(connect.properties.is_empty());
    let will = connect.will.expect("will message");
    assert_eq!(will.topic, "w/t");
    assert_eq!(will.payload, Bytes::from_static(b"bye"));
    assert_eq!(will.qos, QoS::AtLeastOnce);
    assert!(!will.retain);
    assert!(will.properties.is_empty());

    peer.send(connack(ReasonCode::Success, ConnAckProperties::default()));

    let publish = expect_publish(peer.read_packet());
    assert_eq!(publish.qos, QoS::AtLeastOnce);
    assert!(publish.retain);
    assert!(!publish.dup);
    assert_eq!(publish.topic, "sensors/1");
    assert_eq!(publish.payload, Bytes::from_static(b"hello"));
    assert!(publish.properties.is_empty());
    let id = publish.packet_id.expect("QoS 1 PUBLISH has a packet id");
    peer.send(Packet::PubAck(PubAck::new(id)));

    let exit = peer.expect_clean_end();
    assert_eq!((exit.stdout.as_str(), exit.stderr.as_str()), ("", ""));
}

#[test]
fn mosquitto_pub_v5_properties_decode() {
    let mut peer = Peer::start(
        "mosquitto_pub",
        r#"-V mqttv5 -h 127.0.0.1 -p PORT -i pub5 -q 2 -t data/json -m {"t":21.5}
           -D connect session-expiry-interval 120
           -D connect receive-maximum 10
           -D connect user-property ck cv
           -D publish content-type application/json
           -D publish user-property a 1
           -D publish user-property b 2
           -D publish message-expiry-interval 60
           -D publish response-topic resp/t
           -D publish correlation-data abc
           -D publish payload-format-indicator 1"#,
    );

    let connect = peer.read_connect();
    assert_eq!(connect.protocol, Version::V5);
    assert!(connect.clean_start);
    assert_eq!(connect.keep_alive, 60, "mosquitto's default keep alive");
    assert_eq!(connect.client_id, "pub5");
    assert_eq!((connect.username, connect.password), (None, None));
    assert!(connect.will.is_none());
    let expected = ConnectProperties {
        session_expiry_interval: Some(120),
        receive_maximum: NonZeroU16::new(10),
        user_properties: vec![user("ck", "cv")],
        ..ConnectProperties::default()
    };
    assert_eq!(connect.properties, expected);

    // A CONNACK full of properties: mosquitto must parse every one of them.
    peer.send(connack(
        ReasonCode::Success,
        ConnAckProperties {
            session_expiry_interval: Some(120),
            receive_maximum: NonZeroU16::new(20),
            retain_available: Some(true),
            maximum_packet_size: NonZeroU32::new(1 << 20),
            topic_alias_maximum: Some(0),
            wildcard_subscription_available: Some(true),
            shared_subscription_available: Some(false),
            reason_string: Some("welcome".into()),
            user_properties: vec![user("server", "mqdb-codec-test")],
            ..ConnAckProperties::default()
        },
    ));

    let publish = expect_publish(peer.read_packet());
    assert_eq!(publish.qos, QoS::ExactlyOnce);
    assert!(!publish.retain);
    assert!(!publish.dup);
    assert_eq!(publish.topic, "data/json");
    assert_eq!(publish.payload, Bytes::from_static(br#"{"t":21.5}"#));
    let expected = PublishProperties {
        payload_format_indicator: Some(PayloadFormat::Utf8),
        message_expiry_interval: Some(60),
        topic_alias: None,
        response_topic: Some("resp/t".into()),
        correlation_data: Some(Bytes::from_static(b"abc")),
        content_type: Some("application/json".into()),
        subscription_identifiers: vec![],
        user_properties: vec![user("a", "1"), user("b", "2")],
    };
    assert_eq!(publish.properties, expected);
    let id = publish.packet_id.expect("QoS 2 PUBLISH has a packet id");

    peer.send(Packet::PubRec(PubRec::new(id)));
    match peer.read_packet() {
        Packet::PubRel(pubrel) => assert_eq!(pubrel, PubRel::new(id)),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    peer.send(Packet::PubComp(PubComp::new(id)));

    let exit = peer.expect_clean_end();
    assert_eq!(exit.stderr, "");
}

/// Reads SUBSCRIBE, checks its single filter, answers with a SUBACK.
fn subscribe_handshake(
    peer: &mut Peer,
    filter: &str,
    options: SubscriptionOptions,
    properties: SubscribeProperties,
    granted: ReasonCode,
) {
    match peer.read_packet() {
        Packet::Subscribe(subscribe) => {
            assert_eq!(subscribe.filters.len(), 1, "{subscribe:?}");
            assert_eq!(subscribe.filters[0].0, filter);
            assert_eq!(subscribe.filters[0].1, options);
            assert_eq!(subscribe.properties, properties);
            peer.send(Packet::SubAck(SubAck {
                packet_id: subscribe.packet_id,
                properties: AckProperties::default(),
                reason_codes: vec![granted],
            }));
        }
        other => panic!("expected SUBSCRIBE, got {other:?}"),
    }
}

#[test]
fn mosquitto_sub_v5_receives_our_publish() {
    // mosquitto_sub 2.0 has --retain-as-published but no --nl / retain handling flags.
    let mut peer = Peer::start(
        "mosquitto_sub",
        "-V mqttv5 -h 127.0.0.1 -p PORT -i sub5 -t a/# -q 1 --retain-as-published
         -D subscribe user-property sk sv -C 1 -F %t|%p|%r|%q|%m|%C|%R|%E|%F|%D|%S|%P",
    );

    let connect = peer.read_connect();
    assert_eq!(connect.protocol, Version::V5);
    assert_eq!(connect.client_id, "sub5");
    assert!(connect.clean_start);
    peer.send(connack(ReasonCode::Success, ConnAckProperties::default()));

    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        no_local: false,
        retain_as_published: true,
        retain_handling: RetainHandling::SendAtSubscribe,
    };
    let properties = SubscribeProperties {
        user_properties: vec![user("sk", "sv")],
        ..SubscribeProperties::default()
    };
    subscribe_handshake(
        &mut peer,
        "a/#",
        options,
        properties,
        ReasonCode::GrantedQos1,
    );

    peer.send(Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: TopicName::new("a/b/c").expect("topic"),
        packet_id: Some(pid(4242)),
        properties: PublishProperties {
            payload_format_indicator: Some(PayloadFormat::Utf8),
            message_expiry_interval: Some(300),
            topic_alias: None,
            response_topic: Some("reply/here".into()),
            correlation_data: Some(Bytes::from_static(b"cid-9")),
            content_type: Some("text/plain".into()),
            // 200,000 takes a 3-byte Variable Byte Integer.
            subscription_identifiers: vec![SubscriptionId::new(200_000).expect("sub id")],
            user_properties: vec![user("u1", "v1"), user("u2", "v2")],
        },
        payload: Bytes::from_static("h\u{e9}llo w\u{f6}rld".as_bytes()),
    }));

    match peer.read_packet() {
        Packet::PubAck(puback) => assert_eq!(puback, PubAck::new(pid(4242))),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    let exit = peer.expect_clean_end();
    assert_eq!(
        exit.stdout,
        "a/b/c|h\u{e9}llo w\u{f6}rld|1|1|4242|text/plain|reply/here|300|1|cid-9|200000|u1:v1 u2:v2\n"
    );
    assert_eq!(exit.stderr, "");
}

#[test]
fn mosquitto_sub_v311_receives_our_publish() {
    let mut peer = Peer::start(
        "mosquitto_sub",
        "-V mqttv311 -h 127.0.0.1 -p PORT -i sub311 -k 15 -t a/+/c -q 0 -C 2 -F %t|%p|%r|%q|%l",
    );

    let connect = peer.read_connect();
    assert_eq!(connect.protocol, Version::V311);
    assert_eq!(connect.client_id, "sub311");
    assert_eq!(connect.keep_alive, 15);
    assert!(connect.clean_start);
    assert!(connect.will.is_none() && connect.username.is_none());
    peer.send(connack(ReasonCode::Success, ConnAckProperties::default()));

    let options = SubscriptionOptions::default();
    subscribe_handshake(
        &mut peer,
        "a/+/c",
        options,
        SubscribeProperties::default(),
        ReasonCode::Success,
    );

    for (retain, payload) in [(true, "retained one"), (false, "live two")] {
        peer.send(Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain,
            topic: TopicName::new("a/b/c").expect("topic"),
            packet_id: None,
            properties: PublishProperties::default(),
            payload: Bytes::from(payload),
        }));
    }

    let exit = peer.expect_clean_end();
    assert_eq!(
        exit.stdout,
        "a/b/c|retained one|1|0|12\na/b/c|live two|0|0|8\n"
    );
    assert_eq!(exit.stderr, "");
}

#[test]
fn mosquitto_pub_large_payload_from_file_decodes() {
    // 200 KiB of every byte value (NULs and invalid UTF-8 included): the
    // remaining length takes three bytes and the packet spans many reads.
    let payload: Vec<u8> = (0..200 * 1024u32)
        .map(|i| (i * 31 + (i >> 9)) as u8)
        .collect();
    let path = std::env::temp_dir().join(format!("mqdb-interop-{}.bin", std::process::id()));
    std::fs::write(&path, &payload).expect("write payload file");
    let guard = TempFile(path);
    let file = guard.0.to_str().expect("utf-8 temp path");
    assert!(
        !file.contains(char::is_whitespace),
        "temp path with spaces: {file}"
    );

    for version in [Version::V311, Version::V5] {
        let v = if version == Version::V5 {
            "mqttv5"
        } else {
            "mqttv311"
        };
        let mut peer = Peer::start(
            "mosquitto_pub",
            &format!("-V {v} -h 127.0.0.1 -p PORT -q 1 -t big/blob -f {file}"),
        );
        let connect = peer.read_connect();
        assert_eq!(connect.protocol, version);
        // Without -i mosquitto 2.0 sends an empty client id: assign one on 5.0.
        let mut properties = ConnAckProperties::default();
        if connect.client_id.is_empty() && version == Version::V5 {
            properties.assigned_client_identifier = Some("assigned-by-test".into());
        }
        peer.send(connack(ReasonCode::Success, properties));

        let publish = expect_publish(peer.read_packet());
        assert_eq!(publish.topic, "big/blob");
        assert_eq!(publish.qos, QoS::AtLeastOnce);
        assert_eq!(publish.payload.len(), payload.len(), "{v}");
        assert!(publish.payload == payload, "payload differs ({v})");
        let id = publish.packet_id.expect("packet id");
        peer.send(Packet::PubAck(PubAck::new(id)));
        peer.expect_clean_end();
    }
}

/// Refuses mosquitto_pub's CONNECT with `code` (plus a reason string on
/// 5.0); checks that it published nothing and exited non-zero; returns what
/// it printed to stderr.
fn refused_pub(version: Version) -> String {
    let v = if version == Version::V5 {
        "mqttv5"
    } else {
        "mqttv311"
    };
    let mut peer = Peer::start(
        "mosquitto_pub",
        &format!("-V {v} -h 127.0.0.1 -p PORT -u mallory -P wrong -t x -m never"),
    );
    let connect = peer.read_connect();
    assert_eq!(connect.username.as_deref(), Some("mallory"));
    assert_eq!(connect.password.as_deref(), Some(&b"wrong"[..]));
    let properties = ConnAckProperties {
        reason_string: Some("credentials rejected".into()),
        ..ConnAckProperties::default()
    };
    peer.send(connack(ReasonCode::BadUserNameOrPassword, properties));

    let exit = peer.client.finish();
    let after = peer.drain();
    assert!(
        after.iter().all(|p| matches!(p, Packet::Disconnect(_))),
        "a refused client sent {after:?}"
    );
    assert!(
        !exit.status.success(),
        "refused mosquitto_pub exited 0; stderr: {}",
        exit.stderr
    );
    assert_eq!(exit.stdout, "");
    exit.stderr
}

#[test]
fn mosquitto_pub_v5_refused_bad_credentials() {
    // 0x86 Bad User Name or Password.
    let stderr = refused_pub(Version::V5);
    assert!(
        stderr.to_lowercase().contains("bad user name or password"),
        "mosquitto_pub printed: {stderr}"
    );
}

#[test]
fn mosquitto_pub_v311_refused_bad_credentials() {
    // Return code 4: Connection Refused, bad user name or password.
    let stderr = refused_pub(Version::V311);
    let lower = stderr.to_lowercase();
    assert!(
        lower.contains("refused") && lower.contains("bad user name or password"),
        "mosquitto_pub printed: {stderr}"
    );
}
