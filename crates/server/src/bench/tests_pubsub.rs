//! `pairs`, `fanout` and `retained-read` end to end against a small
//! in-process pub/sub broker: exact topics and `<prefix>/#` filters, QoS 0,
//! 1 and 2 in, deliveries at the lower of the two QoS (at most 1), retained
//! messages sent *before* the SUBACK (MQTT-3.8.4 allows it, and a reader
//! must count them), and optionally every tenth delivery of a subscription
//! sent twice, to check that duplicates are counted, never hidden. Every
//! wait is bounded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use bytes::{Bytes, BytesMut};
use clap::Parser;
use mqdb_codec::{
    ConnAck, Limits, Packet, PacketId, PubAck, PubComp, PubRec, Publish, PublishProperties, QoS,
    ReasonCode, SubAck, TopicName, Version, decode, encode,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::workloads::{self, Workload};

const WAIT: Duration = Duration::from_secs(20);

/// One subscription: its filter, the QoS granted, its connection's queue
/// and how many messages it was sent.
struct Sub {
    filter: String,
    qos: QoS,
    tx: mpsc::UnboundedSender<Packet>,
    delivered: u64,
}

/// The broker's state.
#[derive(Default)]
struct State {
    subs: Vec<Sub>,
    retained: BTreeMap<String, Bytes>,
    /// Send the 1st, 11th, 21st... delivery of each subscription twice.
    duplicate: bool,
}

impl State {
    /// Queues `payload` on `topic` for `sub` (twice if duplicating).
    fn deliver(
        sub: &mut Sub,
        duplicate: bool,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: &Bytes,
    ) {
        let publish = Packet::Publish(Publish {
            dup: false,
            qos: qos.min(sub.qos).min(QoS::AtLeastOnce),
            retain,
            topic: TopicName::new(topic.to_owned()).expect("a valid topic"),
            packet_id: None,
            properties: PublishProperties::default(),
            payload: payload.clone(),
        });
        sub.delivered += 1;
        if duplicate && sub.delivered % 10 == 1 {
            let _ = sub.tx.send(publish.clone());
        }
        let _ = sub.tx.send(publish);
    }

    fn publish(&mut self, publish: &Publish) {
        let topic = publish.topic.as_str();
        if publish.retain {
            if publish.payload.is_empty() {
                self.retained.remove(topic);
            } else {
                self.retained
                    .insert(topic.to_owned(), publish.payload.clone());
            }
        }
        self.subs.retain(|s| !s.tx.is_closed());
        for sub in self.subs.iter_mut().filter(|s| matches(&s.filter, topic)) {
            State::deliver(
                sub,
                self.duplicate,
                topic,
                publish.qos,
                false,
                &publish.payload,
            );
        }
    }
}

/// Whether `filter` (a topic, or `<prefix>/#`) matches `topic`.
fn matches(filter: &str, topic: &str) -> bool {
    match filter.strip_suffix("/#") {
        Some(prefix) => {
            topic == prefix
                || topic
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        }
        None => filter == topic,
    }
}

/// Starts the broker on an ephemeral port.
async fn broker(duplicate: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(Mutex::new(State {
        duplicate,
        ..State::default()
    }));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let _ = serve(tcp, state).await;
            });
        }
    });
    addr
}

async fn serve(tcp: TcpStream, state: Arc<Mutex<State>>) -> Result<()> {
    tcp.set_nodelay(true)?;
    let (mut input, mut output) = tcp.into_split();
    let mut rbuf = BytesMut::new();
    // CONNECT first: it says how to encode everything else.
    let connect = loop {
        if let Some(packet) = decode(&mut rbuf, Version::V311, &Limits::default())? {
            break packet;
        }
        if input.read_buf(&mut rbuf).await? == 0 {
            return Ok(());
        }
    };
    let Packet::Connect(connect) = connect else {
        anyhow::bail!("expected CONNECT");
    };
    let version = connect.protocol;
    let (tx, mut rx) = mpsc::unbounded_channel::<Packet>();
    let writer = tokio::spawn(async move {
        let mut wbuf = BytesMut::new();
        let mut next_id = 0u16;
        while let Some(first) = rx.recv().await {
            let mut packet = Some(first);
            while let Some(mut p) = packet.take().or_else(|| rx.try_recv().ok()) {
                if let Packet::Publish(publish) = &mut p
                    && publish.qos != QoS::AtMostOnce
                {
                    next_id = next_id.wrapping_add(1).max(1);
                    publish.packet_id = PacketId::new(next_id);
                }
                encode(&p, version, &mut wbuf)?;
                if wbuf.len() >= 64 * 1024 {
                    break;
                }
            }
            output.write_all(&wbuf).await?;
            wbuf.clear();
        }
        Ok::<_, anyhow::Error>(())
    });
    let _ = tx.send(Packet::ConnAck(Box::new(ConnAck {
        session_present: false,
        reason_code: ReasonCode::Success,
        properties: Default::default(),
    })));
    let result = read_loop(&mut input, rbuf, version, &tx, &state).await;
    // Its queue closes with it: the subscriptions of this connection go.
    writer.abort();
    result
}

/// Answers and routes what the client sends until it leaves.
async fn read_loop(
    input: &mut tokio::net::tcp::OwnedReadHalf,
    mut rbuf: BytesMut,
    version: Version,
    tx: &mpsc::UnboundedSender<Packet>,
    state: &Mutex<State>,
) -> Result<()> {
    loop {
        while let Some(packet) = decode(&mut rbuf, version, &Limits::default())? {
            match packet {
                Packet::Publish(publish) => {
                    state.lock().unwrap().publish(&publish);
                    let reply = match (publish.qos, publish.packet_id) {
                        (QoS::AtLeastOnce, Some(id)) => Packet::PubAck(PubAck::new(id)),
                        (QoS::ExactlyOnce, Some(id)) => Packet::PubRec(PubRec::new(id)),
                        _ => continue,
                    };
                    let _ = tx.send(reply);
                }
                Packet::PubRel(rel) => {
                    let _ = tx.send(Packet::PubComp(PubComp::new(rel.packet_id)));
                }
                Packet::Subscribe(subscribe) => {
                    let mut state = state.lock().unwrap();
                    let duplicate = state.duplicate;
                    let mut codes = Vec::new();
                    for (filter, options) in &subscribe.filters {
                        let mut sub = Sub {
                            filter: filter.as_str().to_owned(),
                            qos: options.qos,
                            tx: tx.clone(),
                            delivered: 0,
                        };
                        // Retained messages first, before the SUBACK.
                        for (topic, payload) in &state.retained {
                            if matches(&sub.filter, topic) {
                                State::deliver(
                                    &mut sub,
                                    duplicate,
                                    topic,
                                    QoS::AtLeastOnce,
                                    true,
                                    payload,
                                );
                            }
                        }
                        state.subs.push(sub);
                        codes.push(match options.qos {
                            QoS::AtMostOnce => ReasonCode::Success,
                            QoS::AtLeastOnce => ReasonCode::GrantedQos1,
                            QoS::ExactlyOnce => ReasonCode::GrantedQos2,
                        });
                    }
                    let _ = tx.send(Packet::SubAck(SubAck {
                        packet_id: subscribe.packet_id,
                        properties: Default::default(),
                        reason_codes: codes,
                    }));
                }
                Packet::PingReq => {
                    let _ = tx.send(Packet::PingResp);
                }
                Packet::Disconnect(_) => return Ok(()),
                _ => {}
            }
        }
        if input.read_buf(&mut rbuf).await? == 0 {
            return Ok(());
        }
    }
}

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
}

/// Runs `mqdb bench <args>` in-process; its JSON line, parsed.
async fn bench(args: &[&str]) -> serde_json::Value {
    let cli = Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{e}"));
    let (report, _) = tokio::time::timeout(WAIT, workloads::run(cli.workload))
        .await
        .unwrap()
        .unwrap();
    let json: serde_json::Value = serde_json::from_str(&report.json()).unwrap();
    assert_eq!(report.fatal, None, "{json}");
    json
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_deliver_every_message_once_to_their_own_subscriber() {
    let port = broker(false).await.port().to_string();
    for (qos, protocol) in [("1", "4"), ("2", "5"), ("0", "4")] {
        let report = bench(&[
            "pairs",
            "--port",
            &port,
            "--pairs",
            "5",
            "--qos",
            qos,
            "--protocol",
            protocol,
            "--count",
            "1000",
            "--rate",
            "0",
        ])
        .await;
        assert_eq!(report["workload"], "pairs", "{report}");
        assert_eq!(report["pairs"], 5, "{report}");
        assert_eq!(report["publishers"], 5, "{report}");
        assert_eq!(report["subscribers"], 5, "{report}");
        assert_eq!(report["sent"], 1000, "{report}");
        // Each subscriber expects its own publisher's 200 only.
        assert_eq!(report["expected"], 1000, "{report}");
        assert_eq!(report["delivered"], 1000, "{report}");
        assert_eq!(report["received"], 1000, "{report}");
        assert_eq!(report["loss"], 0, "{report}");
        assert_eq!(report["duplicates"], 0, "{report}");
        assert_eq!(report["foreign"], 0, "{report}");
        assert_eq!(report["errors"], 0, "{report}");
        assert_eq!(report["timed_out"], false, "{report}");
        assert!(report["delivered_per_s"].as_f64().unwrap() > 0.0);
        let (p50, p99, p999) = (
            report["p50_us"].as_u64().unwrap(),
            report["p99_us"].as_u64().unwrap(),
            report["p999_us"].as_u64().unwrap(),
        );
        assert!(p50 <= p99 && p99 <= p999, "{report}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_counted_per_subscriber_in_pairs_and_fanout() {
    let port = broker(true).await.port().to_string();
    // 2 pairs of 100 messages: deliveries 1, 11, ... 91 of each twice.
    let report = bench(&[
        "pairs", "--port", &port, "--pairs", "2", "--qos", "1", "--count", "200",
    ])
    .await;
    assert_eq!(report["delivered"], 200, "{report}");
    assert_eq!(report["duplicates"], 20, "{report}");
    assert_eq!(report["received"], 220, "{report}");
    assert_eq!(report["loss"], 0, "{report}");
    // One publisher, 3 subscribers: the same message seen twice by each.
    let report = bench(&[
        "fanout",
        "--port",
        &port,
        "--subscribers",
        "3",
        "--qos",
        "1",
        "--count",
        "100",
        "--rate",
        "10000",
    ])
    .await;
    assert_eq!(report["expected"], 300, "{report}");
    assert_eq!(report["delivered"], 300, "{report}");
    assert_eq!(report["duplicates"], 30, "{report}");
    assert_eq!(report["loss"], 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_read_reads_every_record_then_again_with_skip_load() {
    let port = broker(false).await.port().to_string();
    let report = bench(&[
        "retained-read",
        "--port",
        &port,
        "--count",
        "2000",
        "--window",
        "50",
    ])
    .await;
    assert_eq!(report["workload"], "retained-read", "{report}");
    let prefix = report["prefix"].as_str().unwrap().to_owned();
    assert!(prefix.starts_with("bench/"), "a fresh prefix: {report}");
    assert_eq!(report["skip_load"], false, "{report}");
    assert_eq!(report["loaded"], 2000, "{report}");
    assert!(report["load_per_s"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!(report["qos"], 1, "{report}");
    assert_eq!(report["delivered"], 2000, "{report}");
    assert_eq!(report["received"], 2000, "{report}");
    assert_eq!(report["missing"], 0, "{report}");
    assert_eq!(report["loss"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert_eq!(report["foreign"], 0, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["timed_out"], false, "{report}");
    assert!(report["records_per_s"].as_f64().unwrap() > 0.0, "{report}");
    let first = report["first_message_ms"].as_f64().unwrap();
    assert!(
        first <= report["read_s"].as_f64().unwrap() * 1000.0,
        "{report}"
    );

    // The same records, read again at QoS 0 over 5.0 without loading.
    let report = bench(&[
        "retained-read",
        "--port",
        &port,
        "--count",
        "2000",
        "--skip-load",
        "--prefix",
        &prefix,
        "--qos",
        "0",
        "--protocol",
        "5",
    ])
    .await;
    assert_eq!(report["skip_load"], true, "{report}");
    assert_eq!(report["loaded"], serde_json::Value::Null, "{report}");
    assert_eq!(report["delivered"], 2000, "{report}");
    assert_eq!(report["missing"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");

    // Another run gets its own prefix: nothing of the first one is read.
    let report = bench(&["retained-read", "--port", &port, "--count", "10"]).await;
    assert_ne!(report["prefix"].as_str(), Some(prefix.as_str()));
    assert_eq!(report["delivered"], 10, "{report}");
    assert_eq!(report["foreign"], 0, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_read_counts_missing_duplicate_and_foreign_topics() {
    let port = broker(true).await.port().to_string();
    let load = bench(&[
        "retained-read",
        "--port",
        &port,
        "--prefix",
        "t/rr",
        "--count",
        "100",
    ])
    .await;
    assert_eq!(load["delivered"], 100, "{load}");
    assert_eq!(load["duplicates"], 10, "{load}");
    // 110 expected, 100 stored: 10 missing, found when the time-out ends
    // the read.
    let started = tokio::time::Instant::now();
    let report = bench(&[
        "retained-read",
        "--port",
        &port,
        "--prefix",
        "t/rr",
        "--skip-load",
        "--count",
        "110",
        "--duration",
        "0.5",
    ])
    .await;
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(report["delivered"], 100, "{report}");
    assert_eq!(report["missing"], 10, "{report}");
    assert_eq!(report["duplicates"], 10, "{report}");
    assert_eq!(report["received"], 110, "{report}");
    assert_eq!(report["timed_out"], true, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    let report = bench(&[
        "retained-read",
        "--port",
        &port,
        "--prefix",
        "t/rr",
        "--skip-load",
        "--count",
        "50",
    ])
    .await;
    assert_eq!(report["delivered"], 50, "{report}");
    assert_eq!(report["missing"], 0, "{report}");
}

#[test]
fn skip_load_needs_a_prefix() {
    let err = Cli::try_parse_from(["bench", "retained-read", "--skip-load"]).unwrap_err();
    assert!(err.to_string().contains("--prefix"), "{err}");
}
