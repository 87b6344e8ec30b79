//! Durability of MQTT writes in the real `mqdb` process: several concurrent
//! MQTT publishers send retained QoS 1 publishes, the process is SIGKILLed in
//! the middle of them and restarted — every publish that got its PUBACK is a
//! record, intact (three rounds on one data directory). And a persistent
//! session with messages queued while it was offline survives restarts.
//!
//! The MQTT 3.1.1 client here is hand-encoded over `std::net::TcpStream`
//! (CONNECT, PUBLISH, PUBACK, SUBSCRIBE, DISCONNECT are a few bytes each), so
//! the test needs nothing but the binary.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use support::*;

const SCHEMA: &str = "type Item @table @export { id: ID @primaryKey  n: Int  writer: Int }\n";

fn setup(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("schema.graphql"), SCHEMA).unwrap();
    open_config(dir, &dir.join("data"))
}

/// A started server: (process, MQTT address, REST base URL).
fn start(dir: &Path, config: &Path) -> (Server, SocketAddr, String) {
    start_server(dir, config)
}

// ---- a minimal MQTT 3.1.1 client -------------------------------------------

const CONNACK: u8 = 0x20;
const PUBLISH: u8 = 0x30;
const PUBACK: u8 = 0x40;
const SUBACK: u8 = 0x90;

fn string(s: &str) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

/// A packet: first byte, Remaining Length (variable byte integer), body.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

fn connect_packet(client_id: &str, clean: bool) -> Vec<u8> {
    let mut body = string("MQTT");
    body.push(4); // protocol level 3.1.1
    body.push(if clean { 0x02 } else { 0x00 });
    body.extend_from_slice(&60u16.to_be_bytes()); // keep alive
    body.extend_from_slice(&string(client_id));
    packet(0x10, &body)
}

fn publish_qos1(topic: &str, packet_id: u16, retain: bool, payload: &[u8]) -> Vec<u8> {
    let mut body = string(topic);
    body.extend_from_slice(&packet_id.to_be_bytes());
    body.extend_from_slice(payload);
    packet(PUBLISH | 0x02 | u8::from(retain), &body)
}

fn puback(packet_id: u16) -> Vec<u8> {
    packet(PUBACK, &packet_id.to_be_bytes())
}

fn subscribe(filter: &str, packet_id: u16) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    body.extend_from_slice(&string(filter));
    body.push(1); // QoS 1
    packet(0x82, &body)
}

/// A received PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Received {
    topic: String,
    qos: u8,
    dup: bool,
    retain: bool,
    packet_id: Option<u16>,
    payload: Vec<u8>,
}

fn parse_publish(first: u8, body: &[u8]) -> Received {
    let qos = (first >> 1) & 3;
    let tlen = usize::from(u16::from_be_bytes([body[0], body[1]]));
    let topic = String::from_utf8(body[2..2 + tlen].to_vec()).unwrap();
    let mut rest = &body[2 + tlen..];
    let packet_id = (qos > 0).then(|| {
        let id = u16::from_be_bytes([rest[0], rest[1]]);
        rest = &rest[2..];
        id
    });
    Received {
        topic,
        qos,
        dup: first & 0x08 != 0,
        retain: first & 0x01 != 0,
        packet_id,
        payload: rest.to_vec(),
    }
}

struct Mqtt {
    stream: TcpStream,
}

impl Mqtt {
    /// Connects; returns the client and CONNACK's session-present flag.
    fn connect(addr: SocketAddr, client_id: &str, clean: bool) -> (Mqtt, bool) {
        let stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut c = Mqtt { stream };
        c.send(&connect_packet(client_id, clean))
            .expect("send CONNECT");
        let (first, body) = c.read().expect("CONNACK");
        assert_eq!(first, CONNACK, "expected CONNACK");
        assert_eq!(body[1], 0, "CONNACK return code for {client_id}");
        (c, body[0] & 1 == 1)
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// The next packet (first byte, body); an error on EOF or after the
    /// read timeout.
    fn read(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        read_packet(&mut self.stream)
    }

    /// The next packet within `d`, `None` if nothing arrives.
    fn read_within(&mut self, d: Duration) -> Option<(u8, Vec<u8>)> {
        self.stream.set_read_timeout(Some(d)).unwrap();
        let got = self.read().ok();
        self.stream.set_read_timeout(Some(WAIT)).unwrap();
        got
    }

    fn disconnect(mut self) {
        let _ = self.send(&[0xE0, 0x00]);
        // The server closes the connection after a DISCONNECT.
        let mut rest = Vec::new();
        let _ = self.stream.read_to_end(&mut rest);
    }
}

fn read_packet(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut first = [0u8; 1];
    stream.read_exact(&mut first)?;
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let mut b = [0u8; 1];
        stream.read_exact(&mut b)?;
        len |= usize::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            break;
        }
        shift += 7;
        assert!(shift <= 21, "malformed Remaining Length from the server");
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    Ok((first[0], body))
}

// ---- the tests -------------------------------------------------------------

/// (writer label, n) of every publish whose PUBACK arrived.
type Acked = Arc<Mutex<HashSet<(String, u64)>>>;

/// One publisher connection: a writer thread keeps up to `WINDOW` retained
/// QoS 1 publishes in flight, a reader thread records the PUBACKs. Both end
/// when the server goes away.
fn spawn_publisher(
    addr: SocketAddr,
    label: String,
    writer: u64,
    acked: Acked,
) -> Vec<std::thread::JoinHandle<()>> {
    const WINDOW: usize = 16;
    let (mut client, _) = Mqtt::connect(addr, &format!("pub-{label}"), true);
    let mut reader = client.stream.try_clone().unwrap();
    let in_flight: Arc<Mutex<HashMap<u16, u64>>> = Arc::default();
    let (tokens, take) = mpsc::channel::<()>();
    for _ in 0..WINDOW {
        tokens.send(()).unwrap();
    }
    let read_thread = {
        let (in_flight, label) = (in_flight.clone(), label.clone());
        std::thread::spawn(move || {
            while let Ok((first, body)) = read_packet(&mut reader) {
                assert_eq!(first, PUBACK, "only PUBACKs are expected");
                let id = u16::from_be_bytes([body[0], body[1]]);
                let n = in_flight
                    .lock()
                    .unwrap()
                    .remove(&id)
                    .expect("PUBACK for a packet in flight");
                acked.lock().unwrap().insert((label.clone(), n));
                if tokens.send(()).is_err() {
                    break;
                }
            }
        })
    };
    let write_thread = std::thread::spawn(move || {
        for n in 0u64.. {
            // A free slot in the window; none within WAIT: the server is gone.
            if take.recv_timeout(WAIT).is_err() {
                return;
            }
            let id = (n % 60_000) as u16 + 1;
            in_flight.lock().unwrap().insert(id, n);
            let payload = format!(r#"{{"n":{n},"writer":{writer}}}"#);
            let bytes = publish_qos1(&format!("Item/{label}/{n}"), id, true, payload.as_bytes());
            if client.send(&bytes).is_err() {
                return;
            }
        }
    });
    vec![read_thread, write_thread]
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(WAIT).build().unwrap()
}

/// Every `Item` record: id -> (n, writer).
async fn all_items(base: &str) -> HashMap<String, (u64, u64)> {
    let resp = http().get(format!("{base}/Item/")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let items: Vec<serde_json::Value> = resp.json().await.unwrap();
    items
        .into_iter()
        .map(|v| {
            let id = v["id"].as_str().unwrap().to_owned();
            (
                id,
                (v["n"].as_u64().unwrap(), v["writer"].as_u64().unwrap()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puback_ed_retained_publishes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    const WRITERS: u64 = 6;
    let acked: Acked = Arc::default();
    for round in 0..3u64 {
        let (mut server, mqtt, _) = start(dir.path(), &config);
        let before = acked.lock().unwrap().len();
        let threads: Vec<_> = (0..WRITERS)
            .flat_map(|w| spawn_publisher(mqtt, format!("r{round}w{w}"), w, acked.clone()))
            .collect();
        // Let publishes flow, then kill without warning.
        tokio::time::sleep(Duration::from_millis(600 + 300 * round)).await;
        server.kill_hard();
        let deadline = Instant::now() + WAIT * 2;
        for t in threads {
            while !t.is_finished() {
                assert!(Instant::now() < deadline, "a publisher thread did not end");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            t.join().expect("publisher thread");
        }
        let expected = acked.lock().unwrap().clone();
        assert!(
            expected.len() - before > 30,
            "round {round}: only {} publishes acknowledged",
            expected.len() - before
        );

        let (mut server, _, base) = start(dir.path(), &config);
        let items = all_items(&base).await;
        eprintln!(
            "round {round}: {} publishes acknowledged before SIGKILL, {} records after restart",
            expected.len() - before,
            items.len()
        );
        let mut missing: Vec<_> = expected
            .iter()
            .filter(|(label, n)| {
                let w: u64 = label.rsplit('w').next().unwrap().parse().unwrap();
                items.get(&format!("{label}/{n}")) != Some(&(*n, w))
            })
            .collect();
        missing.sort();
        assert!(
            missing.is_empty(),
            "round {round}: {} of {} acknowledged publishes missing or wrong, e.g. {:?}",
            missing.len(),
            expected.len(),
            &missing[..missing.len().min(10)]
        );
        server.signal("TERM");
        assert!(wait_bounded(&mut server.child).success());
    }
}

/// Publishes `count` QoS 1 messages to `queue/<i>` (not retained) and waits
/// for each PUBACK.
fn publish_queue(addr: SocketAddr, from: u32, count: u32) {
    let (mut publisher, _) = Mqtt::connect(addr, "queue-publisher", true);
    for i in from..from + count {
        let bytes = publish_qos1(
            &format!("queue/{i}"),
            i as u16 + 1,
            false,
            format!("message {i}").as_bytes(),
        );
        publisher.send(&bytes).unwrap();
        let (first, body) = publisher.read().expect("PUBACK");
        assert_eq!(
            (first, &body[..]),
            (PUBACK, &(i as u16 + 1).to_be_bytes()[..])
        );
    }
    publisher.disconnect();
}

/// Reads `count` PUBLISHes, acknowledging each; then checks nothing follows.
fn receive_queue(sub: &mut Mqtt, from: u32, count: u32) {
    let mut got = Vec::new();
    for _ in 0..count {
        let (first, body) = sub.read().unwrap_or_else(|e| {
            panic!("no PUBLISH within {WAIT:?} ({e}); received so far: {got:?}")
        });
        assert_eq!(first & 0xF0, PUBLISH, "expected PUBLISH, got {first:#x}");
        let p = parse_publish(first, &body);
        sub.send(&puback(p.packet_id.expect("QoS 1"))).unwrap();
        got.push((p.topic, p.qos, String::from_utf8(p.payload).unwrap()));
    }
    let expected: Vec<_> = (from..from + count)
        .map(|i| (format!("queue/{i}"), 1, format!("message {i}")))
        .collect();
    assert_eq!(got, expected);
    if let Some((first, body)) = sub.read_within(Duration::from_millis(300)) {
        panic!(
            "unexpected packet {first:#x}: {:?}",
            parse_publish(first, &body)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_and_its_queue_survive_a_graceful_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let (mut server, mqtt, _) = start(dir.path(), &config);
    let (mut sub, present) = Mqtt::connect(mqtt, "durable-sub", false);
    assert!(!present);
    sub.send(&subscribe("queue/#", 1)).unwrap();
    let (first, body) = sub.read().expect("SUBACK");
    assert_eq!((first, &body[..]), (SUBACK, &[0, 1, 1][..]));
    sub.disconnect();

    // Queued while the subscriber is offline.
    publish_queue(mqtt, 0, 20);
    server.signal("TERM");
    assert!(wait_bounded(&mut server.child).success(), "graceful stop");

    let (mut server, mqtt, _) = start(dir.path(), &config);
    let (mut sub, present) = Mqtt::connect(mqtt, "durable-sub", false);
    assert!(present, "CONNACK session present after the restart");
    receive_queue(&mut sub, 0, 20);
    // The subscription itself came back too: live messages still arrive.
    publish_queue(mqtt, 20, 3);
    receive_queue(&mut sub, 20, 3);
    sub.disconnect();
    server.signal("TERM");
    assert!(wait_bounded(&mut server.child).success());
}

/// The same after SIGKILL (SPEC section 2: queued messages survive broker
/// restarts): the subscription was stored before its SUBACK, and a message
/// queued for the offline session must be stored before the publisher gets
/// its PUBACK, or an acknowledged message is lost in a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_session_and_its_queue_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let config = setup(dir.path());
    let (mut server, mqtt, _) = start(dir.path(), &config);
    let (mut sub, present) = Mqtt::connect(mqtt, "durable-sub", false);
    assert!(!present);
    sub.send(&subscribe("queue/#", 1)).unwrap();
    let (first, _) = sub.read().expect("SUBACK");
    assert_eq!(first, SUBACK);
    sub.disconnect();
    publish_queue(mqtt, 0, 5);
    server.kill_hard();

    let (mut server, mqtt, _) = start(dir.path(), &config);
    let (mut sub, present) = Mqtt::connect(mqtt, "durable-sub", false);
    assert!(present, "CONNACK session present after SIGKILL");
    receive_queue(&mut sub, 0, 5);
    sub.disconnect();
    server.signal("TERM");
    assert!(wait_bounded(&mut server.child).success());
}
