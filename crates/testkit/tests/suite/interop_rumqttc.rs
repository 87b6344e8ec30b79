//! Interoperability with rumqttc, a widely used Rust MQTT client, in both of
//! its protocol implementations (3.1.1: `rumqttc::{MqttOptions, AsyncClient,
//! EventLoop}`; 5.0: `rumqttc::v5`) against an in-process server: QoS 0/1/2,
//! retained records, persistent sessions resumed with queued and
//! unacknowledged messages, last wills on an abrupt close, v5 properties and
//! reason codes, and thousands of QoS 1 messages delivered exactly once and in
//! order.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use mqdb_testkit::TestServer;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const SCHEMA: &str = "type Sensor @table @export\n\
                      type Device @table @export { id: ID @primaryKey name: String temp: Float }\n";

/// The longest anything is waited for.
const DEADLINE: Duration = Duration::from_secs(10);

/// Runs a test body on its own multi-threaded runtime with a data directory
/// that outlives the runtime. `TestServer::stop` can return while a detached
/// broker task still holds the store; deleting the directory under it (as
/// dropping the kit's own temporary directory does) can hang that store's
/// final flush, so the directory is removed only after the runtime is gone.
fn run<F: Future<Output = ()>>(test: impl FnOnce(PathBuf) -> F) {
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(test(dir.path().to_path_buf()));
    rt.shutdown_timeout(DEADLINE);
    drop(dir);
}

async fn start(dir: &std::path::Path) -> TestServer {
    TestServer::open(dir, SCHEMA, Default::default()).await
}

/// Waits (bounded) until the server counts `n` connected clients, e.g. until
/// it has finished with a connection that was dropped.
async fn until_connected(server: &TestServer, n: u64) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let now = server
            .broker
            .stats()
            .clients_connected
            .load(std::sync::atomic::Ordering::Relaxed);
        if now == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{now} clients connected after {DEADLINE:?}, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(DEADLINE)
        .build()
        .unwrap()
}

/// GET a record: status and body.
async fn get(server: &TestServer, path: &str) -> (u16, Vec<u8>) {
    let resp = http().get(server.url(path)).send().await.unwrap();
    (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(bytes)))
}

/// An event-loop pump shared by both protocol versions: every event (or the
/// error that ended the connection) arrives on a channel; the loop never
/// reconnects by itself.
struct Pump<E> {
    events: mpsc::UnboundedReceiver<Result<E, String>>,
    task: JoinHandle<()>,
    what: String,
}

impl<E: std::fmt::Debug + Send + 'static> Pump<E> {
    /// The next event satisfying `pred` (others are skipped).
    async fn wait<T>(&mut self, mut pred: impl FnMut(E) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ok(e))) => {
                    if let Some(t) = pred(e) {
                        return t;
                    }
                }
                Ok(Some(Err(e))) => panic!("{}: connection ended: {e}", self.what),
                Ok(None) => panic!("{}: event loop gone", self.what),
                Err(_) => panic!("{}: expected event not seen within {DEADLINE:?}", self.what),
            }
        }
    }

    /// Events within `d`, failing on a connection error.
    async fn drain_for(&mut self, d: Duration) -> Vec<E> {
        let deadline = tokio::time::Instant::now() + d;
        let mut seen = Vec::new();
        while let Ok(e) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            match e {
                Some(Ok(e)) => seen.push(e),
                Some(Err(e)) => panic!("{}: connection ended: {e}", self.what),
                None => break,
            }
        }
        seen
    }

    /// Waits (bounded) for the connection to end, e.g. after a DISCONNECT.
    async fn ended(&mut self) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) => return,
                Err(_) => panic!("{}: connection still open after {DEADLINE:?}", self.what),
            }
        }
    }

    /// An abrupt close: the event loop (and its socket) is dropped without
    /// a DISCONNECT.
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

mod v4 {
    use super::*;
    pub(crate) use rumqttc::{
        AsyncClient, ConnAck, ConnectReturnCode, Event, LastWill, MqttOptions, Outgoing, Packet,
        Publish, QoS,
    };

    pub(crate) struct Client {
        pub(crate) client: AsyncClient,
        pub(crate) pump: Pump<Event>,
    }

    pub(crate) fn options(server: &TestServer, id: &str) -> MqttOptions {
        let mut o = MqttOptions::new(id, "127.0.0.1", server.mqtt.port());
        o.set_keep_alive(Duration::from_secs(30));
        o
    }

    pub(crate) async fn connect(options: MqttOptions) -> (Client, ConnAck) {
        let what = format!("v3.1.1 client {}", options.client_id());
        let (client, eventloop) = AsyncClient::new(options, 10_000);
        let (tx, events) = mpsc::unbounded_channel();
        let mut eventloop = eventloop;
        let task = tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await.map_err(|e| e.to_string());
                let failed = event.is_err();
                if tx.send(event).is_err() || failed {
                    break;
                }
            }
        });
        let mut pump = Pump { events, task, what };
        let ack = pump
            .wait(|e| match e {
                Event::Incoming(Packet::ConnAck(a)) => Some(a),
                _ => None,
            })
            .await;
        assert_eq!(ack.code, ConnectReturnCode::Success);
        (Client { client, pump }, ack)
    }

    impl Client {
        pub(crate) async fn subscribe(&mut self, filter: &str, qos: QoS) {
            self.client.subscribe(filter, qos).await.unwrap();
            let codes = self
                .pump
                .wait(|e| match e {
                    Event::Incoming(Packet::SubAck(s)) => Some(s.return_codes),
                    _ => None,
                })
                .await;
            assert_eq!(
                codes,
                [rumqttc::SubscribeReasonCode::Success(qos)],
                "SUBACK for {filter}"
            );
        }

        pub(crate) async fn publish(
            &mut self,
            topic: &str,
            qos: QoS,
            retain: bool,
            payload: &[u8],
        ) {
            self.client
                .publish(topic, qos, retain, payload.to_vec())
                .await
                .unwrap();
            match qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => {
                    self.pump
                        .wait(|e| matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(()))
                        .await
                }
                QoS::ExactlyOnce => {
                    self.pump
                        .wait(|e| matches!(e, Event::Incoming(Packet::PubRec(_))).then_some(()))
                        .await;
                    self.pump
                        .wait(|e| matches!(e, Event::Incoming(Packet::PubComp(_))).then_some(()))
                        .await;
                }
            }
        }

        pub(crate) async fn next_publish(&mut self) -> Publish {
            self.pump
                .wait(|e| match e {
                    Event::Incoming(Packet::Publish(p)) => Some(p),
                    _ => None,
                })
                .await
        }

        /// Publishes received within `d`.
        pub(crate) async fn publishes_within(&mut self, d: Duration) -> Vec<Publish> {
            self.pump
                .drain_for(d)
                .await
                .into_iter()
                .filter_map(|e| match e {
                    Event::Incoming(Packet::Publish(p)) => Some(p),
                    _ => None,
                })
                .collect()
        }

        /// DISCONNECT, then the connection ends.
        pub(crate) async fn disconnect(mut self) {
            self.client.disconnect().await.unwrap();
            self.pump.ended().await;
        }
    }

    pub(crate) fn outgoing_puback(e: &Event) -> bool {
        matches!(e, Event::Outgoing(Outgoing::PubAck(_)))
    }

    pub(crate) fn will(topic: &str, payload: &str) -> LastWill {
        LastWill::new(topic, payload.as_bytes().to_vec(), QoS::AtLeastOnce, false)
    }
}

mod v5 {
    use super::*;
    pub(crate) use rumqttc::v5::mqttbytes::QoS;
    pub(crate) use rumqttc::v5::mqttbytes::v5::{
        ConnAck, ConnectReturnCode, LastWill, LastWillProperties, Packet, PubAckReason, Publish,
        PublishProperties, SubscribeReasonCode,
    };
    pub(crate) use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    pub(crate) struct Client {
        pub(crate) client: AsyncClient,
        pub(crate) pump: Pump<Event>,
    }

    /// Will properties, all absent.
    pub(crate) fn will_properties() -> LastWillProperties {
        LastWillProperties {
            delay_interval: None,
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
        }
    }

    pub(crate) fn options(server: &TestServer, id: &str) -> MqttOptions {
        let mut o = MqttOptions::new(id, "127.0.0.1", server.mqtt.port());
        o.set_keep_alive(Duration::from_secs(30));
        o
    }

    pub(crate) async fn connect(options: MqttOptions) -> (Client, ConnAck) {
        let what = format!("v5 client {}", options.client_id());
        let (client, eventloop) = AsyncClient::new(options, 10_000);
        let (tx, events) = mpsc::unbounded_channel();
        let mut eventloop = eventloop;
        let task = tokio::spawn(async move {
            loop {
                let event = eventloop.poll().await.map_err(|e| e.to_string());
                let failed = event.is_err();
                if tx.send(event).is_err() || failed {
                    break;
                }
            }
        });
        let mut pump = Pump { events, task, what };
        let ack = pump
            .wait(|e| match e {
                Event::Incoming(Packet::ConnAck(a)) => Some(a),
                _ => None,
            })
            .await;
        assert_eq!(ack.code, ConnectReturnCode::Success);
        (Client { client, pump }, ack)
    }

    impl Client {
        pub(crate) async fn subscribe(&mut self, filter: &str, qos: QoS) {
            self.client.subscribe(filter, qos).await.unwrap();
            let codes = self
                .pump
                .wait(|e| match e {
                    Event::Incoming(Packet::SubAck(s)) => Some(s.return_codes),
                    _ => None,
                })
                .await;
            assert_eq!(
                codes,
                [SubscribeReasonCode::Success(qos)],
                "SUBACK for {filter}"
            );
        }

        /// Publishes at QoS 1 and returns the PUBACK's reason.
        pub(crate) async fn publish_qos1(
            &mut self,
            topic: &str,
            retain: bool,
            payload: &[u8],
            properties: Option<PublishProperties>,
        ) -> PubAckReason {
            let payload = payload.to_vec();
            match properties {
                Some(p) => self
                    .client
                    .publish_with_properties(topic, QoS::AtLeastOnce, retain, payload, p)
                    .await
                    .unwrap(),
                None => self
                    .client
                    .publish(topic, QoS::AtLeastOnce, retain, payload)
                    .await
                    .unwrap(),
            }
            self.pump
                .wait(|e| match e {
                    Event::Incoming(Packet::PubAck(a)) => Some(a.reason),
                    _ => None,
                })
                .await
        }

        pub(crate) async fn next_publish(&mut self) -> Publish {
            self.pump
                .wait(|e| match e {
                    Event::Incoming(Packet::Publish(p)) => Some(p),
                    _ => None,
                })
                .await
        }

        pub(crate) async fn publishes_within(&mut self, d: Duration) -> Vec<Publish> {
            self.pump
                .drain_for(d)
                .await
                .into_iter()
                .filter_map(|e| match e {
                    Event::Incoming(Packet::Publish(p)) => Some(p),
                    _ => None,
                })
                .collect()
        }

        pub(crate) async fn disconnect(mut self) {
            self.client.disconnect().await.unwrap();
            self.pump.ended().await;
        }
    }
}

#[test]
fn v4_qos_0_1_2_round_trip() {
    use v4::*;
    run(|dir| async move {
        let server = start(&dir).await;
        let (mut sub, _) = connect(options(&server, "v4-sub")).await;
        sub.subscribe("qos/#", QoS::ExactlyOnce).await;
        sub.subscribe("low/#", QoS::AtMostOnce).await;
        let (mut publisher, _) = connect(options(&server, "v4-pub")).await;
        for (topic, qos) in [
            ("qos/0", QoS::AtMostOnce),
            ("qos/1", QoS::AtLeastOnce),
            ("qos/2", QoS::ExactlyOnce),
            ("low/2", QoS::ExactlyOnce),
        ] {
            publisher
                .publish(topic, qos, false, format!("payload of {topic}").as_bytes())
                .await;
        }
        let mut got = Vec::new();
        for _ in 0..4 {
            let p = sub.next_publish().await;
            got.push((p.topic.clone(), p.qos, p.retain, p.payload.to_vec()));
        }
        // Delivered at min(publish QoS, subscription QoS), in order, once.
        let expected: Vec<_> = [
            ("qos/0", QoS::AtMostOnce),
            ("qos/1", QoS::AtLeastOnce),
            ("qos/2", QoS::ExactlyOnce),
            ("low/2", QoS::AtMostOnce),
        ]
        .into_iter()
        .map(|(t, q)| {
            (
                t.to_owned(),
                q,
                false,
                format!("payload of {t}").into_bytes(),
            )
        })
        .collect();
        assert_eq!(got, expected);
        assert!(
            sub.publishes_within(Duration::from_millis(300))
                .await
                .is_empty()
        );
        publisher.disconnect().await;
        sub.disconnect().await;
        server.stop().await;
    });
}

#[test]
fn v4_retained_publishes_are_records() {
    use v4::*;
    run(|dir| async move {
        let server = start(&dir).await;
        let (mut publisher, _) = connect(options(&server, "v4-rec-pub")).await;
        publisher
            .publish("Sensor/r1", QoS::AtLeastOnce, true, br#"{"t":1}"#)
            .await;
        publisher
            .publish(
                "Device/d1",
                QoS::ExactlyOnce,
                true,
                br#"{"name":"n","temp":2.5}"#,
            )
            .await;
        let (status, body) = get(&server, "/Sensor/r1").await;
        assert_eq!(
            (status, json(&body)),
            (200, serde_json::json!({"id": "r1", "t": 1}))
        );
        let (status, body) = get(&server, "/Device/d1").await;
        assert_eq!(
            (status, json(&body)),
            (
                200,
                serde_json::json!({"id": "d1", "name": "n", "temp": 2.5})
            )
        );

        // A new subscriber: the existing records, retained.
        let (mut sub, _) = connect(options(&server, "v4-rec-sub")).await;
        sub.subscribe("Sensor/+", QoS::AtLeastOnce).await;
        let p = sub.next_publish().await;
        assert_eq!(
            (p.topic.as_str(), p.retain, json(&p.payload)),
            ("Sensor/r1", true, serde_json::json!({"id": "r1", "t": 1}))
        );
        // Then each change, not retained.
        publisher
            .publish("Sensor/r1", QoS::AtLeastOnce, true, br#"{"t":2}"#)
            .await;
        let p = sub.next_publish().await;
        assert_eq!(
            (p.topic.as_str(), p.retain, json(&p.payload)),
            ("Sensor/r1", false, serde_json::json!({"id": "r1", "t": 2}))
        );
        // An empty retained publish deletes: a zero-length payload.
        publisher
            .publish("Sensor/r1", QoS::AtLeastOnce, true, b"")
            .await;
        let p = sub.next_publish().await;
        assert_eq!((p.topic.as_str(), p.payload.len()), ("Sensor/r1", 0));
        assert_eq!(get(&server, "/Sensor/r1").await.0, 404);

        // A REST write reaches the MQTT subscriber as the full record.
        let put = http()
            .put(server.url("/Sensor/r2"))
            .header("content-type", "application/json")
            .body(r#"{"from":"rest"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(put.status().as_u16(), 204);
        let p = sub.next_publish().await;
        assert_eq!(
            (p.topic.as_str(), p.retain, json(&p.payload)),
            (
                "Sensor/r2",
                false,
                serde_json::json!({"id": "r2", "from": "rest"})
            )
        );
        publisher.disconnect().await;
        sub.disconnect().await;
        server.stop().await;
    });
}

#[test]
fn v4_persistent_session_resumes_with_queued_and_unacknowledged_messages() {
    use v4::*;
    run(|dir| async move {
        let server = start(&dir).await;
        let mut opts = options(&server, "v4-resume");
        opts.set_clean_session(false);
        let (mut sub, ack) = connect(opts.clone()).await;
        assert!(!ack.session_present);
        sub.subscribe("inbox/#", QoS::AtLeastOnce).await;
        sub.disconnect().await;

        let (mut publisher, _) = connect(options(&server, "v4-resume-pub")).await;
        for i in 0..3 {
            publisher
                .publish(
                    &format!("inbox/{i}"),
                    QoS::AtLeastOnce,
                    false,
                    format!("m{i}").as_bytes(),
                )
                .await;
        }

        // Resumed: the session is present and the queued messages arrive in
        // order, at QoS 1. Manual acks: the last one is left unacknowledged
        // and the connection dropped.
        opts.set_manual_acks(true);
        let (mut sub, ack) = connect(opts.clone()).await;
        assert!(
            ack.session_present,
            "CONNACK session present after a resume"
        );
        let mut got = Vec::new();
        let mut publishes = Vec::new();
        for _ in 0..3 {
            let p = sub.next_publish().await;
            got.push((p.topic.clone(), p.qos, p.payload.to_vec()));
            publishes.push(p);
        }
        for p in &publishes[..2] {
            sub.client.ack(p).await.unwrap();
        }
        for _ in 0..2 {
            sub.pump.wait(|e| outgoing_puback(&e).then_some(())).await;
        }
        let expected: Vec<_> = (0..3)
            .map(|i| {
                (
                    format!("inbox/{i}"),
                    QoS::AtLeastOnce,
                    format!("m{i}").into_bytes(),
                )
            })
            .collect();
        assert_eq!(got, expected);
        sub.pump.kill().await;
        // Let the server finish with that connection (its PUBACKs) first: a
        // take-over racing them could legitimately resend (QoS 1).
        until_connected(&server, 1).await;

        // The unacknowledged one is sent again (DUP set), nothing else.
        opts.set_manual_acks(false);
        let (mut sub, ack) = connect(opts.clone()).await;
        assert!(ack.session_present);
        let again = sub.publishes_within(Duration::from_millis(500)).await;
        let again: Vec<_> = again
            .iter()
            .map(|p| (p.topic.as_str(), p.dup, &p.payload[..]))
            .collect();
        assert_eq!(again, [("inbox/2", true, &b"m2"[..])]);
        sub.disconnect().await;

        // Acknowledged now: not delivered again; a clean session ends it.
        let (mut sub, ack) = connect(opts.clone()).await;
        assert!(ack.session_present);
        assert!(
            sub.publishes_within(Duration::from_millis(300))
                .await
                .is_empty()
        );
        sub.disconnect().await;
        opts.set_clean_session(true);
        let (sub, ack) = connect(opts).await;
        assert!(!ack.session_present);
        sub.disconnect().await;
        publisher.disconnect().await;
        server.stop().await;
    });
}

#[test]
fn v4_last_will_on_abrupt_close_only() {
    use v4::*;
    run(|dir| async move {
        let server = start(&dir).await;
        let (mut watcher, _) = connect(options(&server, "v4-watcher")).await;
        watcher.subscribe("will/#", QoS::AtLeastOnce).await;

        // A graceful DISCONNECT discards the will.
        let mut polite = options(&server, "v4-polite");
        polite.set_last_will(will("will/polite", "should not be sent"));
        let (polite, _) = connect(polite).await;
        polite.disconnect().await;

        // Dropping the connection without DISCONNECT publishes it.
        let mut rude = options(&server, "v4-rude");
        rude.set_last_will(will("will/rude", "gone"));
        let (rude, _) = connect(rude).await;
        rude.pump.kill().await;

        let p = watcher.next_publish().await;
        assert_eq!(
            (p.topic.as_str(), &p.payload[..], p.qos),
            ("will/rude", &b"gone"[..], QoS::AtLeastOnce)
        );
        assert!(
            watcher
                .publishes_within(Duration::from_millis(300))
                .await
                .is_empty()
        );
        watcher.disconnect().await;
        server.stop().await;
    });
}

#[test]
fn v4_five_thousand_qos1_messages_exactly_once_in_order() {
    use v4::*;
    run(|dir| async move {
        let server = start(&dir).await;
        let (mut sub, _) = connect(options(&server, "v4-load-sub")).await;
        sub.subscribe("load/#", QoS::AtLeastOnce).await;
        let mut opts = options(&server, "v4-load-pub");
        opts.set_inflight(200);
        let (mut publisher, _) = connect(opts).await;
        const N: usize = 5_000;
        const TOPICS: usize = 10;
        let sender = publisher.client.clone();
        let sending = tokio::spawn(async move {
            for n in 0..N {
                sender
                    .publish(
                        format!("load/{}", n % TOPICS),
                        QoS::AtLeastOnce,
                        false,
                        n.to_string().into_bytes(),
                    )
                    .await
                    .unwrap();
            }
        });
        // The publisher sees every PUBACK.
        let mut acks = 0;
        while acks < N {
            publisher
                .pump
                .wait(|e| matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(()))
                .await;
            acks += 1;
        }
        sending.await.unwrap();

        let mut received = Vec::with_capacity(N);
        while received.len() < N {
            let p = sub.next_publish().await;
            assert_eq!(p.qos, QoS::AtLeastOnce);
            let n: usize = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
            assert_eq!(p.topic, format!("load/{}", n % TOPICS));
            received.push(n);
        }
        // Exactly once and, from one publisher at one QoS, in the order sent
        // (MQTT 4.6; per topic at least, and here across topics too).
        let in_order: Vec<usize> = (0..N).collect();
        assert_eq!(received, in_order);
        assert!(
            sub.publishes_within(Duration::from_millis(300))
                .await
                .is_empty()
        );
        publisher.disconnect().await;
        sub.disconnect().await;
        server.stop().await;
    });
}

/// Pipelines `n` retained QoS 1 publishes (`{"n": k}` to `Sensor/<prefix><k % ids>`)
/// from one client without waiting for each PUBACK, then waits for all of
/// them.
async fn pipeline_retained(server: &TestServer, client: &str, prefix: &str, n: usize, ids: usize) {
    use v4::*;
    let mut opts = options(server, client);
    opts.set_inflight(200);
    let (mut publisher, _) = connect(opts).await;
    let sender = publisher.client.clone();
    let prefix = prefix.to_owned();
    let sending = tokio::spawn(async move {
        for k in 0..n {
            sender
                .publish(
                    format!("Sensor/{prefix}{}", k % ids),
                    QoS::AtLeastOnce,
                    true,
                    format!(r#"{{"n":{k}}}"#).into_bytes(),
                )
                .await
                .unwrap();
        }
    });
    for _ in 0..n {
        publisher
            .pump
            .wait(|e| matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(()))
            .await;
    }
    sending.await.unwrap();
    publisher.disconnect().await;
}

/// Successive retained publishes of one client to one topic: the record is
/// the last one (each PUBLISH "replaces the record"; MQTT 4.6 orders a
/// client's messages per topic), also when the client does not wait for
/// each PUBACK before sending the next (in-flight window > 1).
#[test]
fn v4_pipelined_retained_writes_keep_the_last_value() {
    run(|dir| async move {
        let server = start(&dir).await;
        const N: usize = 200;
        const IDS: usize = 50;
        let mut wrong = Vec::new();
        for round in 0..3 {
            let prefix = format!("last{round}-");
            pipeline_retained(&server, &format!("v4-last-{round}"), &prefix, N, IDS).await;
            for id in 0..IDS {
                let (status, body) = get(&server, &format!("/Sensor/{prefix}{id}")).await;
                assert_eq!(status, 200);
                let got = json(&body)["n"].as_u64().unwrap() as usize;
                let last = (id..N).step_by(IDS).next_back().unwrap();
                if got != last {
                    wrong.push(format!(
                        "Sensor/{prefix}{id}: n={got}, last acknowledged n={last}"
                    ));
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "records not at their last write:\n{}",
            wrong.join("\n")
        );
        server.stop().await;
    });
}

/// A wildcard subscriber sees every change of every record once, and the
/// changes of each record in the order they were published.
#[test]
fn v4_a_thousand_retained_writes_reach_a_wildcard_subscriber_in_order() {
    use v4::*;
    run(|dir| async move {
        let server = start(&dir).await;
        let (mut sub, _) = connect(options(&server, "v4-rec-load-sub")).await;
        sub.subscribe("Sensor/#", QoS::AtLeastOnce).await;
        const N: usize = 1_000;
        const IDS: usize = 50;
        pipeline_retained(&server, "v4-rec-load-pub", "s", N, IDS).await;
        let mut per_id: Vec<Vec<usize>> = vec![Vec::new(); IDS];
        for _ in 0..N {
            let p = sub.next_publish().await;
            let v = json(&p.payload);
            let n = v["n"].as_u64().unwrap() as usize;
            assert_eq!(
                (
                    p.topic.clone(),
                    v["id"].as_str().unwrap().to_owned(),
                    p.retain
                ),
                (
                    format!("Sensor/s{}", n % IDS),
                    format!("s{}", n % IDS),
                    false
                )
            );
            per_id[n % IDS].push(n);
        }
        assert!(
            sub.publishes_within(Duration::from_millis(300))
                .await
                .is_empty()
        );
        let out_of_order: Vec<_> = per_id
            .iter()
            .enumerate()
            .filter(|(id, ns)| **ns != (*id..N).step_by(IDS).collect::<Vec<_>>())
            .map(|(id, ns)| format!("Sensor/s{id}: {ns:?}"))
            .collect();
        assert!(
            out_of_order.is_empty(),
            "changes delivered out of order:\n{}",
            out_of_order.join("\n")
        );
        sub.disconnect().await;
        server.stop().await;
    });
}

#[test]
fn v5_qos_levels_and_properties() {
    use v5::*;
    run(|dir| async move {
        let server = start(&dir).await;
        let (mut sub, _) = connect(options(&server, "v5-sub")).await;
        sub.subscribe("v5/#", QoS::ExactlyOnce).await;
        let (publisher, _) = connect(options(&server, "v5-pub")).await;
        let props = PublishProperties {
            payload_format_indicator: Some(1),
            content_type: Some("text/plain".into()),
            response_topic: Some("v5/replies".into()),
            correlation_data: Some(bytes::Bytes::from_static(b"corr")),
            user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
            ..Default::default()
        };
        for (topic, qos) in [
            ("v5/0", QoS::AtMostOnce),
            ("v5/1", QoS::AtLeastOnce),
            ("v5/2", QoS::ExactlyOnce),
        ] {
            publisher
                .client
                .publish_with_properties(
                    topic,
                    qos,
                    false,
                    topic.as_bytes().to_vec(),
                    props.clone(),
                )
                .await
                .unwrap();
        }
        for (topic, qos) in [
            ("v5/0", QoS::AtMostOnce),
            ("v5/1", QoS::AtLeastOnce),
            ("v5/2", QoS::ExactlyOnce),
        ] {
            let p = sub.next_publish().await;
            assert_eq!(
                (&p.topic[..], p.qos, p.retain, &p.payload[..]),
                (topic.as_bytes(), qos, false, topic.as_bytes())
            );
            let got = p.properties.expect("properties forwarded");
            assert_eq!(got.payload_format_indicator, Some(1), "{topic}");
            assert_eq!(got.content_type.as_deref(), Some("text/plain"), "{topic}");
            assert_eq!(got.response_topic.as_deref(), Some("v5/replies"), "{topic}");
            assert_eq!(
                got.correlation_data.as_deref(),
                Some(&b"corr"[..]),
                "{topic}"
            );
            assert_eq!(got.user_properties, props.user_properties, "{topic}");
        }
        assert!(
            sub.publishes_within(Duration::from_millis(300))
                .await
                .is_empty()
        );
        publisher.disconnect().await;
        sub.disconnect().await;
        server.stop().await;
    });
}

#[test]
fn v5_retained_records_and_a_typed_table_refusal() {
    use v5::*;
    run(|dir| async move {
        let server = start(&dir).await;
        let (mut publisher, _) = connect(options(&server, "v5-rec-pub")).await;
        let reason = publisher
            .publish_qos1("Device/bad", true, br#"{"temp":"hot"}"#, None)
            .await;
        assert_eq!(reason, PubAckReason::PayloadFormatInvalid);
        assert_eq!(get(&server, "/Device/bad").await.0, 404);

        let props = PublishProperties {
            user_properties: vec![("origin".into(), "rumqttc".into())],
            ..Default::default()
        };
        let reason = publisher
            .publish_qos1(
                "Device/good",
                true,
                br#"{"name":"g","temp":1.25}"#,
                Some(props),
            )
            .await;
        assert_eq!(reason, PubAckReason::Success);

        let (mut sub, _) = connect(options(&server, "v5-rec-sub")).await;
        sub.subscribe("Device/#", QoS::AtLeastOnce).await;
        let p = sub.next_publish().await;
        assert_eq!((&p.topic[..], p.retain), (&b"Device/good"[..], true));
        assert_eq!(
            json(&p.payload),
            serde_json::json!({"id": "good", "name": "g", "temp": 1.25})
        );
        let got = p.properties.expect("retained message properties");
        assert_eq!(got.content_type.as_deref(), Some("application/json"));
        assert_eq!(
            got.user_properties,
            [("origin".to_owned(), "rumqttc".to_owned())]
        );
        publisher.disconnect().await;
        sub.disconnect().await;
        server.stop().await;
    });
}

#[test]
fn v5_session_expiry_resume_with_queued_message() {
    use v5::*;
    run(|dir| async move {
        let server = start(&dir).await;
        let mut opts = options(&server, "v5-resume");
        opts.set_clean_start(false);
        opts.set_session_expiry_interval(Some(60));
        let (mut sub, ack) = connect(opts.clone()).await;
        assert!(!ack.session_present);
        sub.subscribe("v5inbox/#", QoS::AtLeastOnce).await;
        sub.disconnect().await;

        let (mut publisher, _) = connect(options(&server, "v5-resume-pub")).await;
        let reason = publisher
            .publish_qos1("v5inbox/a", false, b"queued", None)
            .await;
        assert!(
            matches!(reason, PubAckReason::Success),
            "a matching (offline) subscriber exists: {reason:?}"
        );

        let (mut sub, ack) = connect(opts.clone()).await;
        assert!(ack.session_present);
        let p = sub.next_publish().await;
        assert_eq!(
            (&p.topic[..], &p.payload[..], p.qos),
            (&b"v5inbox/a"[..], &b"queued"[..], QoS::AtLeastOnce)
        );
        sub.disconnect().await;
        publisher.disconnect().await;
        server.stop().await;
    });
}

#[test]
fn v5_last_will_with_properties_and_delay() {
    use v5::*;
    run(|dir| async move {
        let server = start(&dir).await;
        let (mut watcher, _) = connect(options(&server, "v5-watcher")).await;
        watcher.subscribe("will5/#", QoS::AtLeastOnce).await;

        // No delay: published when the connection drops, with its properties.
        let mut rude = options(&server, "v5-rude");
        rude.set_last_will(LastWill::new(
            "will5/rude",
            b"gone".to_vec(),
            QoS::AtLeastOnce,
            false,
            Some(LastWillProperties {
                content_type: Some("text/plain".into()),
                user_properties: vec![("why".into(), "crash".into())],
                ..will_properties()
            }),
        ));
        let (rude, _) = connect(rude).await;
        rude.pump.kill().await;
        let p = watcher.next_publish().await;
        assert_eq!(
            (&p.topic[..], &p.payload[..]),
            (&b"will5/rude"[..], &b"gone"[..])
        );
        let props = p.properties.expect("will properties");
        assert_eq!(props.content_type.as_deref(), Some("text/plain"));
        assert_eq!(
            props.user_properties,
            [("why".to_owned(), "crash".to_owned())]
        );

        // A will delay: resuming the session within it cancels the will.
        let mut delayed = options(&server, "v5-delayed");
        delayed.set_clean_start(false);
        delayed.set_session_expiry_interval(Some(30));
        delayed.set_last_will(LastWill::new(
            "will5/delayed",
            b"late".to_vec(),
            QoS::AtLeastOnce,
            false,
            Some(LastWillProperties {
                delay_interval: Some(1),
                ..will_properties()
            }),
        ));
        let (client, _) = connect(delayed.clone()).await;
        client.pump.kill().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (client, ack) = connect(delayed.clone()).await;
        assert!(ack.session_present);
        assert!(
            watcher
                .publishes_within(Duration::from_millis(1500))
                .await
                .is_empty(),
            "a will whose session resumed within the delay is not sent"
        );
        // Not resumed within the delay: sent after it.
        client.pump.kill().await;
        let started = tokio::time::Instant::now();
        let p = watcher.next_publish().await;
        assert_eq!(
            (&p.topic[..], &p.payload[..]),
            (&b"will5/delayed"[..], &b"late"[..])
        );
        assert!(
            started.elapsed() >= Duration::from_millis(800),
            "sent after the will delay, not at once ({:?})",
            started.elapsed()
        );
        watcher.disconnect().await;
        server.stop().await;
    });
}
